"""Hindsight Experience Replay, "future" strategy (Andrychowicz et al., 2017,
https://arxiv.org/abs/1707.01495), as a pure function on a sampled batch.

Outline:
  with probability her_ratio (k = 4 → 4/5) per sample:
    g' = achieved goal at a uniform step f ∈ [t, len - 1] of the same episode (buffers.sample)
    obs, next_obs ← set_goal_fn(·, g')            # the goal the networks see is rewritten
    reward        ← stored goal-independent part + goal_reward_fn(achieved_goal_t, g')
The original only changed the reward and left the old goal inside the state (spec §11.14).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hrl_sarp_jax.agents.buffers import Transition
from hrl_sarp_jax.types import Array, PRNGKey, PyTree


def her_ratio_from_k(k: int) -> float:
    """Fraction of relabelled samples for k relabelled goals per real one: k / (k + 1)."""
    return k / (k + 1)


def relabel(
    batch: Transition,
    key: PRNGKey,
    *,
    future_goals: Array,
    goal_reward_fn: Callable[[Array, Array], Array],
    set_goal_fn: Callable[[PyTree, Array], PyTree],
    her_ratio: Array | float,
) -> Transition:
    """Relabel a random ``her_ratio`` share of a batch with future achieved goals.

    Args:
      batch: transitions, leaves [B, ...].
      key: consumed for the Bernoulli(her_ratio) choice of samples to relabel.
      future_goals: [B, G] candidate goals (``SampledBatch.future_goal``).
      goal_reward_fn: (achieved [B, G], goal [B, G]) -> goal-dependent reward [B].
      set_goal_fn: (obs pytree [B, ...], goal [B, G]) -> obs with the goal replaced.
      her_ratio: float32 scalar in [0, 1] (may be traced).
    Returns:
      The batch with obs, next_obs and goal_reward rewritten on the chosen samples; the others
      are returned unchanged, bit for bit.
    """
    b = batch.reward.shape[0]
    chosen = jax.random.uniform(key, (b,), jnp.float32) < her_ratio

    def pick(new: Array, old: Array) -> Array:
        return jnp.where(chosen.reshape((b,) + (1,) * (old.ndim - 1)), new, old)

    new_goal_reward = jnp.asarray(goal_reward_fn(batch.achieved_goal, future_goals), jnp.float32)
    return batch._replace(
        obs=jax.tree.map(pick, set_goal_fn(batch.obs, future_goals), batch.obs),
        next_obs=jax.tree.map(pick, set_goal_fn(batch.next_obs, future_goals), batch.next_obs),
        goal_reward=pick(new_goal_reward.astype(batch.goal_reward.dtype), batch.goal_reward),
    )
