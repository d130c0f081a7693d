"""A finished sweep's settings judged on the many-market instrument, not on one window.

# HOST ONLY (not jittable)
A sweep ranks its settings by the validation window of the one market it trained on, and that
window cannot tell them apart: a Phase-4 sweep's PBO there was 0.49, and its choice was 0.018
Sharpe below the preset's values over 40 tuning markets (docs/status.md). ``hrl-sarp sweep ...
--markets K [--market-seed S]`` therefore writes each setting's K seeds as a run folder
``<run>/sweep/setting<i>`` (what ``best/`` is for the chosen one) and judges every one with
``many_markets.evaluate_markets`` on the same generated markets S … S+K−1 (the instrument's
tuning range: this is a choice, so the judgement seeds 9000–9999 are refused), then:

  rank      settings by the agent's mean net Sharpe over the markets (its seed mean)
  compare   each with the first, paired market by market (``paired_over_markets``), and with
            equal weight and its own pre-trained hierarchy (the evaluation's own pairs)
  best/     the instrument's first setting (``ranking.json`` keeps the window's ranking)

Outputs: ``<run>/sweep/instrument.json`` and ``instrument.md``; every ``setting<i>/`` keeps its
``report-markets/``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hrl_sarp_jax.checkpointing import Run, open_run
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation.stats import paired_over_markets
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.many_markets import JUDGEMENT_SEEDS, MarketsCache, evaluate_markets
from hrl_sarp_jax.training.sweep import (
    SECTION,
    SweepSpec,
    anchored_config,
    phase_sweep,
    sweep_settings,
)
from hrl_sarp_jax.utils.atomic import atomic_write_json, atomic_write_text

AGENT, ENSEMBLE, EQUAL, PRETRAINED = ("hrl_sarp", "hrl_sarp_ensemble", "equal_weight",
                                      "hrl_sarp_pretrained")


def check_tuning_seeds(markets: int, market_seed: int) -> list[int]:
    """The K market seeds S … S+K−1; ConfigError when K < 1 or any is a judgement seed."""
    if int(markets) < 1:
        raise ConfigError(f"--markets {markets}: give at least 1 market")
    seeds = list(range(int(market_seed), int(market_seed) + int(markets)))
    judged = [s for s in seeds if s in JUDGEMENT_SEEDS]
    if judged:
        raise ConfigError(
            f"--market-seed {market_seed} --markets {markets}: seeds {judged[0]}..{judged[-1]} "
            f"are the instrument's judgement range (9000-9999), never used to choose; judge a "
            f"sweep's settings on tuning seeds (e.g. --market-seed 1000)")
    return seeds


NEEDS = {3: ((2,), "its Phase-2 Micro"), 4: ((3, 1), "a Macro (its Phase 3, or Phase 1)")}
"""What a setting folder must hold for ``evaluate`` besides the swept phase: phase -> (the
phases, any one of them, the sweep run must have trained, what they are)."""


def check_judgeable(run_dir: Path, phase: int) -> None:
    """ConfigError, before any training, when the sweep run lacks the agent the evaluation of
    a setting pairs with the swept one (``NEEDS``): train it into the run with the same preset
    first (``hrl-sarp train`` takes a sweep preset)."""
    phases, what = NEEDS[int(phase)]
    if not any((run_dir / f"phase{p}" / "ckpt").is_dir() for p in phases):
        raise ConfigError(
            f"--markets: judging a phase-{phase} sweep's settings backtests the hierarchy, which "
            f"needs {what} in run {run_dir.name}; train it first with the same preset "
            f"(hrl-sarp train --config PRESET --phase {phases[0]} --run {run_dir.name}, after "
            f"the phases before it), then sweep with --resume")


def _setting_record(i: int, setting: Mapping[str, float], folder: Path,
                    doc: Mapping[str, Any]) -> dict[str, Any]:
    """One setting's figures from its many-market metrics.json."""
    summary = doc["summary"]

    def figures(name: str) -> dict[str, float]:
        return {k: float(summary[name][k]["mean"])
                for k in ("sharpe", "gross_sharpe", "turnover", "max_drawdown")}

    return {"setting": i, "params": dict(setting), "folder": str(folder),
            "agent": figures(AGENT), "ensemble": figures(ENSEMBLE),
            "agent_vs_equal_weight": doc["paired"][EQUAL],
            "ensemble_vs_equal_weight": doc["paired_ensemble"][EQUAL],
            "agent_vs_pretrained": doc["paired"].get(PRETRAINED)}


# HOST ONLY
def judge_settings(run: Run, cfg: Config, spec: SweepSpec, summary: Mapping[str, Any],
                   market: MarketArrays, meta: MarketMeta, feats: FeatureSet, *, markets: int,
                   market_seed: int = 1000, chunk: int = 8, preset: str | None = None,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every setting of a finished sweep in ``run`` (``summary``: its phase summary) judged on
    the K generated markets (``preset``: their generator, default the run market's own),
    ranked, ``best/`` rewritten to the first (module docstring).
    Returns {"ranking": [record, ...] best first, "seeds", "paths"}."""
    say = log or (lambda _msg: None)
    seeds = check_tuning_seeds(markets, market_seed)
    settings = sweep_settings(spec, cfg.seed)
    cfg = anchored_config(cfg, settings)  # the program the members were trained with
    ph = phase_sweep(spec.phase)
    restored = ph.latest(run, cfg, spec, settings, market, meta, feats)  # once for all
    records, agent_sharpes = [], []
    markets_cache = MarketsCache()  # every setting is judged on the same markets
    for i, setting in enumerate(settings):
        folder = ph.save_best(run, cfg, spec, settings, i, summary, market, meta, feats,
                              name=f"setting{i}", restored=restored)
        setting_run = open_run(folder)
        say(f"sweep: setting {i} {dict(setting)} on {markets} market(s) ...")
        with setting_run:
            doc = evaluate_markets(setting_run, setting_run.config, markets=markets,
                                   market_seed=market_seed, chunk=chunk, preset=preset,
                                   ladder=False, markets_cache=markets_cache)["metrics"]
        if doc["seeds"]["markets"] != seeds:
            raise ConfigError(f"sweep: setting {i} was judged on other markets than asked")
        records.append(_setting_record(i, setting, folder, doc))
        agent_sharpes.append([m["strategies"][AGENT]["sharpe"] for m in doc["markets"]])
    order = sorted(range(len(records)), key=lambda j: (-records[j]["agent"]["sharpe"], j))
    first = order[0]
    ranking = []
    for rank, j in enumerate(order, 1):
        vs = None if j == first else paired_over_markets(agent_sharpes[j], agent_sharpes[first])
        ranking.append({"rank": rank, **records[j], "agent_vs_first": vs})
    best = ph.save_best(run, cfg, spec, settings, first, summary, market, meta, feats,
                        restored=restored)
    out_dir = run.root / SECTION
    paths = {"instrument_json": out_dir / "instrument.json",
             "instrument_md": out_dir / "instrument.md", "best_run": best}
    atomic_write_json(paths["instrument_json"], {
        "markets": seeds, "split": "test", "rank_by": "the agent's mean net Sharpe",
        "best_setting": first, "best_run": str(best), "ranking": ranking})
    atomic_write_text(paths["instrument_md"], instrument_markdown(ranking, spec.names, seeds,
                                                                   run.name, spec.phase))
    say(f"sweep: on {markets} market(s) the best setting is {first} "
        f"{dict(settings[first])}: agent {records[first]['agent']['sharpe']:.3f} net; best/ "
        f"holds it")
    return {"ranking": ranking, "seeds": seeds, "paths": paths}


def _diff(p: Mapping[str, Any] | None) -> str:
    if p is None:
        return "-"
    lo, hi = p["ci95"]
    interval = "" if lo is None else f" ({lo:+.3f} … {hi:+.3f})"
    return f"{p['mean']:+.3f}{interval}, {p['wins']}/{p['n']}"


def instrument_markdown(ranking: list[Mapping[str, Any]], names: tuple[str, ...],
                        seeds: list[int], run_name: str, phase: int) -> str:
    """instrument.md: one row per setting, the instrument's best first."""
    head = ["rank", "setting", *names, "agent net", "gross", "turnover /yr", "ensemble net",
            "agent − first (95%), ahead", "agent − equal weight", "agent − pre-trained"]
    lines = [f"# Sweep settings on {len(seeds)} generated markets: run {run_name}, phase {phase}",
             "", f"Each setting's seeds (its `setting<i>/` folder) judged on the test window of "
             f"markets {seeds[0]}..{seeds[-1]} (the instrument's tuning range), net of costs, "
             f"ranked by the agent's mean net Sharpe; paired differences over the markets with "
             f"Student t-intervals. `best/` holds the first.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ranking:
        row = [str(r["rank"]), str(r["setting"]), *(f"{r['params'][n]:.6g}" for n in names),
               f"{r['agent']['sharpe']:.3f}", f"{r['agent']['gross_sharpe']:.3f}",
               f"{r['agent']['turnover']:.2f}", f"{r['ensemble']['sharpe']:.3f}",
               _diff(r["agent_vs_first"]), _diff(r["agent_vs_equal_weight"]),
               _diff(r["agent_vs_pretrained"])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["check_judgeable", "check_tuning_seeds", "instrument_markdown", "judge_settings"]
