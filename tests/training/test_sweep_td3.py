"""A Phase-4 (Micro TD3+HER) sweep: settings × seeds as one program (training.sweep_td3)."""

from __future__ import annotations

import dataclasses
import types

import jax
import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import create_run, open_run, read_phase_summary
from hrl_sarp_jax.config import Config, DataConfig, TD3Config, TrainConfig
from hrl_sarp_jax.evaluation import overfitting as of
from hrl_sarp_jax.training import rl_micro as rmi
from hrl_sarp_jax.training import sweep as sw
from hrl_sarp_jax.training import sweep_td3 as st
from hrl_sarp_jax.training.policy import load_phase4_micro_all
from tests.envs.make_inputs import make_dates
from tests.training.test_rl_micro import PROBE_ENV, TINY_NET, T, _market


def _spec(params: dict, seeds: int = 2, **kw) -> sw.SweepSpec:
    return sw.parse_sweep({"phase": 4, "params": params, "seeds": seeds, **kw})


def test_members_carry_their_settings_td3_values_and_the_her_ratio():
    """Grid (last key fastest) × 2 seeds: member m has setting m // 2's values; her_k k sets
    the ratio k / (k + 1); keys not swept keep the config's."""
    cfg = Config(train=TrainConfig(td3=TD3Config(critic_lr=7e-4, her_k=4)))
    spec = _spec({"td3.actor_lr": [1e-3, 1e-4], "td3.her_k": [1, 3]})
    settings = sw.sweep_settings(spec, 0)
    assert settings == [{"td3.actor_lr": 1e-3, "td3.her_k": 1.0},
                        {"td3.actor_lr": 1e-3, "td3.her_k": 3.0},
                        {"td3.actor_lr": 1e-4, "td3.her_k": 1.0},
                        {"td3.actor_lr": 1e-4, "td3.her_k": 3.0}]
    hp = st.member_hparams(cfg, settings, 2)
    np.testing.assert_array_equal(
        np.asarray(hp.td3.actor_lr), np.float32([1e-3] * 4 + [1e-4] * 4))
    np.testing.assert_allclose(np.asarray(hp.her_ratio), [0.5, 0.5, 0.75, 0.75] * 2, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(hp.td3.critic_lr), np.float32([7e-4] * 8))
    # a member's values are those of a standalone run with its setting
    alone = rmi.Phase4HParams.from_config(sw.settings_config(cfg, settings[3], 2).train.td3)
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(hp), strict=True):
        assert np.asarray(b)[7] == np.asarray(a)
    cfg_s = sw.settings_config(cfg, settings[1], 5)
    assert cfg_s.train.td3.her_k == 3 and isinstance(cfg_s.train.td3.her_k, int)
    assert cfg_s.train.seeds == 5 and cfg_s.train.ppo == cfg.train.ppo


def test_member_keys_are_the_seed_keys_for_every_setting():
    keys = st.member_keys(7, 3, 2)
    train_keys, _ = rmi.phase4_keys(7, 2)
    data = np.asarray(jax.random.key_data(keys))
    want = np.asarray(jax.random.key_data(train_keys))
    for m in range(6):
        np.testing.assert_array_equal(data[m], want[m % 2])


def test_a_swept_td3_anchor_anchors_the_shared_program_only():
    cfg = Config()
    out = sw.anchored_config(cfg, [{"td3.anchor_kl_coef": 0.0}, {"td3.anchor_kl_coef": 2.0}])
    assert out.train.td3.anchor_kl_coef == 2.0 and out.train.ppo == cfg.train.ppo
    assert sw.anchored_config(cfg, [{"td3.tau": 0.01}]) == cfg


def test_daily_walks_compound_into_the_weeks_that_end_in_them():
    """Decision day 0 + i, outcome day i + 1; week ends on days 2 and 4: outcome days 1-2 and
    3-4 make the two weeks, days 5-6 (no week end yet) are left out. Member 1 dies after its
    third day: its second week is not live and counts that day only."""
    week_end = np.array([False, False, True, False, True, False, False])
    r = np.array([[0.01, -0.02, 0.03, 0.005, 0.1, -0.1],
                  [0.02, 0.01, -0.01, 0.5, 0.5, 0.5]])
    alive = np.array([[True] * 6, [True, True, True, False, False, False]])
    weekly, live, ended = st.weekly_from_daily(r, alive, week_end, 0)
    np.testing.assert_allclose(weekly, [[1.01 * 0.98 - 1, 1.03 * 1.005 - 1],
                                        [1.02 * 1.01 - 1, 0.99 - 1]], rtol=1e-12)
    np.testing.assert_array_equal(live, [[True, True], [True, False]])
    np.testing.assert_array_equal(ended, [True, False])
    # starting later (day0 = 1): outcome days 2..7 with week ends 2 and 4
    weekly1, _, _ = st.weekly_from_daily(r[:, :5], alive[:, :5], week_end, 1)
    np.testing.assert_allclose(weekly1[0], [0.01, 0.98 * 1.03 - 1], rtol=1e-12)


# --------------------------------------------------------------------------- one tiny sweep


def _cfg() -> tuple[Config, object, object, object]:
    market, feats = _market()
    dates = make_dates(T, 0)
    meta = types.SimpleNamespace(dates=dates)
    td3 = TD3Config(num_envs=2, batch_size=16, buffer_episodes=4, total_env_steps=64,
                    warmup_transitions=6, critic_lr=3e-3, gamma=0.5, tau=0.05)
    cfg = Config(data=DataConfig(val_start=str(dates[180]), test_start=str(dates[T - 1])),
                 env=PROBE_ENV, networks=TINY_NET,
                 train=TrainConfig(seeds=2, td3=td3, eval_interval=1, keep_latest=2))
    return cfg, market, meta, feats


@pytest.fixture(scope="module")
def tiny_td3_sweep(tmp_path_factory):
    """3 settings × 2 seeds of Phase 4 in one program (sampled goals, a random start actor:
    the run has no Phases 2-3): settings 0 and 2 are equal."""
    cfg, market, meta, feats = _cfg()
    spec = _spec({"td3.actor_lr": [3e-3, 1e-5, 3e-3]})
    root = tmp_path_factory.mktemp("td3sweep")
    run = create_run(root, "tiny", cfg, "fp", resume=False)
    lines: list[str] = []
    out = sw.run_sweep(run, cfg, spec, market, meta, feats, log=lines.append,
                       overfitting=of.selection_overfitting)
    return out, run, cfg, spec, (market, meta, feats), root


def _latest(run, cfg, inputs, members):
    _, macro = st._setup(run, cfg, *inputs, members)
    return st._latest_state(run, cfg, *inputs, macro)


def test_td3_sweep_members_are_their_settings_runs(tiny_td3_sweep):
    """Per-member records equal Phase 4's per-seed metrics; equal settings train equal
    members bit for bit; the members of setting 1 are a standalone 2-seed Phase 4 with its
    value (the same key streams exactly, the parameters up to float rounding), and differ
    from setting 0's, whose actor learning rate is 300 times larger."""
    out, run, cfg, spec, inputs, root = tiny_td3_sweep
    summary = out["phase4"]
    assert out["phase"] == 4 and summary["seeds"] == 6 and summary["updates_per_seed"] > 20
    for i, rec in enumerate(out["results"]):
        assert (rec["setting"], rec["seed"]) == (i // 2, i % 2)
        for key in st.METRICS:
            assert rec[key] == summary["per_seed"][key][i], key
    for a, b in zip(out["results"][:2], out["results"][4:], strict=True):
        assert a["val_sharpe"] == b["val_sharpe"] and a[sw.WEEKLY] == b[sw.WEEKLY]
    settings = sw.sweep_settings(spec, cfg.seed)
    alone = create_run(root, "alone", sw.settings_config(cfg, settings[1], 2), "fp",
                       resume=False)
    rmi.run_phase4(alone, alone.config, *inputs, seeds=2)
    swept, _, _ = _latest(run, cfg, inputs, 6)
    single, _, _ = _latest(alone, alone.config, inputs, 2)
    np.testing.assert_array_equal(np.asarray(swept.env_state.start)[2:4],
                                  np.asarray(single.env_state.start))
    np.testing.assert_array_equal(np.asarray(swept.buffer.data.obs.day)[2:4],
                                  np.asarray(single.buffer.data.obs.day))
    gap = []
    for a, b in zip(jax.tree.leaves(swept.agent.actor_params),
                    jax.tree.leaves(single.agent.actor_params), strict=True):
        a = np.asarray(a, np.float64)
        np.testing.assert_allclose(a[2:4], np.asarray(b, np.float64), atol=2e-3)
        gap.append(np.abs(a[0:2] - a[2:4]).max())
    assert max(gap) > 1e-2


def test_td3_sweep_ranks_walks_and_saves_a_best_run_that_continues(tiny_td3_sweep):
    out, run, cfg, spec, inputs, _ = tiny_td3_sweep
    ranking = out["ranking"]
    sharpe = np.array([r["val_sharpe"] for r in out["results"]]).reshape(3, 2)
    assert [r["setting"] for r in ranking] == list(np.argsort(-sharpe.mean(1), kind="stable"))
    md = out["paths"]["ranking_md"].read_text()
    assert "| rank | setting | td3.actor_lr |" in md and "goal alignment" in md
    assert "phase 4" in md.splitlines()[0]
    # the walk: one episode from the validation split's first start day to its end
    walk = out["overfitting"]["walk"]
    market = inputs[0]
    day0 = int(np.searchsorted(np.asarray(inputs[1].dates), np.datetime64(walk["start"])))
    weeks = int(np.asarray(market.week_end, bool)[day0 + 1: T - 1].sum())
    assert walk["weeks"] == weeks == len(out["results"][0][sw.WEEKLY])
    assert out["overfitting"]["pbo"] is not None
    # best/: the best setting's two seeds, restorable under the best run's own config
    best = ranking[0]["setting"]
    best_run = open_run(out["paths"]["best_run"])
    assert best_run.config.train.td3.actor_lr == sw.sweep_settings(spec, 0)[best]["td3.actor_lr"]
    assert best_run.config.train.seeds == 2
    saved = read_phase_summary(best_run, 4)
    assert saved["seeds"] == 2 and saved["sweep"]["members"] == [2 * best, 2 * best + 1]
    assert saved["per_seed"]["val_sharpe"] == [r["val_sharpe"] for r in out["results"]
                                               if r["setting"] == best]
    full, _, _ = _latest(run, cfg, inputs, 6)
    kept, _, _ = _latest(best_run, best_run.config, inputs, 2)
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(kept), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[2 * best: 2 * best + 2], b)
    best_cfg = dataclasses.replace(best_run.config, train=dataclasses.replace(
        best_run.config.train, checkpoint="latest"))
    actor, source = load_phase4_micro_all(best_run, best_cfg, *inputs)
    assert "2 seed(s)" in source
    for a, b in zip(jax.tree.leaves(actor), jax.tree.leaves(kept.agent.actor_params),
                    strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_td3_sweep_presets_parse_into_phase4_grids():
    from hrl_sarp_jax.config import PRESETS_DIR

    cfg, spec = sw.load_sweep_config(PRESETS_DIR / "sweep_td3_smoke.yaml")
    assert (spec.phase, spec.seeds, len(sw.sweep_settings(spec, 0))) == (4, 2, 4)
    assert cfg.train.td3.warmup_transitions == 128
    _, gpu = sw.load_sweep_config(PRESETS_DIR / "sweep_td3.yaml")
    assert (gpu.phase, gpu.seeds, len(sw.sweep_settings(gpu, 0))) == (4, 4, 18)
    assert gpu.names == ("td3.actor_lr", "td3.anchor_kl_coef", "td3.tau")
