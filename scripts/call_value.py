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
rule loses information; if less, the calls are the limit. Judgement seeds (9000-9999) are
refused.
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
from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation import markets as mk
from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy, agent_schedule
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
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"seeds": seeds, "run": args.run, "rows": rows, "per_market": out}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
