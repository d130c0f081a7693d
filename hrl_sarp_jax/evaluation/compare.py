"""Two many-market reports of the same markets side by side (``hrl-sarp compare A B``).

A change is judged by running the many-market instrument before and after it and pairing the
two reports market by market. The reports' own intervals hold the *markets'* spread only; a
retrained run also differs by which few training seeds it drew, and a difference inside that
noise does not carry to other markets (docs/status.md: the tuning range's +0.01 that the
judgement range reversed). So for the trained strategies with per-seed figures (the agent
and the ladder's rungs) a second interval resamples the seeds too: markets paired, each run's
seeds drawn with replacement independently (a two-level percentile bootstrap).

Replicates (``pool_reports``; ``hrl-sarp compare A1+A2 B1+B2``): several retrainings of one
setting, each judged on the same markets, pooled into one side. Each market's figure is the
mean over the replicates (over every seed of every replicate for the agent); the per-seed
figures are laid side by side, so the seed-resampled interval draws from every retraining;
and a strategy with one figure per run (the seed ensemble; the baselines, identical in every
replicate) gets each replicate's figure as its "seeds", so the ensemble too gets an interval
that holds the retraining noise.

Shapes: K markets, S_a / S_b training seeds of each run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hrl_sarp_jax.evaluation.stats import paired_over_markets

CLASSICAL = "classical"
FIRST = ("hrl_sarp", "hrl_sarp_ensemble", "hrl_sarp_pretrained")
"""Shown first, in this order, when present."""


def check_comparable(a: Mapping, b: Mapping, names: tuple[str, str]) -> None:
    """ValueError (one line, naming both reports) unless a and b are many-market reports of
    the same market seeds, split and window."""
    for rep, name in ((a, names[0]), (b, names[1])):
        if not isinstance(rep.get("markets"), list) or not rep["markets"]:
            raise ValueError(f"{name} is not a many-market report (no 'markets' list); make one "
                             f"with `hrl-sarp evaluate --run RUN --markets K`")
    seeds = [[int(m["seed"]) for m in rep["markets"]] for rep in (a, b)]
    if seeds[0] != seeds[1]:
        raise ValueError(f"{names[0]} and {names[1]} judge different markets ({_span(seeds[0])} "
                         f"vs {_span(seeds[1])}); evaluate both with the same --markets and "
                         f"--market-seed")
    for key in ("split", "window"):
        if a.get(key) != b.get(key):
            raise ValueError(f"{names[0]} and {names[1]} differ in {key} ({a.get(key)} vs "
                             f"{b.get(key)}); evaluate both on the same --split")


def _span(seeds: Sequence[int]) -> str:
    return f"{len(seeds)} markets {seeds[0]}-{seeds[-1]}" if seeds else "no markets"


def per_market(rep: Mapping, strategy: str, metric: str) -> np.ndarray:
    """float64 [K] ``metric`` of ``strategy`` in each market (the mean over seeds for a
    seeded strategy, as the report keeps it)."""
    return np.array([float(m["strategies"][strategy][metric]) for m in rep["markets"]])


def per_seed(rep: Mapping, strategy: str, metric: str = "sharpe") -> np.ndarray | None:
    """float64 [K, S] per-seed ``metric`` of ``strategy``, or None where the report keeps no
    per-seed figures for it."""
    rows = []
    for m in rep["markets"]:
        seeds = m["strategies"][strategy].get("seeds")
        if not isinstance(seeds, Mapping) or metric not in seeds:
            return None
        rows.append(seeds[metric])
    out = np.asarray(rows, np.float64)
    return out if out.ndim == 2 and out.shape[1] >= 1 else None


def seed_resampled_interval(a: np.ndarray, b: np.ndarray, *, num_boot: int = 4000,
                            alpha: float = 0.05, seed: int = 0) -> list[float]:
    """Percentile interval of mean(b) - mean(a) over a [K, S_a] and b [K, S_b] per-seed
    figures: each resample draws K market indices with replacement (the same for both
    runs) and, independently, S_a seed indices for a and S_b for b
    (``numpy.random.default_rng(seed)``)."""
    if a.shape[0] != b.shape[0] or a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"seed_resampled_interval: a [K, S_a] and b [K, S_b] must share K, "
                         f"got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    k = a.shape[0]
    diffs = np.empty(num_boot)
    for i in range(num_boot):
        m = rng.integers(0, k, k)
        sa = rng.integers(0, a.shape[1], a.shape[1])
        sb = rng.integers(0, b.shape[1], b.shape[1])
        diffs[i] = b[m][:, sb].mean() - a[m][:, sa].mean()
    lo, hi = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return [float(lo), float(hi)]


def pool_reports(reps: Sequence[Mapping], names: Sequence[str]) -> dict[str, Any]:
    """One report of the replicates ``reps`` (the same markets, split and window: ValueError
    naming the two that differ otherwise): per market and strategy in every replicate, each
    metric is the mean over the replicates, weighted by their seeds where a strategy keeps
    per-seed figures; ``seeds`` holds the per-seed figures side by side, or, for a strategy
    without them, one figure per replicate (module docstring). ``run``: the runs joined by '+'.
    """
    if len(reps) == 1:
        return dict(reps[0])
    for rep, name in zip(reps[1:], names[1:], strict=True):
        check_comparable(reps[0], rep, (names[0], name))
    common = [s for s in reps[0]["markets"][0]["strategies"]
              if all(s in r["markets"][0]["strategies"] for r in reps)]
    markets = []
    for k, first in enumerate(reps[0]["markets"]):
        out: dict[str, Any] = {}
        for s in common:
            entries = [r["markets"][k]["strategies"][s] for r in reps]
            seeded = all(isinstance(e.get("seeds"), Mapping) for e in entries)
            metrics = [m for m in entries[0] if m != "seeds" and all(
                isinstance(e.get(m), int | float) for e in entries)]
            if seeded:
                keys = [m for m in entries[0]["seeds"] if all(m in e["seeds"] for e in entries)]
                seeds = {m: [float(v) for e in entries for v in e["seeds"][m]] for m in keys}
                weights = np.array([len(next(iter(e["seeds"].values()))) for e in entries],
                                   np.float64)
            else:
                seeds = {m: [float(e[m]) for e in entries] for m in metrics}
                weights = np.ones(len(entries))
            out[s] = {m: float(np.average([e[m] for e in entries], weights=weights))
                      for m in metrics}
            out[s]["seeds"] = seeds
        markets.append({"seed": first["seed"], "strategies": out})
    return {**{k: v for k, v in reps[0].items() if k not in ("markets", "run")},
            "run": "+".join(str(r.get("run")) for r in reps), "replicates": list(names),
            "judgement_range": any(bool(r.get("judgement_range")) for r in reps),
            "markets": markets}


def classical_median_turnover(rep: Mapping) -> float | None:
    """Median over the classical baselines of their mean turnover a year, or None."""
    kinds = rep.get("strategies", {})
    names = [n for n, spec in kinds.items() if spec.get("kind") == CLASSICAL]
    if not names:
        return None
    return float(np.median([per_market(rep, n, "turnover").mean() for n in names]))


def compare_reports(a: Mapping, b: Mapping, *, names: tuple[str, str] = ("A", "B"),
                    strategies: Sequence[str] | None = None, num_boot: int = 4000,
                    seed: int = 0) -> dict[str, Any]:
    """B minus A, strategy by strategy, over the markets both reports judged.

    ``strategies``: these (each must be in both); default every strategy in both whose
    per-market figures differ, FIRST ones first. Per strategy: net Sharpe of each, the paired
    difference over markets (``stats.paired_over_markets``: mean, t-interval, wins), the
    seed-resampled interval where both keep per-seed figures, gross Sharpe difference,
    turnover a year of each and as a multiple of its report's classical median.
    """
    check_comparable(a, b, names)
    common = [s for s in a["markets"][0]["strategies"] if s in b["markets"][0]["strategies"]]
    same = {s for s in common
            if np.array_equal(per_market(a, s, "sharpe"), per_market(b, s, "sharpe"))}
    if strategies is None:
        chosen = [s for s in common if s not in same]
        chosen = [s for s in FIRST if s in chosen] + [s for s in chosen if s not in FIRST]
    else:
        missing = [s for s in strategies if s not in common]
        if missing:
            raise ValueError(f"--strategies: {', '.join(missing)} not in both {names[0]} and "
                             f"{names[1]}; choose from {', '.join(common)}")
        chosen = list(strategies)
    med = (classical_median_turnover(a), classical_median_turnover(b))
    rows = {}
    for s in chosen:
        net_a, net_b = per_market(a, s, "sharpe"), per_market(b, s, "sharpe")
        turn_a, turn_b = per_market(a, s, "turnover").mean(), per_market(b, s, "turnover").mean()
        seeds_a, seeds_b = per_seed(a, s), per_seed(b, s)
        row = {"net": [float(net_a.mean()), float(net_b.mean())],
               "difference": paired_over_markets(net_b, net_a),
               "gross_difference": float((per_market(b, s, "gross_sharpe")
                                          - per_market(a, s, "gross_sharpe")).mean()),
               "turnover": [float(turn_a), float(turn_b)],
               "turnover_x_classical_median": [
                   float(t / m) if m else None for t, m in ((turn_a, med[0]), (turn_b, med[1]))],
               "seed_resampled_ci95": None}
        if seeds_a is not None and seeds_b is not None:
            row["seed_resampled_ci95"] = seed_resampled_interval(
                seeds_a, seeds_b, num_boot=num_boot, seed=seed)
        rows[s] = row
    seeds = [int(m["seed"]) for m in a["markets"]]
    return {"names": list(names), "runs": [a.get("run"), b.get("run")], "markets": seeds,
            "judgement_range": bool(a.get("judgement_range") or b.get("judgement_range")),
            "split": a.get("split"), "window": a.get("window"),
            "classical_median_turnover": list(med), "num_boot": num_boot, "seed": seed,
            "identical": [s for s in common if s in same and s not in rows],
            "strategies": rows}


def compare_lines(result: Mapping) -> list[str]:
    """The comparison as plain-text lines (``hrl-sarp compare``)."""
    a, b = result["names"]
    seeds = result["markets"]
    win = result.get("window") or {}
    out = [f"{b} minus {a}: {_span(seeds)}, {result.get('split')} window "
           f"{win.get('start', '?')} .. {win.get('end', '?')}; net Sharpe, 95% intervals over "
           f"markets (and with each run's training seeds resampled too)"]
    if result["judgement_range"]:
        out.append("judgement range (9000-9999): judge with it once; never choose with it")
    for s, r in result["strategies"].items():
        d = r["difference"]
        lo, hi = d["ci95"]
        ci = f"{lo:+.3f} .. {hi:+.3f}" if lo is not None else "n/a"
        seeds_ci = r["seed_resampled_ci95"]
        extra = (f"; seeds resampled {seeds_ci[0]:+.3f} .. {seeds_ci[1]:+.3f}"
                 if seeds_ci else "")
        xs = r["turnover_x_classical_median"]
        x = (f" ({xs[0]:.2f}x -> {xs[1]:.2f}x the classical median)"
             if None not in xs else "")
        out.append(f"  {s:24s} {r['net'][0]:.3f} -> {r['net'][1]:.3f}: {d['mean']:+.3f} ({ci}"
                   f"{extra}), ahead in {d['wins']} of {d['n']}; gross "
                   f"{r['gross_difference']:+.3f}; turnover {r['turnover'][0]:.2f} -> "
                   f"{r['turnover'][1]:.2f} a year{x}")
    if result["identical"]:
        out.append(f"  identical in both: {', '.join(result['identical'])}")
    return out
