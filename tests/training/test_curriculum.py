"""Curriculum: stage start sets from regimes and drawdowns, the promotion rule, and that moving
between stages neither retraces the compiled program nor lets episodes start elsewhere."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.envs.macro import MacroEnv
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training.ppo_engine import step_envs
from hrl_sarp_jax.types import BEAR, BULL, SIDEWAYS
from tests.envs.make_inputs import make_inputs


def test_largest_drawdowns_hand_computed():
    # wealth: 1, 1.1, 0.88 (-20% from 1.1), 0.968, 1.1616 (new high), 1.04544 (-10%), 1.1616
    r = np.array([0.0, 0.1, -0.2, 0.1, 0.2, -0.1, 1 / 9])
    assert cur.largest_drawdowns(r, 3) == [(1, 2), (4, 5)]
    assert cur.largest_drawdowns(r, 1) == [(1, 2)]
    assert cur.largest_drawdowns(np.full(5, 0.01), 2) == []   # never down


def test_stage_sets_follow_regimes_and_drawdowns():
    t = 60
    week_end = np.zeros(t, bool)
    week_end[4::5] = True                                   # days 4, 9, ..., 59
    regime = np.full(t, SIDEWAYS, np.int32)
    regime[:20] = BULL
    regime[40:50] = BEAR
    bench = np.full(t, 0.001)
    bench[25:28] = -0.05                                    # the one big drawdown: peak 24
    windows, info = cur.build_stage_windows(week_end, regime, bench, 0, 54, 59,
                                            cur.CurriculumRule(stress_drawdowns=1,
                                                               stress_lead_weeks=1))
    days = lambda k: np.asarray(windows.days[k])[: int(windows.count[k])]  # noqa: E731
    np.testing.assert_array_equal(days(0), [4, 9, 14, 19])                  # bull week ends
    np.testing.assert_array_equal(days(1), np.arange(4, 55, 5))             # all, <= 54
    # drawdown: peak day 24, trough day 27, lead 1 week end before the peak -> from day 19;
    # bear week ends 44, 49
    assert info["stress_drawdowns"] == [[24, 27]]
    np.testing.assert_array_equal(days(2), [19, 24, 44, 49])
    lo, hi = cur.stage_window(2, windows)
    assert (int(lo), int(hi)) == (19, 49)
    assert info["fallback_to_mixed"] == []
    # no bull week at all: stage 0 falls back to the mixed set, and says so
    w2, info2 = cur.build_stage_windows(week_end, np.full(t, BEAR, np.int32), bench, 0, 54, 59)
    np.testing.assert_array_equal(np.asarray(w2.days[0])[: int(w2.count[0])], days(1))
    assert info2["fallback_to_mixed"] == ["bull"]


def test_start_set_width_counts_from_width_lo_in_buckets_and_draws_ignore_it():
    """W = the week ends in [width_lo, start_hi] rounded up to START_SET_BUCKET (16): two
    markets of one training span but other warm-ups (walk-forward folds) get one W; the padding
    is never drawn, so the draws are those of the unpadded set."""
    t = 400
    week_end = np.zeros(t, bool)
    week_end[4::5] = True                                   # days 4, 9, ..., 399
    regime = np.full(t, SIDEWAYS, np.int32)
    bench = np.full(t, 0.001)
    late, _ = cur.build_stage_windows(week_end, regime, bench, 100, 300, 350)
    # week ends in [100, 300]: 104, ..., 299 -> 40 -> W = 48
    assert int(late.count[1]) == 40 and late.days.shape == (3, 48)
    early, _ = cur.build_stage_windows(week_end, regime, bench, 30, 300, 350)
    wide, _ = cur.build_stage_windows(week_end, regime, bench, 100, 300, 350, width_lo=0)
    # [0, 300]: 60 week ends -> W = 64, whatever the warm-up (start_lo 30 or 100)
    assert early.days.shape == (3, 64) and wide.days.shape == (3, 64)
    assert int(wide.count[1]) == 40
    np.testing.assert_array_equal(np.asarray(wide.days[1])[:40], np.asarray(late.days[1])[:40])
    key = jax.random.key(3)
    for k in range(3):
        a = cur.sample_start_days(key, cur.stage_starts(k, late), (500,))
        b = cur.sample_start_days(key, cur.stage_starts(k, wide), (500,))
        np.testing.assert_array_equal(a, b)
        assert int(jnp.min(a)) >= 104 and int(jnp.max(a)) <= 299


def test_promotion_rule():
    rule = cur.CurriculumRule(promote_sharpe=(0.5, 0.3), min_updates=(10, 10),
                              max_fraction=(0.2, 0.6))
    # enough updates in the stage and the Sharpe threshold met
    assert cur.promote(0, 0.6, 10, 50, 1000, rule)
    assert not cur.promote(0, 0.6, 9, 50, 1000, rule)       # too early in the stage
    assert not cur.promote(0, 0.4, 50, 50, 1000, rule)      # below the threshold
    assert not cur.promote(0, float("nan"), 50, 50, 1000, rule)
    # the stage's budget is spent: promote regardless
    assert cur.promote(0, -1.0, 1, 200, 1000, rule)
    assert cur.promote(1, 0.3, 10, 300, 1000, rule)
    assert not cur.promote(1, 0.29, 10, 300, 1000, rule)
    assert cur.promote(1, -5.0, 0, 600, 1000, rule)
    assert not cur.promote(2, 10.0, 999, 999, 1000, rule)   # the last stage is final
    off = cur.CurriculumRule(enabled=False)
    assert cur.initial_stage(off) == 1 and not cur.promote(1, 10.0, 999, 999, 1000, off)


def test_changing_stage_does_not_retrace_and_starts_stay_inside_the_stage():
    t, n, s, fs = 160, 6, 2, 3
    market, feats = make_inputs(num_days=t, num_stocks=n, num_sectors=s, sector_features=fs)
    env = MacroEnv(n, s, fs)
    params = MacroEnv.make_params(market, feats, EnvConfig(macro_episode_weeks=2))
    we = np.asarray(market.week_end)
    regime = np.where(np.arange(t) < 70, BULL, BEAR).astype(np.int32)
    windows, _ = cur.build_stage_windows(we, regime, np.asarray(market.benchmark_returns),
                                         int(params.start_lo), int(params.start_hi),
                                         int(params.t_hi))
    traces = []

    @jax.jit
    def starts_seen(stage, key):
        traces.append(stage)
        starts = cur.stage_starts(stage, windows)
        e = 4
        reset_key, run_key = jax.random.split(key)
        first = cur.sample_start_days(reset_key, starts, (e,))
        _, st = jax.vmap(lambda k, d: env.reset(k, params.replace(start_lo=d, start_hi=d)))(
            jax.random.split(reset_key, e), first)
        action = jnp.full((e, s + 3), 0.5, jnp.float32)

        def body(st, k):
            start_key, env_key = jax.random.split(k)
            days = cur.sample_start_days(start_key, starts, (e,))
            _, st, _, _, _, _ = step_envs(env, params, jax.random.split(env_key, e), st,
                                          action, days)
            return st, st.start

        _, seen = jax.lax.scan(body, st, jax.random.split(run_key, 12))
        return jnp.concatenate([st.start[None], seen])      # [13, E]

    for stage in (0, 1, 2, 0):
        seen = np.asarray(starts_seen(jnp.int32(stage), jax.random.key(stage)))
        allowed = np.asarray(windows.days[stage])[: int(windows.count[stage])]
        assert np.isin(seen, allowed).all(), (stage, np.unique(seen), allowed)
        assert np.unique(seen).size >= 3                   # several starts, not one
    assert len(traces) == 1
    bull = np.asarray(windows.days[0])[: int(windows.count[0])]
    assert bull.max() < 70 and bull.size < int(windows.count[1])
