"""Significance of Sharpe-ratio differences (host side, NumPy/SciPy).

- ``sharpe_diff_bootstrap``: stationary block bootstrap (Politis & Romano 1994) of the paired
  daily returns, geometric block lengths with mean ``mean_block``, circular wrap, seeded
  ``numpy.random.Generator``; percentile CI of the annualised Sharpe difference and the
  two-sided percentile p-value 2 min(P*(d <= 0), P*(d >= 0)). (The original's "bootstrap"
  resampled days iid, which ignores volatility clustering.)
- ``jobson_korkie_memmel``: z = (SR_a - SR_b) / sqrt(V / n) with per-period Sharpe ratios
  and Memmel's (2003) corrected asymptotic variance under iid normal returns
  V = 2 (1 - rho) + (SR_a^2 + SR_b^2 - 2 SR_a SR_b rho^2) / 2 (sample moments, ddof 1).
  Equivalently JK's form (sigma_b mu_a - sigma_a mu_b) / sqrt(theta) with
  theta = sigma_a^2 sigma_b^2 V / n. Not valid under fat tails or serial dependence
  (Ledoit & Wolf 2008) — report it beside the bootstrap, not instead of it.
- ``paired_seed_tests``: one-sample t-test and Wilcoxon signed-rank on per-seed Sharpe
  differences (needs >= 3 seeds; fewer gives None with the reason).
- ``sign_test``: ``scipy.stats.binomtest`` on the signs of paired differences (the original
  called the removed ``binom_test`` and crashed); zeros are dropped.
- ``holm``: Holm-Bonferroni step-down adjusted p-values across a family of tests.
- ``paired_over_markets``: paired differences d_k = a_k - b_k of one number per market (e.g. the
  net Sharpe of two strategies on K generated markets): mean, sd (ddof 1), the Student
  t-interval mean +- t_{1-alpha/2, K-1} sd / sqrt(K), the two-sided one-sample t-test of
  E[d] = 0 and the count of markets where a wins. Markets are the independent units (DESIGN.md
  section 10), so this is the interval that judges a design, not a bootstrap over days.
- ``ratio_of_means_bootstrap``: mean(num) / mean(den) over K markets (a ratio of means, not a
  mean of per-market ratios, which explodes where a denominator is near 0), e.g. the share of
  the oracle's gain over equal weight that the agent captures; percentile CI from a paired
  bootstrap over markets (the same resampled index for num and den; Efron & Tibshirani 1993,
  ch. 13), seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from hrl_sarp_jax.data.resample import stationary_bootstrap_indices

PERIODS = 252


def annual_sharpe(r: np.ndarray, periods: int = PERIODS) -> np.ndarray:
    """Annualised Sharpe along the last axis (ddof 1); 0 where the std is 0."""
    sd = r.std(axis=-1, ddof=1)
    mean = r.mean(axis=-1)
    return np.where(sd > 0, mean / np.where(sd > 0, sd, 1.0), 0.0) * np.sqrt(periods)


def sharpe_diff_bootstrap(a: np.ndarray, b: np.ndarray, *, num: int = 2000,
                          mean_block: float = 5.0, alpha: float = 0.05, seed: int = 0,
                          periods: int = PERIODS) -> dict:
    """Stationary block bootstrap of Sharpe(a) - Sharpe(b) for paired daily returns [n]
    (``se``: the standard deviation of the resampled differences)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 3:
        raise ValueError("sharpe_diff_bootstrap needs two paired 1-D series of >= 3 days")
    rng = np.random.default_rng(seed)
    idx = stationary_bootstrap_indices(a.size, num, mean_block, rng)
    d = annual_sharpe(a[idx], periods) - annual_sharpe(b[idx], periods)
    diff = float(annual_sharpe(a, periods) - annual_sharpe(b, periods))
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    p = float(min(1.0, 2.0 * min(np.mean(d <= 0), np.mean(d >= 0))))
    return {"diff": diff, "ci_low": float(lo), "ci_high": float(hi), "p_value": p,
            "se": float(d.std(ddof=1)),
            "alpha": alpha, "num": num, "mean_block": mean_block, "seed": seed,
            "significant": bool(lo > 0 or hi < 0)}


def jobson_korkie_memmel(a: np.ndarray, b: np.ndarray, *, periods: int = PERIODS) -> dict:
    """Jobson-Korkie test of equal Sharpe ratios with Memmel's correction (two-sided)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n = a.size
    if a.shape != b.shape or n < 3:
        raise ValueError("jobson_korkie_memmel needs two paired series of >= 3 days")
    sa, sb = a.std(ddof=1), b.std(ddof=1)
    if sa <= 0 or sb <= 0:
        return {"z": 0.0, "p_value": 1.0, "diff": 0.0, "note": "a series has zero variance"}
    sra, srb = a.mean() / sa, b.mean() / sb
    rho = float(np.corrcoef(a, b)[0, 1])
    v = 2.0 * (1.0 - rho) + 0.5 * (sra**2 + srb**2 - 2.0 * sra * srb * rho**2)
    z = float((sra - srb) / np.sqrt(max(v, 1e-300) / n))
    return {"z": z, "p_value": float(2.0 * sps.norm.sf(abs(z))),
            "diff": float((sra - srb) * np.sqrt(periods)), "rho": rho}


def paired_seed_tests(sharpe_a: Sequence[float], sharpe_b: Sequence[float] | float) -> dict:
    """t-test and Wilcoxon on per-seed Sharpe differences a_k - b_k (b may be one number)."""
    a = np.asarray(sharpe_a, np.float64)
    b = np.broadcast_to(np.asarray(sharpe_b, np.float64), a.shape)
    d = a - b
    out: dict = {"n_seeds": int(d.size), "mean_diff": float(d.mean()) if d.size else None}
    if d.size < 3:
        out.update(t_stat=None, t_p_value=None, wilcoxon_stat=None, wilcoxon_p_value=None,
                   note=f"needs >= 3 seeds, got {d.size}")
        return out
    t = sps.ttest_1samp(d, 0.0)
    out.update(t_stat=float(t.statistic), t_p_value=float(t.pvalue))
    if np.all(d == 0):
        out.update(wilcoxon_stat=None, wilcoxon_p_value=1.0)
    else:
        w = sps.wilcoxon(d)
        out.update(wilcoxon_stat=float(w.statistic), wilcoxon_p_value=float(w.pvalue))
    return out


def sign_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Two-sided sign test of paired a - b (zeros dropped) with ``scipy.stats.binomtest``."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    pos, neg = int(np.sum(d > 0)), int(np.sum(d < 0))
    if pos + neg == 0:
        return {"positive": 0, "negative": 0, "p_value": 1.0}
    res = sps.binomtest(pos, pos + neg, 0.5)
    return {"positive": pos, "negative": neg, "p_value": float(res.pvalue)}


def holm(p_values: Mapping[str, float] | Sequence[float], alpha: float = 0.05):
    """Holm-Bonferroni: adjusted p-values (step-down, monotone, capped at 1) and rejections.

    Given a mapping returns {name: {"p": p, "p_holm": adj, "reject": bool}}; given a sequence
    returns (adjusted [m], reject [m]) in the input order.
    """
    names = list(p_values) if isinstance(p_values, Mapping) else None
    p = np.asarray([p_values[k] for k in names] if names is not None else p_values, np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adj = np.empty(m)
    adj[order] = adj_sorted
    reject = adj <= alpha
    if names is None:
        return adj, reject
    return {k: {"p": float(p[i]), "p_holm": float(adj[i]), "reject": bool(reject[i])}
            for i, k in enumerate(names)}


def compare(a: np.ndarray, b: np.ndarray, *, seed: int = 0, num: int = 2000,
            mean_block: float = 5.0) -> dict:
    """Bootstrap + JK/Memmel + sign test of one paired pair of daily return series."""
    return {"bootstrap": sharpe_diff_bootstrap(a, b, num=num, mean_block=mean_block, seed=seed),
            "jobson_korkie_memmel": jobson_korkie_memmel(a, b),
            "sign_test": sign_test(a, b)}


def _paired_vectors(a, b, names: tuple[str, str], what: str) -> tuple[np.ndarray, np.ndarray]:
    """a, b as float64 [K] (K >= 1, finite, the same length) or a one-line ValueError."""
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    for arr, name in ((x, names[0]), (y, names[1])):
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"{what}: {name} must be a 1-D array with one value per market, "
                             f"got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: {name} holds NaN or inf; drop those markets from both "
                             f"{names[0]} and {names[1]} first")
    if x.shape != y.shape:
        raise ValueError(f"{what}: {names[0]} and {names[1]} must be paired (the same markets), "
                         f"got lengths {x.size} and {y.size}")
    return x, y


def _check_alpha(alpha: float, what: str) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{what}: alpha must be in (0, 1), e.g. 0.05 for a 95% interval, "
                         f"got {alpha}")


def paired_over_markets(a: Sequence[float], b: Sequence[float], alpha: float = 0.05) -> dict:
    """Paired comparison over K markets of two strategies' per-market numbers a, b [K].

    d = a - b. Returns {"mean", "sd" (ddof 1), "ci95": [lo, hi], "wins", "n", "p_value",
    "significant", "alpha"}: ci95 is the 1 - alpha Student t-interval over markets
    mean +- t_{1 - alpha/2, K-1} sd / sqrt(K) (95% at the default alpha); p_value the
    two-sided one-sample t-test of E[d] = 0 (``scipy.stats.ttest_1samp``); wins the number of
    markets with a > b; significant whether the interval excludes 0. With K = 1 there is no
    spread: sd, the interval and the p-value are None and significant is False. With sd = 0
    (every market the same difference) the interval is [mean, mean] and the p-value the t-test's
    limit: 0.0 when mean != 0, 1.0 when mean == 0.
    """
    what = "paired_over_markets"
    _check_alpha(alpha, what)
    x, y = _paired_vectors(a, b, ("a", "b"), what)
    d = x - y
    k = int(d.size)
    mean = float(d.mean())
    out: dict = {"mean": mean, "sd": None, "ci95": [None, None], "wins": int(np.sum(x > y)),
                 "n": k, "p_value": None, "significant": False, "alpha": alpha}
    if k < 2:
        return out
    sd = float(d.std(ddof=1))
    half = float(sps.t.ppf(1.0 - alpha / 2.0, k - 1)) * sd / np.sqrt(k)
    lo, hi = float(mean - half), float(mean + half)
    limit = 0.0 if mean != 0 else 1.0                  # the t-test's limit as sd -> 0
    p = float(sps.ttest_1samp(d, 0.0).pvalue) if sd > 0 else limit
    out.update(sd=sd, ci95=[lo, hi], p_value=p, significant=bool(lo > 0 or hi < 0))
    return out


def ratio_of_means_bootstrap(num: Sequence[float], den: Sequence[float], num_boot: int = 2000,
                             alpha: float = 0.05, seed: int = 0) -> dict:
    """mean(num) / mean(den) over K markets with a paired percentile bootstrap CI.

    num, den float [K] (e.g. agent - equal weight and oracle - equal weight per market). Each of
    ``num_boot`` resamples draws K market indices with replacement (one index vector for both
    num and den) from ``numpy.random.default_rng(seed)``. Returns {"value", "ci95": [lo, hi],
    "n", "alpha", "num_boot", "seed", "undefined_resamples"}: the percentile interval at
    alpha / 2 and 1 - alpha / 2 over the resamples whose mean(den) is not 0 (their count of
    those left out is ``undefined_resamples``). value and the interval are None when
    mean(den) is 0.
    """
    what = "ratio_of_means_bootstrap"
    _check_alpha(alpha, what)
    if isinstance(num_boot, bool) or not isinstance(num_boot, int | np.integer) or num_boot < 1:
        raise ValueError(f"{what}: num_boot must be a positive integer (e.g. 2000), "
                         f"got {num_boot!r}")
    x, y = _paired_vectors(num, den, ("num", "den"), what)
    k = int(x.size)
    out: dict = {"value": None, "ci95": [None, None], "n": k, "alpha": alpha,
                 "num_boot": int(num_boot), "seed": seed, "undefined_resamples": 0}
    if y.mean() == 0:
        return out
    out["value"] = float(x.mean() / y.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, k, size=(int(num_boot), k))
    top, bottom = x[idx].mean(axis=1), y[idx].mean(axis=1)
    ok = bottom != 0
    ratios = top[ok] / bottom[ok]
    out["undefined_resamples"] = int(np.sum(~ok))
    if ratios.size:
        lo, hi = np.quantile(ratios, [alpha / 2.0, 1.0 - alpha / 2.0])
        out["ci95"] = [float(lo), float(hi)]
    return out
