"""Walk-forward backtest driver (host side): ``hrl-sarp backtest --walk-forward``.

# HOST ONLY (not jittable)
Folds (``walk_forward_folds``): with A, B, C = the training, validation and test spans in
whole months and D0 = the market's first trading day, fold i trains on
[D0 + iC, D0 + A + iC) (ROLLING, default) or [D0, D0 + A + iC) (EXPANDING: the whole
history, A = the first fold's training span), validates on [D0 + A + iC, D0 + A + B + iC)
and tests on [D0 + A + B + iC, D0 + A + B + (i+1)C). Month arithmetic counts from the anchor
D0 and clamps to month ends (Jan 31 + 1 month = Feb 28, + 2 months = Mar 31). A fold's test
window is evaluated from its first decision day ``eval_start`` (the first trading day on or
after its test start) to its last return day ``eval_end`` (the first trading day on or after
its test end), so fold i's last return day is fold i+1's first decision day: the test
windows are consecutive and disjoint, and their returns stitch into one series. As many
folds as fit are made (the last one's ``eval_end`` must be in the data), or the LAST N with
``folds=N`` (names keep the index among all folds).

The book carries across folds: fold i + 1 of every strategy (each baseline, each seed of the
agent and of the flat RL baseline, the oracle; each seed of the random baseline) starts from
ITS OWN book at the end of fold i (the drifted holdings and cash, value and peak, the risk
manager's state and return buffer; ``evaluation.backtest.BookState``), not from cash. Its
first decision day (fold i's last return day) is a rebalance day for every strategy: it
trades from the carried book to its new target, with the new fold's model for the trained
strategies, and that trade's cost is in the stitched net returns. The index buy-and-hold is
held through (one entry buy, on the first fold's first day). The stitched report's
``folds`` block (``evaluation.stitch.fold_summary``) lists each strategy's Sharpe per fold
and the turnover and cost of each switch (``switch_turnover`` / ``switch_cost``, the first
day of each fold after the first); ``paired_folds`` pools the agent's per-fold Sharpe
differences against every other strategy over the folds (``stats.paired_over_markets``:
mean, sd, t-interval, wins; the folds are few, so the interval is wide) next to the stitched
series' difference. The carried book is only the portfolio state: each fold's model still
sees only data up to the day it decides.

Each fold is its own run folder ``checkpoints/<run>/fold<i>/`` whose config is the base
config with ``data.val_start`` / ``data.test_start`` set to the fold's; the phases train only
on days before ``data.val_start`` and select checkpoints on the validation window, and only
the evaluation reads the test window (no look-ahead). The config has no training start, so a
rolling fold trains (and is evaluated) on the market sliced to start at its training start
(``slice_days``; the features are built once over the whole market, then sliced, so they keep
their causal history). Fold evaluations skip the historical stress replays (they replay fixed
calendar windows and are not part of a stitched report).

Folds run one after another, not as one vmapped program. A rolling fold's slice is padded
after its last day to the first fold's length (``pad_days``: empty days no phase or
evaluation reads), and the curriculum's start sets have one width for one training span, so
every fold runs the first fold's compiled training programs (Phases 3-5 and the flat
baseline) instead of compiling its own: each program is given the fold's own market as
arguments (a test proves a padded walk-forward equals an unpadded one). Expanding folds keep
the whole market (one length already).

Outputs: ``checkpoints/<run>/walk_forward.json`` (the plan: re-running with other options is
refused, with the same options it continues: finished phases are kept, every fold is
re-evaluated in order, so the books carry again), each fold's own report in
``fold<i>/report/`` (its window as evaluated in the chain, from the book carried in), and
the stitched out-of-sample report (``evaluation.stitch.stitch_payloads`` +
``evaluation.report.write_report``) with a ``decisions.jsonl`` tagged by fold in
``checkpoints/<run>/report/``.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrl_sarp_jax.config import Config, to_dict
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.features.days import pad_days, slice_days
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.utils.atomic import atomic_write_json, atomic_write_text

PLAN_FILE = "walk_forward.json"
REPORT_DIR = "report"
DECISIONS_FILE = "decisions.jsonl"
PLAN_VERSION = 1
PHASE_NAMES = ("1", "2", "3", "4", "5", "flat")
MACRO_PHASES = ("1", "3")
MICRO_PHASES = ("2", "4")
# the plan keys that must match for a run to be continued
_PLAN_KEYS = ("mode", "train_months", "val_months", "test_months", "folds_requested",
              "phases", "data_fingerprint", "config_sha256", "folds")


def _num(value: Any) -> str:
    """A span as the user wrote it (1.0 -> '1', 0.5 -> '0.5')."""
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return repr(value)


def whole_months(value: Any, option: str) -> int:
    """Years ``value`` as a whole, positive number of months (0.5 -> 6); ConfigError naming
    ``option`` otherwise."""
    try:
        months = float(value) * 12.0
    except (TypeError, ValueError):
        months = float("nan")
    if not math.isfinite(months) or round(months) < 1 or abs(months - round(months)) > 1e-6:
        raise ConfigError(f"{option} {_num(value)}: give a positive span in whole months "
                          f"(years x 12 a whole number, e.g. 1, 0.5 = 6 months or 0.25 = 3 "
                          f"months)")
    return round(months)


def _add_months(anchor: _dt.date, months: int) -> _dt.date:
    """``anchor`` + ``months`` calendar months, the day clamped to the month's last day."""
    y, m = divmod(anchor.month - 1 + months, 12)
    year, month = anchor.year + y, m + 1
    return _dt.date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))


def walk_forward_folds(dates: Any, train_years: float, val_years: float, test_years: float,
                       *, expanding: bool = False, folds: int | None = None) -> list[dict]:
    """The walk-forward folds over trading ``dates`` (module docstring).

    Returns one dict per fold: fold (index among all folds that fit), name ('fold<i>'),
    train_start, val_start, test_start, test_end (calendar dates, ISO), eval_start /
    eval_end (the first decision day and the last return day of its test window),
    eval_split ('eval_start:eval_end', for ``pipeline.evaluate_run``), test_days (return
    days) and train_lo (index of the first trading day on or after train_start: where a
    rolling fold's market slice starts; 0 when expanding).
    Raises ConfigError (one line) on spans that are not whole months, a bad ``folds`` or no
    fold fitting in the data.
    """
    a = whole_months(train_years, "--train-years")
    b = whole_months(val_years, "--val-years")
    c = whole_months(test_years, "--test-years")
    if folds is not None and int(folds) < 1:
        raise ConfigError(f"--folds {folds}: give at least 1 fold (or leave it out for every "
                          f"fold that fits)")
    d = np.asarray(dates).astype("datetime64[D]")
    if d.size < 2:
        raise DataError(f"walk-forward: the market holds {d.size} trading day(s); it needs "
                        f"years of data")
    d0: _dt.date = d[0].astype(object)
    last = d[-1]
    spans = (f"--train-years {_num(train_years)} --val-years {_num(val_years)} "
             f"--test-years {_num(test_years)}")

    def first_on_or_after(day: _dt.date) -> int:
        return int(np.searchsorted(d, np.datetime64(day, "D"), side="left"))

    out: list[dict] = []
    i = 0
    while True:
        step = i * c
        test_end = _add_months(d0, a + b + step + c)
        if np.datetime64(test_end, "D") > last:
            break
        train_start = d0 if expanding else _add_months(d0, step)
        val_start, test_start = _add_months(d0, a + step), _add_months(d0, a + b + step)
        t_lo, t0, t_end = (first_on_or_after(x) for x in (train_start, test_start, test_end))
        eval_start, eval_end = str(d[t0]), str(d[t_end])
        out.append({"fold": i, "name": f"fold{i}", "train_start": str(train_start),
                    "val_start": str(val_start), "test_start": str(test_start),
                    "test_end": str(test_end), "eval_start": eval_start, "eval_end": eval_end,
                    "eval_split": f"{eval_start}:{eval_end}", "test_days": int(t_end - t0),
                    "train_lo": 0 if expanding else t_lo})
        i += 1
    if not out:
        need = _add_months(d0, a + b + c)
        raise ConfigError(f"no walk-forward fold fits in the data ({d[0]} .. {last}) with "
                          f"{spans}: the first fold needs data through {need}; shorten the "
                          f"spans or use a longer market")
    bad = [f["name"] for f in out if f["test_days"] < 1]
    if bad:
        raise ConfigError(f"walk-forward folds {bad} hold no trading day in their test window "
                          f"with {spans}; lengthen --test-years")
    if folds is not None:
        if int(folds) > len(out):
            raise ConfigError(f"--folds {folds}: only {len(out)} fold(s) fit in the data "
                              f"({d[0]} .. {last}) with {spans}; give --folds {len(out)} or "
                              f"fewer, or leave it out")
        out = out[len(out) - int(folds):]
    return out


def parse_walk_forward_phases(text: str | Sequence[str]) -> tuple[str, ...]:
    """``--phases``: 'all' (1-5 and the flat RL baseline) or a comma list of 1,2,3,4,5,flat,
    returned sorted (digits, then 'flat'). ConfigError (one line) on unknown names, a set
    without a Macro agent (1 or 3) or a Micro agent (2 or 4), or 5 without 3 and 4."""
    raw = text if isinstance(text, str) else ",".join(str(x) for x in text)
    shown = raw.strip() or repr(raw)
    if raw.strip() == "all":
        return PHASE_NAMES
    items = [x.strip() for x in raw.split(",") if x.strip()]
    unknown = [x for x in items if x not in PHASE_NAMES]
    if unknown or not items:
        raise ConfigError(f"--phases {shown}: unknown phase(s) {unknown}; give 'all' or a "
                          f"comma list of {','.join(PHASE_NAMES)} (e.g. 1,2)")
    chosen = set(items)
    if "5" in chosen and not {"3", "4"} <= chosen:
        raise ConfigError(f"--phases {shown}: Phase 5 fine-tunes the Phase 3 Macro and Phase 4 "
                          f"Micro agents; add them (e.g. --phases 3,4,5 or all)")
    missing = [kind for kind, group in (("Macro", MACRO_PHASES), ("Micro", MICRO_PHASES))
               if not chosen & set(group)]
    if missing:
        raise ConfigError(f"--phases {shown}: a fold's policy needs a Macro agent (phase 1 or 3) "
                          f"and a Micro agent (phase 2 or 4); the {' and '.join(missing)} "
                          f"agent is missing (e.g. --phases 1,2)")
    return tuple(p for p in PHASE_NAMES if p in chosen)


def fold_config(cfg: Config, fold: dict) -> Config:
    """The base config with the fold's data.val_start / data.test_start."""
    return dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, val_start=fold["val_start"], test_start=fold["test_start"]))


def _config_sha(cfg: Config) -> str:
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True, default=str)
                          .encode()).hexdigest()


def _brief(key: str, value: Any) -> str:
    if key == "folds" and isinstance(value, list):
        return repr([f"{f.get('name')} {f.get('train_start')}/{f.get('test_start')}"
                     for f in value][:4])
    if key in ("data_fingerprint", "config_sha256") and isinstance(value, str):
        return repr(value[:16] + "...")
    return repr(value)


def _check_plan(path: Path, plan: dict) -> bool:
    """True when ``path`` holds ``plan`` (continue), False when absent; ConfigError (one
    line) when it holds another plan."""
    if not path.is_file():
        return False
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable walk-forward plan ({exc}); remove it or choose a "
                          f"new --run") from exc
    diffs = [f"{k}: {_brief(k, saved.get(k))} (saved) vs {_brief(k, plan.get(k))} (now)"
             for k in _PLAN_KEYS if saved.get(k) != plan.get(k)]
    if diffs:
        raise ConfigError(f"{path.parent} holds another walk-forward plan ({'; '.join(diffs)}); "
                          f"rerun with the saved options to continue it, or choose a new --run")
    return True


# HOST ONLY
def _train_fold(run: Any, cfg: Config, market: MarketArrays, meta: MarketMeta,
                feats: FeatureSet, phases: Sequence[str], say: Callable[[str], None]) -> dict:
    from hrl_sarp_jax.checkpointing import read_phase_summary
    from hrl_sarp_jax.pipeline import record_validation_baselines
    from hrl_sarp_jax.training.phases import FLAT_PHASE, PHASES

    summaries: dict[str, dict] = {}
    walks: dict = {}  # the fold's validation walks -> their comparators
    for p in phases:
        number, spec = (FLAT_PHASE.number, FLAT_PHASE) if p == FLAT_PHASE.number else (
            int(p), PHASES[int(p)])
        done = read_phase_summary(run, number)
        if done is not None:
            say(f"phase {p} ({spec.name}): already trained (summary found), kept")
            summaries[p] = done
        else:
            t0 = time.perf_counter()
            say(f"phase {p} ({spec.name}), {cfg.train.seeds} seed(s) ...")
            result = spec.run(cfg, market, meta, feats, run, resume=True, progress=False)
            summaries[p] = result.summary
            say(f"phase {p} done in {time.perf_counter() - t0:.0f}s")
        summaries[p] = record_validation_baselines(
            run, number, cfg, market, meta, feats, walks,
            lambda text, p=p: say(f"phase {p}: {text}")) or summaries[p]
    return summaries


# HOST ONLY
def walk_forward(
    cfg: Config,
    market_dir: str | Path,
    checkpoints: str | Path,
    run_name: str,
    *,
    train_years: float,
    val_years: float,
    test_years: float,
    expanding: bool = False,
    folds: int | None = None,
    phases: str | Sequence[str] = "all",
    seeds_for_random: int | Sequence[int] = 5,
    risk_manager: bool = True,
    include: Sequence[str] | None = None,
    bootstrap_num: int = 2000,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train, select and test fold by fold, then stitch the test windows (module docstring).

    Returns {"folds": the folds (``walk_forward_folds``'s dicts plus run, report and
    policy), "window" (start, end, days, ... of the stitched series), "seeds" (agent seeds),
    "table": [(strategy, sharpe, cagr, max_drawdown)], "files" (the stitched report's
    metrics / markdown / html), "decisions" (its decisions.jsonl), "report_dir", "plan" (the
    walk_forward.json path), "mode"}.
    """
    from hrl_sarp_jax.checkpointing import create_run, data_fingerprint
    from hrl_sarp_jax.data.io import market_identity
    from hrl_sarp_jax.evaluation.ladder import stitched_ladder
    from hrl_sarp_jax.evaluation.report import write_report
    from hrl_sarp_jax.evaluation.stitch import stitch_payloads
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.pipeline import evaluate_run, load_valid_market, summary_table
    from hrl_sarp_jax.training.market_pool import pool_source
    from hrl_sarp_jax.training.phases import check_training_config

    say = log or (lambda _msg: None)
    chosen = parse_walk_forward_phases(phases)
    check_training_config(cfg)  # every fold's phases read these keys: fail before fold 0
    mode = "expanding" if expanding else "rolling"
    market_dir = Path(market_dir)
    t_start = time.perf_counter()
    market, meta = load_valid_market(market_dir, cfg)
    plan_folds = walk_forward_folds(meta.dates, train_years, val_years, test_years,
                                    expanding=expanding, folds=folds)
    root = Path(checkpoints) / run_name
    plan = {"format_version": PLAN_VERSION, "mode": mode,
            "train_years": float(train_years), "val_years": float(val_years),
            "test_years": float(test_years),
            "train_months": whole_months(train_years, "--train-years"),
            "val_months": whole_months(val_years, "--val-years"),
            "test_months": whole_months(test_years, "--test-years"),
            "folds_requested": None if folds is None else int(folds),
            "phases": list(chosen), "market": str(market_dir),
            "data_fingerprint": data_fingerprint(market_dir),
            "config_sha256": _config_sha(cfg), "folds": plan_folds}
    plan_path = root / PLAN_FILE
    if _check_plan(plan_path, plan):  # before any work
        say(f"continuing walk-forward run {root} ({len(plan_folds)} {mode} fold(s))")
    else:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_json(plan_path, plan)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    say(f"[data] {market.num_days} days, {market.num_stocks} stocks, {market.num_sectors} "
        f"sectors; validated, loaded and features built in "
        f"{time.perf_counter() - t_start:.1f}s; {len(plan_folds)} {mode} fold(s)")

    fold_days = market.num_days - min(f["train_lo"] for f in plan_folds)
    payloads, done_folds, fold_outs = [], [], []
    books = None  # every strategy's book at the end of the previous fold (None: cash)
    for f in plan_folds:
        name = f["name"]
        tag = f"[{name}]"
        fsay = lambda msg, tag=tag: say(f"{tag} {msg}")  # noqa: E731
        fcfg = fold_config(cfg, f)
        m, mt, ft = slice_days(market, meta, feats, f["train_lo"])
        real = m.num_days
        # every rolling fold as long as the first: one set of compiled programs for all folds
        m, mt, ft = pad_days(m, mt, ft, fold_days - real)
        fsay(f"train {f['train_start']} .. {f['val_start']}, validate .. {f['test_start']}, "
             f"test {f['eval_start']} .. {f['eval_end']} ({f['test_days']} days); market from "
             f"{np.asarray(mt.dates)[0]} ({real} days"
             + (f", padded with {m.num_days - real} empty days to share programs)"
                if m.num_days > real else ")"))
        t_f = time.perf_counter()
        resume = (root / name / "run.json").exists()
        pool_source(fcfg, market_identity(market_dir))  # the pool can serve this market
        run = create_run(root, name, fcfg, data_fingerprint(market_dir), resume=resume,
                         market=market_identity(market_dir))
        with run:
            summaries = _train_fold(run, fcfg, m, mt, ft, chosen, fsay)
            out = evaluate_run(run, fcfg, m, mt, ft, split=f["eval_split"],
                               market_dir=market_dir, seeds_for_random=seeds_for_random,
                               risk_manager=risk_manager, include=include,
                               bootstrap_num=bootstrap_num, historical=False,
                               log=lambda msg, fsay=fsay: fsay(f"[evaluate] {msg}"),
                               return_payload=True, start_books=books, return_books=True)
        books = out["books"]
        fsay(f"done in {time.perf_counter() - t_f:.0f}s")
        payloads.append(out["payload"])
        fold_outs.append(out)
        done_folds.append({**f, "run": str(run.root), "report": str(out["report_dir"]),
                           "policy": {k: str(v) for k, v in out["policy"].items()},
                           "seeds": int(out["seeds"]),
                           "phases": {k: {"train_span": s.get("train_span"),
                                          "val_span": s.get("val_span")}
                                      for k, s in summaries.items()}})

    seeds = {int(o["seeds"]) for o in fold_outs}
    if len(seeds) != 1:
        raise ConfigError(f"the folds' policies have different seed counts {sorted(seeds)}; "
                          f"train every fold with the same train.seeds")
    stitched = stitch_payloads(payloads, labels=[f["name"] for f in done_folds])
    stitched["ladder"] = stitched_ladder(payloads, seed=int(cfg.seed), num_boot=bootstrap_num)
    for name, e in stitched["folds"]["strategies"].items():
        if e["switch_cost"]:
            say(f"switch {name}: turnover "
                + ", ".join(f"{t:.2f}" for t in e["switch_turnover"]) + "; cost "
                + ", ".join(f"{c:.3%}" for c in e["switch_cost"]) + " of value")
    stitched["settings"] = {
        **stitched["settings"], "split": "walk_forward", "folds": done_folds,
        "walk_forward": {k: plan[k] for k in ("mode", "train_years", "val_years", "test_years",
                                              "train_months", "val_months", "test_months",
                                              "folds_requested", "phases")}
        | {"run": str(root), "historical_stress": False,
           "note": "each fold trained before its val_start, selected on its validation "
                   "window, evaluated on its test window only; folds run sequentially"},
        "policy": {"run": run_name, "seeds": next(iter(seeds)),
                   "folds": {f["name"]: f["policy"] for f in done_folds}}}
    report_dir = root / REPORT_DIR
    files = write_report(stitched, report_dir)
    lines = []
    for f, o in zip(done_folds, fold_outs, strict=True):
        for line in Path(o["decisions"]).read_text().splitlines():
            if line.strip():
                lines.append(json.dumps({"fold": f["name"], **json.loads(line)},
                                        allow_nan=False) + "\n")
    decisions = report_dir / DECISIONS_FILE
    atomic_write_text(decisions, "".join(lines))
    say(f"stitched report of {len(done_folds)} fold(s) in {report_dir} "
        f"({time.perf_counter() - t_start:.0f}s in all)")
    return {"folds": done_folds, "window": stitched["window"], "seeds": next(iter(seeds)),
            "table": summary_table(stitched), "files": files, "decisions": decisions,
            "report_dir": report_dir, "plan": plan_path, "mode": mode}
