"""train.validation: the plans of weekly and daily validation walks, by hand."""

from __future__ import annotations

import itertools
import types

import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.training import validation as v


class _Params(types.SimpleNamespace):
    def replace(self, **kw):
        return _Params(**{**vars(self), **kw})


# week ends on days 4, 9, 14, ..., 49
WEEK_END = np.zeros(50, bool)
WEEK_END[4::5] = True


def test_weekly_plans_by_hand():
    params = _Params(max_steps_in_episode=3, t_hi=47)
    same, days = v.weekly_plan("episodes", WEEK_END, 10, 47, params, max_episodes=2)
    # week ends 14..44 in [10, 47]; 3 weeks must fit before 47: 14..29, every 2nd
    assert same is params and days.tolist() == [14, 24]
    cont, days = v.weekly_plan("continuous", WEEK_END, 10, 47, params)
    # from the first week end (14) every week end up to 47 (19..44: 6), plus one step
    assert days.tolist() == [14] and cont.max_steps_in_episode == 7 and cont.t_hi == 47
    assert v.block_steps("continuous") == v.BLOCK_WEEKS == 13
    assert v.block_steps("continuous", daily=True) == v.BLOCK_DAYS == 63
    assert v.block_steps("episodes") == 0
    with pytest.raises(ConfigError, match="no full week"):
        v.weekly_plan("continuous", WEEK_END, 40, 47, params)


def test_daily_plan_and_windows_by_hand():
    params = _Params(start_lo=100, start_hi=160, t_hi=229, max_steps_in_episode=20)
    assert v.daily_plan("episodes", params, 16) == (params, 16)
    cont, episodes = v.daily_plan("continuous", params, 16)
    assert episodes == 1 and (cont.start_lo, cont.start_hi) == (100, 100)
    assert cont.max_steps_in_episode == 129
    # 129 days in blocks of 63: two blocks (the remainder of 3 joins the second)
    assert v.windows(np.array([100]), 129, 63, steps_per_week=5) == 2.0
    # two markets' walks of 27 weeks in blocks of 13: 2 blocks each
    assert v.windows(np.array([[4], [4]]), 27, 13) == 4.0
    # episodes: effective_windows of the start days (span 20 days over 2-week episodes)
    assert v.windows(np.array([0, 10, 20]), 10, 0, steps_per_week=5) == pytest.approx(3.0)


def test_an_unknown_validation_kind_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.validation = 'weekly' is not one of "
                                          r"episodes, continuous"):
        v.block_steps("weekly")


def test_walk_windows_by_hand():
    """The days a continuous walk covers, as a backtest sees them, and its period returns."""
    walk = v.walk_window(WEEK_END, 10, 47)
    # from the first week end in [10, 47] (14) to the last one (44): weeks 14-19, ..., 39-44
    assert (walk.t0, walk.length, walk.periods, walk.periods_per_year) == (14, 30, 6, 52)
    assert walk.bounds.tolist() == [0, 5, 10, 15, 20, 25, 30]
    daily = v.walk_window(WEEK_END, 10, 47, daily=True)
    assert (daily.t0, daily.length, daily.periods, daily.periods_per_year) == (10, 37, 37, 252)
    r = np.linspace(-0.01, 0.02, 30)
    want = [np.prod(1.0 + r[a:b]) - 1.0 for a, b in itertools.pairwise(walk.bounds)]
    np.testing.assert_allclose(v.walk_returns(r, walk), want, rtol=1e-12)
    np.testing.assert_allclose(v.walk_returns(r[:37 - 7], daily._replace(
        bounds=np.arange(31))), r, rtol=1e-12)
    with pytest.raises(ConfigError, match="single day"):
        v.walk_window(WEEK_END, 47, 47, daily=True)


def test_validation_comparators_are_the_reports_baselines_over_the_walk(smoke_market, tmp_path):
    """An RL phase's summary gets plain 1/N and sector momentum over its continuous walk:
    the report's own baselines (``evaluate_baselines``) from cash over the walk's days,
    compounded into the walk's weeks (hand-cut here from the week ends) and scored as the
    walk is (mean / std x sqrt(52)); the daily walk of Phase 4 from the window's first day."""
    import dataclasses

    from hrl_sarp_jax.checkpointing import (
        create_run,
        data_fingerprint,
        read_phase_summary,
        write_phase_summary,
    )
    from hrl_sarp_jax.evaluation.evaluate import evaluate_baselines
    from hrl_sarp_jax.evaluation.report import rl_phases_line
    from hrl_sarp_jax.pipeline import record_validation_baselines, rl_phase_record

    market_dir, market, meta, feats, cfg = smoke_market
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, validation="continuous"))
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    lo = int(np.searchsorted(dates, np.datetime64(cfg.data.val_start)))
    hi = int(np.searchsorted(dates, np.datetime64(cfg.data.test_start))) - 1
    span = [str(dates[lo]), str(dates[hi])]
    run = create_run(tmp_path, "r", cfg, data_fingerprint(market_dir), resume=False)
    for phase in (3, 4, 5):
        write_phase_summary(run, phase, {"val_span": span, "val_sharpe": 0.5, "best_step": 7,
                                         "latest_step": 7})
    walks: dict = {}
    got = {k: record_validation_baselines(run, k, cfg, market, meta, feats, walks)
           for k in (3, 4, 5)}

    ends = np.flatnonzero(np.asarray(market.week_end, bool))
    ends = ends[(ends >= lo) & (ends <= hi)]
    t0, t_end = int(ends[0]), int(ends[-1])
    ref = evaluate_baselines(market, meta, feats, cfg, split=(str(dates[t0]), str(dates[t_end])),
                             include=["equal_weight", "sector_momentum"], risk_manager=True,
                             bootstrap_num=10, historical=False)
    vb = got[3]["val_baselines"]
    assert (vb["first_day"], vb["last_day"], vb["periods"]) == (str(dates[t0]),
                                                                str(dates[t_end]), ends.size - 1)
    for name in ("equal_weight", "sector_momentum"):
        daily = ref["strategies"][name]["series"]["net"]
        week = np.array([np.prod(1.0 + daily[a - t0:b - t0]) - 1.0
                         for a, b in itertools.pairwise(ends)])
        want = week.mean() / week.std(ddof=1) * np.sqrt(52)
        np.testing.assert_allclose(vb["strategies"][name]["sharpe"], want, rtol=1e-4)
        np.testing.assert_allclose(vb["strategies"][name]["return"], np.prod(1.0 + week) - 1.0,
                                   rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(vb["val_sharpe_minus"][name], 0.5 - want, rtol=1e-4)
    # Phase 5 walks Phase 3's weeks (one computation), Phase 4 the days from lo
    assert got[5]["val_baselines"]["strategies"] == vb["strategies"]
    v4 = got[4]["val_baselines"]
    assert (v4["first_day"], v4["last_day"], v4["periods"]) == (span[0], span[1], hi - lo)
    assert len(walks) == 2 and v4["strategies"] != vb["strategies"]
    assert read_phase_summary(run, 3)["val_baselines"] == vb  # written, and kept as is
    said: list[str] = []
    assert record_validation_baselines(run, 3, cfg, market, meta, feats,
                                       say=said.append)["val_baselines"] == vb
    assert len(said) == 1 and f"1/N {vb['strategies']['equal_weight']['sharpe']:.3g}" in said[0]
    line = rl_phases_line({"rl_phases": rl_phase_record(run)})
    assert f"1/N {vb['strategies']['equal_weight']['sharpe']:.3g}" in line
    # the episodes rule has no single walk to set them beside
    episodes = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, validation="episodes"))
    write_phase_summary(run, "flat", {"val_span": span, "val_sharpe": 0.5})
    assert record_validation_baselines(run, "flat", episodes, market, meta, feats) is None
