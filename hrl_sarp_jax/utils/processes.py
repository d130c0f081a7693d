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

import jax

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
