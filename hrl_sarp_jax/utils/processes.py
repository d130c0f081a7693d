"""Keeping the processes of a multi-process (multi-host) run in step before a collective.

# HOST ONLY
A device collective that spans processes (``process_allgather``: gloo on CPU, NCCL on GPU)
first builds its communicator, and gloo gives up after 30 seconds when another process has not
arrived (``Gloo context initialization failed: DEADLINE_EXCEEDED``). Processes drift further
apart than that in ordinary work: one process's compilation-cache hit against another's
minute-long compile, data loading, process 0 writing the metrics and summaries. So every
host-side gather first waits at a barrier of the distributed runtime's coordination service,
which holds for as long as ``timeout_s`` and uses no device.
"""

from __future__ import annotations

import itertools
from typing import Any

import jax
import numpy as np

from hrl_sarp_jax.errors import HrlSarpError

BARRIER_TIMEOUT_S = 3600.0
"""How long a process waits for the others at a barrier (a compile or a checkpoint write on a
slow host, never a hang: the run fails with the barrier's name after this)."""

_calls = itertools.count()


def wait_for_processes(name: str, timeout_s: float = BARRIER_TIMEOUT_S) -> None:
    """Block until every process reaches its matching call (the n-th call of each process
    meets the n-th of the others, so every process must make the same calls in the same order,
    as it must for the collectives themselves). One process: returns at once."""
    if jax.process_count() == 1:
        return
    from jax._src import distributed  # the runtime jax.distributed.initialize started

    client = distributed.global_state.client
    if client is None:
        raise HrlSarpError("several JAX processes but no distributed runtime client: start "
                           "the run with hrl-sarp --distributed (jax.distributed.initialize)")
    client.wait_at_barrier(f"hrl_sarp/{next(_calls)}/{name}", int(timeout_s * 1000))


def is_key(x: Any) -> bool:
    """Whether ``x`` holds typed PRNG keys."""
    return jax.dtypes.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def spans_processes(x: Any) -> bool:
    """Whether ``x`` is a ``jax.Array`` with shards on other processes (``np.asarray`` refuses
    it)."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def gather_processes(tree: Any, name: str, *, key_data: bool = False) -> Any:
    """``tree`` with every leaf that spans processes all-gathered into a whole NumPy array
    (``process_allgather``, after a barrier named ``name``); other leaves as they are. Typed
    PRNG keys that span processes: their ``key_data`` when ``key_data`` (a hash), else
    re-wrapped keys. A collective: every process must call it, on the same tree. One process:
    ``tree`` itself."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    wait_for_processes(name)

    def whole(x: Any) -> Any:
        if not spans_processes(x):
            return x
        if is_key(x):
            data = np.asarray(multihost_utils.process_allgather(jax.random.key_data(x),
                                                                tiled=True))
            return data if key_data else jax.random.wrap_key_data(
                data, impl=jax.random.key_impl(x))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(whole, tree)


def from_local_copy(x: Any, sharding: jax.sharding.Sharding) -> jax.Array:
    """A global array on ``sharding`` from a value this process holds whole (as every
    process does): each process fills only its own shards, with no cross-process check (which
    would all-gather the leaf). Typed PRNG keys included."""
    host = x if is_key(x) else np.asarray(x)
    return jax.make_array_from_callback(tuple(np.shape(x)), sharding, lambda idx: host[idx])


def as_global_arrays(tree: Any) -> Any:
    """``tree`` with every host-local ``jax.Array`` leaf (on this process's devices only)
    made a global array replicated over every device of every process (``from_local_copy``):
    Orbax saves only global arrays in a multi-process run, and phases that do not split their
    seeds (Phases 1-2) hold the same values in every process. Orbax writes replica 0, which
    is process 0's. One process: ``tree`` itself."""
    if jax.process_count() == 1:
        return tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    everywhere = NamedSharding(Mesh(np.asarray(jax.devices()), ("processes",)),
                               PartitionSpec())
    return jax.tree.map(lambda x: from_local_copy(x, everywhere)
                        if isinstance(x, jax.Array) and not spans_processes(x) else x, tree)
