"""Episode-aware replay buffer in device memory (pure init / add_step / add_episodes / sample).

Storage is ``[C, L, ...]`` (C episode slots of at most L steps) plus a per-slot ``length``, so
HER can sample goals *inside* an episode. The slots are split between H write heads (one per
parallel env): head h owns slots ``h·C/H … (h+1)·C/H - 1`` and cycles through them as a ring, so
parallel envs never write into the same slot and wrap-around needs no global bookkeeping (the
original mapped episodes to the previous index and ignored wrap-around, spec §11.14).
A slot's ``length`` is rewritten on every write, so when a head wraps onto its oldest episode the
stale steps beyond the new length can never be sampled.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.types import Array, PRNGKey, PyTree


class Transition(NamedTuple):
    """One stored step (leaves unbatched here; batched with leading axes in the buffer)."""

    obs: PyTree              # observation, goal included
    action: Array            # [N]
    reward: Array            # [] the goal-independent part of the reward
    goal_reward: Array       # [] the goal-dependent part (HER recomputes it)
    next_obs: PyTree         # true next observation (final observation on an episode end)
    terminated: Array        # [] bool
    truncated: Array         # [] bool
    achieved_goal: Array     # [G] goal achieved after the step, i.e. at next_obs

    @property
    def total_reward(self) -> Array:
        return self.reward + self.goal_reward


@struct.dataclass
class EpisodeBufferState:
    data: Transition      # leaves [C, L, ...]
    length: Array         # [C] int32 steps stored per slot (0: never written)
    head_pos: Array       # [H] int32 ring position of each head inside its own block of slots
    head_step: Array      # [H] int32 steps written so far into the head's current slot

    @property
    def capacity(self) -> int:
        return self.length.shape[0]

    @property
    def max_len(self) -> int:
        return self.data.reward.shape[1]

    @property
    def num_heads(self) -> int:
        return self.head_pos.shape[0]


class SampledBatch(NamedTuple):
    transition: Transition   # leaves [B, ...]
    episode: Array           # [B] int32 slot index
    step: Array              # [B] int32 step inside the episode, < length[episode]
    future_step: Array       # [B] int32, uniform in [step, length[episode] - 1]
    future_goal: Array       # [B, G] achieved_goal at future_step of the same episode


def init(
    example: Transition, *, capacity_episodes: int, max_len: int, num_heads: int = 1
) -> EpisodeBufferState:
    """Empty buffer shaped after one unbatched ``example`` transition.

    ``capacity_episodes`` must be a multiple of ``num_heads`` (slots per head = C / H).
    """
    if capacity_episodes % num_heads or capacity_episodes < num_heads:
        raise ValueError(
            f"capacity_episodes={capacity_episodes} must be a positive multiple of "
            f"num_heads={num_heads}"
        )
    data = jax.tree.map(
        lambda x: jnp.zeros((capacity_episodes, max_len, *jnp.shape(x)), jnp.asarray(x).dtype),
        example,
    )
    return EpisodeBufferState(
        data=data,
        length=jnp.zeros((capacity_episodes,), jnp.int32),
        head_pos=jnp.zeros((num_heads,), jnp.int32),
        head_step=jnp.zeros((num_heads,), jnp.int32),
    )


def _head_slots(state: EpisodeBufferState) -> Array:
    per_head = state.capacity // state.num_heads
    return jnp.arange(state.num_heads, dtype=jnp.int32) * per_head + state.head_pos


def _check(state: EpisodeBufferState, batch: Transition, prefix: tuple[int, ...]) -> None:
    chex.assert_tree_shape_prefix(batch, prefix)
    first = jax.tree.map(lambda x: x[(0,) * len(prefix)], state.data)
    chex.assert_trees_all_equal_dtypes(batch, first)


def add_step(state: EpisodeBufferState, transitions: Transition) -> EpisodeBufferState:
    """Append one step per head (leaves [H, ...]).

    A head moves to its next slot after a step that is terminated, truncated or the L-th one.
    """
    _check(state, transitions, (state.num_heads,))
    slot, step = _head_slots(state), state.head_step
    data = jax.tree.map(lambda buf, x: buf.at[slot, step].set(x), state.data, transitions)
    step1 = step + 1
    length = state.length.at[slot].set(step1)
    done = transitions.terminated | transitions.truncated | (step1 >= state.max_len)
    per_head = state.capacity // state.num_heads
    return state.replace(
        data=data,
        length=length,
        head_pos=jnp.where(done, (state.head_pos + 1) % per_head, state.head_pos),
        head_step=jnp.where(done, 0, step1).astype(jnp.int32),
    )


def add_episodes(
    state: EpisodeBufferState, episodes: Transition, lengths: Array
) -> EpisodeBufferState:
    """Store one whole episode per head (leaves [H, L, ...], ``lengths`` [H] int32).

    Head h writes into its current slot and moves on; a head with length 0 is left unchanged.
    A partial step-wise episode in progress on a head is replaced, so do not interleave the
    two ways of adding on one head in the middle of an episode.
    """
    _check(state, episodes, (state.num_heads, state.max_len))
    lengths = jnp.asarray(lengths, jnp.int32)
    valid = lengths > 0
    slot = _head_slots(state)

    def write(buf: Array, x: Array) -> Array:
        keep = valid.reshape((-1,) + (1,) * (x.ndim - 1))
        return buf.at[slot].set(jnp.where(keep, x, buf[slot]))

    per_head = state.capacity // state.num_heads
    return state.replace(
        data=jax.tree.map(write, state.data, episodes),
        length=state.length.at[slot].set(jnp.where(valid, lengths, state.length[slot])),
        head_pos=jnp.where(valid, (state.head_pos + 1) % per_head, state.head_pos),
        head_step=jnp.where(valid, 0, state.head_step).astype(jnp.int32),
    )


def num_transitions(state: EpisodeBufferState) -> Array:
    """Number of sampleable transitions (int32 scalar)."""
    return jnp.sum(state.length)


def sample(state: EpisodeBufferState, key: PRNGKey, batch_size: int) -> SampledBatch:
    """Uniform over stored transitions, plus a "future" step of the same episode for HER.

    The buffer must hold at least one transition (check ``num_transitions`` before sampling).
    """
    episode_key, step_key, future_key = jax.random.split(key, 3)
    lengths = state.length
    logits = jnp.where(lengths > 0, jnp.log(jnp.maximum(lengths, 1).astype(jnp.float32)), -jnp.inf)
    # P(episode) ∝ length, then a uniform step: every stored transition is equally likely.
    episode = jax.random.categorical(episode_key, logits, shape=(batch_size,)).astype(jnp.int32)
    ep_len = lengths[episode]
    step = jax.random.randint(step_key, (batch_size,), 0, ep_len, jnp.int32)
    future = jax.random.randint(future_key, (batch_size,), step, ep_len, jnp.int32)
    transition = jax.tree.map(lambda x: x[episode, step], state.data)
    return SampledBatch(
        transition=transition, episode=episode, step=step, future_step=future,
        future_goal=state.data.achieved_goal[episode, future],
    )
