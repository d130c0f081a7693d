"""The causal regime rule: a fit with a known answer, sklearn's softmax regression as oracle,
no look-ahead in its inputs or its fit, and the backtested rule on the tiny market."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation.backtest import run_backtest
from hrl_sarp_jax.evaluation.regime_rule import (
    LABEL_HORIZON,
    fit_regime_rule,
    fit_softmax_regression,
    regime_rule_inputs,
    trailing_mean,
)
from tests.evaluation.conftest import T0


def test_trailing_mean_by_hand():
    x = np.array([[1.0], [2.0], [4.0], [8.0]])
    m = np.array([[True], [False], [True], [True]])
    # window 2: day0 1; day1 mean of available {1} = 1; day2 {4} = 4; day3 {4, 8} = 6
    np.testing.assert_allclose(trailing_mean(x, m, 2)[:, 0], [1.0, 1.0, 4.0, 6.0])
    np.testing.assert_allclose(trailing_mean(x, ~m, 2)[:, 0], [0.0, 2.0, 2.0, 0.0])


def test_softmax_regression_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = np.argmax(x[:, :3] + 0.7 * rng.normal(size=(400, 3)), axis=1)
    l2 = 0.05
    w = fit_softmax_regression(x, y, l2=l2)
    # sklearn's multinomial loss is C * sum(CE) + 1/2 ||W||^2 (intercept free): C = 1/(n l2)
    ref = LogisticRegression(C=1.0 / (len(y) * l2), tol=1e-10, max_iter=10_000).fit(x, y)
    # softmax is invariant to a common shift of the classes' parameters: compare centred
    ours = w[:-1] - w[:-1].mean(1, keepdims=True)
    theirs = ref.coef_.T - ref.coef_.T.mean(1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, atol=2e-4)
    np.testing.assert_allclose(np.argmax(np.c_[x, np.ones(400)] @ w, 1), ref.predict(x))


def _regime_world(t_total=700, seed=1):
    """A macro series whose sign sets the next period's regime; sector j earns in regime j."""
    rng = np.random.default_rng(seed)
    level = np.zeros(t_total)
    for t in range(1, t_total):                               # AR(1): every regime recurs
        level[t] = 0.97 * level[t - 1] + 0.3 * rng.normal()
    regime = np.where(level > 1.0, 0, np.where(level < -1.0, 1, 2))
    macro = np.c_[level, rng.normal(size=t_total)]           # one informative, one noise
    sector_ret = rng.normal(0.0, 0.01, (t_total, 3))
    sector_ret[np.arange(1, t_total), regime[:-1]] += 0.01   # day t + 1 pays t's regime
    return macro, np.ones_like(macro, bool), regime, sector_ret


def test_fit_recovers_a_known_rule():
    macro, mask, label, sret = _regime_world()
    fit = fit_regime_rule(macro, mask, label, sret, np.ones(3, bool), fit_end=500)
    assert fit.accuracy > 0.85
    # the sector each regime pays most, and the learnt model predicts out of sample too
    np.testing.assert_array_equal(np.argmax(fit.sector_score, axis=1), [0, 1, 2])
    z = np.c_[fit.inputs[520:690], np.ones(170)]
    assert np.mean(np.argmax(z @ fit.coef, 1) == label[520:690]) > 0.7


def test_fit_sees_no_day_from_fit_end_minus_the_horizon_on():
    macro, mask, label, sret = _regime_world()
    cut = 500 - LABEL_HORIZON
    a = fit_regime_rule(macro, mask, label, sret, np.ones(3, bool), fit_end=500)
    rng = np.random.default_rng(9)
    m2, l2, s2 = macro.copy(), label.copy(), sret.copy()
    m2[cut:] = rng.normal(size=m2[cut:].shape) * 5
    l2[cut:] = rng.integers(0, 3, l2[cut:].shape)
    s2[cut + 1:] = rng.normal(size=s2[cut + 1:].shape)
    b = fit_regime_rule(m2, mask, l2, s2, np.ones(3, bool), fit_end=500)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.sector_score, b.sector_score)
    # inputs at t are built from days <= t
    np.testing.assert_array_equal(a.inputs[:cut], b.inputs[:cut])


def test_inputs_are_levels_and_trailing_means():
    macro, mask, *_ = _regime_world(t_total=80)
    x, avail = regime_rule_inputs(macro, mask)
    assert x.shape == (80, 6) and avail.all()
    np.testing.assert_allclose(x[:, :2], macro)
    np.testing.assert_allclose(x[79, 2], macro[60:80, 0].mean())
    np.testing.assert_allclose(x[79, 4], macro[20:80, 0].mean())


def test_too_little_history_is_one_line():
    macro, mask, label, sret = _regime_world(t_total=120)
    with pytest.raises(ConfigError, match=r"regime rule: .*data\.val_start"):
        fit_regime_rule(macro, mask, label, sret, np.ones(3, bool), fit_end=100)


def test_backtested_rule_holds_the_top_sectors_of_its_call(tiny, weekly):
    market, _, _, params = tiny
    label = np.asarray(params.regime_label)
    fit = fit_regime_rule(np.asarray(market.macro), np.asarray(market.macro_mask), label,
                          np.asarray(params.sector_returns), np.asarray(params.sector_valid),
                          fit_end=T0 + 150)
    fn = bl.RegimeRule(top_k=1)
    _, res = run_backtest(fn, fn.init_carry(fit), params, T0, weekly)
    days = np.asarray(res.t)[np.asarray(res.rebalanced) & (np.asarray(res.turnover) > 0)]
    calls = np.argmax(fit.inputs[days] @ fit.coef[:-1] + fit.coef[-1], axis=1)
    want = np.argmax(fit.sector_score[calls], axis=1)
    rows = np.isin(np.asarray(res.t), days)
    got = np.argmax(np.asarray(res.sector_weights)[rows], axis=1)
    assert len(days) >= 3 and np.mean(got == want) > 0.9
