"""Phase 4: Micro TD3 + HER in MicroEnv, goals set each calendar week by a frozen Macro policy
(or a sampled goal source), as ONE jitted function per chunk.

Outline (``run_chunk``, one seed; vmap it over seeds x hparams, one compile):
  repeat steps_per_chunk times (lax.scan):
    a   = masked_softmax(logits_π(s) + σ(updates)·ε)            # exploration in logit space
    s'  = vmap(env.step)(s, a)  (E envs, gymnax auto-reset; next_obs = final_observation)
    buffer ← (s, a, r - r_goal, r_goal, s', terminated, truncated, achieved_goal)
    if stored >= warmup: U times  (counters shared by all seeds: seeds_chunk)
        batch = sample(buffer) with a "future" goal of the same episode
        batch = HER(batch, ratio k/(k+1)): goal rewritten in obs AND next_obs, r_goal recomputed
        TD3 update (truncation is not termination: only `terminated` stops the bootstrap)
The original Phase 4 crashed on its first transition (an 11-D achieved goal into a 14-D slot,
spec §5.6), conditioned the agent on one goal per multi-year episode and rewarded another
(§11.21), and its HER never wrote the relabelled goal into the state (§11.14).

Observations in the replay buffer are *compact*: ``CompactObs(day, weights, goal)``. The flat
MicroEnv observation is (stock_features[day], tradable[day], weights, (cash, drawdown), goal),
so everything the networks read from it is a function of (day, weights, goal) and the market
arrays in EnvParams; storing the day index instead of [N, 22] features makes a transition ~70x
smaller (55 stocks: 0.6 kB instead of 11 kB for obs + next_obs). ``expand`` rebuilds the
network inputs with ``networks.inputs.micro_inputs`` (features ⊕ own-sector goal share ⊕
current weight), at acting and at training time alike; a test checks it equals the inputs
built from the env's flat observation. Cash and drawdown are not network inputs.

Host side: ``run_phase4`` (checkpoints, resume, validation, summary) and ``bench_phase4``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrl_sarp_jax.agents import buffers
from hrl_sarp_jax.agents.her import her_ratio_from_k, relabel
from hrl_sarp_jax.agents.policies import macro_action
from hrl_sarp_jax.agents.td3 import TD3, TD3Batch, TD3HParams, TD3State, make_td3
from hrl_sarp_jax.config import Config, NetworkConfig, TD3Config
from hrl_sarp_jax.envs.micro import MicroEnv, MicroState
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.envs.params import EnvParams, seed_axes
from hrl_sarp_jax.envs.rewards import goal_reward
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES
from hrl_sarp_jax.finance.metrics import block_sharpes, sharpe
from hrl_sarp_jax.networks.inputs import micro_inputs
from hrl_sarp_jax.networks.micro import MicroActor, MicroCritic
from hrl_sarp_jax.training import validation
from hrl_sarp_jax.training.host_loop import run_loop
from hrl_sarp_jax.training.programs import (
    RUN_ONCE_OPTIONS,
    compile_ahead,
    compiled_flops,
    jit_once,
)
from hrl_sarp_jax.training.selection import DAYS_PER_WEEK, RankedCheckpoints
from hrl_sarp_jax.training.sharding import (
    check_member_axis,
    seed_mesh_for,
    shard_seeds,
    to_host,
)
from hrl_sarp_jax.types import NUM_REGIMES, Array, Params, PRNGKey
from hrl_sarp_jax.utils.trees import first_member, repeat_members

_F32 = jnp.float32
_I32 = jnp.int32
Metrics = dict[str, Array]

CHECKPOINT_METRICS = ("val_goal_alignment", "val_sharpe")
"""The choices of ``train.td3.checkpoint_metric`` (default ``val_sharpe``: goal alignment can
rise while the hierarchy's net Sharpe falls and turnover triples, docs/status.md). The summary
reports both, next to the equal-weight figures on the same episodes."""


# --------------------------------------------------------------------------- static config


@dataclass(frozen=True)
class Phase4Spec:
    """Static shape of the Phase-4 program (hashable; changing it recompiles)."""

    num_envs: int = 8
    """E parallel MicroEnvs (also the number of buffer write heads)."""
    steps_per_chunk: int = 64
    """Vector env steps per compiled call (E env-steps each)."""
    updates_per_step: int = 1
    """U TD3 updates after each vector env step once the buffer is warm."""
    batch_size: int = 256
    buffer_episodes: int = 512
    """Replay capacity in episodes of the full length: buffer_episodes x episode days
    transitions, held as a ring of whole vector steps (``buffer_rows``)."""
    warmup_transitions: int = 2_000
    """Stored transitions before the first update (the actor still acts, with noise)."""
    num_critics: int = 2
    policy_delay: int = 2
    max_grad_norm: float = 1.0
    explore_decay_updates: int = 100_000
    actor_warmup_updates: int = 0
    """TD3 updates before the actor first moves (critics only; see agents.td3.make_td3)."""
    anchored: bool = False
    """The actor's loss holds it near the actor Phase 4 starts from (``train.td3.anchor_kl_coef``
    > 0; see agents.td3.make_td3)."""
    eval_episodes: int = 16
    """Validation episodes, started at evenly spaced days of the validation window."""
    eval_block_days: int = 0
    """0: each validation episode's Sharpe is one per-episode statistic. B > 0 (``train.validation:
    continuous``, one episode through the window): its consecutive blocks of B days are
    (``finance.metrics.block_index``; ``validation.daily_plan``)."""

    def buffer_rows(self, episode_days: int) -> int:
        """Ring rows (vector steps of num_envs transitions) for ``buffer_episodes`` episodes of
        ``episode_days`` steps, rounded up: the capacity does not grow with the env count."""
        return buffers.rows_for(self.buffer_episodes * int(episode_days), self.num_envs)

    # HOST ONLY
    @classmethod
    def from_config(cls, td3: TD3Config, **overrides: Any) -> Phase4Spec:
        """Spec from ``train.td3`` (num_envs, batch, buffer, delay, clip, updates per step,
        warm-up); the exploration noise decays over the first half of the planned updates.
        ``overrides`` win (ranges: ``config_ranges``; an unknown checkpoint metric is a
        ConfigError)."""
        if td3.checkpoint_metric not in CHECKPOINT_METRICS:
            raise ConfigError(f"train.td3.checkpoint_metric = {td3.checkpoint_metric!r} is not "
                              f"one of {', '.join(CHECKPOINT_METRICS)}")
        vec_steps = max(1, td3.total_env_steps // max(td3.num_envs, 1))
        kw: dict[str, Any] = {
            "num_envs": td3.num_envs, "batch_size": td3.batch_size,
            "buffer_episodes": td3.buffer_episodes, "policy_delay": td3.policy_delay,
            "max_grad_norm": td3.max_grad_norm,
            "updates_per_step": int(td3.updates_per_step),
            "warmup_transitions": int(td3.warmup_transitions),
            "explore_decay_updates": max(1, vec_steps * int(td3.updates_per_step) // 2),
            "actor_warmup_updates": int(td3.actor_warmup_updates),
            "anchored": float(td3.anchor_kl_coef) > 0,
        }
        kw.update(overrides)
        return cls(**kw)


@struct.dataclass
class Phase4HParams:
    """Dynamic hyperparameters (float32 leaves; vmappable over a sweep)."""

    td3: TD3HParams
    her_ratio: Array    # share of replayed samples relabelled with a future goal (k/(k+1))

    # HOST ONLY
    @classmethod
    def from_config(cls, cfg: TD3Config) -> Phase4HParams:
        return cls(td3=TD3HParams.from_config(cfg),
                   her_ratio=jnp.asarray(her_ratio_from_k(cfg.her_k), _F32))


# --------------------------------------------------------------------------- observations


class CompactObs(NamedTuple):
    """What the Micro networks read from a MicroEnv observation (leading axes allowed)."""

    day: Array       # [] int32 decision day t (features and tradable mask are rows t)
    weights: Array   # [N] current (drifted) stock weights
    goal: Array      # [G] sector weights ⊕ regime one-hot


class MicroInputs(NamedTuple):
    """Network inputs for one example (leading axes when batched)."""

    stock: Array     # [N, 24] micro_inputs: features ⊕ own-sector goal share ⊕ current weight
    goal: Array      # [G]
    mask: Array      # [N] bool tradable


def compact_from_state(state: MicroState) -> CompactObs:
    """The compact observation of a MicroEnv state (what ``env.get_obs`` flattens)."""
    return CompactObs(state.t.astype(_I32), state.port.weights.astype(_F32),
                      state.goal.astype(_F32))


def compact_from_flat(layout: MicroObsLayout, obs: Array, day: Array) -> CompactObs:
    """Decode weights and goal from a flat observation [.., D]; ``day`` is not in it."""
    sl = layout.slices
    return CompactObs(jnp.asarray(day, _I32), obs[..., sl["weights"]], obs[..., sl["goal"]])


def set_compact_goal(obs: CompactObs, goal: Array) -> CompactObs:
    """HER goal rewrite for compact observations (``envs.obs.set_goal`` for flat ones)."""
    return obs._replace(goal=jnp.asarray(goal, obs.goal.dtype))


def expand(obs: CompactObs, params: EnvParams) -> MicroInputs:
    """One example's network inputs from the market rows of ``obs.day``."""
    mask = params.tradable[obs.day]
    x = micro_inputs(params.stock_features[obs.day], mask, params.stock_sector, obs.goal,
                     obs.weights)
    return MicroInputs(x, obs.goal, mask)


def expand_batch(obs: CompactObs, params: EnvParams) -> MicroInputs:
    """``expand`` over a leading batch axis."""
    return jax.vmap(expand, in_axes=(0, None))(obs, params)


# --------------------------------------------------------------------------- networks


class Networks(NamedTuple):
    actor: MicroActor
    critic: MicroCritic


def make_networks(net: NetworkConfig) -> Networks:
    return Networks(MicroActor(net), MicroCritic(net))


def _td3(nets: Networks, spec: Phase4Spec) -> TD3:
    """TD3 on batched MicroInputs: actor -> (logits [B, N], mask), critic -> q [B]."""
    actor, critic = nets

    def actor_apply(params: Params, inp: MicroInputs) -> tuple[Array, Array]:
        pol = jax.vmap(lambda x, g, m: actor.apply(params, x, g, m))(*inp)
        return pol.logits, inp.mask

    def critic_apply(params: Params, inp: MicroInputs, action: Array) -> Array:
        return jax.vmap(lambda x, g, m, a: critic.apply(params, x, g, a, m))(
            inp.stock, inp.goal, inp.mask, action)

    def actor_init(key: PRNGKey, inp: MicroInputs) -> Params:
        return actor.init(key, inp.stock[0], inp.goal[0], inp.mask[0])

    def critic_init(key: PRNGKey, inp: MicroInputs, action: Array) -> Params:
        return critic.init(key, inp.stock[0], inp.goal[0], action[0], inp.mask[0])

    return make_td3(actor_apply, critic_apply, actor_init=actor_init, critic_init=critic_init,
                    num_critics=spec.num_critics, policy_delay=spec.policy_delay,
                    max_grad_norm=spec.max_grad_norm,
                    explore_decay_updates=spec.explore_decay_updates,
                    actor_warmup_updates=spec.actor_warmup_updates, anchored=spec.anchored)


def actor_weights(nets: Networks, actor_params: Params, inp: MicroInputs) -> Array:
    """Deterministic weights [B, N] of the actor on batched inputs."""
    return jax.vmap(lambda x, g, m: nets.actor.apply(actor_params, x, g, m).weights)(*inp)


# --------------------------------------------------------------------------- state


@struct.dataclass
class Phase4State:
    """One seed's Phase-4 state (leading axis K when vmapped)."""

    agent: TD3State
    buffer: buffers.ReplayBufferState
    env_state: MicroState        # [E]
    ep_return: Array             # [E] float32 return of each env's running episode
    ep_length: Array             # [E] int32
    env_steps: Array             # [] int32 transitions collected so far
    episodes: Array              # [] int32 finished episodes
    key: Array                   # [2] uint32 raw key data (checkpointable)


class LockstepClock(NamedTuple):
    """The counters that decide Phase 4's control flow (warm-up, policy delay). Every seed and
    sweep point steps together, so one unbatched clock serves them all: passed with
    ``in_axes=None`` to the vmapped chunk (``seeds_chunk``), the conds on it execute one branch,
    where the per-seed counters (batched under vmap) made every cond run both branches and
    select (a warm-up step cost 89 ms instead of 2.8 ms). Same values either way."""

    transitions: Array  # int32 [] replay transitions: stored at the chunk's start + added since
    updates: Array      # int32 [] TD3 updates done per seed (TD3State.step)


def clock_of(state: Phase4State) -> LockstepClock:
    """One seed's clock: its buffer's transitions and its update count (int32 scalars)."""
    return LockstepClock(buffers.num_transitions(state.buffer), state.agent.step)


class Phase4(NamedTuple):
    """Pure functions of Phase 4 (jit / vmap them on the host)."""

    init: Callable[..., Phase4State]
    run_chunk: Callable[..., tuple[Phase4State, Metrics]]
    evaluate: Callable[..., Metrics]
    td3: TD3
    spec: Phase4Spec
    nets: Networks
    walk: Callable[..., tuple[Array, Array]]


def _example_transition(n: int, g: int) -> buffers.Transition:
    obs = CompactObs(jnp.zeros((), _I32), jnp.zeros((n,), _F32), jnp.zeros((g,), _F32))
    z = jnp.zeros((), _F32)
    f = jnp.zeros((), bool)
    return buffers.Transition(obs, jnp.zeros((n,), _F32), z, z, obs, f, f, jnp.zeros((g,), _F32))


def replay_batch(buf: buffers.ReplayBufferState, key: PRNGKey, env_params: EnvParams,
                 hp: Phase4HParams, batch_size: int) -> TD3Batch:
    """Sample B transitions, HER-relabel a ``hp.her_ratio`` share with a future achieved goal of
    the same episode (goal rewritten in obs and next_obs, goal reward recomputed with
    ``envs.rewards.goal_reward``) and expand them into the TD3 batch the update consumes."""
    sample_key, her_key = jax.random.split(key)
    sampled = buffers.sample(buf, sample_key, batch_size)
    s = env_params.num_sectors
    rp = env_params.reward
    tr = relabel(sampled.transition, her_key, future_goals=sampled.future_goal,
                 goal_reward_fn=lambda achieved, goal: goal_reward(achieved[..., :s], goal, rp),
                 set_goal_fn=set_compact_goal, her_ratio=hp.her_ratio)
    return TD3Batch(expand_batch(tr.obs, env_params), tr.action, tr.total_reward,
                    expand_batch(tr.next_obs, env_params), tr.terminated)


# --------------------------------------------------------------------------- the programs


class Phase4Model(NamedTuple):
    """What Phase 4's pure functions close over (static: not traced)."""

    env: MicroEnv
    nets: Networks
    spec: Phase4Spec
    td3: TD3


def init_state(m: Phase4Model, key: PRNGKey, env_params: EnvParams,
               actor_params: Params | None = None) -> Phase4State:
    """A fresh seed: reset E envs, a random TD3 agent (``actor_params``, e.g. the Phase-2 best
    actor, replaces its actor and target, and the anchor of an anchored agent), an empty replay
    buffer."""
    env, spec = m.env, m.spec
    n, e_num = env.num_stocks, spec.num_envs
    agent_key, env_key, loop_key = jax.random.split(key, 3)
    _, env_state = jax.vmap(env.reset, in_axes=(0, None))(
        jax.random.split(env_key, e_num), env_params)
    example = expand_batch(jax.tree.map(lambda x: x[:1], compact_from_state(env_state)),
                           env_params)
    agent = m.td3.init(agent_key, example, jnp.full((1, n), 1.0 / n, _F32))
    if actor_params is not None:  # Adam moments are zeros either way
        agent = agent.replace(actor_params=actor_params, actor_target=actor_params,
                              anchor=actor_params if m.spec.anchored else None)
    buf = buffers.init(_example_transition(n, env.num_sectors + NUM_REGIMES),
                       rows=spec.buffer_rows(env_params.max_steps_in_episode), num_envs=e_num)
    return Phase4State(
        agent=agent, buffer=buf, env_state=env_state,
        ep_return=jnp.zeros((e_num,), _F32), ep_length=jnp.zeros((e_num,), _I32),
        env_steps=jnp.zeros((), _I32), episodes=jnp.zeros((), _I32),
        key=jax.random.key_data(loop_key),
    )


def td3_updates(m: Phase4Model, agent: TD3State, buf: buffers.ReplayBufferState,
                key: PRNGKey, env_params: EnvParams, hp: Phase4HParams, first_step: Array
                ) -> tuple[TD3State, Metrics]:
    """``spec.updates_per_step`` TD3 updates on HER-relabelled replay batches (steps
    ``first_step`` …); metrics averaged over them."""
    u_num = m.spec.updates_per_step

    def body(agent: TD3State, xs: tuple[PRNGKey, Array]) -> tuple[TD3State, Metrics]:
        k, i = xs
        batch_key, update_key = jax.random.split(k)
        batch = replay_batch(buf, batch_key, env_params, hp, m.spec.batch_size)
        return m.td3.update(agent, batch, update_key, hp.td3, first_step + i)

    agent, metrics = jax.lax.scan(body, agent, (jax.random.split(key, u_num),
                                                jnp.arange(u_num, dtype=_I32)))
    return agent, jax.tree.map(jnp.mean, metrics)


def env_step(m: Phase4Model, state: Phase4State, clock: LockstepClock, key: PRNGKey,
             env_params: EnvParams, hp: Phase4HParams
             ) -> tuple[Phase4State, LockstepClock, Metrics]:
    """One vector env step: act with exploration, store the E transitions, then the TD3
    updates once the buffer is warm (one branch: ``clock`` is shared by every seed)."""
    env, e_num, u_num = m.env, m.spec.num_envs, m.spec.updates_per_step
    act_key, step_key, update_key = jax.random.split(key, 3)
    obs = compact_from_state(state.env_state)
    action = m.td3.act(state.agent, expand_batch(obs, env_params), act_key, hp.td3, True)
    _, env_state, reward, term, trunc, info = jax.vmap(
        env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(step_key, e_num), state.env_state, action, env_params)
    r_goal = goal_reward(info["achieved_sector_weights"], info["goal"], env_params.reward)
    next_obs = compact_from_flat(env.layout, info["final_observation"], obs.day + 1)
    tr = buffers.Transition(
        obs=obs, action=action, reward=(reward - r_goal).astype(_F32),
        goal_reward=r_goal.astype(_F32), next_obs=next_obs, terminated=term,
        truncated=trunc, achieved_goal=info["achieved_goal"].astype(_F32))
    buf = buffers.add_step(state.buffer, tr)

    def updates(agent: TD3State) -> tuple[TD3State, Metrics]:
        return td3_updates(m, agent, buf, update_key, env_params, hp, clock.updates)

    def no_updates(agent: TD3State) -> tuple[TD3State, Metrics]:
        _, metrics = jax.eval_shape(updates, agent)
        return agent, jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), metrics)

    # warm once the buffer holds warmup_transitions (this step's included; a buffer carried
    # over, as in Phase 5, is warm from its first step)
    warm = clock.transitions + e_num >= m.spec.warmup_transitions
    agent, td3_metrics = jax.lax.cond(warm, updates, no_updates, state.agent)
    clock = LockstepClock(clock.transitions + e_num,
                          clock.updates + jnp.where(warm, u_num, 0).astype(_I32))
    done = term | trunc
    ep_return = state.ep_return + reward
    ep_length = state.ep_length + 1
    finished = done.astype(_F32)
    metrics = {
        "reward": jnp.mean(reward),
        "goal_alignment": jnp.mean(info["reward_components"]["goal"]),
        "cost_frac": jnp.mean(info["cost_frac"]),
        "turnover": jnp.mean(info["turnover"]),
        "net_return": jnp.mean(info["net_return"]),
        "episodes_done": jnp.sum(finished),
        "episode_return_sum": jnp.sum(finished * ep_return),
        "episode_length_sum": jnp.sum(finished * ep_length.astype(_F32)),
        "updating": warm.astype(_F32),
        **td3_metrics,
    }
    new = state.replace(
        agent=agent, buffer=buf, env_state=env_state,
        ep_return=jnp.where(done, 0.0, ep_return).astype(_F32),
        ep_length=jnp.where(done, 0, ep_length).astype(_I32),
        env_steps=state.env_steps + e_num,
        episodes=state.episodes + jnp.sum(done).astype(_I32),
    )
    return new, clock, metrics


def run_chunk(m: Phase4Model, state: Phase4State, env_params: EnvParams, hp: Phase4HParams,
              clock: LockstepClock | None = None) -> tuple[Phase4State, Metrics]:
    """``spec.steps_per_chunk`` env steps (lax.scan) -> (state, metrics [steps_per_chunk]).
    ``clock``: the seeds' shared counters, unbatched (``seeds_chunk``); None reads them from
    ``state`` (one seed, or a vmap that accepts both-branch conds)."""
    key = jax.random.wrap_key_data(state.key)
    next_key, chunk_key = jax.random.split(key)
    if clock is None:
        clock = clock_of(state)

    def body(carry: tuple[Phase4State, LockstepClock], k: PRNGKey
             ) -> tuple[tuple[Phase4State, LockstepClock], Metrics]:
        st, clk = carry
        st, clk, metrics = env_step(m, st, clk, k, env_params, hp)
        return (st, clk), metrics

    (state, _), metrics = jax.lax.scan(body, (state, clock),
                                       jax.random.split(chunk_key, m.spec.steps_per_chunk))
    return state.replace(key=jax.random.key_data(next_key)), metrics


def _eval_episode(m: Phase4Model, env_params: EnvParams, start: Array, key: PRNGKey,
                  policy: Callable[[MicroState, EnvParams], Array]) -> Metrics:
    """One validation episode from day ``start`` under ``policy`` (state, params) -> weights
    [N]: per-day net return, goal term, cost, turnover and ``alive`` [L]."""
    p = env_params.replace(start_lo=start, start_hi=start)
    reset_key, steps_key = jax.random.split(key)
    _, st0 = m.env.reset(reset_key, p)

    def body(carry: tuple[MicroState, Array], k: PRNGKey) -> tuple[tuple[MicroState, Array],
                                                                   Metrics]:
        st, alive = carry
        _, st2, _, term, trunc, info = m.env.step(k, st, policy(st, p), p)
        out = {"net_return": info["net_return"], "goal": info["reward_components"]["goal"],
               "cost_frac": info["cost_frac"], "turnover": info["turnover"], "alive": alive}
        return (st2, alive & ~(term | trunc)), out

    _, out = jax.lax.scan(body, (st0, jnp.ones((), bool)),
                          jax.random.split(steps_key, env_params.max_steps_in_episode))
    return out


def _actor_policy(m: Phase4Model, actor_params: Params, st: MicroState, p: EnvParams
                  ) -> Array:
    """The deterministic actor's weights [N] in one env state."""
    inp = expand_batch(jax.tree.map(lambda x: x[None], compact_from_state(st)), p)
    return actor_weights(m.nets, actor_params, inp)[0]


def _equal_weight(st: MicroState, p: EnvParams) -> Array:
    """1/n over the stocks tradable on the state's day [N]."""
    tradable = p.tradable[st.t].astype(_F32)
    return tradable / jnp.maximum(jnp.sum(tradable), 1.0)


def evaluate(m: Phase4Model, actor_params: Params, env_params: EnvParams, key: PRNGKey
             ) -> Metrics:
    """Deterministic actor vs equal weight on ``spec.eval_episodes`` episodes started at
    evenly spaced days of [start_lo, start_hi]; goals from the env's goal source driven by
    ``key`` (pass a key no training stream uses: held-out goals)."""
    e_num = m.spec.eval_episodes
    frac = jnp.linspace(0.0, 1.0, e_num, dtype=_F32)
    span = (env_params.start_hi - env_params.start_lo).astype(_F32)
    starts = env_params.start_lo + jnp.round(frac * span).astype(_I32)

    policy_weights = partial(_actor_policy, m, actor_params)
    ep_keys = jax.random.split(key, e_num)
    agent_out = jax.vmap(lambda st, k: _eval_episode(m, env_params, st, k, policy_weights))(
        starts, ep_keys)
    ew_out = jax.vmap(lambda st, k: _eval_episode(m, env_params, st, k, _equal_weight))(
        starts, ep_keys)
    alive = agent_out["alive"].reshape(-1)
    days = jnp.maximum(jnp.sum(alive.astype(_F32)), 1.0)

    def mean(x: Array) -> Array:
        return jnp.sum(jnp.where(alive, x.reshape(-1), 0.0)) / days

    ew_alive = ew_out["alive"].reshape(-1)
    return {
        "val_sharpe": sharpe(agent_out["net_return"].reshape(-1), 252, mask=alive),
        "val_equal_weight_sharpe": sharpe(ew_out["net_return"].reshape(-1), 252,
                                          mask=ew_alive),
        "val_goal_alignment": mean(agent_out["goal"]),
        "val_equal_weight_goal_alignment": mean(ew_out["goal"]),
        "val_cost_frac": mean(agent_out["cost_frac"]),
        "val_turnover": mean(agent_out["turnover"]),
        "val_mean_daily_return": mean(agent_out["net_return"]),
        "val_days": jnp.sum(alive.astype(_I32)),
        # [m] each episode's own annualised Sharpe (the selection margin pairs them), or [B]
        # each block's of the one continuous episode
        "episode_sharpe": (
            block_sharpes(agent_out["net_return"][0], m.spec.eval_block_days, 252,
                          mask=agent_out["alive"][0]) if m.spec.eval_block_days else
            jax.vmap(lambda r, a: sharpe(r, 252, mask=a))(
                agent_out["net_return"], agent_out["alive"])),
    }


def validation_walk(m: Phase4Model, actor_params: Params, env_params: EnvParams,
                    key: PRNGKey) -> tuple[Array, Array]:
    """The deterministic actor on ONE episode from ``env_params.start_lo`` for up to
    ``max_steps_in_episode`` days (set it to reach the split's end): (daily net returns [L],
    alive [L]: False after the episode ended). Goals from the env's goal source (the frozen
    Macro) driven by ``key``. A sweep's selection statistics are computed on these series."""
    out = _eval_episode(m, env_params, env_params.start_lo, key,
                        partial(_actor_policy, m, actor_params))
    return out["net_return"], out["alive"]


# --------------------------------------------------------------------------- the factory


def make_phase4(env: MicroEnv, nets: Networks, spec: Phase4Spec) -> Phase4:
    """Phase 4's pure functions (nothing jitted here):

    init(key, env_params, actor_params=None) -> Phase4State (``init_state``);
    run_chunk(state, env_params, hp, clock=None) -> (state, metrics [steps_per_chunk]);
    evaluate(actor_params, env_params, key) -> validation metrics (deterministic actor);
    walk(actor_params, env_params, key) -> (daily net returns, alive) of one long episode.
    """
    td3 = _td3(nets, spec)
    m = Phase4Model(env, nets, spec, td3)
    return Phase4(partial(init_state, m), partial(run_chunk, m), partial(evaluate, m), td3,
                  spec, nets, partial(validation_walk, m))


def seeds_chunk(p4: Phase4, params_axis: int | None = None
                ) -> Callable[[Phase4State, EnvParams, Phase4HParams],
                              tuple[Phase4State, Metrics]]:
    """``run_chunk`` over K lock-step seeds (state and hp with a leading K axis; env params
    broadcast, or mapped with ``params_axis=0``), the ``LockstepClock`` read once from seed 0
    and passed unbatched. Jit the result."""
    mapped = jax.vmap(p4.run_chunk, in_axes=(0, params_axis, 0, None))

    def chunk(state: Phase4State, env_params: EnvParams, hp: Phase4HParams
              ) -> tuple[Phase4State, Metrics]:
        return mapped(state, env_params, hp, clock_of(jax.tree.map(lambda x: x[0], state)))

    return chunk


def seed_programs(p4: Phase4, env_params: EnvParams, val_params: EnvParams | None = None
                  ) -> dict[str, Callable]:
    """Phase 4's jitted programs over K lock-step seeds, env params mapped on their per-seed
    ``policy_params`` (``envs.params.seed_axes``): ``init(keys [K], env_params, actor [K] or
    None)``, ``chunk(state, env_params, hp)``, ``evaluate(actor [K], val_params, key)``
    (``val_params``: the validation params, whose episode length may differ; default
    ``env_params``). Phase 4 and Phase 5's Micro block both use these, so the same shapes give
    the same executables."""
    axes = seed_axes(env_params)
    val_axes = axes if val_params is None else seed_axes(val_params)
    return {
        "init": jit_once(p4, "init", axes, lambda: jax.jit(
            jax.vmap(p4.init, in_axes=(0, axes, 0)), compiler_options=RUN_ONCE_OPTIONS)),
        "chunk": jit_once(p4, "chunk", axes, lambda: jax.jit(seeds_chunk(p4, axes))),
        "evaluate": jit_once(p4, "evaluate", val_axes, lambda: jax.jit(
            jax.vmap(p4.evaluate, in_axes=(0, val_axes, None)))),
    }


# --------------------------------------------------------------------------- frozen Macro


def macro_goal_fn(net: NetworkConfig, num_sectors: int, sector_features: int,
                  macro_features: int = NUM_MACRO_FEATURES) -> Callable[[Params, Array], Array]:
    """A MicroEnv 'policy' goal source: flat macro obs [D_M] (F_s = ``sector_features`` per
    sector) -> Macro action [S+3] =
    deterministic sector weights (Dirichlet mean) ⊕ regime probabilities, from MacroActor
    params (the env projects the weights and one-hots the regime argmax)."""
    return partial(macro_action, net, MacroObsLayout(num_sectors, sector_features,
                                                     macro_features))


# --------------------------------------------------------------------------- host side


def stack_hparams(hp: Phase4HParams, count: int) -> Phase4HParams:
    """The same hparams repeated on a leading [K] axis (one member per seed)."""
    return repeat_members(hp, int(count))


def phase4_keys(seed: int, count: int) -> tuple[Array, Array]:
    """HOST ONLY: ([K] training keys, validation-goal key) from ``cfg.seed``. Member k is
    fold_in(train root, k) whatever K is; validation goals come from a separate stream, so the
    goals the agent is validated on are never the ones it trained on."""
    train_root, eval_root = jax.random.split(jax.random.fold_in(jax.random.key(int(seed)), 4))
    keys = jnp.stack([jax.random.fold_in(train_root, k) for k in range(int(count))])
    return keys, eval_root


@dataclass
class Phase4Setup:
    """Everything the Phase-4 host loop needs (HOST ONLY)."""

    p4: Phase4
    env: MicroEnv
    train_params: EnvParams
    val_params: EnvParams
    hp: Phase4HParams
    info: dict[str, Any]


# HOST ONLY
def split_bounds(meta: Any, cfg: Config, num_days: int) -> tuple[int, int]:
    """(validation start, test start) day indices from ``cfg.data``."""
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    val = int(np.searchsorted(dates, np.datetime64(cfg.data.val_start, "D")))
    test = int(np.searchsorted(dates, np.datetime64(cfg.data.test_start, "D")))
    if not 0 < val < test <= num_days:
        raise ValueError(f"data.val_start={cfg.data.val_start} / data.test_start="
                         f"{cfg.data.test_start} leave no training or validation days")
    return val, test


# HOST ONLY
def setup_phase4(cfg: Config, market: Any, meta: Any, feats: Any, *,
                 macro_params: Params | None = None, spec: Phase4Spec | None = None,
                 seeds: int | None = None) -> Phase4Setup:
    """Train / validation env params (goal source: the frozen Macro when ``macro_params`` is
    given, else 'sampled'), the Phase-4 functions and hparams. ``seeds``: ``macro_params`` is
    stacked [K], one Macro per seed (vmap the env params with ``envs.params.seed_axes``)."""
    val_start, test_start = split_bounds(meta, cfg, market.num_days)
    n, s = market.num_stocks, market.num_sectors
    f_s = int(feats.sector.shape[-1])
    train_params = MicroEnv.make_params(market, feats, cfg.env, split=(0, val_start - 1),
                                        policy_params=macro_params)
    spec = spec or Phase4Spec.from_config(cfg.train.td3)
    val_params, episodes = validation.daily_plan(cfg.train.validation, MicroEnv.make_params(
        market, feats, cfg.env, split=(val_start, test_start - 1), policy_params=macro_params),
        spec.eval_episodes)
    spec = replace(spec, eval_episodes=episodes, eval_block_days=validation.block_steps(
        cfg.train.validation, daily=True))
    env, p4 = _phase4_functions(n, s, f_s, cfg.env.return_window, cfg.networks, spec,
                                macro_params is not None, int(feats.macro.shape[-1]))
    if macro_params is not None and seeds is not None and {
            int(np.shape(x)[0]) for x in jax.tree.leaves(macro_params)} != {int(seeds)}:
        raise ValueError(f"setup_phase4: macro_params must be stacked [{seeds}] (one Macro "
                         f"per seed)")
    dates = np.asarray(meta.dates)
    info = {
        "goal_source": "phase3_macro" if macro_params is not None else "sampled",
        "train_span": [str(dates[0]), str(dates[val_start - 1])],
        "val_span": [str(dates[val_start]), str(dates[test_start - 1])],
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
        # train.td3.buffer_episodes x episode days, rounded up to whole vector steps
        "buffer": {"rows": (rows := spec.buffer_rows(train_params.max_steps_in_episode)),
                   "transitions": rows * spec.num_envs},
    }
    if spec.anchored:
        info["anchor"] = (f"KL to the actor Phase 4 starts from, weight "
                          f"{float(cfg.train.td3.anchor_kl_coef):g}")
    return Phase4Setup(p4, env, train_params, val_params, Phase4HParams.from_config(
        cfg.train.td3), info)


# HOST ONLY
@lru_cache(maxsize=8)
def _phase4_functions(num_stocks: int, num_sectors: int, sector_features: int,
                      return_window: int, networks: NetworkConfig, spec: Phase4Spec,
                      policy_goals: bool, macro_features: int = NUM_MACRO_FEATURES
                      ) -> tuple[MicroEnv, Phase4]:
    """One (MicroEnv, Phase4) per static setup (goals from the frozen Macro, or sampled), so
    that Phase 4, Phase 5's Micro block, resumes and walk-forward folds in one process share
    the same functions and so the same jitted programs (``programs.jit_once``)."""
    if policy_goals:
        env = MicroEnv(num_stocks, num_sectors, return_window=return_window,
                       goal_source="policy",
                       goal_fn=macro_goal_fn(networks, num_sectors, sector_features,
                                             macro_features))
    else:
        env = MicroEnv(num_stocks, num_sectors, return_window=return_window,
                       goal_source="sampled")
    return env, make_phase4(env, make_networks(networks), spec)


# HOST ONLY
def load_phase3_macro(run: Any, cfg: Config, market: Any, meta: Any, feats: Any, seeds: int
                      ) -> tuple[Params | None, dict[str, Any]]:
    """Phase 3's MacroActor for each of ``seeds`` Phase-4 seeds (stacked [K]; seed k gets
    Phase-3 seed k mod K3, at ``train.checkpoint``): the frozen goal source, paired per seed as
    Phase 5 and the evaluation pair them. None with the reason when Phase 3 has no usable
    checkpoint (then goals are sampled)."""
    if not (run.phase_dir(3) / "ckpt").is_dir():
        return None, {"phase3": "no checkpoint: sampled goals"}
    from hrl_sarp_jax.errors import CheckpointError
    from hrl_sarp_jax.training.policy import load_phase3_macro_all

    try:
        actor, source = load_phase3_macro_all(run, cfg, market, meta, feats)
    except CheckpointError as exc:
        return None, {"phase3": f"not restored ({exc}); sampled goals"}
    k3 = int(jax.tree.leaves(actor)[0].shape[0])
    actor = jax.tree.map(lambda x: np.asarray(x)[np.arange(int(seeds)) % k3], actor)
    return actor, {"phase3": f"{source} (frozen; seed k from seed k mod {k3})"}


# HOST ONLY
def load_phase2_actor(run: Any, cfg: Config, market: Any, meta: Any, feats: Any
                      ) -> tuple[Params | None, dict[str, Any]]:
    """The Phase-2 best MicroActor params (initial actor), or None with the reason."""
    from hrl_sarp_jax.training import rl_macro

    return rl_macro.load_phase2_micro(run, cfg, market, meta, feats)


ACTOR_METRICS = ("actor_loss", "anchor_kl")
"""TD3 metrics that exist only on updates with an actor step (0 on the others)."""


def actor_step_mean(value: np.ndarray, actor_updated: np.ndarray) -> float | None:
    """Mean of an actor-side metric over the TD3 updates that stepped the actor: ``value``
    and ``actor_updated`` are per-step means over that step's updates (the metric is 0 on
    critic-only updates, ``actor_updated`` the fraction that stepped the actor), so the mean
    over actor updates is Σ value / Σ actor_updated; None when no actor step ran."""
    n = float(np.sum(actor_updated))
    return float(np.sum(value) / n) if n > 0 else None


def _chunk_record(metrics: dict[str, np.ndarray], per_seed: bool = True) -> dict[str, Any]:
    """Means over seeds and steps of [K, steps] metrics; the losses over the steps that
    updated, the actor's (``ACTOR_METRICS``) over the actor steps; episode returns over
    finished ones; ``per_seed``: the same per seed under ``per_seed``."""
    rec: dict[str, Any] = {}
    for k, v in metrics.items():
        if k in ("episodes_done", "episode_return_sum", "episode_length_sum"):
            continue
        if k in ACTOR_METRICS and "actor_updated" in metrics:
            rec[k] = actor_step_mean(v, metrics["actor_updated"])
        elif k in ("critic_loss", "actor_loss", "q_mean", "target_mean", "critic_grad_norm",
                   "explore_noise"):
            on = metrics["updating"] > 0
            rec[k] = float(np.mean(v[on])) if on.any() else None
        else:
            rec[k] = float(np.mean(v))
    n = float(np.sum(metrics["episodes_done"]))
    rec["episodes_finished"] = int(n)
    rec["episode_return"] = float(np.sum(metrics["episode_return_sum"]) / n) if n else None
    if per_seed:
        seeds = [_chunk_record({m: v[i:i + 1] for m, v in metrics.items()}, False)
                 for i in range(len(metrics["updating"]))]
        rec["per_seed"] = {m: [s[m] for s in seeds] for m in rec}
    return rec


def _evaluate_record(evaluate: Callable, state: Phase4State, setup: Phase4Setup,
                     key: Array) -> tuple[dict[str, Any], np.ndarray]:
    """Validation means over seeds, plus ``per_seed`` lists; and the per-episode Sharpes
    [K, E] apart (for the selection margin, not logged)."""
    ev = {m: np.asarray(v) for m, v in to_host(
        evaluate(state.agent.actor_params, setup.val_params, key)).items()}
    episodes = np.asarray(ev.pop("episode_sharpe"), np.float64)
    rec: dict[str, Any] = {m: float(np.mean(v)) for m, v in ev.items()}
    rec["per_seed"] = {m: v.tolist() for m, v in ev.items()}
    return rec, episodes


def eval_windows(spec: Phase4Spec, val_params: EnvParams) -> float:
    """Independent windows behind Phase 4's ``eval_episodes`` validation episodes (evenly
    spaced starts over the split, each ``max_steps_in_episode`` days; ``training.selection``),
    or the blocks of its one continuous episode."""
    lo, hi = int(val_params.start_lo), int(val_params.start_hi)
    starts = lo + np.round(np.linspace(0.0, 1.0, spec.eval_episodes) * (hi - lo))
    return validation.windows(starts, int(val_params.max_steps_in_episode),
                              spec.eval_block_days, steps_per_week=DAYS_PER_WEEK)


class Phase4Task:
    """Phase 4 in the host loop (``training.host_loop``): a unit is one chunk of
    ``per_chunk`` env steps per seed, validated every ``every`` chunks and after the last;
    metrics lines and checkpoints are keyed by env steps per seed."""

    def __init__(self, run: Any, ranked: RankedCheckpoints, setup: Phase4Setup,
                 hp: Phase4HParams, chunk: Callable, evaluate: Callable, eval_key: Array,
                 per_chunk: int, every: int, seeds: int, say: Callable[[str], None]) -> None:
        self.run, self.ranked, self.setup, self.hp = run, ranked, setup, hp
        self.chunk, self.evaluate_program, self.eval_key = chunk, evaluate, eval_key
        self.per_chunk, self.every, self.seeds, self.say = per_chunk, every, seeds, say
        self.train_s = 0.0
        """Seconds spent in the chunk program (with the transfer of its metrics)."""

    def progress(self, state: Phase4State) -> int:
        return int(np.max(to_host(state.env_steps))) // self.per_chunk

    def train(self, state: Phase4State) -> tuple[Phase4State, None]:
        t_run = time.perf_counter()
        state, metrics = self.chunk(state, self.setup.train_params, self.hp)
        metrics, env_steps = to_host((metrics, state.env_steps))
        metrics = {m: np.asarray(v) for m, v in metrics.items()}
        self.train_s += time.perf_counter() - t_run
        self.run.log_metrics(4, int(np.max(env_steps)), {
            "kind": "train", **_chunk_record(metrics), "env_steps": int(np.sum(env_steps))})
        return state, None

    def due(self, done: int, limit: int) -> bool:
        return done % self.every == 0 or done == limit

    def evaluate(self, state: Phase4State) -> tuple[dict[str, Any], np.ndarray]:
        return _evaluate_record(self.evaluate_program, state, self.setup, self.eval_key)

    def record(self, state: Phase4State, done: int, trained: None, rec: dict[str, Any],
               episodes: np.ndarray) -> None:
        env_steps = int(np.max(to_host(state.env_steps))) if done else 0
        if done == 0:  # the starting actor (Phase 2's): 'best' never falls below it
            self.run.log_metrics(4, 0, {"kind": "eval", **rec, "env_steps": 0})
        else:
            self.run.log_metrics(4, env_steps, {"kind": "eval", **rec})
        self.ranked.save(env_steps, state, {m: v for m, v in rec.items() if m != "per_seed"},
                         {"seeds": self.seeds, "chunks": done, **self.setup.info},
                         rec["val_sharpe"], episodes)
        if done == 0:
            self.say(f"phase 4: before training, val goal alignment "
                     f"{rec['val_goal_alignment']:.3f} (equal weight "
                     f"{rec['val_equal_weight_goal_alignment']:.3f})")
        else:
            self.say(f"phase 4: {env_steps} env steps/seed, val goal alignment "
                     f"{rec['val_goal_alignment']:.3f}, val Sharpe {rec['val_sharpe']:.2f} "
                     f"(equal weight {rec['val_equal_weight_sharpe']:.2f})")


# HOST ONLY
def _fresh_state(init: Callable, keys: PRNGKey, setup: Phase4Setup, actor: Params | None,
                 seeds: int) -> tuple[Phase4State, float, str]:
    """(state [K], compile seconds, fingerprint): the init program compiled once at
    ``RUN_ONCE_OPTIONS`` and run; ``actor`` (Phase 2's best, unstacked) starts every seed."""
    if actor is not None:
        actor = repeat_members(actor, int(seeds))
    init, init_s, init_fp = compile_ahead(init, keys, setup.train_params, actor,
                                          compiler_options=RUN_ONCE_OPTIONS)
    return init(keys, setup.train_params, actor), init_s, init_fp


# HOST ONLY
def _final_counts(state: Phase4State, last_eval: dict[str, Any], seeds: int
                  ) -> dict[str, Any]:
    """The summary's final validation (means, then per seed) and the work done."""
    counts = to_host({"env_steps": state.env_steps, "updates": state.agent.step,
                      "episodes": state.episodes})
    return {
        **{m: v for m, v in last_eval.items() if m != "per_seed"},
        "per_seed": last_eval["per_seed"],
        "env_steps": int(np.sum(counts["env_steps"])),
        "env_steps_per_seed": int(np.max(counts["env_steps"])),
        "updates_per_seed": int(np.max(counts["updates"])),
        "episodes": int(np.sum(counts["episodes"])),
        "seeds": seeds,
    }


class _Started(NamedTuple):
    """Phase 4's start: the state on the seed mesh and its compiled programs."""

    state: Phase4State
    hp: Phase4HParams
    chunk: Callable
    evaluate: Callable
    eval_key: Array
    compile_s: float
    fingerprints: dict[str, str]
    resumed: bool


# HOST ONLY
def _start_compiled(setup: Phase4Setup, ranked: RankedCheckpoints, seed: int, k: int,
                    actor: Params | None, mesh: Any, hparams: Phase4HParams | None = None,
                    member_keys: Array | None = None) -> _Started:
    """K fresh seeds (``actor``: Phase 2's, else the init's), or the latest checkpoint when
    ``ranked`` has one, placed on the seed ``mesh``, with the init, chunk and evaluation
    programs compiled (Phase 5's Micro block runs the same ones: ``seed_programs``).
    ``hparams`` / ``member_keys`` ([K]) replace K copies of ``setup.hp`` / the seed keys."""
    hp = stack_hparams(setup.hp, k) if hparams is None else hparams
    train_keys, eval_key = phase4_keys(seed, k)
    train_keys = train_keys if member_keys is None else member_keys
    programs = seed_programs(setup.p4, setup.train_params, setup.val_params)
    state, init_s, init_fp = _fresh_state(programs["init"], train_keys, setup, actor, k)
    ranked.windows = eval_windows(setup.p4.spec, setup.val_params)
    restored = ranked.restore_latest(state)
    if restored is not None:
        state = restored[0]
    state, hp = shard_seeds((state, hp), mesh)  # the seed axis over the mesh's devices
    chunk, chunk_s, chunk_fp = compile_ahead(programs["chunk"], state, setup.train_params, hp)
    evaluate, eval_s, eval_fp = compile_ahead(programs["evaluate"], state.agent.actor_params,
                                              setup.val_params, eval_key)
    return _Started(state, hp, chunk, evaluate, eval_key, init_s + chunk_s + eval_s,
                    {"init": init_fp, "chunk": chunk_fp, "evaluate": eval_fp},
                    restored is not None)


# HOST ONLY
def restore_phase4(run: Any, cfg: Config, market: Any, meta: Any, feats: Any,
                   example_macro: Params | None, which: str) -> tuple[Phase4State, dict, int]:
    """(state, checkpoint meta, step): Phase 4's ``which`` ('best' | 'latest') checkpoint,
    all its seeds (actor, critics, optimisers, replay buffer, envs). ``example_macro``: one
    Macro (unstacked) when Phase 4 trained under one (the state's shapes do not depend on
    which), else None."""
    from hrl_sarp_jax.checkpointing import read_phase_summary, restore_chosen

    summary = read_phase_summary(run, 4) or {}
    k4 = int(summary.get("seeds", cfg.train.seeds))
    s4 = setup_phase4(cfg, market, meta, feats, macro_params=example_macro)
    keys, _ = phase4_keys(cfg.seed, k4)
    abstract = jax.eval_shape(jax.vmap(s4.p4.init, in_axes=(0, None)), keys, s4.train_params)
    return restore_chosen(run, 4, abstract, which)


# HOST ONLY
def chunk_plan(cfg: Config, sp: Phase4Spec, total_env_steps: int | None = None,
               chunk_limit: int | None = None, eval_every_chunks: int | None = None
               ) -> tuple[int, int, int, int]:
    """(env steps per chunk and seed, chunks in the budget, chunks to run now, validate every
    this many chunks): the budget ``total_env_steps`` (default ``train.td3.total_env_steps``)
    in whole chunks, at least one; ``chunk_limit`` stops earlier (a simulated interruption);
    ``eval_every_chunks`` defaults to ``train.eval_interval``."""
    budget = int(cfg.train.td3.total_env_steps if total_env_steps is None else total_env_steps)
    per_chunk = sp.num_envs * sp.steps_per_chunk
    total_chunks = max(1, math.ceil(budget / per_chunk))
    limit = total_chunks if chunk_limit is None else min(total_chunks, int(chunk_limit))
    every = max(1, int(cfg.train.eval_interval if eval_every_chunks is None
                       else eval_every_chunks))
    return per_chunk, total_chunks, limit, every


# HOST ONLY
def run_phase4(
    run: Any,
    cfg: Config,
    market: Any,
    meta: Any,
    feats: Any,
    *,
    seeds: int | None = None,
    resume: bool = False,
    total_env_steps: int | None = None,
    eval_every_chunks: int | None = None,
    chunk_limit: int | None = None,
    spec: Phase4Spec | None = None,
    log: Callable[[str], None] | None = None,
    hparams: Phase4HParams | None = None,
    member_keys: Array | None = None,
) -> dict[str, Any]:
    """Train Phase 4 into ``run``, write ``phase4/summary.json`` and return the summary.

    K = ``seeds`` (default ``cfg.train.seeds``) seeds in one vmapped program. The actor starts
    from the Phase-2 best actor when Phase 2 has a checkpoint; the goal source is the Phase-3
    best Macro actor (frozen) when Phase 3 has one, else 'sampled' (recorded in the summary).
    Every ``eval_every_chunks`` chunks (default ``cfg.train.eval_interval``): a validation on
    held-out goals, metrics lines and a checkpoint (latest-N + best by the mean of
    ``train.td3.checkpoint_metric``, default ``val_sharpe``). ``resume`` continues
    bit-exactly from the latest checkpoint (the whole state: networks, optimisers, buffer,
    envs, keys).
    ``chunk_limit`` stops after that many chunks in total (a simulated interruption).
    ``hparams`` (leaves [K], e.g. a sweep's settings × seeds) replaces K copies of
    ``cfg.train.td3``; ``member_keys`` [K] replaces ``phase4_keys(cfg.seed, K)``'s training
    keys (a sweep gives every setting the same seed keys). A resume must pass the same ones.
    """
    from hrl_sarp_jax.checkpointing import write_phase_summary
    from hrl_sarp_jax.errors import ConfigError

    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    k = int(cfg.train.seeds if seeds is None else seeds)
    if k < 1:
        raise ConfigError(f"Phase 4 needs at least one seed (got {k})")
    check_member_axis("run_phase4", k, hparams=hparams, member_keys=member_keys)
    # the selection margin pairs per-episode Sharpes: with checkpoint_metric val_sharpe only
    margin = (float(cfg.train.checkpoint_margin)
              if cfg.train.td3.checkpoint_metric == "val_sharpe" else 0.0)
    with RankedCheckpoints(run, 4, label="phase 4", metric=cfg.train.td3.checkpoint_metric,
                           margin=margin, keep_latest=cfg.train.keep_latest,
                           resume=resume) as ranked:
        macro, macro_info = load_phase3_macro(run, cfg, market, meta, feats, k)
        actor, actor_info = load_phase2_actor(run, cfg, market, meta, feats)
        mesh = seed_mesh_for(k)
        setup = setup_phase4(cfg, market, meta, feats, spec=spec, macro_params=(
            None if macro is None else shard_seeds(macro, mesh)), seeds=k)
        go = _start_compiled(setup, ranked, cfg.seed, k, actor, mesh, hparams, member_keys)
        per_chunk, total_chunks, limit, every = chunk_plan(
            cfg, setup.p4.spec, total_env_steps, chunk_limit, eval_every_chunks)
        say(f"phase 4: {k} seed(s), {total_chunks} chunks of {per_chunk} env steps, goals "
            f"{setup.info['goal_source']}, compiled in {go.compile_s:.1f}s")
        task = Phase4Task(run, ranked, setup, go.hp, go.chunk, go.evaluate, go.eval_key,
                          per_chunk, every, k, say)
        state, last_eval, last_eps = run_loop(task, ranked, go.state, limit=limit,
                                              evaluate_start=not go.resumed)
    selection = ranked.summary(last_eps, "actor", say)
    summary = {
        **_final_counts(state, last_eval, k),
        "wall_s": round(time.perf_counter() - t0, 3),
        "train_s": round(task.train_s, 3),
        "compile_s": round(go.compile_s, 3),
        "programs": go.fingerprints,
        "best_metric": cfg.train.td3.checkpoint_metric,
        **selection,
        **macro_info, **actor_info, **setup.info,
    }
    write_phase_summary(run, 4, summary)
    return summary


# HOST ONLY
def bench_phase4(
    cfg: Config,
    market: Any,
    meta: Any,
    feats: Any,
    *,
    seeds: Sequence[int] = (1, 8),
    spec: Phase4Spec | None = None,
    chunks: int = 2,
) -> dict[str, Any]:
    """Env-steps/s WITH learning (every chunk step updates: the buffer is warmed first) for 1
    and K vmapped seeds, compile seconds, and the replay settings that go with the figures."""
    base = spec or Phase4Spec.from_config(cfg.train.td3)
    sp = Phase4Spec(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                       "warmup_transitions": 1})
    setup = setup_phase4(cfg, market, meta, feats, spec=sp)
    out: dict[str, Any] = {
        "device": jax.devices()[0].device_kind, "num_stocks": market.num_stocks,
        "num_sectors": market.num_sectors, "num_envs": sp.num_envs,
        "steps_per_chunk": sp.steps_per_chunk, "updates_per_step": sp.updates_per_step,
        "batch_size": sp.batch_size,
        "replay_ratio": sp.updates_per_step * sp.batch_size / sp.num_envs,
        "updates_per_env_step": sp.updates_per_step / sp.num_envs,
        "buffer_transitions": setup.info["buffer"]["transitions"], "runs": [],
    }
    flop = None
    for k in seeds:
        keys, _ = phase4_keys(cfg.seed, k)
        hp = stack_hparams(setup.hp, k)
        init = jax.jit(jax.vmap(setup.p4.init, in_axes=(0, None)))
        state = init(keys, setup.train_params)
        out.setdefault("buffer_mib_per_seed", round(sum(
            x.nbytes for x in jax.tree.leaves(state.buffer)) / k / 2**20, 2))
        if flop is None:
            flop = update_flop(setup, first_member(state))
        t0 = time.perf_counter()
        chunk = jax.jit(seeds_chunk(setup.p4)).lower(
            state, setup.train_params, hp).compile()
        compile_s = time.perf_counter() - t0
        state, _ = chunk(state, setup.train_params, hp)  # warm: fills the buffer a little
        jax.block_until_ready(state)
        t1 = time.perf_counter()
        for _ in range(chunks):
            state, m = chunk(state, setup.train_params, hp)
        jax.block_until_ready(state)
        dt = time.perf_counter() - t1
        steps = k * chunks * sp.num_envs * sp.steps_per_chunk
        out["runs"].append({
            "seeds": k, "compile_s": round(compile_s, 2),
            "env_steps_per_s": round(steps / dt, 1),
            "updates_per_s": round(k * chunks * sp.steps_per_chunk * sp.updates_per_step / dt, 2),
            "updating": float(np.mean(np.asarray(m["updating"]))),
            "update_gflop": round(flop / 1e9, 6),
            "gflops_per_s": round(flop * k * chunks * sp.steps_per_chunk * sp.updates_per_step
                                  / dt / 1e9, 3),
        })
    return out


# HOST ONLY
def update_flop(setup: Phase4Setup, state: Phase4State) -> float:
    """XLA's flop count of one TD3 update of one seed (replay sample, HER relabel, critics,
    actor and targets): ``cost_analysis`` of the update compiled alone (inside the chunk it
    sits in loops, whose bodies the analysis counts once). Both branches of the policy-delay
    conditional are counted, so with ``policy_delay`` 2 this overstates the mean update by
    half an actor step."""
    p4, hp = setup.p4, setup.hp

    def one(agent: TD3State, buf: buffers.ReplayBufferState, key: PRNGKey):
        batch = replay_batch(buf, key, setup.train_params, hp, p4.spec.batch_size)
        return p4.td3.update(agent, batch, key, hp.td3)

    return compiled_flops(jax.jit(one).lower(state.agent, state.buffer,
                                             jax.random.key(0)).compile())


# HOST ONLY
def run_phase4_entry(cfg: Config, market: Any, meta: Any, feats: Any, run: Any, *,
                     resume: bool = False, epoch_limit: int | None = None,
                     progress: bool = True) -> Any:
    """``run_phase4`` with the phase registry's signature (``epoch_limit`` = chunk limit)."""
    import sys

    from hrl_sarp_jax.training.runner import PhaseResult

    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    s = run_phase4(run, cfg, market, meta, feats, resume=resume, chunk_limit=epoch_limit,
                   log=say)
    rows = [("goal alignment (held-out goals)", float(s["val_goal_alignment"]),
             "val_equal_weight_goal_alignment", float(s["val_equal_weight_goal_alignment"])),
            ("validation Sharpe (daily, annualised)", float(s["val_sharpe"]),
             "val_equal_weight_sharpe", float(s["val_equal_weight_sharpe"])),
            ("cost per day (fraction of value)", float(s["val_cost_frac"]), None, None)]
    return PhaseResult(4, s, run.phase_dir(4) / "summary.json", rows)
