"""Worker for tests/training/test_sharding.py: runs in a fresh process whose environment
already holds ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` (jax must see it before
it is imported, so the test passes it through the subprocess environment).

``python -m tests.training.sharding_worker CASE [ARGS]`` prints one JSON line:

* ``place``: shard_seeds / replicate / abstract_like on 4 devices, and the AOT-sharding trap.
* ``program``: a vmapped per-seed Adam program, one device vs sharded over 4.
* ``phase3``: the real Phase-3 chunk (tiny networks), one device vs sharded over 4.
* ``phase4``: the real Phase-4 chunk (tiny networks, TD3+HER with its replay buffer), the same.
* ``multihost PORT PID``: process PID of 2 (2 devices each) runs ``program`` on the global
  4-device mesh and prints the all-gathered results.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
"""Cheap XLA CPU settings for the Phase-3 case (as tests/agents/_compile.py)."""
SEEDS = 8
STEPS = 12


# --------------------------------------------------------------------------- per-seed program


def seed_program(key: jax.Array, lr: jax.Array) -> tuple[dict, jax.Array]:
    """One seed's training: a 4-8-1 tanh MLP fitted with Adam(lr) for STEPS full-batch steps
    on 16 samples drawn from ``key``. Returns (final params, loss per step [STEPS])."""
    k_data, k_w1, k_w2 = jax.random.split(key, 3)
    x = jax.random.normal(k_data, (16, 4), jnp.float32)
    y = jnp.tanh(x @ jnp.arange(1.0, 5.0, dtype=jnp.float32))[:, None]
    params = {"w1": 0.5 * jax.random.normal(k_w1, (4, 8), jnp.float32),
              "b1": jnp.zeros(8, jnp.float32),
              "w2": 0.5 * jax.random.normal(k_w2, (8, 1), jnp.float32),
              "b2": jnp.zeros(1, jnp.float32)}
    tx = optax.adam(lr)

    def loss_fn(p):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)

    def step(carry, _):
        p, opt = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), loss

    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, length=STEPS)
    return params, losses


def program_inputs(seeds: int = SEEDS) -> tuple[jax.Array, jax.Array]:
    """[K] typed keys and [K] learning rates (each seed its own)."""
    keys = jax.random.split(jax.random.key(42), seeds)
    lrs = jnp.linspace(0.01, 0.05, seeds, dtype=jnp.float32)
    return keys, lrs


batched_program = jax.jit(jax.vmap(seed_program))


def _flat(tree) -> list[list[float]]:
    return [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(tree)]


def _max_diff(a, b) -> float:
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _specs(tree) -> list[str]:
    return sorted({str(x.sharding.spec) for x in jax.tree.leaves(tree)})


# --------------------------------------------------------------------------- cases


def case_place() -> dict:
    from hrl_sarp_jax.errors import ConfigError
    from hrl_sarp_jax.training import sharding as sh

    mesh = sh.seed_mesh()
    tree = {"w": jnp.arange(8 * 3, dtype=jnp.float32).reshape(8, 3),
            "step": jnp.arange(8, dtype=jnp.int32),
            "key": jax.random.split(jax.random.key(0), 8)}
    placed = sh.shard_seeds(tree, mesh)
    w = placed["w"]
    shards = sorted((s.device.id, s.index[0].start, s.index[0].stop, s.data.shape)
                    for s in w.addressable_shards)
    shared = sh.replicate({"table": jnp.ones((5, 2))}, mesh)["table"]
    abstract = sh.abstract_like(placed)
    lowered_on = sh.shard_seeds(jax.eval_shape(lambda t: t, tree), mesh)

    errors = {}
    for name, bad in {"six_seeds": {"w": jnp.zeros((6, 2))},
                      "scalar": {"w": jnp.zeros((8, 2)), "n": jnp.int32(3)},
                      "mixed": {"w": jnp.zeros((8, 2)), "v": jnp.zeros((4,))}}.items():
        try:
            sh.shard_seeds(bad, mesh)
            errors[name] = None
        except ConfigError as exc:
            errors[name] = str(exc)

    # The AOT trap: an executable lowered on unsharded ShapeDtypeStructs is single-device and
    # refuses sharded inputs; lowered on abstract_like(placed) it takes them.
    f = jax.jit(lambda t: jax.tree.map(lambda x: x * 2 if x.dtype != tree["key"].dtype else x, t))
    plain = f.lower(jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)).compile()
    try:
        plain(placed)
        aot_error = None
    except ValueError as exc:
        aot_error = str(exc).splitlines()[0]
    sharded_exe = f.lower(abstract).compile()
    out = sharded_exe(placed)
    return {
        "devices": len(jax.devices()),
        "mesh_axes": list(mesh.axis_names), "mesh_shape": dict(mesh.shape),
        "axis_types": [str(t) for t in mesh.axis_types],
        "w_spec": str(w.sharding.spec), "w_shards": [list(map(str, s)) for s in shards],
        "key_dtype": str(placed["key"].dtype), "key_spec": str(placed["key"].sharding.spec),
        "key_shard_shapes": [list(s.data.shape) for s in placed["key"].addressable_shards],
        "values_equal": bool(np.array_equal(np.asarray(w), np.asarray(tree["w"]))
                             and np.array_equal(jax.random.key_data(placed["key"]),
                                                jax.random.key_data(tree["key"]))),
        "replicated": bool(shared.sharding.is_fully_replicated),
        "replicated_shards": len(shared.addressable_shards),
        "abstract_specs": sorted({str(a.sharding.spec) for a in jax.tree.leaves(abstract)}),
        "lowered_on_specs": sorted({str(a.sharding.spec) for a in jax.tree.leaves(lowered_on)}),
        "errors": errors,
        "aot_unsharded_error": aot_error,
        "aot_sharded_in": sorted({str(s.spec) for s in
                                  jax.tree.leaves(sharded_exe.input_shardings[0])}),
        "aot_sharded_out_spec": str(out["w"].sharding.spec),
        "aot_sharded_w": np.asarray(out["w"]).ravel().tolist(),
        "mesh_for": {k: [d.id for d in sh.seed_mesh_for(k).devices.flat] for k in (1, 2, 6, 8)},
    }


def case_program() -> dict:
    from hrl_sarp_jax.training import sharding as sh

    keys, lrs = program_inputs()
    one_params, one_losses = jax.block_until_ready(batched_program(keys, lrs))
    mesh = sh.seed_mesh()
    s_keys, s_lrs = sh.shard_seeds((keys, lrs), mesh)
    params, losses = jax.block_until_ready(batched_program(s_keys, s_lrs))
    return {
        "devices": len(jax.devices()),
        "single_devices": sorted({d.id for x in jax.tree.leaves(one_params) for d in x.devices()}),
        "out_specs": _specs((params, losses)),
        "out_devices": sorted({d.id for x in jax.tree.leaves(params) for d in x.devices()}),
        "loss_shard_shapes": [list(s.data.shape) for s in losses.addressable_shards],
        "max_diff": _max_diff((params, losses), (one_params, one_losses)),
        "losses": np.asarray(losses).tolist(),
        "single_losses": np.asarray(one_losses).tolist(),
    }


def _phase3_inputs():
    """A hand-built 3-sector market (T=160) and a Config with tiny networks and a tiny PPO."""
    import dataclasses

    from hrl_sarp_jax.config import Config, GNNConfig, NetworkConfig, PPOConfig, TrainConfig
    from hrl_sarp_jax.data.market import MarketMeta
    from tests.envs.make_inputs import make_dates, make_inputs

    t, n, s = 160, 8, 3
    market, feats = make_inputs(num_days=t, num_stocks=n, num_sectors=s)
    dates = make_dates(t)
    meta = MarketMeta(dates=dates, tickers=(*tuple(f"S{i}" for i in range(n - 1)), ""),
                      sectors=("A", "B", "C"), macro_names=("m0", "m1"),
                      fundamental_names=("f",), market="probe", synthetic=True)
    nets = NetworkConfig(gnn=GNNConfig(hidden=8, embedding=8, heads=2), macro_hidden=(16, 8),
                         attention_dim=8, attention_heads=2, goal_embedding=8,
                         micro_stock_hidden=(8,), critic_hidden=(16, 8))
    ppo = PPOConfig(num_envs=2, rollout_steps=8, minibatch_size=4, epochs=1,
                    total_env_steps=16, warmup_updates=1)
    cfg = Config(networks=nets, train=TrainConfig(seeds=4, ppo=ppo, eval_interval=2))
    cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, macro_episode_weeks=4),
                              data=dataclasses.replace(cfg.data, val_start=str(dates[110]),
                                                       test_start=str(dates[150])))
    return cfg, market, meta, feats


def case_phase3() -> dict:
    from hrl_sarp_jax.training import curriculum as cur
    from hrl_sarp_jax.training import rl_macro as rm
    from hrl_sarp_jax.training import sharding as sh

    t0 = time.perf_counter()
    cfg, market, meta, feats = _phase3_inputs()
    setup = rm.setup_phase3(cfg, market, meta, feats)
    k = 4
    hp = rm.stack_hparams(setup.hp, k)
    starts = cur.stage_starts(1, setup.windows)
    init = jax.jit(jax.vmap(setup.program.init, in_axes=(0, 0, None, None)))
    state = init(rm.phase3_keys(cfg.seed, k), hp, setup.train_params, starts)
    chunk = jax.jit(jax.vmap(setup.program.run_chunk, in_axes=(0, None, 0, None)))
    t_init = time.perf_counter() - t0
    one = chunk.lower(state, setup.train_params, hp, starts).compile(compiler_options=FAST_COMPILE)
    t_one = time.perf_counter() - t0
    one_state, one_metrics = jax.block_until_ready(one(state, setup.train_params, hp, starts))

    # What compile_programs must do for a sharded run: lower on seed-sharded abstracts and
    # replicated shared inputs, then feed it sharded state / hparams.
    mesh = sh.seed_mesh()
    abstract = sh.shard_seeds(jax.eval_shape(init, rm.phase3_keys(cfg.seed, k), hp,
                                             setup.train_params, starts), mesh)
    env_params, s_starts = sh.replicate((setup.train_params, starts), mesh)
    s_hp = sh.shard_seeds(hp, mesh)
    exe = chunk.lower(abstract, env_params, s_hp, s_starts).compile(compiler_options=FAST_COMPILE)
    t_two = time.perf_counter() - t0
    s_state, s_metrics = jax.block_until_ready(
        exe(sh.shard_seeds(state, mesh), env_params, s_hp, s_starts))
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(one_state.train.params),
                                jax.tree.leaves(state.train.params), strict=True))
    return {
        "devices": len(jax.devices()),
        "state_specs": _specs(s_state),
        "metric_specs": _specs(s_metrics),
        "param_shard_rows": sorted({s.data.shape[0] for x in jax.tree.leaves(s_state.train.params)
                                    for s in x.addressable_shards}),
        "env_steps": np.asarray(s_state.env_steps).tolist(),
        "single_env_steps": np.asarray(one_state.env_steps).tolist(),
        "reward_diff": _max_diff(s_metrics["reward"], one_metrics["reward"]),
        "metrics_diff": _max_diff(s_metrics, one_metrics),
        "params_diff": _max_diff(s_state.train.params, one_state.train.params),
        "obs_diff": _max_diff(s_state.obs, one_state.obs),
        "params_moved": moved,
        "rolled_params_diff": _max_diff(s_state.train.params, jax.tree.map(
            lambda x: np.roll(np.asarray(x), 1, axis=0), one_state.train.params)),
        "reward": np.asarray(s_metrics["reward"]).tolist(),
        "wall_s": round(time.perf_counter() - t0, 2),
        "times": [round(t_init, 2), round(t_one, 2), round(t_two, 2)],
        "metric_diffs": {m: _max_diff(s_metrics[m], one_metrics[m]) for m in s_metrics},
    }


def case_phase4() -> dict:
    """The Phase-4 host loop's own recipe (rl_micro.run_phase4) with the two sharding lines:
    init -> shard_seeds(state), shard_seeds(hp) -> lower(state, ...).compile() -> one chunk."""
    import dataclasses

    from hrl_sarp_jax.config import NetworkConfig, TD3Config
    from hrl_sarp_jax.training import rl_micro as rmi
    from hrl_sarp_jax.training import sharding as sh

    t0 = time.perf_counter()
    cfg, market, meta, feats = _phase3_inputs()  # make_inputs' circuit locks included
    nets = NetworkConfig(attention_dim=8, attention_heads=1, goal_embedding=8,
                         micro_stock_hidden=(16, 8), critic_hidden=(16, 8))
    cfg = dataclasses.replace(cfg, networks=nets, train=dataclasses.replace(
        cfg.train, td3=TD3Config(num_envs=2, batch_size=8, buffer_episodes=4)))
    spec = rmi.Phase4Spec(num_envs=2, steps_per_chunk=6, updates_per_step=1, batch_size=8,
                          buffer_episodes=4, warmup_transitions=4, eval_episodes=2)
    setup = rmi.setup_phase4(cfg, market, meta, feats, spec=spec)
    k = 4
    hp = rmi.stack_hparams(setup.hp, k)
    keys, _ = rmi.phase4_keys(cfg.seed, k)
    init = jax.jit(jax.vmap(setup.p4.init, in_axes=(0, None, None)))
    chunk = jax.jit(jax.vmap(setup.p4.run_chunk, in_axes=(0, None, 0)))
    state = init(keys, setup.train_params, None)
    one = chunk.lower(state, setup.train_params, hp).compile(compiler_options=FAST_COMPILE)
    one_state, one_metrics = jax.block_until_ready(one(state, setup.train_params, hp))

    mesh = sh.seed_mesh()
    s_state, s_hp = sh.shard_seeds(state, mesh), sh.shard_seeds(hp, mesh)
    exe = chunk.lower(s_state, setup.train_params, s_hp).compile(compiler_options=FAST_COMPILE)
    s_state, s_metrics = jax.block_until_ready(exe(s_state, setup.train_params, s_hp))
    moved = _max_diff(one_state.agent.actor_params, state.agent.actor_params)
    return {
        "devices": len(jax.devices()),
        "state_specs": _specs(s_state),
        "env_steps": np.asarray(s_state.env_steps).tolist(),
        "updating": float(np.mean(np.asarray(s_metrics["updating"]))),
        "buffer_diff": _max_diff(s_state.buffer, one_state.buffer),
        "actor_diff": _max_diff(s_state.agent.actor_params, one_state.agent.actor_params),
        "actor_moved": moved,
        "metrics_diff": _max_diff(s_metrics, one_metrics),
        "wall_s": round(time.perf_counter() - t0, 2),
        "rolled_actor_diff": _max_diff(s_state.agent.actor_params, jax.tree.map(
            lambda x: np.roll(np.asarray(x), 1, axis=0), one_state.agent.actor_params)),
        "value_rel_diff": float(np.max(np.abs(np.asarray(s_state.env_state.port.value)
                                              / np.asarray(one_state.env_state.port.value) - 1))),
        "step_diffs": {m: np.max(np.abs(np.asarray(s_metrics[m], np.float64)
                                        - np.asarray(one_metrics[m], np.float64)), axis=0).tolist()
                       for m in ("reward", "critic_loss", "q_mean")},
        "rewards": np.asarray(s_metrics["reward"]).tolist(),
    }


def case_multihost(port: int, pid: int) -> dict:
    from hrl_sarp_jax.training import sharding as sh

    joined = sh.maybe_initialize_distributed(
        True, coordinator_address=f"localhost:{port}", num_processes=2, process_id=pid,
        initialization_timeout=60)
    mesh = sh.seed_mesh()
    keys, lrs = program_inputs()
    s_keys, s_lrs = sh.shard_seeds((keys, lrs), mesh)
    params, losses = batched_program(s_keys, s_lrs)
    shared = sh.replicate(jnp.arange(4.0), mesh)
    total = jax.jit(lambda l, c: jnp.sum(l[:, -1]) + jnp.sum(c))(losses, shared)
    host_params, host_losses, host_total = sh.to_host((params, losses, total))
    return {
        "joined": joined,
        "process_index": jax.process_index(), "process_count": jax.process_count(),
        "global_devices": len(jax.devices()), "local_devices": len(jax.local_devices()),
        "mesh_processes": sorted({d.process_index for d in mesh.devices.flat}),
        "fully_addressable": bool(losses.is_fully_addressable),
        "local_shard_rows": sorted(s.index[0].start for s in losses.addressable_shards),
        "losses": np.asarray(host_losses).tolist(),
        "params": _flat(host_params),
        "total": float(host_total),
    }


def _use_compilation_cache() -> None:
    """The test suite's persistent cache (tests/conftest.py), so reruns skip compiles."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("HRL_SARP_JAX_CACHE",
                                 Path.home() / ".cache" / "hrl_sarp_jax" / "jax_cache"))
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def main(argv: list[str]) -> None:
    _use_compilation_cache()
    case = argv[0]
    if case == "multihost":
        out = case_multihost(int(argv[1]), int(argv[2]))
    else:
        out = {"place": case_place, "program": case_program, "phase3": case_phase3,
               "phase4": case_phase4}[case]()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
