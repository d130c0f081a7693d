"""Vectorized hyperparameter sweeps: settings × seeds of Phase 3 (Macro PPO) or Phase 4
(Micro TD3+HER, ``sweep.phase: 4``: what it adds is ``training.sweep_td3``) as ONE program.

Outline:
  settings ← grid (product of value lists, the last key varying fastest)
             | random (``samples`` keyed draws: uniform, log_uniform or choice per key)
  member m = setting m // K, seed m % K             (K = ``sweep.seeds``; M settings)
  hparams[m] = cfg.train.ppo ⊕ settings[m // K]     (PPOHParams leaves [M·K])
  key[m]     = phase3_keys(cfg.seed, K)[m % K]      (common random numbers: every setting sees
                                                     the same K seeds)
  run_phase3(M·K members)  → one compiled, vmapped program; per-member validation metrics
  ranking: settings by mean validation Sharpe over their K seeds (std / min / max over seeds)
  overfitting of that choice: every member's final policy walks the whole validation split once
             (weekly net returns); over the settings' seed-mean weekly series, the PBO by CSCV
             and the deflated Sharpe of the best setting with trials = M (``overfitting_block``)

Only *dynamic* hyperparameters (the leaves of ``PPOHParams``; for Phase 4 those of
``Phase4HParams``, ``DYNAMIC_TD3``) can be swept this way: a static
setting (network sizes, num_envs, rollout length, epochs ...) changes array shapes or the
program and needs a compile of its own, i.e. a separate ``hrl-sarp train`` run.

The curriculum is shared by all members (its start days are not vmapped), so by default the
sweep promotes stages on the update schedule only (``curriculum: schedule``): a promotion on the
validation Sharpe of the members' mean would let one setting change what another trains on.

Outputs under ``<run>/sweep/``: ``sweep.json`` (the parsed sweep and its settings),
``results.json`` (one record per member, with its weekly validation returns),
``ranking.json`` ({"trials": M, "seeds", "members", "overfitting", "ranking": [...]}) /
``ranking.md`` and ``best/``, a run folder whose Phase 3 (4) holds the best setting's K seeds
beside a copy of the sweep run's earlier phases (its config.yaml carries the best values, so
``hrl-sarp train --phase 4 --checkpoints <run>/sweep --run best --config
<run>/sweep/best/config.yaml`` (Phase 5 after a Phase-4 sweep) and ``hrl-sarp evaluate``
continue from it).

Overfitting of the selection. Under ``train.validation: episodes`` the ranking's validation
Sharpe is a mean over overlapping episodes, which are no return series. So after training each
member's final policy (deterministic, as in the evaluation) walks the validation split once,
from its first week end to its end, as ONE episode (``train.validation: continuous``'s walk):
weekly net returns [W] per member (``validation_walk``; under ``episodes`` its first
``env.macro_episode_weeks`` weeks are the first validation episode). Rows of
the PBO matrix are these W weeks, columns the M settings (each the mean over its K seeds'
weekly returns); ``overfitting_block`` hands the matrix and the chosen setting (rank 1) to the
``overfitting`` callback, ``evaluation.overfitting.selection_overfitting``: PBO by CSCV
(min(16, W) blocks of whole weeks) and the deflated Sharpe of the chosen setting's series with
trials = M (the configurations this sweep evaluated on validation; runs before it are not
counted) and V = the variance of the M settings' weekly Sharpe ratios. The callback is passed in
by the CLI: ``training`` and ``evaluation`` are sibling layers that do not import each other.
The validation split judged the selection, so these numbers say how much the ranking can be
trusted, not how the best setting will do on test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.ppo import PPOHParams
from hrl_sarp_jax.checkpointing import (
    PhaseCheckpointer,
    Run,
    derived_run,
    write_phase_summary,
)
from hrl_sarp_jax.config import Config, TrainConfig, load_config_sections
from hrl_sarp_jax.config_ranges import check_value
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training.ppo_engine import walk
from hrl_sarp_jax.training.selection import START_KEY
from hrl_sarp_jax.training.validation import weekly_plan
from hrl_sarp_jax.utils.atomic import atomic_write_json, atomic_write_text

SECTION = "sweep"
PHASES = (3, 4)
METHODS = ("grid", "random")
DISTRIBUTIONS = ("uniform", "log_uniform", "choice")
CURRICULA = ("schedule", "off")
SECTION_KEYS = ("phase", "method", "samples", "seeds", "params", "curriculum")
DYNAMIC = ("lr", "clip_eps", "entropy_coef", "value_coef", "gamma", "gae_lambda",
           "max_grad_norm", "anchor_kl_coef")
"""The sweepable Phase-3 hyperparameters (``PPOHParams`` leaves that are ``train.ppo`` keys),
named ``ppo.<field>``; the schedule and the auxiliary weight come from the base. Sweeping
``ppo.anchor_kl_coef`` compiles the anchored program for every member when any weight is
> 0 (``anchored_config``); a member at weight 0 then has the unanchored loss."""
_SAMPLING_STREAM = 104_729
"""fold_in tag of the random-search key (distinct from the phase keys fold_in(seed, 1..5))."""
METRICS = ("val_sharpe", "val_equal_weight_sharpe", "val_return", "val_max_drawdown")
"""Phase 3's per-member validation metrics in results.json (Phase 4's: ``sweep_td3``)."""
DYNAMIC_TD3 = ("actor_lr", "critic_lr", "gamma", "tau", "target_noise", "noise_clip",
               "explore_noise_start", "explore_noise_end", "anchor_kl_coef", "her_k")
"""The sweepable Phase-4 hyperparameters: the ``train.td3`` keys that set ``Phase4HParams``
leaves, named ``td3.<key>`` (``td3.her_k`` sets the HER ratio k/(k+1): whole numbers only).
Sweeping ``td3.anchor_kl_coef`` compiles the anchored program for every member as for PPO."""
SWEPT = {3: ("ppo", DYNAMIC, "Phase-3 PPO"), 4: ("td3", DYNAMIC_TD3, "Phase-4 TD3")}
"""phase -> (its ``train`` section, its sweepable keys, what it is called in messages)."""
WHOLE_NUMBERS = frozenset({"td3.her_k"})
WEEKLY = "val_weekly_returns"
"""results.json key: a member's weekly net returns on the validation walk."""
WEEKS_PER_YEAR = 52
PBO_SPLITS = 16


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParamSpace:
    """One swept hyperparameter: ``name`` is ``ppo.<PPOHParams field>``.

    kind 'values' (grid list or random ``choice``) uses ``values``; 'uniform' and
    'log_uniform' draw from [low, high].
    """

    name: str
    kind: str
    values: tuple[float, ...] = ()
    low: float = 0.0
    high: float = 0.0

    @property
    def field(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed ``sweep:`` section."""

    phase: int
    method: str
    seeds: int
    """K: seeds per setting."""
    samples: int
    """Settings drawn by the random method (0 for grid)."""
    params: tuple[ParamSpace, ...]
    curriculum: str = "schedule"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)


def _where(*parts: str) -> str:
    return ".".join((SECTION, *parts))


def _number(value: Any, where: str) -> float:
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"config key '{where}': expected a finite number, got {value!r}")
    return float(value)


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"config key '{where}': expected an integer >= {minimum}, "
                          f"got {value!r}")
    return value


def _config_field(path: str) -> bool:
    """Does the dotted ``path`` name a field (leaf or section) of ``Config``?"""
    node: Any = Config
    for part in path.split("."):
        if not (isinstance(node, type) and dataclasses.is_dataclass(node)):
            return False
        hints = typing.get_type_hints(node)
        if part not in hints:
            return False
        node = hints[part]
    return True


def canonical_name(name: Any, phase: int = 3) -> str:
    """``'ppo.lr'`` / ``'train.ppo.lr'`` -> ``'ppo.lr'`` (Phase 4: ``'td3.actor_lr'``); anything
    not sweepable in ``phase`` is a ConfigError that says why (a static setting, another
    phase's or no hyperparameter, or unknown)."""
    where = _where("params", str(name))
    section, fields, called = SWEPT[phase]
    dynamic = ", ".join(f"{section}.{d}" for d in fields)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"config key '{where}': a swept key must be a dotted name like "
                          f"'{section}.{fields[0]}' (sweepable: {dynamic})")
    short = name.removeprefix("train.")
    if short.startswith(f"{section}.") and short.removeprefix(f"{section}.") in fields:
        return short
    in_train = short.split(".")[0] in typing.get_type_hints(TrainConfig)
    full = f"train.{short}" if in_train else name
    if not _config_field(full):
        raise ConfigError(f"config key '{where}': unknown hyperparameter '{name}' "
                          f"(sweepable: {dynamic})")
    if full.startswith((f"train.{section}.", "networks.")):
        raise ConfigError(
            f"config key '{where}': '{name}' is a static setting (it changes array shapes "
            f"or the compiled program, so every value needs its own compile); a sweep "
            f"varies only dynamic hyperparameters ({dynamic}). Sweep it with separate "
            f"`hrl-sarp train --set {full}=...` runs instead")
    raise ConfigError(
        f"config key '{where}': '{name}' is not a {called} hyperparameter, so it cannot "
        f"be vmapped in this sweep (sweepable: {dynamic}); use separate `hrl-sarp train "
        f"--set {full}=...` runs instead")


def _check_value(name: str, value: float, where: str) -> float:
    """``value`` if ``train.<name>`` may take it (``config_ranges.RANGES``; a whole number for
    ``WHOLE_NUMBERS``), else a ConfigError naming ``where``."""
    check_value(f"train.{name}", value, where)
    if name in WHOLE_NUMBERS and value != int(value):
        raise ConfigError(f"config key '{where}': {name} takes whole numbers, got {value!r}")
    return value


def _parse_param(method: str, raw_name: Any, raw: Any, phase: int = 3) -> ParamSpace:
    name = canonical_name(raw_name, phase)
    where = _where("params", str(raw_name))
    if isinstance(raw, list | tuple):
        if not raw:
            raise ConfigError(f"config key '{where}': give at least one value")
        values = tuple(_check_value(name, _number(v, f"{where}[{i}]"), f"{where}[{i}]")
                       for i, v in enumerate(raw))
        return ParamSpace(name, "values", values)
    if method == "grid":
        raise ConfigError(f"config key '{where}': method 'grid' needs a list of values, got "
                          f"{raw!r} (use method: random for uniform/log_uniform/choice)")
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise ConfigError(f"config key '{where}': expected a list of values or one of "
                          f"{{uniform: [lo, hi]}}, {{log_uniform: [lo, hi]}}, "
                          f"{{choice: [v1, v2, ...]}}, got {raw!r}")
    (dist, args), = raw.items()
    sub = f"{where}.{dist}"
    if dist not in DISTRIBUTIONS:
        raise ConfigError(f"config key '{sub}': unknown distribution (use one of "
                          f"{', '.join(DISTRIBUTIONS)})")
    if not isinstance(args, list | tuple) or not args:
        raise ConfigError(f"config key '{sub}': expected a list, got {args!r}")
    if dist == "choice":
        return _parse_param(method, raw_name, list(args), phase)
    if name in WHOLE_NUMBERS:
        raise ConfigError(f"config key '{sub}': {name} takes whole numbers; give a list of "
                          f"values or {{choice: [...]}}")
    if len(args) != 2:
        raise ConfigError(f"config key '{sub}': expected [low, high], got {args!r}")
    lo, hi = (_check_value(name, _number(v, f"{sub}[{i}]"), f"{sub}[{i}]")
              for i, v in enumerate(args))
    if not lo < hi:
        raise ConfigError(f"config key '{sub}': low {lo} must be below high {hi}")
    if dist == "log_uniform" and lo <= 0.0:
        raise ConfigError(f"config key '{sub}': log_uniform needs low > 0, got {lo}")
    return ParamSpace(name, dist, (), lo, hi)


def parse_sweep(section: Any, *, default_seeds: int = 1) -> SweepSpec:
    """Parse a ``sweep:`` mapping (see the ``sweep_smoke`` preset) into a SweepSpec.

    Keys: ``phase`` (3: Macro PPO, 4: Micro TD3+HER), ``method`` ('grid' | 'random'),
    ``samples`` (random only), ``seeds`` (K per setting, default ``default_seeds``),
    ``curriculum`` ('schedule' | 'off'; Phase 3 only) and ``params``: ``ppo.<field>`` (Phase
    4: ``td3.<key>``) -> list of values (grid or random), or for random one of
    ``{uniform: [lo, hi]}``, ``{log_uniform: [lo, hi]}``, ``{choice: [...]}``.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(f"config key '{SECTION}': expected a mapping, got {section!r}")
    unknown = sorted(set(map(str, section)) - set(SECTION_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key '{_where(unknown[0])}' (valid keys here: "
                          f"{', '.join(sorted(SECTION_KEYS))})")
    phase = section.get("phase", 3)
    if phase not in PHASES or isinstance(phase, bool):
        raise ConfigError(f"config key '{_where('phase')}': phase 3 (Macro PPO) or 4 (Micro "
                          f"TD3+HER) can be swept, got {phase!r}")
    method = section.get("method", "grid")
    if method not in METHODS:
        raise ConfigError(f"config key '{_where('method')}': expected one of "
                          f"{', '.join(METHODS)}, got {method!r}")
    seeds = _int(section.get("seeds", default_seeds), _where("seeds"), 1)
    curriculum = section.get("curriculum", "schedule")
    if phase == 4 and "curriculum" in section:
        raise ConfigError(f"config key '{_where('curriculum')}' applies to phase 3 only (Phase "
                          f"4 has no curriculum); remove it")
    if curriculum not in CURRICULA:
        raise ConfigError(f"config key '{_where('curriculum')}': expected one of "
                          f"{', '.join(CURRICULA)}, got {curriculum!r}")
    if method == "random":
        if "samples" not in section:
            raise ConfigError(f"config key '{_where('samples')}' is missing: method 'random' "
                              f"needs the number of settings to draw (e.g. samples: 8)")
        samples = _int(section["samples"], _where("samples"), 1)
    else:
        if "samples" in section:
            raise ConfigError(f"config key '{_where('samples')}' only applies to method "
                              f"'random'; remove it (a grid has one setting per combination)")
        samples = 0
    params = section.get("params")
    if not isinstance(params, Mapping) or not params:
        raise ConfigError(f"config key '{_where('params')}': expected a non-empty mapping "
                          f"from a hyperparameter (e.g. ppo.lr) to its values")
    parsed = tuple(_parse_param(method, k, v, int(phase)) for k, v in params.items())
    names = [p.name for p in parsed]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"config key '{_where('params')}': '{dup[0]}' is given twice")
    return SweepSpec(int(phase), str(method), seeds, samples, parsed, str(curriculum))


# HOST ONLY
def load_sweep_config(path: str | Path | None, overrides: Sequence[str] = ()
                      ) -> tuple[Config, SweepSpec]:
    """The run's Config (the preset without its ``sweep:`` section) and the parsed sweep."""
    cfg, extra = load_config_sections(path, tuple(overrides), (SECTION,))
    if SECTION not in extra:
        raise ConfigError(f"config '{path}' has no '{SECTION}:' section; add one "
                          f"(see `hrl-sarp config show sweep_smoke`)")
    return cfg, parse_sweep(extra[SECTION], default_seeds=cfg.train.seeds)


# --------------------------------------------------------------------------- settings


def _round(x: float, lo: float, hi: float) -> float:
    """Six significant digits (readable tables, exact in a YAML), kept inside [lo, hi]."""
    return min(max(float(f"{x:.6g}"), lo), hi)


# HOST ONLY
def sweep_settings(spec: SweepSpec, seed: int) -> list[dict[str, float]]:
    """The M settings, each ``{name: value}`` in ``spec.params`` order.

    Grid: the product of the value lists, the last key varying fastest. Random: setting s draws
    param p from key fold_in(fold_in(fold_in(key(seed), stream), s), p), so a setting does not
    depend on ``samples`` (more samples extend the list) and the training keys are untouched.
    """
    if spec.method == "grid":
        combos = itertools.product(*(p.values for p in spec.params))
        return [dict(zip(spec.names, c, strict=True)) for c in combos]
    root = jax.random.fold_in(jax.random.key(int(seed)), _SAMPLING_STREAM)
    out = []
    for s in range(spec.samples):
        setting = {}
        for i, p in enumerate(spec.params):
            key = jax.random.fold_in(jax.random.fold_in(root, s), i)
            if p.kind == "values":
                setting[p.name] = p.values[int(jax.random.randint(key, (), 0, len(p.values)))]
                continue
            u = float(jax.random.uniform(key, (), jnp.float32))
            if p.kind == "uniform":
                x = p.low + u * (p.high - p.low)
            else:
                x = math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
            setting[p.name] = _round(x, p.low, p.high)
        out.append(setting)
    return out


# HOST ONLY
def member_hparams(base: PPOHParams, settings: Sequence[Mapping[str, float]], seeds: int
                   ) -> PPOHParams:
    """PPOHParams with leaves [M·K] float32: member m = ``base`` with settings[m // K] applied."""
    def leaf(field: str) -> jax.Array:
        default = float(np.asarray(getattr(base, field)))
        per_setting = [float(s.get(f"ppo.{field}", default)) for s in settings]
        return jnp.asarray(np.repeat(np.asarray(per_setting, np.float32), seeds), jnp.float32)
    members = rm.stack_hparams(base, len(settings) * seeds)
    return members.replace(**{f: leaf(f) for f in DYNAMIC})


# HOST ONLY
def member_keys(seed: int, num_settings: int, seeds: int) -> jax.Array:
    """[M·K] keys: member m gets seed key m % K of ``phase3_keys(seed, K)``, the same for every
    setting (common random numbers), so settings differ only by their hyperparameters."""
    return rm.phase3_keys(seed, seeds)[np.arange(int(num_settings) * seeds) % seeds]


def anchored_config(cfg: Config, settings: Sequence[Mapping[str, float]]) -> Config:
    """``cfg`` whose ``train.ppo.anchor_kl_coef`` (``train.td3.anchor_kl_coef``) is the largest
    swept anchor weight when the base has none and some setting has one: the anchor is part of
    the compiled program (``PPOSpec.anchored``, ``Phase4Spec.anchored``), which all members
    share; each member still trains with its own weight (its hyperparameter leaf). Otherwise
    ``cfg`` as it is."""
    for section in ("ppo", "td3"):
        name = f"{section}.anchor_kl_coef"
        weights = [float(s[name]) for s in settings if name in s]
        base = getattr(cfg.train, section)
        if float(base.anchor_kl_coef) > 0 or not weights or max(weights) <= 0:
            continue
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **{
            section: dataclasses.replace(base, anchor_kl_coef=max(weights))}))
    return cfg


def settings_config(cfg: Config, setting: Mapping[str, float], seeds: int) -> Config:
    """``cfg`` with a setting's values in ``train.ppo`` / ``train.td3`` (each key's own type:
    ``td3.her_k`` an int) and ``train.seeds = seeds``."""
    train = dataclasses.replace(cfg.train, seeds=seeds)
    for name, value in setting.items():
        section, key = name.split(".", 1)
        sec = getattr(train, section)
        kind = typing.get_type_hints(type(sec))[key]  # float, or int for td3.her_k
        train = dataclasses.replace(train, **{
            section: dataclasses.replace(sec, **{key: kind(value)})})
    return dataclasses.replace(cfg, train=train)


# --------------------------------------------------------------------------- ranking


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def rank_settings(settings: Sequence[Mapping[str, float]],
                  per_member: Mapping[str, Sequence[float]], seeds: int) -> list[dict[str, Any]]:
    """Settings best first by the mean validation Sharpe over their K seeds.

    ``per_member``: metric -> [M·K] values (member m = setting m // K, seed m % K); must hold
    ``val_sharpe``. Each entry: rank (1 = best), setting index, params, and for val_sharpe the
    mean, std (population, ddof 0), min and max over seeds plus the per-seed values; the other
    metrics' means over seeds. Non-finite seeds are ignored by the statistics; a setting with
    no finite seed ranks last. Ties keep the setting order.
    """
    m = len(settings)
    table = {k: np.asarray(v, np.float64).reshape(m, seeds) for k, v in per_member.items()}
    out = []
    for i, setting in enumerate(settings):
        sharpe = table["val_sharpe"][i]
        ok = sharpe[np.isfinite(sharpe)]
        rec: dict[str, Any] = {"setting": i, "params": dict(setting)}
        if ok.size:
            rec.update(val_sharpe_mean=float(ok.mean()), val_sharpe_std=float(ok.std()),
                       val_sharpe_min=float(ok.min()), val_sharpe_max=float(ok.max()))
        else:
            rec.update(val_sharpe_mean=None, val_sharpe_std=None, val_sharpe_min=None,
                       val_sharpe_max=None)
        rec["val_sharpe_per_seed"] = [_finite(x) for x in sharpe]
        rec["finite_seeds"] = int(ok.size)
        for k, v in table.items():
            if k != "val_sharpe":
                good = v[i][np.isfinite(v[i])]
                rec[f"{k}_mean"] = float(good.mean()) if good.size else None
        out.append(rec)
    out.sort(key=lambda r: (r["val_sharpe_mean"] is None, -(r["val_sharpe_mean"] or 0.0),
                            r["setting"]))
    for rank, rec in enumerate(out, 1):
        rec["rank"] = rank
    return out


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def overfitting_line(block: Mapping[str, Any]) -> str:
    """One sentence for ranking.md from an ``overfitting_block``."""
    trials = block["trials"]
    if block.get("pbo") is None and block.get("dsr") is None:
        why = "; ".join(block.get("notes", [])) or "not computed"
        return f"Overfitting of the selection among {trials} settings: not computed ({why})."
    parts = []
    if block.get("pbo") is not None:
        d = block["pbo_detail"]
        parts.append(f"PBO {block['pbo']:.2f} over {trials} settings (CSCV, {d['splits']} "
                     f"blocks of {d['block_rows']} week(s))")
    if block.get("dsr") is not None:
        parts.append(f"deflated Sharpe of the best {block['dsr']:.2f} (trials {trials}; "
                     f"annualised Sharpe {block['dsr_detail']['sharpe_annual']:.2f} over "
                     f"{block['dsr_detail']['n']} weeks)")
    notes = "".join(f" Note: {n}." for n in block.get("notes", []))
    return (f"{'; '.join(parts)}. Rows: {block['rows']}.{notes}")


PPO_COLUMNS = (("equal-weight Sharpe", "val_equal_weight_sharpe_mean"),
               ("val return", "val_return_mean"), ("val max DD", "val_max_drawdown_mean"))
"""ranking.md's columns after the Sharpe statistics for Phase 3: (header, ranking key)."""


def ranking_markdown(ranking: Sequence[Mapping[str, Any]], names: Sequence[str], *,
                     seeds: int, title: str = "Sweep ranking",
                     overfitting: Mapping[str, Any] | None = None,
                     columns: Sequence[tuple[str, str]] = PPO_COLUMNS,
                     sharpe: str = "weekly, annualised") -> str:
    """The ranking as a Markdown table (one row per setting, best first), preceded by the
    ``overfitting_line`` when ``overfitting`` is given; ``columns`` after the Sharpe statistics
    (Phase 3's by default), ``sharpe`` says how the validation Sharpe is measured."""
    head = ["rank", "setting", *names, "val Sharpe mean", "std", "min", "max",
            *(h for h, _ in columns)]
    lines = [f"# {title}", "",
             f"Settings ranked by the mean validation Sharpe ({sharpe}) over {seeds} "
             f"seed(s); std is the population std over seeds. Every setting trained on the "
             f"same seeds (common random numbers).", ""]
    if overfitting is not None:
        lines += [overfitting_line(overfitting), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in ranking:
        row = [str(r["rank"]), str(r["setting"]), *(f"{r['params'][n]:.6g}" for n in names),
               _fmt(r["val_sharpe_mean"]), _fmt(r["val_sharpe_std"]), _fmt(r["val_sharpe_min"]),
               _fmt(r["val_sharpe_max"]), *(_fmt(r.get(key)) for _, key in columns)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def seed_mean_weekly(results: Sequence[Mapping[str, Any]], num_settings: int, seeds: int
                     ) -> np.ndarray:
    """float64 [W, M]: column s = the mean over setting s's K seeds of their weekly validation
    returns (``results`` records' ``val_weekly_returns``, member m = setting m // K)."""
    by_member = sorted(results, key=lambda r: r["member"])
    if [r["member"] for r in by_member] != list(range(num_settings * seeds)) or any(
            r["setting"] != r["member"] // seeds for r in by_member):
        raise ValueError(f"results must hold members 0..{num_settings * seeds - 1} with "
                         f"setting = member // {seeds}")
    lengths = {len(r[WEEKLY]) for r in by_member}
    if len(lengths) != 1:
        raise ValueError(f"results: every member's {WEEKLY} must cover the same weeks, got "
                         f"lengths {sorted(lengths)}")
    weekly = np.asarray([r[WEEKLY] for r in by_member], np.float64)        # [M·K, W]
    return weekly.reshape(num_settings, seeds, -1).mean(axis=1).T


def overfitting_block(results: Sequence[Mapping[str, Any]], best_setting: int,
                      num_settings: int, seeds: int,
                      overfitting: Callable[..., dict] | None, *,
                      walk: Mapping[str, Any] | None = None,
                      splits: int = PBO_SPLITS) -> dict[str, Any]:
    """ranking.json's "overfitting": the selection of ``best_setting`` among the M settings,
    judged on their seed-mean weekly validation returns (``seed_mean_weekly``) by the
    ``overfitting`` callback (``evaluation.overfitting.selection_overfitting``: PBO by CSCV,
    deflated Sharpe with trials = M). Without a callback, or with non-finite returns, only the
    bookkeeping is filled in and ``notes`` says why. ``walk``: the walk's span (for the text).
    """
    matrix = seed_mean_weekly(results, num_settings, seeds)
    weeks = int(matrix.shape[0])
    span = "" if walk is None else f", {walk['start']} to {walk['end']}"
    block: dict[str, Any] = {
        "trials": num_settings,
        "trials_counted": f"{num_settings} setting(s) of this sweep evaluated on validation "
                          f"(each the mean of its {seeds} seed(s)); earlier runs not counted",
        "selected_setting": int(best_setting),
        "rows": f"{weeks} weekly net returns of one continuous deterministic walk through the "
                f"validation split{span}, the mean over each setting's {seeds} seed(s)",
        "weeks": weeks, "periods_per_year": WEEKS_PER_YEAR,
        "pbo": None, "pbo_detail": None, "dsr": None, "dsr_detail": None, "sr_variance": None,
        "notes": [],
    }
    if overfitting is None:
        block["notes"].append("no overfitting callback was given (the CLI passes "
                              "evaluation.overfitting.selection_overfitting)")
        return block
    bad = sorted(int(j) for j in np.flatnonzero(~np.all(np.isfinite(matrix), axis=0)))
    if bad:
        block["notes"].append(f"settings {bad} have non-finite weekly returns")
        return block
    res = overfitting(matrix, int(best_setting), splits=splits, periods=WEEKS_PER_YEAR)
    if res["pbo"] is not None:
        detail = {k: v for k, v in res["pbo"].items() if k != "logits"}
        detail["logit_median"] = float(np.median(res["pbo"]["logits"]))
        block.update(pbo=res["pbo"]["pbo"], pbo_detail=detail)
    if res["dsr"] is not None:
        block.update(dsr=res["dsr"]["dsr"], dsr_detail=res["dsr"])
    block["sr_variance"] = res["sr_variance"]
    block["notes"].extend(res["notes"])
    return block


# --------------------------------------------------------------------------- host loop


@dataclass(frozen=True)
class PhaseSweep:
    """What one phase brings to ``run_sweep``: its per-member metrics (results.json), the
    ranking's columns, and three host functions over the sweep's members (member m = setting
    m // K, seed m % K):

    train(run, cfg, spec, settings, market, meta, feats, *, resume, unit_limit,
          total_env_steps, log) -> the phase summary (``per_seed`` over the M·K members);
    walk(run, cfg, spec, settings, market, meta, feats, *, total_env_steps) -> every member's
          final policy on one walk through the validation split ({"returns" [M·K, W] weekly,
          "live", "ended", "start", "end", "weeks", "step"});
    save_best(run, cfg, spec, settings, best, summary, market, meta, feats, *,
          total_env_steps, name="best", restored=None) -> the ``<run>/sweep/<name>`` run
          folder of setting ``best`` (``sweep_judge`` writes one per setting to judge them
          on many markets, from one ``latest`` restore);
    latest(run, cfg, spec, settings, market, meta, feats, *, total_env_steps) -> (state,
          saved meta, step) of the sweep's latest checkpoint, all members.
    """

    phase: int
    metrics: tuple[str, ...]
    columns: tuple[tuple[str, str], ...]
    sharpe: str
    train: Callable[..., dict[str, Any]]
    walk: Callable[..., dict[str, Any]]
    save_best: Callable[..., Path]
    latest: Callable[..., tuple]
    work: Callable[[Mapping[str, Any]], str]
    """The work done per member, from the summary (for the ranking's title)."""


# HOST ONLY
def train_ppo_members(run: Run, cfg: Config, spec: SweepSpec,
                      settings: Sequence[Mapping[str, float]], market: MarketArrays,
                      meta: MarketMeta, feats: FeatureSet, *, resume: bool = False,
                      unit_limit: int | None = None, total_env_steps: int | None = None,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Phase 3 of the M·K members as one program (``unit_limit``: updates in total)."""
    k = spec.seeds
    return rm.run_phase3(run, cfg, market, meta, feats, seeds=len(settings) * k,
                         resume=resume, update_limit=unit_limit, rule=curriculum_rule(spec),
                         total_env_steps=total_env_steps, log=log,
                         hparams=member_hparams(PPOHParams.from_config(cfg.train.ppo),
                                                settings, k),
                         member_keys=member_keys(cfg.seed, len(settings), k))


def phase_sweep(phase: int) -> PhaseSweep:
    """The adapter of ``phase`` (3 here, 4 from ``training.sweep_td3``)."""
    if phase == 4:
        from hrl_sarp_jax.training.sweep_td3 import TD3_SWEEP  # it builds on this module

        return TD3_SWEEP
    return PhaseSweep(3, METRICS, PPO_COLUMNS, "weekly, annualised", train_ppo_members,
                      validation_weekly_returns, save_best_setting, latest_members,
                      lambda s: f"{s['updates']} updates, {s['env_steps_per_seed']} env steps "
                                f"per seed")


def _spec_record(spec: SweepSpec, settings: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    return {"spec": dataclasses.asdict(spec), "settings": [dict(s) for s in settings]}


def curriculum_rule(spec: SweepSpec) -> cur.CurriculumRule:
    """'schedule': the default stages, promoted on the update schedule only (the same for every
    member); 'off': the mixed stage throughout."""
    if spec.curriculum == "off":
        return dataclasses.replace(cur.DEFAULT_RULE, enabled=False)
    never = tuple(math.inf for _ in cur.DEFAULT_RULE.promote_sharpe)
    return dataclasses.replace(cur.DEFAULT_RULE, promote_sharpe=never)


def validation_walk(p3: rm.Phase3, weeks: int, params: Any, env_params: Any, key: jax.Array
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One deterministic episode (Dirichlet mean ⊕ argmax regime, ``ppo_engine.walk``, as
    Phase 3's evaluation) from ``env_params.start_lo``, ``weeks`` (static) steps: (weekly net
    return [W] (0 after the episode ends), live [W] bool, ended: bool, whether the episode
    ended within the W steps). Pure; vmap it over members' params."""
    out = walk(p3.task, params, env_params, weeks, jnp.asarray(True), key)
    return jnp.where(out["live"], out["net_return"], 0.0), out["live"], out["ended"]


def _latest_state(run: Run, cfg: Config, setup: rm.Phase3Setup,
                  settings: Sequence[Mapping[str, float]], seeds: int):
    """(state, saved, step) of the sweep's latest Phase-3 checkpoint (all M·K members)."""
    m = len(settings)
    init = jax.vmap(setup.program.init, in_axes=(0, 0, None, None))
    abstract = jax.eval_shape(init, member_keys(cfg.seed, m, seeds),
                              member_hparams(setup.hp, settings, seeds), setup.train_params,
                              cur.stage_starts(0, setup.windows))
    with PhaseCheckpointer(run, rm.PHASE, read_only=True) as ck:
        return ck.restore(abstract, "latest")


# HOST ONLY
def latest_members(run: Run, cfg: Config, spec: SweepSpec,
                   settings: Sequence[Mapping[str, float]], market: MarketArrays,
                   meta: MarketMeta, feats: FeatureSet, *, total_env_steps: int | None = None):
    """(state, saved meta, step): the sweep's latest Phase-3 checkpoint, all M·K members."""
    setup = rm.setup_phase3(cfg, market, meta, feats, total_env_steps=total_env_steps)
    return _latest_state(run, cfg, setup, settings, spec.seeds)


# HOST ONLY
def validation_weekly_returns(run: Run, cfg: Config, spec: SweepSpec,
                              settings: Sequence[Mapping[str, float]], market: MarketArrays,
                              meta: MarketMeta, feats: FeatureSet, *,
                              total_env_steps: int | None = None) -> dict[str, Any]:
    """Every member's final policy (the latest checkpoint) on one ``validation_walk`` through
    the validation split, from its first evaluation start day (``eval_start_days[0]``) to its
    last week end, with the run's allocator (Phase 2's Micro actor when it has one).

    Returns {"returns": float64 [M·K, W], "live": bool [M·K, W], "ended": bool [M·K],
    "start", "end" (dates), "weeks": W, "step": the checkpoint's update}. W counts the week ends
    after the start day up to the split's last day, so the walk ends there (``ended``) unless a
    member is ruined first (its later weeks are 0 and not live).
    """
    k = spec.seeds
    micro, _ = rm.load_phase2_micro(run, cfg, market, meta, feats)
    setup = rm.setup_phase3(cfg, market, meta, feats, micro_params=micro,
                            rule=curriculum_rule(spec), total_env_steps=total_env_steps)
    state, _, step = _latest_state(run, cfg, setup, settings, k)
    t_hi = int(setup.val_params.t_hi)
    week_end = np.asarray(market.week_end, bool)
    params, days = weekly_plan("continuous", week_end, int(setup.eval_days.min()), t_hi,
                               setup.val_params)
    day0, weeks = int(days[0]), int(params.max_steps_in_episode) - 1
    ends = np.flatnonzero(week_end[: t_hi + 1])
    params = params.replace(start_lo=jnp.int32(day0), start_hi=jnp.int32(day0))
    key = jax.random.fold_in(jax.random.key(int(cfg.seed)), 1000 + rm.PHASE)
    walks = jax.jit(jax.vmap(partial(validation_walk, setup.program, weeks),
                             in_axes=(0, None, None)))
    r, live, ended = jax.device_get(walks(state.train.params, params, key))
    dates = np.asarray(meta.dates)
    return {"returns": np.asarray(r, np.float64), "live": np.asarray(live, bool),
            "ended": np.asarray(ended, bool), "start": str(dates[day0]),
            "end": str(dates[ends[-1]]), "weeks": weeks, "step": int(step)}


# HOST ONLY
def claim_sweep_folder(run: Run, spec: SweepSpec, settings: Sequence[Mapping[str, float]],
                       resume: bool) -> Path:
    """``<run>/sweep/sweep.json`` written (the parsed sweep and its settings) and its path;
    ConfigError when the folder holds another sweep, CheckpointError when it holds this one
    and ``resume`` is off."""
    out_dir = run.root / SECTION
    record = _spec_record(spec, settings)
    spec_path = out_dir / "sweep.json"
    if spec_path.is_file():
        saved = json.loads(spec_path.read_text())
        if saved != json.loads(json.dumps(record)):
            raise ConfigError(f"config key '{SECTION}': differs from the sweep saved in "
                              f"{spec_path}; rerun it with the same sweep or use a new --run")
        if not resume:
            raise CheckpointError(f"run {run.name} already holds this sweep ({spec_path}); "
                                  f"pass --resume to continue it, or choose a new --run name")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(spec_path, record)
    return spec_path


def member_results(settings: Sequence[Mapping[str, float]], k: int,
                   per_member: Mapping[str, Sequence[float]], summary: Mapping[str, Any],
                   walk: Mapping[str, Any]) -> list[dict[str, Any]]:
    """results.json: one record per member m (setting m // k, seed m % k) with its setting's
    values, its final validation metrics (``per_member``: metric -> [M·K]), its env steps and
    its weekly net returns on the validation walk (``WEEKLY``) with the weeks it was live."""
    results = []
    members = range(len(settings) * k)
    for i, weekly, live in zip(members, walk["returns"], walk["live"], strict=True):
        rec: dict[str, Any] = {"member": i, "setting": i // k, "seed": i % k,
                               "params": dict(settings[i // k])}
        rec.update({name: values[i] for name, values in per_member.items()})
        rec["env_steps"] = int(summary["env_steps_per_seed"])
        rec[WEEKLY] = [float(x) for x in weekly]
        rec["val_walk_live_weeks"] = int(live.sum())
        results.append(rec)
    return results


# HOST ONLY (not jittable)
def run_sweep(
    run: Run,
    cfg: Config,
    spec: SweepSpec,
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    *,
    resume: bool = False,
    update_limit: int | None = None,
    total_env_steps: int | None = None,
    log: Callable[[str], None] | None = None,
    overfitting: Callable[..., dict] | None = None,
) -> dict[str, Any]:
    """Train every setting × seed of ``spec`` as one program of its phase (3 or 4) into
    ``run`` and write ``<run>/sweep/`` (see the module docstring). ``update_limit``: stop after
    that many updates (Phase 4: chunks) in total. ``overfitting``: the PBO / deflated-Sharpe
    function of the selection (``evaluation.overfitting.selection_overfitting``, passed in by
    the CLI; None leaves ranking.json's "overfitting" without statistics). Returns {"results",
    "ranking", "overfitting", "best", "paths", "phase", "summary", "work", "phase<N>"}
    (summary and phase<N>: the phase's summary)."""
    say = log or (lambda _msg: None)
    ph = phase_sweep(spec.phase)
    settings = sweep_settings(spec, cfg.seed)
    cfg = anchored_config(cfg, settings)
    m, k = len(settings), spec.seeds
    spec_path = claim_sweep_folder(run, spec, settings, resume)
    out_dir = spec_path.parent
    say(f"sweep: {m} setting(s) × {k} seed(s) = {m * k} members in one program "
        f"({spec.method}: {', '.join(spec.names)})")

    summary = ph.train(run, cfg, spec, settings, market, meta, feats, resume=resume,
                       unit_limit=update_limit, total_env_steps=total_env_steps, log=say)
    per_member = {name: [float(x) for x in summary["per_seed"][name]] for name in ph.metrics}
    walk = ph.walk(run, cfg, spec, settings, market, meta, feats,
                   total_env_steps=total_env_steps)
    results = member_results(settings, k, per_member, summary, walk)
    ranking = rank_settings(settings, per_member, k)
    walk_info = {key: walk[key] for key in ("start", "end", "weeks", "step")}
    block = overfitting_block(results, ranking[0]["setting"], m, k, overfitting, walk=walk_info)
    block["walk"] = {**walk_info, "ended_in_window": bool(walk["ended"].all())}
    if not walk["ended"].all() or not walk["live"].all():
        block["notes"].append("some members' walks ended early (ruin); their later weeks "
                              "count as 0 return")
    paths = {"results": out_dir / "results.json", "ranking_json": out_dir / "ranking.json",
             "ranking_md": out_dir / "ranking.md", "sweep": spec_path}
    atomic_write_json(paths["results"], results)
    atomic_write_json(paths["ranking_json"], {"trials": m, "seeds": k, "members": m * k,
                                              "overfitting": block, "ranking": ranking})
    work = ph.work(summary)
    atomic_write_text(paths["ranking_md"], ranking_markdown(
        ranking, spec.names, seeds=k, title=f"Sweep ranking: run {run.name}, phase "
        f"{spec.phase}, {work}", overfitting=block, columns=ph.columns, sharpe=ph.sharpe))
    best = ranking[0]
    paths["best_run"] = ph.save_best(run, cfg, spec, settings, best["setting"], summary,
                                     market, meta, feats, total_env_steps=total_env_steps)
    say(f"sweep: best setting {best['setting']} {best['params']} val_sharpe mean "
        f"{_fmt(best['val_sharpe_mean'])} over {k} seed(s)")
    say(f"sweep: {overfitting_line(block)}")
    return {"results": results, "ranking": ranking, "overfitting": block, "best": best,
            "paths": {n: Path(p) for n, p in paths.items()}, "phase": spec.phase,
            "summary": summary, "work": work, f"phase{spec.phase}": summary}


@dataclass(frozen=True)
class SettingMembers:
    """Setting ``setting``'s K members of a sweep: what its ``best/`` folder records."""

    members: np.ndarray
    """int [K]: the members m = setting·K … setting·K + K − 1."""
    per_seed: dict[str, list]
    """The phase summary's ``per_seed`` lists cut to the members."""
    means: dict[str, float]
    """Each per-seed metric's mean over the members (NaNs ignored)."""
    meta: dict[str, Any]
    """The checkpoint's user meta with the members' own start Sharpes (``START_KEY``), the seed
    count and the ``sweep`` origin."""
    origin: dict[str, Any]


def setting_members(run: Run, settings: Sequence[Mapping[str, float]], setting: int, k: int,
                    summary: Mapping[str, Any], saved: Mapping[str, Any]) -> SettingMembers:
    """The members of ``setting`` (K each) and their records, from the sweep's phase
    ``summary`` and its latest checkpoint's meta ``saved``."""
    members = np.arange(setting * k, (setting + 1) * k)
    per_seed = {name: list(v)[setting * k:(setting + 1) * k]
                for name, v in summary["per_seed"].items()}
    means = {name: float(np.nanmean(np.asarray(v, np.float64)))
             for name, v in per_seed.items() if v and np.asarray(v).ndim == 1}
    origin = {"sweep_run": run.name, "setting": setting, "params": dict(settings[setting]),
              "members": members.tolist()}
    user = dict(saved.get("user", {}))
    if START_KEY in user:  # the start's per-episode Sharpes (selection margin) of these members
        user[START_KEY] = np.asarray(user[START_KEY])[members].tolist()
    return SettingMembers(members, per_seed, means, {**user, "seeds": k, "sweep": origin},
                          origin)


# HOST ONLY
def best_run_folder(run: Run, best_cfg: Config, earlier: Sequence[int], name: str = "best",
                    *, trials: int = 1) -> Run:
    """A fresh run folder ``<run>/sweep/<name>`` (an earlier one replaced, swapped in whole)
    under ``best_cfg``, holding a copy of the sweep run's ``earlier`` phases that it has (their
    checkpoints, summaries and metrics lines), so the next phase and ``evaluate`` continue from
    the best setting with the same pre-trained agents the sweep started from. ``trials``: the
    settings the folder's setting was chosen among (``best/``: all of them; a ``setting<i>/``
    folder: 1), recorded in run.json so its report's deflated Sharpe counts them."""
    return derived_run(run, run.root / SECTION, name, best_cfg, earlier,
                       selected_from={"run": run.name, "sweep": SECTION, "trials": int(trials)})


# HOST ONLY
def save_best_setting(run: Run, cfg: Config, spec: SweepSpec,
                      settings: Sequence[Mapping[str, float]], best: int,
                      summary: Mapping[str, Any], market: MarketArrays, meta: MarketMeta,
                      feats: FeatureSet, *, total_env_steps: int | None = None,
                      name: str = "best", restored: tuple | None = None) -> Path:
    """Copy setting ``best``'s K seeds of the sweep's latest Phase-3 checkpoint into a run
    folder ``<run>/sweep/<name>`` (config = ``cfg`` with the setting's values and
    train.seeds=K, phase3/ckpt + phase3/summary.json, and the sweep run's Phases 1-2:
    ``best_run_folder``), replacing any earlier one. ``restored``: ``latest_members``' result
    when the caller has it (one restore for many settings). Returns its path."""
    k = spec.seeds
    state, saved, step = restored or latest_members(run, cfg, spec, settings, market, meta,
                                                    feats, total_env_steps=total_env_steps)
    sm = setting_members(run, settings, best, k, summary, saved)
    state = jax.tree.map(lambda x: x[sm.members], state)
    best_cfg = settings_config(cfg, settings[best], k)
    if state.anchor is not None and not float(best_cfg.train.ppo.anchor_kl_coef) > 0:
        state = state.replace(anchor=None)  # an unanchored setting: its config has no anchor
    best_run = best_run_folder(run, best_cfg, (1, 2), name,
                               trials=len(settings) if name == "best" else 1)
    with PhaseCheckpointer(best_run, rm.PHASE, keep_latest=cfg.train.keep_latest,
                           best_metric=rm.BEST_METRIC) as out:
        out.save(int(step), state,
                 metrics={rm.BEST_METRIC: sm.means["val_sharpe"],
                          "val_equal_weight_sharpe": sm.means["val_equal_weight_sharpe"]},
                 meta=sm.meta)
    best_summary = {
        **{key: v for key, v in summary.items() if not key.startswith("val_")},
        **{key: v for key, v in sm.means.items() if key in summary},
        "seeds": k,
        "env_steps": int(summary["env_steps_per_seed"]) * k,
        "per_seed": sm.per_seed,
        "best_step": int(step),
        "latest_step": int(step),
        "best_val_sharpe": sm.means["val_sharpe"],
        "sweep": sm.origin,
        "params_used": "the sweep's final params of this setting's seeds",
    }
    write_phase_summary(best_run, rm.PHASE, best_summary)
    return best_run.root
