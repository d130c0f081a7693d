"""Selection bias of a search over configurations (host side, NumPy/SciPy).

A configuration chosen as the best of N on the data that judged it looks better than it is. Two
measures of how much, both on per-period returns:

- ``probabilistic_sharpe`` (PSR; Bailey & López de Prado 2012, "The Sharpe Ratio Efficient
  Frontier", J. Risk 15(2)): the probability that the true Sharpe ratio exceeds SR*,
  PSR = Φ((SR - SR*) √(n - 1) / √(1 - γ3 SR + (γ4 - 1) / 4 SR²)) with SR per period (not
  annualised), γ3 the skewness and γ4 the (non-excess) kurtosis of the n returns.
- ``expected_max_sharpe``: the expected maximum of N per-period Sharpe estimates of zero-skill
  configurations whose estimates vary with variance V across the trials (Bailey & López de
  Prado 2014, "The Deflated Sharpe Ratio: Correcting for Selection Bias, Backtest Overfitting
  and Non-Normality", J. Portfolio Management 40(5), after Bailey, Borwein, López de Prado &
  Zhu 2014): SR0 = √V ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e))), γ the Euler-Mascheroni
  constant; 0 for N = 1.
- ``deflated_sharpe`` (DSR, same paper): PSR against SR0, the probability that the selected
  configuration's true Sharpe exceeds what the best of N zero-skill trials would show. The
  paper's worked example (annualised SR 2.5 over T = 1250 daily returns with skewness -3 and
  kurtosis 10, N = 100 trials whose annualised Sharpes vary with variance 1/2; 250 sessions a
  year) gives SR0 = 0.1132 per day and DSR = 0.9004 (tests/evaluation/test_overfitting.py).
- ``pbo_cscv`` (Bailey, Borwein, López de Prado & Zhu 2017, "The Probability of Backtest
  Overfitting", J. Computational Finance 20(4)): combinatorially symmetric cross-validation.
  The T x N matrix of per-period returns is cut into S equal contiguous blocks of rows (the
  first T mod S rows are dropped, as in the paper's equal submatrices and ``pypbo``); for each
  of the C(S, S/2) ways to take half the blocks in-sample (IS) and the rest out-of-sample
  (OOS), the IS-best configuration's OOS rank r among N (1 = worst, ties averaged) gives
  ω = r / (N + 1) and the logit λ = ln(ω / (1 - ω)); PBO = the share of splits with λ <= 0,
  i.e. where the IS winner lands at or below the OOS median. Pure noise gives PBO ≈ 1/2 for an
  even N (the winner's OOS rank is uniform); a configuration better in every block gives 0.
- ``selection_overfitting``: both for one selection among N configurations (DSR of the selected
  column with trials = N and V the variance of the N columns' Sharpes, PBO over the matrix).

Conventions: Sharpe ratios are per period, mean / sd with sd of ddof 1, and 0 where the sd is 0
(relative to the scale of the returns), as in ``finance.metrics``. Skewness and kurtosis are the
sample moment ratios m3 / m2^1.5 and m4 / m2² (``scipy.stats.skew`` / ``kurtosis(fisher=False)``
with bias=True), which always satisfy Pearson's bound γ4 >= 1 + γ3², so the PSR's variance term
is never negative.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

METRICS = ("sharpe", "mean")
MAX_SPLITS = 20
"""C(20, 10) = 184,756 splits; the paper uses S = 16 (12,870)."""
_ZERO_SD = 1e-12
"""An sd at or below this fraction of the returns' largest magnitude counts as zero (a constant
series' floating-point sd is ~1e-17 of its level, not 0)."""


def _sharpe(r: np.ndarray, axis: int = 0) -> np.ndarray:
    """Per-period Sharpe (ddof 1) along ``axis``; 0 where the sd is (numerically) zero."""
    mean = r.mean(axis=axis)
    sd = r.std(axis=axis, ddof=1)
    scale = np.max(np.abs(r), axis=axis)
    ok = sd > _ZERO_SD * np.maximum(scale, np.finfo(np.float64).tiny)
    return np.where(ok, mean / np.where(ok, sd, 1.0), 0.0)


def _finite_number(x: float, name: str, what: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {name} must be a number, got {x!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what}: {name} must be finite, got {x!r}")
    return v


def _count(x: int, name: str, minimum: int, what: str, hint: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int | np.integer) or x < minimum:
        raise ValueError(f"{what}: {name} must be an integer >= {minimum} ({hint}), got {x!r}")
    return int(x)


def probabilistic_sharpe(sr: float, sr_benchmark: float, n: int, skew: float,
                         kurtosis: float) -> float:
    """PSR: P(true Sharpe > sr_benchmark) given a per-period Sharpe ``sr`` estimated on ``n``
    returns with skewness ``skew`` and non-excess ``kurtosis`` (3 for normal returns)."""
    what = "probabilistic_sharpe"
    sr = _finite_number(sr, "sr", what)
    bench = _finite_number(sr_benchmark, "sr_benchmark", what)
    g3 = _finite_number(skew, "skew", what)
    g4 = _finite_number(kurtosis, "kurtosis", what)
    n = _count(n, "n", 2, what, "the number of returns behind sr")
    var_term = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    if var_term <= 0:
        raise ValueError(f"{what}: kurtosis {g4} with skew {g3} is impossible for any sample "
                         f"(it must be >= 1 + skew**2 and is non-excess, 3 for normal returns)")
    z = (sr - bench) * math.sqrt(n - 1) / math.sqrt(var_term)
    return float(sps.norm.cdf(z))


def expected_max_sharpe(trials: int, sr_variance: float) -> float:
    """SR0: expected maximum per-period Sharpe of ``trials`` zero-skill configurations whose
    Sharpe estimates have variance ``sr_variance`` across the trials (0 for one trial)."""
    what = "expected_max_sharpe"
    n = _count(trials, "trials", 1, what, "the number of configurations evaluated")
    v = _finite_number(sr_variance, "sr_variance", what)
    if v < 0:
        raise ValueError(f"{what}: sr_variance must be >= 0 (a variance across trials), got {v}")
    if n == 1:
        return 0.0
    g = np.euler_gamma
    z = (1.0 - g) * sps.norm.ppf(1.0 - 1.0 / n) + g * sps.norm.ppf(1.0 - 1.0 / (n * np.e))
    return float(math.sqrt(v) * z)


def _returns_1d(returns, what: str, minimum: int = 3) -> np.ndarray:
    r = np.asarray(returns, np.float64)
    if r.ndim != 1 or r.size < minimum:
        raise ValueError(f"{what}: returns must be a 1-D series of >= {minimum} per-period "
                         f"returns, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{what}: returns holds NaN or inf; drop or fill those periods first")
    return r


def deflated_sharpe(returns: Sequence[float], trials: int, sr_variance: float | None = None, *,
                    periods: int = 252) -> dict:
    """DSR of the selected configuration's per-period ``returns`` [T] after ``trials`` (N)
    configurations were evaluated, their per-period Sharpe estimates varying with variance
    ``sr_variance`` (required when N > 1; with N = 1 the DSR is the PSR against 0).

    Returns {"dsr", "sharpe" (per period), "sharpe_annual" (x sqrt(periods)), "sr0" (per
    period), "trials", "n", "skew", "kurtosis", "sr_variance", "periods"}.
    """
    what = "deflated_sharpe"
    r = _returns_1d(returns, what)
    n_trials = _count(trials, "trials", 1, what, "the number of configurations evaluated")
    periods = _count(periods, "periods", 1, what, "periods per year, e.g. 252 daily, 52 weekly")
    if sr_variance is None:
        if n_trials > 1:
            raise ValueError(f"{what}: sr_variance is needed when trials > 1 (pass the variance "
                             f"across the {n_trials} trials of their per-period Sharpe ratios)")
        sr_variance = 0.0
    sd = float(r.std(ddof=1))
    if not sd > _ZERO_SD * float(np.max(np.abs(r))):
        raise ValueError(f"{what}: returns has zero variance, so its Sharpe ratio is undefined")
    sr = float(r.mean() / sd)
    g3 = float(sps.skew(r, bias=True))
    g4 = float(sps.kurtosis(r, fisher=False, bias=True))
    sr0 = expected_max_sharpe(n_trials, sr_variance)
    return {"dsr": probabilistic_sharpe(sr, sr0, int(r.size), g3, g4), "sharpe": sr,
            "sharpe_annual": sr * math.sqrt(periods), "sr0": sr0, "trials": n_trials,
            "n": int(r.size), "skew": g3, "kurtosis": g4, "sr_variance": float(sr_variance),
            "periods": periods}


def cscv_splits(splits: int) -> np.ndarray:
    """bool [C(S, S/2), S]: row c marks the in-sample blocks of split c (lexicographic order of
    ``itertools.combinations``)."""
    combos = list(itertools.combinations(range(splits), splits // 2))
    out = np.zeros((len(combos), splits), bool)
    for c, blocks in enumerate(combos):
        out[c, list(blocks)] = True
    return out


def _metric(x: np.ndarray, metric: str) -> np.ndarray:
    """[c, rows, N] -> [c, N]."""
    return _sharpe(x, axis=1) if metric == "sharpe" else x.mean(axis=1)


def pbo_cscv(perf: np.ndarray, splits: int = 16, metric: str = "sharpe") -> dict:
    """Probability of backtest overfitting by CSCV of ``perf`` [T, N] per-period returns of N
    configurations (see the module docstring).

    ``metric``: 'sharpe' (per-period, ddof 1) or 'mean' ranks the configurations on each half.
    Returns {"pbo", "logits" [C] (split order of ``cscv_splits``), "combinations" (C),
    "splits" (S), "n_configs" (N), "rows_used" (T - T mod S), "block_rows", "metric"}.
    """
    what = "pbo_cscv"
    m = np.asarray(perf, np.float64)
    if m.ndim != 2:
        raise ValueError(f"{what}: perf must be a 2-D array [periods, configurations], "
                         f"got shape {m.shape}")
    t, n = m.shape
    if n < 2:
        raise ValueError(f"{what}: perf needs >= 2 configurations (columns) to select among, "
                         f"got {n}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{what}: perf holds NaN or inf; drop or fill those periods first")
    if metric not in METRICS:
        raise ValueError(f"{what}: metric must be one of {', '.join(METRICS)}, got {metric!r}")
    s = _count(splits, "splits", 2, what, "an even number of blocks, 16 in the paper")
    if s % 2 or s > MAX_SPLITS:
        raise ValueError(f"{what}: splits must be even and <= {MAX_SPLITS} (C(S, S/2) splits "
                         f"are enumerated; the paper uses 16), got {s}")
    if s > t:
        raise ValueError(f"{what}: splits {s} exceeds the {t} periods (rows) of perf; use "
                         f"splits <= {t - t % 2}")
    block = t // s
    if metric == "sharpe" and block * s // 2 < 2:
        raise ValueError(f"{what}: each half of {s} blocks of {block} row(s) has fewer than 2 "
                         f"rows, too few for a Sharpe ratio; use fewer splits or metric='mean'")
    used = m[t - block * s:].reshape(s, block, n)        # drop the first T mod S rows
    is_mask = cscv_splits(s)
    c = is_mask.shape[0]
    order = np.argsort(~is_mask, axis=1, kind="stable")  # IS blocks first, each half in order
    chunk = max(1, int(8e6 // max(t * n, 1)))            # ~64 MB of float64 per gather
    logits = np.empty(c)
    for lo in range(0, c, chunk):
        idx = order[lo: lo + chunk]                      # [c', S]
        gathered = used[idx]                             # [c', S, B, N]
        half = s // 2
        ins = gathered[:, :half].reshape(idx.shape[0], half * block, n)
        oos = gathered[:, half:].reshape(idx.shape[0], half * block, n)
        best = np.argmax(_metric(ins, metric), axis=1)   # first maximum on ties
        ranks = sps.rankdata(_metric(oos, metric), axis=1)   # 1 = worst, ties averaged
        w = ranks[np.arange(idx.shape[0]), best] / (n + 1)
        logits[lo: lo + chunk] = np.log(w / (1.0 - w))
    return {"pbo": float(np.mean(logits <= 0)), "logits": logits.tolist(), "combinations": c,
            "splits": s, "n_configs": n, "rows_used": block * s, "block_rows": block,
            "metric": metric}


def selection_overfitting(perf: np.ndarray, selected: int, *, splits: int = 16,
                          periods: int = 252) -> dict:
    """PBO and DSR of choosing column ``selected`` of ``perf`` [T, N] per-period returns.

    trials = N (every column counts as one evaluated configuration); the DSR's V is the
    variance (ddof 1) of the N columns' per-period Sharpe ratios; the CSCV uses
    min(splits, T rounded down to even) blocks. Returns {"trials", "selected", "periods" (T),
    "pbo": ``pbo_cscv``'s dict or None, "dsr": ``deflated_sharpe``'s dict or None,
    "sr_variance", "notes": why a part is None}.
    """
    what = "selection_overfitting"
    m = np.asarray(perf, np.float64)
    if m.ndim != 2 or m.shape[1] < 1:
        raise ValueError(f"{what}: perf must be a 2-D array [periods, configurations], "
                         f"got shape {m.shape}")
    t, n = m.shape
    if isinstance(selected, bool) or not isinstance(selected, int | np.integer) \
            or not 0 <= selected < n:
        raise ValueError(f"{what}: selected must be a column index in [0, {n}), "
                         f"got {selected!r}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{what}: perf holds NaN or inf; drop or fill those periods first")
    notes: list[str] = []
    out: dict = {"trials": n, "selected": int(selected), "periods": t, "pbo": None, "dsr": None,
                 "sr_variance": None, "notes": notes}
    s = min(int(splits), t - t % 2)
    if n < 2:
        notes.append("PBO needs >= 2 configurations")
    elif s < 2 or (t - t % s) < 4:
        notes.append(f"PBO needs >= 4 periods, got {t}")
    else:
        out["pbo"] = pbo_cscv(m, splits=s, metric="sharpe")
    sr_variance = float(np.var(_sharpe(m, axis=0), ddof=1)) if n > 1 else None
    out["sr_variance"] = sr_variance
    try:
        out["dsr"] = deflated_sharpe(m[:, selected], n, sr_variance, periods=periods)
    except ValueError as exc:
        notes.append(f"no DSR: {exc}")
    return out
