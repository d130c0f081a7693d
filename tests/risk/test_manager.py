"""Risk manager: drawdown hysteresis, CVaR budget scaling, event reduction."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import RiskConfig
from hrl_sarp_jax.risk.manager import RiskState, exposure, init_risk_state, risk_params

W = 8


@pytest.fixture(scope="module")
def expo():
    return jax.jit(exposure)


def _no_returns():
    return jnp.zeros(W, jnp.float32), jnp.zeros(W, bool)


def test_drawdown_hysteresis_sequence(expo):
    p = risk_params(RiskConfig(derisk_drawdown=0.07, rerisk_drawdown=0.03,
                               derisked_exposure=0.0))
    r, m = _no_returns()
    state = init_risk_state()
    flags, levels = [], []
    for dd in [0.0, 0.08, 0.05, 0.02, 0.05]:
        state, level = expo(state, jnp.float32(dd), r, m, jnp.bool_(False), p)
        flags.append(bool(state.derisked))
        levels.append(float(level))
    # 0.08 >= 7% de-risks; 0.05 is inside the band so it stays de-risked; 0.02 <= 3% re-risks;
    # 0.05 after re-risking is below 7%, so exposure stays on.
    assert flags == [False, True, True, False, False]
    assert levels == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_derisked_exposure_level(expo):
    p = risk_params(RiskConfig(derisked_exposure=0.3))
    r, m = _no_returns()
    _, level = expo(init_risk_state().replace(derisked=jnp.bool_(True)), jnp.float32(0.05), r, m,
                    jnp.bool_(False), p)
    assert float(level) == pytest.approx(0.3)


def test_cvar_budget_scaling_uses_valid_returns_only(expo):
    p = risk_params(RiskConfig(cvar_alpha=0.8, cvar_budget=0.02))
    # valid returns [-0.05, 0.01, 0.02, -0.01, 0.0]: k = ceil(0.2 * 5) = 1 -> CVaR = 0.05
    # exposure = 0.02 / 0.05 = 0.4; the masked -0.5 entries must not count.
    r = jnp.array([-0.05, 0.01, 0.02, -0.01, 0.0, -0.5, -0.5, -0.5], jnp.float32)
    m = jnp.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    _, level = expo(init_risk_state(), jnp.float32(0.0), r, m, jnp.bool_(False), p)
    assert float(level) == pytest.approx(0.4, rel=1e-6)
    # within budget: no scaling
    p_loose = dataclasses.replace(p, cvar_budget=jnp.float32(0.06))
    _, level = expo(init_risk_state(), jnp.float32(0.0), r, m, jnp.bool_(False), p_loose)
    assert float(level) == 1.0
    # budget 0 disables the CVaR term
    p_off = dataclasses.replace(p, cvar_budget=jnp.float32(0.0))
    _, level = expo(init_risk_state(), jnp.float32(0.0), r, m, jnp.bool_(False), p_off)
    assert float(level) == 1.0


def test_event_reduction_combines_multiplicatively(expo):
    p = risk_params(RiskConfig(cvar_alpha=0.8, cvar_budget=0.02, event_reduction=0.5))
    r = jnp.array([-0.05, 0.01, 0.02, -0.01, 0.0, 0.0, 0.0, 0.0], jnp.float32)
    m = jnp.array([1, 1, 1, 1, 1, 0, 0, 0], bool)
    _, level = expo(init_risk_state(), jnp.float32(0.0), r, m, jnp.bool_(True), p)
    assert float(level) == pytest.approx(0.4 * 0.5, rel=1e-6)
    r0, m0 = _no_returns()
    _, level = expo(init_risk_state(), jnp.float32(0.0), r0, m0, jnp.bool_(True), p)
    assert float(level) == pytest.approx(0.5)


def test_vmap_over_envs_matches_single_calls(expo):
    p = risk_params(RiskConfig())
    dd = jnp.array([0.0, 0.08, 0.05], jnp.float32)
    prev = RiskState(derisked=jnp.array([False, False, True]), base=jnp.zeros(3, jnp.float32),
                     since=jnp.zeros(3, jnp.int32))
    r = jnp.asarray(np.random.default_rng(0).normal(0, 0.02, (3, W)), jnp.float32)
    m = jnp.ones((3, W), bool)
    ev = jnp.array([False, True, False])
    bs, bl = jax.vmap(exposure, in_axes=(0, 0, 0, 0, 0, None))(prev, dd, r, m, ev, p)
    for i in range(3):
        s, lvl = expo(jax.tree.map(lambda x: x[i], prev), dd[i], r[i], m[i], ev[i], p)
        assert bool(s.derisked) == bool(bs.derisked[i])
        assert float(lvl) == pytest.approx(float(bl[i]))
    np.testing.assert_array_equal(np.asarray(bs.derisked), [False, True, True])
    assert bl.dtype == jnp.float32


def test_tail_cvar_matches_the_sorting_cvar():
    from hrl_sarp_jax.finance.metrics import cvar
    from hrl_sarp_jax.risk.manager import tail_cvar

    rng = np.random.default_rng(5)
    b, w = 64, 20
    r = rng.normal(0, 0.02, (b, w)).astype(np.float32)
    r[::4] = np.round(r[::4], 2)                              # many ties
    r[1::8] = 0.0                                             # all equal
    m = rng.random((b, w)) > 0.3
    m[2::8] = False                                           # empty windows
    alpha = rng.choice([0.5, 0.8, 0.95, 0.99], size=b).astype(np.float32)
    got = jax.jit(jax.vmap(tail_cvar))(r, alpha, m)
    want = jax.jit(jax.vmap(cvar))(r, alpha, m)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-8)


def test_disabled_cvar_is_static_and_not_compiled():
    p_off = risk_params(RiskConfig(cvar_budget=0.0))
    p_on = risk_params(RiskConfig(cvar_budget=0.02))
    assert p_off.use_cvar is False and p_on.use_cvar is True
    assert len(jax.tree.leaves(p_off)) == len(jax.tree.leaves(p_on))   # flag is not a leaf
    r = jnp.asarray(np.random.default_rng(6).normal(0, 0.05, W), jnp.float32)
    m = jnp.ones(W, bool)
    args = (init_risk_state(), jnp.float32(0.0), r, m, jnp.bool_(False))
    n_eqns = lambda p: len(jax.make_jaxpr(exposure)(*args, p).jaxpr.eqns)  # noqa: E731
    assert n_eqns(p_off) < n_eqns(p_on) - 10                  # the tail computation is gone
    # enabled with a zero budget (a sweep value) gives the same level as disabled
    p_zero = dataclasses.replace(p_on, cvar_budget=jnp.float32(0.0))
    assert float(exposure(*args, p_zero)[1]) == float(exposure(*args, p_off)[1]) == 1.0
    # the budget stays a sweepable leaf when enabled
    budgets = jnp.array([0.0, 0.01, 1.0], jnp.float32)
    levels = jax.vmap(lambda c: exposure(*args, dataclasses.replace(p_on, cvar_budget=c))[1])(
        budgets)
    assert float(levels[0]) == 1.0 and float(levels[1]) < 1.0 and float(levels[2]) == 1.0


def test_timed_rerisk_sequence(expo):
    """rerisk_days = 10: a de-risked gate re-risks after 10 trading days without recovery, then
    re-arms from the drawdown it stands at (hand-worked days and drawdowns)."""
    p = risk_params(RiskConfig(derisk_drawdown=0.07, rerisk_drawdown=0.03,
                               derisked_exposure=0.5, rerisk_days=10))
    r, m = _no_returns()
    state = init_risk_state()
    seq = [(0, 0.02), (5, 0.08), (10, 0.10), (15, 0.10), (16, 0.12), (20, 0.175), (21, 0.18),
           (25, 0.02), (26, 0.08)]
    got = []
    for day, dd in seq:
        state, level = expo(state, jnp.float32(dd), r, m, jnp.bool_(False), p, jnp.int32(day))
        got.append((bool(state.derisked), float(level), round(float(state.base), 4)))
    assert got == [
        (False, 1.0, 0.0),
        (True, 0.5, 0.0),     # day 5: 8% >= 7% de-risks (since = 5)
        (True, 0.5, 0.0),     # day 10: 5 days, no recovery
        (False, 1.0, 0.1),    # day 15: 10 days de-risked -> re-risk, re-armed at 10%
        (False, 1.0, 0.1),    # day 16: 12% - 10% = 2% < 7%: stays on
        (True, 0.5, 0.1),     # day 20: 17.5% - 10% >= 7% de-risks again (since = 20)
        (True, 0.5, 0.1),     # day 21: 8% over the base, inside the band
        (False, 1.0, 0.0),    # day 25: 2% <= 3% recovers; the base returns to 0
        (True, 0.5, 0.0),     # day 26: 8% from the peak de-risks as at first
    ]


def test_rerisk_days_zero_is_the_recovery_only_gate(expo):
    """Bit for bit the original gate: without a timed re-risk the base never moves."""
    p0 = risk_params(RiskConfig(derisked_exposure=0.5))
    rng = np.random.default_rng(0)
    r, m = _no_returns()
    state = init_risk_state()
    derisked = False
    for day, dd in enumerate(np.abs(rng.normal(0.05, 0.04, 300)).astype(np.float32)):
        state, level = expo(state, jnp.float32(dd), r, m, jnp.bool_(False), p0, jnp.int32(day))
        derisked = dd > 0.03 if derisked else dd >= 0.07
        assert bool(state.derisked) == bool(derisked)
        assert float(state.base) == 0.0
    with pytest.raises(Exception, match=r"risk\.rerisk_days"):
        risk_params(RiskConfig(rerisk_days=-1))
