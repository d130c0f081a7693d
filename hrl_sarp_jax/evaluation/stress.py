"""Stress tests (host side): the original's 7 sector-shock scenarios and historical replays.

Sector shocks (original ``StressTester``, spec §7.5). The original listed its shock vectors in
the order IT, Fin, Pharma, FMCG, Auto, Energy, Metals, Realty, Telecom, Media, Infra, which
differs from the canonical sector order (Auto and Pharma, Telecom and Media swapped); here
every shock is keyed by sector NAME and mapped onto the market's sectors by name (aliases:
'Fin' = 'Financials'). Market sectors without a shock in a scenario get 0 and are listed as
``unshocked``; scenario sectors the market lacks are listed as ``skipped``.

Per scenario, for sector weights w (the rest is cash, shock 0):
- portfolio_return = sum_s w_s shock_s; pnl = return * value; expected_loss = pnl * probability
- max_drawdown: the return spread evenly over ``duration`` days and compounded daily (the
  original), path_k = (1 + return / duration)^k - 1, drawdown = max(0, -min_k path_k)
- passes when max_drawdown < limit (default 0.07, the original's ``max_drawdown_pct``)
- per-sector P&L and the three worst sectors.
An equal-weight portfolio over the 11 NSE sectors reproduces the original's numbers (covid
-28.9% / 25.2% drawdown, GFC -35.0% / 29.6%, ..., 0 of 7 pass).

Historical replays: ``HISTORICAL_WINDOWS`` (the original's ``risk_config.stress_tests``, never
read by its code) run through ``evaluation.backtest`` over the part of each window inside the
data, starting in cash; windows outside the data are reported as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hrl_sarp_jax.evaluation.backtest import date_window

ORIGINAL_ORDER = ("IT", "Financials", "Pharma", "FMCG", "Auto", "Energy", "Metals", "Realty",
                  "Telecom", "Media", "Infra")
ALIASES = {"Fin": "Financials", "Financial": "Financials", "Metal": "Metals",
           "Infrastructure": "Infra", "Telecommunication": "Telecom"}


@dataclass(frozen=True)
class Scenario:
    name: str
    duration_days: int
    recovery_days: int
    probability: float
    shocks: Mapping[str, float]   # sector name -> total return over the scenario


def _scenario(name, duration, recovery, prob, pct):
    return Scenario(name, duration, recovery, prob,
                    {s: v / 100.0 for s, v in zip(ORIGINAL_ORDER, pct, strict=True)})


SCENARIOS: tuple[Scenario, ...] = (
    _scenario("covid_crash", 25, 120, 0.01,
              (-18, -35, -10, -15, -30, -40, -35, -45, -12, -40, -38)),
    _scenario("demonetisation", 15, 60, 0.02, (2, -15, -5, -12, -18, -8, -10, -25, -3, -8, -14)),
    _scenario("taper_tantrum", 30, 90, 0.03, (5, -20, 3, -8, -15, -12, -18, -22, -10, -12, -16)),
    _scenario("ilfs_crisis", 20, 90, 0.03, (-2, -25, -5, -3, -12, -6, -8, -30, -4, -10, -20)),
    _scenario("gfc_2008", 60, 365, 0.005,
              (-30, -45, -15, -10, -35, -40, -50, -60, -20, -35, -45)),
    _scenario("rate_hike_cycle", 120, 180, 0.05, (2, -12, 0, -5, -15, -3, -8, -20, -5, -6, -10)),
    _scenario("geopolitical_shock", 5, 15, 0.04, (-8, -15, -3, -5, -12, -10, -8, -15, -5, -10, -8)),
)

HISTORICAL_WINDOWS: dict[str, tuple[str, str]] = {
    "covid_crash": ("2020-02-20", "2020-04-30"),
    "rate_hike_2022": ("2022-04-01", "2022-12-31"),
    "ilfs_crisis": ("2018-09-01", "2019-03-31"),
    "demonetisation": ("2016-11-01", "2017-03-31"),
}


def _canon(name: str) -> str:
    return ALIASES.get(name, name)


def scenario_result(scn: Scenario, weights: Mapping[str, float], *, value: float = 1.0e7,
                    limit: float = 0.07) -> dict:
    """One scenario applied to sector weights {sector name: weight} (module docstring)."""
    w = {_canon(k): float(v) for k, v in weights.items() if k}
    shocks = {_canon(k): v for k, v in scn.shocks.items()}
    per_sector = {s: w[s] * shocks.get(s, 0.0) * value for s in w}
    ret = float(sum(w[s] * shocks.get(s, 0.0) for s in w))
    daily = ret / scn.duration_days
    path = (1.0 + daily) ** np.arange(1, scn.duration_days + 1) - 1.0
    mdd = float(max(0.0, -path.min()))
    worst = sorted(per_sector, key=lambda s: per_sector[s])[:3]
    return {
        "portfolio_return": ret, "pnl": ret * value, "stressed_value": value * (1.0 + ret),
        "expected_loss": ret * value * scn.probability, "probability": scn.probability,
        "duration_days": scn.duration_days, "recovery_days": scn.recovery_days,
        "max_drawdown": mdd, "passed": bool(mdd < limit), "sector_pnl": per_sector,
        "worst_sectors": worst,
        "skipped": sorted(s for s in shocks if s not in w),
        "unshocked": sorted(s for s in w if s not in shocks),
    }


def sector_shock_stress(weights: Mapping[str, float] | np.ndarray,
                        sectors: Sequence[str] | None = None, *, value: float = 1.0e7,
                        limit: float = 0.07,
                        scenarios: Sequence[Scenario] = SCENARIOS) -> dict:
    """All scenarios for one sector allocation; ``weights`` is {name: w} or an array in the
    order of ``sectors`` (padding sectors '' ignored). Returns per-scenario results and a
    summary (passed / failed counts, worst P&L, worst drawdown, total expected loss)."""
    if not isinstance(weights, Mapping):
        if sectors is None:
            raise ValueError("sector_shock_stress: an array of weights needs the sector names")
        arr = np.asarray(weights, np.float64)
        weights = {s: float(x) for s, x in zip(sectors, arr, strict=True) if s}
    res = {s.name: scenario_result(s, weights, value=value, limit=limit) for s in scenarios}
    worst = min(res, key=lambda k: res[k]["pnl"])
    return {
        "limit": limit, "value": value, "scenarios": res,
        "summary": {
            "passed": sum(r["passed"] for r in res.values()),
            "failed": sum(not r["passed"] for r in res.values()),
            "worst_scenario": worst, "worst_pnl": res[worst]["pnl"],
            "worst_drawdown": max(r["max_drawdown"] for r in res.values()),
            "total_expected_loss": sum(r["expected_loss"] for r in res.values()),
        },
    }


def historical_stress(run: Callable[[int, int], np.ndarray], dates: np.ndarray, *,
                      windows: Mapping[str, tuple[str, str]] = HISTORICAL_WINDOWS,
                      limit: float = 0.07) -> dict:
    """Replay each window inside the data. ``run(t0, length)`` returns the daily net returns
    of a backtest over decision days t0 .. t0 + length - 1 (e.g. a closure over
    ``backtest.run_backtest``). Windows that start before the data or end after it are
    clipped to it; windows with fewer than 2 trading days in the data are skipped."""
    d = np.asarray(dates).astype("datetime64[D]")
    out = {}
    for name, (start, end) in windows.items():
        s, e = np.datetime64(start), np.datetime64(end)
        if e < d[0] or s > d[-1]:
            out[name] = {"skipped": f"window {start}..{end} is outside the data "
                                    f"({d[0]}..{d[-1]})"}
            continue
        try:
            t0, length = date_window(d, max(s, d[0]), min(e, d[-1]))
        except Exception as exc:  # fewer than 2 days
            out[name] = {"skipped": str(exc)}
            continue
        r = np.asarray(run(t0, length), np.float64)
        wealth = np.cumprod(1.0 + r)
        peak = np.maximum.accumulate(np.r_[1.0, wealth])[1:]
        mdd = float(np.max(1.0 - wealth / peak))
        out[name] = {"start": str(d[t0]), "end": str(d[t0 + length]), "days": int(length),
                     "total_return": float(wealth[-1] - 1.0), "max_drawdown": mdd,
                     "passed": bool(mdd < limit),
                     "clipped": bool(s < d[0] or e > d[-1])}
    return out
