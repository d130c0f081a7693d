"""The phase registry: ``PHASES[k]`` runs curriculum phase k (the CLI dispatches through it).

# HOST ONLY (not jittable)
Each entry is ``PhaseSpec(name, run)`` with ``run(cfg, market, meta, feats, run, *, resume,
epoch_limit, progress) -> PhaseResult``. Phases 3-5 (PPO, TD3+HER, joint fine-tuning) register
here when they exist; until then ``get_phase`` says so in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

from hrl_sarp_jax.errors import HrlSarpError
from hrl_sarp_jax.training.runner import PhaseResult, run_pretrain_phase

ALL_PHASES = ("1", "2", "3", "4", "5", "all")


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


PHASES[3] = PhaseSpec("Macro PPO with the Micro agent frozen", _run_phase3)

_PLANNED = {3: "Macro PPO with the Micro agent frozen", 4: "Micro TD3+HER with the Macro agent "
            "frozen", 5: "joint fine-tuning"}


def get_phase(phase: str | int) -> tuple[int, PhaseSpec]:
    """(number, spec) for ``phase`` ('1'..'5' or 'all'); PhaseNotAvailableError if not built yet."""
    text = str(phase)
    if text == "all":
        missing = [k for k in _PLANNED if k not in PHASES]
        raise PhaseNotAvailableError(
            f"--phase all is not implemented yet (phases {', '.join(map(str, missing))} are "
            f"missing); run the phases one at a time")
    if not text.isdigit() or int(text) not in {*PHASES, *_PLANNED}:
        raise PhaseNotAvailableError(
            f"unknown phase {phase!r}; choose one of {', '.join(ALL_PHASES)}")
    k = int(text)
    if k not in PHASES:
        raise PhaseNotAvailableError(
            f"phase {k} ({_PLANNED[k]}) is not implemented yet; available phases: "
            f"{', '.join(str(p) for p in sorted(PHASES))}")
    return k, PHASES[k]
