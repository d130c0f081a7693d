"""features.hmm: the regime HMM against a NumPy forward filter, parameter recovery on a
simulated 3-state market, and causality of the expanding-window probabilities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.features import hmm

TRANS = np.array([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]])
MEAN = np.array([0.0005, 0.002, -0.004])
SD = np.array([0.006, 0.012, 0.025])


def simulate(days: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(daily log returns [T], hidden states [T]) of the 3-state market above."""
    rng = np.random.default_rng(seed)
    s = np.zeros(days, int)
    for t in range(1, days):
        s[t] = rng.choice(3, p=TRANS[s[t - 1]])
    return MEAN[s] + SD[s] * rng.standard_normal(days), s


@pytest.fixture(scope="module")
def market():
    r, s = simulate(3200)
    return r, s, 100.0 * np.exp(np.cumsum(r))


def numpy_filter(pi, trans, mean, var, x, observed):
    """Rabiner's forward recursion, normalised each day, in float64."""
    out, prev = [], None
    for t, xt in enumerate(x):
        lik = np.exp(-0.5 * (xt - mean) ** 2 / var) / np.sqrt(2 * np.pi * var)
        lik = lik if observed[t] else np.ones_like(mean)
        a = (pi if prev is None else prev @ trans) * lik
        prev = a / a.sum()
        out.append(prev)
    return np.array(out)


def test_forward_filter_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.01, 60)
    observed = rng.random(60) > 0.2
    trans = rng.dirichlet(np.ones(3) * 5, 3)
    pi, mean, var = np.array([0.2, 0.5, 0.3]), np.array([-0.01, 0.0, 0.01]), np.array(
        [1e-4, 4e-5, 2e-4])
    lik = hmm.likelihoods(jnp.asarray(x, jnp.float32), jnp.asarray(observed),
                          jnp.asarray(mean, jnp.float32), jnp.asarray(var, jnp.float32))
    alpha, _ = jax.jit(hmm.forward)(jnp.asarray(pi, jnp.float32),
                                    jnp.asarray(trans, jnp.float32), lik)
    np.testing.assert_allclose(np.asarray(alpha), numpy_filter(pi, trans, mean, var, x,
                                                               observed), atol=2e-5)


def test_em_recovers_the_simulated_market(market):
    r, _, _ = market
    p = jax.jit(hmm.fit_hmm)(jnp.asarray(r, jnp.float32), jnp.ones(r.size, bool))
    # states ordered by variance: the simulated ones are 0 (calm), 1, 2 (volatile)
    np.testing.assert_allclose(np.sqrt(np.asarray(p.var)), SD, rtol=0.15)
    assert np.all(np.diag(np.asarray(p.trans)) > 0.93)
    np.testing.assert_allclose(np.asarray(p.trans).sum(1), 1.0, rtol=1e-5)
    assert float(p.mean[2]) < float(p.mean[0]) < float(p.mean[1])


def test_expanding_window_probabilities_are_causal_and_read_the_regime(market):
    _, s, close = market
    f = jax.jit(hmm.regime_probabilities)
    probs, ok = (np.asarray(a) for a in f(jnp.asarray(close, jnp.float32)))
    first = hmm.MIN_FIT_DAYS
    assert not ok[:first].any() and ok[first:].all() and np.all(probs[:first] == 0)
    np.testing.assert_allclose(probs[first:].sum(1), 1.0, rtol=1e-5)
    # the filtered most likely state is the simulated one on most days (chance: about 1/3)
    assert (probs[first:].argmax(1) == s[first:]).mean() > 0.7
    # changing the closes after day t leaves every row <= t as it was, bit for bit
    t = 1500
    other = close.copy()
    other[t + 1:] *= np.exp(np.random.default_rng(5).normal(0, 0.03, close.size - t - 1))
    probs2, _ = (np.asarray(a) for a in f(jnp.asarray(other, jnp.float32)))
    np.testing.assert_array_equal(probs2[: t + 1], probs[: t + 1])
    assert not np.allclose(probs2[t + 1:], probs[t + 1:])


def test_refits_a_year_apart_from_two_years_on():
    assert hmm.refit_days(1300).tolist() == [504, 756, 1008, 1260]
    assert hmm.refit_days(504).size == 0
    probs, ok = hmm.regime_probabilities(jnp.full(300, 100.0))
    assert probs.shape == (300, 3) and not bool(np.asarray(ok).any())
