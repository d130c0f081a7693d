"""The backtest against an independent NumPy replay (envs.reference.Book), schedules, batching."""

from __future__ import annotations

from dataclasses import dataclass

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
                                        np.asarray(params.tradable[t]), s, params.constraints, 1.0,
                                        book.w)
            target = ref.hold_within_band(book.w, target, params.constraints.rebalance_threshold,
                                          params.constraints.rebalance_residual)
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


def test_hold_within_band_residual_hand_values():
    import jax.numpy as jnp

    from hrl_sarp_jax.envs.common import hold_within_band

    drifted = jnp.array([0.30, 0.30, 0.30, 0.08])
    target = jnp.array([0.50, 0.20, 0.28, 0.0])   # turnover ½(0.2 + 0.1 + 0.02 + 0.08) = 0.2
    # residual 0.5 of a 0.1 band: k = 0.05 / 0.2 = 0.25 of the way back towards the drifted
    # book on the target's support; the last name, which the target drops, is sold whole
    want = np.array([0.45, 0.225, 0.285, 0.0])
    got = hold_within_band(drifted, target, 0.1, 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert 0.5 * np.abs(np.asarray(got) - np.asarray(target)).sum() <= 0.05 + 1e-7
    np.testing.assert_allclose(ref.hold_within_band(np.array([0.30, 0.30, 0.30, 0.08]),
                                                    np.array([0.50, 0.20, 0.28, 0.0]), 0.1, 0.5),
                               want, rtol=1e-12)
    # inside the band the drifted book is held whatever the residual; residual 0 is the target
    near = jnp.array([0.32, 0.30, 0.30, 0.06])
    np.testing.assert_array_equal(hold_within_band(drifted, near, 0.1, 0.5), drifted)
    np.testing.assert_array_equal(hold_within_band(drifted, target, 0.1, 0.0), target)


def test_rebalance_residual_matches_numpy_replay_and_trades_less(tiny, weekly):
    """A weekly strategy with a 5% band landing half the band short of its targets: the jitted
    backtest equals the float64 reference replay, and trades less than trading to the targets."""
    *_, params = tiny
    c = params.constraints
    half = params.replace(constraints=c.replace(rebalance_threshold=np.float32(0.05),
                                                rebalance_residual=np.float32(0.5)))
    full = params.replace(constraints=c.replace(rebalance_threshold=np.float32(0.05)))
    strategy = bl.SectorMomentum(lookback=60, skip=5)
    _, res = run_backtest(strategy, (), half, T0, weekly)
    _, to_target = run_backtest(strategy, (), full, T0, weekly)
    rows = _numpy_replay(strategy, half, T0, weekly)
    np.testing.assert_allclose(res.net_return, [r["net"] for r in rows], atol=2e-6)
    np.testing.assert_allclose(res.turnover, [r["turnover"] for r in rows], atol=2e-5)
    assert res.turnover[1:].sum() < 0.95 * to_target.turnover[1:].sum()


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


# --------------------------------------------------------------------------- carried books


def _leaves_equal(a, b) -> None:
    """Equal to float32 rounding: the default start, an explicit book and a returned book are
    three compiled programs (the book an input or a constant), so on another instruction set
    they may round differently (docs/evaluation.md, Reproducibility); a wrong start (cash
    missing, a stale peak) is off by whole percents."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)
        else:
            np.testing.assert_array_equal(x, y)


def test_an_explicit_cash_book_is_the_default_start_exactly(tiny, weekly):
    """book0 = cash_book(...) and the default start give the same results (and asking for the
    end book changes nothing), single and batched."""
    from hrl_sarp_jax.evaluation.backtest import cash_book

    *_, params = tiny
    fn = bl.InverseVol()
    cash = cash_book(params.num_stocks, params.initial_value, 20)
    _, default = run_backtest(fn, (), params, T0, weekly, risk_manager=True)
    _, explicit = run_backtest(fn, (), params, T0, weekly, risk_manager=True, book0=cash)
    _, with_book, end = run_backtest(fn, (), params, T0, weekly, risk_manager=True,
                                     return_book=True)
    _leaves_equal(default, explicit)
    _leaves_equal(default, with_book)
    # the end book is the last day's book after its trade and drift
    assert float(end.port.value) == float(with_book.value[-1])  # one program's two outputs
    assert int(end.count) == 20
    np.testing.assert_array_equal(end.returns, with_book.net_return[-20:])
    r = np.asarray(params.returns, np.float64)[T0 + LENGTH]
    drifted = default.weights[-1] * (1 + r) / (1 + default.net_return[-1])
    np.testing.assert_allclose(end.port.weights, drifted, rtol=2e-5, atol=1e-7)

    keys = jax.vmap(jax.random.key)(np.arange(3, dtype=np.uint32))
    books = jax.tree.map(lambda x: np.broadcast_to(x, (3, *np.shape(x))), cash)
    _, d3 = run_backtest(bl.RandomDirichlet(), keys, params, T0, weekly, batched=True)
    _, e3, end3 = run_backtest(bl.RandomDirichlet(), keys, params, T0, weekly, batched=True,
                               book0=books, return_book=True)
    _leaves_equal(d3, e3)
    np.testing.assert_array_equal(end3.port.value, e3.value[:, -1])  # one program's outputs


def test_carrying_the_book_across_a_split_is_the_unsplit_backtest(tiny):
    """Daily inverse-vol with the risk manager over [T0, T0 + LENGTH) equals the same run
    split in two windows, the second started from the first's end book: weights, value, peak,
    the de-risk flag and the return buffer all carry over (float32, another program)."""
    *_, params = tiny
    fn = bl.InverseVol()
    _, whole = run_backtest(fn, (), params, T0, np.ones(LENGTH, bool), risk_manager=True)
    inside = np.flatnonzero((whole.exposure[:-1] < 1) & (whole.exposure[1:] < 1))
    split = int(inside[len(inside) // 2]) + 1   # the middle of a de-risked stretch
    _, first, book = run_backtest(fn, (), params, T0, np.ones(split, bool), risk_manager=True,
                                  return_book=True)
    _, second = run_backtest(fn, (), params, T0 + split, np.ones(LENGTH - split, bool),
                             risk_manager=True, book0=book)
    _, fresh = run_backtest(fn, (), params, T0 + split, np.ones(LENGTH - split, bool),
                            risk_manager=True)
    assert bool(book.risk.derisked)  # the split falls in a de-risked stretch
    for key in ("net_return", "turnover", "cost_frac", "value", "drawdown", "exposure"):
        joined = np.r_[getattr(first, key), getattr(second, key)]
        np.testing.assert_allclose(joined, getattr(whole, key), rtol=1e-5, atol=1e-7,
                                   err_msg=key)
    np.testing.assert_allclose(np.r_[first.weights, second.weights], whole.weights, atol=1e-6)
    # from cash the second window buys in again at full exposure: another path
    assert fresh.turnover[0] > 0.4 and fresh.exposure[0] == 1.0 > second.exposure[0]


@dataclass(frozen=True)
class _Hold:
    """Target weights: all in stock ``stock`` (with ``rest`` in stock ``other``)."""

    stock: int
    other: int = 0
    rest: float = 0.0

    def __call__(self, carry, t, view):
        w = np.zeros(view.params.num_stocks, np.float32)
        w[self.other] += self.rest
        w[self.stock] += 1.0 - self.rest
        return carry, jax.numpy.asarray(w)


def test_a_carried_single_stock_book_trades_only_the_difference(tiny):
    """One stock held at 100% (caps lifted, no min cash, 5% no-trade band, small impact): after the
    boundary the same target keeps the drifted book with no trade and no cost; a new target
    (half in another stock) trades exactly carried -> target, checked against the NumPy
    reference book started from the carried book; from cash the same target buys in."""
    from hrl_sarp_jax.envs.params import make_env_params
    from tests.evaluation.make_market import make_market, with_constraints

    market, _, feats = make_market()
    params = make_env_params(market, feats, with_constraints(
        max_stock_weight=1.0, max_sector_weight=1.0, min_cash=0.0, max_positions=9))
    # less impact: the buy-in's cost (~1%) leaves the drifted book inside the band
    params = params.replace(cost=params.cost.replace(impact_coef=np.float32(0.01)))
    j, k, split, rest = 0, 4, 100, 0.5
    t1 = T0 + split
    lock = np.asarray(params.circuit_lock)[t1]
    assert lock[j] == 0 and lock[k] == 0
    _, a, book = run_backtest(_Hold(j), (), params, T0, np.ones(split, bool), return_book=True)
    assert a.turnover[0] == pytest.approx(0.5) and np.all(a.turnover[1:] == 0)
    w = np.asarray(book.port.weights)
    assert w[j] > 1.0 and np.all(np.delete(w, j) == 0)  # the buy-in's cost came out of cash

    _, same = run_backtest(_Hold(j), (), params, t1, np.ones(30, bool), book0=book)
    assert same.turnover[0] == 0 and same.cost_frac[0] == 0
    np.testing.assert_array_equal(same.weights[0], w)           # holds the drifted book
    r = np.asarray(params.returns, np.float64)[t1 + 1]
    np.testing.assert_allclose(same.net_return[0], w[j] * r[j], rtol=1e-5)

    _, switch = run_backtest(_Hold(k, j, rest), (), params, t1, np.ones(30, bool), book0=book)
    _, cash = run_backtest(_Hold(k, j, rest), (), params, t1, np.ones(30, bool))
    ref_book = ref.Book(params.num_stocks, float(book.port.value))
    ref_book.w, ref_book.peak = w.astype(np.float64), float(book.port.peak)
    target = np.zeros(params.num_stocks)
    target[k], target[j] = 1.0 - rest, rest
    row = ref_book.trade(target, r, lock, ref._np(params.adv_value[t1]),
                         ref.scalars(params.cost))
    np.testing.assert_allclose(switch.turnover[0], row["turnover"], rtol=1e-5)
    np.testing.assert_allclose(switch.turnover[0], 0.5 * ((w[j] - rest) + (1 - rest)),
                               rtol=1e-5)   # sell the excess of j, buy k: by hand
    np.testing.assert_allclose(switch.cost_frac[0], row["cost_frac"], rtol=1e-3)
    np.testing.assert_allclose(switch.net_return[0], row["net"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(switch.value[0], ref_book.value,
                               rtol=1e-5)
    # from cash: buy both legs (turnover 0.5), a different cost
    assert cash.turnover[0] == pytest.approx(0.5) and cash.cost_frac[0] != switch.cost_frac[0]


def test_a_book_of_the_wrong_shape_is_one_clear_error(tiny, weekly):
    from hrl_sarp_jax.evaluation.backtest import cash_book

    *_, params = tiny
    small = cash_book(params.num_stocks - 1, params.initial_value, 20)
    with pytest.raises(ConfigError, match=r"book0: the starting book does not fit") as err:
        run_backtest(bl.EqualWeight(), (), params, T0, weekly, book0=small)
    assert "weights (9,) (expected (10,))" in str(err.value) and "\n" not in str(err.value)
    keys = jax.vmap(jax.random.key)(np.arange(2, dtype=np.uint32))
    with pytest.raises(ConfigError, match=r"2 path\(s\).*value \(\) \(expected \(2,\)\)"):
        run_backtest(bl.RandomDirichlet(), keys, params, T0, weekly, batched=True,
                     book0=cash_book(params.num_stocks, params.initial_value, 20))


def test_the_risk_manager_replay_starts_from_the_carried_book(tiny):
    """strategy_attribution replays the run's targets without the risk manager from the same
    starting book: with a risk manager that never binds (no de-risk, no event cut) the replay
    is the run itself, so its effect is 0; replayed from cash instead it is not."""
    from hrl_sarp_jax.evaluation.evaluate import strategy_attribution

    *_, params = tiny
    params = params.replace(risk=params.risk.replace(derisk_drawdown=np.float32(1.0),
                                                     event_reduction=np.float32(0.0)))
    fn, daily = bl.InverseVol(), np.ones(60, bool)
    _, _, book = run_backtest(fn, (), params, T0, daily, risk_manager=True, return_book=True)
    _, res = run_backtest(fn, (), params, T0 + 60, daily, risk_manager=True, book0=book)
    assert np.all(res.exposure == 1.0)
    kw = {"batched": False, "risk_manager": True, "return_window": 20}
    carried = strategy_attribution(res, params, T0 + 60, daily, book0=book, **kw)
    from_cash = strategy_attribution(res, params, T0 + 60, daily, **kw)
    assert carried["risk_manager"] == 0.0
    assert abs(from_cash["risk_manager"]) > 1e-4


# --------------------------------------------------------------------------- open-loop strategies


def _open_loop_case(name: str, tiny):
    """(weight function, carry, batched) of a baseline on the tiny market; the oracle's and the
    regime rule's carries are random tables of the right shapes (their fits are not the point)."""
    from types import SimpleNamespace

    market, _, _, params = tiny
    spec = bl.get_baseline(name)
    fn = spec.make()
    rng = np.random.default_rng(0)
    t, s = params.returns.shape[0], params.num_sectors
    if spec.kind == "seeded":
        return fn, jax.vmap(jax.random.key)(np.arange(3, dtype=np.uint32)), True
    if spec.kind == "oracle":
        return fn, fn.init_carry(rng.normal(size=(3, s)), rng.integers(-1, 3, t)), False
    if spec.kind == "fitted":
        f = np.asarray(market.macro).shape[-1]
        fit = SimpleNamespace(inputs=rng.normal(size=(t, f)), coef=rng.normal(size=(f + 1, 3)),
                              sector_score=rng.normal(size=(3, s)))
        return fn, fn.init_carry(fit), False
    return fn, fn.init_carry(), False


OPEN_LOOP = [n for n, s in bl.BASELINES.items() if s.kind not in ("index", "requires_training")]


@pytest.mark.parametrize("name", OPEN_LOOP)
def test_open_loop_path_trades_as_the_closed_loop_program(tiny, weekly, name):
    """Every baseline is open-loop: ``run_backtest`` computes its targets alone and trades them
    in the shared accounting program (``ReplayTargets``); that path gives the results, end
    book and final carry of the strategy run inside the accounting scan (``backtest``, the
    closed-loop program). Two programs: float32 tolerance (bit-identical on machine A)."""
    import jax.numpy as jnp

    from hrl_sarp_jax.evaluation.backtest import backtest, backtest_batch, is_open_loop

    _, _, _, params = tiny
    fn, carry, batched = _open_loop_case(name, tiny)
    assert is_open_loop(fn)
    got = run_backtest(fn, carry, params, T0, weekly, batched=batched, risk_manager=True,
                       return_book=True)
    closed = backtest_batch if batched else backtest
    want = jax.device_get(closed(fn, carry, params, jnp.asarray(T0, jnp.int32),
                                 jnp.asarray(weekly), risk_manager=True, return_window=20,
                                 return_book=True))
    for a, b in zip(jax.tree.leaves(got[1:]), jax.tree.leaves(want[1:]), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-6, atol=1e-8)
    if batched:  # the key was split once per rebalance day on both paths
        np.testing.assert_array_equal(jax.random.key_data(got[0]), jax.random.key_data(want[0]))
    assert np.sum(got[1].turnover) > 0.5  # a strategy that traded, not an empty book


def test_open_loop_strategy_that_reads_the_book_fails_at_trace(tiny, weekly):
    """A weight function that declares ``open_loop`` but reads ``view.port`` gets no book in
    the targets pass (None), so it fails instead of trading on a made-up book."""
    from typing import ClassVar

    @dataclass(frozen=True)
    class ReadsBook:
        open_loop: ClassVar[bool] = True

        def __call__(self, carry, t, view):
            return carry, 1.0 - view.port.weights

    _, _, _, params = tiny
    with pytest.raises(AttributeError, match="weights"):
        run_backtest(ReadsBook(), (), params, T0, weekly)
