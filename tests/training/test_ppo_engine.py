"""The one PPO engine (``training.ppo_engine``) keeps Phase 3's and the flat baseline's results.

The figures below were recorded with the programs as they were before the engine existed
(``rl_macro.py`` and ``flat.py`` each with their own collection, update, evaluation and host
loop; commit f2d5f31). On the recording machine the engine reproduced them bit for
bit, the host loops' checkpoints and metrics lines too (``docs/benchmarks.md``); here they are
compared within float tolerance, since another CPU or XLA's cheap compile options may round
differently."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import flat as fl
from hrl_sarp_jax.training import ppo_engine as pe
from hrl_sarp_jax.training import rl_macro as rm
from tests.agents._compile import compile_fast
from tests.training import test_flat as tfl
from tests.training import test_rl_macro as trm

# Phase 3 on the drift market (4 envs x 4 weeks, 3 updates, key 7) and the flat baseline on its
# probe market (same sizes), each evaluated on week ends 100, 103, 106, 111 for 8 weeks.
RECORDED = {
    "phase3": {
        "param_abs_sum": 1750.7015812750494,
        "reward": [0.10298273712396622, 0.14032596349716187, 0.2104811668395996],
        "loss": [-0.026250287890434265, 0.07445653527975082, 0.060564473271369934],
        "val_sharpe": 34.91987609863281, "val_equal_weight_sharpe": -2.357950448989868,
        "episode_sharpe": [40.366615295410156, 36.21198272705078, 33.6993522644043,
                           29.40154266357422],
    },
    "flat": {
        "param_abs_sum": 542.3610114286153,
        "reward": [-0.0042420621030032635, -0.002597472630441189, -0.004052495118230581],
        "loss": [0.07540121674537659, -0.007110985927283764, -0.00048381928354501724],
        "val_sharpe": -22.4312686920166, "val_equal_weight_sharpe": -23.25365447998047,
        "episode_sharpe": [-17.684326171875, -31.843673706054688, -19.491308212280273,
                           -20.705764770507812],
        "val_turnover": 0.12187545001506805,
    },
}
DAYS = [100, 103, 106, 111]


def _figures(state, metrics, ev) -> dict:
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.train.params)]
    return {"param_abs_sum": sum(np.abs(x).sum() for x in leaves),
            "reward": np.asarray(metrics["reward"]), "loss": np.asarray(metrics["loss"]),
            **{k: np.asarray(ev[k]) for k in ("val_sharpe", "val_equal_weight_sharpe",
                                              "episode_sharpe")},
            **({"val_turnover": np.asarray(ev["val_turnover"])} if "val_turnover" in ev
               else {})}


def _assert_recorded(name: str, got: dict) -> None:
    for key, want in RECORDED[name].items():
        np.testing.assert_allclose(got[key], want, rtol=2e-4, atol=1e-5,
                                   err_msg=f"{name} {key}")


def test_phase3_on_the_engine_keeps_the_recorded_results():
    market, _feats, _env, params, p3 = trm.setup("drift", 3, num_envs=4, rollout_len=4)
    hp, starts = trm.hparams(spec=p3.spec), trm.all_starts(market, params)
    assert cur.window_week_ends(np.asarray(market.week_end), 100, 190)[:4].tolist() == DAYS
    state = jax.jit(p3.init)(jax.random.key(7), hp, params, starts)
    state, metrics = compile_fast(p3.run_chunk, state, params, hp, starts)(state, params, hp,
                                                                          starts)
    days = jnp.asarray(DAYS, jnp.int32)
    ev = compile_fast(p3.evaluate, state.train.params, params, days, jax.random.key(0))(
        state.train.params, params, days, jax.random.key(0))
    _assert_recorded("phase3", _figures(state, metrics, ev))
    # the regime head's accuracy is the task's own metric, in [0, 1]
    assert 0.0 <= float(ev["val_regime_accuracy"]) <= 1.0


def test_the_gradient_step_flop_count_grows_linearly_with_the_minibatch():
    """``gradient_step_flop`` (bench rl's Phase-3 GFLOP/s): one step on minibatches of 4, 8 and
    16 samples costs a fixed part (clipping, Adam: > 0) plus the same cost per sample, at least
    a forward pass through every kernel (2 flops a weight)."""
    import dataclasses

    market, _feats, env, params, p3 = trm.setup("drift", 1, num_envs=4, rollout_len=4)
    hp, starts = trm.hparams(spec=p3.spec), trm.all_starts(market, params)
    flops = {}
    for minibatches in (4, 2, 1):  # minibatch sizes 4, 8, 16 of the 16 collected steps
        prog = rm.make_phase3(env, trm.TINY, dataclasses.replace(p3.spec,
                                                                  num_minibatches=minibatches))
        state = jax.eval_shape(prog.init, jax.random.key(0), hp, params, starts)
        flops[16 // minibatches] = pe.gradient_step_flop(prog, state, params, hp, starts)
    per_sample = (flops[8] - flops[4]) / 4
    assert (flops[16] - flops[8]) / 8 == pytest.approx(per_sample, rel=0.02)
    assert flops[4] - 4 * per_sample > 0
    state = jax.eval_shape(p3.init, jax.random.key(0), hp, params, starts)
    kernels = sum(int(np.prod(x.shape)) for path, x in
                  jax.tree_util.tree_leaves_with_path(state.train.params)
                  if "kernel" in jax.tree_util.keystr(path))
    assert per_sample >= 2 * kernels


@pytest.mark.slow  # the flat baseline's probe compiles another program
def test_flat_baseline_on_the_engine_keeps_the_recorded_results():
    _market, _feats, _env, params, prog = tfl.setup(3, num_envs=4, rollout_len=4)
    hp = tfl.hparams(spec=prog.spec)
    state = jax.jit(prog.init)(jax.random.key(7), hp, params)
    state, metrics = compile_fast(prog.run_chunk, state, params, hp)(state, params, hp)
    days = jnp.asarray(DAYS, jnp.int32)
    ev = compile_fast(prog.evaluate, state.train.params, params, days, jax.random.key(0))(
        state.train.params, params, days, jax.random.key(0))
    _assert_recorded("flat", _figures(state, metrics, ev))


def test_both_phases_run_the_same_engine_functions():
    """Phase 3 and the flat baseline differ only in their task: the programs are the engine's
    functions, and the tasks differ in the curriculum start days and the logged outputs."""
    *_, p3 = trm.setup("drift", 1, num_envs=2, rollout_len=2)
    *_, flat = tfl.setup(1, num_envs=2, rollout_len=2)
    for prog in (p3, flat):
        assert prog.run_chunk.func is pe.run_chunk and prog.evaluate.func is pe.evaluate
        assert prog.init.func is pe.init_state and prog.collect.func is pe.collect_rollout
    assert p3.task.start_days and not flat.task.start_days
    assert "regime_label" in p3.task.step_info and "turnover" in flat.task.step_info
    assert rm.Phase3Spec is fl.FlatSpec is pe.PPOSpec


def test_phase3_regime_auxiliary_targets_are_the_next_regime_labels():
    """With ``regime_aux`` the rollout carries, per step, the regime label of the decision day
    (the regime after it); without, none (and the program is the recorded one above)."""
    from hrl_sarp_jax.envs.macro import MacroEnv

    market, _feats, env, params, plain = trm.setup("drift", 1, num_envs=2, rollout_len=6)
    assert plain.task.targets is None
    p3 = rm.make_phase3(env, trm.TINY, plain.spec, regime_aux=True)
    assert isinstance(p3.env, MacroEnv)
    # the probe market has no regime labels: label day d with d mod 3
    params = params.replace(regime_label=jnp.arange(params.regime_label.shape[0],
                                                    dtype=jnp.int32) % 3)
    hp, starts = trm.hparams(), trm.all_starts(market, params)
    state = jax.jit(p3.init)(jax.random.key(3), hp, params, starts)
    _, ro, out = jax.jit(lambda s, k: p3.collect(s.train.params, params, starts, s, k))(
        state, jax.random.key(4))
    labels = np.asarray(ro.targets["regime"])
    assert labels.shape == tuple(out.reward.shape)  # [T, E]
    # MacroEnv's info["regime_label"] is params.regime_label at the decision day
    np.testing.assert_array_equal(labels, np.asarray(out.info["regime_label"]))
    assert set(np.unique(labels)) == {0, 1, 2}


def test_anchored_phase3_collects_the_anchors_distributions_and_at_weight_zero_is_unanchored():
    """``spec.anchored``: the state keeps the anchor params (the initial ones until a warm
    start, ``ppo_loop``), the rollout carries the anchor policy's distributions at each
    collected state, and at ``anchor_kl_coef`` 0 the training chunk gives the recorded
    (unanchored) figures; at weight 1 the KL to the anchor is logged and the result differs."""
    import dataclasses

    market, _feats, env, params, plain = trm.setup("drift", 3, num_envs=4, rollout_len=4)
    spec = dataclasses.replace(plain.spec, anchored=True)
    p3 = rm.make_phase3(env, trm.TINY, spec)
    hp, starts = trm.hparams(spec=spec), trm.all_starts(market, params)
    state = jax.jit(p3.init)(jax.random.key(7), hp, params, starts)
    for a, b in zip(jax.tree.leaves(state.anchor), jax.tree.leaves(state.train.params),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # an anchor elsewhere than the params: the rollout's anchor is that policy's distributions
    shifted = jax.tree.map(lambda x: x + 0.05, state.train.params)
    _, ro, out = jax.jit(lambda s, k: p3.collect(s.train.params, params, starts, s, k))(
        state.replace(anchor=shifted), jax.random.key(4))
    want = p3.task.dists(shifted, out.obs.reshape(-1, out.obs.shape[-1]))
    got = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), ro.anchor)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    chunk = compile_fast(p3.run_chunk, state, params, hp, starts)
    s0, m0 = chunk(state, params, hp.replace(anchor_kl_coef=jnp.float32(0.0)), starts)
    days = jnp.asarray(DAYS, jnp.int32)
    ev = compile_fast(p3.evaluate, s0.train.params, params, days, jax.random.key(0))(
        s0.train.params, params, days, jax.random.key(0))
    _assert_recorded("phase3", _figures(s0, m0, ev))
    _, m1 = chunk(state, params, hp.replace(anchor_kl_coef=jnp.float32(1.0)), starts)
    assert np.all(np.asarray(m1["anchor_kl"]) >= 0) and float(m1["anchor_kl"][-1]) > 0
    assert not np.allclose(np.asarray(m1["loss"]), np.asarray(m0["loss"]))
