"""Masked Dirichlet and Categorical against scipy and hand values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from hrl_sarp_jax.agents.distributions import (
    SAMPLE_FLOOR,
    Categorical,
    Dirichlet,
    joint_entropy,
    joint_kl,
    joint_log_prob,
    joint_mode,
    joint_sample,
    masked_softmax,
)

ALPHA = np.array([0.7, 2.0, 3.5, 9.0], np.float32)
MASK = np.array([True, True, True, False])   # the 4th sector is padding


def test_dirichlet_unmasked_matches_scipy():
    x = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    d = Dirichlet(jnp.asarray(ALPHA), jnp.ones(4, bool))
    np.testing.assert_allclose(d.log_prob(x), stats.dirichlet.logpdf(x, ALPHA), rtol=1e-5)
    np.testing.assert_allclose(d.entropy(), stats.dirichlet.entropy(ALPHA), rtol=1e-5)
    np.testing.assert_allclose(d.mean(), ALPHA / ALPHA.sum(), rtol=1e-6)


def test_dirichlet_masked_component_is_excluded():
    # With slot 3 masked the distribution is Dir(0.7, 2, 3.5) on the first three slots; the α
    # and x values in the padded slot must not matter.
    x = np.array([0.2, 0.3, 0.5, 0.0], np.float32)
    alpha_junk = ALPHA.copy()
    alpha_junk[3] = 123.0
    for a in (ALPHA, alpha_junk):
        d = Dirichlet(jnp.asarray(a), jnp.asarray(MASK))
        np.testing.assert_allclose(
            d.log_prob(x), stats.dirichlet.logpdf(x[:3], ALPHA[:3]), rtol=1e-5
        )
        np.testing.assert_allclose(d.entropy(), stats.dirichlet.entropy(ALPHA[:3]), rtol=1e-5)
        np.testing.assert_allclose(d.mean(), [0.7 / 6.2, 2 / 6.2, 3.5 / 6.2, 0.0], rtol=1e-6)


def test_dirichlet_mode_hand_values():
    # α = (2, 3, 5): mode = (α-1)/(α0-K) = (1, 2, 4) / 7; with an α < 1 it falls back to the mean.
    d = Dirichlet(jnp.array([2.0, 3.0, 5.0, 0.1]), jnp.asarray(MASK))
    np.testing.assert_allclose(d.mode(), [1 / 7, 2 / 7, 4 / 7, 0.0], rtol=1e-6)
    d2 = Dirichlet(jnp.array([0.5, 3.0, 5.0, 1.0]), jnp.asarray(MASK))
    np.testing.assert_allclose(d2.mode(), [0.5 / 8.5, 3 / 8.5, 5 / 8.5, 0.0], rtol=1e-6)


def test_dirichlet_samples_on_valid_simplex_with_right_mean():
    d = Dirichlet(jnp.broadcast_to(ALPHA, (4000, 4)), jnp.broadcast_to(MASK, (4000, 4)))
    x = jax.jit(lambda k: d.sample(k))(jax.random.key(1))
    assert x.dtype == jnp.float32
    np.testing.assert_array_equal(x[:, 3], 0.0)
    np.testing.assert_allclose(x.sum(-1), 1.0, rtol=1e-6)
    assert float(x[:, :3].min()) >= SAMPLE_FLOOR / (1 + 4 * SAMPLE_FLOOR)
    # Mean of Dir(0.7, 2, 3.5) = (0.113, 0.323, 0.565); std of the sample mean < 0.005.
    np.testing.assert_allclose(x[:, :3].mean(0), ALPHA[:3] / ALPHA[:3].sum(), atol=0.02)


def test_dirichlet_log_prob_is_of_the_exact_sampled_action():
    # Tiny concentrations make raw gamma draws underflow to 0; the returned (floored) action
    # must still have a finite log-prob, and that log-prob is the density at the action itself.
    a = jnp.full((256, 3), 0.02)
    d = Dirichlet(a, jnp.ones((256, 3), bool))
    x = d.sample(jax.random.key(2))
    lp = d.log_prob(x)
    assert bool(jnp.all(jnp.isfinite(lp)))
    x0 = np.asarray(x[0], np.float64)
    ref = stats.dirichlet.logpdf(x0 / x0.sum(), [0.02] * 3)
    np.testing.assert_allclose(lp[0], ref, rtol=1e-3)


def test_categorical_hand_values():
    # logits log(1,2,5): p = (0.125, 0.25, 0.625)
    # H = -(0.125 ln 0.125 + 0.25 ln 0.25 + 0.625 ln 0.625) = 0.2599 + 0.3466 + 0.2938 = 0.9003
    logits = jnp.log(jnp.array([1.0, 2.0, 5.0]))
    c = Categorical(logits)
    np.testing.assert_allclose(c.log_prob(jnp.int32(2)), np.log(0.625), rtol=1e-6)
    p = np.array([0.125, 0.25, 0.625])
    np.testing.assert_allclose(c.entropy(), -(p * np.log(p)).sum(), rtol=1e-6)
    assert int(c.mode()) == 2
    draws = Categorical(jnp.broadcast_to(logits, (4000, 3))).sample(jax.random.key(3))
    np.testing.assert_allclose(np.bincount(np.asarray(draws), minlength=3) / 4000, p, atol=0.03)


def test_joint_is_sum_over_components():
    dists = {
        "weights": Dirichlet(jnp.asarray(ALPHA), jnp.asarray(MASK)),
        "regime": Categorical(jnp.array([0.0, 1.0, -1.0])),
    }
    action = joint_sample(jax.random.key(4), dists)
    assert action["weights"].shape == (4,) and action["regime"].dtype == jnp.int32
    expected = dists["weights"].log_prob(action["weights"]) + dists["regime"].log_prob(
        action["regime"]
    )
    np.testing.assert_allclose(joint_log_prob(dists, action), expected, rtol=1e-6)
    np.testing.assert_allclose(
        joint_entropy(dists),
        stats.dirichlet.entropy(ALPHA[:3]) + float(dists["regime"].entropy()),
        rtol=1e-5,
    )
    assert int(joint_mode(dists)["regime"]) == 1


def test_masked_softmax():
    w = masked_softmax(jnp.array([0.0, jnp.log(3.0), 50.0]), jnp.array([True, True, False]))
    np.testing.assert_allclose(w, [0.25, 0.75, 0.0], rtol=1e-6)


def test_dirichlet_log_prob_gradient_finite():
    x = np.array([0.5, 0.3, 0.2, 0.0], np.float32)
    g = jax.grad(lambda a: Dirichlet(a, jnp.asarray(MASK)).log_prob(x))(jnp.asarray(ALPHA))
    assert bool(jnp.all(jnp.isfinite(g)))
    assert float(g[3]) == 0.0   # the padded slot gets no gradient


def test_dirichlet_kl_matches_a_numpy_monte_carlo_and_ignores_masked_slots():
    # KL(p ‖ q) = E_p[log p(x) − log q(x)]: 400,000 scipy draws of p = Dir(0.7, 2, 3.5) and
    # scipy's log-densities give it within ~3 SE; slot 4 is padding (its α must not matter).
    beta = np.array([1.5, 1.0, 6.0, 0.3], np.float32)
    x = stats.dirichlet.rvs(ALPHA[:3].astype(np.float64), size=400_000,
                            random_state=np.random.default_rng(0))
    x = np.clip(x, 1e-300, None)
    diff = (stats.dirichlet.logpdf(x.T, ALPHA[:3].astype(np.float64))
            - stats.dirichlet.logpdf(x.T, beta[:3].astype(np.float64)))
    mc, se = diff.mean(), diff.std() / np.sqrt(diff.size)
    junk = beta.copy()
    junk[3] = 50.0
    for b in (beta, junk):
        kl = Dirichlet(jnp.asarray(ALPHA), jnp.asarray(MASK)).kl(
            Dirichlet(jnp.asarray(b), jnp.asarray(MASK)))
        assert abs(float(kl) - mc) < 4 * se, (float(kl), mc, se)
    same = Dirichlet(jnp.asarray(ALPHA), jnp.asarray(MASK))
    np.testing.assert_allclose(same.kl(same), 0.0, atol=1e-5)


def test_categorical_and_joint_kl_hand_values():
    # p = (0.5, 0.5), q = (0.25, 0.75): KL = 0.5 ln 2 + 0.5 ln(2/3) = 0.143841
    p = Categorical(jnp.log(jnp.array([0.5, 0.5])))
    q = Categorical(jnp.log(jnp.array([0.25, 0.75])) + 3.0)  # logits need not be normalised
    np.testing.assert_allclose(p.kl(q), 0.143841, rtol=1e-5)
    d = Dirichlet(jnp.asarray(ALPHA), jnp.asarray(MASK))
    d2 = Dirichlet(jnp.asarray(ALPHA * 2.0), jnp.asarray(MASK))
    np.testing.assert_allclose(joint_kl({"w": d, "r": p}, {"w": d2, "r": q}),
                               float(d.kl(d2)) + 0.143841, rtol=1e-5)
