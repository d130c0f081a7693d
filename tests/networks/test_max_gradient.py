"""The max reductions' derivative (networks.common.nan_safe_max): never NaN, JAX's value otherwise.

Regression: jnp.max's JVP divides by the number of entries equal to the max. In the one-device
Phase-4 chunk compiled with FAST_COMPILE (XLA CPU at optimisation level 0) the critic's
masked-max operand was recomputed in fusions that rounded differently, that count came out 0
for one pooled column and the actor gradient (through dQ/dweights) was NaN from the first
actor update on. The compiled-program mismatch cannot be forced from Python, so the tests
give ``max_tangent`` the maximum that no entry equals and check the compiled gradients of
masked_max, the Micro critic and the TD3 action softmax on degenerate inputs (ties, padding,
an all-padded set) under the same compiler options.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.distributions import masked_softmax
from hrl_sarp_jax.networks.common import masked_max, max_tangent, nan_safe_max
from hrl_sarp_jax.networks.micro import MicroCritic
from tests.agents._compile import compile_fast


def test_max_tangent_with_no_entry_equal_to_the_max_is_finite():
    x = jnp.array([[1.0, 5.0], [3.0, 5.0], [2.0, 4.0]])
    t = jnp.array([[10.0, 1.0], [20.0, 2.0], [30.0, 3.0]])
    tangent = compile_fast(lambda x, p, t: max_tangent(x, p, t, 0), x, x[:1], t)
    # what the compiled program met: a max that no entry equals (JAX's rule gives 0/0 = NaN)
    beside = jnp.nextafter(jnp.max(x, axis=0, keepdims=True), jnp.inf)
    hit = (x == beside).astype(jnp.float32)
    assert np.all(np.isnan(np.asarray(jnp.sum(t * hit, axis=0) / jnp.sum(hit, axis=0))))
    np.testing.assert_array_equal(tangent(x, beside, t), [0.0, 0.0])
    # the true max: the arg-max's tangent, ties averaged (column 1: rows 0 and 1)
    np.testing.assert_array_equal(tangent(x, jnp.max(x, axis=0, keepdims=True), t), [20.0, 1.5])


def test_masked_max_value_and_gradient_under_fast_compile():
    x = jnp.array([[1.0, 7.0, -2.0], [4.0, 7.0, -3.0], [9.0, 8.0, 5.0], [4.0, 0.0, -1.0]])
    w = jnp.array([1.0, 2.0, 3.0])
    f = lambda x, m: jnp.sum(w * masked_max(x, m))  # noqa: E731
    mask = jnp.array([True, True, False, True])  # row 2 (the column maxima) is padding
    grad = compile_fast(jax.value_and_grad(f), x, mask)
    value, g = grad(x, mask)
    assert float(value) == 1.0 * 4.0 + 2.0 * 7.0 + 3.0 * -1.0
    # column 0: rows 1 and 3 tie at 4 (1/2 each); column 1: rows 0 and 1 tie at 7
    np.testing.assert_array_equal(g, [[0.0, 1.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 0.0],
                                      [0.5, 0.0, 3.0]])
    # an all-padded set: output 0, gradient 0 (the -inf entries all "tie" and get nothing)
    value, g = grad(x, jnp.zeros(4, bool))
    assert float(value) == 0.0 and np.all(np.asarray(g) == 0.0)
    # same value and gradient as jnp.max's own derivative in the default compile
    ref = jax.jit(jax.value_and_grad(lambda x, m: jnp.sum(
        w * jnp.max(jnp.where(m[:, None], x, -jnp.inf), axis=0))))
    for a, b in zip(grad(x, mask), ref(x, mask), strict=True):
        np.testing.assert_array_equal(a, b)
    # and nan_safe_max is jnp.max in value along both axes
    np.testing.assert_array_equal(nan_safe_max(x, 1), jnp.max(x, axis=1))


def test_micro_critic_action_gradient_finite_under_fast_compile(tiny_config):
    # Degenerate critic inputs: stocks 0, 1, 3 identical (every pooled max column is a tie),
    # two padded slots carrying NaN features and weights, equal weights on valid stocks.
    n, f = 6, 5
    mask = np.array([True, True, False, True, True, False])
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(n, f)).astype(np.float32)
    feats[[1, 3]] = feats[0]
    feats[~mask] = np.nan
    goal = np.array([0.2, 0.3, 0.5, 1.0, 0.0, 0.0], np.float32)
    weights = np.where(mask, 0.25, np.nan).astype(np.float32)
    critic = MicroCritic(tiny_config)
    params = jax.jit(critic.init)(jax.random.key(3, impl="rbg"), np.nan_to_num(feats), goal,
                                  np.nan_to_num(weights), mask)
    q_grad = jax.value_and_grad(lambda p, w: critic.apply(p, feats, goal, w, mask), argnums=1)
    q, g = compile_fast(q_grad, params, weights)(params, weights)
    q_ref, g_ref = jax.jit(q_grad)(params, weights)
    assert np.isfinite(float(q)) and np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g)[~mask], 0.0)
    np.testing.assert_allclose(float(q), float(q_ref), rtol=1e-5)
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-6)
    # identical stocks, identical weights: identical derivatives (the tie is shared, not given
    # to one of them)
    np.testing.assert_allclose(np.asarray(g)[[1, 3]], np.asarray(g)[[0, 0]], rtol=1e-6)


def test_td3_action_softmax_jacobian_under_fast_compile():
    # tied maximal logits and a padded slot: the softmax Jacobian, never NaN
    logits = jnp.array([2.0, 2.0, -1.0, 0.5])
    mask = jnp.array([True, True, True, False])
    jac = compile_fast(jax.jacobian(masked_softmax), logits, mask)(logits, mask)
    p = np.asarray(masked_softmax(logits, mask))
    want = np.diag(p) - np.outer(p, p)
    want[:, ~np.asarray(mask)] = 0.0
    np.testing.assert_allclose(jac, want, rtol=1e-5, atol=1e-7)
    assert p[3] == 0.0 and np.all(np.isfinite(np.asarray(jac)))
