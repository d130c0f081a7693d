"""The phase registry: ``PHASES[k]`` runs curriculum phase k (the CLI dispatches through it).

# HOST ONLY (not jittable)
Each entry is ``PhaseSpec(name, run)`` with ``run(cfg, market, meta, feats, run, *, resume,
epoch_limit, progress) -> PhaseResult`` (``epoch_limit``: epochs for 1-2, updates for 3, chunks
for 4, rounds for 5 -- a simulated interruption in tests).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from hrl_sarp_jax.errors import HrlSarpError
from hrl_sarp_jax.training.runner import PhaseResult, run_pretrain_phase

ALL_PHASES = ("1", "2", "3", "4", "5", "all", "flat")


# HOST ONLY
def check_training_config(cfg) -> None:
    """Every data-free check of the keys a training run reads, before any phase starts (each a
    ConfigError naming the key): env.* (``envs.params.check_env_config``), networks.stock_*
    and attention sizes, the pre-training, PPO, TD3, joint and pool settings and
    ``train.checkpoint`` / ``checkpoint_margin`` / ``validation``. Phases check again where
    they use a key."""

    from hrl_sarp_jax.agents.ppo import PPOHParams
    from hrl_sarp_jax.agents.td3 import TD3HParams
    from hrl_sarp_jax.checkpointing import CHECKPOINT_RULES
    from hrl_sarp_jax.envs.params import check_env_config
    from hrl_sarp_jax.errors import ConfigError
    from hrl_sarp_jax.networks.stocks import check_network_config
    from hrl_sarp_jax.training.market_pool import check_pool_config
    from hrl_sarp_jax.training.rl_macro import Phase3Spec
    from hrl_sarp_jax.training.rl_micro import Phase4Spec
    from hrl_sarp_jax.training.runner import check_macro_allocation, check_pretrain_config
    from hrl_sarp_jax.training.validation import check_kind

    check_env_config(cfg.env)
    check_network_config(cfg.networks)
    check_pretrain_config(cfg.train.macro_pretrain, "macro_pretrain")
    check_pretrain_config(cfg.train.micro_pretrain, "micro_pretrain")
    check_macro_allocation(cfg)
    Phase3Spec.from_config(cfg.train.ppo, updates_per_chunk=1)
    PPOHParams.from_config(cfg.train.ppo)
    Phase4Spec.from_config(cfg.train.td3)
    TD3HParams.from_config(cfg.train.td3)
    check_pool_config(cfg.train.pool, cfg.train.ppo.num_envs)
    check_kind(cfg.train.validation)
    if cfg.train.checkpoint not in CHECKPOINT_RULES:
        raise ConfigError(f"train.checkpoint = {cfg.train.checkpoint!r} is not one of "
                          f"{', '.join(CHECKPOINT_RULES)}")


class PhaseNotAvailableError(HrlSarpError):
    """The requested phase is not implemented (yet)."""


class PhaseSpec(NamedTuple):
    name: str
    run: Callable[..., PhaseResult]


PHASES: dict[int, PhaseSpec] = {
    1: PhaseSpec("Macro supervised pre-training", partial(run_pretrain_phase, 1)),
    2: PhaseSpec("Micro supervised pre-training", partial(run_pretrain_phase, 2)),
}

def _run_phase3(*args, **kwargs) -> PhaseResult:
    from hrl_sarp_jax.training.rl_macro import run_phase3_entry  # heavy: imported on use

    return run_phase3_entry(*args, **kwargs)


def _run_phase4(*args, **kwargs) -> PhaseResult:
    from hrl_sarp_jax.training.rl_micro import run_phase4_entry

    return run_phase4_entry(*args, **kwargs)


def _run_phase5(*args, **kwargs) -> PhaseResult:
    from hrl_sarp_jax.training.joint import run_phase5_entry

    return run_phase5_entry(*args, **kwargs)


PHASES[3] = PhaseSpec("Macro PPO with the Micro agent frozen", _run_phase3)
PHASES[4] = PhaseSpec("Micro TD3+HER with the Macro agent frozen", _run_phase4)
PHASES[5] = PhaseSpec("alternating joint fine-tuning of both agents", _run_phase5)


FIRST_READER: dict[str, int] = {
    "train.micro_pretrain": 2, "train.ppo": 3, "train.td3": 4, "train.joint": 5}
"""The config sections that no phase before the given one reads (every other key is read by
Phase 1 already: data, features, env, networks, the pool, seeds, checkpoint rules)."""


def sections_free_after(keep: int) -> tuple[str, ...]:
    """The sections a run branched after Phase ``keep`` may change (``checkpointing.branch_run``):
    those whose first reader comes later. The flat baseline is never kept, so it is retrained."""
    if keep not in PHASES:
        raise PhaseNotAvailableError(f"--branch RUN:K keeps phases 1..K: K must be one of "
                                     f"{', '.join(map(str, sorted(PHASES)))}, not {keep}")
    return tuple(sec for sec, first in FIRST_READER.items() if first > keep)


def _run_flat(*args, **kwargs) -> PhaseResult:
    from hrl_sarp_jax.training.flat import run_flat_entry

    return run_flat_entry(*args, **kwargs)


class FlatPhase(NamedTuple):
    number: str
    name: str
    run: Callable[..., PhaseResult]


FLAT_PHASE = FlatPhase("flat", "flat single-level PPO baseline (no hierarchy)", _run_flat)
"""The evaluation's flat RL baseline, trained into ``phaseflat/`` of the same run (not one of
the curriculum phases; ``--phase all`` does not include it, the main job does)."""


def get_phases(phase: str | int) -> list[tuple[int | str, PhaseSpec | FlatPhase]]:
    """[(number, spec)] to run for ``phase`` ('1'..'5', 'all' = 1..5 in order, or 'flat')."""
    text = str(phase)
    if text == "all":
        return [(k, PHASES[k]) for k in sorted(PHASES)]
    if text == FLAT_PHASE.number:
        return [(FLAT_PHASE.number, FLAT_PHASE)]
    if not text.isdigit() or int(text) not in PHASES:
        raise PhaseNotAvailableError(
            f"unknown phase {phase!r}; choose one of {', '.join(ALL_PHASES)}")
    return [(int(text), PHASES[int(text)])]


def get_phase(phase: str | int) -> tuple[int, PhaseSpec]:
    """(number, spec) of one phase ('1'..'5'); 'all' is ``get_phases``'s job."""
    if str(phase) == "all":
        raise PhaseNotAvailableError("--phase all runs several phases: use get_phases")
    return get_phases(phase)[0]
