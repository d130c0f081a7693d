"""How well can the next regime be read from each set of causal inputs? (docs/status.md)

    python scripts/regime_evidence.py                 # tuning markets 1000-1019, quick preset
    python scripts/regime_evidence.py --markets 40 --first-seed 1000 --json out.json

For each generated market of the many-market instrument's *tuning* range, fit an L2 multinomial
logistic model (``evaluation.regime_rule.fit_softmax_regression``) of ``features.regime_label``
(the regime after t) at the week ends of the training window (before ``data.val_start``, after
a year of warm-up), and score its balanced accuracy at the week ends from ``data.val_start`` on.
Input sets: the 17 macro features (``portfolio_drawdown`` left out), the six level features
(``features.macro_levels``), both, the regime rule's raw series and trailing means, and a
forward filter on the benchmark's daily log returns with the generator's own regime means,
volatilities and transition matrix (the best a fitted 3-state Gaussian HMM on returns could
do; its argmax as a call too). Judgement seeds (9000-9999) are refused.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.config import load_config
from hrl_sarp_jax.data import schema
from hrl_sarp_jax.data.synthetic import synthetic_markets
from hrl_sarp_jax.data.synthetic_presets import make_params
from hrl_sarp_jax.evaluation.regime_rule import fit_softmax_regression, regime_rule_inputs
from hrl_sarp_jax.features.build import build_features, column_index
from hrl_sarp_jax.features.macro import macro_level_features
from hrl_sarp_jax.training import pretrain
from hrl_sarp_jax.types import NUM_REGIMES

WARMUP_DAYS = 260
LABEL_GAP = 10  # training labels end this many days before val_start (labels look ahead)


def forward_filter(log_ret: np.ndarray, transition: np.ndarray, mu: np.ndarray,
                   sigma: np.ndarray) -> np.ndarray:
    """[T, 3] P(regime at t+1 | returns <= t) of a Gaussian HMM with known parameters."""
    out = np.zeros((log_ret.shape[0], NUM_REGIMES))
    p = np.full(NUM_REGIMES, 1.0 / NUM_REGIMES)
    for t, r in enumerate(log_ret):
        p = p * np.exp(-0.5 * ((r - mu) / sigma) ** 2) / sigma
        p = p / p.sum()
        out[t] = p @ transition
        p = out[t]
    return out


def balanced_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    return float(pretrain.balanced_accuracy(jnp.asarray(pred), jnp.asarray(label)))


def logistic_score(x: np.ndarray, label: np.ndarray, train: np.ndarray, test: np.ndarray
                   ) -> float:
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    w = fit_softmax_regression(z[train][:, :-1], label[train])
    return balanced_accuracy(np.argmax(z @ w, 1)[test], label[test])


def market_scores(cfg, market, meta, truth) -> dict[str, float]:
    feats = build_features(market, cfg.features, meta.macro_names)
    cols = np.asarray(column_index(meta.macro_names, market.macro.shape[1],
                                   schema.MACRO_SERIES, "macro"))
    levels, _ = macro_level_features(market.macro, market.macro_mask, cols,
                                     market.benchmark_close, cfg.features.norm_window)
    label, week_end = np.asarray(feats.regime_label), np.asarray(market.week_end)
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    val0 = int(np.searchsorted(dates, np.datetime64(cfg.data.val_start)))
    days = np.arange(label.shape[0])
    train = week_end & (label >= 0) & (days >= WARMUP_DAYS) & (days < val0 - LABEL_GAP)
    test = week_end & (label >= 0) & (days >= val0)
    base = np.asarray(feats.macro)[:, :17]
    rule, _ = regime_rule_inputs(np.asarray(market.macro), np.asarray(market.macro_mask))
    bench = np.asarray(market.benchmark_returns, np.float64)
    filt = forward_filter(np.log1p(np.where(np.isfinite(bench), bench, 0.0)), *truth)
    sets = {"macro_17": base, "levels_6": np.asarray(levels),
            "macro_17+levels_6": np.c_[base, np.asarray(levels)], "rule_inputs": rule,
            "filter": np.log(filt + 1e-6), "macro_17+filter": np.c_[base, np.log(filt + 1e-6)]}
    out = {k: logistic_score(x, label, train, test) for k, x in sets.items()}
    out["filter_argmax"] = balanced_accuracy(np.argmax(filt, 1)[test], label[test])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="quick")
    ap.add_argument("--markets", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--json", default=None, help="write every market's scores here")
    args = ap.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.markets))
    if any(9000 <= s <= 9999 for s in seeds):
        print("regime_evidence: seeds 9000-9999 are the judgement range; use tuning seeds",
              file=sys.stderr)
        return 2
    cfg = load_config(args.config)
    p = make_params(cfg.synth.preset, cfg.synth.stocks_per_sector)
    truth = (np.asarray(p.transition, np.float64), np.asarray(p.market_mu, np.float64),
             np.asarray(p.market_sigma, np.float64))
    rows = {s: market_scores(cfg, m, meta, truth)
            for s, m, meta in synthetic_markets(cfg.synth, cfg.data, seeds)}
    names = list(next(iter(rows.values())))
    for n in names:
        v = np.array([r[n] for r in rows.values()])
        d = v - np.array([r["macro_17"] for r in rows.values()])
        print(f"{n:20s} balanced accuracy {v.mean():.3f} (SE {v.std(ddof=1) / np.sqrt(len(v)):.3f})"
              f"  vs macro_17 {d.mean():+.3f} (SE {d.std(ddof=1) / np.sqrt(len(d)):.3f}),"
              f" ahead in {int((d > 0).sum())} of {len(d)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({str(s): r for s, r in rows.items()}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
