"""Baselines: no look-ahead (each), hand/NumPy/sklearn/scipy cross-checks, registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation.backtest import DayView, run_backtest
from hrl_sarp_jax.features.featureset import STOCK_FEATURES
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.risk.constraints import ConstraintParams
from tests.evaluation.conftest import LENGTH, T0
from tests.evaluation.make_market import DRIFT, meta_json

CUT = 120  # perturb every row after this day


def _perturb_after(params, cut: int, seed: int = 7):
    """Every [T, ...] leaf of EnvParams replaced by noise on rows > cut."""
    rng = np.random.default_rng(seed)
    t_total = params.returns.shape[0]

    def f(x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] not in (t_total, t_total + 1):
            return x
        y = x.copy()
        tail = y[cut + 1:]
        if y.dtype == bool:
            y[cut + 1:] = rng.random(tail.shape) < 0.5
        elif np.issubdtype(y.dtype, np.integer):
            y[cut + 1:] = rng.integers(-1, 2, tail.shape).astype(y.dtype)
        else:
            y[cut + 1:] = (rng.standard_normal(tail.shape) * 0.05).astype(y.dtype)
        return y

    leaves = {k: getattr(params, k) for k in ("returns", "circuit_lock", "tradable", "adv_value",
                                              "sector_returns", "benchmark_returns",
                                              "stock_features", "macro_features",
                                              "sector_features", "sector_mask", "adjacency",
                                              "regime_label", "week_end")}
    out = params.replace(**{k: f(v) for k, v in leaves.items()})
    return out.replace(adv_value=np.abs(np.asarray(out.adv_value)))


CASES = {
    "equal_weight": lambda: (bl.EqualWeight(), ()),
    "sector_equal_weight": lambda: (bl.SectorEqualWeight(), ()),
    "inverse_vol": lambda: (bl.InverseVol(), ()),
    "min_variance": lambda: (bl.MinVariance(window=60, min_periods=30, iters=100), ()),
    "risk_parity": lambda: (bl.RiskParity(window=60, min_periods=30, iters=50), ()),
    "sector_momentum": lambda: (bl.SectorMomentum(lookback=60, skip=5, top_k=1), ()),
    "momentum_60_5": lambda: (bl.StockMomentum(), ()),
    "random": lambda: (bl.RandomDirichlet(), jax.random.key(0)),
    "sector_value": lambda: (bl.SectorValue(), ()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_no_look_ahead(tiny, weekly, name):
    *_, params = tiny
    fn, carry = CASES[name]()
    _, a = run_backtest(fn, carry, params, T0, weekly)
    _, b = run_backtest(fn, carry, _perturb_after(params, CUT), T0, weekly)
    k = CUT - T0 + 1  # decision days t0 .. CUT
    np.testing.assert_array_equal(a.weights[:k], b.weights[:k])
    np.testing.assert_array_equal(a.net_return[: k - 1], b.net_return[: k - 1])
    assert not np.allclose(a.net_return[k:], b.net_return[k:])  # the perturbation bites


def test_oracle_reads_only_the_next_regime(tiny, weekly):
    market, meta, _, params = tiny
    fn = bl.RegimeOracle(top_k=1)
    drift = bl.sector_drift_matrix(meta_json(), meta.sectors)
    np.testing.assert_array_equal(drift, DRIFT)
    latent = np.asarray(market.latent_regime)
    daily = np.ones(LENGTH, bool)
    params = params.replace(constraints=params.constraints.replace(rebalance_threshold=0.0))
    _, a = run_backtest(fn, fn.init_carry(drift, latent), params, T0, daily)
    lat2 = latent.copy()
    lat2[CUT + 2:] = (lat2[CUT + 2:] + 1) % 3
    _, b = run_backtest(fn, fn.init_carry(drift, lat2), params, T0, daily)
    k = CUT - T0 + 1
    np.testing.assert_array_equal(a.weights[:k], b.weights[:k])
    # it holds the best sector of regime[t + 1]: all the invested weight in that sector
    best = np.argmax(DRIFT[latent[T0 + 1: T0 + 1 + LENGTH]], axis=1)
    top = np.argmax(a.sector_weights, axis=1)
    assert np.mean(top == best) > 0.95  # circuit locks may delay a switch by a day


def test_oracle_told_late_reads_the_regime_lag_days_back(tiny):
    """RegimeOracle(lag=L) on the latent path is the next-day oracle on the path delayed by L
    days, and it never reads a regime after day t + 1 - L."""
    market, meta, _, params = tiny
    drift = bl.sector_drift_matrix(meta_json(), meta.sectors)
    latent = np.asarray(market.latent_regime)
    lag = 7
    daily = np.ones(LENGTH, bool)
    params = params.replace(constraints=params.constraints.replace(rebalance_threshold=0.0))
    late = bl.RegimeOracle(top_k=1, lag=lag)
    _, a = run_backtest(late, late.init_carry(drift, latent), params, T0, daily)
    delayed = np.concatenate([np.full(lag, latent[0]), latent[:-lag]])
    now = bl.RegimeOracle(top_k=1)
    _, b = run_backtest(now, now.init_carry(drift, delayed), params, T0, daily)
    np.testing.assert_allclose(a.weights, b.weights, rtol=0, atol=1e-7)
    # a changed regime after day CUT + 1 - lag leaves its decisions up to CUT alone ...
    changed = latent.copy()
    changed[CUT + 2 - lag:] = (changed[CUT + 2 - lag:] + 1) % 3
    _, c = run_backtest(late, late.init_carry(drift, changed), params, T0, daily)
    k = CUT - T0 + 1
    np.testing.assert_array_equal(a.weights[:k], c.weights[:k])
    assert not np.allclose(a.weights[k:], c.weights[k:])
    # ... and the lag is real: the next-day oracle's holdings lead the late one's by `lag` days
    _, d = run_backtest(now, now.init_carry(drift, latent), params, T0, daily)
    lead = np.argmax(d.sector_weights, axis=1)[:-lag]
    follow = np.argmax(a.sector_weights, axis=1)[lag:]
    assert np.mean(lead == follow) > 0.95 > np.mean(np.argmax(d.sector_weights, axis=1)
                                                     == np.argmax(a.sector_weights, axis=1))
    assert bl.oracle_lag_name(0) == "oracle" and bl.oracle_lag_name(20) == "oracle_late_20d"


def _view(params, t):
    n = params.num_stocks
    return DayView(params=params, port=PortfolioState(weights=jnp.zeros(n), value=jnp.ones(()),
                                                      peak=jnp.ones(())))


def _target(fn, params, t, carry=()):
    return np.asarray(jax.jit(lambda c, tt: fn(c, tt, _view(params, tt))[1])(carry, t))


def test_sector_value_holds_each_sectors_cheapest_names(tiny):
    *_, params = tiny
    t = 100
    w = _target(bl.SectorValue(per_sector=2), params, t)
    pe = np.asarray(params.stock_features)[t, :, STOCK_FEATURES.index("pe_z")]
    trad = np.asarray(params.tradable)[t]
    sec = np.asarray(params.stock_sector)
    active = [k for k in range(params.num_sectors) if (trad & (sec == k)).any()]
    want = np.zeros_like(w)
    for k in active:
        names = np.flatnonzero(trad & (sec == k))
        cheap = names[np.argsort(pe[names], kind="stable")[:2]]
        want[cheap] = 1.0 / len(active) / len(cheap)
    np.testing.assert_allclose(w, want, rtol=1e-6, atol=1e-9)
    assert np.count_nonzero(w) < np.count_nonzero(trad)  # a screen, not equal weight
    assert "sector_value" in bl.BASELINES and "sector_value" not in bl.default_baselines()
    assert not bl.BASELINES["sector_value"].classical
    assert bl.default_baselines()[0] == "equal_weight" and "flat_rl" not in bl.default_baselines()


def test_inverse_vol_hand(tiny):
    *_, params = tiny
    t = 100
    w = _target(bl.InverseVol(window=60, min_periods=20), params, t)
    r = np.asarray(params.returns, np.float64)[t - 59: t + 1]
    trad = np.asarray(params.tradable)
    ok = trad[t - 59: t + 1] & trad[t - 60: t]
    sd = np.array([r[ok[:, j], j].std(ddof=1) if ok[:, j].sum() >= 20 else np.nan
                   for j in range(r.shape[1])])
    inv = np.where(np.isfinite(sd) & trad[t], 1 / np.nan_to_num(sd, nan=1.0), 0.0)
    np.testing.assert_allclose(w, inv / inv.sum(), rtol=2e-4, atol=1e-7)
    assert w[2] > 0 and w[9] == 0  # late lister (listed day 60: 40 returns) in, padding out


def test_equal_weights_respect_liquidity_and_sectors(tiny):
    *_, params = tiny
    t = 100
    adv = np.asarray(params.adv_value[t])
    trad = np.asarray(params.tradable[t])
    w = _target(bl.EqualWeight(), params, t)  # 9 tradable > max_positions = 6
    top6 = np.argsort(-np.where(trad, adv, -1))[:6]
    np.testing.assert_allclose(w[top6], 1 / 6, rtol=1e-6)
    assert np.count_nonzero(w) == 6
    sw = _target(bl.SectorEqualWeight(), params, t)  # 6 // 3 = 2 most liquid per sector
    sector = np.asarray(params.stock_sector)
    for s in range(3):
        members = np.flatnonzero((sector == s) & trad)
        keep = members[np.argsort(-adv[members])[:2]]
        np.testing.assert_allclose(sw[keep], 1 / 6, rtol=1e-6)
        assert np.isclose(sw[sector == s].sum(), 1 / 3, rtol=1e-6)


def test_momentum_rules(tiny):
    *_, params = tiny
    t = 150
    r = np.asarray(params.returns, np.float64)
    trad = np.asarray(params.tradable)
    # stock momentum: top max(5, ceil(0.98 / 0.25) = 4) = 5 by 60-day return, full history only
    w = _target(bl.StockMomentum(), params, t)
    ok = np.all(trad[t - 59: t + 1] & trad[t - 60: t], axis=0) & trad[t]
    score = np.where(ok, np.prod(1 + r[t - 59: t + 1], axis=0), -np.inf)
    top = np.argsort(-score, kind="stable")[:5]
    np.testing.assert_allclose(w[top], 0.2, rtol=1e-6)
    assert np.count_nonzero(w) == 5
    # sector momentum: the best sector over days t-59..t-5, equal within
    w = _target(bl.SectorMomentum(lookback=60, skip=5, top_k=1), params, t)
    sr = np.asarray(params.sector_returns, np.float64)[t - 59: t - 4]
    best = np.argmax(np.prod(1 + sr, axis=0))
    members = (np.asarray(params.stock_sector) == best) & trad[t]
    np.testing.assert_allclose(w[members], 1 / members.sum(), rtol=1e-6)
    assert w[~members].sum() == 0


def test_ledoit_wolf_matches_sklearn():
    sk = pytest.importorskip("sklearn.covariance")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((80, 6)) @ rng.standard_normal((6, 6)) * 0.01).astype(np.float32)
    active = np.ones(6, bool)
    cov, shrink = bl.ledoit_wolf(jnp.asarray(x), jnp.ones((80, 6), bool), jnp.asarray(active))
    ref_cov, ref_shrink = sk.ledoit_wolf(x.astype(np.float64))
    np.testing.assert_allclose(float(shrink), ref_shrink, rtol=1e-3)
    np.testing.assert_allclose(cov, ref_cov, rtol=2e-3, atol=1e-9)
    # inactive stocks drop out: same numbers as sklearn on the active columns
    active[[1, 4]] = False
    cov2, s2 = bl.ledoit_wolf(jnp.asarray(x), jnp.ones((80, 6), bool), jnp.asarray(active))
    r2, rs2 = sk.ledoit_wolf(x[:, active].astype(np.float64))
    np.testing.assert_allclose(np.asarray(cov2)[np.ix_(active, active)], r2, rtol=2e-3, atol=1e-9)
    assert float(s2) == pytest.approx(rs2, rel=1e-3)
    assert np.all(np.asarray(cov2)[~active] == 0)


def test_min_variance_matches_scipy():
    from scipy.optimize import minimize

    rng = np.random.default_rng(2)
    a = rng.standard_normal((8, 8))
    cov = (a @ a.T / 8 + np.diag(rng.uniform(0.2, 2.0, 8))) * 1e-4
    sector = np.array([0, 0, 0, 1, 1, 1, 2, 2], np.int32)
    cons = ConstraintParams(max_stock_weight=jnp.float32(0.3), max_sector_weight=jnp.float32(0.5),
                            min_cash=jnp.float32(0.02), rebalance_threshold=jnp.float32(0.0),
                            max_positions=0)
    active = np.ones(8, bool)
    active[5] = False
    w = np.asarray(jax.jit(lambda c: bl.min_variance_weights(c, jnp.asarray(active),
                                                             jnp.asarray(sector), 3, cons, 500))(
        jnp.asarray(cov, jnp.float32)), np.float64)
    idx = np.flatnonzero(active)
    onehot = (sector[idx][:, None] == np.arange(3)[None]).astype(float)
    res = minimize(lambda x: x @ cov[np.ix_(idx, idx)] @ x, np.full(7, 0.98 / 7), method="SLSQP",
                   bounds=[(0, 0.3)] * 7,
                   constraints=[{"type": "eq", "fun": lambda x: x.sum() - 0.98},
                                {"type": "ineq", "fun": lambda x: 0.5 - x @ onehot}],
                   options={"ftol": 1e-16, "maxiter": 500})
    assert res.success
    assert w[5] == 0
    np.testing.assert_allclose(w[idx], res.x, atol=2e-3)
    assert w @ cov @ w <= res.fun * (1 + 1e-3)


def test_risk_parity_equalises_contributions():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((300, 7)) * rng.uniform(0.5, 3, 7) + rng.standard_normal((300, 1))
    cov = np.cov(a.T).astype(np.float32)
    active = np.array([1, 1, 1, 0, 1, 1, 1], bool)
    w = np.asarray(bl.risk_parity_weights(jnp.asarray(cov), jnp.asarray(active), 200), np.float64)
    rc = w * (cov @ w)
    assert w[3] == 0 and w.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(rc[active], rc[active].mean(), rtol=1e-4)


def test_index_buy_hold(tiny):
    *_, params = tiny
    s = bl.index_buy_hold(params, T0, 50)
    b = np.asarray(params.benchmark_returns, np.float64)[T0 + 1: T0 + 51]
    assert s["net_return"][0] == pytest.approx((1 - 0.00168935 - 0.0003 * 1.18) * (1 + b[0]) - 1,
                                               rel=1e-6)
    np.testing.assert_allclose(s["net_return"][1:], b[1:])
    assert s["cost_frac"][0] == pytest.approx(sum(v[0] for v in s["costs"].values()), rel=1e-6)
    assert s["turnover"].sum() == 1.0


def test_registry():
    assert set(bl.BASELINES) >= {"equal_weight", "sector_equal_weight", "index_buy_hold",
                                 "inverse_vol", "min_variance", "risk_parity", "sector_momentum",
                                 "momentum_60_5", "random", "oracle", "flat_rl"}
    assert bl.BASELINES["oracle"].upper_bound
    with pytest.raises(NotImplementedError, match="requires a trained run"):
        bl.get_baseline("flat_rl")
    with pytest.raises(Exception, match="unknown baseline"):
        bl.get_baseline("nope")
    # equal instances share one compile (hashable, equal by value)
    assert hash(bl.MinVariance()) == hash(bl.MinVariance()) and bl.MinVariance() == bl.MinVariance()
