"""Checkpoint selection with a margin over the starting policy (training/selection.py):
hand-computed values, and the PPO loop keeping its start when no trained checkpoint clears it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import PhaseCheckpointer, create_run
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training.selection import (
    SELECT_METRIC,
    START_KEY,
    effective_windows,
    improvement_se,
    saved_start,
    seeds_vs_start,
    selection_score,
    summary_fields,
    vs_start_line,
)
from tests.training.test_rl_macro import host_inputs


def test_effective_windows_by_hand():
    # starts 0..30 every 10 days, episodes of 2 weeks (10 days): 1 + 30/10 = 4 windows
    assert effective_windows(np.array([0, 10, 20, 30]), 2) == pytest.approx(4.0)
    # heavily overlapping 26-week episodes 5 days apart: 1 + 10/130 windows, not 3
    assert effective_windows(np.array([0, 5, 10]), 26) == pytest.approx(1.0 + 10 / 130)
    # never more windows than episodes: 2 starts 1,000 days apart are 2 windows
    assert effective_windows(np.array([0, 1000]), 1) == pytest.approx(2.0)
    # a pool of two markets [M, E]: the markets' windows add up (2 + 2)
    assert effective_windows(np.array([[0, 130], [0, 260]]), 26) == pytest.approx(4.0)


def test_improvement_se_pairs_episodes_and_averages_seeds_first():
    start = np.zeros((2, 3))
    now = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    # d = [1, 2, 3]: sd 1 (ddof 1), 4 windows -> 1 / 2
    assert improvement_se(now, start, 4.0) == pytest.approx(0.5)
    # a common shift of every episode is no noise: the paired difference has sd 0
    assert improvement_se(start + 0.7, start, 4.0) == pytest.approx(0.0)
    # seeds are averaged before the sd over episodes: opposite seed noise cancels
    noisy = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    assert improvement_se(noisy, start, 1.0) == pytest.approx(0.0)
    # one episode: no spread to estimate
    assert improvement_se(np.ones((2, 1)), np.zeros((2, 1)), 1.0) == 0.0
    with pytest.raises(ValueError, match="same seeds and episodes"):
        improvement_se(np.zeros((2, 3)), np.zeros((2, 4)), 1.0)


def test_selection_score_by_hand():
    start = np.zeros((1, 3))
    now = np.array([[1.0, 2.0, 3.0]])
    assert selection_score(2.0, now, start, 4.0, 2.0) == pytest.approx(2.0 - 2 * 0.5)
    assert selection_score(2.0, now, start, 4.0, 0.0) == 2.0  # no margin: the value
    assert selection_score(2.0, now, None, 4.0, 2.0) == 2.0   # nothing to pair with
    assert selection_score(2.0, start, start, 4.0, 2.0) == 2.0  # the start itself: se 0


def test_seeds_vs_start_by_hand():
    start = np.zeros((2, 3))
    now = np.array([[1.0, 2.0, 3.0],     # +2 with se 1/2 (4 windows): improved
                    [0.1, -0.1, 0.3]])   # +0.1 with se 0.2/2 = 0.1: not by more than one se
    out = seeds_vs_start(now, start, 4.0)
    assert out["diff"] == pytest.approx([2.0, 0.1])
    assert out["se"] == pytest.approx([0.5, 0.1])
    assert out["improved_seeds"] == 1


def test_bad_margin_is_a_config_error_naming_the_key():
    cfg, *_ = host_inputs()
    with pytest.raises(ConfigError, match=r"'train\.checkpoint_margin' = -1\.0 must be >= 0"):
        dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_margin=-1.0))


def test_phase3_with_a_huge_margin_keeps_its_starting_policy(tmp_path):
    # episodes (the validation Sharpe is the episodes' mean, so the per-seed change below is
    # its change; under continuous validation the margin reads the walk's blocks: Phase 4's
    # resume test)
    cfg, market, meta, feats = host_inputs()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_margin=1e6,
                                                             validation="episodes"))
    run = create_run(tmp_path, "margin", cfg, "fp", resume=False)
    summary = rm.run_phase3(run, cfg, market, meta, feats)
    assert summary["updates"] == 6 and summary["checkpoint_margin"] == 1e6
    evals = {r["step"]: r["val_sharpe"] for r in run.read_metrics()
             if r["phase"] == 3 and r.get("eval")}
    assert sorted(evals) == [0, 2, 4, 6]
    # the trained policies differ from the start on validation, so each pays the margin
    assert len({round(v, 9) for v in evals.values()}) > 1
    assert summary["best_step"] == 0
    assert summary["best_select"] == pytest.approx(evals[0])
    # the summary's per-seed change of the final policy over the start is the validation
    # metric's change (means over episodes, then over seeds)
    vs = summary["final_vs_start"]
    assert np.mean(vs["diff"]) == pytest.approx(evals[6] - evals[0], rel=1e-5)
    assert len(vs["se"]) == 2 and all(se > 0 for se in vs["se"])
    assert vs["improved_seeds"] == sum(d > se for d, se in zip(vs["diff"], vs["se"], strict=True))
    with PhaseCheckpointer(run, 3, read_only=True) as ck:
        for step in ck.all_steps():
            m = ck.metrics(step)
            if step == 0:
                assert m[SELECT_METRIC] == pytest.approx(m["val_sharpe"])
            else:
                assert m[SELECT_METRIC] < m["val_sharpe"] - 1.0


def test_saved_start_and_summary_fields_by_hand():
    start = np.array([[0.5, -0.25]])
    assert saved_start({START_KEY: start.tolist()}).tolist() == start.tolist()
    assert saved_start({}) is None  # a checkpoint saved before the start was recorded
    vs = {"diff": [0.1], "se": [0.2], "improved_seeds": 0}
    assert summary_fields(0.0, 4.0, {SELECT_METRIC: 1.0}, None) == {}
    assert summary_fields(0.0, 4.0, None, vs) == {"final_vs_start": vs}
    assert summary_fields(1.0, 4.0, {SELECT_METRIC: 1.5}, vs) == {
        "checkpoint_margin": 1.0, "val_windows": 4.0, "best_select": 1.5, "final_vs_start": vs}
    assert summary_fields(1.0, 4.0, None, None)["best_select"] is None
    assert vs_start_line("phase 3", "policy", vs) == (
        "phase 3: the final policy beats its start on validation by more than one standard "
        "error for 0 of 1 seed(s) (mean change +0.100, SE 0.200)")


def test_ranked_checkpoints_rank_save_refuse_and_resume_by_hand(tmp_path):
    """The checkpoint bookkeeping every RL loop shares: step 0 is the start (score = its
    value), a trained step pays the margin times its paired SE, the start travels with every
    checkpoint and comes back on resume, a fresh run refuses existing steps."""
    from hrl_sarp_jax.config import Config
    from hrl_sarp_jax.errors import CheckpointError
    from hrl_sarp_jax.training.selection import RankedCheckpoints

    run = create_run(tmp_path, "ranked", Config(), "fp", resume=False)
    state = {"w": np.arange(3.0, dtype=np.float32)}
    start = np.array([[1.0, 0.0, 2.0, 1.0]])                 # [K=1, E=4]
    later = start + np.array([[0.9, 1.1, 0.7, 1.3]])         # +1.0 mean, sd 0.2582
    said: list[str] = []
    with RankedCheckpoints(run, 3, label="phase 3", metric="val_sharpe", margin=2.0,
                           keep_latest=3, resume=False) as ranked:
        ranked.windows = 4.0
        assert ranked.restore_latest(state) is None
        ranked.set_start(start)
        m0 = ranked.save(0, state, {"val_sharpe": 1.0}, {"seeds": 1}, 1.0, start)
        m1 = ranked.save(8, {"w": state["w"] + 1}, {"val_sharpe": 2.0}, {"seeds": 1}, 2.0, later)
        ranked.finish()
        assert m0[SELECT_METRIC] == 1.0
        se = np.std([0.9, 1.1, 0.7, 1.3], ddof=1) / 2.0       # sqrt(4 windows)
        assert m1[SELECT_METRIC] == pytest.approx(2.0 - 2.0 * se)
        assert ranked.best_step == 8 and ranked.latest_step == 8
        out = ranked.summary(later, "policy", said.append)
    assert out["best_select"] == pytest.approx(2.0 - 2.0 * se)
    assert out["final_vs_start"]["diff"] == [pytest.approx(1.0)]
    assert out["final_vs_start"]["improved_seeds"] == 1
    assert out["resumed_from_step"] is None and out["checkpoint_margin"] == 2.0
    assert said == [vs_start_line("phase 3", "policy", out["final_vs_start"])]
    with pytest.raises(CheckpointError, match=r"phase 3 of run ranked already has checkpoints "
                                              r"\(steps \[0, 8\]\); pass --resume"):
        RankedCheckpoints(run, 3, label="phase 3", metric="val_sharpe", margin=2.0,
                          keep_latest=3, resume=False)
    with RankedCheckpoints(run, 3, label="phase 3", metric="val_sharpe", margin=2.0,
                           keep_latest=3, resume=True) as again:
        got, user = again.restore_latest(state)
        assert again.resumed_from == 8 and user["seeds"] == 1
        np.testing.assert_array_equal(got["w"], state["w"] + 1)
        np.testing.assert_array_equal(again.start, start)   # the start came back with it
    # without a margin the validation metric itself ranks, and no score is added
    plain = create_run(tmp_path, "plain", Config(), "fp", resume=False)
    with RankedCheckpoints(plain, 4, label="phase 4", metric="val_goal_alignment", margin=0.0,
                           keep_latest=3, resume=False) as r4:
        saved = r4.save(0, state, {"val_goal_alignment": 0.5}, {}, 0.5, start)
        assert SELECT_METRIC not in saved
        r4.finish()
        assert r4.summary(start, "actor") == {"best_step": 0, "latest_step": 0,
                                              "resumed_from_step": None}
