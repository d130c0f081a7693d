"""Causal regime probabilities: a Gaussian HMM on the index's daily log returns, refitted on
an expanding window (``features.regime_hmm``).

Shapes: T days, K = ``NUM_STATES`` hidden states, J refits.

Every ``REFIT_DAYS`` days from day ``MIN_FIT_DAYS`` on (cuts c_j = MIN_FIT_DAYS + j REFIT_DAYS),
a K-state HMM with Gaussian emissions (initial distribution, transition matrix, per-state mean
and variance of the daily log return) is fitted by Baum-Welch EM (``EM_ITERS`` iterations from
a deterministic start: one mean, variances spread around the fitted returns', sticky
transitions) to the returns of days <= c_j only, and its states are ordered by their
variance (state 0 the calmest, K-1 the most volatile: at a daily frequency regimes differ far
more, and more stably between refits, in volatility than in mean). The forward filter
P(state_t | r_1 .. r_t) then runs through every day, day t with the parameters of the last cut
<= t, so row t reads days <= t only (walk-forward safe: nothing is fitted on a split). Rows
before the first cut, or under a refit that saw fewer than ``MIN_FIT_DAYS`` / 2 returns, are
masked. Pure jnp; one compile per T.

Reference: L. R. Rabiner (1989), "A tutorial on hidden Markov models and selected applications
in speech recognition", Proc. IEEE 77(2): the scaled forward-backward recursions and the
re-estimation formulas (eqs. 40, 92 and 53-54 there, for a single Gaussian per state).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.types import Array

NUM_STATES = 3
MIN_FIT_DAYS = 504
"""Days before the first fit (two years)."""
REFIT_DAYS = 252
"""Days between refits (a year)."""
EM_ITERS = 30
VAR_FLOOR = 1e-3
"""A state's variance is at least this fraction of the fitted returns' variance."""
_STAY = 0.9
_VAR_SPREAD = (0.25, 1.0, 4.0)
"""The start's state variances, as multiples of the fitted returns' variance (EM starts the
states apart in volatility, where daily regimes differ)."""


class HMMParams(NamedTuple):
    """One K-state Gaussian HMM: pi [K], trans [K, K] (rows sum to 1), mean [K], var [K]."""

    pi: Array
    trans: Array
    mean: Array
    var: Array


def likelihoods(x: Array, observed: Array, mean: Array, var: Array) -> Array:
    """[T, K] Gaussian densities of x [T] under each state (mean / var [K], or per day
    [T, K]); 1 (no evidence) where not ``observed``."""
    dens = jnp.exp(-0.5 * (x[:, None] - mean) ** 2 / var) / jnp.sqrt(2.0 * jnp.pi * var)
    return jnp.where(observed[:, None], dens, 1.0)


def forward(pi: Array, trans: Array, lik: Array) -> tuple[Array, Array]:
    """Scaled forward pass: (alpha [T, K], each row P(state_t | obs <= t), scale c [T]).
    ``trans`` is [K, K] or per day [T, K, K] (day t's prior is alpha_{t-1} @ trans_t)."""
    per_day = trans if trans.ndim == 3 else jnp.broadcast_to(trans, (lik.shape[0], *trans.shape))

    def step(prev, inputs):
        a_t, lik_t = inputs
        a = (prev @ a_t) * lik_t
        c = jnp.maximum(jnp.sum(a), 1e-30)
        return a / c, (a / c, c)

    a0 = pi * lik[0]
    c0 = jnp.maximum(jnp.sum(a0), 1e-30)
    _, (alpha, c) = jax.lax.scan(step, a0 / c0, (per_day[1:], lik[1:]))
    return jnp.concatenate([(a0 / c0)[None], alpha]), jnp.concatenate([c0[None], c])


def _backward(trans: Array, lik: Array, c: Array) -> Array:
    """Scaled backward pass: beta [T, K] (Rabiner's beta-hat)."""

    def step(nxt, inputs):
        lik_n, c_n = inputs
        b = trans @ (lik_n * nxt) / c_n
        return b, b

    last = jnp.ones(lik.shape[1], lik.dtype)
    _, beta = jax.lax.scan(step, last, (lik[1:], c[1:]), reverse=True)
    return jnp.concatenate([beta, last[None]])


def _init(x: Array, fit: Array) -> HMMParams:
    xs = jnp.where(fit, x, jnp.nan)
    mean = jnp.full((NUM_STATES,), jnp.nanmean(xs), x.dtype)
    var = jnp.nanvar(xs) * jnp.asarray(_VAR_SPREAD, x.dtype)
    off = (1.0 - _STAY) / (NUM_STATES - 1)
    trans = jnp.full((NUM_STATES, NUM_STATES), off, x.dtype) + (_STAY - off) * jnp.eye(
        NUM_STATES, dtype=x.dtype)
    return HMMParams(jnp.full((NUM_STATES,), 1.0 / NUM_STATES, x.dtype), trans, mean, var)


def _em_step(params: HMMParams, x: Array, fit: Array, floor: Array) -> HMMParams:
    lik = likelihoods(x, fit, params.mean, params.var)
    alpha, c = forward(params.pi, params.trans, lik)
    beta = _backward(params.trans, lik, c)
    gamma = alpha * beta
    gamma = gamma / jnp.maximum(jnp.sum(gamma, 1, keepdims=True), 1e-30)
    g = jnp.where(fit[:, None], gamma, 0.0)
    # xi_t(i, j) for t, t+1 both fitted
    both = (fit[:-1] & fit[1:]).astype(x.dtype)
    xi = (alpha[:-1, :, None] * params.trans[None] * (lik[1:] * beta[1:])[:, None, :]
          / c[1:, None, None])
    counts = jnp.sum(xi * both[:, None, None], 0) + 1e-6
    trans = counts / jnp.sum(counts, 1, keepdims=True)
    first = jnp.argmax(fit)
    weight = jnp.maximum(jnp.sum(g, 0), 1e-12)
    mean = jnp.sum(g * x[:, None], 0) / weight
    var = jnp.maximum(jnp.sum(g * (x[:, None] - mean) ** 2, 0) / weight, floor)
    return HMMParams(gamma[first], trans, mean, var)


def fit_hmm(x: Array, fit: Array) -> HMMParams:
    """The K-state HMM fitted by ``EM_ITERS`` Baum-Welch iterations to x [T] on the days
    ``fit`` [T] bool (other days carry no evidence), states ordered by variance."""
    x = jnp.where(fit, x, 0.0).astype(jnp.float32)
    start = _init(x, fit)
    floor = VAR_FLOOR * jnp.maximum(jnp.var(x, where=fit), 1e-12)
    params = jax.lax.fori_loop(0, EM_ITERS, lambda _, p: _em_step(p, x, fit, floor), start)
    order = jnp.argsort(params.var)
    return HMMParams(params.pi[order], params.trans[order][:, order], params.mean[order],
                     params.var[order])


def refit_days(num_days: int) -> np.ndarray:
    """int [J] the cuts MIN_FIT_DAYS, + REFIT_DAYS, ... below ``num_days`` (static)."""
    return np.arange(MIN_FIT_DAYS, int(num_days), REFIT_DAYS, dtype=np.int32)


def regime_probabilities(bench_close: Array) -> tuple[Array, Array]:
    """bench_close [T] -> (filtered state probabilities [T, K] float32, ok [T, K] bool),
    states ordered by their variance (calm first); row t uses closes of days <= t."""
    t_len = bench_close.shape[0]
    cuts = refit_days(t_len)
    if cuts.size == 0:
        return jnp.zeros((t_len, NUM_STATES), jnp.float32), jnp.zeros((t_len, NUM_STATES), bool)
    ok = bench_close > 0
    logc = jnp.log(jnp.where(ok, bench_close, 1.0)).astype(jnp.float32)
    r = jnp.concatenate([jnp.zeros(1, jnp.float32), logc[1:] - logc[:-1]])
    observed = jnp.concatenate([jnp.zeros(1, bool), ok[1:] & ok[:-1]])
    days = np.arange(t_len)
    fits = observed[None, :] & jnp.asarray(days[None, :] <= cuts[:, None])      # [J, T]
    params = jax.vmap(fit_hmm, in_axes=(None, 0))(r, fits)                       # [J, ...]
    enough = jnp.sum(fits, 1) >= MIN_FIT_DAYS // 2                               # [J]
    which = np.searchsorted(cuts, days, side="right") - 1                        # [T], -1 early
    j = np.maximum(which, 0)
    lik = likelihoods(r, observed, params.mean[j], params.var[j])
    alpha, _ = forward(params.pi[0], params.trans[j], lik)
    row_ok = jnp.asarray(which >= 0) & enough[j]
    out = jnp.where(row_ok[:, None], alpha, 0.0).astype(jnp.float32)
    return out, jnp.broadcast_to(row_ok[:, None], out.shape)
