"""Evaluation-only probe: the trained Macro decides more often than on week ends.

    MACRO_EVERY=weekly|daily|twice|regime python scripts/macro_schedule.py evaluate --run R \
        --markets 40 --market-seed 1000 --no-ladder [--set env.goal_step=S] --tag T
    hrl-sarp compare R:ev0 R:T

``weekly``: the library's schedule (week ends and the window's first day; a test finds it
equal to ``HierarchicalStrategy``); ``daily``: the Macro decides every day; ``twice``: on
week ends and two trading days after each (causal: ``week_end[t - 2]``); ``regime``: on week
ends and on any day its regime call differs from the goal's. Everything else is
``hrl-sarp`` as installed: the script replaces ``HierarchicalStrategy.goal_in_force`` (the agent,
its ensemble, the pre-trained hierarchy and the Macro-only strategies) before handing the
arguments to the CLI; every classical baseline is unchanged. Not a library option: measured
without a gain (docs/status.md, "The Macro deciding more often than weekly").
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp

import hrl_sarp_jax.evaluation.agent as agent_mod
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.types import NUM_REGIMES

MODES = ("weekly", "daily", "twice", "regime")


def scheduled_goal(mode: str):
    """``HierarchicalStrategy.goal_in_force`` with the Macro on ``mode``'s schedule."""
    library = agent_mod.HierarchicalStrategy.goal_in_force

    def goal_in_force(self, carry, t, i, view):
        if self.goal_change is not None:
            raise SystemExit("scripts/macro_schedule.py: env.micro_frequency must be daily")
        if not self.macro or mode == "weekly":
            return library(self, carry, t, i, view)
        params, port = view.params, view.port
        no_probs = jnp.zeros((NUM_REGIMES,), jnp.float32)
        if mode == "regime":
            s = params.num_sectors
            new, new_probs = self.macro_decision(carry.macro_params, port, t, params)
            changed = jnp.argmax(new[s:]) != jnp.argmax(carry.goal[s:])
            decide = params.week_end[t] | (i == 0) | changed
            return (jnp.where(decide, new, carry.goal), jnp.where(decide, new_probs, no_probs),
                    decide)
        decide = (jnp.ones((), bool) if mode == "daily" else
                  params.week_end[t] | params.week_end[jnp.maximum(t - 2, 0)] | (i == 0))
        goal, probs = jax.lax.cond(
            decide, lambda c: self.macro_decision(c.macro_params, port, t, params),
            lambda c: (c.goal, no_probs), carry)
        return goal, probs, decide

    return goal_in_force


@dataclass(frozen=True)
class ScheduledStrategy(agent_mod.HierarchicalStrategy):
    """``HierarchicalStrategy`` with the Macro on ``schedule`` (one of ``MODES``); a class of
    its own, so jit never serves it a program compiled for the library's strategy."""

    schedule: str = "weekly"

    def goal_in_force(self, carry, t, i, view):
        return scheduled_goal(self.schedule)(self, carry, t, i, view)


if __name__ == "__main__":
    mode = os.environ.get("MACRO_EVERY", "")
    if mode not in MODES:
        sys.exit(f"MACRO_EVERY={mode!r}: set it to one of {', '.join(MODES)}")
    agent_mod.HierarchicalStrategy.goal_in_force = scheduled_goal(mode)
    sys.exit(main(sys.argv[1:]))
