"""Replay buffer in device memory: a flat ring of vector steps (pure init / add_step / sample).

Storage is ``[R, H, ...]``: row r holds one vector step of the H parallel envs, written in
lock-step, and the rows form a ring, so the capacity R·H transitions is set by the config
alone (``rows_for``) and does not grow with the number of envs (an episode-slot buffer needs
whole episodes per env: 4,096 envs x 20 days at least). HER samples a goal *later in the same
episode*, so each stored transition keeps its env's episode number, and the buffer keeps the
global step at which each of an env's recent episodes ended:

    sample (age a, env h) uniformly over the stored R·H transitions  → global step t
    episode e = episode[t mod R, h];  end = its last step (or the newest step while it runs)
    future f uniform on [t, end]  → achieved_goal[f mod R, h]

Every step between t and end is newer than t, so it is still in the ring whenever t is, and an
env has at most R + 1 episodes with a step in the ring, so ``episode_end`` needs R + 1 entries
per env. The original mapped episodes to the previous index and ignored wrap-around (spec
§11.14).
"""

from __future__ import annotations

import math
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
class ReplayBufferState:
    data: Transition       # leaves [R, H, ...]: row t mod R holds global vector step t
    episode: Array         # [R, H] int32 the env's episode number of each stored transition
    episode_end: Array     # [R + 1, H] int32 last global step of env h's episode e, at e mod (R+1)
    env_episode: Array     # [H] int32 each env's running episode number
    steps: Array           # [] int32 vector steps written so far

    @property
    def rows(self) -> int:
        return self.episode.shape[0]

    @property
    def num_envs(self) -> int:
        return self.episode.shape[1]

    @property
    def capacity(self) -> int:
        """Transitions the ring holds when full (R x H)."""
        return self.rows * self.num_envs


class SampledBatch(NamedTuple):
    transition: Transition   # leaves [B, ...]
    env: Array               # [B] int32 the env (write head) that stored it
    step: Array              # [B] int32 the global vector step it was stored at
    episode: Array           # [B] int32 that env's episode number
    future_step: Array       # [B] int32 uniform in [step, the episode's last stored step]
    future_goal: Array       # [B, G] achieved_goal at future_step of the same env


def rows_for(capacity: int, num_envs: int) -> int:
    """Ring rows holding at least ``capacity`` transitions of ``num_envs`` envs (>= 1)."""
    if capacity < 1 or num_envs < 1:
        raise ValueError(f"capacity={capacity} and num_envs={num_envs} must be >= 1")
    return math.ceil(capacity / num_envs)


def init(example: Transition, *, rows: int, num_envs: int) -> ReplayBufferState:
    """Empty ring of ``rows`` vector steps of ``num_envs`` envs, shaped after one unbatched
    ``example`` transition."""
    if rows < 1 or num_envs < 1:
        raise ValueError(f"rows={rows} and num_envs={num_envs} must be >= 1")
    data = jax.tree.map(
        lambda x: jnp.zeros((rows, num_envs, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return ReplayBufferState(
        data=data,
        episode=jnp.zeros((rows, num_envs), jnp.int32),
        episode_end=jnp.zeros((rows + 1, num_envs), jnp.int32),
        env_episode=jnp.zeros((num_envs,), jnp.int32),
        steps=jnp.zeros((), jnp.int32),
    )


def add_step(state: ReplayBufferState, transitions: Transition) -> ReplayBufferState:
    """Write one vector step (leaves [H, ...]) into the oldest row; an env's episode ends
    with a terminated or truncated step."""
    chex.assert_tree_shape_prefix(transitions, (state.num_envs,))
    chex.assert_trees_all_equal_dtypes(
        transitions, jax.tree.map(lambda x: x[0, 0], state.data))
    row = state.steps % state.rows
    done = transitions.terminated | transitions.truncated
    slot = state.env_episode % (state.rows + 1)
    envs = jnp.arange(state.num_envs)
    end = state.episode_end.at[slot, envs].set(
        jnp.where(done, state.steps, state.episode_end[slot, envs]))
    return state.replace(
        data=jax.tree.map(lambda buf, x: buf.at[row].set(x), state.data, transitions),
        episode=state.episode.at[row].set(state.env_episode),
        episode_end=end,
        env_episode=state.env_episode + done.astype(jnp.int32),
        steps=state.steps + 1,
    )


def add_steps(state: ReplayBufferState, transitions: Transition) -> ReplayBufferState:
    """Write T vector steps in order (leaves [T, H, ...])."""
    return jax.lax.scan(lambda s, tr: (add_step(s, tr), None), state, transitions)[0]


def num_transitions(state: ReplayBufferState) -> Array:
    """Number of sampleable transitions (int32 scalar): min(steps, R) x H."""
    return jnp.minimum(state.steps, state.rows) * state.num_envs


def sample(state: ReplayBufferState, key: PRNGKey, batch_size: int) -> SampledBatch:
    """Uniform over stored transitions, plus a "future" step of the same episode for HER.

    The buffer must hold at least one transition (check ``num_transitions`` before sampling).
    """
    index_key, future_key = jax.random.split(key)
    h_num = state.num_envs
    flat = jax.random.randint(index_key, (batch_size,), 0, num_transitions(state), jnp.int32)
    env = flat % h_num
    step = state.steps - 1 - flat // h_num          # age 0 = the newest row
    row = step % state.rows
    episode = state.episode[row, env]
    finished = episode < state.env_episode[env]
    last = jnp.where(finished, state.episode_end[episode % (state.rows + 1), env],
                     state.steps - 1)
    future = jax.random.randint(future_key, (batch_size,), step, last + 1, jnp.int32)
    return SampledBatch(
        transition=jax.tree.map(lambda x: x[row, env], state.data), env=env, step=step,
        episode=episode, future_step=future,
        future_goal=state.data.achieved_goal[future % state.rows, env],
    )
