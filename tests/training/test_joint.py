"""Phase 5 (alternating joint fine-tuning): per-seed pairing of the two agents, config checks,
and (slow) the whole curriculum end to end with an exact resume."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training import joint
from hrl_sarp_jax.training import rl_macro as rm
from tests.training.conftest import smoke_cfg

TINY_RL = ["train.ppo.num_envs=2", "train.ppo.rollout_steps=8", "train.ppo.minibatch_size=4",
           "train.ppo.epochs=1", "train.ppo.total_env_steps=16", "train.eval_interval=1",
           "env.macro_episode_weeks=4", "train.seeds=2", "train.td3.num_envs=2",
           "train.td3.batch_size=16", "train.td3.buffer_episodes=8",
           "train.td3.total_env_steps=128", "train.joint.rounds=2",
           "train.joint.macro_env_steps=8", "train.joint.micro_env_steps=128"]


def _micro_params(cfg, market, keys):
    n = market.num_stocks
    actor = MicroActor(cfg.networks)
    x = jnp.zeros((n, 24), jnp.float32)
    g = jnp.full((market.num_sectors + 3,), 0.2, jnp.float32)
    m = jnp.ones((n,), bool)
    return jax.vmap(lambda k: actor.init(k, x, g, m))(keys)


def test_seed_axes_map_only_the_policy_params(smoke_market):
    _, market, meta, feats, _ = smoke_market
    cfg = smoke_cfg(*TINY_RL)
    s3 = rm.setup_phase3(cfg, market, meta, feats)
    pp = {"actor": {"w": jnp.zeros((2, 3))}, "stock_sector": jnp.zeros((2, 9), jnp.int32)}
    axes = joint.seed_axes(joint.with_policy(s3.train_params, pp))
    mapped = [a for a in jax.tree.leaves(axes) if a is not None]
    assert mapped == [0, 0]
    assert axes.returns is None and axes.stock_sector is None


def test_each_seed_runs_with_its_own_micro_partner(smoke_market):
    """The vmapped Phase-5 evaluation with per-seed Micro allocators equals running each
    seed alone with its own Micro actor, and differs between seeds (pairing is real)."""
    _, market, meta, feats, _ = smoke_market
    cfg = smoke_cfg(*TINY_RL)
    micro = _micro_params(cfg, market, jax.random.split(jax.random.key(7), 2))
    s3 = rm.setup_phase3(cfg, market, meta, feats,
                         micro_params=jax.tree.map(lambda x: x[0], micro))
    hp = rm.stack_hparams(s3.hp, 2)
    pp = joint.micro_policy_params(micro, np.asarray(market.stock_sector), 2)
    val = joint.with_policy(s3.val_params, pp)
    state = jax.jit(lambda k, h: jax.lax.map(
        lambda a: s3.program.init(a[0], a[1], joint.with_policy(s3.train_params, jax.tree.map(
            lambda x: x[0], pp)), jax.tree.map(lambda x: x, rm.cur.stage_starts(1, s3.windows))),
        (k, h)))(rm.phase3_keys(0, 2), hp)
    # give the two Macro seeds the SAME params so any difference comes from the Micro partner
    params = jax.tree.map(lambda x: jnp.broadcast_to(x[0], x.shape), state.train.params)
    key = jax.random.key(1)
    ev = jax.jit(jax.vmap(s3.program.evaluate, in_axes=(0, joint.seed_axes(val), None, None)))(
        params, val, s3.eval_days, key)
    one = jax.jit(s3.program.evaluate)
    for k in range(2):
        own = joint.with_policy(s3.val_params, jax.tree.map(lambda x, k=k: x[k], pp))
        ref = one(jax.tree.map(lambda x, k=k: x[k], params), own, s3.eval_days, key)
        np.testing.assert_allclose(np.asarray(ev["episode_sharpe"][k]),
                                   np.asarray(ref["episode_sharpe"]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(ev["episode_sharpe"][0]),
                           np.asarray(ev["episode_sharpe"][1]))


def test_joint_config_is_checked():
    with pytest.raises(ConfigError, match=r"'train\.joint\.rounds' = 0 must be >= 1"):
        smoke_cfg("train.joint.rounds=0")
    with pytest.raises(ConfigError, match=r"'train\.joint\.lr_scale' = 0\.0 must be in \(0, 10\]"):
        smoke_cfg("train.joint.lr_scale=0")


def test_phase5_without_phase3_says_what_to_run(tmp_path, smoke_market):
    from hrl_sarp_jax.checkpointing import create_run
    from hrl_sarp_jax.errors import CheckpointError

    _, market, meta, feats, _ = smoke_market
    cfg = smoke_cfg(*TINY_RL)
    run = create_run(tmp_path, "r", cfg, "fp", resume=False)
    with pytest.raises(CheckpointError, match="--phase 3"):
        joint.run_phase5(run, cfg, market, meta, feats)


@pytest.mark.slow  # the whole curriculum twice (~10 min on a loaded 2-core CPU)
def test_phase_all_then_interrupted_phase5_resumes_exactly(tmp_path, smoke_market):
    from hrl_sarp_jax.checkpointing import PhaseCheckpointer, open_run, read_phase_summary
    from hrl_sarp_jax.cli import main

    market_dir, market, meta, feats, _ = smoke_market
    sets = [a for s in [*TINY_RL] for a in ("--set", s)]
    from tests.training.conftest import FAST

    sets += [a for s in FAST for a in ("--set", s)]
    base = ["train", "--config", "smoke", *sets, "--data", str(market_dir),
            "--checkpoints", str(tmp_path)]
    assert main([*base, "--phase", "all", "--run", "full"]) == 0
    run = open_run(tmp_path / "full")
    for k in (1, 2, 3, 4, 5):
        assert read_phase_summary(run, k) is not None, k
    s5 = read_phase_summary(run, 5)
    for key in ("env_steps", "wall_s", "val_sharpe", "val_equal_weight_sharpe",
                "val_goal_alignment"):
        assert np.isfinite(s5[key]), key
    assert s5["rounds"] == 2 and len(s5["per_seed"]["val_sharpe"]) == 2
    assert s5["macro_env_steps"] == 2 * 2 * 8 and s5["micro_env_steps"] == 2 * 2 * 128
    # Phase 5's Micro block runs Phase 4's own programs (same lowered program: the compile
    # is a cache hit), since both pair Micro seed k with Macro seed k
    s4 = read_phase_summary(run, 4)
    assert s5["programs"]["chunk4"] == s4["programs"]["chunk"]
    assert s5["programs"]["eval4"] == s4["programs"]["evaluate"]
    assert s5["programs"]["chunk3"] != s5["programs"]["chunk4"]
    # and its Macro block runs Phase 3's own programs (the Micro allocator mapped per seed in
    # both, the learning-rate schedule's lengths traced, Phase 3-sized chunks)
    s3 = read_phase_summary(run, 3)
    assert s5["programs"]["chunk3"] == s3["programs"]["chunk"]
    assert s5["programs"]["eval3"] == s3["programs"]["evaluate"]

    # the same run, Phase 5 interrupted after one round and resumed
    import shutil

    part = tmp_path / "part"
    shutil.copytree(tmp_path / "full", part)
    shutil.rmtree(part / "phase5")
    cfg = smoke_cfg(*TINY_RL)
    prun = open_run(part)
    _check_ladder(run, prun, cfg, smoke_market, tmp_path)
    joint.run_phase5(prun, cfg, market, meta, feats, round_limit=1)
    resumed = joint.run_phase5(prun, cfg, market, meta, feats, resume=True)
    assert resumed["resumed_from_step"] == 1
    assert resumed["val_sharpe"] == s5["val_sharpe"]
    with PhaseCheckpointer(run, 5, read_only=True) as a, \
            PhaseCheckpointer(prun, 5, read_only=True) as b:
        assert a.latest_step() == b.latest_step() == 2
    pol_a = joint.load_phase5_policy(run, cfg, market, meta, feats, "latest")
    pol_b = joint.load_phase5_policy(prun, cfg, market, meta, feats, "latest")
    for x, y in zip(jax.tree.leaves((pol_a.macro_actor, pol_a.micro_actor)),
                    jax.tree.leaves((pol_b.macro_actor, pol_b.micro_actor)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert json.loads((tmp_path / "full" / "phase5" / "summary.json").read_text())["seeds"] == 2

    # with a huge checkpoint margin, interrupted and resumed (round 0's per-episode Sharpes come
    # back from the checkpoint): 'best' stays round 0, the un-fine-tuned pair
    import dataclasses

    marg = tmp_path / "margin"
    shutil.copytree(tmp_path / "full", marg)
    shutil.rmtree(marg / "phase5")
    mcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_margin=1e6))
    mrun = open_run(marg)
    joint.run_phase5(mrun, mcfg, market, meta, feats, round_limit=1)
    kept = joint.run_phase5(mrun, mcfg, market, meta, feats, resume=True)
    assert kept["resumed_from_step"] == 1 and kept["best_step"] == 0
    round0 = next(r for r in run.read_metrics() if r["phase"] == 5 and r["step"] == 0)
    assert kept["best_select"] == pytest.approx(round0["val_sharpe"])
    with PhaseCheckpointer(mrun, 5, read_only=True) as ck:
        assert ck.metrics(2)["val_select"] < ck.metrics(2)["val_sharpe"] - 1.0


def _check_ladder(run, without5, cfg, smoke_market, tmp_path):
    """The hierarchy after each RL phase (``training.policy.phase_ladder``): after Phase 4 it
    is the policy of the same run without Phase 5, after Phase 3 Phase 3's Macro with Phase
    2's Micro; ``evaluate`` backtests each rung as the agent and reports per-seed Sharpe
    differences between consecutive rungs."""
    from hrl_sarp_jax.evaluation.stats import annual_sharpe
    from hrl_sarp_jax.pipeline import AGENT, PRETRAINED, evaluate_run, rung_name
    from hrl_sarp_jax.training.policy import load_policy, load_pretrained_policy, phase_ladder

    market_dir, market, meta, feats, _ = smoke_market
    final = load_policy(run, cfg, market, meta, feats)
    rungs = dict(phase_ladder(run, cfg, market, meta, feats, final))
    assert sorted(rungs) == [3, 4] and final.source["macro"].startswith("phase 5")
    before5 = load_policy(without5, cfg, market, meta, feats)
    pre = load_pretrained_policy(run, cfg, market, meta, feats)
    assert rungs[4].source == before5.source
    assert rungs[3].source["macro"] == rungs[4].source["macro"]
    assert rungs[3].source["macro"].startswith("phase 3")
    assert rungs[3].source["micro"] == pre.source["micro"]
    leaves = lambda p, level: jax.tree.leaves(getattr(p, level))  # noqa: E731
    for a, b in [(rungs[4], before5), (rungs[3], rungs[4]), (rungs[3], pre)]:
        level = "micro_actor" if b is pre else "macro_actor"
        for x, y in zip(leaves(a, level), leaves(b, level), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ConfigError, match="after phase 1"):
        load_policy(run, cfg, market, meta, feats, upto=1)

    kw = {"split": "val", "market_dir": market_dir, "include": ("equal_weight",),
          "historical": False, "bootstrap_num": 50, "seeds_for_random": 1,
          "return_payload": True}
    out = evaluate_run(run, cfg, market, meta, feats, out_dir=tmp_path / "val", **kw)
    rows = out["ladder"]["rows"]
    names = [PRETRAINED, rung_name(3), rung_name(4), AGENT]
    assert [r["strategy"] for r in rows] == names
    nets = {n: out["payload"]["strategies"][n]["per_seed_net"] for n in names}
    for prev, row in zip(names, rows[1:], strict=False):
        np.testing.assert_allclose(row["vs_previous"]["per_seed"]["diff"],
                                   annual_sharpe(nets[row["strategy"]]) - annual_sharpe(nets[prev]),
                                   atol=1e-9)
    assert "What each training phase added" in (tmp_path / "val" / "report.md").read_text()
    # the rung after Phase 4 is the agent of the run without Phase 5 (the same backtest)
    sub = evaluate_run(without5, cfg, market, meta, feats, out_dir=tmp_path / "val4",
                       ladder=False, **kw)
    np.testing.assert_allclose(sub["payload"]["strategies"][AGENT]["per_seed_net"],
                               nets[rung_name(4)], rtol=0, atol=1e-12)
    assert sub["ladder"] is None
