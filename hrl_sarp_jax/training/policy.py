"""The trained hierarchical policy of a run: Macro and Micro actor params for K seeds.

# HOST ONLY (not jittable)
``load_policy`` picks the most trained checkpoint of each level:
- Phase 5 (joint fine-tuning) when the run has one: both actors from
  ``training.joint.load_phase5_policy``;
- else the MacroActor from Phase 3's best checkpoint (every seed), else each seed's Phase-1
  ``best_params`` (its latest checkpoint: ``runner.restore_best_params``); the
  MicroActor from Phase 4's best checkpoint (every seed), else Phase 2's ``best_params`` of
  the seed with the lowest validation loss (latest checkpoint), broadcast.
``load_policy(upto=p)`` reads only phases <= p: the hierarchy as it stood after phase p
(``phase_ladder``: after each RL phase, for the evaluation's rungs).
When the two levels have different seed counts, policy seed k pairs Macro seed k mod K_macro
with Micro seed k mod K_micro (K = the larger count); ``source`` records every choice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from hrl_sarp_jax.checkpointing import Run, find_best, read_phase_summary, restore_chosen
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.training.sharding import to_host
from hrl_sarp_jax.types import Params

LADDER_PHASES = (2, 3, 4, 5)
"""``load_policy(upto=...)``: the phases after which the hierarchy can be read."""


@dataclass
class TrainedPolicy:
    """Actor params of both levels, every leaf stacked on a leading [K] seed axis."""

    macro_actor: Params   # MacroActor params {"params": ...}
    micro_actor: Params   # MicroActor params {"params": ...}
    seeds: int
    source: dict[str, str] = field(default_factory=dict)
    """Where each level came from (phase, step, seeds) and how seeds were paired."""


def _num_seeds(tree: Params) -> int:
    return int(np.shape(jax.tree.leaves(tree)[0])[0])


def pair_seeds(macro: Params, micro: Params) -> tuple[Params, Params, int, str]:
    """(macro [K], micro [K], K, note): K = max(K_macro, K_micro); policy seed k takes Macro
    seed k mod K_macro and Micro seed k mod K_micro."""
    km, kn = _num_seeds(macro), _num_seeds(micro)
    k = max(km, kn)
    take = lambda tree, idx: jax.tree.map(lambda x: np.asarray(x)[idx], tree)  # noqa: E731
    macro_k = take(macro, np.arange(k) % km)
    micro_k = take(micro, np.arange(k) % kn)
    if km == kn:
        note = f"{k} seed(s): Macro seed k with Micro seed k"
    else:
        note = (f"{k} seeds: policy seed k = Macro seed k mod {km} with Micro seed k mod {kn} "
                f"(the phases were trained with {km} and {kn} seeds)")
    return macro_k, micro_k, k, note


def _has_checkpoint(run: Run, phase: int) -> bool:
    return find_best(run, phase) is not None


def _seeds_of(run: Run, phase: int, cfg: Config) -> int:
    summary = read_phase_summary(run, phase) or {}
    return int(summary.get("seeds", cfg.train.seeds))


def _restore_failed(run: Run, phase: int, exc: Exception) -> CheckpointError:
    return CheckpointError(
        f"run {run.name}: the phase {phase} checkpoint in {run.phase_dir(phase) / 'ckpt'} does "
        f"not restore with this config and market ({exc}); evaluate with the run's own config "
        f"and --data, or retrain it (hrl-sarp train --phase {phase} --run {run.name})")


# HOST ONLY
def load_phase3_macro_all(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                          feats: FeatureSet) -> tuple[Params, str]:
    """Every seed's MacroActor from Phase 3's best checkpoint ({"params": ...} stacked [K])."""
    from hrl_sarp_jax.training import rl_macro

    seeds = _seeds_of(run, 3, cfg)
    try:
        abstract = rl_macro.abstract_state(cfg, market, meta, feats, seeds)
        state, _meta, step = restore_chosen(run, 3, abstract, cfg.train.checkpoint)
    except (CheckpointError, ConfigError, ValueError) as exc:
        raise _restore_failed(run, 3, exc) from exc
    actor = to_host({"params": state.train.params["params"]["actor"]})
    return actor, (f"phase 3: MacroActor of all {seeds} seed(s), {cfg.train.checkpoint} step "
                   f"{step}")


# HOST ONLY
def load_phase1_macro_all(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                          feats: FeatureSet) -> tuple[Params, str]:
    """Every seed's Phase-1 ``best_params`` from the phase's latest checkpoint (stacked [K]:
    ``runner.restore_best_params``)."""
    from hrl_sarp_jax.training.runner import restore_best_params

    seeds = _seeds_of(run, 1, cfg)
    cfg_k = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=seeds))
    try:
        state, _meta, step = restore_best_params(run, 1, cfg_k, market, meta, feats)
    except (CheckpointError, ConfigError, ValueError) as exc:
        raise _restore_failed(run, 1, exc) from exc
    return to_host(state.best_params), (f"phase 1: MacroActor best_params of all {seeds} "
                                        f"seed(s), latest step {step} (supervised "
                                        f"pre-training only)")


# HOST ONLY
def load_phase4_micro_all(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                          feats: FeatureSet) -> tuple[Params, str]:
    """Every seed's MicroActor from Phase 4's best checkpoint (stacked [K]). The abstract
    target uses the Phase-4 spec recorded in its summary (else the config's)."""
    from hrl_sarp_jax.training import rl_micro

    summary = read_phase_summary(run, 4) or {}
    seeds = int(summary.get("seeds", cfg.train.seeds))
    try:
        spec = rl_micro.Phase4Spec(**summary["spec"]) if "spec" in summary else None
        setup = rl_micro.setup_phase4(cfg, market, meta, feats, spec=spec)
        keys, _ = rl_micro.phase4_keys(cfg.seed, seeds)
        abstract = jax.eval_shape(jax.vmap(setup.p4.init, in_axes=(0, None, None)), keys,
                                  setup.train_params, None)
        state, _meta, step = restore_chosen(run, 4, abstract, cfg.train.checkpoint,
                                            for_policy=True)
    except (CheckpointError, ConfigError, ValueError, TypeError) as exc:
        raise _restore_failed(run, 4, exc) from exc
    return to_host(state.agent.actor_params), (f"phase 4: MicroActor of all {seeds} seed(s), "
                                               f"{cfg.train.checkpoint} step {step}")


# HOST ONLY
def load_phase2_micro_best(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                           feats: FeatureSet) -> tuple[Params, str]:
    """Phase 2's best MicroActor (the seed with the lowest validation loss), stacked [1]."""
    from hrl_sarp_jax.training import rl_macro

    seeds = _seeds_of(run, 2, cfg)
    cfg_k = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=seeds))
    params, info = rl_macro.load_phase2_micro(run, cfg_k, market, meta, feats)
    if params is None:
        raise CheckpointError(f"run {run.name}: {info['phase2']}; retrain it (hrl-sarp train "
                              f"--phase 2 --run {run.name})")
    stacked = jax.tree.map(lambda x: np.asarray(x)[None], params)
    return stacked, (f"phase 2: MicroActor {info['phase2']} (supervised pre-training only, "
                     f"shared by every seed)")


# HOST ONLY
def load_policy(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                feats: FeatureSet, upto: int = 5) -> TrainedPolicy:
    """The run's trained hierarchical policy (module docstring) as it stood after phase
    ``upto`` (2-5: only the checkpoints of phases <= ``upto`` are read; 5: the final one).
    CheckpointError naming the phases to train when a level has no checkpoint at all."""
    if upto not in LADDER_PHASES:
        raise ConfigError(f"policy after phase {upto}: give one of {LADDER_PHASES}")
    if upto >= 5 and (run.phase_dir(5) / "ckpt").is_dir() and _has_checkpoint(run, 5):
        try:
            from hrl_sarp_jax.training.joint import load_phase5_policy
        except ImportError as exc:
            raise CheckpointError(
                f"run {run.name} has a Phase-5 checkpoint but this hrl_sarp_jax cannot load it "
                f"(hrl_sarp_jax.training.joint: {exc}); install the version that trained it"
            ) from exc
        return load_phase5_policy(run, cfg, market, meta, feats, cfg.train.checkpoint)

    has = {p: p <= upto and _has_checkpoint(run, p) for p in (1, 2, 3, 4)}
    missing = []
    if not (has[1] or has[3]):
        missing.append(f"the Macro agent (hrl-sarp train --phase 1 --run {run.name}, then "
                       f"--phase 3)")
    if not (has[2] or has[4]):
        missing.append(f"the Micro agent (hrl-sarp train --phase 2 --run {run.name}, then "
                       f"--phase 4)")
    if missing:
        raise CheckpointError(f"run {run.name} has no checkpoint of {' nor of '.join(missing)}; "
                              f"train it before evaluating")

    source: dict[str, Any] = {}
    if has[3]:
        macro, source["macro"] = load_phase3_macro_all(run, cfg, market, meta, feats)
    else:
        macro, source["macro"] = load_phase1_macro_all(run, cfg, market, meta, feats)
    if has[4]:
        micro, source["micro"] = load_phase4_micro_all(run, cfg, market, meta, feats)
    else:
        micro, source["micro"] = load_phase2_micro_best(run, cfg, market, meta, feats)
    macro, micro, k, source["seeds"] = pair_seeds(macro, micro)
    return TrainedPolicy(macro_actor=macro, micro_actor=micro, seeds=k, source=source)


def load_pretrained_policy(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                           feats: FeatureSet) -> TrainedPolicy | None:
    """The run's pre-trained hierarchy (Phase 1 Macro + Phase 2 Micro, no RL), the baseline
    that tells what the RL phases add; None when the run lacks either checkpoint."""
    if not (_has_checkpoint(run, 1) and _has_checkpoint(run, 2)):
        return None
    return load_policy(run, cfg, market, meta, feats, upto=2)


# HOST ONLY
def phase_ladder(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                 feats: FeatureSet, policy: TrainedPolicy) -> list[tuple[int, TrainedPolicy]]:
    """The hierarchy after each RL phase before the final ``policy`` (``load_policy``): [(3,
    Phase 3's Macro with Phase 2's Micro), (4, Phase 3's Macro with Phase 4's Micro)], each
    where the run has that phase and ``policy`` came from a later one. With the pre-trained
    hierarchy before them and ``policy`` after, these rungs say what each RL phase added."""
    final = max((p for p in (3, 4, 5)
                 if str(policy.source.get("macro", "")).startswith(f"phase {p}")
                 or str(policy.source.get("micro", "")).startswith(f"phase {p}")), default=2)
    return [(p, load_policy(run, cfg, market, meta, feats, upto=p)) for p in (3, 4)
            if p < final and _has_checkpoint(run, p)]


def uses_rl(policy: TrainedPolicy) -> bool:
    """Did any level of ``policy`` come from an RL phase (3, 4 or 5)?"""
    return not all(str(policy.source.get(level, "")).startswith(("phase 1", "phase 2"))
                   for level in ("macro", "micro"))
