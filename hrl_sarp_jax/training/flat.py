"""The flat single-level RL baseline: PPO directly over stock weights in FlatEnv (no hierarchy).

What the evaluation report compares HRL-SARP against: one PPO agent whose action is a
Dirichlet over the N stocks (masked to the tradable ones), rebalancing once per calendar week
like the Macro agent (same decision frequency and cost profile), trading through the same
accounting, costs, constraints and risk manager (``envs.flat.FlatEnv``), with the same env-step
budget as Phase 3 (``cfg.train.ppo.total_env_steps``, one env step = one week in both) and the
same PPO machinery and sizes (``Phase3Spec.from_config(cfg.train.ppo)``). Reward = the week's
net log-return. No goal, no regime head, no pre-training, no curriculum: episodes start at
week ends drawn uniformly over the training split (the curriculum is part of the HRL-SARP
recipe, not of the baseline).

Outline (one compiled program per chunk of updates, vmapped over K seeds):
  repeat U times (lax.scan over updates):
    repeat T times (lax.scan), E envs vmapped:   a ~ Dirichlet(alpha(s)) over tradable stocks
      s', r, terminated, truncated = FlatEnv.step(s, a)   (gymnax auto-reset)
    V(s_t), V(final_obs_t) in one batched critic pass     (truncation bootstrapped)
    theta <- ppo_update(rollout)  (GAE, epochs x shuffled minibatches, warmup + cosine lr)
  deterministic evaluation (Dirichlet mean) on many validation start dates, next to the
  equal-weight-over-tradable-stocks action on the same episodes.

Run folder: the training state is checkpointed as phase ``"flat"`` (``<run>/phaseflat/``, the
checkpointer accepts names), and the policy parameters alone as phase ``"flat_policy"``
(``{"policy": FlatActorCritic params [K, ...]}``) at the same steps with the same metrics, so
``evaluation.flat_policy`` can restore the policy without importing this module (training and
evaluation are sibling layers). Metrics lines carry ``"phase": "flat"``; the summary is
``phaseflat/summary.json``.
"""

from __future__ import annotations

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

from hrl_sarp_jax.agents.distributions import Dirichlet, joint_log_prob, joint_sample
from hrl_sarp_jax.agents.optim import set_injected
from hrl_sarp_jax.agents.ppo import (
    PPOHParams,
    PPORollout,
    create_train_state,
    ppo_update,
)
from hrl_sarp_jax.checkpointing import PhaseCheckpointer, Run, write_phase_summary
from hrl_sarp_jax.config import Config, NetworkConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.flat import FlatEnv, FlatObsLayout, FlatState
from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.finance.metrics import max_drawdown, sharpe, total_return
from hrl_sarp_jax.networks.flat import FlatActor, FlatActorCritic, FlatCritic, FlatPolicy
from hrl_sarp_jax.training.rl_macro import (
    WEEKS_PER_YEAR,
    Phase3Spec,
    _eval_record,
    _mean_records,
    _seed_lists,
    _signature,
    _split_bounds,
    eval_start_days,
    phase_optimizer,
    stack_hparams,
)
from hrl_sarp_jax.types import Array, Params, PRNGKey, PyTree

PHASE = "flat"
"""Checkpointer / metrics / summary name of the training state (``<run>/phaseflat/``)."""
POLICY_PHASE = "flat_policy"
"""Checkpointer of the policy parameters alone (read by ``evaluation.flat_policy``)."""
BEST_METRIC = "val_sharpe"
REGISTRY_NUMBER = 0
"""Number of the flat baseline in ``PhaseResult`` (phases are 1..5)."""
KEY_STREAM = 100
"""fold_in stream of the flat baseline's keys (phases use their numbers 1..5)."""

_F32 = jnp.float32
_I32 = jnp.int32
Metrics = dict[str, Array]
FlatSpec = Phase3Spec
"""The static program shape is Phase 3's (envs, rollout length, epochs, minibatches, chunk,
schedule length, evaluation weeks), derived from the same ``PPOConfig``."""


# --------------------------------------------------------------------------- state


@struct.dataclass
class FlatTrainState:
    """One seed's training state (leading axis K when vmapped over seeds)."""

    train: TrainState       # FlatActorCritic params + Adam state
    env: FlatState          # [E] env states
    obs: Array              # [E, D] current observations
    ep_return: Array        # [E] float32 running undiscounted return of the current episode
    ep_length: Array        # [E] int32 weeks into the current episode
    key: Array              # [2] uint32 raw key data (checkpointable)
    update: Array           # [] int32 PPO updates done
    env_steps: Array        # [] int32 env steps done


class FlatProgram(NamedTuple):
    """The pure functions of the flat baseline (``make_flat``); jit/vmap them as needed.

    init(key, hp, env_params) -> FlatTrainState
    run_chunk(state, env_params, hp) -> (state, metrics: dict of [U] arrays)
    evaluate(params, env_params, start_days [K], key) -> metrics (see ``evaluate``)
    apply(params, obs [B, D]) -> ({"weights": Dirichlet}, value [B])
    """

    init: Callable[..., FlatTrainState]
    run_chunk: Callable[..., tuple[FlatTrainState, Metrics]]
    evaluate: Callable[..., Metrics]
    apply: Callable[..., tuple[PyTree, Array]]
    spec: FlatSpec
    net: FlatActorCritic
    env: FlatEnv


class _Model(NamedTuple):
    """Static pieces of the flat baseline; ``apply_fn`` and ``tx`` built once (see
    ``rl_macro._Model``)."""

    env: FlatEnv
    net: FlatActorCritic
    layout: FlatObsLayout
    spec: FlatSpec
    apply_fn: Callable
    tx: Any


# --------------------------------------------------------------------------- policy glue


def _inputs(layout: FlatObsLayout, obs: Array) -> tuple[Array, ...]:
    """Batched network inputs of obs [B, D]."""
    return jax.vmap(layout.policy_inputs)(obs)


def _sub(params: Params, name: str) -> Params:
    return {"params": params["params"][name]}


def actor_apply(config: NetworkConfig, layout: FlatObsLayout, params: Params, obs: Array
                ) -> tuple[FlatPolicy, Array]:
    """(FlatPolicy [B], stock mask [B, N]) for obs [B, D] from the actor half of the params."""
    x = _inputs(layout, obs)
    actor = FlatActor(config)
    return jax.vmap(lambda *a: actor.apply(_sub(params, "actor"), *a))(*x), x[1]


def critic_apply(config: NetworkConfig, layout: FlatObsLayout, params: Params, obs: Array
                 ) -> Array:
    """V(obs) [B] from the critic half of the params."""
    critic = FlatCritic(config)
    return jax.vmap(lambda *a: critic.apply(_sub(params, "critic"), *a))(*_inputs(layout, obs))


def policy_apply(net: FlatActorCritic, layout: FlatObsLayout, params: Params, obs: Array
                 ) -> tuple[PyTree, Array]:
    """({"weights": Dirichlet}, value [B]) for obs [B, D]: the PPO ``apply_fn``."""
    x = _inputs(layout, obs)
    policy, value = jax.vmap(lambda *a: net.apply(params, *a))(*x)
    return {"weights": Dirichlet(policy.concentration, x[1])}, value


def deterministic_weights(config: NetworkConfig, layout: FlatObsLayout, params: Params,
                          obs: Array) -> Array:
    """Dirichlet-mean stock weights [B, N] (before the env's projection) for obs [B, D]."""
    return actor_apply(config, layout, params, obs)[0].mean_weights


def equal_weight_action(stock_mask: Array) -> Array:
    """[.., N] equal weight over the tradable stocks (the baseline of the evaluation)."""
    m = jnp.asarray(stock_mask > 0, _F32)
    return m / jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1.0)


# --------------------------------------------------------------------------- collection


class _StepOut(NamedTuple):
    obs: Array
    action: PyTree
    log_prob: Array
    reward: Array
    terminated: Array
    truncated: Array
    final_obs: Array
    ep_done_return: Array   # [E] return of the episode that ended at this step (0 otherwise)
    ep_done_length: Array
    info: dict


def _collect_step(m: _Model, params: Params, env_params: EnvParams, carry: tuple,
                  step_key: PRNGKey) -> tuple[tuple, _StepOut]:
    env_state, obs, ep_ret, ep_len = carry
    act_key, env_key = jax.random.split(step_key)
    policy, mask = actor_apply(m.net.config, m.layout, params, obs)
    dists = {"weights": Dirichlet(policy.concentration, mask)}
    action = joint_sample(act_key, dists)
    log_prob = joint_log_prob(dists, action)
    e = obs.shape[0]
    step = jax.vmap(lambda k, s, a: m.env.step(k, s, a, env_params))
    obs2, env_state2, reward, term, trunc, info = step(jax.random.split(env_key, e), env_state,
                                                       action["weights"])
    reward = reward.astype(_F32)
    done = term | trunc
    ret, length = ep_ret + reward, ep_len + 1
    out = _StepOut(
        obs=obs, action=action, log_prob=log_prob, reward=reward, terminated=term,
        truncated=trunc, final_obs=info["final_observation"],
        ep_done_return=jnp.where(done, ret, 0.0), ep_done_length=jnp.where(done, length, 0),
        info={k: info[k] for k in ("net_return", "cost_frac", "turnover", "exposure")},
    )
    carry = (env_state2, obs2, jnp.where(done, 0.0, ret).astype(_F32),
             jnp.where(done, 0, length).astype(_I32))
    return carry, out


def collect_rollout(m: _Model, params: Params, env_params: EnvParams, state: FlatTrainState,
                    key: PRNGKey) -> tuple[FlatTrainState, PPORollout, _StepOut]:
    """T steps of E envs with the current policy: (state with the new env part, the PPO
    rollout [T, E] with V(s_t) and V(final_obs_t) from one batched critic pass, raw outputs)."""
    carry = (state.env, state.obs, state.ep_return, state.ep_length)
    step = partial(_collect_step, m, params, env_params)
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


def init_state(m: _Model, key: PRNGKey, hp: PPOHParams, env_params: EnvParams
               ) -> FlatTrainState:
    """One seed's initial state: network params, optimiser, E reset envs."""
    net_key, env_key, train_key = jax.random.split(key, 3)
    e = m.spec.num_envs
    obs, env_state = jax.vmap(lambda k: m.env.reset(k, env_params))(jax.random.split(env_key, e))
    params = m.net.init(net_key, *m.layout.policy_inputs(obs[0]))
    ts = create_train_state(m.apply_fn, params, m.tx)
    ts = ts.replace(opt_state=set_injected(ts.opt_state, peak_lr=hp.lr,
                                           max_norm=hp.max_grad_norm))
    return FlatTrainState(
        train=ts, env=env_state, obs=obs, ep_return=jnp.zeros(e, _F32),
        ep_length=jnp.zeros(e, _I32), key=jax.random.key_data(train_key),
        update=jnp.zeros((), _I32), env_steps=jnp.zeros((), _I32),
    )


def _update_metrics(out: _StepOut, rollout: PPORollout, ppo: Metrics,
                    params: Params) -> Metrics:
    finished = jnp.sum(out.terminated | out.truncated).astype(_F32)
    raw = params["params"]["actor"]["concentration_raw"]
    return {
        **ppo,
        "reward": jnp.mean(rollout.reward),
        "value": jnp.mean(rollout.value),
        "episodes": finished,
        "episode_return": jnp.sum(out.ep_done_return) / jnp.maximum(finished, 1.0),
        "episode_length": jnp.sum(out.ep_done_length).astype(_F32) / jnp.maximum(finished, 1.0),
        "weekly_net_return": jnp.mean(out.info["net_return"]),
        "cost_frac": jnp.mean(out.info["cost_frac"]),
        "turnover": jnp.mean(out.info["turnover"]),
        "exposure": jnp.mean(out.info["exposure"]),
        "concentration_kappa": jax.nn.softplus(raw),
        "terminated": jnp.mean(out.terminated.astype(_F32)),
    }


def train_update(m: _Model, env_params: EnvParams, hp: PPOHParams, state: FlatTrainState
                 ) -> tuple[FlatTrainState, Metrics]:
    """One PPO update: collect T·E steps, then ``ppo_update``. Keys: fold_in(key, update)."""
    update_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.update)
    rollout_key, ppo_key = jax.random.split(update_key)
    state, rollout, out = collect_rollout(m, state.train.params, env_params, state, rollout_key)
    ts, ppo_metrics = ppo_update(state.train, rollout, ppo_key, hp, epochs=m.spec.epochs,
                                 num_minibatches=m.spec.num_minibatches)
    state = state.replace(train=ts, update=state.update + 1,
                          env_steps=state.env_steps + m.spec.steps_per_update)
    return state, _update_metrics(out, rollout, ppo_metrics, ts.params)


def run_chunk(m: _Model, state: FlatTrainState, env_params: EnvParams, hp: PPOHParams
              ) -> tuple[FlatTrainState, Metrics]:
    """``spec.updates_per_chunk`` updates in one lax.scan; metrics stacked [U]."""
    return jax.lax.scan(lambda s, _: train_update(m, env_params, hp, s), state, None,
                        length=m.spec.updates_per_chunk)


# --------------------------------------------------------------------------- evaluation


def _eval_episode(m: _Model, params: Params, env_params: EnvParams, day: Array,
                  use_policy: Array, key: PRNGKey) -> dict[str, Array]:
    """One deterministic episode of ``spec.eval_weeks`` weeks from week end ``day``: the
    Dirichlet mean (use_policy) or equal weight over the tradable stocks. Steps after the
    episode ends (truncation at the end of the split, or termination) are masked out."""
    p = env_params.replace(start_lo=day, start_hi=day)
    obs, st = m.env.reset_env(key, p)

    def step(carry, _):
        obs, st, done = carry
        policy, mask = actor_apply(m.net.config, m.layout, params, obs[None])
        action = jnp.where(use_policy, policy.mean_weights[0], equal_weight_action(mask[0]))
        obs2, st2, _, term, info = m.env.step_env(key, st, action, p)
        trunc = m.env.is_truncated(st2, p)
        keep = lambda a, b: jnp.where(done, a, b)  # noqa: E731
        carry = (keep(obs, obs2), jax.tree.map(keep, st, st2), done | term | trunc)
        return carry, {"net_return": info["net_return"], "turnover": info["turnover"],
                       "cost_frac": info["cost_frac"], "live": ~done}

    _, out = jax.lax.scan(step, (obs, st, jnp.zeros((), bool)), None, length=m.spec.eval_weeks)
    r, live = out["net_return"], out["live"]
    weeks = jnp.maximum(jnp.sum(live), 1).astype(_F32)
    return {
        "sharpe": sharpe(r, WEEKS_PER_YEAR, mask=live),
        "return": total_return(r, mask=live),
        "max_drawdown": max_drawdown(r, mask=live),
        "turnover": jnp.sum(jnp.where(live, out["turnover"], 0.0)) / weeks,
        "cost_frac": jnp.sum(jnp.where(live, out["cost_frac"], 0.0)) / weeks,
        "weeks": jnp.sum(live).astype(_I32),
    }


def evaluate(m: _Model, params: Params, env_params: EnvParams, start_days: Array,
             key: PRNGKey) -> Metrics:
    """Deterministic policy (Dirichlet mean) and equal weight over the tradable stocks on the
    same episodes, one per start day [K] (2K episodes vmapped). ``key`` only feeds the env's
    reset draw inside a one-week window: results do not depend on it.

    Returns per-episode arrays [K] (``episode_sharpe``, ``episode_equal_weight_sharpe``,
    ``episode_weeks``) and scalars: val_sharpe / val_sharpe_std (annualised with √52 over weekly
    net returns; mean / std over episodes), the same for equal weight, val_return,
    val_equal_weight_return (mean total return), val_max_drawdown, val_turnover and
    val_cost_frac (mean weekly one-way turnover / cost fraction) and val_episodes.
    """
    k = start_days.shape[0]
    days = jnp.concatenate([start_days, start_days])
    flags = jnp.arange(2 * k) < k
    both = jax.vmap(lambda d, f: _eval_episode(m, params, env_params, d, f, key))(days, flags)
    pol = jax.tree.map(lambda x: x[:k], both)
    ew = jax.tree.map(lambda x: x[k:], both)
    return {
        "val_sharpe": jnp.mean(pol["sharpe"]),
        "val_sharpe_std": jnp.std(pol["sharpe"]),
        "val_equal_weight_sharpe": jnp.mean(ew["sharpe"]),
        "val_equal_weight_sharpe_std": jnp.std(ew["sharpe"]),
        "val_return": jnp.mean(pol["return"]),
        "val_equal_weight_return": jnp.mean(ew["return"]),
        "val_max_drawdown": jnp.mean(pol["max_drawdown"]),
        "val_turnover": jnp.mean(pol["turnover"]),
        "val_cost_frac": jnp.mean(pol["cost_frac"]),
        "val_episodes": jnp.asarray(k, _I32),
        "episode_sharpe": pol["sharpe"],
        "episode_equal_weight_sharpe": ew["sharpe"],
        "episode_weeks": pol["weeks"],
    }


# --------------------------------------------------------------------------- factory


def make_flat(env: FlatEnv, net: NetworkConfig | FlatActorCritic, spec: FlatSpec
              ) -> FlatProgram:
    """Pure functions of the flat baseline (nothing jitted here; e.g. K seeds in one compile:
    ``jax.jit(jax.vmap(p.run_chunk, in_axes=(0, None, 0)))``)."""
    module = net if isinstance(net, FlatActorCritic) else FlatActorCritic(net)
    m = _Model(env, module, env.layout, spec, partial(policy_apply, module, env.layout),
               phase_optimizer(spec))
    return FlatProgram(
        init=partial(init_state, m), run_chunk=partial(run_chunk, m),
        evaluate=partial(evaluate, m), apply=m.apply_fn,
        spec=spec, net=module, env=env,
    )


# --------------------------------------------------------------------------- host side


# HOST ONLY
def flat_keys(seed: int, count: int) -> Array:
    """[count] keys: member k = fold_in(fold_in(key(seed), KEY_STREAM), k), independent of
    ``count`` (a K-seed run's member k equals a one-seed run with that member's key)."""
    root = jax.random.fold_in(jax.random.key(int(seed)), KEY_STREAM)
    return jnp.stack([jax.random.fold_in(root, k) for k in range(int(count))])


@dataclass
class FlatSetup:
    """Everything the host loop needs, built from config + market."""

    program: FlatProgram
    train_params: EnvParams
    val_params: EnvParams
    eval_days: jax.Array
    hp: PPOHParams
    info: dict[str, Any]


# HOST ONLY
@lru_cache(maxsize=8)
def _program(num_stocks: int, num_sectors: int, return_window: int, networks: NetworkConfig,
             spec: FlatSpec) -> FlatProgram:
    """One FlatProgram per static setup, so repeated runs in one process reuse the compiles."""
    return make_flat(FlatEnv(num_stocks, num_sectors, return_window=return_window), networks,
                     spec)


# HOST ONLY
def setup_flat(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet, *,
               total_env_steps: int | None = None, max_eval_episodes: int = 16) -> FlatSetup:
    """Env params for the train / validation splits, the evaluation start days and the
    program, with Phase 3's sizes and env-step budget (``cfg.train.ppo``)."""
    val_start, test_start, _ = _split_bounds(meta, cfg, market.num_days)
    train_params = FlatEnv.make_params(market, feats, cfg.env, split=(0, val_start - 1))
    val_params = FlatEnv.make_params(market, feats, cfg.env, split=(val_start, test_start - 1))
    spec = FlatSpec.from_config(cfg.train.ppo, updates_per_chunk=cfg.train.eval_interval,
                                eval_weeks=cfg.env.macro_episode_weeks,
                                total_env_steps=total_env_steps)
    days = eval_start_days(np.asarray(market.week_end), val_start, test_start - 1,
                           spec.eval_weeks, max_eval_episodes)
    dates = np.asarray(meta.dates)
    info = {
        "agent": "flat PPO over stock weights (Dirichlet over tradable stocks), weekly",
        "reward": "weekly net log-return",
        "train_span": [str(dates[0]), str(dates[val_start - 1])],
        "val_span": [str(dates[val_start]), str(dates[test_start - 1])],
        "eval_start_days": [str(dates[d]) for d in days],
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
    }
    prog = _program(market.num_stocks, market.num_sectors, cfg.env.return_window, cfg.networks,
                    spec)
    return FlatSetup(prog, train_params, val_params, jnp.asarray(days),
                     PPOHParams.from_config(cfg.train.ppo), info)


def _init_seeds(init: Callable[..., FlatTrainState], keys: Array, hp: PPOHParams,
                env_params: EnvParams) -> FlatTrainState:
    """K seeds' initial states with ``lax.map`` (see ``rl_macro._init_seeds`` for why not
    vmap); each member is initialised from its own key."""
    return jax.lax.map(lambda kh: init(kh[0], kh[1], env_params), (keys, hp))


_COMPILED: dict[tuple, tuple[Callable, Callable, Callable, float]] = {}


# HOST ONLY
def compile_programs(setup: FlatSetup, seeds: int, *,
                     compiler_options: dict[str, Any] | None = None
                     ) -> tuple[Callable, Callable, Callable, float]:
    """(init, run_chunk, evaluate) jitted and vmapped over K seeds (run_chunk and evaluate
    compiled ahead of time, with XLA ``compiler_options`` if given), and the seconds spent
    compiling them (0 when this process already compiled the same programs: the first
    compile wins, whatever its options)."""
    key = (setup.program, int(seeds), _signature(setup.train_params),
           _signature(setup.eval_days))
    if key in _COMPILED:
        init, chunk, evaluate_, _ = _COMPILED[key]
        return init, chunk, evaluate_, 0.0
    prog = setup.program
    init = jax.jit(partial(_init_seeds, prog.init))
    hp = stack_hparams(setup.hp, seeds)
    abstract = jax.eval_shape(init, flat_keys(0, seeds), hp, setup.train_params)
    t0 = time.perf_counter()
    chunk = jax.jit(jax.vmap(prog.run_chunk, in_axes=(0, None, 0))).lower(
        abstract, setup.train_params, hp).compile(compiler_options=compiler_options)
    evaluate_ = jax.jit(jax.vmap(prog.evaluate, in_axes=(0, None, None, None))).lower(
        abstract.train.params, setup.val_params, setup.eval_days, jax.random.key(0)
    ).compile(compiler_options=compiler_options)
    _COMPILED[key] = (init, chunk, evaluate_, time.perf_counter() - t0)
    return _COMPILED[key]


# HOST ONLY (not jittable)
def run_flat(
    run: Run,
    cfg: Config,
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    *,
    seeds: int | None = None,
    resume: bool = False,
    total_env_steps: int | None = None,
    update_limit: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the flat baseline into ``run``, write ``phaseflat/summary.json``, return it.

    K = ``seeds`` (default ``cfg.train.seeds``) seeds in one vmapped program; the budget is
    Phase 3's (``total_env_steps`` overrides ``cfg.train.ppo.total_env_steps``, as for
    ``run_phase3``). After every chunk of ``cfg.train.eval_interval`` updates: one metrics line
    per update and one per evaluation (validation split), a checkpoint of the whole state
    (latest-N plus best by mean ``val_sharpe``) and of the policy parameters alone.
    ``resume`` continues bit-exactly from the latest checkpoint; ``update_limit`` stops after
    that many updates in total (a simulated interruption; the lr schedule spans the budget).
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    k = int(cfg.train.seeds if seeds is None else seeds)
    if k < 1:
        raise ConfigError(f"the flat baseline needs at least one seed (got {k}); "
                          "set train.seeds >= 1")
    ck = PhaseCheckpointer(run, PHASE, keep_latest=cfg.train.keep_latest, best_metric=BEST_METRIC)
    pol_ck = PhaseCheckpointer(run, POLICY_PHASE, keep_latest=cfg.train.keep_latest,
                               best_metric=BEST_METRIC)
    try:
        if not resume and (ck.latest_step() is not None or pol_ck.latest_step() is not None):
            raise CheckpointError(
                f"the flat baseline of run {run.name} already has checkpoints (steps "
                f"{ck.all_steps() or pol_ck.all_steps()}); pass --resume to continue it or "
                "use a new --run")
        setup = setup_flat(cfg, market, meta, feats, total_env_steps=total_env_steps)
        spec = setup.program.spec
        hp = stack_hparams(setup.hp, k)
        init, chunk, evaluate_, compile_s = compile_programs(setup, k)
        say(f"flat baseline: {k} seed(s), {spec.total_updates} updates of "
            f"{spec.steps_per_update} env steps, compiled in {compile_s:.1f}s")
        state = init(flat_keys(cfg.seed, k), hp, setup.train_params)
        resumed_from = None
        if ck.latest_step() is not None:
            abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
            state, _saved, resumed_from = ck.restore(abstract, "latest")
            say(f"flat baseline: resumed from update {resumed_from}")
        limit = spec.total_updates if update_limit is None else min(int(update_limit),
                                                                    spec.total_updates)
        eval_key = jax.random.fold_in(jax.random.key(int(cfg.seed)), 1000 + KEY_STREAM)
        last_eval: dict[str, np.ndarray] | None = None
        while int(np.max(np.asarray(state.update))) < limit:
            done_before = int(np.max(np.asarray(state.update)))
            state, metrics = chunk(state, setup.train_params, hp)
            metrics = {name: np.asarray(v) for name, v in jax.device_get(metrics).items()}
            for rec in _mean_records(metrics, done_before):
                run.log_metrics(PHASE, rec.pop("update"), rec)
            updates = int(np.max(np.asarray(state.update)))
            last_eval = {name: np.asarray(v) for name, v in jax.device_get(evaluate_(
                state.train.params, setup.val_params, setup.eval_days, eval_key)).items()}
            rec = _eval_record(last_eval)
            run.log_metrics(PHASE, updates, {**rec, "eval": True, "per_seed": _seed_lists(
                last_eval), "env_steps": int(np.sum(np.asarray(state.env_steps)))})
            saved_metrics = {BEST_METRIC: rec["val_sharpe"],
                             "val_equal_weight_sharpe": rec["val_equal_weight_sharpe"],
                             "seeds": k}
            ck.save(updates, state, metrics=saved_metrics, meta={"seeds": k})
            latest_pol = pol_ck.latest_step()
            if latest_pol is None or updates > latest_pol:
                pol_ck.save(updates, {"policy": state.train.params}, metrics=saved_metrics,
                            meta={"seeds": k})
            say(f"flat baseline: update {updates}/{spec.total_updates} val_sharpe "
                f"{rec['val_sharpe']:.3f} (equal weight {rec['val_equal_weight_sharpe']:.3f})")
        ck.wait_until_finished()
        best_step, latest_step = ck.best_step(), ck.latest_step()
        best_metrics = ck.metrics(best_step) if best_step is not None else None
    finally:
        ck.close()
        pol_ck.close()

    if last_eval is None:
        last_eval = {name: np.asarray(v) for name, v in jax.device_get(evaluate_(
            state.train.params, setup.val_params, setup.eval_days, eval_key)).items()}
    final = _eval_record(last_eval)
    summary: dict[str, Any] = {
        "env_steps": int(np.sum(np.asarray(state.env_steps))),
        "env_steps_per_seed": int(np.max(np.asarray(state.env_steps))),
        "updates": int(np.max(np.asarray(state.update))),
        "wall_s": round(time.perf_counter() - t0, 3),
        "compile_s": round(compile_s, 3),
        "seeds": k,
        **{name: final[name] for name in (
            "val_sharpe", "val_sharpe_std", "val_equal_weight_sharpe", "val_return",
            "val_equal_weight_return", "val_max_drawdown", "val_turnover", "val_cost_frac")},
        "per_seed": {name: np.asarray(v).tolist() for name, v in last_eval.items()
                     if name.startswith("val_")},
        "best_step": best_step,
        "best_val_sharpe": None if not best_metrics else best_metrics.get(BEST_METRIC),
        "latest_step": latest_step,
        "resumed_from_step": resumed_from,
        "params_used": "final params (the best checkpoint by val_sharpe is kept as well; "
                       "evaluation.flat_policy restores 'best' by default)",
        "env_step_budget": "Phase 3's: train.ppo.total_env_steps, one env step = one week",
        **setup.info,
    }
    write_phase_summary(run, PHASE, summary)
    return summary


# HOST ONLY
def run_flat_entry(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                   run: Run, *, resume: bool = False, epoch_limit: int | None = None,
                   progress: bool = True) -> Any:
    """``run_flat`` with the phase registry's signature (``training.phases.PhaseSpec.run``):
    ``epoch_limit`` is read as an update limit; returns a ``training.runner.PhaseResult``
    numbered ``REGISTRY_NUMBER`` (0: the flat baseline is not one of the phases 1..5)."""
    from hrl_sarp_jax.training.runner import PhaseResult

    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    summary = run_flat(run, cfg, market, meta, feats, resume=resume, update_limit=epoch_limit,
                       log=say)
    rows = [("validation Sharpe (weekly, annualised)", float(summary["val_sharpe"]),
             "val_equal_weight_sharpe", float(summary["val_equal_weight_sharpe"])),
            ("validation total return", float(summary["val_return"]),
             "val_equal_weight_return", float(summary["val_equal_weight_return"]))]
    return PhaseResult(REGISTRY_NUMBER, summary, run.phase_dir(PHASE) / "summary.json", rows)
