"""The causal regime rule: a baseline that makes an RL allocator earn its place (issue 13).

A multinomial logistic regression predicts the next period's regime (``EnvParams.regime_label``:
0 Bull, 1 Bear, 2 Sideways, the label Phase 1 learns) from the market's *raw* macro series and
their trailing moving averages; each regime holds the sectors that earned most in it. Both are
fitted on the training window only (days before ``data.val_start``, minus the label's horizon,
so no label reaches past it), then frozen: a decision at t reads inputs <= t only.

Host side (NumPy, float64): ``regime_rule_inputs`` builds the inputs [T, F], ``fit_regime_rule``
fits the model and the sector table. The weight function is ``baselines.RegimeRule``.
Shapes: T days, M macro series, F = M x (1 + len(windows)) inputs, S sectors, R = 3 regimes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.types import NUM_REGIMES

LABEL_HORIZON = 10   # trading days: the label of t spans t .. next week end (<= 5 days) + slack
MA_WINDOWS = (20, 60)


@dataclass(frozen=True)
class RegimeRuleFit:
    """A fitted rule: standardised inputs [T, F], coefficients [F + 1, R] (last row the
    intercept), the sector score table [R, S] (mean daily sector return by label) and the
    fit's in-sample accuracy and number of labelled days."""

    inputs: np.ndarray
    coef: np.ndarray
    sector_score: np.ndarray
    accuracy: float
    days: int


def trailing_mean(x: np.ndarray, mask: np.ndarray, window: int) -> np.ndarray:
    """[T, M] mean of the available values of x over days t - window + 1 .. t (causal; 0 where
    none is available)."""
    v = np.where(mask, x, 0.0)
    c = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), v]), axis=0)
    n = np.cumsum(np.vstack([np.zeros((1, x.shape[1])), mask.astype(float)]), axis=0)
    t = np.arange(1, x.shape[0] + 1)
    lo = np.maximum(t - window, 0)
    s, k = c[t] - c[lo], n[t] - n[lo]
    return np.where(k > 0, s / np.maximum(k, 1.0), 0.0)


def regime_rule_inputs(macro: np.ndarray, macro_mask: np.ndarray,
                       windows: tuple[int, ...] = MA_WINDOWS) -> tuple[np.ndarray, np.ndarray]:
    """Raw levels and their trailing means: (inputs [T, F], available [T, F] bool)."""
    x = np.asarray(macro, np.float64)
    m = np.asarray(macro_mask, bool)
    seen = np.cumsum(m, axis=0) > 0          # a trailing mean exists once a value was seen
    cols = [np.where(m, x, 0.0)] + [trailing_mean(x, m, w) for w in windows]
    avail = [m] + [seen] * len(windows)
    return np.concatenate(cols, axis=1), np.concatenate(avail, axis=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax_regression(x: np.ndarray, y: np.ndarray, *, classes: int = NUM_REGIMES,
                           l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """L2-penalised multinomial logistic regression by Newton's method.

    Minimises mean cross-entropy + l2/2 ||W||^2 (the intercept row penalised by 1e-6 only, so
    the Hessian stays definite). x [n, F], y [n] int in [0, classes). Returns W [F + 1, C].
    """
    n, f = x.shape
    xb = np.c_[x, np.ones(n)]
    y1 = np.eye(classes)[y]
    reg = np.full(f + 1, float(l2))
    reg[-1] = 1e-6
    w = np.zeros((f + 1, classes))
    eye = np.eye(classes)
    for _ in range(iters):
        p = _softmax(xb @ w)
        grad = xb.T @ (p - y1) / n + reg[:, None] * w
        curv = p[:, :, None] * (eye[None] - p[:, None, :])            # [n, C, C]
        # sum_i xb[i, a] xb[i, b] curv[i, k, l] as one BLAS product (a 3-operand einsum
        # loops in C: 12x slower), then [a, b, k, l] -> [F+1, C, F+1, C]
        hess = np.tensordot(xb, xb[:, :, None, None] * curv[:, None], axes=(0, 0))
        hess = hess.transpose(0, 2, 1, 3) / n
        hess = hess.reshape((f + 1) * classes, (f + 1) * classes)
        hess += np.diag(np.repeat(reg, classes))
        step = np.linalg.solve(hess, grad.reshape(-1)).reshape(f + 1, classes)
        w -= step
        if np.max(np.abs(step)) < 1e-9:
            break
    return w


# HOST ONLY
def fit_regime_rule(macro: np.ndarray, macro_mask: np.ndarray, regime_label: np.ndarray,
                    sector_returns: np.ndarray, sector_valid: np.ndarray, fit_end: int, *,
                    l2: float = 1e-2) -> RegimeRuleFit:
    """Fit on decision days t < fit_end - LABEL_HORIZON with a known label (module docstring).

    ``fit_end``: the first day the rule may not learn from (the validation start). Inputs are
    standardised with the fitting days' mean and SD (an input constant there is dropped: 0).
    The sector table is the mean return of each sector on the day after t, by t's label.
    """
    x, avail = regime_rule_inputs(macro, macro_mask)
    label = np.asarray(regime_label, np.int64)
    days = np.arange(x.shape[0])
    fit = (days < int(fit_end) - LABEL_HORIZON) & (label >= 0) & (days >= max(MA_WINDOWS))
    fit &= days + 1 < x.shape[0]
    if fit.sum() < 50 or len(np.unique(label[fit])) < 2:
        raise ConfigError(f"regime rule: {int(fit.sum())} labelled training days before day "
                          f"{fit_end} (need >= 50 and two regimes); use a longer training "
                          f"window (data.val_start) or leave regime_rule out of the baselines")
    mu = np.array([x[fit & avail[:, j], j].mean() if np.any(fit & avail[:, j]) else 0.0
                   for j in range(x.shape[1])])
    sd = np.array([x[fit & avail[:, j], j].std() if np.any(fit & avail[:, j]) else 0.0
                   for j in range(x.shape[1])])
    live = sd > 1e-12
    z = np.where(avail & live, (x - mu) / np.where(live, sd, 1.0), 0.0)
    w = fit_softmax_regression(z[fit], label[fit], l2=l2)
    acc = float(np.mean(np.argmax(np.c_[z[fit], np.ones(fit.sum())] @ w, 1) == label[fit]))
    nxt = np.asarray(sector_returns, np.float64)[np.minimum(days + 1, x.shape[0] - 1)]
    score = np.full((NUM_REGIMES, nxt.shape[1]), -1e9)
    valid = np.asarray(sector_valid, bool)
    for r in range(NUM_REGIMES):
        rows = fit & (label == r)
        if rows.any():
            score[r] = np.where(valid, nxt[rows].mean(0), -1e9)
        else:  # a regime never seen in training: the all-days mean
            score[r] = np.where(valid, nxt[fit].mean(0), -1e9)
    return RegimeRuleFit(inputs=z.astype(np.float32), coef=w.astype(np.float32),
                         sector_score=score.astype(np.float32), accuracy=acc,
                         days=int(fit.sum()))


# HOST ONLY
def fit_market(market, params, dates: np.ndarray, cfg) -> RegimeRuleFit:
    """``fit_regime_rule`` on a market (MarketArrays: raw macro) and its EnvParams (labels,
    sector returns), learning from days before ``cfg.data.val_start``."""
    d = np.asarray(dates).astype("datetime64[D]")
    fit_end = int(np.searchsorted(d, np.datetime64(cfg.data.val_start, "D"), side="left"))
    return fit_regime_rule(np.asarray(market.macro), np.asarray(market.macro_mask),
                           np.asarray(params.regime_label), np.asarray(params.sector_returns),
                           np.asarray(params.sector_valid), fit_end)
