"""Per-strategy performance metrics (host side): plain floats around ``finance.metrics``.

Conventions (``r`` daily simple net returns, 252 periods a year):
- ``rf_annual`` (default 0; the original used 7%) enters as the per-period rate
  (1 + rf)^(1/252) - 1, subtracted before Sharpe, Sortino and alpha. The default 0 makes the
  Sharpe of every strategy the same, benchmark-free number; pass 0.07 to match the original.
- ``cagr`` = prod(1 + r)^(252 / n) - 1; ``ann_return`` = mean(r) * 252 (arithmetic, as the
  original's "annualised return"); ``ann_vol`` = std(r, ddof 1) * sqrt(252).
- ``sharpe`` = mean(r - rf) / std(r - rf, ddof 1) * sqrt(252) (= empyrical.sharpe_ratio).
- ``sortino`` = mean(r - rf) / sqrt(mean(min(r - rf, 0)^2)) * sqrt(252) (= empyrical's
  sortino_ratio; the original used the ddof-1 std of the negative days only).
- ``max_drawdown`` is a positive fraction (empyrical's is negative); the starting wealth 1
  counts as a peak in both. ``calmar`` = cagr / max_drawdown; empyrical annualises with
  n / 252 years the same way.
- ``var_c`` / ``cvar_c``: the k = ceil((1 - c) n) worst days (``finance.metrics``), positive
  losses. empyrical's conditional_value_at_risk averages the int((n - 1)(1 - c)) + 1 worst
  days, which coincides when (n - 1)(1 - c) is an integer.
- ``beta`` = cov(r, b) / var(b) (ddof cancels); ``alpha`` = mean(r - rf - beta (b - rf)) * 252
  (arithmetic Jensen alpha, as the original); empyrical compounds the same daily mean:
  (1 + alpha / 252)^252 - 1. ``information_ratio`` = mean(r - b) / std(r - b, ddof 1) *
  sqrt(252) (annualised; the original divided by a daily tracking error).
- ``turnover`` = mean one-way daily turnover 0.5 * sum|Δw| of the trades actually executed,
  times 252 (annual); ``turnover_daily`` is the mean itself.
- ``cost_drag`` = mean(daily cost / value) * 252; ``cost_drag_items`` itemises it.
- ``hit_rate`` = share of days with r > 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hrl_sarp_jax.config import REGIME_NAMES
from hrl_sarp_jax.finance import metrics as fm

PERIODS = 252


def daily_rf(rf_annual: float, periods: int = PERIODS) -> float:
    return float((1.0 + rf_annual) ** (1.0 / periods) - 1.0)


def _f(x) -> float:
    return float(np.asarray(x))


def return_metrics(r: np.ndarray, *, rf_annual: float = 0.0, periods: int = PERIODS) -> dict:
    """Metrics of one daily return series r [L] (float64 host numbers)."""
    r = np.asarray(r, np.float64)
    rf = daily_rf(rf_annual, periods)
    n = r.size
    sd = r.std(ddof=1) if n > 1 else 0.0
    out = {
        "days": int(n),
        "total_return": float(np.prod(1.0 + r) - 1.0),
        "cagr": _f(fm.annualised_return(r, periods)),
        "ann_return": float(r.mean() * periods) if n else 0.0,
        "ann_vol": float(sd * np.sqrt(periods)),
        "sharpe": _f(fm.sharpe(r, periods, rf)),
        "sortino": _f(fm.sortino(r, periods, rf)),
        "calmar": _f(fm.calmar(r, periods)),
        "max_drawdown": _f(fm.max_drawdown(r)),
        "max_drawdown_duration": int(np.asarray(fm.max_drawdown_duration(r))),
        "var_95": _f(fm.var(r, 0.95)), "cvar_95": _f(fm.cvar(r, 0.95)),
        "var_99": _f(fm.var(r, 0.99)), "cvar_99": _f(fm.cvar(r, 0.99)),
        "hit_rate": _f(fm.hit_rate(r)),
    }
    return out


def relative_metrics(r: np.ndarray, b: np.ndarray, *, rf_annual: float = 0.0,
                     periods: int = PERIODS) -> dict:
    """alpha (annual, arithmetic), beta, information ratio and tracking error of r vs b."""
    r, b = np.asarray(r, np.float64), np.asarray(b, np.float64)
    rf = daily_rf(rf_annual, periods)
    bc = b - b.mean()
    var_b = float(np.mean(bc * bc))
    beta = float(np.mean(bc * r) / var_b) if var_b > 1e-30 else 0.0
    alpha = float(np.mean((r - rf) - beta * (b - rf)) * periods)
    active = r - b
    te = float(active.std(ddof=1)) if active.size > 1 else 0.0
    ir = float(active.mean() / te * np.sqrt(periods)) if te > 1e-15 else 0.0
    return {"alpha": alpha, "beta": beta, "information_ratio": ir,
            "tracking_error": float(te * np.sqrt(periods))}


def regime_metrics(r: np.ndarray, regimes: np.ndarray, *, rf_annual: float = 0.0,
                   periods: int = PERIODS, min_days: int = 10) -> dict:
    """Per realised regime (0 Bull, 1 Bear, 2 Sideways; -1 ignored): days, annualised mean
    return and Sharpe of the days in it (Sharpe only with >= min_days days, else None)."""
    r, regimes = np.asarray(r, np.float64), np.asarray(regimes)
    rf = daily_rf(rf_annual, periods)
    out = {}
    for k, name in enumerate(REGIME_NAMES):
        sel = r[regimes == k]
        out[name] = {
            "days": int(sel.size),
            "ann_mean_return": float(sel.mean() * periods) if sel.size else None,
            "sharpe": _f(fm.sharpe(sel, periods, rf)) if sel.size >= min_days else None,
        }
    return out


def strategy_metrics(
    net: np.ndarray,
    *,
    benchmark: np.ndarray | None = None,
    turnover: np.ndarray | None = None,
    costs: Mapping[str, np.ndarray] | None = None,
    cost_frac: np.ndarray | None = None,
    regimes: np.ndarray | None = None,
    rf_annual: float = 0.0,
    periods: int = PERIODS,
) -> dict:
    """Every metric of one strategy (module docstring). Arrays are per day [L]."""
    out = return_metrics(net, rf_annual=rf_annual, periods=periods)
    if benchmark is not None:
        out.update(relative_metrics(net, benchmark, rf_annual=rf_annual, periods=periods))
    if turnover is not None:
        td = float(np.mean(turnover)) if len(turnover) else 0.0
        out["turnover_daily"] = td
        out["turnover"] = td * periods
    if cost_frac is not None:
        out["cost_drag"] = float(np.mean(cost_frac) * periods) if len(cost_frac) else 0.0
    if costs is not None:
        out["cost_drag_items"] = {k: float(np.mean(v) * periods) for k, v in costs.items()}
    if regimes is not None:
        out["regimes"] = regime_metrics(net, regimes, rf_annual=rf_annual, periods=periods)
    return out


def dispersion(values: list[float] | np.ndarray) -> dict:
    """mean, std (ddof 1), min, max of per-seed numbers."""
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": int(v.size)}


def realised_regimes(days: np.ndarray, latent_regime: np.ndarray | None,
                     regime_rule: np.ndarray | None,
                     week_end: np.ndarray) -> tuple[np.ndarray, str]:
    """Realised regime [L] of each return day ``days`` (indices t + 1), and its source.

    The synthetic generator's latent regime when the market has one (any >= 0), else the rule
    regime of the calendar week containing the day (``regime_rule`` at that week's end, a
    realised, ex-post label), -1 where unknown.
    """
    days = np.asarray(days)
    if latent_regime is not None and np.any(np.asarray(latent_regime) >= 0):
        return np.asarray(latent_regime)[days].astype(np.int32), "latent"
    if regime_rule is None:
        return np.full(days.shape, -1, np.int32), "none"
    we = np.flatnonzero(np.asarray(week_end, bool))
    pos = np.searchsorted(we, days, side="left")
    ok = pos < we.size
    out = np.full(days.shape, -1, np.int32)
    out[ok] = np.asarray(regime_rule)[we[pos[ok]]]
    return out, "rule"
