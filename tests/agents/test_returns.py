"""GAE: hand-computed values and a NumPy reference loop with both kinds of episode end."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.agents.returns import gae, normalize_advantages

gae_jit = jax.jit(gae)


def _numpy_gae(r, v, nv, term, trunc, gamma, lam):
    T, B = r.shape
    adv = np.zeros((T, B), np.float64)
    for b in range(B):
        next_adv = 0.0
        for t in reversed(range(T)):
            delta = r[t, b] + gamma * (1.0 - term[t, b]) * nv[t, b] - v[t, b]
            done = float(term[t, b] or trunc[t, b])
            next_adv = delta + gamma * lam * (1.0 - done) * next_adv
            adv[t, b] = next_adv
    return adv, adv + v


def test_hand_computed_three_steps():
    # One env, γ = 0.5, λ = 0.5 (γλ = 0.25). Step 0 is truncated, step 1 continues, step 2
    # terminates. r = [1, 2, 3], V(s_t) = [0.5, 1, 2], V(s_{t+1}) = [4, 2, 7].
    # δ_2 = 3 + 0.5·0·7 - 2 = 1                (terminated: no bootstrap)     → A_2 = 1
    # δ_1 = 2 + 0.5·2 - 1 = 2;  A_1 = 2 + 0.25·1·A_2 = 2.25
    # δ_0 = 1 + 0.5·4 - 0.5 = 2.5 (truncated: bootstraps on V(final obs) = 4)
    # A_0 = 2.5 + 0.25·0·A_1 = 2.5            (does not carry A_1 across the end)
    # R = A + V = [3, 3.25, 3]
    r = jnp.array([[1.0], [2.0], [3.0]])
    v = jnp.array([[0.5], [1.0], [2.0]])
    nv = jnp.array([[4.0], [2.0], [7.0]])
    term = jnp.array([[False], [False], [True]])
    trunc = jnp.array([[True], [False], [False]])
    adv, ret = gae_jit(r, v, nv, term, trunc, jnp.float32(0.5), jnp.float32(0.5))
    np.testing.assert_allclose(adv[:, 0], [2.5, 2.25, 1.0], rtol=1e-6)
    np.testing.assert_allclose(ret[:, 0], [3.0, 3.25, 3.0], rtol=1e-6)
    assert adv.dtype == jnp.float32


def test_matches_numpy_loop_with_both_episode_ends():
    rng = np.random.default_rng(0)
    T, B = 12, 4
    r = rng.normal(size=(T, B)).astype(np.float32)
    v = rng.normal(size=(T, B)).astype(np.float32)
    nv = rng.normal(size=(T, B)).astype(np.float32)
    u = rng.random((T, B))
    term = u < 0.15
    trunc = (u >= 0.15) & (u < 0.3)
    assert term.any() and trunc.any()
    gamma, lam = 0.9, 0.8
    adv, ret = gae_jit(r, v, nv, term, trunc, jnp.float32(gamma), jnp.float32(lam))
    ref_adv, ref_ret = _numpy_gae(r, v, nv, term, trunc, gamma, lam)
    np.testing.assert_allclose(adv, ref_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, ref_ret, rtol=1e-5, atol=1e-5)


def test_gamma_lambda_are_traced_and_vmappable():
    # One compile serves a sweep over (γ, λ); λ = 0 gives the one-step TD error.
    r = jnp.array([[1.0], [1.0]])
    v = jnp.zeros((2, 1))
    nv = jnp.ones((2, 1))
    no = jnp.zeros((2, 1), bool)
    adv, _ = jax.jit(jax.vmap(gae, in_axes=(None,) * 5 + (0, 0)))(
        r, v, nv, no, no, jnp.array([0.5, 0.9]), jnp.array([0.0, 1.0])
    )
    # γ=0.5, λ=0: A_t = δ_t = 1 + 0.5·1 - 0 = 1.5 for both t.
    # γ=0.9, λ=1: δ = 1.9 each; A_1 = 1.9, A_0 = 1.9 + 0.9·1.9 = 3.61.
    np.testing.assert_allclose(adv[0, :, 0], [1.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(adv[1, :, 0], [3.61, 1.9], rtol=1e-6)


def test_normalize_advantages():
    a = jnp.array([1.0, 2.0, 3.0, 4.0])
    n = normalize_advantages(a)
    # mean 2.5, population std sqrt(1.25) = 1.1180340
    np.testing.assert_allclose(n, (np.array([1, 2, 3, 4]) - 2.5) / np.sqrt(1.25), rtol=1e-5)
    assert float(n.mean()) == pytest.approx(0.0, abs=1e-6)
