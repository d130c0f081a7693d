"""The backtest against an independent NumPy replay (envs.reference.Book), schedules, batching."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from hrl_sarp_jax.envs import reference as ref
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation.backtest import (
    COST_ITEMS,
    DayView,
    date_window,
    rebalance_mask,
    run_backtest,
)
from hrl_sarp_jax.finance.portfolio import PortfolioState
from tests.evaluation.conftest import LENGTH, T0


def _numpy_replay(fn, params, t0, reb):
    """Host loop: weights_fn target -> shared projection -> reference Book (float64)."""
    cp = ref.scalars(params.cost)
    n, s = params.num_stocks, params.num_sectors
    book = ref.Book(n, float(params.initial_value))
    call = jax.jit(lambda t, w, v, pk: fn((), t, DayView(params=params, port=PortfolioState(
        weights=w, value=v, peak=pk)))[1])
    rows = []
    for i, rb in enumerate(reb):
        t = t0 + i
        if rb or i == 0:
            target = np.asarray(call(t, np.float32(book.w), np.float32(book.value),
                                     np.float32(book.peak)), np.float64)
            target = ref.project_stocks(target, np.asarray(params.stock_sector),
                                        np.asarray(params.tradable[t]), s, params.constraints, 1.0)
            target = ref.hold_within_band(book.w, target, params.constraints.rebalance_threshold)
        else:
            target = book.w.copy()
        rows.append(book.trade(target, ref._np(params.returns[t + 1]),
                               np.asarray(params.circuit_lock[t]), ref._np(params.adv_value[t]),
                               cp))
    return rows


@pytest.mark.parametrize("strategy", [bl.InverseVol(), bl.SectorMomentum(lookback=60, skip=5)],
                         ids=["inverse_vol", "sector_momentum"])
def test_matches_numpy_replay(tiny, weekly, strategy):
    *_, params = tiny
    _, res = run_backtest(strategy, (), params, T0, weekly)
    rows = _numpy_replay(strategy, params, T0, weekly)
    net = np.array([r["net"] for r in rows])
    np.testing.assert_allclose(res.net_return, net, atol=2e-6)
    np.testing.assert_allclose(res.weights, np.array([r["exec"] for r in rows]), atol=2e-5)
    np.testing.assert_allclose(res.turnover, [r["turnover"] for r in rows], atol=2e-5)
    for k in COST_ITEMS:
        np.testing.assert_allclose(res.costs[k], [r["cost"][k] / v for r, v in zip(
            rows, np.r_[float(params.initial_value), np.cumprod(1 + net)[:-1]
                        * float(params.initial_value)], strict=True)], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(res.cost_frac, sum(res.costs[k] for k in COST_ITEMS), rtol=1e-4,
                               atol=1e-9)
    # compounded value and drawdown agree with the returns
    v = float(params.initial_value) * np.cumprod(1 + net)
    np.testing.assert_allclose(res.value, v, rtol=1e-4)
    np.testing.assert_allclose(res.drawdown, [r["drawdown"] for r in rows], atol=1e-4)


def test_drift_between_rebalances(tiny, weekly):
    *_, params = tiny
    _, res = run_backtest(bl.EqualWeight(), (), params, T0, weekly)
    off = ~weekly
    assert off.sum() > 100 and res.rebalanced[0]
    assert np.all(res.turnover[off] == 0) and np.all(res.cost_frac[off] == 0)
    # an untouched book drifts: w_{t+1} = w_t (1 + r) / (1 + gross - cost)
    r = np.asarray(params.returns)[T0 + 1: T0 + 1 + LENGTH]
    drifted = res.weights * (1 + r) / (1 + res.net_return)[:, None]
    i = np.flatnonzero(off[1:]) + 1
    np.testing.assert_allclose(res.weights[i], drifted[i - 1], atol=1e-5)
    # the projection holds on rebalance days: caps, budget, invalid stocks at 0
    c = params.constraints
    w = res.weights[weekly]
    assert w.max() <= float(c.max_stock_weight) + 1e-5
    assert np.all(w[:, 9] == 0)
    assert np.all((w > 0).sum(1) <= c.max_positions)


def test_batch_equals_single_runs(tiny, weekly):
    *_, params = tiny
    keys = jax.random.split(jax.random.key(3), 3)
    _, batch = run_backtest(bl.RandomDirichlet(), keys, params, T0, weekly, batched=True)
    _, one = run_backtest(bl.RandomDirichlet(), keys[1], params, T0, weekly)
    np.testing.assert_allclose(batch.net_return[1], one.net_return, atol=1e-7)
    _, again = run_backtest(bl.RandomDirichlet(), keys, params, T0, weekly, batched=True)
    np.testing.assert_array_equal(batch.net_return, again.net_return)  # reproducible
    assert not np.allclose(batch.net_return[0], batch.net_return[2])   # seeds differ


def test_risk_manager_scales_exposure(tiny, weekly):
    import dataclasses

    from hrl_sarp_jax.risk.manager import risk_params
    from tests.evaluation.make_market import ENV_CFG

    *_, params = tiny
    cfg = dataclasses.replace(ENV_CFG.risk, derisk_drawdown=0.01, rerisk_drawdown=0.005,
                              derisked_exposure=0.5, event_reduction=0.0)
    # band 0: every daily decision trades, so exposure shows in the weights the same day
    p2 = params.replace(risk=risk_params(cfg),
                        constraints=params.constraints.replace(rebalance_threshold=0.0))
    daily = np.ones(LENGTH, bool)
    _, res = run_backtest(bl.EqualWeight(), (), p2, T0, daily, risk_manager=True)
    half = res.exposure == 0.5
    assert half.any() and (res.exposure == 1.0).any()
    invested = res.weights.sum(1)
    locked_free = np.all(np.asarray(params.circuit_lock)[T0: T0 + LENGTH] == 0, axis=1)
    ok = half & locked_free
    np.testing.assert_allclose(invested[ok], 0.5 * 0.98, atol=1e-4)


def test_schedules_and_windows(tiny):
    market, meta, _, params = tiny
    we = np.asarray(market.week_end)
    np.testing.assert_array_equal(rebalance_mask("weekly", 5, 20, we)[1:], we[6:25])
    m = rebalance_mask("every:5", 3, 12, we)
    np.testing.assert_array_equal(np.flatnonzero(m), [0, 5, 10])
    np.testing.assert_array_equal(rebalance_mask(5, 3, 12, we), m)
    mon = rebalance_mask("monthly", 0, 70, we, meta.dates)
    d = meta.dates[:70]
    expect = np.flatnonzero(d.astype("datetime64[M]")[:-1] != d.astype("datetime64[M]")[1:])
    np.testing.assert_array_equal(np.flatnonzero(mon), np.r_[0, expect])
    with pytest.raises(ConfigError, match="not one of"):
        rebalance_mask("yearly", 0, 5, we)
    with pytest.raises(ConfigError, match="needs the market's dates"):
        rebalance_mask("monthly", 0, 5, we)
    t0, n = date_window(meta.dates, "2020-01-04", "2020-01-10")  # Sat .. Fri
    assert meta.dates[t0] == np.datetime64("2020-01-06") and n == 4
    with pytest.raises(ConfigError, match="fewer than 2"):
        date_window(meta.dates, "2030-01-01", "2030-02-01")
    with pytest.raises(ConfigError, match="T - 1"):
        run_backtest(bl.EqualWeight(), (), params, 250, np.ones(10, bool))


def test_no_trade_band_holds_small_rebalances(tiny):
    # Daily equal weight: drift away from 1/N is small day to day, so with a 5% band most days
    # hold the drifted book (no turnover, no cost); with band 0 every day trades.
    *_, params = tiny
    daily = np.ones(LENGTH, bool)
    band = params.replace(constraints=params.constraints.replace(rebalance_threshold=0.05))
    free = params.replace(constraints=params.constraints.replace(rebalance_threshold=0.0))
    _, held = run_backtest(bl.EqualWeight(), (), band, T0, daily)
    _, every = run_backtest(bl.EqualWeight(), (), free, T0, daily)
    skipped = held.turnover == 0
    assert skipped.mean() > 0.5 and (every.turnover[1:] > 0).mean() > 0.9
    assert np.all(held.cost_frac[skipped] == 0)
    assert held.turnover[~skipped].min() >= 0.05 - 1e-6  # only trades past the band happen
    # after the first day's buy-in: less turnover (0.68x on this market) and less cost (0.93x:
    # the square-root impact charges the larger catch-up trades more per unit traded)
    assert held.turnover[1:].sum() < 0.8 * every.turnover[1:].sum()
    assert held.cost_frac[1:].sum() < every.cost_frac[1:].sum()
    # a held day's book is yesterday's drifted book
    r = np.asarray(params.returns)[T0 + 1: T0 + 1 + LENGTH]
    drifted = held.weights * (1 + r) / (1 + held.net_return)[:, None]
    i = np.flatnonzero(skipped[1:]) + 1
    np.testing.assert_allclose(held.weights[i], drifted[i - 1], atol=1e-5)


def test_hold_within_band_hand_values():
    import jax.numpy as jnp

    from hrl_sarp_jax.envs.common import hold_within_band

    drifted = jnp.array([0.30, 0.30, 0.38])
    near = jnp.array([0.32, 0.28, 0.38])   # turnover 0.02
    far = jnp.array([0.40, 0.20, 0.38])    # turnover 0.10
    np.testing.assert_array_equal(hold_within_band(drifted, near, 0.05), drifted)
    np.testing.assert_array_equal(hold_within_band(drifted, far, 0.05), far)
    np.testing.assert_array_equal(hold_within_band(drifted, near, 0.0), near)
    np.testing.assert_array_equal(ref.hold_within_band(np.asarray(drifted), np.asarray(near),
                                                       0.05), np.asarray(drifted))


def test_replaying_recorded_targets_reproduces_the_run(tiny, weekly):
    """ReplayTargets fed a run's own raw targets trades exactly as that run (another program:
    float32 tolerance); without the risk manager the same targets give another path."""
    from hrl_sarp_jax.evaluation.backtest import ReplayTargets, run_backtest
    from hrl_sarp_jax.evaluation.baselines import InverseVol
    from tests.evaluation.conftest import T0

    _, _, _, params = tiny
    fn = InverseVol()
    _, res = run_backtest(fn, fn.init_carry(), params, T0, weekly, risk_manager=True)
    target = np.asarray(res.target)
    reb = np.asarray(weekly).copy()
    reb[0] = True
    assert np.all(target[~reb] == 0) and np.all(target[reb].sum(1) > 0)
    _, again = run_backtest(ReplayTargets(), target, params, T0, weekly, risk_manager=True)
    np.testing.assert_allclose(again.net_return, res.net_return, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(again.weights, res.weights, rtol=1e-5, atol=1e-8)
    _, free = run_backtest(ReplayTargets(), target, params, T0, weekly, risk_manager=False)
    assert np.min(free.exposure) == 1.0 and np.min(res.exposure) < 1.0
    assert not np.allclose(free.net_return, res.net_return)
