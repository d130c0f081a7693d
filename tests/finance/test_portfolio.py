"""Portfolio accounting: hand-computed step, drift vs a NumPy loop, circuit locks, identities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import CostConfig
from hrl_sarp_jax.finance.costs import cost_params
from hrl_sarp_jax.finance.portfolio import PortfolioState, init_portfolio, portfolio_step

BUY, SELL = 0.00168935, 0.00153935   # default effective rates per rupee


@pytest.fixture(scope="module")
def step():
    return jax.jit(portfolio_step)


@pytest.fixture(scope="module")
def params():
    return cost_params(CostConfig())


def _state(weights, value, peak=None):
    return PortfolioState(
        weights=jnp.asarray(weights, jnp.float32),
        value=jnp.asarray(value, jnp.float32),
        peak=jnp.asarray(value if peak is None else peak, jnp.float32),
    )


NO_LOCK = jnp.zeros(3, jnp.int8)
NO_ADV = jnp.zeros(3, jnp.float32)


def test_init_portfolio_all_cash():
    s = init_portfolio(4, 1e7)
    assert s.weights.shape == (4,) and s.weights.dtype == jnp.float32
    assert float(jnp.sum(s.weights)) == 0.0
    assert float(s.value) == 1e7 and float(s.peak) == 1e7 and s.value.dtype == jnp.float32


def test_hand_computed_three_asset_step(step, params):
    # V0 = 1e6; drifted [0.2, 0.3, 0.1] (cash 0.4) -> target [0.3, 0.2, 0.1]
    # buy 0.1*1e6 = 1e5 of asset 0, sell 1e5 of asset 1:
    #   C = 1e5*0.00168935 + 1e5*0.00153935 = 168.935 + 153.935 = 322.87
    # holdings [3e5, 2e5, 1e5]; cash = 1e6*0.4 - 322.87 = 399677.13
    # returns [0.10, -0.05, 0.02] -> grown [330000, 190000, 102000] (sum 622000)
    # V2 = 622000 + 399677.13 = 1021677.13; gross = 0.03 - 0.01 + 0.002 = 0.022
    s, info = step(_state([0.2, 0.3, 0.1], 1e6), jnp.array([0.3, 0.2, 0.1]),
                   jnp.array([0.10, -0.05, 0.02]), NO_LOCK, NO_ADV, params)
    v2 = 1021677.13
    np.testing.assert_allclose(float(info.costs.total), 322.87, rtol=1e-5)
    np.testing.assert_allclose(float(info.costs.stt), 200.0, rtol=1e-6)
    np.testing.assert_allclose(float(info.costs.stamp), 15.0, rtol=1e-6)
    np.testing.assert_allclose(float(info.costs.gst), 0.18 * 6.5, rtol=1e-5)
    np.testing.assert_allclose(float(info.costs.slippage), 100.0, rtol=1e-6)
    np.testing.assert_allclose(float(s.value), v2, rtol=1e-6)
    np.testing.assert_allclose(float(info.gross_return), 0.022, rtol=1e-5)
    np.testing.assert_allclose(float(info.net_return), v2 / 1e6 - 1, atol=1e-6)
    np.testing.assert_allclose(float(info.cost_frac), 322.87e-6, rtol=1e-5)
    np.testing.assert_allclose(float(info.turnover), 0.1, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(s.weights), np.array([330000, 190000, 102000]) / v2,
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(info.executed_weights), [0.3, 0.2, 0.1], rtol=1e-6)
    assert float(s.peak) == float(s.value) and float(info.drawdown) == 0.0
    assert not bool(jnp.any(info.blocked))


def test_drawdown_against_existing_peak(step, params):
    s, info = step(_state([0.2, 0.3, 0.1], 1e6, peak=1.05e6), jnp.array([0.3, 0.2, 0.1]),
                   jnp.array([0.10, -0.05, 0.02]), NO_LOCK, NO_ADV, params)
    assert float(s.peak) == pytest.approx(1.05e6)
    np.testing.assert_allclose(float(info.drawdown), (1.05e6 - 1021677.13) / 1.05e6, rtol=1e-4)


def _numpy_reference(w0, v0, targets, returns):
    """float64 loop of the documented accounting with effective rates (no locks, no impact)."""
    w, v, out = np.asarray(w0, float), float(v0), []
    for tgt, r in zip(targets, returns, strict=True):
        d = tgt - w
        cost = v * (BUY * np.maximum(d, 0).sum() + SELL * np.maximum(-d, 0).sum())
        hold = v * tgt
        cash = v * (1 - tgt.sum()) - cost
        grown = hold * (1 + r)
        v = grown.sum() + cash
        w = grown / v
        out.append((v, w.copy(), cost))
    return out


def test_multi_step_drift_matches_numpy_loop(step, params):
    rng = np.random.default_rng(7)
    steps = 6
    targets = 0.9 * rng.dirichlet(np.ones(3), size=steps)
    returns = rng.normal(0.0, 0.03, size=(steps, 3))
    ref = _numpy_reference(np.zeros(3), 1e6, targets, returns)
    s = init_portfolio(3, 1e6)
    for t in range(steps):
        s, info = step(s, jnp.asarray(targets[t], jnp.float32),
                       jnp.asarray(returns[t], jnp.float32), NO_LOCK, NO_ADV, params)
        v, w, cost = ref[t]
        np.testing.assert_allclose(float(s.value), v, rtol=2e-6)
        np.testing.assert_allclose(np.asarray(s.weights), w, atol=2e-6)
        np.testing.assert_allclose(float(info.costs.total), cost, rtol=2e-4)


def test_rebalancing_back_from_drift_is_charged(step, params):
    # Step 1: buy [0.5, 0.5]; returns +10% / -10% drift the book to ~[0.55, 0.45].
    s, _ = step(init_portfolio(2, 1e6), jnp.array([0.5, 0.5]), jnp.array([0.1, -0.1]),
                jnp.zeros(2, jnp.int8), jnp.zeros(2), params)
    w1, v1 = np.asarray(s.weights, float), float(s.value)
    assert w1[0] > 0.54
    # Step 2: same target. The original charged nothing (constant mix); we pay for the trades.
    _, info = step(s, jnp.array([0.5, 0.5]), jnp.zeros(2), jnp.zeros(2, jnp.int8),
                   jnp.zeros(2), params)
    d = 0.5 - w1
    want = v1 * (SELL * (-d[0]) + BUY * d[1])
    assert float(info.costs.total) > 0
    np.testing.assert_allclose(float(info.costs.total), want, rtol=1e-4)
    np.testing.assert_allclose(float(info.turnover), 0.5 * np.abs(d).sum(), rtol=1e-4)


def test_upper_circuit_blocks_buys_only(step, params):
    # asset 0 locked at upper circuit: its buy is blocked, the money stays in cash;
    # the sell of asset 1 still happens (sellers are welcome at an upper circuit).
    s, info = step(_state([0.2, 0.3, 0.1], 1e6), jnp.array([0.3, 0.2, 0.1]), jnp.zeros(3),
                   jnp.array([1, 0, 0], jnp.int8), NO_ADV, params)
    np.testing.assert_allclose(np.asarray(info.executed_weights), [0.2, 0.2, 0.1], atol=1e-7)
    np.testing.assert_array_equal(np.asarray(info.blocked), [True, False, False])
    np.testing.assert_allclose(float(info.costs.total), 1e5 * SELL, rtol=1e-5)
    np.testing.assert_allclose(float(s.value), 1e6 - 1e5 * SELL, rtol=1e-7)


def test_lower_circuit_blocks_sells_and_scales_unfunded_buys(step, params):
    # asset 1 locked at lower circuit: its 0.1 sale cannot happen. The buys (0.1 of asset 0,
    # 0.1 of asset 2) were funded 0.1 by that sale, so they are halved (no borrowing):
    # executed = [0.25, 0.3, 0.15], total 0.7 = the target's total.
    _, info = step(_state([0.2, 0.3, 0.1], 1e6), jnp.array([0.3, 0.2, 0.2]), jnp.zeros(3),
                   jnp.array([0, -1, 0], jnp.int8), NO_ADV, params)
    np.testing.assert_allclose(np.asarray(info.executed_weights), [0.25, 0.3, 0.15], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(info.blocked), [False, True, False])
    np.testing.assert_allclose(float(info.costs.total), 1e5 * BUY, rtol=1e-5)


def test_lock_on_the_other_side_does_not_block(step, params):
    # lower circuit on an asset being bought, upper circuit on one being sold: both trade.
    _, info = step(_state([0.2, 0.3, 0.1], 1e6), jnp.array([0.3, 0.2, 0.1]), jnp.zeros(3),
                   jnp.array([-1, 1, 0], jnp.int8), NO_ADV, params)
    np.testing.assert_allclose(np.asarray(info.executed_weights), [0.3, 0.2, 0.1], atol=1e-7)
    assert not bool(jnp.any(info.blocked))


def test_identities_and_batch_equivalence(step, params):
    rng = np.random.default_rng(3)
    b = 4
    w0 = 0.8 * rng.dirichlet(np.ones(3), size=b)
    tgt = 0.95 * rng.dirichlet(np.ones(3), size=b)
    r = rng.normal(0, 0.02, size=(b, 3))
    lock = rng.integers(-1, 2, size=(b, 3)).astype(np.int8)
    adv = rng.uniform(1e6, 1e7, size=(b, 3))
    states = PortfolioState(weights=jnp.asarray(w0, jnp.float32),
                            value=jnp.full((b,), 1e6, jnp.float32),
                            peak=jnp.full((b,), 1.1e6, jnp.float32))
    p = cost_params(CostConfig(impact_coef=0.1))
    f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    bs, binfo = jax.jit(jax.vmap(portfolio_step, in_axes=(0, 0, 0, 0, 0, None)))(
        states, f32(tgt), f32(r), jnp.asarray(lock), f32(adv), p)
    # net = gross - cost_frac; V2 = V0 (1 + net)
    np.testing.assert_allclose(np.asarray(binfo.net_return),
                               np.asarray(binfo.gross_return - binfo.cost_frac), atol=1e-6)
    np.testing.assert_allclose(np.asarray(bs.value), 1e6 * (1 + np.asarray(binfo.net_return)),
                               rtol=1e-6)
    # drifted weights plus cash fraction add up to 1 (value is conserved, nothing leaks)
    cash = (1e6 * (1 - np.asarray(binfo.executed_weights).sum(1)) - np.asarray(
        binfo.costs.total)) / np.asarray(bs.value)
    np.testing.assert_allclose(np.asarray(bs.weights).sum(1) + cash, 1.0, atol=1e-6)
    assert np.all(np.asarray(binfo.executed_weights).sum(1) <= tgt.sum(1) + 1e-6)
    for i in range(b):
        s_i = jax.tree.map(lambda x: x[i], states)  # noqa: B023
        one, info = step(s_i, f32(tgt[i]), f32(r[i]), jnp.asarray(lock[i]), f32(adv[i]), p)
        np.testing.assert_allclose(float(one.value), float(bs.value[i]), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(one.weights), np.asarray(bs.weights[i]),
                                   atol=1e-6)
        np.testing.assert_array_equal(np.asarray(info.blocked), np.asarray(binfo.blocked[i]))


def test_dtypes_are_float32(step, params):
    s, info = step(init_portfolio(3, 1e6), jnp.array([0.3, 0.3, 0.3]), jnp.zeros(3),
                   NO_LOCK, NO_ADV, params)
    for leaf in jax.tree.leaves((s, info)):
        assert leaf.dtype in (jnp.float32, jnp.bool_), leaf.dtype
        assert not getattr(leaf, "weak_type", False)
