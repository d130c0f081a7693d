"""What each training phase added: the hierarchy after each phase, judged as the test is.

# HOST ONLY (not jittable)
The rungs are the run's hierarchy as it stood after Phase 2 (the pre-trained hierarchy, no
RL), after Phase 3 (its Macro with Phase 2's Micro), after Phase 4 (Phase 3's Macro with
Phase 4's Micro) and the final policy (``training.policy.phase_ladder``). Each rung is
backtested like the agent (same window, accounting, costs, risk manager, no-trade band), so
on ``--split val`` the ladder is each RL phase's validation exactly as the test is run, next
to the baselines' own code; on many markets it is what each phase added over markets.

A rung against the rung before it, per seed k (seed k of every rung descends from seed k):
- one window (``window_ladder``): d_k = Sharpe(rung_k) - Sharpe(previous_k) of the daily net
  returns [L], its standard error the standard deviation of d_k over a stationary block
  bootstrap of the paired days (``stats.sharpe_diff_bootstrap``);
- many markets (``markets_ladder``): d_k = the mean over the M markets of the per-market
  difference, its standard error sd / sqrt(M); and the seeds' mean compared over markets
  (``stats.paired_over_markets``: interval, markets ahead).
A seed improved when d_k > its standard error (issue 13's bar: 2 of 3 seeds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hrl_sarp_jax.evaluation import stats as st
from hrl_sarp_jax.evaluation.markets import per_market_sharpe

LADDER_RULE = ("a rung against the one before it, per seed k: d_k = Sharpe(rung_k) - "
               "Sharpe(previous_k); improved when d_k > its standard error")


def _step(diff: Sequence[float], se: Sequence[float]) -> dict[str, Any]:
    d, s = np.asarray(diff, np.float64), np.asarray(se, np.float64)
    improved = d > s
    return {"per_seed": {"diff": d.tolist(), "se": s.tolist(), "improved": improved.tolist()},
            "improved_seeds": int(improved.sum()), "seeds": int(d.size)}


def _check_rungs(rungs: Sequence[Any]) -> None:
    if len(rungs) < 2:
        raise ValueError(f"a ladder needs 2 rungs at least, got {len(rungs)}")


def window_ladder(rungs: Sequence[tuple[str, str, np.ndarray]], *, seed: int = 0,
                  num_boot: int = 2000, mean_block: float = 5.0) -> list[dict[str, Any]]:
    """Rows of a ladder on one window: ``rungs`` [(label, strategy, daily net returns [K, L])]
    in phase order. Each row: label, strategy, the seeds' mean Sharpe, and (after the first)
    ``vs_previous``: per seed d_k, its bootstrap standard error, improved; the count."""
    _check_rungs(rungs)
    nets = [np.asarray(r, np.float64) for _, _, r in rungs]
    if len({n.shape for n in nets}) != 1 or nets[0].ndim != 2:
        raise ValueError(f"every rung needs daily returns of one shape [K, L], got "
                         f"{[n.shape for n in nets]}")
    rows = []
    for i, (label, name, _) in enumerate(rungs):
        row: dict[str, Any] = {"rung": label, "strategy": name, "vs_previous": None,
                               "sharpe": float(np.mean(st.annual_sharpe(nets[i])))}
        if i:
            boot = [st.sharpe_diff_bootstrap(a, b, num=num_boot, mean_block=mean_block,
                                             seed=seed + k)
                    for k, (a, b) in enumerate(zip(nets[i], nets[i - 1], strict=True))]
            row["vs_previous"] = {"previous": rungs[i - 1][1],
                                  **_step([b["diff"] for b in boot], [b["se"] for b in boot])}
        rows.append(row)
    return rows


def markets_ladder(records: Sequence[Mapping], rungs: Sequence[tuple[str, str]]
                   ) -> list[dict[str, Any]]:
    """Rows of a ladder over market records (``many_markets``): ``rungs`` [(label,
    strategy)] in phase order, each a seeded strategy of the records. Each row: label,
    strategy, mean net and gross Sharpe and turnover over markets, and (after the first)
    ``vs_previous``: the seeds' mean over markets (``paired_over_markets``) and per seed d_k
    with its standard error over markets, improved; the count."""
    _check_rungs(rungs)
    rows = []
    for i, (label, name) in enumerate(rungs):
        row: dict[str, Any] = {"rung": label, "strategy": name, "vs_previous": None,
                               **{m: float(per_market_sharpe(records, name, m).mean())
                                  for m in ("sharpe", "gross_sharpe", "turnover")}}
        if i:
            prev = rungs[i - 1][1]
            now = np.array([r["strategies"][name]["seeds"]["sharpe"] for r in records])
            before = np.array([r["strategies"][prev]["seeds"]["sharpe"] for r in records])
            if now.shape != before.shape:
                raise ValueError(f"{name} has {now.shape[1]} seeds per market and {prev} "
                                 f"{before.shape[1]}: a ladder pairs seed k with seed k")
            d = now - before                                   # [M, K]
            se = (d.std(axis=0, ddof=1) / np.sqrt(d.shape[0]) if d.shape[0] > 1
                  else np.full(d.shape[1], np.inf))
            row["vs_previous"] = {
                "previous": prev,
                "over_markets": st.paired_over_markets(per_market_sharpe(records, name),
                                                       per_market_sharpe(records, prev)),
                **_step(d.mean(axis=0), se)}
        rows.append(row)
    return rows


LADDER_HEADER = ["rung", "Sharpe", "Δ vs previous (seeds' mean)", "per seed Δ (SE)",
                 "seeds improved > SE"]


def ladder_rows(ladder: Sequence[Mapping]) -> list[list[str]]:
    """Table rows of a ladder (``LADDER_HEADER``)."""
    out = []
    for row in ladder:
        v = row["vs_previous"]
        if v is None:
            out.append([row["rung"], f"{row['sharpe']:+.3f}", "-", "-", "-"])
            continue
        d, s = v["per_seed"]["diff"], v["per_seed"]["se"]
        over = v.get("over_markets")
        mean = (f"{over['mean']:+.3f} [{over['ci95'][0]:+.3f}, {over['ci95'][1]:+.3f}], "
                f"ahead in {over['wins']}/{over['n']}"
                if over and over["ci95"][0] is not None else f"{float(np.mean(d)):+.3f}")
        out.append([row["rung"], f"{row['sharpe']:+.3f}", mean,
                    ", ".join(f"{a:+.3f} ({b:.3f})" for a, b in zip(d, s, strict=True)),
                    f"{v['improved_seeds']}/{v['seeds']}"])
    return out


def ladder_lines(ladder: Mapping | None) -> list[str]:
    """Console lines of a report's ``ladder`` block (none without one): a header, then each
    rung's Sharpe and, after the first, the seeds' mean change and the seeds improved."""
    if not ladder:
        return []
    out = [f"what each phase added ({ladder['over']}; Sharpe: the mean of the seeds'; "
           f"improved: Δ > its standard error):"]
    for row in ladder["rows"]:
        v = row["vs_previous"]
        change = "" if v is None else (
            f"  Δ {float(np.mean(v['per_seed']['diff'])):+.3f}, seeds improved "
            f"{v['improved_seeds']}/{v['seeds']}")
        out.append(f"  {row['rung']:<36} Sharpe {row['sharpe']:+.3f}{change}")
    return out


def stitched_ladder(payloads: Sequence[Mapping], *, seed: int = 0, num_boot: int = 2000
                    ) -> dict[str, Any] | None:
    """The ladder over consecutive windows' report payloads (walk-forward folds, each
    strategy's book carried into the next): each rung's per-seed daily net returns
    concatenated over the windows [K, sum L], then ``window_ladder``. None unless every
    window has a ladder of the same rungs."""
    ladders = [p.get("ladder") for p in payloads]
    if not ladders or any(lad is None for lad in ladders):
        return None
    names = [[r["strategy"] for r in lad["rows"]] for lad in ladders]
    if any(n != names[0] for n in names):
        return None
    rungs = [(row["rung"], row["strategy"],
              np.concatenate([np.atleast_2d(p["strategies"][row["strategy"]]["per_seed_net"])
                              for p in payloads], axis=1))
             for row in ladders[0]["rows"]]
    return {"rule": LADDER_RULE,
            "over": f"{len(payloads)} windows stitched, block bootstrap of their days",
            "rows": window_ladder(rungs, seed=seed, num_boot=num_boot)}
