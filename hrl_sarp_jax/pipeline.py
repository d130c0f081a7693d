"""End-to-end jobs that span training and evaluation (host side): ``evaluate_run``.

# HOST ONLY (not jittable)
``evaluate_run`` = restore -> backtest -> baselines -> stats -> report, the ``hrl-sarp
evaluate`` command:
1. the run's trained policy (``training.policy.load_policy``: Phase 5, else Phases 3/1 for
   the Macro agent and 4/2 for the Micro agent, K seeds);
2. every baseline over the window (``evaluation.evaluate.evaluate_baselines``), with the
   regime oracle (an upper bound) when the market folder's meta.json holds the synthetic
   generator's ``sector_drift_annual``;
3. the agent, one backtest per seed vmapped (``evaluation.agent.run_agent``): same dates,
   universe, constraints, costs and risk manager as the baselines and as training;
4. ``checkpoints/<run>/report/``: metrics.json, report.md, report.html, plots/ and
   decisions.jsonl (every weekly Macro decision and daily Micro book), written atomically.
Windows (``split``): 'test' = data.test_start .. the last day; 'val' = data.val_start .. the
last day before data.test_start; 'START:END' = ISO dates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrl_sarp_jax.checkpointing import Run, read_phase_summary
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.evaluation.agent import (
    agent_goal_change,
    agent_rebalance,
    decision_records,
    regime_call_scores,
    regime_calls,
    run_agent,
)
from hrl_sarp_jax.evaluation.evaluate import add_strategy, evaluate_baselines, strategy_attribution
from hrl_sarp_jax.evaluation.flat_policy import flat_daily_returns
from hrl_sarp_jax.evaluation.ladder import LADDER_RULE, window_ladder
from hrl_sarp_jax.evaluation.overfitting import deflated_sharpe
from hrl_sarp_jax.evaluation.report import val_baselines_text, write_report
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.training.policy import (
    load_policy,
    load_pretrained_policy,
    phase_ladder,
    uses_rl,
)
from hrl_sarp_jax.utils.atomic import atomic_write_text

AGENT = "hrl_sarp"
FLAT = "flat_rl"
PRETRAINED = "hrl_sarp_pretrained"
PRETRAINED_DESCRIPTION = ("the run's pre-trained hierarchy (Phase 1 Macro + Phase 2 Micro, no RL): "
                          "what the RL phases add is the agent minus this")
LADDER_LABELS = {2: "after Phase 2 (pre-trained, no RL)", 3: "after Phase 3",
                 4: "after Phase 4", 5: "final policy"}
"""Each rung's label in the ladder (``evaluation.ladder``)."""


RUNG_PHASES = (3, 4)
"""The RL phases after which the hierarchy is a rung of its own (``rung_name``)."""


def rung_name(phase: int) -> str:
    """The strategy name of the hierarchy after RL phase ``phase`` (3 or 4) in a report."""
    return f"{AGENT}_after_phase{phase}"


def rung_description(phase: int, policy: Any) -> str:
    """A rung's report description from where its levels came (``TrainedPolicy.source``)."""
    return (f"the run's hierarchy after Phase {phase} (a rung of the ladder: what each RL "
            f"phase added): Macro from {policy.source.get('macro')}; Micro from "
            f"{policy.source.get('micro')}")


REPORT_DIR = "report"
DECISIONS_FILE = "decisions.jsonl"
TABLE_METRICS = ("sharpe", "cagr", "max_drawdown")


def resolve_split(split: str | None, cfg: Config, meta: MarketMeta) -> tuple[str, str, str]:
    """(label, start, end) ISO dates of an evaluation window (module docstring)."""
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    text = "test" if split is None else str(split).strip()
    if text == "test":
        return "test", cfg.data.test_start, str(dates[-1])
    if text == "val":
        before = dates[dates < np.datetime64(cfg.data.test_start, "D")]
        if before.size == 0:
            raise ConfigError(f"--split val: no trading day before data.test_start="
                              f"{cfg.data.test_start}; use --split START:END")
        return "val", cfg.data.val_start, str(before[-1])
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, end = (np.datetime64(p.strip(), "D") for p in parts)
    except ValueError:
        raise ConfigError(f"--split {text!r}: expected 'test', 'val' or START:END ISO dates "
                          f"(e.g. 2020-07-01:2020-12-31)") from None
    if start >= end:
        raise ConfigError(f"--split {text!r}: START must be before END")
    return text, str(start), str(end)


def synthetic_drift(market_dir: str | Path | None) -> dict | None:
    """meta.json's ``sector_drift_annual`` of a synthetic market folder (for the oracle), or
    None when the folder has none."""
    if market_dir is None:
        return None
    path = Path(market_dir) / "meta.json"
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); regenerate the market or remove the "
                        f"file") from exc
    table = doc.get("sector_drift_annual")
    return {"sector_drift_annual": table} if isinstance(table, dict) else None


def summary_table(payload: dict) -> list[tuple[str, float | None, float | None, float | None]]:
    """The CLI's short table of a report payload: (strategy, net Sharpe, ...) per row, the agent
    first and the oracle last."""
    rows = []
    entries = [(AGENT, payload["strategies"][AGENT])] if AGENT in payload["strategies"] else []
    entries += [(n, e) for n, e in payload["strategies"].items() if n != AGENT]
    if payload.get("oracle"):
        entries.append(("oracle (upper bound)", payload["oracle"]))
    for name, e in entries:
        m = e["metrics"]
        rows.append((name, *(None if m.get(k) is None else float(m[k]) for k in TABLE_METRICS)))
    return rows


def selection_trials(run: Run) -> dict[str, Any]:
    """How many configurations chose this run's policy on validation: every validation
    evaluation a phase made to pick its best checkpoint (distinct (phase, step) rows with
    validation metrics in metrics.jsonl) plus the settings of a sweep the run holds
    (``sweep/ranking.json`` trials) or was chosen by (a sweep's ``best/``: run.json's
    ``selected_from`` trials); 1 when none. {"trials", "by_phase", "sweep"}."""
    steps: dict[str, set] = {}
    for row in run.read_metrics():
        if any(str(k).startswith("val_") for k in row):
            steps.setdefault(str(row.get("phase")), set()).add(row.get("step"))
    by_phase = {k: len(v) for k, v in sorted(steps.items())}
    sweep = 0
    ranking = run.root / "sweep" / "ranking.json"
    if ranking.is_file():
        try:
            doc = json.loads(ranking.read_text())
            sweep = int(doc.get("trials", 0)) if isinstance(doc, dict) else 0
        except (OSError, ValueError):
            sweep = 0
    chosen = run.info.get("selected_from")
    if isinstance(chosen, dict) and int(chosen.get("trials", 1)) > 1:
        sweep += int(chosen["trials"])
    return {"trials": max(1, sum(by_phase.values()) + sweep), "by_phase": by_phase,
            "sweep": sweep}


RL_PHASES = (3, 4, 5)


def rl_phase_record(run: Run) -> dict[str, Any]:
    """What each RL phase of the run kept against its starting policy, from its summary
    (phases without one are left out): best and latest step, the selection margin and, where
    the phase evaluated its start, ``final_vs_start`` (per-seed change of the final
    policy over its start, its standard error, seeds improved by more than one), its
    validation comparators (``val_baselines``) and the run's ``train.checkpoint`` rule
    (``checkpoint_rule``: which of best and latest the policy uses)."""
    out = {}
    rule = run.config.train.checkpoint
    for k in RL_PHASES:
        s = read_phase_summary(run, k)
        if s is None:
            continue
        out[str(k)] = {key: s.get(key) for key in ("best_step", "latest_step",
                                                   "checkpoint_margin", "final_vs_start",
                                                   "val_baselines")
                       if s.get(key) is not None}
        out[str(k)]["checkpoint_rule"] = rule
    return out


VAL_COMPARATORS = ("equal_weight", "sector_momentum")
"""The baselines each RL phase's validation walk is set beside (``validation_baselines``)."""
VAL_PHASES = (3, 4, 5, "flat")
"""The phases that validate on a walk (``train.validation``)."""


# HOST ONLY
def validation_baselines(summary: dict, phase: int | str, cfg: Config, market: MarketArrays,
                         meta: MarketMeta, feats: FeatureSet,
                         cache: dict | None = None) -> dict | None:
    """The comparators of an RL phase's validation, computed by the baselines' own code:
    plain 1/N and sector momentum (``VAL_COMPARATORS``) traded from cash over the days of the
    phase's ``continuous`` walk (``training.validation.walk_window``: weekly from the
    window's first week end, Phase 4 daily from its first day), their daily net returns
    compounded into the walk's periods and scored with the walk's Sharpe. None under
    ``train.validation: episodes`` (no single walk to set them beside) or without a
    validation window. ``cache``: walk -> result, shared by phases with one walk."""
    from hrl_sarp_jax.evaluation.evaluate import baseline_returns
    from hrl_sarp_jax.finance.metrics import sharpe
    from hrl_sarp_jax.training.validation import walk_returns, walk_window

    span = summary.get("val_span")
    if cfg.train.validation != "continuous" or not span or phase not in VAL_PHASES:
        return None
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    lo, hi = (int(np.searchsorted(dates, np.datetime64(d, "D"))) for d in span)
    walk = walk_window(np.asarray(market.week_end, bool), lo, hi, daily=phase == 4)
    key = (walk.t0, walk.length, walk.periods_per_year)
    if cache is not None and key in cache:
        return cache[key]
    daily = baseline_returns(market, meta, feats, cfg, VAL_COMPARATORS, walk.t0, walk.length)
    strategies = {}
    for name, r in daily.items():
        periods = walk_returns(r, walk)
        strategies[name] = {"sharpe": float(sharpe(periods, walk.periods_per_year)),
                            "return": float(np.prod(1.0 + periods) - 1.0)}
    out = {"first_day": str(dates[walk.t0]), "last_day": str(dates[walk.t0 + walk.length]),
           "periods": walk.periods, "periods_per_year": walk.periods_per_year,
           "strategies": strategies}
    if cache is not None:
        cache[key] = out
    return out


# HOST ONLY
def record_validation_baselines(run: Run, phase: int | str, cfg: Config, market: MarketArrays,
                                meta: MarketMeta, feats: FeatureSet, cache: dict | None = None,
                                say: Callable[[str], None] | None = None) -> dict | None:
    """Add ``val_baselines`` (``validation_baselines``) to the phase's summary, with the
    phase's validation Sharpe minus each comparator's, and return the summary (None when the
    phase has no summary or no walk to compare); ``say`` gets them as one line
    (``report.val_baselines_text``). A summary that holds them is left as is."""
    from hrl_sarp_jax.checkpointing import write_phase_summary

    summary = read_phase_summary(run, phase)
    if summary is None or summary.get("val_sharpe") is None:  # none, or no validation Sharpe
        return None
    if "val_baselines" not in summary:
        vb = validation_baselines(summary, phase, cfg, market, meta, feats, cache)
        if vb is None:
            return None
        own = float(summary["val_sharpe"])
        summary = {**summary, "val_baselines": {
            **vb, "val_sharpe": own,
            "val_sharpe_minus": {n: own - v["sharpe"] for n, v in vb["strategies"].items()}}}
        write_phase_summary(run, phase, summary)
    if say is not None:
        say(val_baselines_text(summary["val_baselines"]))
    return summary


# HOST ONLY
def _hierarchy_rungs(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                     feats: FeatureSet, policy: Any, ladder: bool) -> list[tuple]:
    """[(phase, strategy name, TrainedPolicy, description)] of the hierarchies evaluated
    beside the agent: the pre-trained one (Phases 1 + 2) when the agent came from RL phases
    and, with ``ladder``, the one after each earlier RL phase (``phase_ladder``)."""
    pretrained = (load_pretrained_policy(run, cfg, market, meta, feats) if uses_rl(policy)
                  else None)
    if pretrained is None:
        return []
    later = phase_ladder(run, cfg, market, meta, feats, policy) if ladder else []
    return [(2, PRETRAINED, pretrained, PRETRAINED_DESCRIPTION),
            *((p, rung_name(p), rung, rung_description(p, rung)) for p, rung in later)]


def _add_backtest(payload: dict, name: str, res: Any, description: str, **kw: Any) -> dict:
    """``add_strategy`` of a hierarchy's backtest ``res`` (leaves [K, L], one row a seed)."""
    return add_strategy(
        payload, name, np.asarray(res.net_return, np.float64), description=description,
        sector_weights=np.asarray(res.sector_weights, np.float64),
        turnover=np.asarray(res.turnover, np.float64),
        cost_frac=np.asarray(res.cost_frac, np.float64),
        costs={c: np.asarray(v, np.float64) for c, v in res.costs.items()}, **kw)


# HOST ONLY
def evaluate_run(
    run: Run,
    cfg: Config,
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    *,
    split: str | None = "test",
    market_dir: str | Path | None = None,
    seeds_for_random: int | Sequence[int] = 5,
    risk_manager: bool = True,
    include: Sequence[str] | None = None,
    bootstrap_num: int = 2000,
    historical: bool = True,
    out_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
    return_payload: bool = False,
    start_books: dict[str, Any] | None = None,
    return_books: bool = False,
    ladder: bool = True,
) -> dict[str, Any]:
    """Evaluate the run's trained policy on ``split`` and write its report (module docstring).

    Args:
      run: the run folder (``checkpointing.open_run``); cfg: its config.
      market, meta, feats: the market the run was trained on (or one of the same shapes).
      split: 'test' (default), 'val' or 'START:END'.
      market_dir: the market folder (its meta.json enables the regime oracle).
      seeds_for_random: seeds of the random baseline (a count or explicit seeds).
      risk_manager: scale every strategy's budget by the envs' risk manager, as the
        HierarchicalEnv does in training (agent and baselines alike).
      include / bootstrap_num / historical: passed to ``evaluate_baselines``.
      out_dir: report folder (default ``<run>/report``).
      return_payload: also return the report payload (per-day series) as ``"payload"``.
      start_books: strategy name (baselines, ``flat_rl``, ``hrl_sarp``, ``oracle``) ->
        ``evaluation.backtest.BookState`` to start from instead of cash (leading [K] for
        the seeded ones): a walk-forward fold passes the previous fold's ``"books"``.
      return_books: also return every strategy's end book as ``"books"``.
      ladder: also run the hierarchy after each earlier RL phase and report what each phase
        added on this window (``evaluation.ladder``; the pre-trained hierarchy runs either way).
    Returns {"report_dir", "files", "decisions", "table": [(strategy, sharpe, cagr,
    max_drawdown)], "window", "split", "policy", "seeds"} (+ "payload", "books").
    """
    say = log or (lambda _msg: None)
    label, start, end = resolve_split(split, cfg, meta)
    policy = load_policy(run, cfg, market, meta, feats)
    say(f"policy: {policy.seeds} seed(s); macro {policy.source.get('macro', 'phase 5')}; "
        f"micro {policy.source.get('micro', 'phase 5')}")
    say(f"baselines over {start} .. {end} ...")
    payload = evaluate_baselines(
        market, meta, feats, cfg, split=(start, end), seeds=seeds_for_random,
        sector_drift=synthetic_drift(market_dir), include=include, risk_manager=risk_manager,
        bootstrap_num=bootstrap_num, historical=historical,
        start_books={k: v for k, v in (start_books or {}).items()
                     if k not in (AGENT, FLAT, PRETRAINED, *map(rung_name, RUNG_PHASES))},
        return_books=return_books)
    books = payload.pop("end_books", {})
    t0, length = int(payload["window"]["t0"]), int(payload["window"]["days"])
    say(f"agent: {policy.seeds} seed(s) over {length} days ...")
    params = make_env_params(market, feats, cfg.env)
    carry, res, *agent_book = run_agent(
        cfg.networks, policy.macro_actor, policy.micro_actor, params, t0, length,
        risk_manager=risk_manager, return_window=cfg.env.return_window,
        book0=(start_books or {}).get(AGENT), return_book=return_books,
        frequency=cfg.env.micro_frequency, goal_change=agent_goal_change(cfg.env))
    books.update({AGENT: agent_book[0]} if return_books else {})
    if (run.phase_dir("flat_policy") / "ckpt").is_dir():
        say("flat RL baseline: the run's trained flat PPO agent over the same window ...")
        flat = flat_daily_returns(run, cfg, market, meta, feats, t0, length,
                                  step=cfg.train.checkpoint, risk_manager=risk_manager,
                                  book0=(start_books or {}).get(FLAT), return_book=return_books)
        books.update({FLAT: flat["book"]} if return_books else {})
        payload = add_strategy(  # before the agent, so the agent's tests include it
            payload, FLAT, flat["daily_returns"],
            description=f"flat single-level PPO over stocks ({flat['seeds']} seed(s), same "
                        f"env-step budget as Phase 3, weekly rebalancing)",
            sector_weights=flat["sector_weights"], turnover=flat["turnover"],
            cost_frac=flat["cost_frac"], costs=flat["costs"], compare=False)
    else:
        say("flat RL baseline: not trained in this run (`hrl-sarp train --phase flat`); "
            "listed as requiring a trained run")
    rungs = _hierarchy_rungs(run, cfg, market, meta, feats, policy, ladder)
    for _, name, rung, description in rungs:
        say(f"{name}: {rung.seeds} seed(s) over {length} days ...")
        _, rung_res, *rung_book = run_agent(
            cfg.networks, rung.macro_actor, rung.micro_actor, params, t0, length,
            risk_manager=risk_manager, return_window=cfg.env.return_window,
            book0=(start_books or {}).get(name), return_book=return_books,
            frequency=cfg.env.micro_frequency, goal_change=agent_goal_change(cfg.env))
        books.update({name: rung_book[0]} if return_books else {})
        # before the agent, so the agent's tests include it
        payload = _add_backtest(payload, name, rung_res, description, compare=False)
    payload = _add_backtest(payload, AGENT, res,
                            f"HRL-SARP agent (run {run.name}, {policy.seeds} seed(s))",
                            regime_calls=regime_calls(carry), seed=int(cfg.seed))
    agent = payload["strategies"][AGENT]
    agent["attribution"] = strategy_attribution(
        res, params, t0, agent_rebalance(cfg.env.micro_frequency, params, t0, length),
        batched=True, risk_manager=risk_manager,
        return_window=cfg.env.return_window, book0=(start_books or {}).get(AGENT),
        goal_days=np.asarray(carry.macro_step, bool))
    agent["regime_call"] = regime_call_scores(carry, np.asarray(params.regime_label))
    trials = selection_trials(run)
    blend = agent["series"]["net"]
    agent["deflated_sharpe"] = {
        **deflated_sharpe(blend, trials["trials"], 1.0 / (blend.size - 1)), **trials,
        "sr_variance_rule": "the Sharpe estimator's variance under no skill, 1/(n-1) per day "
                            "(the trials' own Sharpes on this window are not recorded)"}
    payload["settings"] = {**payload["settings"], "split": label,
                           "policy": {"run": run.name, "seeds": policy.seeds,
                                      **{k: str(v) for k, v in policy.source.items()}}}
    payload["rl_phases"] = rl_phase_record(run)
    payload["ladder"] = None if not (ladder and rungs) else {
        "rule": LADDER_RULE, "over": f"the {label} window, block bootstrap of its days",
        "rows": window_ladder(
            [*((LADDER_LABELS[p], n, payload["strategies"][n]["per_seed_net"])
               for p, n, _, _ in rungs),
             (LADDER_LABELS[5], AGENT, np.asarray(res.net_return, np.float64))],
            seed=int(cfg.seed), num_boot=bootstrap_num)}
    report_dir = Path(out_dir) if out_dir is not None else run.root / REPORT_DIR
    files = write_report(payload, report_dir)
    records = decision_records(carry, res, meta.dates, meta.tickers, meta.sectors)
    decisions = report_dir / DECISIONS_FILE
    atomic_write_text(decisions, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))
    out = {"report_dir": report_dir, "files": files, "decisions": decisions,
           "table": summary_table(payload), "window": payload["window"], "split": label,
           "policy": dict(policy.source), "seeds": policy.seeds,
           "ladder": payload["ladder"]}
    if return_payload:
        out["payload"] = payload
    if return_books:
        out["books"] = books
    return out


# HOST ONLY
def load_valid_market(market_dir: Path, cfg: Config) -> tuple[MarketArrays, MarketMeta]:
    """(MarketArrays, MarketMeta) of a market folder that passes validation; DataError listing
    the first problems otherwise."""
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.validate import validate_market

    report = validate_market(market_dir, cfg.data)
    if report.problems:
        listed = "; ".join(str(p) for p in report.problems[:5])
        raise DataError(f"{market_dir} is not a valid market ({len(report.problems)} "
                        f"problem(s)): {listed}; run `hrl-sarp data validate {market_dir}`")
    return load_market(market_dir, cfg.data)


def main_job(cfg: Config, market_dir: str | Path, checkpoints: str | Path, run_name: str, *,
             split: str = "test", log: Callable[[str], None] | None = None,
             branch: tuple[str, int] | None = None) -> dict[str, Any]:
    """The README's first command: validate and load ``market_dir``, build the features, train
    Phases 1-5 into ``checkpoints/<run_name>`` (K = ``cfg.train.seeds`` seeds each), then
    ``evaluate_run`` on ``split``. An existing run folder is continued: finished phases are
    restored, not retrained, and an interrupted one resumes from its latest checkpoint (a
    different config or market is refused by ``create_run``). ``branch=(source, K)`` starts the
    new run from run ``source``'s Phases 1..K (``checkpointing.branch_run``: only the sections
    no kept phase reads may differ) and trains the rest. Returns ``evaluate_run``'s result plus
    ``phases`` (each phase's summary)."""
    import time

    from hrl_sarp_jax.checkpointing import (
        branch_run,
        branched_from,
        create_run,
        data_fingerprint,
        read_phase_summary,
    )
    from hrl_sarp_jax.data.io import market_identity
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.training.market_pool import pool_source
    from hrl_sarp_jax.training.phases import (
        FLAT_PHASE,
        PHASES,
        check_training_config,
        sections_free_after,
    )

    say = log or (lambda _msg: None)
    check_training_config(cfg)  # every phase's keys, before Phase 1 spends any time
    market_dir = Path(market_dir)
    pool_source(cfg, market_identity(market_dir))  # the pool can serve this market
    t0 = time.perf_counter()
    market, meta = load_valid_market(market_dir, cfg)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    say(f"[data] {market.num_days} days, {market.num_stocks} stocks, {market.num_sectors} "
        f"sectors; validated, loaded and features built in {time.perf_counter() - t0:.1f}s")
    root, fingerprint = Path(checkpoints), data_fingerprint(market_dir)
    if branch is not None and not branched_from(root / run_name, branch):
        source, keep = branch
        branch_run(root, source, run_name, cfg, fingerprint, keep=keep,
                   free_sections=sections_free_after(keep), market=market_identity(market_dir))
        say(f"[branch] run {run_name} starts from run {source}'s phases 1-{keep} (copied)")
    resume = (root / run_name / "run.json").exists()
    run = create_run(root, run_name, cfg, fingerprint, resume=resume,
                     market=market_identity(market_dir))
    summaries: dict[int, dict] = {}
    walks: dict = {}  # validation walk -> its comparators, shared by the phases that walk it
    with run:
        for k in sorted(PHASES):
            spec = PHASES[k]
            done = read_phase_summary(run, k)
            t_k = time.perf_counter()
            if done is not None:
                say(f"[phase {k}/5] {spec.name}: already trained (summary found), kept")
                summaries[k] = record_validation_baselines(
                    run, k, cfg, market, meta, feats, walks,
                    lambda text, k=k: say(f"[phase {k}] {text}")) or done
                continue
            say(f"[phase {k}/5] {spec.name}, {cfg.train.seeds} seed(s) ...")
            result = spec.run(cfg, market, meta, feats, run, resume=True, progress=True)
            summaries[k] = result.summary
            say(f"[phase {k}/5] done in {time.perf_counter() - t_k:.0f}s: "
                + ", ".join(f"{label} {value:.4g}" + (f" (baseline {base:.4g})" if base_key
                                                      else "")
                            for label, value, base_key, base in result.rows[:2]))
            summaries[k] = record_validation_baselines(
                run, k, cfg, market, meta, feats, walks,
                lambda text, k=k: say(f"[phase {k}] {text}")) or summaries[k]
        flat = FLAT_PHASE
        if read_phase_summary(run, flat.number) is None:
            t_k = time.perf_counter()
            say(f"[baseline] {flat.name}, {cfg.train.seeds} seed(s) ...")
            result = flat.run(cfg, market, meta, feats, run, resume=True, progress=True)
            summaries[flat.number] = result.summary
            say(f"[baseline] done in {time.perf_counter() - t_k:.0f}s")
        summaries[flat.number] = record_validation_baselines(
            run, flat.number, cfg, market, meta, feats, walks,
            lambda text: say(f"[baseline] {text}")) or read_phase_summary(run, flat.number)
        say("[evaluate] every baseline and the agent on the same window ...")
        t_e = time.perf_counter()
        out = evaluate_run(run, cfg, market, meta, feats, split=split, market_dir=market_dir,
                           log=lambda msg: say(f"[evaluate] {msg}"))
        say(f"[evaluate] done in {time.perf_counter() - t_e:.0f}s")
    out["phases"] = summaries
    return out


# HOST ONLY
def explain_run(
    run: Run,
    cfg: Config,
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    *,
    date: str,
    seed: int = 0,
    top: int = 10,
    steps: int = 64,
    tolerance: float = 0.01,
    max_steps: int = 4096,
    stocks: int = 5,
    from_backtest: bool = False,
    risk_manager: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Integrated-gradient attributions of the run's decisions at ``date`` (``hrl-sarp
    explain``; method and conventions in ``evaluation.explain``).

    The policy is the run's trained one (``training.policy.load_policy``), seed ``seed``. The
    book at the date: all cash with drawdown 0 (default: the book the agent holds on the
    first day of any backtest, where the Macro also decides), or with ``from_backtest`` the
    drifted book the agent itself holds at the close of the date, from its own daily backtest
    (risk manager as ``risk_manager``) since the start of the evaluation window holding the
    date (test: data.test_start, val: data.val_start, else the first day of the data); then the
    Macro decides at the date only on a week end (or the window's first day) and the Micro
    acts on the goal in force. A non-trading date is moved to the previous trading day (the
    ``note`` says so); a date outside the data is a ConfigError. Each level's integration
    starts at ``steps`` and doubles up to ``max_steps`` until its completeness error is within
    ``tolerance`` (0: no refinement; ``evaluation.explain.explain_decision``).
    Returns ``evaluation.explain.explanation_record``'s dict plus run, date, requested_date,
    note, t, seed, seeds, policy, method, book, macro_when and micro_goal_source.
    """
    import jax

    from hrl_sarp_jax.evaluation import explain as ex

    say = log or (lambda _msg: None)
    for name, value in (("--top", top), ("--steps", steps), ("--stocks", stocks)):
        if int(value) < 1:
            raise ConfigError(f"{name} {value}: give at least 1")
    if int(max_steps) < int(steps):
        raise ConfigError(f"--max-steps {max_steps}: must be at least --steps ({steps})")
    if not 0.0 <= float(tolerance) < 1.0:
        raise ConfigError(f"--tolerance {tolerance}: give a fraction in [0, 1) (0.01 = 1%; 0 "
                          f"disables the refinement)")
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    t, note = ex.resolve_date(date, dates)
    if note:
        say(f"note: {note}")
    policy = load_policy(run, cfg, market, meta, feats)
    if not 0 <= int(seed) < policy.seeds:
        raise ConfigError(f"--seed {seed}: run {run.name}'s policy has {policy.seeds} seed(s); "
                          f"give a seed in 0..{policy.seeds - 1}")
    pick = lambda tree: jax.tree.map(lambda x: np.asarray(x)[int(seed)], tree)  # noqa: E731
    macro_p, micro_p = pick(policy.macro_actor), pick(policy.micro_actor)
    params = make_env_params(market, feats, cfg.env)
    week_end = bool(np.asarray(market.week_end)[t])
    if from_backtest:
        t0 = ex.window_start(dates, t, cfg.data.val_start, cfg.data.test_start)
        say(f"book: the agent's own backtest from {dates[t0]} to {dates[t]} ...")
        port, goal_in_force = ex.backtest_book(
            cfg.networks, macro_p, micro_p, params, t0, t, risk_manager=risk_manager,
            return_window=cfg.env.return_window, frequency=cfg.env.micro_frequency,
            goal_change=agent_goal_change(cfg.env))
        decides = week_end or t == t0
        description = (f"the agent's own drifted book at the close of {dates[t]}, before "
                       f"trading, from its daily backtest since {dates[t0]}")
        if decides:
            when = (f"its decision at the close of {dates[t]}, "
                    + ("a week end" if week_end else "the window's first day"))
            goal_source = f"acting on the Macro's goal decided at {dates[t]}"
        else:
            past = [u for u in range(t0, t) if u == t0 or bool(np.asarray(market.week_end)[u])]
            when = (f"what it would decide at the close of {dates[t]}; it decides on week ends "
                    f"and {dates[t]} is not one")
            goal_source = f"acting on the goal in force since {dates[past[-1]]}"
    else:
        t0, port, goal_in_force, decides = None, None, None, True
        description = "flat: all cash, drawdown 0 (the book of a backtest's first day)"
        when = (f"its decision at the close of {dates[t]} from a flat book; it acts on week ends "
                f"and {dates[t]} is {'' if week_end else 'not '}one")
        goal_source = f"acting on the Macro's goal at {dates[t]}"
    say(f"integrated gradients of both agents at {dates[t]} ({steps} steps, refined up to "
        f"{max_steps} until complete within {tolerance:.1%}) ...")
    mac, mic, used = ex.explain_decision(
        cfg.networks, macro_p, micro_p, params, t, port=port, goal_in_force=goal_in_force,
        macro_decides=decides, stocks=int(stocks), steps=int(steps),
        tolerance=float(tolerance), max_steps=int(max_steps))
    doc = ex.explanation_record(mac, mic, tickers=meta.tickers, sectors=meta.sectors,
                                top=int(top), stock_sector=np.asarray(market.stock_sector))
    doc["completeness"]["within_tolerance"] = (
        None if tolerance <= 0 else doc["completeness"]["max_relative_error"] <= tolerance)
    book = ex.flat_book(params) if port is None else port
    value, peak = float(np.asarray(book.value)), float(np.asarray(book.peak))
    cash = 1.0 - float(np.asarray(book.weights, np.float64).sum())
    return {
        "run": run.name, "date": str(dates[t]), "requested_date": str(date), "note": note,
        "t": int(t), "seed": int(seed), "seeds": int(policy.seeds),
        "policy": {k: str(v) for k, v in policy.source.items()},
        "method": {"kind": "integrated_gradients", "path": "graded trapezoid", "steps": used,
                   "tolerance": float(tolerance), "max_steps": int(max_steps),
                   "baseline": "zeros (normalised features: 0 = typical)",
                   "held_fixed": "book (weights, cash, drawdown), sector graph, masks, goal"},
        "book": {"kind": "backtest" if from_backtest else "flat", "description": description,
                 "window_start": None if t0 is None else str(dates[t0]), "cash": cash,
                 "drawdown": 1.0 - value / peak if peak > 0 else 0.0, "value": value},
        "macro_when": when, "micro_goal_source": goal_source, **doc,
    }
