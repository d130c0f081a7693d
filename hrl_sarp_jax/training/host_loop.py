"""The one host loop of every RL phase (Phase 3, the flat baseline and the sweep's PPO runs,
Phase 4, Phase 5): the order in which a phase evaluates its starting policy, trains, validates,
checkpoints under the selection rule and ends.

A phase gives its compiled programs and its bookkeeping as a ``LoopTask``; ``run_loop`` owns
the order, written once:

1. a fresh run (not a resume) with work to do evaluates the starting policy first: its
   per-episode validation Sharpes become the selection rule's start
   (``training.selection.RankedCheckpoints.set_start``) and it is recorded as step 0, so
   'best' never falls below it;
2. training units (a chunk of PPO updates, a chunk of TD3 env steps, a Phase-5 round) until
   the phase's progress reaches ``limit``; after each unit the task says whether a validation
   is due, and each validation is recorded (metrics line, checkpoint, progress line);
3. the checkpointer's writes are waited for and its best and latest steps read
   (``RankedCheckpoints.finish``); a run resumed at its limit evaluates the restored state, so
   every summary has a final validation.

What a unit, a record and a checkpoint hold stays the phase's own (its ``LoopTask``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from hrl_sarp_jax.training.selection import RankedCheckpoints


class LoopTask(Protocol):
    """What one RL phase gives ``run_loop``. ``State`` is the phase's whole training state
    (seeds stacked on a leading [K] axis); an evaluation is ``(record, episodes)`` with the
    per-episode validation Sharpes ``episodes`` [K, E]."""

    def progress(self, state: Any) -> int:
        """Training units done so far (updates, chunks or rounds), read from the state or
        counted by the task; compared with ``run_loop``'s ``limit``."""

    def train(self, state: Any) -> tuple[Any, Any]:
        """One unit: (new state, what ``record`` needs of it, e.g. its metrics)."""

    def due(self, done: int, limit: int) -> bool:
        """Validate after the unit that brought the progress to ``done``?"""

    def evaluate(self, state: Any) -> tuple[Any, np.ndarray]:
        """(record, per-episode validation Sharpes [K, E]) of the state's policy."""

    def record(self, state: Any, done: int, trained: Any, evaluation: Any,
               episodes: np.ndarray) -> None:
        """Log, checkpoint and report one validation: after the unit that brought the
        progress to ``done`` (``trained``: its ``train`` output), or of the starting policy
        (``done`` 0, ``trained`` None)."""


# HOST ONLY (not jittable)
def run_loop(task: LoopTask, ranked: RankedCheckpoints, state: Any, *, limit: int,
             evaluate_start: bool) -> tuple[Any, Any, np.ndarray]:
    """Train ``state`` to ``limit`` units (module docstring). ``evaluate_start``: evaluate and
    record the starting policy first (a fresh run; a resume restores the start it saved).
    Returns (final state, final evaluation record, its per-episode Sharpes [K, E])."""
    last = None
    if evaluate_start and limit > 0:
        last = task.evaluate(state)
        ranked.set_start(last[1])
        task.record(state, 0, None, *last)
    done = task.progress(state)
    while done < limit:
        state, trained = task.train(state)
        done = task.progress(state)
        if task.due(done, limit):
            last = task.evaluate(state)
            task.record(state, done, trained, *last)
    ranked.finish()
    if last is None:  # resumed at the limit: the restored state's validation
        last = task.evaluate(state)
    return state, *last
