"""Metrics wrappers: empyrical-reloaded cross-checks (conventions noted) and hand checks."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.evaluation import metrics as em

RF = 0.07


@pytest.fixture(scope="module")
def returns():
    rng = np.random.default_rng(11)
    b = rng.normal(0.0004, 0.011, 500)
    r = 0.0002 + 0.8 * b + rng.standard_t(4, 500) * 0.006
    return r, b


def test_against_empyrical(returns):
    emp = pytest.importorskip("empyrical")
    r, b = returns
    rf_d = em.daily_rf(RF)
    m = em.strategy_metrics(r, benchmark=b, rf_annual=RF)
    assert m["sharpe"] == pytest.approx(emp.sharpe_ratio(r, risk_free=rf_d), rel=1e-4)
    assert m["sortino"] == pytest.approx(emp.sortino_ratio(r, required_return=rf_d), rel=1e-4)
    # empyrical reports drawdowns as negative numbers
    assert m["max_drawdown"] == pytest.approx(-emp.max_drawdown(r), rel=1e-4)
    assert m["cagr"] == pytest.approx(emp.annual_return(r), rel=1e-4)
    assert m["calmar"] == pytest.approx(emp.calmar_ratio(r), rel=1e-4)
    assert m["ann_vol"] == pytest.approx(emp.annual_volatility(r), rel=1e-4)
    alpha, beta = emp.alpha_beta(r, b, risk_free=rf_d)
    assert m["beta"] == pytest.approx(beta, rel=1e-6)
    # ours is arithmetic (mean daily alpha * 252, the original's), empyrical compounds it
    assert (1 + m["alpha"] / 252) ** 252 - 1 == pytest.approx(alpha, rel=1e-6)
    # CVaR: k = ceil(0.05 n) worst days vs empyrical's int((n - 1) 0.05) + 1; n = 501 agrees
    r501 = np.r_[r, 0.001]
    assert em.return_metrics(r501)["cvar_95"] == pytest.approx(
        -emp.conditional_value_at_risk(r501, 0.05), rel=1e-5)
    # n = 500: ceil(25) = 25 worst vs int(24.95) + 1 = 25 worst: agree as well
    assert m["cvar_95"] == pytest.approx(-emp.conditional_value_at_risk(r, 0.05), rel=1e-5)


def test_hand_values():
    r = np.array([0.01, -0.02, 0.03, -0.01, 0.0])
    b = np.array([0.005, -0.01, 0.02, 0.0, 0.001])
    m = em.strategy_metrics(r, benchmark=b, turnover=np.array([1.0, 0, 0.2, 0, 0]),
                            cost_frac=np.array([0.002, 0, 0.0004, 0, 0]),
                            costs={"stt": np.array([0.001, 0, 0.0002, 0, 0])})
    assert m["total_return"] == pytest.approx(1.01 * 0.98 * 1.03 * 0.99 - 1)
    assert m["hit_rate"] == pytest.approx(0.4)
    assert m["turnover_daily"] == pytest.approx(0.24) and m["turnover"] == pytest.approx(60.48)
    assert m["cost_drag"] == pytest.approx(0.00048 * 252)
    assert m["cost_drag_items"]["stt"] == pytest.approx(0.00024 * 252)
    assert m["var_95"] == pytest.approx(0.02) and m["cvar_95"] == pytest.approx(0.02)
    beta = np.cov(r, b)[0, 1] / np.var(b, ddof=1)
    assert m["beta"] == pytest.approx(beta)
    assert m["alpha"] == pytest.approx(np.mean(r - beta * b) * 252)
    a = r - b
    assert m["information_ratio"] == pytest.approx(a.mean() / a.std(ddof=1) * np.sqrt(252))
    assert m["max_drawdown_duration"] == 2  # wealth 1.01, .9898, 1.0195 (peak), 1.0093, 1.0093


def test_regimes():
    r = np.r_[np.full(12, 0.01), np.full(12, -0.01), [0.002, -0.001]]
    r[:12] += np.linspace(0, 0.001, 12)
    reg = np.r_[np.zeros(12), np.ones(12), [2, -1]].astype(int)
    out = em.regime_metrics(r, reg)
    assert out["bull"]["days"] == 12 and out["bull"]["sharpe"] > 10
    assert out["bear"]["ann_mean_return"] == pytest.approx(-2.52)
    assert out["sideways"]["days"] == 1 and out["sideways"]["sharpe"] is None
    # rule regimes: the label at the end of the week containing the day
    week_end = np.array([0, 0, 1, 0, 0, 0, 1, 0], bool)
    rule = np.array([9, 9, 0, 9, 9, 9, 1, 9])
    got, src = em.realised_regimes(np.arange(8), np.full(8, -1), rule, week_end)
    assert src == "rule"
    np.testing.assert_array_equal(got, [0, 0, 0, 1, 1, 1, 1, -1])
    got, src = em.realised_regimes(np.array([1, 2]), np.array([2, 1, 0]), rule, week_end)
    assert src == "latent" and list(got) == [1, 0]
