"""Stitch the report payloads of consecutive evaluation windows into one payload (host side).

A walk-forward backtest (``walk_forward.walk_forward``) evaluates fold i's model on its own test
window only; ``stitch_payloads`` joins the folds' out-of-sample payloads
(``evaluation.evaluate`` layout) into ONE payload over the union of the windows, which
``evaluation.report.write_report`` turns into the usual metrics.json / report.md / report.html.

What is concatenated and what is recomputed:
- per-day arrays (``dates``, realised regimes, every strategy's series: net, gross, cost_frac,
  itemised costs, turnover, sector_weights; the per-seed net returns ``per_seed_net`` [K, L]
  and regime calls) are concatenated in window order;
- ``value`` / ``drawdown`` are recomputed from the stitched net returns: one wealth path
  compounded through the windows from the first window's starting value. A walk-forward
  backtest carries every strategy's book (holdings, cash, value, peak, risk state) from one
  fold into the next (``window.start_book = 'carried'``), so its per-window value paths are
  already continuous and the recomputed path equals their concatenation; windows evaluated
  from cash each pay their entry on day 0 and the path compounds their returns alike;
- every metric is recomputed from the stitched series with ``evaluation.metrics`` exactly as
  ``evaluate_baselines`` / ``add_strategy`` compute them over one window, so stitching N
  windows gives the metrics of one payload whose series are the concatenations;
- seeded baselines (``random``): per-seed return metrics from ``per_seed_net``, averaged over
  seeds; turnover, cost drag and its items from the seed-averaged series (linear in the
  seeds, so equal to the per-seed mean); their seed dispersion lists only the metrics
  computable from per-seed returns (the per-seed turnover and cost series are not in the
  payload);
- trained strategies (kind 'trained': ``hrl_sarp``, ``flat_rl``) are re-added with
  ``add_strategy`` (per-seed returns [K, L_total]); a strategy that had a ``vs_<name>`` test
  section in the windows gets it recomputed against every other strategy (itself excluded);
  ``seeds.per_seed`` lists each seed's sharpe, cagr, max_drawdown and cvar_95;
- ``tests.vs_benchmark`` is recomputed with ``evaluate.benchmark_tests``;
- ``stress``: sector shocks on each strategy's mean sector allocation over the stitched
  period; historical window replays are not part of a stitched report (they replay fixed
  calendar windows from cash and do not depend on the evaluation window); per-window
  analyses of a strategy (its ``attribution``) are left to each window's own report.

Per window (``fold_summary`` -> ``folds``): every strategy's Sharpe in each window (the mean
over seeds of the per-seed Sharpes for seeded and trained strategies) and, on the first day
of every window after the first, the turnover and cost (fraction of value) of trading from
the book carried in to the new target: ``switch_turnover`` / ``switch_cost``, what switching
to the next fold's model (and the forced day-0 rebalance of every strategy) costs; the seed
mean for seeded and trained strategies. ``paired_folds`` (``paired_fold_tests``): for each
compared trained strategy (the agent), the per-window Sharpe difference against every other
strategy, pooled over the windows as paired units with ``stats.paired_over_markets`` (mean,
sd, t-interval, wins), next to the stitched series' Sharpe difference of its tests.

Consecutive means: window i + 1 starts (first decision day) on the trading day window i ends
(its last return day), so the stitched return days are contiguous and disjoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation import metrics as em
from hrl_sarp_jax.evaluation import stats as st
from hrl_sarp_jax.evaluation import stress as sx
from hrl_sarp_jax.evaluation.evaluate import SEEDED_METRICS, add_strategy, benchmark_tests

TRAINED = "trained"
PER_SEED_METRICS = ("sharpe", "cagr", "max_drawdown", "cvar_95")
_RETURN_ONLY = tuple(m for m in SEEDED_METRICS if m not in ("turnover", "cost_drag"))
# entry keys that describe one window only (not stitched)
_WINDOW_ONLY = ("series", "metrics", "seeds", "per_seed_net", "attribution")
FOLDS_NOTE = ("folds are the paired units and there are few of them: the t-interval over "
              "folds is wide; the stitched-series difference (its block bootstrap) uses "
              "every day")


def _fail(msg: str) -> ConfigError:
    return ConfigError(f"stitch_payloads: {msg}")


def _check(payloads: Sequence[Mapping]) -> None:
    """ConfigError (one line) unless the payloads are consecutive windows of one evaluation."""
    if not payloads:
        raise _fail("no payloads given; pass the payloads of one or more consecutive windows")
    first = payloads[0]
    names0 = list(first["strategies"])
    for i, p in enumerate(payloads):
        w = p["window"]
        if len(p["dates"]) != int(w["days"]):
            raise _fail(f"window {i} holds {len(p['dates'])} dates but says {w['days']} days")
        names = list(p["strategies"])
        if set(names) != set(names0):
            extra = sorted(set(names) - set(names0))
            missing = sorted(set(names0) - set(names))
            raise _fail(f"window {i} has other strategies than window 0 (extra {extra}, "
                        f"missing {missing}); evaluate every window with the same baselines "
                        f"and trained strategies")
        for n in names:
            k0, k = first["strategies"][n].get("kind"), p["strategies"][n].get("kind")
            if k != k0:
                raise _fail(f"strategy {n!r} is {k!r} in window {i} but {k0!r} in window 0")
            s0 = np.shape(first["strategies"][n].get("per_seed_net", np.zeros((0, 0))))[0]
            s = np.shape(p["strategies"][n].get("per_seed_net", np.zeros((0, 0))))[0]
            if s != s0:
                raise _fail(f"strategy {n!r} has {s} seed(s) in window {i} but {s0} in window "
                            f"0; evaluate every window with the same seeds")
        for key, a, b in (
                ("benchmark", p.get("benchmark"), first.get("benchmark")),
                ("oracle", p.get("oracle") is not None, first.get("oracle") is not None),
                ("regime source", p["regimes"]["source"], first["regimes"]["source"]),
                ("sectors", list(p["market"]["sectors"]), list(first["market"]["sectors"])),
                ("rf_annual", p["settings"]["rf_annual"], first["settings"]["rf_annual"]),
                ("bootstrap", p["settings"]["bootstrap"], first["settings"]["bootstrap"])):
            if a != b:
                raise _fail(f"window {i} differs from window 0 in its {key} ({a!r} vs {b!r}); "
                            f"stitch only windows of one evaluation setup")
        if i:
            prev = payloads[i - 1]["window"]
            if w["start"] != prev["end"]:
                raise _fail(f"window {i} starts {w['start']} but window {i - 1} ends "
                            f"{prev['end']}: the windows must be consecutive (each one's first "
                            f"decision day is the previous one's last return day)")


def _check_carried(payloads: Sequence[Mapping]) -> None:
    """ConfigError (one line) unless every window marked ``start_book = 'carried'`` starts,
    strategy by strategy, from the value the previous window ended with (strategies with
    their own single path: not the seed blends)."""
    for i in range(1, len(payloads)):
        p, prev = payloads[i], payloads[i - 1]
        if p["window"].get("start_book") != "carried":
            continue
        pairs = [(n, p["strategies"][n], prev["strategies"][n]) for n in p["strategies"]]
        if p.get("oracle") and prev.get("oracle"):
            pairs.append(("oracle", p["oracle"], prev["oracle"]))
        for n, e, e0 in pairs:
            if "per_seed_net" in e:
                continue
            s, s0 = e["series"], e0["series"]
            start = float(np.asarray(s["value"])[0]) / (1.0 + float(np.asarray(s["net"])[0]))
            end = float(np.asarray(s0["value"])[-1])
            if not np.isclose(start, end, rtol=1e-4, atol=0.0):
                raise _fail(f"window {i} starts from the carried book but {n!r} starts at value "
                            f"{start:.6g} where window {i - 1} ended at {end:.6g}; carry each "
                            f"strategy's end book into the next window")


def _cat(arrays: Sequence[Any], axis: int = 0) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float64) for a in arrays], axis=axis)


def _wealth(net: np.ndarray, v0: float) -> tuple[np.ndarray, np.ndarray]:
    """(value, drawdown) of the stitched net returns from starting value v0."""
    w = np.cumprod(1.0 + net)
    return v0 * w, 1.0 - w / np.maximum.accumulate(np.r_[1.0, w])[1:]


def _stitch_series(entries: Sequence[Mapping]) -> dict:
    """One strategy's series over the stitched windows (value / drawdown recomputed)."""
    series = [e["series"] for e in entries]
    keys = [sorted(s.get("costs", {})) for s in series]
    if any(k != keys[0] for k in keys):
        raise _fail(f"the itemised costs differ between windows ({keys[0]} vs others)")
    out: dict[str, Any] = {k: _cat([s[k] for s in series])
                           for k in ("net", "gross", "cost_frac", "turnover")}
    out["costs"] = {c: _cat([s["costs"][c] for s in series]) for c in keys[0]}
    sw = [s.get("sector_weights") for s in series]
    out["sector_weights"] = None if any(x is None for x in sw) else _cat(sw)
    s0 = series[0]
    net0 = float(np.asarray(s0["net"])[0])
    v0 = float(np.asarray(s0["value"])[0]) / (1.0 + net0) if len(s0["net"]) else 1.0
    out["value"], out["drawdown"] = _wealth(out["net"], v0)
    return out


def _metrics(series: Mapping, bench: np.ndarray | None, regimes: np.ndarray, rf: float) -> dict:
    return em.strategy_metrics(series["net"], benchmark=bench, turnover=series["turnover"],
                               costs=series["costs"], cost_frac=series["cost_frac"],
                               regimes=regimes, rf_annual=rf)


def _seeded_metrics(series: Mapping, per_seed: np.ndarray, bench: np.ndarray | None,
                    regimes: np.ndarray, rf: float) -> tuple[dict, dict]:
    """(metrics, seeds) of a seeded baseline, as ``evaluate_baselines`` (module docstring)."""
    blend = _metrics(series, bench, regimes, rf)
    one = [em.strategy_metrics(r, benchmark=bench, rf_annual=rf) for r in per_seed]
    metrics = {m: float(np.mean([p[m] for p in one])) for m in _RETURN_ONLY if m in one[0]}
    metrics["turnover"] = blend["turnover"]
    metrics["cost_drag"] = blend["cost_drag"]
    metrics["cost_drag_items"] = blend["cost_drag_items"]
    metrics["regimes"] = blend["regimes"]
    metrics["seed_blend_sharpe"] = _metrics(series, bench, None, rf)["sharpe"]
    seeds = {m: em.dispersion([p[m] for p in one]) for m in _RETURN_ONLY if m in one[0]}
    return metrics, seeds


def _plain_entry(entries: Sequence[Mapping], bench: np.ndarray | None, regimes: np.ndarray,
                 rf: float) -> dict:
    first = entries[0]
    entry = {k: v for k, v in first.items() if k not in _WINDOW_ONLY}
    entry["series"] = _stitch_series(entries)
    if "per_seed_net" in first:
        per_seed = _cat([e["per_seed_net"] for e in entries], axis=1)
        entry["metrics"], disp = _seeded_metrics(entry["series"], per_seed, bench, regimes, rf)
        seeds = first.get("seeds", {})
        entry["seeds"] = {**({"seeds": seeds["seeds"]} if "seeds" in seeds else {}), **disp}
        entry["per_seed_net"] = per_seed
    else:
        entry["metrics"] = _metrics(entry["series"], bench, regimes, rf)
    return entry


def _test_seed(payloads: Sequence[Mapping], name: str) -> int | None:
    """The bootstrap seed of ``tests['vs_<name>']`` in the first window (None: no section)."""
    section = payloads[0].get("tests", {}).get(f"vs_{name}")
    if section is None:
        return None
    pairs = section.get("pairs", {})
    return int(next(iter(pairs.values()))["bootstrap"]["seed"]) if pairs else 0


def _add_trained(out: dict, name: str, entries: Sequence[Mapping], *, compare: bool,
                 seed: int) -> dict:
    first = entries[0]
    series = [e["series"] for e in entries]
    sw = [s.get("sector_weights") for s in series]
    calls = [e.get("regime_calls") for e in entries]
    others = {n: e for n, e in out["strategies"].items() if n != name}
    return add_strategy(
        {**out, "strategies": others}, name, _cat([e["per_seed_net"] for e in entries], axis=1),
        description=first.get("description", name),
        sector_weights=None if any(x is None for x in sw) else _cat(sw),
        turnover=_cat([s["turnover"] for s in series]) if "turnover" in first["metrics"]
        else None,
        cost_frac=_cat([s["cost_frac"] for s in series]) if "cost_drag" in first["metrics"]
        else None,
        costs={c: _cat([s["costs"][c] for s in series]) for c in first["series"]["costs"]},
        regime_calls=None if any(c is None for c in calls) else np.concatenate(
            [np.atleast_2d(np.asarray(c)) for c in calls], axis=1),
        compare=compare, seed=seed)


def _shocks(out: dict, payloads: Sequence[Mapping]) -> dict:
    """Sector shocks on each non-trained strategy's mean allocation over the stitched days."""
    old = payloads[0].get("stress", {}).get("sector_shocks", {})
    if not old:
        return {}
    limit = float(payloads[0]["stress"]["limit"])
    value = float(next(iter(old.values()))["value"])
    named = list(out["market"]["sectors"])
    shocks = {}
    for name, e in [*out["strategies"].items(), *([("oracle", out["oracle"])]
                                                  if out.get("oracle") else [])]:
        sw = e["series"].get("sector_weights")
        if sw is None or e.get("kind") == TRAINED or name not in old:
            continue
        mean = np.asarray(sw).mean(0)
        sectors = named + [""] * (mean.shape[0] - len(named))  # padding slots are trailing
        shocks[name] = sx.sector_shock_stress(mean, sectors, limit=limit, value=value)
    return shocks


def window_sharpe(entry: Mapping, rf: float = 0.0) -> float:
    """Sharpe of one strategy entry over its window: the mean over seeds of the per-seed
    Sharpes when it has ``per_seed_net`` [K, L] (seeded and trained strategies), else the
    Sharpe of its net series [L]."""
    if "per_seed_net" in entry:
        per_seed = np.atleast_2d(np.asarray(entry["per_seed_net"], np.float64))
        return float(np.mean([em.return_metrics(r, rf_annual=rf)["sharpe"] for r in per_seed]))
    return float(em.return_metrics(entry["series"]["net"], rf_annual=rf)["sharpe"])


def fold_summary(payloads: Sequence[Mapping], labels: Sequence[str]) -> dict:
    """Per window of consecutive ``payloads`` (module docstring): {"windows": [{label, start,
    end, days, start_book}], "carried": whether every window after the first started from
    the book carried in, "strategies": name -> {"sharpe": [F], "switch_turnover": [F - 1],
    "switch_cost": [F - 1], "switch_turnover_total", "switch_cost_total"}} (the oracle
    too, when evaluated). Switch numbers are day 0 of windows 1 .. F - 1 (one-way turnover;
    cost as a fraction of the value before trading)."""
    rf = float(payloads[0]["settings"]["rf_annual"])
    windows = [{"label": str(lab), **{k: p["window"][k] for k in ("start", "end", "days")},
                "start_book": p["window"].get("start_book", "cash")}
               for lab, p in zip(labels, payloads, strict=True)]
    names = [*payloads[0]["strategies"], *(["oracle"] if payloads[0].get("oracle") else [])]
    out: dict[str, dict] = {}
    for n in names:
        es = [p["oracle"] if n == "oracle" else p["strategies"][n] for p in payloads]
        turn = [float(np.asarray(e["series"]["turnover"])[0]) for e in es[1:]]
        cost = [float(np.asarray(e["series"]["cost_frac"])[0]) for e in es[1:]]
        out[n] = {"sharpe": [window_sharpe(e, rf) for e in es], "switch_turnover": turn,
                  "switch_cost": cost, "switch_turnover_total": float(np.sum(turn)),
                  "switch_cost_total": float(np.sum(cost))}
    return {"windows": windows,
            "carried": all(w["start_book"] == "carried" for w in windows[1:]),
            "strategies": out}


def paired_fold_tests(folds: Mapping, tests: Mapping, agent: str) -> dict:
    """``agent`` vs every other strategy (not the oracle) over the windows of ``folds``
    (``fold_summary``): per window the Sharpe difference (agent's seed-mean Sharpe minus the
    strategy's), pooled with ``stats.paired_over_markets`` (the windows are the paired
    units), and the stitched series' difference from ``tests['vs_<agent>']`` (bootstrap diff
    and CI) when present."""
    sharpe = {n: e["sharpe"] for n, e in folds["strategies"].items() if n != "oracle"}
    a = sharpe[agent]
    boot = tests.get(f"vs_{agent}", {}).get("pairs", {})
    pairs = {}
    for n, b in sharpe.items():
        if n == agent:
            continue
        pooled = st.paired_over_markets(a, b)
        stitched = boot.get(n, {}).get("bootstrap")
        pairs[n] = {"per_fold": [float(x - y) for x, y in zip(a, b, strict=True)],
                    "agent_sharpe": list(a), "sharpe": list(b), "pooled": pooled,
                    "stitched": None if stitched is None else {
                        k: stitched.get(k) for k in ("diff", "ci_low", "ci_high", "p_value")}}
    return {"agent": agent, "unit": "fold", "n": len(a),
            "folds": [w["label"] for w in folds["windows"]], "note": FOLDS_NOTE, "pairs": pairs}


def stitch_payloads(payloads: Sequence[Mapping], labels: Sequence[str] | None = None) -> dict:
    """One report payload over consecutive windows (module docstring).

    Args:
      payloads: ``evaluate_baselines`` payloads (trained strategies added with
        ``add_strategy``), in window order; the same strategies, seeds, benchmark, oracle,
        regime source, sectors and test settings in each.
      labels: a name per window (e.g. the walk-forward folds'; default 'window<i>').
    Returns a new payload; ``settings.stitched`` lists each window (start, end, days),
    ``folds`` the per-window Sharpes and switch costs (``fold_summary``) and, with a
    compared trained strategy, ``paired_folds`` (``paired_fold_tests``, keyed 'vs_<name>').
    Raises ConfigError (one line) on an empty list, windows that are not consecutive, labels
    that do not match the windows or payloads that do not match.
    """
    _check(payloads)
    _check_carried(payloads)
    labels = [f"window{i}" for i in range(len(payloads))] if labels is None else list(labels)
    if len(labels) != len(payloads):
        raise _fail(f"{len(labels)} label(s) for {len(payloads)} window(s); give one per window")
    first, last = payloads[0], payloads[-1]
    rf = float(first["settings"]["rf_annual"])
    regimes = np.concatenate([np.asarray(p["regimes"]["realised"]) for p in payloads])
    bname = first.get("benchmark")
    bench = _cat([p["strategies"][bname]["series"]["net"] for p in payloads]) if bname else None
    names = list(first["strategies"])
    trained = [n for n in names if first["strategies"][n].get("kind") == TRAINED]
    days = int(sum(int(p["window"]["days"]) for p in payloads))
    windows = [{k: p["window"][k] for k in ("start", "end", "days")} for p in payloads]

    out: dict[str, Any] = {k: v for k, v in first.items()
                           if k not in ("strategies", "tests", "end_books", "folds",
                                        "paired_folds")}
    out["window"] = {"start": first["window"]["start"], "end": last["window"]["end"],
                     "t0": int(first["window"]["t0"]), "days": days,
                     "first_return_date": first["window"]["first_return_date"]}
    out["dates"] = np.concatenate([np.asarray(p["dates"]) for p in payloads])
    out["settings"] = {**first["settings"], "stitched": windows}
    out["regimes"] = {"source": first["regimes"]["source"], "realised": regimes}
    out["strategies"] = {n: _plain_entry([p["strategies"][n] for p in payloads], bench,
                                         regimes, rf)
                         for n in names if n not in trained}
    if first.get("oracle") is not None:
        out["oracle"] = _plain_entry([p["oracle"] for p in payloads], bench, regimes, rf)
    pending: dict[str, Any] = {}
    for p in payloads:
        pending.update(p.get("requires_trained_run", {}))
    out["requires_trained_run"] = {k: v for k, v in pending.items() if k not in names}
    out["tests"] = {"vs_benchmark": benchmark_tests(out)} if bname else {}

    # trained strategies: all of them first, then the compared ones again so that their
    # tests cover every other strategy (the trained ones included)
    for n in trained:
        out = _add_trained(out, n, [p["strategies"][n] for p in payloads], compare=False,
                           seed=0)
    for n in trained:
        seed = _test_seed(payloads, n)
        if seed is not None:
            out = _add_trained(out, n, [p["strategies"][n] for p in payloads], compare=True,
                               seed=seed)
    out["strategies"] = {n: out["strategies"][n] for n in names}
    for n in trained:
        entry = out["strategies"][n]
        per_seed = [em.return_metrics(r, rf_annual=rf) for r in entry["per_seed_net"]]
        entry["seeds"] = {**entry["seeds"],
                          "per_seed": {m: [p[m] for p in per_seed] for m in PER_SEED_METRICS}}
    out["folds"] = fold_summary(payloads, labels)
    compared = [n for n in trained if _test_seed(payloads, n) is not None]
    if compared:
        out["paired_folds"] = {f"vs_{n}": paired_fold_tests(out["folds"], out["tests"], n)
                               for n in compared}
    out["stress"] = {"limit": first.get("stress", {}).get("limit"),
                     "sector_shocks": _shocks(out, payloads), "historical": {},
                     "allocation": "mean executed sector weights over the stitched windows",
                     "historical_note": "historical window replays are not part of a "
                                        "stitched report"}
    return out
