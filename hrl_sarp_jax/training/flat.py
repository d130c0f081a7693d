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

The flat agent is a ``PPOTask`` of the one PPO engine (``training.ppo_engine``; the host loop
is ``training.ppo_loop.run_ppo``, as for Phase 3): a ~ Dirichlet(alpha(s)) over the tradable
stocks, FlatEnv with gymnax auto-reset, deterministic evaluation (Dirichlet mean) on many
validation start dates next to equal weight over the tradable stocks on the same episodes.

Run folder: the training state is checkpointed as phase ``"flat"`` (``<run>/phaseflat/``, the
checkpointer accepts names), and the policy parameters alone as phase ``"flat_policy"``
(``{"policy": FlatActorCritic params [K, ...]}``) at the same steps with the same metrics, so
``evaluation.flat_policy`` can restore the policy without importing this module (training and
evaluation are sibling layers). Metrics lines carry ``"phase": "flat"``; the summary is
``phaseflat/summary.json``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.distributions import Dirichlet
from hrl_sarp_jax.agents.ppo import PPOHParams
from hrl_sarp_jax.checkpointing import Run, write_phase_summary
from hrl_sarp_jax.config import Config, NetworkConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.flat import FlatEnv, FlatObsLayout
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES, FeatureSet
from hrl_sarp_jax.networks.flat import FlatActor, FlatActorCritic, FlatCritic, FlatPolicy
from hrl_sarp_jax.training.ppo_engine import (
    PPOProgram,
    PPOSpec,
    PPOState,
    PPOTask,
    StepOut,
    make_ppo,
    with_schedule,
)
from hrl_sarp_jax.training.ppo_loop import (
    LoopSpec,
    PPOSetup,
    compile_programs,
    member_keys,
    run_ppo,
    split_bounds,
)
from hrl_sarp_jax.training.sharding import seed_mesh_for
from hrl_sarp_jax.training.validation import MAX_EPISODES, block_steps, weekly_plan
from hrl_sarp_jax.types import Array, Params, PyTree

__all__ = ["compile_programs"]

PHASE = "flat"
"""Checkpointer / metrics / summary name of the training state (``<run>/phaseflat/``)."""
POLICY_PHASE = "flat_policy"
"""Checkpointer of the policy parameters alone (read by ``evaluation.flat_policy``)."""
BEST_METRIC = "val_sharpe"
REGISTRY_NUMBER = 0
"""Number of the flat baseline in ``PhaseResult`` (phases are 1..5)."""
KEY_STREAM = 100
"""fold_in stream of the flat baseline's keys (phases use their numbers 1..5)."""
LOOP = LoopSpec(phase=PHASE, label="flat baseline", key_stream=KEY_STREAM,
                policy_phase=POLICY_PHASE, best_metric=BEST_METRIC)
"""The flat baseline's host loop: no step-0 evaluation, no curriculum, the policy parameters
checkpointed alone as well."""

_F32 = jnp.float32
_I32 = jnp.int32
Metrics = dict[str, Array]
FlatSpec = PPOSpec
"""The static program shape is Phase 3's (envs, rollout length, epochs, minibatches, chunk,
schedule length, evaluation weeks), derived from the same ``PPOConfig``."""
FlatTrainState = PPOState
FlatProgram = PPOProgram
FlatSetup = PPOSetup


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


# --------------------------------------------------------------------------- the PPO task


def _dists(config: NetworkConfig, layout: FlatObsLayout, params: Params, obs: Array) -> dict:
    policy, mask = actor_apply(config, layout, params, obs)
    return {"weights": Dirichlet(policy.concentration, mask)}


def _sampled_action(action: dict) -> Array:
    return action["weights"]


def _mean_action(config: NetworkConfig, layout: FlatObsLayout, params: Params, obs: Array
                 ) -> Array:
    """Dirichlet-mean stock weights [N] for one observation obs [1, D]."""
    return actor_apply(config, layout, params, obs)[0].mean_weights[0]


def _baseline_action(layout: FlatObsLayout, obs: Array) -> Array:
    return equal_weight_action(_inputs(layout, obs[None])[1][0])


def _train_metrics(out: StepOut, params: Params) -> Metrics:
    """Mean weekly one-way turnover and the Dirichlet's total concentration."""
    raw = params["params"]["actor"]["concentration_raw"]
    return {"turnover": jnp.mean(out.info["turnover"]),
            "concentration_kappa": jax.nn.softplus(raw)}


def _eval_step(info: dict, live: Array) -> dict:
    return {"turnover": info["turnover"], "cost_frac": info["cost_frac"]}


def _eval_stats(out: dict, live: Array) -> dict:
    """Mean weekly turnover and cost fraction over the episode's live weeks."""
    weeks = jnp.maximum(jnp.sum(live), 1).astype(_F32)
    return {"turnover": jnp.sum(jnp.where(live, out["turnover"], 0.0)) / weeks,
            "cost_frac": jnp.sum(jnp.where(live, out["cost_frac"], 0.0)) / weeks}


def _eval_metrics(pol: dict, ew: dict) -> Metrics:
    return {"val_turnover": jnp.mean(pol["turnover"]),
            "val_cost_frac": jnp.mean(pol["cost_frac"])}


def flat_task(env: FlatEnv, net: FlatActorCritic) -> PPOTask:
    """The flat agent in ``env`` as a PPO task (auto-resets on the env params' start range)."""
    layout, config = env.layout, net.config
    return PPOTask(
        env=env, net=net, inputs=layout.policy_inputs, apply=partial(policy_apply, net, layout),
        dists=partial(_dists, config, layout), values=partial(critic_apply, config, layout),
        env_action=_sampled_action, mean_action=partial(_mean_action, config, layout),
        baseline_action=partial(_baseline_action, layout),
        step_info=("net_return", "cost_frac", "turnover", "exposure"),
        train_metrics=_train_metrics, eval_step=_eval_step, eval_stats=_eval_stats,
        eval_metrics=_eval_metrics, start_days=False)


def make_flat(env: FlatEnv, net: NetworkConfig | FlatActorCritic, spec: FlatSpec
              ) -> FlatProgram:
    """Pure functions of the flat baseline (nothing jitted here; e.g. K seeds in one compile:
    ``jax.jit(jax.vmap(p.run_chunk, in_axes=(0, None, 0)))``)."""
    module = net if isinstance(net, FlatActorCritic) else FlatActorCritic(net)
    return make_ppo(flat_task(env, module), spec)


# --------------------------------------------------------------------------- host side


# HOST ONLY
def flat_keys(seed: int, count: int) -> Array:
    """[count] keys: member k = fold_in(fold_in(key(seed), KEY_STREAM), k), independent of
    ``count`` (a K-seed run's member k equals a one-seed run with that member's key)."""
    return member_keys(seed, KEY_STREAM, count)


# HOST ONLY
@lru_cache(maxsize=8)
def _program(num_stocks: int, num_sectors: int, return_window: int, networks: NetworkConfig,
             spec: FlatSpec, macro_features: int = NUM_MACRO_FEATURES) -> FlatProgram:
    """One FlatProgram per static setup, so repeated runs in one process reuse the compiles."""
    env = FlatEnv(num_stocks, num_sectors, return_window=return_window,
                  macro_features=macro_features)
    return make_flat(env, networks, spec)


# HOST ONLY
def setup_flat(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet, *,
               total_env_steps: int | None = None,
               max_eval_episodes: int = MAX_EPISODES) -> FlatSetup:
    """Env params for the train / validation splits, the evaluation start days and the
    program, with Phase 3's sizes and env-step budget (``cfg.train.ppo``)."""
    val_start, test_start, _ = split_bounds(meta, cfg, market.num_days)
    train_params = FlatEnv.make_params(market, feats, cfg.env, split=(0, val_start - 1))
    val_params = FlatEnv.make_params(market, feats, cfg.env, split=(val_start, test_start - 1))
    spec = FlatSpec.from_config(cfg.train.ppo, updates_per_chunk=cfg.train.eval_interval,
                                total_env_steps=total_env_steps,
                                eval_block_weeks=block_steps(cfg.train.validation))
    spec = dataclasses.replace(spec, anchored=False)  # no starting policy to anchor to
    val_params, days = weekly_plan(cfg.train.validation, np.asarray(market.week_end), val_start,
                                   test_start - 1, val_params, max_eval_episodes)
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
                    spec, int(feats.macro.shape[-1]))
    return FlatSetup(prog, train_params, val_params, jnp.asarray(days),
                     with_schedule(PPOHParams.from_config(cfg.train.ppo), spec), info)


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
    ``run_phase3``). ``ppo_loop.run_ppo`` runs it: after every chunk of
    ``cfg.train.eval_interval`` updates one metrics line per update and one per evaluation
    (validation split), a checkpoint of the whole state (latest-N plus best by mean
    ``val_sharpe``) and of the policy parameters alone. ``resume`` continues bit-exactly from
    the latest checkpoint; ``update_limit`` stops after that many updates in total (a
    simulated interruption; the lr schedule spans the budget).
    """
    k = int(cfg.train.seeds if seeds is None else seeds)
    if k < 1:
        raise ConfigError(f"the flat baseline needs at least one seed (got {k}); "
                          "set train.seeds >= 1")

    def make_setup() -> tuple[FlatSetup, None]:
        return setup_flat(cfg, market, meta, feats, total_env_steps=total_env_steps), None

    out = run_ppo(run, cfg, LOOP, make_setup, seeds=k, resume=resume,
                  update_limit=update_limit, mesh=seed_mesh_for(k), log=log, final_keys=(
                      "val_sharpe", "val_sharpe_std", "val_equal_weight_sharpe", "val_return",
                      "val_equal_weight_return", "val_max_drawdown", "val_turnover",
                      "val_cost_frac"))
    summary: dict[str, Any] = {
        **out.summary,
        "params_used": "final params (the best checkpoint by val_sharpe is kept as well; "
                       "evaluation.flat_policy restores 'best' by default)",
        "env_step_budget": "Phase 3's: train.ppo.total_env_steps, one env step = one week",
        **out.setup.info,
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
