"""Evaluation-only probe: the trained Macro decides more often than on week ends.

    MACRO_EVERY=weekly|daily|twice|regime python scripts/macro_schedule.py evaluate --run R \
        --markets 40 --market-seed 1000 --no-ladder [--set env.goal_step=S] --tag T
    hrl-sarp compare R:ev0 R:T

``weekly``: the library's schedule (week ends and the window's first day; a test finds it
equal to ``HierarchicalStrategy``); ``daily``: the Macro decides every day; ``twice``: on
week ends and two trading days after each (causal: ``week_end[t - 2]``); ``regime``: on week
ends and on any day its regime call differs from the goal's. Everything else is
``hrl-sarp`` as installed: the script replaces ``HierarchicalStrategy.__call__`` (the agent,
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
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.types import NUM_REGIMES

MODES = ("weekly", "daily", "twice", "regime")


def scheduled_call(mode: str):
    """``HierarchicalStrategy.__call__`` with the Macro on ``mode``'s schedule."""

    def call(self, carry, t, view):
        if self.goal_change is not None:
            raise SystemExit("scripts/macro_schedule.py: env.micro_frequency must be daily")
        params, port = view.params, view.port
        s = params.num_sectors
        i = jnp.asarray(view.i, jnp.int32)
        no_probs = jnp.zeros((NUM_REGIMES,), jnp.float32)
        if not self.macro:
            goal, probs, decide = jnp.asarray(params.fixed_goal, jnp.float32), no_probs, False
        elif mode == "regime":
            new, new_probs = self.macro_decision(carry.macro_params, port, t, params)
            changed = jnp.argmax(new[s:]) != jnp.argmax(carry.goal[s:])
            decide = params.week_end[t] | (i == 0) | changed
            goal = jnp.where(decide, new, carry.goal)
            probs = jnp.where(decide, new_probs, no_probs)
        else:
            if mode == "daily":
                decide = jnp.ones((), bool)
            elif mode == "twice":
                decide = params.week_end[t] | params.week_end[jnp.maximum(t - 2, 0)] | (i == 0)
            else:
                decide = params.week_end[t] | (i == 0)
            goal, probs = jax.lax.cond(
                decide, lambda c: self.macro_decision(c.macro_params, port, t, params),
                lambda c: (c.goal, no_probs), carry)
        if self.micro:
            weights = self.micro_weights(carry.micro_params, port, goal, t, params)
        elif self.value_names > 0:
            weights = common.value_weight_in_sectors(goal[:s], t, params, self.value_names)
        else:
            weights = common.equal_weight_in_sectors(goal[:s], t, params)
        carry = carry.replace(goal=goal, goals=carry.goals.at[i].set(goal),
                              regime_probs=carry.regime_probs.at[i].set(probs),
                              macro_step=carry.macro_step.at[i].set(jnp.asarray(decide, bool)))
        return carry, weights

    return call


@dataclass(frozen=True)
class ScheduledStrategy(agent_mod.HierarchicalStrategy):
    """``HierarchicalStrategy`` with the Macro on ``schedule`` (one of ``MODES``); a class of
    its own, so jit never serves it a program compiled for the library's strategy."""

    schedule: str = "weekly"

    def __call__(self, carry, t, view):
        return scheduled_call(self.schedule)(self, carry, t, view)


if __name__ == "__main__":
    mode = os.environ.get("MACRO_EVERY", "")
    if mode not in MODES:
        sys.exit(f"MACRO_EVERY={mode!r}: set it to one of {', '.join(MODES)}")
    agent_mod.HierarchicalStrategy.__call__ = scheduled_call(mode)
    sys.exit(main(sys.argv[1:]))
