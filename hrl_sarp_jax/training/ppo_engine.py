"""One PPO engine for every PPO phase: Phase 3 (the Macro agent in MacroEnv), the flat
baseline (FlatEnv) and the Phase-3 sweep, written once (PureJaxRL's ``make_train`` shape).

A phase is a ``PPOTask``: its env, its actor-critic and a few pure functions (the policy's
distributions, the env action, the deterministic and comparator actions, which step outputs it
logs). ``make_ppo(task, spec)`` returns the pure programs:

  run_chunk: repeat U times (lax.scan over updates):
    repeat T times (lax.scan), E envs vmapped:   a ~ policy(s)  (Dirichlet ⊕ optional heads)
      s', r, terminated, truncated = env.step(s, a)  (gymnax auto-reset; with
                                                      ``task.start_days`` onto start days the
                                                      host's curriculum chose)
    V(s_t), V(final_obs_t) in one batched critic pass     (truncation bootstraps)
    θ ← ppo_update(rollout)  (GAE, epochs × shuffled minibatches, warmup + cosine lr)
  evaluate: the deterministic policy and the task's comparator (equal weight) on the same
    validation episodes, one per start day.

``run_ppo`` is the one host loop around them (resume, the step-0 evaluation, chunks, logging,
the curriculum, checkpoints, the summary's common part). Nothing here knows which phase it
runs; ``rl_macro`` and ``flat`` define their tasks and summaries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from hrl_sarp_jax.agents.distributions import joint_log_prob, joint_sample
from hrl_sarp_jax.agents.optim import set_injected
from hrl_sarp_jax.agents.ppo import (
    PPOHParams,
    PPORollout,
    create_train_state,
    make_batch,
    make_optimizer,
    ppo_minibatch_step,
    ppo_update,
)
from hrl_sarp_jax.config import PPOConfig
from hrl_sarp_jax.envs.params import EnvParams, is_pooled, market_axes
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.finance.metrics import (
    block_index,
    block_sharpes,
    max_drawdown,
    sharpe,
    total_return,
)
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training.programs import compiled_flops
from hrl_sarp_jax.types import Array, Params, PRNGKey, PyTree

WEEKS_PER_YEAR = 52
MIN_LR_SCALE = 0.01
"""Cosine floor of the learning rate, as a fraction of the peak (the original's eta_min 1e-6
against lr 1.5e-4 is 0.0067)."""

_F32 = jnp.float32
_I32 = jnp.int32
Metrics = dict[str, Array]


# --------------------------------------------------------------------------- static spec


@dataclass(frozen=True)
class PPOSpec:
    """Static shape of a PPO program (hashable; changing it recompiles)."""

    num_envs: int = 8
    rollout_len: int = 16
    """T: env steps per env per update."""
    epochs: int = 8
    num_minibatches: int = 2
    updates_per_chunk: int = 10
    """Updates per compiled call (the host evaluates / checkpoints between calls)."""
    total_updates: int = 550
    """Length of the learning-rate schedule (a multiple of updates_per_chunk)."""
    warmup_updates: int = 50
    critic_warmup_updates: int = 0
    """Updates (from the optimiser's start) that train the value function alone."""
    anchored: bool = False
    """The state keeps the policy the phase starts from (``PPOState.anchor``) and PPO's loss
    adds ``hp.anchor_kl_coef`` × KL(anchor ‖ π) (``train.ppo.anchor_kl_coef`` > 0)."""
    eval_block_weeks: int = 0
    """0: each evaluation start day begins one episode, whose Sharpe is one of the per-episode
    statistics (``train.validation: episodes``). B > 0: each start day begins one continuous
    walk through the validation window (``train.validation: continuous``), whose Sharpe is the
    validation Sharpe, and its consecutive blocks of B weeks (``finance.metrics.block_index``:
    the last one takes the remainder, a walk shorter than two blocks is halved) are the
    per-episode statistics that the selection margin's standard error reads. Either
    way the walk's length is the validation env params' ``max_steps_in_episode``."""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_len

    @property
    def num_chunks(self) -> int:
        return self.total_updates // self.updates_per_chunk

    # HOST ONLY
    @classmethod
    def from_config(cls, ppo: PPOConfig, *, updates_per_chunk: int,
                    total_env_steps: int | None = None, eval_block_weeks: int = 0) -> PPOSpec:
        """The spec of ``PPOConfig``: ``rollout_steps`` env steps per update over all envs
        (T = rollout_steps / num_envs weeks per env), num_minibatches = rollout_steps /
        minibatch_size, updates = the budget / rollout_steps rounded up to whole chunks."""
        e = int(ppo.num_envs)
        if e < 1 or ppo.rollout_steps < e or ppo.rollout_steps % e:
            raise ConfigError(f"config key 'train.ppo.rollout_steps' ({ppo.rollout_steps}) must "
                              f"be a positive multiple of train.ppo.num_envs ({e})")
        if ppo.minibatch_size < 1 or ppo.rollout_steps % ppo.minibatch_size:
            raise ConfigError(f"config key 'train.ppo.minibatch_size' ({ppo.minibatch_size}) "
                              f"must divide train.ppo.rollout_steps ({ppo.rollout_steps})")
        if ppo.epochs < 1:
            raise ConfigError(f"config key 'train.ppo.epochs' must be >= 1 (got {ppo.epochs})")
        if int(ppo.critic_warmup_updates) < 0:
            raise ConfigError(f"config key 'train.ppo.critic_warmup_updates' must be >= 0 (0: "
                              f"none; got {ppo.critic_warmup_updates})")
        if not float(ppo.concentration) >= 0:
            raise ConfigError(f"config key 'train.ppo.concentration' must be >= 0 (0 keeps the "
                              f"actor's own; got {ppo.concentration})")
        budget = int(ppo.total_env_steps if total_env_steps is None else total_env_steps)
        upc = max(int(updates_per_chunk), 1)
        updates = max(budget // ppo.rollout_steps, 1)
        updates = math.ceil(updates / upc) * upc
        return cls(num_envs=e, rollout_len=ppo.rollout_steps // e, epochs=int(ppo.epochs),
                   num_minibatches=ppo.rollout_steps // ppo.minibatch_size,
                   updates_per_chunk=upc, total_updates=updates,
                   warmup_updates=min(int(ppo.warmup_updates), updates),
                   critic_warmup_updates=int(ppo.critic_warmup_updates),
                   anchored=float(ppo.anchor_kl_coef) > 0,
                   eval_block_weeks=max(int(eval_block_weeks), 0))


def phase_optimizer() -> Any:
    """The PPO phases' optimiser: clipped Adam, peak lr and clip norm injected, and the
    learning-rate schedule taken from the ``PPOHParams`` (``with_schedule``), so that one
    compiled program serves every budget (Phase 3 and Phase 5's Macro block share theirs)."""
    return make_optimizer(lr=1.0, max_grad_norm=1.0, traced_schedule=True)


def with_schedule(hp: PPOHParams, spec: PPOSpec) -> PPOHParams:
    """``hp`` with the PPO phases' schedule for ``spec``: linear warmup over
    ``spec.warmup_updates`` and cosine decay to MIN_LR_SCALE over the rest of
    ``spec.total_updates``, counted in gradient steps (epochs x minibatches per update), and
    the critic-only warm-up when the spec has one."""
    grad_steps = spec.epochs * spec.num_minibatches
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    if spec.critic_warmup_updates:
        hp = hp.replace(critic_warmup_steps=f(spec.critic_warmup_updates * grad_steps))
    return hp.replace(warmup_steps=f(spec.warmup_updates * grad_steps),
                      decay_steps=f(max(spec.total_updates - spec.warmup_updates, 1)
                                    * grad_steps),
                      min_lr_scale=f(MIN_LR_SCALE))


# --------------------------------------------------------------------------- task and state


class PPOTask(NamedTuple):
    """What one PPO phase is (static). Observations are flat [D]; batches [B, D].

    env: a gymnax env (``reset``/``step`` with auto-reset, ``reset_env``/``step_env``,
        ``is_truncated``; its state has ``start``).
    net: the flax actor-critic; ``net.init(key, *inputs(obs [D]))``.
    inputs: obs [D] -> the network's inputs.
    apply: (params, obs [B, D]) -> ({name: distribution}, value [B]): PPO's ``apply_fn``.
    dists: (params, obs [B, D]) -> {name: distribution} from the actor half alone.
    values: (params, obs [B, D]) -> V [B] from the critic half alone.
    env_action: {name: sample [B, ..]} -> env action [B, A].
    mean_action: (params, obs [1, D]) -> the deterministic env action [A].
    baseline_action: obs [D] -> the comparator's env action [A] (equal weight).
    step_info: info keys a training step keeps (``StepOut.info``; ``net_return``,
        ``cost_frac`` and ``exposure`` among them).
    train_metrics: (out: StepOut [T, E], updated params) -> the task's per-update metrics.
    eval_step: (info, live []) -> the task's per-step evaluation outputs.
    eval_stats: (outputs [W], live [W]) -> the task's per-episode statistics.
    eval_metrics: (policy episodes [K], comparator episodes [K]) -> the task's validation
        scalars.
    start_days: auto-resets land on start days drawn from the host's ``cur.StartSet``
        (Phase 3's curriculum), else on the env params' own start range.
    targets: info -> {head: int label [E]}: supervised targets of categorical heads, learned
        with ``hp.aux_coef`` inside PPO's loss (``agents.ppo.supervised_nll``); None: none.
    """

    env: Any
    net: Any
    inputs: Callable[[Array], tuple]
    apply: Callable[[Params, Array], tuple[PyTree, Array]]
    dists: Callable[[Params, Array], dict]
    values: Callable[[Params, Array], Array]
    env_action: Callable[[dict], Array]
    mean_action: Callable[[Params, Array], Array]
    baseline_action: Callable[[Array], Array]
    step_info: tuple[str, ...]
    train_metrics: Callable[..., Metrics]
    eval_step: Callable[[dict, Array], dict]
    eval_stats: Callable[[dict, Array], dict]
    eval_metrics: Callable[[dict, dict], Metrics]
    start_days: bool
    targets: Callable[[dict], PyTree] | None = None


@struct.dataclass
class PPOState:
    """One seed's training state (leading axis K when vmapped over seeds)."""

    train: TrainState       # actor-critic params + Adam state
    env: Any                # [E] env states
    obs: Array              # [E, D] current observations
    ep_return: Array        # [E] float32 running undiscounted return of the current episode
    ep_length: Array        # [E] int32 weeks into the current episode
    key: Array              # [2] uint32 raw key data (checkpointable)
    update: Array           # [] int32 PPO updates done
    env_steps: Array        # [] int32 env steps done
    anchor: Any = None
    """The params of the policy the phase started from (after its warm start; ``spec.anchored``
    only), whose distributions at each collected state anchor PPO's loss; None: no anchor."""


class PPOProgram(NamedTuple):
    """The pure functions of one PPO phase (``make_ppo``); jit/vmap them as needed.

    init(key, hp, env_params, starts=None) -> PPOState
    run_chunk(state, env_params, hp, starts=None) -> (state, metrics: dict of [U] arrays)
    evaluate(params, env_params, start_days [K], key) -> metrics (see ``evaluate``)
    collect(params, env_params, starts | None, state, key) -> (state, PPORollout [T, E],
        StepOut [T, E]): one update's rollout (``collect_rollout``)
    apply(params, obs [B, D]) -> (dists, value [B])
    """

    init: Callable[..., PPOState]
    run_chunk: Callable[..., tuple[PPOState, Metrics]]
    evaluate: Callable[..., Metrics]
    collect: Callable[..., tuple[PPOState, PPORollout, StepOut]]
    apply: Callable[..., tuple[PyTree, Array]]
    spec: PPOSpec
    net: Any
    env: Any
    task: PPOTask


class _Model(NamedTuple):
    """The task, its spec and the optimiser, built once per program (a TrainState's ``tx``
    built inside ``init`` would be a new object on every trace, and a state from one trace
    would not fit a program compiled for another)."""

    task: PPOTask
    spec: PPOSpec
    tx: Any


# --------------------------------------------------------------------------- collection


class StepOut(NamedTuple):
    obs: Array
    action: PyTree
    log_prob: Array
    reward: Array
    terminated: Array
    truncated: Array
    final_obs: Array
    start: Array           # [E] episode start day of each env after the step
    ep_done_return: Array  # [E] return of the episode that ended at this step (0 otherwise)
    ep_done_length: Array
    info: dict
    targets: PyTree = None  # {head: [E]} supervised targets (PPOTask.targets), or None
    anchor: PyTree = None   # the anchor policy's distributions at ``obs`` (spec.anchored)


def step_envs(env: Any, env_params: EnvParams, keys: Array, states: Any, actions: Array,
              start_days: Array | None = None):
    """E envs' gymnax ``step`` (vmapped; keys, states, actions [E]); with ``start_days`` [E]
    an auto-reset lands on that env's day (the curriculum's start). Pooled ``env_params``
    (``envs.params.stack_markets``, market leaves [E]) give env i its own market."""
    if is_pooled(env_params):
        days = env_params.start_lo if start_days is None else start_days

        def own(k, s, a, d, p):
            p = p if start_days is None else p.replace(start_lo=d, start_hi=d)
            return env.step(k, s, a, p)
        return jax.vmap(own, in_axes=(0, 0, 0, 0, market_axes(env_params)))(
            keys, states, actions, days, env_params)
    if start_days is None:
        return jax.vmap(lambda k, s, a: env.step(k, s, a, env_params))(keys, states, actions)

    def one(k, s, a, d):
        return env.step(k, s, a, env_params.replace(start_lo=d, start_hi=d))
    return jax.vmap(one)(keys, states, actions, start_days)


def _reset_envs(task: PPOTask, env_params: EnvParams, keys: Array, start_days: Array | None):
    if is_pooled(env_params):
        days = env_params.start_lo if start_days is None else start_days

        def own(k, d, p):
            p = p if start_days is None else p.replace(start_lo=d, start_hi=d)
            return task.env.reset(k, p)
        return jax.vmap(own, in_axes=(0, 0, market_axes(env_params)))(keys, days, env_params)
    if start_days is None:
        return jax.vmap(lambda k: task.env.reset(k, env_params))(keys)

    def one(k, d):
        return task.env.reset(k, env_params.replace(start_lo=d, start_hi=d))
    return jax.vmap(one)(keys, start_days)


def _collect_step(m: _Model, params: Params, anchor: Params | None, env_params: EnvParams,
                  starts: cur.StartSet | None, carry: tuple, step_key: PRNGKey
                  ) -> tuple[tuple, StepOut]:
    env_state, obs, ep_ret, ep_len = carry
    task = m.task
    if task.start_days:
        act_key, env_key, start_key = jax.random.split(step_key, 3)
    else:
        act_key, env_key = jax.random.split(step_key)
    dists = task.dists(params, obs)
    action = joint_sample(act_key, dists)
    log_prob = joint_log_prob(dists, action)
    e = obs.shape[0]
    days = cur.sample_start_days(start_key, starts, (e,)) if task.start_days else None
    obs2, env_state2, reward, term, trunc, info = step_envs(
        task.env, env_params, jax.random.split(env_key, e), env_state, task.env_action(action),
        days)
    reward = reward.astype(_F32)
    done = term | trunc
    ret = ep_ret + reward
    length = ep_len + 1
    out = StepOut(
        obs=obs, action=action, log_prob=log_prob, reward=reward, terminated=term,
        truncated=trunc, final_obs=info["final_observation"], start=env_state2.start,
        ep_done_return=jnp.where(done, ret, 0.0), ep_done_length=jnp.where(done, length, 0),
        info={k: info[k] for k in task.step_info},
        targets=None if task.targets is None else task.targets(info),
        anchor=None if anchor is None else task.dists(anchor, obs),
    )
    carry = (env_state2, obs2, jnp.where(done, 0.0, ret).astype(_F32),
             jnp.where(done, 0, length).astype(_I32))
    return carry, out


def collect_rollout(m: _Model, params: Params, env_params: EnvParams,
                    starts: cur.StartSet | None, state: PPOState, key: PRNGKey
                    ) -> tuple[PPOState, PPORollout, StepOut]:
    """T steps of E envs with the current policy; returns the new state (env part only), the
    PPO rollout [T, E] with V(s_t) and V(final_obs_t) from one batched critic pass, and the raw
    per-step outputs (for metrics and tests)."""
    carry = (state.env, state.obs, state.ep_return, state.ep_length)
    step = partial(_collect_step, m, params, state.anchor, env_params, starts)
    carry, out = jax.lax.scan(step, carry, jax.random.split(key, m.spec.rollout_len))
    t, e = out.reward.shape
    both = jnp.concatenate([out.obs, out.final_obs], axis=0).reshape(2 * t * e, -1)
    values = m.task.values(params, both).reshape(2, t, e)
    rollout = PPORollout(
        obs=out.obs, action=out.action, log_prob=out.log_prob, value=values[0],
        reward=out.reward, next_value=values[1], terminated=out.terminated,
        truncated=out.truncated, targets=out.targets, anchor=out.anchor,
    )
    env_state, obs, ep_ret, ep_len = carry
    state = state.replace(env=env_state, obs=obs, ep_return=ep_ret, ep_length=ep_len)
    return state, rollout, out


# --------------------------------------------------------------------------- training


def init_state(m: _Model, key: PRNGKey, hp: PPOHParams, env_params: EnvParams,
               starts: cur.StartSet | None = None) -> PPOState:
    """One seed's initial state: network params, optimiser, E reset envs (keys split by name;
    with ``task.start_days`` the envs start on days drawn from ``starts``); with
    ``spec.anchored`` the anchor is these params until a warm start replaces both
    (``ppo_loop``)."""
    task = m.task
    if task.start_days:
        net_key, env_key, start_key, train_key = jax.random.split(key, 4)
    else:
        net_key, env_key, train_key = jax.random.split(key, 3)
    e = m.spec.num_envs
    days = cur.sample_start_days(start_key, starts, (e,)) if task.start_days else None
    obs, env_state = _reset_envs(task, env_params, jax.random.split(env_key, e), days)
    params = task.net.init(net_key, *task.inputs(obs[0]))
    ts = create_train_state(task.apply, params, m.tx)
    ts = ts.replace(opt_state=set_injected(ts.opt_state, peak_lr=hp.lr,
                                           max_norm=hp.max_grad_norm))
    return PPOState(
        train=ts, env=env_state, obs=obs, ep_return=jnp.zeros(e, _F32),
        ep_length=jnp.zeros(e, _I32), key=jax.random.key_data(train_key),
        update=jnp.zeros((), _I32), env_steps=jnp.zeros((), _I32),
        anchor=params if m.spec.anchored else None,
    )


def _update_metrics(m: _Model, out: StepOut, rollout: PPORollout, ppo: Metrics,
                    params: Params) -> Metrics:
    finished = jnp.sum(out.terminated | out.truncated).astype(_F32)
    return {
        **ppo,
        "reward": jnp.mean(rollout.reward),
        "value": jnp.mean(rollout.value),
        "episodes": finished,
        "episode_return": jnp.sum(out.ep_done_return) / jnp.maximum(finished, 1.0),
        "episode_length": jnp.sum(out.ep_done_length).astype(_F32) / jnp.maximum(finished, 1.0),
        "weekly_net_return": jnp.mean(out.info["net_return"]),
        "cost_frac": jnp.mean(out.info["cost_frac"]),
        "exposure": jnp.mean(out.info["exposure"]),
        "terminated": jnp.mean(out.terminated.astype(_F32)),
        **m.task.train_metrics(out, params),
    }


def train_update(m: _Model, env_params: EnvParams, hp: PPOHParams,
                 starts: cur.StartSet | None, state: PPOState) -> tuple[PPOState, Metrics]:
    """One PPO update: collect T·E steps, then ``ppo_update``. Keys: fold_in(key, update)."""
    if hp.warmup_steps is None:
        raise ValueError("a PPO phase's hyperparameters carry its learning-rate schedule: "
                         "pass ppo_engine.with_schedule(hp, spec)")
    update_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.update)
    rollout_key, ppo_key = jax.random.split(update_key)
    state, rollout, out = collect_rollout(m, state.train.params, env_params, starts, state,
                                          rollout_key)
    ts, ppo_metrics = ppo_update(state.train, rollout, ppo_key, hp, epochs=m.spec.epochs,
                                 num_minibatches=m.spec.num_minibatches)
    state = state.replace(train=ts, update=state.update + 1,
                          env_steps=state.env_steps + m.spec.steps_per_update)
    return state, _update_metrics(m, out, rollout, ppo_metrics, ts.params)


def run_chunk(m: _Model, state: PPOState, env_params: EnvParams, hp: PPOHParams,
              starts: cur.StartSet | None = None) -> tuple[PPOState, Metrics]:
    """``spec.updates_per_chunk`` updates in one lax.scan; metrics stacked [U]."""
    def body(s: PPOState, _):
        return train_update(m, env_params, hp, starts, s)
    return jax.lax.scan(body, state, None, length=m.spec.updates_per_chunk)


# HOST ONLY
def gradient_step_flop(prog: PPOProgram, state: PPOState, env_params: EnvParams,
                       hp: PPOHParams, starts: cur.StartSet | None = None) -> float:
    """XLA's flop count of one PPO gradient step of one seed (``state``, ``env_params`` and
    ``hp`` unbatched): ``ppo_minibatch_step`` on one minibatch of the spec's size (forward,
    backward, clipping, Adam), compiled alone. The rollout is not counted, as Phase 4's
    ``update_flop`` counts the TD3 update only; inside the chunk the step sits in loops whose
    bodies ``cost_analysis`` would count once."""
    sp = prog.spec
    size = sp.steps_per_update // sp.num_minibatches

    def batch_of(s: PPOState, key: PRNGKey):
        _, rollout, _ = prog.collect(s.train.params, env_params, starts, s, key)
        return make_batch(rollout, hp)

    shapes = jax.eval_shape(batch_of, state, jax.random.key(0))
    minibatch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((size, *x.shape[1:]), x.dtype),
                             shapes)
    return compiled_flops(jax.jit(ppo_minibatch_step).lower(state.train, minibatch, hp).compile())


# --------------------------------------------------------------------------- evaluation


def walk(task: PPOTask, params: Params, env_params: EnvParams, weeks: int, use_policy: Array,
         key: PRNGKey) -> dict[str, Array]:
    """One deterministic episode of ``weeks`` (static) steps from ``env_params.start_lo``:
    the policy's mean action (``use_policy``) or the comparator's. Steps after the episode
    ends (truncation at the end of the window, or termination) are frozen; outputs [W]:
    ``net_return``, ``live`` and the task's ``eval_step`` outputs, plus ``ended`` []."""
    obs, st = task.env.reset_env(key, env_params)

    def step(carry, _):
        obs, st, done = carry
        action = jnp.where(use_policy, task.mean_action(params, obs[None]),
                           task.baseline_action(obs))
        obs2, st2, _, term, info = task.env.step_env(key, st, action, env_params)
        trunc = task.env.is_truncated(st2, env_params)
        live = ~done
        keep = lambda a, b: jnp.where(done, a, b)  # noqa: E731
        carry = (keep(obs, obs2), jax.tree.map(keep, st, st2), done | term | trunc)
        return carry, {"net_return": info["net_return"], "live": live,
                       **task.eval_step(info, live)}

    (_, _, ended), out = jax.lax.scan(step, (obs, st, jnp.zeros((), bool)), None,
                                      length=weeks)
    return {**out, "ended": ended}


def _eval_episode(m: _Model, params: Params, env_params: EnvParams, day: Array,
                  use_policy: Array, key: PRNGKey) -> dict[str, Array]:
    """Statistics of one ``walk`` of ``env_params.max_steps_in_episode`` weeks from week end
    ``day``; with ``spec.eval_block_weeks`` also its blocks' Sharpes and live weeks [B]."""
    p = env_params.replace(start_lo=day, start_hi=day)
    out = walk(m.task, params, p, env_params.max_steps_in_episode, use_policy, key)
    r, live = out["net_return"], out["live"]
    stats = {
        "sharpe": sharpe(r, WEEKS_PER_YEAR, mask=live),
        "return": total_return(r, mask=live),
        "max_drawdown": max_drawdown(r, mask=live),
        "weeks": jnp.sum(live).astype(_I32),
        **m.task.eval_stats(out, live),
    }
    if m.spec.eval_block_weeks:
        bw = m.spec.eval_block_weeks
        idx = block_index(r.shape[0], bw)
        stats["block_sharpe"] = block_sharpes(r, bw, WEEKS_PER_YEAR, mask=live)
        stats["block_weeks"] = jnp.zeros(int(idx[-1]) + 1, _I32).at[idx].add(
            live.astype(_I32))
    return stats


def _policy_and_comparator(m: _Model, params: Params, env_params: EnvParams,
                           start_days: Array, key: PRNGKey) -> tuple[dict, dict]:
    """Per-episode statistics of the policy and of the comparator on the episodes of
    ``start_days`` [K] (pooled env params: [M, K], one row per market; episodes flattened
    market-major to [M·K])."""
    if is_pooled(env_params):
        per = jax.vmap(partial(_policy_and_comparator, m, params, key=key),
                       in_axes=(market_axes(env_params), 0))(env_params, start_days)
        return tuple(jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), half)
                     for half in per)
    k = start_days.shape[0]
    days = jnp.concatenate([start_days, start_days])
    flags = jnp.arange(2 * k) < k
    both = jax.vmap(lambda d, f: _eval_episode(m, params, env_params, d, f, key))(days, flags)
    return jax.tree.map(lambda x: x[:k], both), jax.tree.map(lambda x: x[k:], both)


def evaluate(m: _Model, params: Params, env_params: EnvParams, start_days: Array,
             key: PRNGKey) -> Metrics:
    """The deterministic policy and the comparator on the same episodes, one per start day
    [K] (2K episodes vmapped, so the env is compiled once; pooled env params: one row of
    start days per market, [M, K], and every metric over the M·K episodes).

    ``key`` only feeds the env's reset draw inside a one-week window: results do not depend on
    it. Returns per-episode arrays [K] (``episode_sharpe``, ``episode_equal_weight_sharpe``,
    ``episode_weeks``; with ``spec.eval_block_weeks`` the walks' blocks instead, [K·B]) and
    scalars: val_sharpe (annualised with √52 over weekly net returns, mean over episodes or
    walks) / val_sharpe_std (std over the per-episode values), the same for the comparator,
    val_return,
    val_equal_weight_return (mean total return), val_max_drawdown, val_episodes and the task's
    ``eval_metrics``.
    """
    pol, ew = _policy_and_comparator(m, params, env_params, start_days, key)
    k = pol["sharpe"].shape[0]
    unit = "block_" if m.spec.eval_block_weeks else ""
    per, per_ew = pol[unit + "sharpe"].reshape(-1), ew[unit + "sharpe"].reshape(-1)
    return {
        "val_sharpe": jnp.mean(pol["sharpe"]),
        "val_sharpe_std": jnp.std(per),
        "val_equal_weight_sharpe": jnp.mean(ew["sharpe"]),
        "val_equal_weight_sharpe_std": jnp.std(per_ew),
        "val_return": jnp.mean(pol["return"]),
        "val_equal_weight_return": jnp.mean(ew["return"]),
        "val_max_drawdown": jnp.mean(pol["max_drawdown"]),
        "val_episodes": jnp.asarray(k, _I32),
        "episode_sharpe": per,
        "episode_equal_weight_sharpe": per_ew,
        "episode_weeks": pol[unit + "weeks"].reshape(-1),
        **m.task.eval_metrics(pol, ew),
    }


# --------------------------------------------------------------------------- factory


def make_ppo(task: PPOTask, spec: PPOSpec) -> PPOProgram:
    """Pure functions of one PPO phase (nothing jitted here; e.g. K seeds × hyperparameters in
    one compile: ``jax.jit(jax.vmap(p.run_chunk, in_axes=(0, None, 0, None)))``)."""
    m = _Model(task, spec, phase_optimizer())
    return PPOProgram(init=partial(init_state, m), run_chunk=partial(run_chunk, m),
                      evaluate=partial(evaluate, m), collect=partial(collect_rollout, m),
                      apply=task.apply, spec=spec,
                      net=task.net, env=task.env, task=task)
