"""Constraint projections: exactness vs NumPy/scipy references, feasibility, no cash leak."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from hrl_sarp_jax.config import ConstraintConfig
from hrl_sarp_jax.risk.constraints import (
    constraint_params,
    project_capped_simplex,
    project_sector_weights,
    project_weights,
)

S = 3


def _np_capped_simplex(w, caps, budget):
    """Exact float64 projection by scanning the breakpoints of f(t) = sum clip(w - t, 0, c)."""
    w, caps = np.asarray(w, float), np.asarray(caps, float)
    if caps.sum() <= budget:
        return caps.copy()
    f = lambda t: np.clip(w - t, 0, caps).sum()  # noqa: E731
    bps = np.sort(np.concatenate([w, w - caps]))
    vals = np.array([f(t) for t in bps])            # nonincreasing in t
    j = np.searchsorted(-vals, -budget)             # first breakpoint with f <= budget
    t0, t1, f0, f1 = bps[j - 1], bps[j], vals[j - 1], vals[j]
    t = t1 if f0 == f1 else t0 + (f0 - budget) * (t1 - t0) / (f0 - f1)
    return np.clip(w - t, 0, caps)


def _scipy_projection(w, sid, valid, stock_cap, sector_cap, budget):
    cons = [{"type": "eq", "fun": lambda x: x.sum() - budget, "jac": lambda x: np.ones_like(x)}]
    for s in range(S):
        m = (sid == s).astype(float)
        cons.append({"type": "ineq", "fun": lambda x, m=m: sector_cap - m @ x,
                     "jac": lambda x, m=m: -m})
    bounds = [(0.0, stock_cap if v else 0.0) for v in valid]
    res = minimize(lambda x: ((x - w) ** 2).sum(), np.full(len(w), budget / len(w)),
                   jac=lambda x: 2 * (x - w), bounds=bounds, constraints=cons, method="SLSQP",
                   options={"ftol": 1e-15, "maxiter": 1000})
    assert res.success, res.message
    return res.x


@pytest.fixture(scope="module")
def capped():
    return jax.jit(project_capped_simplex)


@pytest.fixture(scope="module")
def params():
    return constraint_params(ConstraintConfig(max_stock_weight=0.2, max_sector_weight=0.45,
                                              min_cash=0.02, max_positions=0))


@pytest.fixture(scope="module")
def project_batch():
    """vmap over cases [B, N] with one static params object; compiled once per params."""
    return jax.jit(jax.vmap(project_weights, in_axes=(0, 0, 0, None, None, 0)),
                   static_argnums=3)


def test_capped_simplex_matches_breakpoint_reference(capped):
    rng = np.random.default_rng(0)
    for _ in range(8):
        w = rng.normal(0.1, 0.3, size=7)
        caps = rng.uniform(0.05, 0.5, size=7)
        budget = rng.uniform(0.2, 1.0)
        want = _np_capped_simplex(w, caps, budget)
        got = np.asarray(capped(jnp.asarray(w, jnp.float32), jnp.asarray(caps, jnp.float32),
                                jnp.float32(budget)))
        np.testing.assert_allclose(got, want, atol=2e-6)
        assert np.all(got <= caps + 1e-7) and np.all(got >= 0)


def test_capped_simplex_edge_cases(capped):
    w = jnp.array([0.5, 0.3, 0.2], jnp.float32)
    caps = jnp.array([0.1, 0.1, 0.1], jnp.float32)
    # sum(caps) = 0.3 < budget 0.9: caps, cash absorbs the rest
    np.testing.assert_allclose(np.asarray(capped(w, caps, jnp.float32(0.9))), [0.1] * 3, atol=0)
    np.testing.assert_array_equal(np.asarray(capped(w, caps, jnp.float32(0.0))), [0, 0, 0])
    # hand: caps 1, budget 1, w already on the simplex -> unchanged
    np.testing.assert_allclose(np.asarray(capped(w, jnp.ones(3), jnp.float32(1.0))),
                               [0.5, 0.3, 0.2], atol=1e-7)


def test_sector_projection_by_hand():
    p = constraint_params(ConstraintConfig(max_sector_weight=0.35, min_cash=0.02))
    x = jax.jit(project_sector_weights)(jnp.array([0.7, 0.1, 0.1, 0.1]), jnp.ones(4, bool), p)
    # clip(w - tau, 0, 0.35): 0.35 + 3 (0.1 - tau) = 0.98 -> tau = -0.11 -> others 0.21
    np.testing.assert_allclose(np.asarray(x), [0.35, 0.21, 0.21, 0.21], atol=1e-6)
    x = jax.jit(project_sector_weights)(jnp.array([0.7, 0.1, 0.1, 0.1]),
                                        jnp.array([True, True, False, False]), p, 0.5)
    # budget 0.49 over two valid sectors: 0.35 + (0.1 - tau) = 0.49 -> 0.14
    np.testing.assert_allclose(np.asarray(x), [0.35, 0.14, 0.0, 0.0], atol=1e-6)


def _random_cases(rng, b, n):
    w = rng.dirichlet(np.full(n, 0.6), size=b).astype(np.float32)
    sid = rng.integers(0, S, size=(b, n)).astype(np.int32)
    valid = rng.random((b, n)) > 0.15
    return w, sid, valid


def test_matches_scipy_qp_on_small_cases(project_batch, params):
    rng = np.random.default_rng(1)
    w, sid, valid = _random_cases(rng, 12, 7)
    valid[:, :5] = True    # keep most cases feasible
    sid[:, :3] = [0, 1, 2]
    exposure = rng.uniform(0.5, 1.0, size=12).astype(np.float32)
    got = np.asarray(project_batch(w, sid, valid, S, params, exposure))
    checked = 0
    for i in range(12):
        budget = float(exposure[i]) * 0.98
        cap_total = sum(min(0.45, 0.2 * np.sum(valid[i] & (sid[i] == s))) for s in range(S))
        if cap_total < budget + 1e-3:
            continue   # infeasible budget: covered by the cash tests
        want = _scipy_projection(w[i].astype(float), sid[i], valid[i], 0.2, 0.45, budget)
        np.testing.assert_allclose(got[i], want, atol=1e-4)
        checked += 1
    assert checked >= 8


def test_feasibility_on_random_cases(project_batch, params):
    rng = np.random.default_rng(2)
    b, n = 64, 10
    w, sid, valid = _random_cases(rng, b, n)
    w[::3] *= 5.0    # also unnormalised targets
    exposure = rng.uniform(0.0, 1.0, size=b).astype(np.float32)
    x = np.asarray(project_batch(w, sid, valid, S, params, exposure))
    assert np.all(x >= 0) and np.all(x <= 0.2 + 1e-6)
    assert np.all(x[~valid] == 0)
    for s in range(S):
        assert np.all((x * (sid == s)).sum(1) <= 0.45 + 1e-6)
    budget = exposure * 0.98
    cap_total = np.stack([np.minimum(0.45, 0.2 * (valid & (sid == s)).sum(1))
                          for s in range(S)]).sum(0)
    # total = budget when it fits, else every sector at its own maximum (cash takes the rest)
    np.testing.assert_allclose(x.sum(1), np.minimum(budget, cap_total), atol=1e-6)


def test_cap_excess_is_redistributed_not_leaked_to_cash():
    p = constraint_params(ConstraintConfig())   # 10% stock, 35% sector, 2% cash
    n = 20
    w = np.full(n, 0.5 / 19, np.float32)
    w[0] = 0.5
    sid = np.repeat(np.arange(4), 5).astype(np.int32)
    x = np.asarray(jax.jit(project_weights, static_argnums=3)(
        jnp.asarray(w), jnp.asarray(sid), jnp.ones(n, bool), 4, p))
    np.testing.assert_allclose(x.sum(), 0.98, atol=1e-6)
    np.testing.assert_allclose(x[0], 0.10, atol=1e-6)
    # the others share the excess equally (Euclidean shift), sector 0 stays under 35%
    np.testing.assert_allclose(x[1:], (0.98 - 0.10) / 19, atol=1e-6)
    assert x[sid == 0].sum() <= 0.35 + 1e-6


def test_cash_only_when_caps_cannot_hold_the_budget():
    p = constraint_params(ConstraintConfig())
    f = jax.jit(project_weights, static_argnums=3)
    valid = jnp.array([True, True, False, False, False])
    x = np.asarray(f(jnp.array([0.6, 0.1, 0.1, 0.1, 0.1]), jnp.zeros(5, jnp.int32), valid, 2, p))
    np.testing.assert_allclose(x, [0.1, 0.1, 0, 0, 0], atol=1e-7)   # total 0.2, rest is cash
    # 5 valid stocks all in one sector: the sector cap (0.35) is the binding limit
    x = np.asarray(f(jnp.array([0.5, 0.2, 0.1, 0.1, 0.1]), jnp.zeros(5, jnp.int32),
                     jnp.ones(5, bool), 2, p))
    np.testing.assert_allclose(x.sum(), 0.35, atol=1e-6)
    # Euclidean on the sector: clip(w - t, 0, 0.1) sums to 0.35 -> [0.1, 0.1, 0.05 x 3]
    np.testing.assert_allclose(x, [0.1, 0.1, 0.05, 0.05, 0.05], atol=1e-6)


def test_max_positions_keeps_the_largest():
    p = constraint_params(ConstraintConfig(max_stock_weight=0.5, max_sector_weight=1.0,
                                           min_cash=0.0, max_positions=3))
    w = jnp.array([0.05, 0.3, 0.1, 0.25, 0.2, 0.1], jnp.float32)
    x = np.asarray(jax.jit(project_weights, static_argnums=3)(
        w, jnp.zeros(6, jnp.int32), jnp.array([1, 1, 1, 1, 0, 1], bool), 1, p))
    # stock 4 is invalid, so the support is {1, 3} plus the tie winner 2 (lower index than 5)
    assert np.count_nonzero(x) <= 3
    np.testing.assert_array_equal(np.flatnonzero(x), [1, 2, 3])
    # projection of [0.3, 0.1, 0.25] onto the simplex: shift tau = (0.65 - 1) / 3
    np.testing.assert_allclose(x[[1, 2, 3]], np.array([0.3, 0.1, 0.25]) + 0.35 / 3, atol=1e-6)
