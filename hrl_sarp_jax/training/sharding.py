"""Seeds over devices: a 1-D ``"seeds"`` mesh, placement helpers and multi-host start-up.

# HOST ONLY (not jittable)
The training phases vmap one seed's program over a leading seed axis K (``rl_macro``'s
``compile_programs``, ``rl_micro.run_phase4``). ``jax.jit`` follows its inputs' shardings, so
placing that axis over a mesh (``shard_seeds``) runs K/D seeds on each of D devices with no
change to the programs: per-seed computations never talk to each other, so the numbers are
those of the one-device run (to float reassociation) and nothing is communicated.

Decisions:

* The mesh axis type is ``AxisType.Auto`` (GSPMD-style). jax 0.10's ``jax.make_mesh`` defaults
  to ``Explicit`` ("sharding in types"), under which gathers with sharded indices (``x[t]``
  inside the env) need an explicit ``out_sharding`` and fail to trace.
* K must be a multiple of the device count: ``shard_seeds`` refuses otherwise (``ConfigError``
  naming ``--seeds``) rather than padding or silently replicating, which would make every
  device run every seed (D times the work for no gain). Host loops build their mesh with
  ``seed_mesh_for(K)``: as many devices as divide K on one process (K=1 stays on one device),
  so the default single-seed run still works on a multi-GPU machine.
* Ahead-of-time executables (``jit(f).lower(args).compile()``) are specialised to their input
  shardings: lowered on unsharded ``ShapeDtypeStruct``s they only accept single-device inputs
  ("Computation was compiled for input shardings that disagree ..."). ``shard_seeds`` accepts
  ``ShapeDtypeStruct`` leaves (it returns them with the seed sharding) and ``abstract_like``
  turns placed arrays into ``ShapeDtypeStruct``s that keep theirs (also the right target for
  an Orbax restore, which then puts every shard straight on its device).
* Inputs shared by all seeds (env params, curriculum start sets) go through ``replicate`` once:
  an uncommitted array passed to a sharded executable is copied to every device on each call.

Multi-host: ``maybe_initialize_distributed`` (before any other JAX call) joins the processes;
``seed_mesh()`` then spans every process's devices. Each process holds the same full host
copy of the K-seed state (same config, same keys) and ``shard_seeds`` keeps only its own
shards. Reading results on the host needs ``to_host`` (an all-gather) rather than
``jax.device_get``/``np.asarray``, which refuse arrays with shards on other processes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.types import PyTree
from hrl_sarp_jax.utils.processes import from_local_copy, gather_processes, spans_processes

SEED_AXIS = "seeds"

ENV_DISTRIBUTED = "HRL_SARP_DISTRIBUTED"
"""Set to 1/true/yes/on to initialise ``jax.distributed`` without ``--distributed``."""
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
"""host:port of process 0's coordinator (the variable ``jax.distributed`` itself reads)."""
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


# --------------------------------------------------------------------------- mesh, placement


def seed_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"seeds"`` (``AxisType.Auto``) over ``devices`` (default: every
    device of every process, ``jax.devices()``)."""
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise ConfigError("seed_mesh: no devices given; pass devices=jax.devices() or a "
                          "non-empty subset of it")
    if len({d.id for d in devs}) != len(devs):
        raise ConfigError(f"seed_mesh: device list {[d.id for d in devs]} repeats a device; "
                          "give each device once")
    return Mesh(np.array(devs, dtype=object), (SEED_AXIS,), axis_types=(AxisType.Auto,))


def seed_mesh_for(seeds: int, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh a K-seed host loop uses: every device when K is a multiple of their count,
    else the first d, d the largest divisor of K not above the count (K=1: one device, as
    before sharding existed; K=6 on 4 devices: 3). With several processes K must be a multiple
    of the global device count (``ConfigError`` naming ``--seeds`` otherwise), so that no
    process is left without seeds."""
    devs = list(jax.devices() if devices is None else devices)
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: give at least 1 seed")
    if jax.process_count() > 1:
        mesh = seed_mesh(devs)
        check_seed_count(seeds, mesh)
        return mesh
    d = max(i for i in range(1, len(devs) + 1) if seeds % i == 0) if devs else 0
    return seed_mesh(devs[:d])


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over ``"seeds"``, other axes whole."""
    return NamedSharding(mesh, P(SEED_AXIS))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_seed_count(seeds: int, mesh: Mesh) -> None:
    """Raise ``ConfigError`` unless ``seeds`` splits evenly over the mesh's devices."""
    d = int(mesh.size)
    if seeds < 1 or seeds % d:
        up = max(d, math.ceil(max(seeds, 1) / d) * d)
        raise ConfigError(
            f"{seeds} seed(s) cannot be split evenly over {d} devices: set --seeds "
            f"(train.seeds) to a multiple of {d} (e.g. {up}), or use fewer devices "
            f"(CUDA_VISIBLE_DEVICES, or seed_mesh(devices=...) with a divisor of {seeds})")


def _place(x: Any, sharding: NamedSharding) -> Any:
    """One leaf onto ``sharding`` (a ShapeDtypeStruct gets the sharding attached)."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding, weak_type=x.weak_type)
    if jax.process_count() == 1 or spans_processes(x):
        return jax.device_put(x, sharding)
    return from_local_copy(x, sharding)  # a host-local value every process holds in full


def shard_seeds(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf's leading (seed) axis split over the mesh's ``"seeds"`` axis.

    Leaves are arrays (placed; typed PRNG keys included) or ``jax.ShapeDtypeStruct`` (returned
    with the sharding attached, for ``jit(...).lower``). Every leaf must have the same leading
    size K, a multiple of the device count (``ConfigError`` otherwise, naming ``--seeds``).
    """
    sharding = seed_sharding(mesh)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        return tree
    sizes: dict[int, str] = {}
    for path, x in leaves:
        shape = tuple(np.shape(x)) if not isinstance(x, jax.ShapeDtypeStruct) else x.shape
        name = jax.tree_util.keystr(path) or "the tree"
        if not shape:
            raise ConfigError(
                f"shard_seeds: leaf {name} is a scalar with no leading seed axis [K, ...]; "
                f"stack per-seed values first (vmap(init), stack_hparams) or place shared "
                f"inputs with replicate()")
        sizes.setdefault(shape[0], name)
    if len(sizes) > 1:
        desc = ", ".join(f"{name} has {k}" for k, name in sizes.items())
        raise ConfigError(f"shard_seeds: leaves disagree on the seed count K ({desc}); pass "
                          f"only per-seed trees and replicate() shared inputs")
    check_seed_count(next(iter(sizes)), mesh)
    return jax.tree.unflatten(treedef, [_place(x, sharding) for _, x in leaves])


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Every leaf copied whole to every device of the mesh (inputs shared by all seeds)."""
    sharding = replicated_sharding(mesh)
    return jax.tree.map(lambda x: _place(x, sharding), tree)


def abstract_like(tree: PyTree) -> PyTree:
    """``jax.ShapeDtypeStruct`` per leaf, keeping the leaf's sharding (``None`` for host
    values) and weak type: a lowering / Orbax-restore target that stays placed as ``tree``."""
    def one(x: Any) -> jax.ShapeDtypeStruct:
        if isinstance(x, jax.ShapeDtypeStruct):
            return x
        sharding = x.sharding if isinstance(x, jax.Array) else None
        dtype = x.dtype if hasattr(x, "dtype") else np.result_type(x)
        return jax.ShapeDtypeStruct(np.shape(x), dtype, sharding=sharding,
                                    weak_type=bool(getattr(x, "weak_type", False)))
    return jax.tree.map(one, tree)


def to_host(tree: PyTree) -> PyTree:
    """NumPy copies of every leaf, gathered from all processes when arrays span several
    (``utils.processes.gather_processes``: a barrier, then ``process_allgather``, so a process
    that is still compiling does not time the collective out). Every process must call it."""
    return jax.device_get(gather_processes(tree, "to_host"))


# --------------------------------------------------------------------------- multi-host


@dataclass(frozen=True)
class DistributedSettings:
    """Arguments for ``jax.distributed.initialize``; None = let jax detect it (Slurm, Open
    MPI, TPU pods, Kubernetes)."""

    coordinator_address: str | None
    num_processes: int | None
    process_id: int | None


def _env_int(env: Mapping[str, str], name: str, what: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set it to {what}") from None


def distributed_settings(coordinator_address: str | None = None,
                         num_processes: int | None = None, process_id: int | None = None,
                         environ: Mapping[str, str] | None = None) -> DistributedSettings:
    """Arguments win over ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
    ``JAX_PROCESS_ID``; values are checked (``ConfigError`` naming the option)."""
    env = os.environ if environ is None else environ
    addr = coordinator_address or env.get(ENV_COORDINATOR, "").strip() or None
    n = num_processes if num_processes is not None else _env_int(
        env, ENV_NUM_PROCESSES, "the number of processes (e.g. 2)")
    pid = process_id if process_id is not None else _env_int(
        env, ENV_PROCESS_ID, "this process's index, 0 .. num_processes-1")
    if addr is not None and (":" not in addr or not addr.rsplit(":", 1)[1].isdigit()):
        raise ConfigError(f"--coordinator {addr!r}: give HOST:PORT of process 0 "
                          f"(e.g. 10.0.0.1:1234), or set {ENV_COORDINATOR}")
    if n is not None and n < 1:
        raise ConfigError(f"--num-processes {n}: give at least 1 (or set {ENV_NUM_PROCESSES})")
    if pid is not None and (pid < 0 or (n is not None and pid >= n)):
        top = "num_processes-1" if n is None else str(n - 1)
        raise ConfigError(f"--process-id {pid}: give an index from 0 to {top} "
                          f"(or set {ENV_PROCESS_ID})")
    return DistributedSettings(addr, n, pid)


def distributed_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Is ``HRL_SARP_DISTRIBUTED`` set to a true value?"""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_DISTRIBUTED, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{ENV_DISTRIBUTED}={raw!r}: use 1 to initialise jax.distributed or 0 "
                      f"(or unset it) for a single process")


def maybe_initialize_distributed(enabled: bool | None = None, *,
                                 coordinator_address: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None,
                                 local_device_ids: Sequence[int] | None = None,
                                 initialization_timeout: int = 300,
                                 environ: Mapping[str, str] | None = None) -> bool:
    """Join a multi-process JAX run when ``enabled`` (None: ``HRL_SARP_DISTRIBUTED``).

    Must run before any other JAX call that touches devices. Settings come from the arguments,
    then ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``, then jax's
    cluster detection. Returns True when this process is part of a distributed run (also when
    it already was), False when not enabled. Failures raise ``ConfigError`` with the fix.
    """
    if enabled is None:
        enabled = distributed_requested(environ)
    if not enabled:
        return False
    if jax.distributed.is_initialized():
        return True
    s = distributed_settings(coordinator_address, num_processes, process_id, environ)
    try:
        jax.distributed.initialize(
            coordinator_address=s.coordinator_address, num_processes=s.num_processes,
            process_id=s.process_id,
            local_device_ids=None if local_device_ids is None else list(local_device_ids),
            initialization_timeout=int(initialization_timeout))
    except (ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--distributed: jax.distributed.initialize failed ({first}); give --coordinator "
            f"HOST:PORT --num-processes N --process-id I (or {ENV_COORDINATOR}, "
            f"{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}) before any JAX work, or run under "
            f"Slurm / Open MPI / a TPU pod where they are detected") from exc
    return True


def check_member_axis(where: str, k: int, **trees: Any) -> None:
    """ConfigError naming ``where`` and the tree unless every given (not None) tree's leaves
    have a leading axis of ``k`` members (a sweep's settings x seeds)."""
    for what, tree in trees.items():
        leads = {tuple(np.shape(x)[:1]) for x in jax.tree.leaves(tree)}
        if tree is not None and leads != {(k,)}:
            raise ConfigError(f"{where}: {what} must have a leading axis of {k} members "
                              f"(one per seed), got leading shapes {sorted(leads)}")
