"""Phase 3: PPO on the Macro agent in MacroEnv with a frozen within-sector allocator (spec §5.5).

Outline (one compiled program per chunk of updates, vmapped over seeds × hyperparameters):
  repeat U times (lax.scan over updates):
    repeat T times (lax.scan), E envs vmapped:      a ~ Dirichlet(α(s)) ⊕ Categorical(ℓ(s))
      s', r, terminated, truncated = MacroEnv.step(s, a)   (auto-reset to a start day drawn
                                                            from the curriculum stage's set)
    V(s_t), V(final_obs_t) in one batched critic pass     (truncation bootstraps, gymnax 1.0)
    θ ← ppo_update(rollout)  (GAE once, epochs × shuffled minibatches, warmup + cosine lr)
  deterministic evaluation (Dirichlet mean ⊕ argmax regime) on many validation start dates,
  next to the equal-weight allocation on the same episodes.

The original's Phase 3 stepped daily rows, never used its Micro agent, evaluated one repeated
episode and treated truncation as termination (spec §5.5, §11 items 11-12, 19, 24). Here the
Phase-2 Micro actor allocates inside each sector every trading day (``micro_allocator``), or
the env's equal-weight-in-sector allocator when Phase 2 has no checkpoint.

Sizes: ``PPOConfig.rollout_steps`` counts env steps per PPO update over all envs (the original's
n_steps = 128 with one env), so each env runs T = rollout_steps / num_envs weeks per update;
num_minibatches = rollout_steps / minibatch_size. With the defaults (128, 8 envs, minibatch 64,
8 epochs) an update is 128 env steps and 16 gradient steps, like the original: the 70,000-step
budget gives 546 updates. Dropout is off in both collection and updates (spec §11 item 12).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training.train_state import TrainState

from hrl_sarp_jax.agents.distributions import Categorical, Dirichlet, joint_log_prob, joint_sample
from hrl_sarp_jax.agents.optim import set_injected
from hrl_sarp_jax.agents.ppo import (
    PPOHParams,
    PPORollout,
    create_train_state,
    make_optimizer,
    ppo_update,
)
from hrl_sarp_jax.checkpointing import PhaseCheckpointer, Run, write_phase_summary
from hrl_sarp_jax.config import Config, NetworkConfig, PPOConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.macro import MacroEnv, MacroState
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.finance.metrics import max_drawdown, sharpe, total_return
from hrl_sarp_jax.networks.inputs import (
    MacroInputs,
    macro_inputs_from_views,
    micro_inputs_from_views,
)
from hrl_sarp_jax.networks.macro import MacroActor, MacroActorCritic, MacroCritic
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training.sharding import replicate, seed_mesh_for, shard_seeds
from hrl_sarp_jax.types import NUM_REGIMES, Array, Params, PRNGKey, PyTree

PHASE = 3
BEST_METRIC = "val_sharpe"
WEEKS_PER_YEAR = 52
MIN_LR_SCALE = 0.01
"""Cosine floor of the learning rate, as a fraction of the peak (the original's eta_min 1e-6
against lr 1.5e-4 is 0.0067)."""

_F32 = jnp.float32
_I32 = jnp.int32
Metrics = dict[str, Array]


# --------------------------------------------------------------------------- static spec


@dataclass(frozen=True)
class Phase3Spec:
    """Static shape of the Phase-3 program (hashable; changing it recompiles)."""

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
    eval_weeks: int = 26
    """Weeks per deterministic evaluation episode."""

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_len

    @property
    def num_chunks(self) -> int:
        return self.total_updates // self.updates_per_chunk

    # HOST ONLY
    @classmethod
    def from_config(cls, ppo: PPOConfig, *, updates_per_chunk: int, eval_weeks: int,
                    total_env_steps: int | None = None) -> Phase3Spec:
        """Derive the spec from ``PPOConfig`` (see the module docstring for the sizes)."""
        e = int(ppo.num_envs)
        if e < 1 or ppo.rollout_steps < e or ppo.rollout_steps % e:
            raise ConfigError(f"config key 'train.ppo.rollout_steps' ({ppo.rollout_steps}) must "
                              f"be a positive multiple of train.ppo.num_envs ({e})")
        if ppo.minibatch_size < 1 or ppo.rollout_steps % ppo.minibatch_size:
            raise ConfigError(f"config key 'train.ppo.minibatch_size' ({ppo.minibatch_size}) "
                              f"must divide train.ppo.rollout_steps ({ppo.rollout_steps})")
        if ppo.epochs < 1:
            raise ConfigError(f"config key 'train.ppo.epochs' must be >= 1 (got {ppo.epochs})")
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
                   eval_weeks=max(int(eval_weeks), 1))


# --------------------------------------------------------------------------- state


@struct.dataclass
class Phase3State:
    """One seed's training state (leading axis K when vmapped over seeds)."""

    train: TrainState       # MacroActorCritic params + Adam state
    env: MacroState         # [E] env states
    obs: Array              # [E, D] current observations
    ep_return: Array        # [E] float32 running undiscounted return of the current episode
    ep_length: Array        # [E] int32 weeks into the current episode
    key: Array              # [2] uint32 raw key data (checkpointable)
    update: Array           # [] int32 PPO updates done
    env_steps: Array        # [] int32 env steps done


class Phase3(NamedTuple):
    """The pure functions of Phase 3 (``make_phase3``); jit/vmap them as needed.

    init(key, hp, env_params, starts) -> Phase3State
    run_chunk(state, env_params, hp, starts) -> (state, metrics: dict of [U] arrays)
    evaluate(params, env_params, start_days [K], key) -> metrics (per-episode arrays [K] and
        means; see ``evaluate``)
    apply(params, obs [B, D]) -> (dists {"weights": Dirichlet, "regime": Categorical}, value [B])
    """

    init: Callable[..., Phase3State]
    run_chunk: Callable[..., tuple[Phase3State, Metrics]]
    evaluate: Callable[..., Metrics]
    apply: Callable[..., tuple[PyTree, Array]]
    spec: Phase3Spec
    net: MacroActorCritic
    env: MacroEnv


# --------------------------------------------------------------------------- policy glue


def obs_inputs(layout: MacroObsLayout, obs: Array) -> MacroInputs:
    """MacroActorCritic inputs from one flat MacroEnv observation [D] (``networks.inputs``;
    the current sector weight becomes an extra node feature column)."""
    return macro_inputs_from_views(layout.unflatten(obs))


def policy_apply(net: MacroActorCritic, layout: MacroObsLayout, params: Params, obs: Array
                 ) -> tuple[PyTree, Array]:
    """(dists, value [B]) for obs [B, D]: the PPO ``apply_fn``."""
    def one(o: Array) -> tuple[PyTree, Array]:
        x = obs_inputs(layout, o)
        policy, value = net.apply(params, *x, deterministic=True)
        dists = {"weights": Dirichlet(policy.concentration, x.sector_mask),
                 "regime": Categorical(policy.regime_logits)}
        return dists, value
    return jax.vmap(one)(obs)


def _sub(params: Params, name: str) -> Params:
    return {"params": params["params"][name]}


def actor_apply(config: NetworkConfig, layout: MacroObsLayout, params: Params, obs: Array):
    """MacroPolicy for obs [B, D] from the actor half of MacroActorCritic params."""
    actor = MacroActor(config)
    return jax.vmap(lambda o: actor.apply(_sub(params, "actor"), *obs_inputs(layout, o)))(obs)


def critic_apply(config: NetworkConfig, layout: MacroObsLayout, params: Params, obs: Array
                 ) -> Array:
    """V(obs) [B] from the critic half of MacroActorCritic params."""
    critic = MacroCritic(config)
    return jax.vmap(lambda o: critic.apply(_sub(params, "critic"), *obs_inputs(layout, o)))(obs)


def env_action(weights: Array, regime: Array) -> Array:
    """MacroEnv action [.., S+3]: sector weights ⊕ one-hot regime call."""
    return jnp.concatenate([weights, jax.nn.one_hot(regime, NUM_REGIMES, dtype=_F32)], axis=-1)


def equal_weight_action(sector_mask: Array) -> Array:
    """[.., S+3] equal weight over the available sectors ⊕ Sideways (the baseline)."""
    m = jnp.asarray(sector_mask > 0, _F32)
    w = m / jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)
    return env_action(w, jnp.full(w.shape[:-1], 2, _I32))


def micro_allocator(config: NetworkConfig, num_stocks: int, num_sectors: int
                    ) -> Callable[[PyTree, Array], Array]:
    """A frozen Phase-2 MicroActor as MacroEnv's allocator: fn(policy_params, micro_obs [D_m])
    -> stock weights [N]. ``policy_params = {"actor": MicroActor params, "stock_sector": [N]}``
    (the sector map is not part of the micro observation)."""
    layout = MicroObsLayout(num_stocks, num_sectors)
    actor = MicroActor(config)

    def allocate(policy_params: PyTree, obs: Array) -> Array:
        views = layout.unflatten(obs)
        x = micro_inputs_from_views(views, policy_params["stock_sector"])
        mask = views["stock_mask"] > 0
        return actor.apply(policy_params["actor"], x, views["goal"], mask).weights

    return allocate


# --------------------------------------------------------------------------- collection


class _Model(NamedTuple):
    """Static pieces shared by the pure functions below (hashable enough for closures). The
    TrainState's ``apply_fn`` and ``tx`` are built once here: built inside ``init`` they would
    be new objects on every trace, and a state from one trace would not fit a program compiled
    for another (a TypeError when two runs in one process share this Phase3)."""

    env: MacroEnv
    net: MacroActorCritic
    layout: MacroObsLayout
    spec: Phase3Spec
    apply_fn: Callable
    tx: Any


def phase_optimizer(spec: Any) -> Any:
    """The PPO phases' optimiser: clipped Adam with linear warmup over ``spec.warmup_updates``
    and cosine decay to MIN_LR_SCALE over the rest of ``spec.total_updates`` (counted in
    gradient steps: epochs x minibatches per update); peak lr and clip norm are injected."""
    grad_steps = spec.epochs * spec.num_minibatches
    return make_optimizer(
        lr=1.0, max_grad_norm=1.0, warmup_steps=spec.warmup_updates * grad_steps,
        decay_steps=max(spec.total_updates - spec.warmup_updates, 1) * grad_steps,
        min_lr_scale=MIN_LR_SCALE)


def _step_envs(env: MacroEnv, env_params: EnvParams, keys: Array, states: MacroState,
               actions: Array, start_days: Array):
    """vmapped gymnax ``step``; an auto-reset lands on ``start_days`` [E] (one-week windows)."""
    def one(k, s, a, d):
        return env.step(k, s, a, env_params.replace(start_lo=d, start_hi=d))
    return jax.vmap(one)(keys, states, actions, start_days)


def _reset_envs(env: MacroEnv, env_params: EnvParams, keys: Array, start_days: Array):
    def one(k, d):
        return env.reset(k, env_params.replace(start_lo=d, start_hi=d))
    return jax.vmap(one)(keys, start_days)


class _StepOut(NamedTuple):
    obs: Array
    action: PyTree
    log_prob: Array
    reward: Array
    terminated: Array
    truncated: Array
    final_obs: Array
    start: Array          # [E] episode start day of each env after the step
    ep_done_return: Array  # [E] return of the episode that ended at this step (0 otherwise)
    ep_done_length: Array
    info: dict


def _collect_step(m: _Model, params: Params, env_params: EnvParams, starts: cur.StartSet,
                  carry: tuple, step_key: PRNGKey) -> tuple[tuple, _StepOut]:
    env_state, obs, ep_ret, ep_len = carry
    act_key, env_key, start_key = jax.random.split(step_key, 3)
    policy = actor_apply(m.net.config, m.layout, params, obs)
    mask = m.layout.unflatten(obs)["sector_mask"] > 0
    dists = {"weights": Dirichlet(policy.concentration, mask),
             "regime": Categorical(policy.regime_logits)}
    action = joint_sample(act_key, dists)
    log_prob = joint_log_prob(dists, action)
    e = obs.shape[0]
    days = cur.sample_start_days(start_key, starts, (e,))
    obs2, env_state2, reward, term, trunc, info = _step_envs(
        m.env, env_params, jax.random.split(env_key, e), env_state,
        env_action(action["weights"], action["regime"]), days)
    reward = reward.astype(_F32)
    done = term | trunc
    ret = ep_ret + reward
    length = ep_len + 1
    out = _StepOut(
        obs=obs, action=action, log_prob=log_prob, reward=reward, terminated=term,
        truncated=trunc, final_obs=info["final_observation"], start=env_state2.start,
        ep_done_return=jnp.where(done, ret, 0.0), ep_done_length=jnp.where(done, length, 0),
        info={k: info[k] for k in ("net_return", "cost_frac", "exposure", "regime_call",
                                   "regime_label")},
    )
    carry = (env_state2, obs2, jnp.where(done, 0.0, ret).astype(_F32),
             jnp.where(done, 0, length).astype(_I32))
    return carry, out


def collect_rollout(m: _Model, params: Params, env_params: EnvParams, starts: cur.StartSet,
                    state: Phase3State, key: PRNGKey) -> tuple[Phase3State, PPORollout, _StepOut]:
    """T steps of E envs with the current policy; returns the new state (env part only), the
    PPO rollout [T, E] with V(s_t) and V(final_obs_t) from one batched critic pass, and the raw
    per-step outputs (for metrics and tests)."""
    carry = (state.env, state.obs, state.ep_return, state.ep_length)
    step = partial(_collect_step, m, params, env_params, starts)
    carry, out = jax.lax.scan(step, carry, jax.random.split(key, m.spec.rollout_len))
    t, e = out.reward.shape
    both = jnp.concatenate([out.obs, out.final_obs], axis=0).reshape(2 * t * e, -1)
    values = critic_apply(m.net.config, m.layout, params, both).reshape(2, t, e)
    rollout = PPORollout(
        obs=out.obs, action=out.action, log_prob=out.log_prob, value=values[0],
        reward=out.reward, next_value=values[1], terminated=out.terminated,
        truncated=out.truncated,
    )
    env_state, obs, ep_ret, ep_len = carry
    state = state.replace(env=env_state, obs=obs, ep_return=ep_ret, ep_length=ep_len)
    return state, rollout, out


# --------------------------------------------------------------------------- training


def init_state(m: _Model, key: PRNGKey, hp: PPOHParams, env_params: EnvParams,
               starts: cur.StartSet) -> Phase3State:
    """One seed's initial state: network params, optimiser, E reset envs (keys split by name)."""
    net_key, env_key, start_key, train_key = jax.random.split(key, 4)
    e = m.spec.num_envs
    days = cur.sample_start_days(start_key, starts, (e,))
    obs, env_state = _reset_envs(m.env, env_params, jax.random.split(env_key, e), days)
    params = m.net.init(net_key, *obs_inputs(m.layout, obs[0]))
    ts = create_train_state(m.apply_fn, params, m.tx)
    ts = ts.replace(opt_state=set_injected(ts.opt_state, peak_lr=hp.lr,
                                           max_norm=hp.max_grad_norm))
    return Phase3State(
        train=ts, env=env_state, obs=obs, ep_return=jnp.zeros(e, _F32),
        ep_length=jnp.zeros(e, _I32), key=jax.random.key_data(train_key),
        update=jnp.zeros((), _I32), env_steps=jnp.zeros((), _I32),
    )


def _update_metrics(out: _StepOut, rollout: PPORollout, ppo: Metrics) -> Metrics:
    done = out.terminated | out.truncated
    finished = jnp.sum(done).astype(_F32)
    label = out.info["regime_label"]
    known = label >= 0
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
        "regime_accuracy": jnp.sum((out.info["regime_call"] == label) & known)
        / jnp.maximum(jnp.sum(known), 1),
        "terminated": jnp.mean(out.terminated.astype(_F32)),
    }


def train_update(m: _Model, env_params: EnvParams, hp: PPOHParams, starts: cur.StartSet,
                 state: Phase3State) -> tuple[Phase3State, Metrics]:
    """One PPO update: collect T·E steps, then ``ppo_update``. Keys: fold_in(key, update)."""
    base = jax.random.wrap_key_data(state.key)
    update_key = jax.random.fold_in(base, state.update)
    rollout_key, ppo_key = jax.random.split(update_key)
    state, rollout, out = collect_rollout(m, state.train.params, env_params, starts, state,
                                          rollout_key)
    ts, ppo_metrics = ppo_update(state.train, rollout, ppo_key, hp, epochs=m.spec.epochs,
                                 num_minibatches=m.spec.num_minibatches)
    state = state.replace(train=ts, update=state.update + 1,
                          env_steps=state.env_steps + m.spec.steps_per_update)
    return state, _update_metrics(out, rollout, ppo_metrics)


def run_chunk(m: _Model, state: Phase3State, env_params: EnvParams, hp: PPOHParams,
              starts: cur.StartSet) -> tuple[Phase3State, Metrics]:
    """``spec.updates_per_chunk`` updates in one lax.scan; metrics stacked [U]."""
    def body(s: Phase3State, _):
        return train_update(m, env_params, hp, starts, s)
    return jax.lax.scan(body, state, None, length=m.spec.updates_per_chunk)


# --------------------------------------------------------------------------- evaluation


def _eval_episode(m: _Model, params: Params, env_params: EnvParams, day: Array,
                  use_policy: Array, key: PRNGKey) -> dict[str, Array]:
    """One deterministic episode of ``spec.eval_weeks`` weeks from week end ``day``.

    use_policy False: the equal-weight allocation (one program serves both, so the env is
    compiled once). Steps after the episode ends (truncation at the end of the window, or
    termination) are frozen and masked out.
    """
    p = env_params.replace(start_lo=day, start_hi=day)
    obs, st = m.env.reset_env(key, p)

    def step(carry, _):
        obs, st, done = carry
        pol = actor_apply(m.net.config, m.layout, params, obs[None])
        action = jnp.where(use_policy,
                           env_action(pol.mean_weights[0], jnp.argmax(pol.regime_logits[0])),
                           equal_weight_action(m.layout.unflatten(obs)["sector_mask"]))
        obs2, st2, _, term, info = m.env.step_env(key, st, action, p)
        trunc = m.env.is_truncated(st2, p)
        live = ~done
        keep = lambda a, b: jnp.where(done, a, b)  # noqa: E731
        carry = (keep(obs, obs2), jax.tree.map(keep, st, st2), done | term | trunc)
        out = {"net_return": info["net_return"], "live": live,
               "regime_hit": (info["regime_call"] == info["regime_label"]) & live,
               "regime_known": (info["regime_label"] >= 0) & live}
        return carry, out

    _, out = jax.lax.scan(step, (obs, st, jnp.zeros((), bool)), None, length=m.spec.eval_weeks)
    r, live = out["net_return"], out["live"]
    return {
        "sharpe": sharpe(r, WEEKS_PER_YEAR, mask=live),
        "return": total_return(r, mask=live),
        "max_drawdown": max_drawdown(r, mask=live),
        "weeks": jnp.sum(live).astype(_I32),
        "regime_hits": jnp.sum(out["regime_hit"]).astype(_I32),
        "regime_known": jnp.sum(out["regime_known"]).astype(_I32),
    }


def evaluate(m: _Model, params: Params, env_params: EnvParams, start_days: Array,
             key: PRNGKey) -> Metrics:
    """Deterministic policy (Dirichlet mean ⊕ argmax regime) and the equal-weight allocation on
    the same episodes, one per start day [K] (vmapped over 2K episodes).

    ``key`` only feeds the env's reset draw inside a one-week window: results do not depend on
    it. Returns per-episode arrays [K] (``episode_sharpe``, ``episode_equal_weight_sharpe``,
    ``episode_weeks``) and scalars: val_sharpe / val_sharpe_std (annualised with √52 over
    weekly net returns, mean / std over episodes), the same for the equal weight, val_return,
    val_equal_weight_return (mean total return), val_max_drawdown, val_regime_accuracy (over
    weeks with a known label) and val_episodes.
    """
    k = start_days.shape[0]
    days = jnp.concatenate([start_days, start_days])
    flags = jnp.arange(2 * k) < k
    both = jax.vmap(lambda d, f: _eval_episode(m, params, env_params, d, f, key))(days, flags)
    pol = jax.tree.map(lambda x: x[:k], both)
    ew = jax.tree.map(lambda x: x[k:], both)
    known = jnp.sum(pol["regime_known"])
    return {
        "val_sharpe": jnp.mean(pol["sharpe"]),
        "val_sharpe_std": jnp.std(pol["sharpe"]),
        "val_equal_weight_sharpe": jnp.mean(ew["sharpe"]),
        "val_equal_weight_sharpe_std": jnp.std(ew["sharpe"]),
        "val_return": jnp.mean(pol["return"]),
        "val_equal_weight_return": jnp.mean(ew["return"]),
        "val_max_drawdown": jnp.mean(pol["max_drawdown"]),
        "val_regime_accuracy": jnp.sum(pol["regime_hits"]) / jnp.maximum(known, 1),
        "val_episodes": jnp.asarray(k, _I32),
        "episode_sharpe": pol["sharpe"],
        "episode_equal_weight_sharpe": ew["sharpe"],
        "episode_weeks": pol["weeks"],
    }


# --------------------------------------------------------------------------- factory


def make_phase3(env: MacroEnv, net: NetworkConfig | MacroActorCritic, spec: Phase3Spec) -> Phase3:
    """Pure Phase-3 functions for ``env`` (its allocator is frozen inside) and the Macro network.

    Nothing is jitted here: wrap as needed, e.g. a sweep over seeds × hparams in one compile is
    ``jax.jit(jax.vmap(p.run_chunk, in_axes=(0, None, 0, None)))``.
    """
    module = net if isinstance(net, MacroActorCritic) else MacroActorCritic(net)
    m = _Model(env, module, env.layout, spec, partial(policy_apply, module, env.layout),
               phase_optimizer(spec))
    return Phase3(
        init=partial(init_state, m),
        run_chunk=partial(run_chunk, m),
        evaluate=partial(evaluate, m),
        apply=m.apply_fn,
        spec=spec,
        net=module,
        env=env,
    )


def deterministic_weights(p3: Phase3, params: Params, obs: Array) -> Array:
    """Dirichlet-mean sector weights [B, S] (before the env's projection) for obs [B, D]."""
    return actor_apply(p3.net.config, p3.env.layout, params, obs).mean_weights


# --------------------------------------------------------------------------- host side


# HOST ONLY
def eval_start_days(week_end: np.ndarray, lo: int, hi: int, weeks: int, max_episodes: int
                    ) -> np.ndarray:
    """int32 [K] evaluation start days: every k-th week end in [lo, hi] that leaves ``weeks``
    full weeks before hi (or the first week end if none does), k chosen so K <= max_episodes."""
    ends = cur.window_week_ends(week_end, lo, hi)
    if ends.size == 0:
        raise ConfigError(f"the validation window [{lo}, {hi}] holds no week end")
    usable = ends[: max(ends.size - weeks, 1)]
    every = max(math.ceil(usable.size / max(int(max_episodes), 1)), 1)
    return usable[::every].astype(np.int32)


# HOST ONLY
def stack_hparams(hp: PPOHParams, count: int) -> PPOHParams:
    """hp with a leading axis of ``count`` identical members."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *x.shape)), hp)


# HOST ONLY
def phase3_keys(seed: int, count: int) -> Array:
    """[count] keys for Phase 3: member k = fold_in(fold_in(key(seed), PHASE), k), independent of
    ``count`` (so a K-seed run's member k equals a one-seed run with that member's key)."""
    root = jax.random.fold_in(jax.random.key(int(seed)), PHASE)
    return jnp.stack([jax.random.fold_in(root, k) for k in range(int(count))])


@dataclass
class Phase3Setup:
    """Everything the host loop (and the benchmark) needs, built from config + market."""

    p3: Phase3
    train_params: EnvParams
    val_params: EnvParams
    windows: cur.StageWindows
    eval_days: jax.Array
    hp: PPOHParams
    info: dict[str, Any]


# HOST ONLY
def _split_bounds(meta: MarketMeta, cfg: Config, num_days: int) -> tuple[int, int, int]:
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    val = int(np.searchsorted(dates, np.datetime64(cfg.data.val_start, "D")))
    test = int(np.searchsorted(dates, np.datetime64(cfg.data.test_start, "D")))
    if not 0 < val < test <= num_days:
        raise ConfigError(f"data.val_start={cfg.data.val_start} / data.test_start="
                          f"{cfg.data.test_start} leave no training or validation days in "
                          f"{dates[0]}..{dates[-1]}")
    return val, test, num_days


# HOST ONLY
def setup_phase3(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet, *,
                 micro_params: Params | None = None,
                 rule: cur.CurriculumRule = cur.DEFAULT_RULE,
                 total_env_steps: int | None = None, max_eval_episodes: int = 16) -> Phase3Setup:
    """Env params for the train / validation splits, the curriculum stages, the eval starts and
    the Phase-3 functions. ``micro_params``: a Phase-2 MicroActor to freeze inside the env
    (None: the env's equal-weight-in-sector allocator)."""
    val_start, test_start, _ = _split_bounds(meta, cfg, market.num_days)
    n, s = market.num_stocks, market.num_sectors
    f_s = int(feats.sector.shape[-1])
    policy_params = None if micro_params is None else {
        "actor": micro_params, "stock_sector": jnp.asarray(market.stock_sector, _I32)}
    train_params = MacroEnv.make_params(market, feats, cfg.env, split=(0, val_start - 1),
                                        policy_params=policy_params)
    val_params = MacroEnv.make_params(market, feats, cfg.env, split=(val_start, test_start - 1),
                                      policy_params=policy_params)
    regime, source = cur.regime_for_curriculum(np.asarray(market.latent_regime),
                                               np.asarray(feats.regime_rule))
    windows, cinfo = cur.build_stage_windows(
        np.asarray(market.week_end), regime, np.asarray(market.benchmark_returns),
        int(train_params.start_lo), int(train_params.start_hi), int(train_params.t_hi), rule)
    spec = Phase3Spec.from_config(cfg.train.ppo, updates_per_chunk=cfg.train.eval_interval,
                                  eval_weeks=cfg.env.macro_episode_weeks,
                                  total_env_steps=total_env_steps)
    days = eval_start_days(np.asarray(market.week_end), val_start, test_start - 1,
                           spec.eval_weeks, max_eval_episodes)
    dates = np.asarray(meta.dates)
    info = {
        "allocator": "phase2_micro" if micro_params is not None else "equal_weight_in_sector",
        "curriculum": {**cinfo, "regime_source": source, "enabled": rule.enabled},
        "train_span": [str(dates[0]), str(dates[val_start - 1])],
        "val_span": [str(dates[val_start]), str(dates[test_start - 1])],
        "eval_start_days": [str(dates[d]) for d in days],
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
    }
    p3 = _phase3_functions(n, s, f_s, cfg.env.return_window, cfg.networks, spec,
                           micro_params is not None)
    return Phase3Setup(p3, train_params, val_params, windows,
                       jnp.asarray(days), PPOHParams.from_config(cfg.train.ppo), info)


# HOST ONLY
@lru_cache(maxsize=8)
def _phase3_functions(num_stocks: int, num_sectors: int, sector_features: int,
                      return_window: int, networks: NetworkConfig, spec: Phase3Spec,
                      with_micro: bool) -> Phase3:
    """One Phase3 (env, network, pure functions) per static setup, so that repeated runs in
    one process (resume, phase 'all', tests) reuse the same jitted programs."""
    allocator = micro_allocator(networks, num_stocks, num_sectors) if with_micro else None
    env = MacroEnv(num_stocks, num_sectors, sector_features, return_window=return_window,
                   allocator=allocator)
    return make_phase3(env, networks, spec)


def _init_seeds(init: Callable[..., Phase3State], keys: Array, hp: PPOHParams,
                env_params: EnvParams, starts: cur.StartSet) -> Phase3State:
    """K seeds' initial states, one after another (``lax.map``), stacked [K].

    (Written as a map when ``jit(vmap(init))`` over 2+ seeds hung on jax 0.10.2 CPU; the cause
    was the orthogonal initialiser's batched LAPACK QR deadlocking the intra-op thread pool,
    fixed in ``networks.common.orthogonal``. A sequential map gives the same per-seed values.)
    """
    return jax.lax.map(lambda kh: init(kh[0], kh[1], env_params, starts), (keys, hp))


def _signature(tree: PyTree) -> tuple:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


_COMPILED: dict[tuple, tuple[Callable, Callable, Callable, float]] = {}


# HOST ONLY
def compile_programs(setup: Phase3Setup, seeds: int, mesh: Any = None
                     ) -> tuple[Callable, Callable, Callable, float]:
    """(init, run_chunk, evaluate) jitted and vmapped over K seeds (hparams per seed), and the
    seconds spent compiling run_chunk ahead of time (0 when this process already compiled the
    same program). ``mesh``: a ``training.sharding`` seed mesh; run_chunk is then compiled for
    the seed axis split over its devices (inputs must be placed with ``shard_seeds``)."""
    devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)
    key = (setup.p3, int(seeds), _signature(setup.train_params), _signature(setup.windows),
           devices)
    if key in _COMPILED:
        init, chunk, evaluate, _ = _COMPILED[key]
        return init, chunk, evaluate, 0.0
    p3 = setup.p3
    init = jax.jit(partial(_init_seeds, p3.init))
    chunk = jax.jit(jax.vmap(p3.run_chunk, in_axes=(0, None, 0, None)))
    evaluate = jax.jit(jax.vmap(p3.evaluate, in_axes=(0, None, None, None)))
    hp = stack_hparams(setup.hp, seeds)
    starts = cur.stage_starts(0, setup.windows)
    abstract = jax.eval_shape(init, phase3_keys(0, seeds), hp, setup.train_params, starts)
    train_params = setup.train_params
    if mesh is not None:
        abstract, hp = shard_seeds((abstract, hp), mesh)
        train_params, starts = replicate((train_params, starts), mesh)
    t0 = time.perf_counter()
    chunk = chunk.lower(abstract, train_params, hp, starts).compile()
    _COMPILED[key] = (init, chunk, evaluate, time.perf_counter() - t0)
    return _COMPILED[key]


# HOST ONLY
def abstract_state(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                   seeds: int) -> Phase3State:
    """Shapes and dtypes of a K-seed Phase3State (the restore target of Phase 3's
    checkpoints; the allocator does not change them)."""
    setup = setup_phase3(cfg, market, meta, feats)
    init = jax.vmap(setup.p3.init, in_axes=(0, 0, None, None))
    return jax.eval_shape(init, phase3_keys(cfg.seed, seeds), stack_hparams(setup.hp, seeds),
                          setup.train_params, cur.stage_starts(0, setup.windows))


# HOST ONLY
def load_phase2_micro(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                      feats: FeatureSet) -> tuple[Params | None, dict[str, Any]]:
    """The Phase-2 Micro actor (best checkpoint; the seed with the lowest validation loss), or
    None with the reason when Phase 2 has no usable checkpoint."""
    if not (run.phase_dir(2) / "ckpt").is_dir():
        return None, {"phase2": "no checkpoint: equal-weight-in-sector allocator"}
    from hrl_sarp_jax.training.runner import restore_phase_state

    try:
        state, _meta, step = restore_phase_state(run, 2, cfg, market, meta, feats, "best")
    except (CheckpointError, ConfigError) as exc:
        return None, {"phase2": f"not restored ({exc}); equal-weight-in-sector allocator"}
    k = int(np.argmin(np.asarray(state.best_val)))
    params = jax.tree.map(lambda x: x[k], state.best_params)
    return params, {"phase2": f"best_params of seed {k} from step {step}"}


# HOST ONLY
def load_phase1_actor(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                      feats: FeatureSet, seeds: int) -> tuple[Params | None, dict[str, Any]]:
    """Phase-1 MacroActor params stacked [K] for the K Phase-3 seeds (seed k from Phase-1 seed
    k when the counts match, else every seed from the one with the lowest validation loss)."""
    if not (run.phase_dir(1) / "ckpt").is_dir():
        return None, {"phase1": "no checkpoint: actor initialised at random"}
    from hrl_sarp_jax.training.runner import restore_phase_state

    try:
        state, _meta, step = restore_phase_state(run, 1, cfg, market, meta, feats, "best")
    except (CheckpointError, ConfigError) as exc:
        return None, {"phase1": f"not restored ({exc}); actor initialised at random"}
    best = np.asarray(state.best_val)
    if best.shape[0] == seeds:
        params, how = state.best_params, "seed k from Phase-1 seed k"
    else:
        k = int(np.argmin(best))
        params = jax.tree.map(lambda x: jnp.broadcast_to(x[k], (seeds, *x.shape[1:])),
                              state.best_params)
        how = f"every seed from Phase-1 seed {k}"
    return params, {"phase1": f"best_params ({how}) from step {step}"}


# HOST ONLY
def warm_start_actor(state: Phase3State, actor_params: Params) -> tuple[Phase3State, bool]:
    """Replace the actor half of the (stacked) MacroActorCritic params by MacroActor params
    (same structure) and reset the optimiser moments; returns (state, applied)."""
    ts = state.train
    current = ts.params["params"]["actor"]
    new = actor_params["params"]
    same = (jax.tree.structure(current) == jax.tree.structure(new)
            and all(a.shape == b.shape for a, b in zip(jax.tree.leaves(current),
                                                      jax.tree.leaves(new), strict=True)))
    if not same:
        return state, False
    params = {"params": {**ts.params["params"], "actor": jax.tree.map(jnp.asarray, new)}}
    opt_state = jax.vmap(ts.tx.init)(params)
    opt_state = _copy_injected(ts.opt_state, opt_state)
    return state.replace(train=ts.replace(params=params, opt_state=opt_state)), True


def set_concentration(state: Phase3State, total: float) -> Phase3State:
    """Every seed's Macro Dirichlet total concentration (``MacroPolicy.concentration``, before
    the floor) set to ``total`` > 0: the actor's ``concentration_raw`` = softplus⁻¹(total).
    The optimiser moments of that parameter are reset."""
    if not total > 0:
        raise ConfigError(f"train.ppo.concentration = {total} must be > 0 (0 keeps the "
                          f"actor's own)")
    ts = state.train
    actor = ts.params["params"]["actor"]
    raw = float(total) + math.log(-math.expm1(-float(total)))
    actor = {**actor, "concentration_raw": jnp.full_like(actor["concentration_raw"], raw)}
    params = {"params": {**ts.params["params"], "actor": actor}}
    opt_state = _copy_injected(ts.opt_state, jax.vmap(ts.tx.init)(params))
    return state.replace(train=ts.replace(params=params, opt_state=opt_state))


def _copy_injected(src: PyTree, dst: PyTree) -> PyTree:
    """dst with the injected hyperparameters of src (same optimiser)."""
    from optax import InjectHyperparamsState, InjectStatefulHyperparamsState

    kinds = (InjectHyperparamsState, InjectStatefulHyperparamsState)
    is_inj = lambda s: isinstance(s, kinds)  # noqa: E731
    src_l = jax.tree.leaves(src, is_leaf=is_inj)
    dst_l, treedef = jax.tree.flatten(dst, is_leaf=is_inj)
    out = [d._replace(hyperparams=s.hyperparams) if is_inj(d) else d
           for s, d in zip(src_l, dst_l, strict=True)]
    return jax.tree.unflatten(treedef, out)


def _mean_records(metrics: dict[str, np.ndarray], first_update: int) -> list[dict[str, Any]]:
    """One record per update (means over seeds) from [K, U] metrics."""
    out = []
    u = next(iter(metrics.values())).shape[1]
    for j in range(u):
        rec = {"update": first_update + j + 1}
        rec.update({k: float(np.mean(v[:, j])) for k, v in metrics.items()})
        rec["per_seed"] = {k: v[:, j].tolist() for k, v in metrics.items()}
        out.append(rec)
    return out


def _seed_lists(ev: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-seed values of the scalar eval metrics (metrics.jsonl's ``per_seed``)."""
    return {k: np.asarray(v).tolist() for k, v in ev.items()
            if k.startswith("val_") and np.ndim(v) == 1}


def _eval_record(ev: dict[str, np.ndarray]) -> dict[str, Any]:
    """Means over seeds of the scalar eval metrics, plus per-seed val Sharpe."""
    rec: dict[str, Any] = {k: float(np.mean(v)) for k, v in ev.items()
                           if k.startswith("val_") and np.ndim(v) == 1}
    rec["val_sharpe_per_seed"] = [float(x) for x in ev["val_sharpe"]]
    return rec


# HOST ONLY (not jittable)
def run_phase3(
    run: Run,
    cfg: Config,
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    *,
    seeds: int | None = None,
    resume: bool = False,
    update_limit: int | None = None,
    rule: cur.CurriculumRule = cur.DEFAULT_RULE,
    total_env_steps: int | None = None,
    log: Callable[[str], None] | None = None,
    hparams: PPOHParams | None = None,
    member_keys: jax.Array | None = None,
) -> dict[str, Any]:
    """Train Phase 3 into ``run``, write ``phase3/summary.json`` and return the summary.

    K = ``seeds`` (default ``cfg.train.seeds``) seeds in one vmapped program. The frozen
    allocator is the Phase-2 Micro actor when Phase 2 has a checkpoint (else equal weight in
    each sector, recorded in the summary); the actor starts from Phase 1 when it has one. Every
    chunk of ``cfg.train.eval_interval`` updates is followed by an evaluation on the validation
    split, one metrics line per update and one per evaluation, a curriculum decision and a
    checkpoint (latest-N plus best by mean ``val_sharpe``). ``resume`` continues bit-exactly
    from the latest checkpoint (the whole state, keys included, and the curriculum position are
    saved). ``update_limit`` stops after that many updates in total (a simulated interruption;
    the learning-rate schedule still spans the full budget).

    ``hparams`` (leaves [K], e.g. a sweep's settings × seeds) replaces K copies of
    ``cfg.train.ppo``; ``member_keys`` [K] replaces ``phase3_keys(cfg.seed, K)`` (a sweep gives
    every setting the same seed keys). A resume must pass the same ones.
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    k = int(cfg.train.seeds if seeds is None else seeds)
    if k < 1:
        raise ConfigError(f"Phase 3 needs at least one seed (got {k})")
    for what, tree in (("hparams", hparams), ("member_keys", member_keys)):
        leads = {tuple(jnp.shape(x)[:1]) for x in jax.tree.leaves(tree)}
        if tree is not None and leads != {(k,)}:
            raise ConfigError(f"run_phase3: {what} must have a leading axis of {k} members "
                              f"(one per seed), got leading shapes {sorted(leads)}")
    ck = PhaseCheckpointer(run, PHASE, keep_latest=cfg.train.keep_latest, best_metric=BEST_METRIC)
    try:
        if ck.latest_step() is not None and not resume:
            raise CheckpointError(
                f"phase 3 of run {run.name} already has checkpoints (steps "
                f"{ck.all_steps()}); pass --resume to continue it or use a new --run")
        micro, micro_info = load_phase2_micro(run, cfg, market, meta, feats)
        setup = setup_phase3(cfg, market, meta, feats, micro_params=micro, rule=rule,
                             total_env_steps=total_env_steps)
        spec = setup.p3.spec
        hp = stack_hparams(setup.hp, k) if hparams is None else jax.tree.map(
            lambda x: jnp.asarray(x, _F32), hparams)
        mesh = seed_mesh_for(k)
        init, chunk, evaluate, compile_s = compile_programs(setup, k, mesh)
        say(f"phase 3: {k} seed(s) on {mesh.size} device(s), {spec.total_updates} updates of "
            f"{spec.steps_per_update} env steps, allocator {setup.info['allocator']}, "
            f"compiled in {compile_s:.1f}s")

        stage = cur.initial_stage(rule)
        stage_updates = 0
        history: list[list[int]] = [[0, stage]]
        start_info: dict[str, Any] = dict(micro_info)
        state = init(phase3_keys(cfg.seed, k) if member_keys is None else member_keys, hp,
                     setup.train_params, cur.stage_starts(stage, setup.windows))
        resumed_from = None
        if ck.latest_step() is not None:
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
            state, saved, resumed_from = ck.restore(abstract, "latest")
            user = saved.get("user", {})
            stage, stage_updates = int(user["stage"]), int(user["stage_updates"])
            history = [list(h) for h in user["stage_history"]]
            start_info = dict(user.get("start_info", start_info))
            say(f"phase 3: resumed from update {resumed_from} (next stage {stage})")
        else:
            actor, p1_info = load_phase1_actor(run, cfg, market, meta, feats, k)
            start_info.update(p1_info)
            if actor is not None:
                state, applied = warm_start_actor(state, actor)
                if not applied:
                    start_info["phase1"] = "Phase-1 actor does not fit the network; random init"
            if float(cfg.train.ppo.concentration) > 0:
                state = set_concentration(state, float(cfg.train.ppo.concentration))
                start_info["concentration"] = float(cfg.train.ppo.concentration)
        limit = spec.total_updates if update_limit is None else min(int(update_limit),
                                                                    spec.total_updates)
        state, hp = shard_seeds((state, hp), mesh)  # the seed axis over the mesh's devices
        eval_key = jax.random.fold_in(jax.random.key(int(cfg.seed)), 1000 + PHASE)
        last_eval: dict[str, np.ndarray] | None = None
        if resumed_from is None and limit > 0:
            # update 0 = the starting policy (Phase 1's actor): 'best' never falls below it
            ev = {key: np.asarray(v) for key, v in jax.device_get(
                evaluate(state.train.params, setup.val_params, setup.eval_days, eval_key)).items()}
            rec = _eval_record(ev)
            run.log_metrics(PHASE, 0, {**rec, "stage": stage, "eval": True,
                                       "per_seed": _seed_lists(ev), "env_steps": 0})
            ck.save(0, state, metrics={BEST_METRIC: rec["val_sharpe"],
                                       "val_equal_weight_sharpe": rec["val_equal_weight_sharpe"]},
                    meta={"stage": stage, "stage_updates": stage_updates,
                          "stage_history": history, "seeds": k, "start_info": start_info})
            say(f"phase 3: before training val_sharpe {rec['val_sharpe']:.3f} (equal weight "
                f"{rec['val_equal_weight_sharpe']:.3f})")
        while int(np.max(np.asarray(state.update))) < limit:
            done_before = int(np.max(np.asarray(state.update)))
            ran_stage = stage
            state, metrics = chunk(state, setup.train_params, hp,
                                   cur.stage_starts(stage, setup.windows))
            metrics = {key: np.asarray(v) for key, v in jax.device_get(metrics).items()}
            for rec in _mean_records(metrics, done_before):
                run.log_metrics(PHASE, rec.pop("update"), {**rec, "stage": ran_stage})
            updates = int(np.max(np.asarray(state.update)))
            ev = {key: np.asarray(v) for key, v in jax.device_get(
                evaluate(state.train.params, setup.val_params, setup.eval_days, eval_key)).items()}
            last_eval = ev
            rec = _eval_record(ev)
            run.log_metrics(PHASE, updates, {**rec, "stage": ran_stage, "eval": True,
                                             "per_seed": _seed_lists(ev), "env_steps": int(
                                                 np.sum(np.asarray(state.env_steps)))})
            stage_updates += updates - done_before
            val = rec["val_sharpe"]
            # the curriculum decision is taken before saving, so a resume continues with it
            if cur.promote(stage, val, stage_updates, updates, spec.total_updates, rule):
                stage, stage_updates = stage + 1, 0
                history.append([updates, stage])
            ck.save(updates, state,
                    metrics={BEST_METRIC: val,
                             "val_equal_weight_sharpe": rec["val_equal_weight_sharpe"]},
                    meta={"stage": stage, "stage_updates": stage_updates,
                          "stage_history": history, "seeds": k, "start_info": start_info})
            say(f"phase 3: update {updates}/{spec.total_updates} stage {ran_stage} "
                f"val_sharpe {val:.3f} (equal weight {rec['val_equal_weight_sharpe']:.3f})")
        ck.wait_until_finished()
        best_step, latest_step = ck.best_step(), ck.latest_step()
        best_metrics = ck.metrics(best_step) if best_step is not None else None
    finally:
        ck.close()

    if last_eval is None:
        last_eval = {key: np.asarray(v) for key, v in jax.device_get(
            evaluate(state.train.params, setup.val_params, setup.eval_days, eval_key)).items()}
    final = _eval_record(last_eval)
    per_seed = {key: np.asarray(v).tolist() for key, v in last_eval.items()
                if key.startswith("val_")}
    updates = int(np.max(np.asarray(state.update)))
    summary: dict[str, Any] = {
        "env_steps": int(np.sum(np.asarray(state.env_steps))),
        "env_steps_per_seed": int(np.max(np.asarray(state.env_steps))),
        "updates": updates,
        "wall_s": round(time.perf_counter() - t0, 3),
        "compile_s": round(compile_s, 3),
        "seeds": k,
        "val_sharpe": final["val_sharpe"],
        "val_sharpe_std": final["val_sharpe_std"],
        "val_equal_weight_sharpe": final["val_equal_weight_sharpe"],
        "val_return": final["val_return"],
        "val_equal_weight_return": final["val_equal_weight_return"],
        "val_regime_accuracy": final["val_regime_accuracy"],
        "val_max_drawdown": final["val_max_drawdown"],
        "per_seed": per_seed,
        "best_step": best_step,
        "best_val_sharpe": None if not best_metrics else best_metrics.get(BEST_METRIC),
        "latest_step": latest_step,
        "resumed_from_step": resumed_from,
        "stage": stage,
        "stage_history": history,
        "params_used": "final params (the best checkpoint by val_sharpe is kept as well)",
        **start_info,
        **setup.info,
    }
    write_phase_summary(run, PHASE, summary)
    return summary


# HOST ONLY
def run_phase3_entry(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                     run: Run, *, resume: bool = False, epoch_limit: int | None = None,
                     progress: bool = True) -> Any:
    """``run_phase3`` with the phase registry's signature (``training.phases.PhaseSpec.run``):
    ``epoch_limit`` is read as an update limit; returns a ``training.runner.PhaseResult``."""
    from hrl_sarp_jax.training.runner import PhaseResult

    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    summary = run_phase3(run, cfg, market, meta, feats, resume=resume, update_limit=epoch_limit,
                         log=say)
    rows = [("validation Sharpe (weekly, annualised)", float(summary["val_sharpe"]),
             "val_equal_weight_sharpe", float(summary["val_equal_weight_sharpe"])),
            ("validation total return", float(summary["val_return"]),
             "val_equal_weight_return", float(summary["val_equal_weight_return"])),
            ("regime accuracy", float(summary["val_regime_accuracy"]), None, None)]
    return PhaseResult(PHASE, summary, run.phase_dir(PHASE) / "summary.json", rows)


# HOST ONLY
def example_micro_actor(cfg: Config, market: MarketArrays, seed: int = 0) -> Params:
    """MicroActor params of ``cfg.networks``' shapes for ``market`` (random: for benchmarks and
    shape-only uses, never as a policy)."""
    from hrl_sarp_jax.networks.inputs import MICRO_STOCK_FEATURES

    n, s = market.num_stocks, market.num_sectors
    x = jnp.zeros((n, MICRO_STOCK_FEATURES), _F32)
    goal = jnp.full((s + NUM_REGIMES,), 1.0 / s, _F32)
    return MicroActor(cfg.networks).init(jax.random.key(seed), x, goal, jnp.ones((n,), bool))


# HOST ONLY
def bench_phase3(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet, *,
                 seed_counts: tuple[int, ...] = (1, 16), total_env_steps: int = 70_000,
                 with_eval: bool = True, allocator: str = "micro") -> dict[str, Any]:
    """Phase-3 throughput at the original's budget: for each K in ``seed_counts``, compile and
    run ``total_env_steps`` env steps per seed (K seeds vmapped), evaluating after every chunk
    when ``with_eval`` (no checkpoint I/O). ``allocator``: 'micro' (a frozen MicroActor of
    ``cfg.networks`` allocating inside each sector every day, as the main job runs Phase 3;
    random weights, the same work) or 'equal_weight' (the env's own). Returns machine-readable
    figures: compile_s, run_s, wall_s (compile + init + run), env_steps_per_s per seed and in
    total, and the original's reference (190 env steps/s, 335-376 s for 70,000)."""
    if allocator not in ("micro", "equal_weight"):
        raise ConfigError(f"bench phase 3: allocator {allocator!r} is not one of micro, "
                          f"equal_weight")
    micro = example_micro_actor(cfg, market) if allocator == "micro" else None
    setup = setup_phase3(cfg, market, meta, feats, micro_params=micro,
                         total_env_steps=total_env_steps)
    spec = setup.p3.spec
    out: dict[str, Any] = {"phase": 3, "total_env_steps_per_seed": spec.total_updates
                           * spec.steps_per_update, "updates": spec.total_updates,
                           "spec": setup.info["spec"], "allocator": setup.info["allocator"],
                           "original_env_steps_per_s": 190.0,
                           "original_wall_s": [335.0, 376.0], "runs": []}
    key = jax.random.key(int(cfg.seed))
    for k in seed_counts:
        t0 = time.perf_counter()
        init, chunk, evaluate, compile_s = compile_programs(setup, k)
        hp = stack_hparams(setup.hp, k)
        starts = cur.stage_starts(1, setup.windows)
        state = init(phase3_keys(cfg.seed, k), hp, setup.train_params, starts)
        t_eval_compile = 0.0
        if with_eval:
            t1 = time.perf_counter()
            jax.block_until_ready(evaluate(state.train.params, setup.val_params,
                                           setup.eval_days, key))
            t_eval_compile = time.perf_counter() - t1
        jax.block_until_ready(state)
        t_run = time.perf_counter()
        for _ in range(spec.num_chunks):
            state, metrics = chunk(state, setup.train_params, hp, starts)
            if with_eval:
                ev = evaluate(state.train.params, setup.val_params, setup.eval_days, key)
                jax.device_get((metrics, ev))
        jax.block_until_ready(state)
        run_s = time.perf_counter() - t_run
        wall = time.perf_counter() - t0
        steps = int(np.sum(np.asarray(state.env_steps)))
        out["runs"].append({
            "seeds": k, "compile_s": round(compile_s, 3),
            "eval_first_call_s": round(t_eval_compile, 3), "run_s": round(run_s, 3),
            "wall_s": round(wall, 3), "env_steps": steps,
            "env_steps_per_s": round(steps / wall, 1),
            "env_steps_per_s_excl_compile": round(steps / run_s, 1),
            "speedup_vs_original": round(steps / wall / 190.0, 1),
        })
    if len(out["runs"]) > 1:
        out["wall_ratio_last_vs_first"] = round(out["runs"][-1]["wall_s"]
                                                / out["runs"][0]["wall_s"], 2)
    return out
