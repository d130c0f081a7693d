"""Generalised advantage estimation (Schulman et al., 2016, https://arxiv.org/abs/1506.02438).

Outline (reverse scan over t = T-1 .. 0, carry A_{t+1} = 0 at the rollout end):
  δ_t = r_t + γ·(1 - terminated_t)·V(s_{t+1}) - V(s_t)     # truncation still bootstraps
  A_t = δ_t + γλ·(1 - (terminated_t | truncated_t))·A_{t+1}  # never carried across an episode end
  R_t = A_t + V(s_t)
The flags of step t say whether the episode ended *after* step t; the original masked with the
flag of step t+1 (spec §11 item 11) and so leaked advantages across episodes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hrl_sarp_jax.types import Array


def gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    truncated: Array,
    gamma: Array | float,
    lam: Array | float,
) -> tuple[Array, Array]:
    """GAE advantages and λ-returns of a rollout that may span several episodes.

    Args:
      rewards: [T, B] reward of step t.
      values: [T, B] V(s_t).
      next_values: [T, B] V(s_{t+1}) of the true next observation; on an episode end this is
        V(final observation), not V of the auto-reset observation.
      terminated: [T, B] bool, a real end after step t (no bootstrap).
      truncated: [T, B] bool, a time-limit / data-window end after step t (bootstrapped).
      gamma, lam: float32 scalars (may be traced, e.g. under a sweep vmap).

    Returns:
      (advantages [T, B], returns [T, B]) in float32.
    """
    f32 = jnp.float32
    rewards, values, next_values = (jnp.asarray(x, f32) for x in (rewards, values, next_values))
    gamma, lam = jnp.asarray(gamma, f32), jnp.asarray(lam, f32)
    not_term = 1.0 - jnp.asarray(terminated, f32)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(f32)
    deltas = rewards + gamma * not_term * next_values - values

    def step(next_adv: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        delta, cont = xs
        adv = delta + gamma * lam * cont * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(
        step, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values


def normalize_advantages(advantages: Array, eps: float = 1e-8) -> Array:
    """(A - mean) / (std + eps) over all elements; apply ONCE per rollout, before the epochs."""
    advantages = jnp.asarray(advantages, jnp.float32)
    return (advantages - advantages.mean()) / (advantages.std() + eps)
