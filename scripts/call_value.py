"""What are the agent's own regime calls worth under the regime oracle's decision rule?
(docs/status.md, "Where the agent sits on the value of regime knowledge")

    python scripts/call_value.py --checkpoints ck --run Q            # tuning markets 1000-1039
    python scripts/call_value.py --checkpoints ck --run Q --markets 16 --json out.json

For each generated market of the many-market instrument's *tuning* range (the run's own
generator settings, its test window, risk manager on, net of costs), every policy seed's
argmax regime call on its decision days, held until the next one, drives
``evaluation.baselines.RegimeOracle`` (top-k sectors, equal weight within, daily) in place of
the latent regime, with (a) the generator's true drift table (k = the oracle's k, and k = 2, 4)
and (b) the regime table the run's Phase 1 learned (``phase1/summary.json``). Each is the mean
over the policy's seeds, paired with the agent (seed mean) and equal weight over markets. If
the agent's calls earn more under the oracle's hard rule than the agent itself, its decision
rule loses information; if less, the calls are the limit. Also printed: the calls' accuracy
against the next day's latent regime by days since the latest regime switch, their confusion
matrix, and the balanced accuracy (against ``features.regime_label``, as the agent's call is
scored) of a forward filter of the Macro's own probabilities q with the preset's weekly regime
persistence (p_t ∝ (p_{t-1} P^5) · (q_t / π)^a, a = likelihood weight; the default preset's
transition matrix P and stationary π). Judgement seeds (9000-9999) are refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

import numpy as np

from hrl_sarp_jax.checkpointing import open_run, read_phase_summary
from hrl_sarp_jax.config import load_run_config
from hrl_sarp_jax.data.synthetic import synthetic_meta
from hrl_sarp_jax.data.synthetic_presets import stationary, transition_matrix
from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation import markets as mk
from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy, agent_schedule
from hrl_sarp_jax.evaluation.attribution import regime_scores
from hrl_sarp_jax.evaluation.backtest import date_window, rebalance_mask
from hrl_sarp_jax.evaluation.stats import paired_over_markets
from hrl_sarp_jax.many_markets import JUDGEMENT_SEEDS, MarketsCache, market_settings
from hrl_sarp_jax.pipeline import resolve_split
from hrl_sarp_jax.training.policy import load_policy


def held_calls(probs: np.ndarray, steps: np.ndarray, t0: int, num_days: int) -> np.ndarray:
    """int [T] path whose day t + 1 holds the argmax call of the last decision day <= t
    (probs [L, 3], steps [L] bool, decision day t0 + l), -1 before the first call: fed to
    ``RegimeOracle`` (which reads day t + 1 at t) it trades on the call in force at t."""
    path = np.full(num_days, -1, np.int64)
    last = -1
    for i, (p, step) in enumerate(zip(probs, steps, strict=True)):
        if step:
            last = int(np.argmax(p))
        path[t0 + 1 + i] = last
    return path


SINCE_BINS = (0, 5, 10, 20, 40, 80, 1 << 30)
FILTER_WEIGHTS = (0.25, 0.5, 0.75, 1.0)


def days_since_switch(latent: np.ndarray) -> np.ndarray:
    """int [T]: days since the latent regime last changed (0 on a switch day)."""
    since = np.zeros(latent.shape[0], np.int64)
    for t in range(1, latent.shape[0]):
        since[t] = 0 if latent[t] != latent[t - 1] else since[t - 1] + 1
    return since


def filtered_calls(q: np.ndarray, weekly: np.ndarray, pi: np.ndarray, a: float) -> np.ndarray:
    """int [W] argmax of p_t ∝ (p_{t-1} weekly) · (q_t / pi)^a from p_0 = pi (q [W, 3])."""
    p, calls = pi, []
    for qt in q:
        p = (p @ weekly) * (qt / pi) ** a
        p = p / p.sum()
        calls.append(int(np.argmax(p)))
    return np.asarray(calls, np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--markets", type=int, default=40)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.markets))
    if any(s in JUDGEMENT_SEEDS for s in seeds):
        print("call_value: seeds 9000-9999 are the judgement range; use tuning seeds",
              file=sys.stderr)
        return 2
    run = open_run(f"{args.checkpoints}/{args.run}")
    cfg = load_run_config(run.root / "config.yaml")
    synth, _ = market_settings(run, cfg, None)
    learned = (read_phase_summary(run, 1) or {}).get("regime_table")
    variants = [("true_table", None, 0), ("true_table_k2", None, 2), ("true_table_k4", None, 4)]
    if learned is not None:
        variants.append(("learned_table", np.asarray(learned, np.float32), 0))
    out: dict[str, list[float]] = {n: [] for n in ("agent", "equal_weight", *(v[0] for v in
                                                                              variants))}
    hits, calls_n = np.zeros(len(SINCE_BINS) - 1), np.zeros(len(SINCE_BINS) - 1)
    confusion = np.zeros((3, 3))
    daily = transition_matrix()
    weekly, pi = np.linalg.matrix_power(daily, 5), stationary(daily)
    filt: dict[float, list[float]] = {a: [] for a in (0.0, *FILTER_WEIGHTS)}
    policy = strategy = None
    groups = [seeds[i:i + 8] for i in range(0, len(seeds), 8)]
    for inputs in MarketsCache(max_bytes=0).chunks(synth, cfg, groups):
        m0, meta = inputs.arrays[0], inputs.meta
        dates = np.asarray(meta.dates).astype("datetime64[D]")
        _, start, end = resolve_split("test", cfg, meta)
        t0, length = date_window(dates, start, end)
        if policy is None:
            policy = load_policy(run, cfg, m0, meta, inputs.feats[0])
            strategy = HierarchicalStrategy(cfg.networks)
        carries = strategy.init_carries(policy.macro_actor, policy.micro_actor,
                                        inputs.params[0], t0, length)
        week_end = np.asarray(m0.week_end, bool)

        def reb(schedule, t0=t0, length=length, week_end=week_end, dates=dates):
            return rebalance_mask(schedule, t0, length, week_end, dates)

        ew = bl.EqualWeight()
        strategies = [mk.MarketStrategy("agent", strategy,
                                        agent_schedule(cfg.env.micro_frequency), "agent",
                                        carry=carries, seeded=True),
                      mk.MarketStrategy("equal_weight", ew, "weekly", "classical",
                                        carry=ew.init_carry())]
        stacked, axes = mk.stack_params(inputs.params)
        res = mk.run_chunk(strategies, stacked, axes, t0, reb, risk_manager=True,
                           return_window=cfg.env.return_window)
        carry = res["agent"][0]
        probs, steps = np.asarray(carry.regime_probs), np.asarray(carry.macro_step, bool)
        agent_sharpe = mk.result_metrics(res["agent"][1])["sharpe"]  # [C, K]
        ew_sharpe = mk.result_metrics(res["equal_weight"][1])["sharpe"]  # [C]
        k_default = bl.oracle_top_k(int(np.sum(np.asarray(inputs.params[0].sector_valid))))
        for c, seed in enumerate(inputs.seeds):
            drift = bl.sector_drift_matrix(synthetic_meta(replace(synth, seed=int(seed))),
                                           meta.sectors)
            paths = [held_calls(probs[c, k], steps[c, k], t0, week_end.shape[0])
                     for k in range(probs.shape[1])]
            latent = np.asarray(inputs.arrays[c].latent_regime)
            labels = np.asarray(inputs.params[c].regime_label)
            since = days_since_switch(latent)
            for k in range(probs.shape[1]):
                days = t0 + np.flatnonzero(steps[c, k])
                q = probs[c, k][steps[c, k]]
                q = q / q.sum(-1, keepdims=True)
                call, truth = np.argmax(q, -1), latent[days + 1]
                ok = truth >= 0
                b = np.searchsorted(SINCE_BINS, since[days + 1][ok], side="right") - 1
                np.add.at(calls_n, b, 1)
                np.add.at(hits, b, (call[ok] == truth[ok]).astype(float))
                np.add.at(confusion, (truth[ok], call[ok]), 1)
                y = labels[days]
                for a in filt:
                    got = call if a == 0.0 else filtered_calls(q, weekly, pi, a)
                    ba = regime_scores(got[y >= 0], y[y >= 0])["balanced_accuracy"]
                    if ba is not None:
                        filt[a].append(ba)
            one, axes1 = mk.stack_params([inputs.params[c]])
            for name, table, top in variants:
                fn = bl.RegimeOracle(top or k_default)
                tab = drift if table is None else table
                runs = [mk.MarketStrategy(f"{name}{k}", fn, "daily", "oracle",
                                          carry_of=lambda _c, p=p: fn.init_carry(tab, p))
                        for k, p in enumerate(paths)]
                got = mk.run_chunk(runs, one, axes1, t0, reb, risk_manager=True,
                                   return_window=cfg.env.return_window)
                out[name].append(float(np.mean([mk.result_metrics(r)["sharpe"][0]
                                                for _, r in got.values()])))
            out["agent"].append(float(np.mean(agent_sharpe[c])))
            out["equal_weight"].append(float(ew_sharpe[c]))
        print(f"markets: {len(out['agent'])}/{len(seeds)}", file=sys.stderr, flush=True)
    rows = {}
    for name, vals in out.items():
        rows[name] = {"sharpe": float(np.mean(vals)),
                      "minus_equal_weight": paired_over_markets(vals, out["equal_weight"]),
                      "minus_agent": paired_over_markets(vals, out["agent"])}
        d, a = rows[name]["minus_equal_weight"], rows[name]["minus_agent"]
        print(f"{name:15s} {np.mean(vals):.3f}  minus equal weight {d['mean']:+.3f}  "
              f"minus agent {a['mean']:+.3f} [{a['ci95'][0] or 0:+.3f}, "
              f"{a['ci95'][1] or 0:+.3f}] ahead {a['wins']}/{a['n']}")
    print("the calls against the next day's latent regime, by days since the last switch:")
    for i in range(len(SINCE_BINS) - 1):
        hi = "" if SINCE_BINS[i + 1] >= 1 << 30 else f"-{SINCE_BINS[i + 1]}"
        print(f"  {SINCE_BINS[i]}{hi or '+'} days: {int(calls_n[i])} calls, accuracy "
              f"{hits[i] / max(calls_n[i], 1):.3f}")
    share = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    print("  confusion (rows: Bull, Bear, Sideways; columns: the call):",
          np.round(share, 3).tolist())
    for a, vals in filt.items():
        print(f"balanced accuracy, {'the calls' if a == 0 else f'filtered, weight {a:g}'}: "
              f"{np.mean(vals):.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seeds": seeds, "run": args.run, "rows": rows, "per_market": out,
                       "accuracy_by_days_since_switch": {
                           "bins": list(SINCE_BINS[:-1]), "calls": calls_n.tolist(),
                           "accuracy": (hits / np.maximum(calls_n, 1)).tolist()},
                       "confusion": share.tolist(),
                       "filtered_balanced_accuracy": {str(a): float(np.mean(v))
                                                      for a, v in filt.items()}}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
