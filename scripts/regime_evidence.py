"""How well can the next regime be read from each set of causal inputs? (docs/status.md)

    python scripts/regime_evidence.py                 # tuning markets 1000-1019, quick preset
    python scripts/regime_evidence.py --markets 40 --first-seed 1000 --json out.json
    python scripts/regime_evidence.py --pooled        # fit on 1000-1009, score 1010-1019

For each generated market of the many-market instrument's *tuning* range, fit an L2 multinomial
logistic model (``evaluation.regime_rule.fit_softmax_regression``) of ``features.regime_label``
(the regime after t) at the week ends of the training window (before ``data.val_start``, after
a year of warm-up), and score its balanced accuracy at the week ends from ``data.val_start`` on.
Input sets: the 17 macro features (``portfolio_drawdown`` left out), the six level features
(``features.macro_levels``), both, the regime rule's raw series and trailing means, and a
forward filter on the benchmark's daily log returns with the generator's own regime means,
volatilities and transition matrix (the best a fitted 3-state Gaussian HMM on returns could
do; its argmax as a call too), a supervised forward filter on the sectors' daily log returns
(one Gaussian per regime and a transition matrix fitted on the training window's labels),
the 17 features with their causal exponential means over 5, 20 and 60 days, the raw flows,
put/call ratio, credit spread and VIX as trailing means over 20, 40 and 60 days (levels no
z-score has removed; alone and beside the 17), and a ceiling
that no causal input reaches: the generator's ``mood`` (``data.synthetic_core._macro_step``,
the lagged, smoothed regime score the macro series are driven by, recomputed from the latent
regime path). ``--pooled``: one model fitted on the training windows of the first half of
the markets, scored on the test windows of the second half (as Phase 1 learns from a pool).
Judgement seeds (9000-9999) are refused.
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


def sector_filter(log_ret: np.ndarray, label: np.ndarray, fit_days: np.ndarray) -> np.ndarray:
    """[T, 3] P(regime of the period after t | sector returns <= t): a Gaussian HMM whose
    per-regime means and covariances (10% shrunk to the diagonal) and daily transition
    matrix are fitted on ``fit_days``, where day d's return [S] belongs to the period
    labelled at d - 1."""
    cls = np.r_[-1, label[:-1]]
    ok = fit_days & (cls >= 0)
    ll = []
    for r in range(NUM_REGIMES):
        y = log_ret[ok & (cls == r)]
        cov = np.cov(y.T)
        cov = 0.9 * cov + 0.1 * np.diag(np.diag(cov))
        d = log_ret - y.mean(0)
        ll.append(-0.5 * (np.einsum("ti,ij,tj->t", d, np.linalg.inv(cov), d)
                          + np.linalg.slogdet(cov)[1]))
    ll = np.stack(ll, 1)
    trans = np.ones((NUM_REGIMES, NUM_REGIMES))
    both = ok[:-1] & ok[1:]
    np.add.at(trans, (cls[:-1][both], cls[1:][both]), 1.0)
    trans /= trans.sum(1, keepdims=True)
    out, prior = np.zeros_like(ll), np.full(NUM_REGIMES, 1.0 / NUM_REGIMES)
    for t in range(len(ll)):
        p = prior * np.exp(ll[t] - ll[t].max())
        out[t] = prior = (p / p.sum()) @ trans
    return out


def causal_ema(x: np.ndarray, span: int) -> np.ndarray:
    """[T, F] exponential mean with weight 1/span on the newest row (starts at row 0)."""
    out, acc = np.empty_like(x), x[0].astype(np.float64)
    for t in range(len(x)):
        acc = acc + (x[t] - acc) / span
        out[t] = acc
    return out


def generator_mood(latent: np.ndarray) -> np.ndarray:
    """[T] the synthetic generator's mood: m_t = m_{t-1} + (score(regime_t) - m_{t-1}) / 15,
    score 1 Bull, -1 Bear, 0 Sideways (``data.synthetic_core._macro_step``). Not causal."""
    score = np.array([1.0, -1.0, 0.0])[np.maximum(latent, 0)]
    out, m = np.empty(len(latent)), 0.0
    for t, s in enumerate(score):
        m += (s - m) / 15.0
        out[t] = m
    return out


def balanced_accuracy(pred: np.ndarray, label: np.ndarray) -> float:
    return float(pretrain.balanced_accuracy(jnp.asarray(pred), jnp.asarray(label)))


def logistic_score(x: np.ndarray, label: np.ndarray, train: np.ndarray, test: np.ndarray
                   ) -> float:
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    z = np.c_[(x - mean) / std, np.ones(len(x))]
    w = fit_softmax_regression(z[train][:, :-1], label[train])
    return balanced_accuracy(np.argmax(z @ w, 1)[test], label[test])


RAW_SERIES = ("fii_flow", "dii_flow", "put_call_ratio", "credit_spread", "vix")
RAW_WINDOWS = (20, 40, 60)


def trailing_means(x: np.ndarray, windows: tuple[int, ...]) -> np.ndarray:
    """[T, F * len(windows)] trailing means of x [T, F] over rows t-w+1..t (fewer at the
    start), one block of F columns per window."""
    c = np.cumsum(np.r_[np.zeros((1, x.shape[1])), np.asarray(x, np.float64)], 0)
    t = np.arange(1, x.shape[0] + 1)
    return np.concatenate([(c[t] - c[np.maximum(t - w, 0)]) / np.minimum(t, w)[:, None]
                           for w in windows], 1)


def market_sets(cfg, market, meta, truth) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """({input set: [T, F]}, labels [T], training week ends [T], test week ends [T])."""
    feats = build_features(market, cfg.features, meta.macro_names)
    cols = np.asarray(column_index(meta.macro_names, market.macro.shape[1],
                                   schema.MACRO_SERIES, "macro"))
    levels, _ = macro_level_features(market.macro, market.macro_mask, cols,
                                     market.benchmark_close, cfg.features.norm_window)
    label, week_end = np.asarray(feats.regime_label), np.asarray(market.week_end)
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    val0 = int(np.searchsorted(dates, np.datetime64(cfg.data.val_start)))
    days = np.arange(label.shape[0])
    fit_days = (days >= WARMUP_DAYS) & (days < val0 - LABEL_GAP)
    train = week_end & (label >= 0) & fit_days
    test = week_end & (label >= 0) & (days >= val0)
    base = np.asarray(feats.macro)[:, :17]
    rule, _ = regime_rule_inputs(np.asarray(market.macro), np.asarray(market.macro_mask))
    bench = np.asarray(market.benchmark_returns, np.float64)
    filt = forward_filter(np.log1p(np.where(np.isfinite(bench), bench, 0.0)), *truth)
    sector = np.log1p(np.where(np.asarray(market.sector_mask),
                               np.asarray(market.sector_returns, np.float64), 0.0))
    sfilt = np.log(sector_filter(sector, label, fit_days) + 1e-6)
    mood = generator_mood(np.asarray(market.latent_regime))
    names = list(meta.macro_names)
    raw = trailing_means(np.asarray(market.macro)[:, [names.index(n) for n in RAW_SERIES]],
                         RAW_WINDOWS)
    sets = {"macro_17": base, "levels_6": np.asarray(levels),
            "macro_17+levels_6": np.c_[base, np.asarray(levels)], "rule_inputs": rule,
            "filter": np.log(filt + 1e-6), "macro_17+filter": np.c_[base, np.log(filt + 1e-6)],
            "sector_filter": sfilt, "macro_17+sector_filter": np.c_[base, sfilt],
            "macro_17+ema_5_20_60": np.c_[base, causal_ema(base, 5), causal_ema(base, 20),
                                          causal_ema(base, 60)],
            "raw_means": raw, "macro_17+raw_means": np.c_[base, raw],
            "generator_mood (ceiling)": np.c_[mood, mood - np.r_[np.zeros(5), mood[:-5]]]}
    return sets, label, train, test


def market_scores(cfg, market, meta, truth) -> dict[str, float]:
    sets, label, train, test = market_sets(cfg, market, meta, truth)
    out = {k: logistic_score(x, label, train, test) for k, x in sets.items()}
    filt = np.exp(sets["filter"])
    out["filter_argmax"] = balanced_accuracy(np.argmax(filt, 1)[test], label[test])
    return out


def pooled_scores(rows: list) -> dict[str, list[float]]:
    """One model per input set fitted on the training week ends of the first half of
    ``rows`` [(sets, label, train, test)], scored on each market of the second half."""
    half = len(rows) // 2
    out = {}
    for name in rows[0][0]:
        x = np.concatenate([r[0][name][r[2]] for r in rows[:half]])
        y = np.concatenate([r[1][r[2]] for r in rows[:half]])
        mean, std = x.mean(0), x.std(0) + 1e-8
        w = fit_softmax_regression((x - mean) / std, y)
        out[name] = [balanced_accuracy(
            np.argmax(np.c_[(s[name] - mean) / std, np.ones(len(lab))] @ w, 1)[te], lab[te])
            for s, lab, _, te in rows[half:]]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="quick")
    ap.add_argument("--markets", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--json", default=None, help="write every market's scores here")
    ap.add_argument("--pooled", action="store_true",
                    help="fit on the first half of the markets, score the second half")
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
    markets = synthetic_markets(cfg.synth, cfg.data, seeds)
    if args.pooled:
        pooled = pooled_scores([market_sets(cfg, m, meta, truth) for _, m, meta in markets])
        held = seeds[len(seeds) // 2:]
        rows = {s: {k: v[i] for k, v in pooled.items()} for i, s in enumerate(held)}
        print(f"pooled: fitted on markets {seeds[0]}-{seeds[len(seeds) // 2 - 1]}, "
              f"scored on {held[0]}-{held[-1]}")
    else:
        rows = {s: market_scores(cfg, m, meta, truth) for s, m, meta in markets}
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
