"""Phase 3: PPO on the Macro agent in MacroEnv with a frozen within-sector allocator (spec §5.5).

The Macro agent's ``PPOTask`` for the one PPO engine (``training.ppo_engine``; the host loop is
``training.ppo_loop.run_ppo``):
  action    a ~ Dirichlet(α(s)) over the available sectors ⊕ Categorical(ℓ(s)) regime call
  env       MacroEnv, one step = one week; auto-resets land on a start day drawn from the
            curriculum stage's set (``training.curriculum``)
  evaluate  Dirichlet mean ⊕ argmax regime on many validation start dates, next to the
            equal-weight allocation on the same episodes; val_regime_accuracy besides

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

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.distributions import Categorical, Dirichlet
from hrl_sarp_jax.agents.optim import copy_injected
from hrl_sarp_jax.agents.policies import macro_policy, micro_weights
from hrl_sarp_jax.agents.ppo import PPOHParams
from hrl_sarp_jax.checkpointing import Run, write_phase_summary
from hrl_sarp_jax.config import Config, NetworkConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.macro import MacroEnv
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.envs.params import stack_markets
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES, FeatureSet
from hrl_sarp_jax.networks.inputs import (
    MacroInputs,
    macro_inputs_from_views,
)
from hrl_sarp_jax.networks.macro import MacroActorCritic, MacroCritic
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training.market_pool import PoolMarket, market_pool
from hrl_sarp_jax.training.ppo_engine import (
    MIN_LR_SCALE,
    WEEKS_PER_YEAR,
    PPOProgram,
    PPOSpec,
    PPOState,
    PPOTask,
    StepOut,
    gradient_step_flop,
    make_ppo,
    phase_optimizer,
    with_schedule,
)
from hrl_sarp_jax.training.ppo_loop import (
    LoopSpec,
    PPOSetup,
    compile_programs,
    member_keys,
    run_ppo,
    split_bounds,
    stack_hparams,
)
from hrl_sarp_jax.training.sharding import check_member_axis, seed_mesh_for
from hrl_sarp_jax.training.validation import (
    MAX_EPISODES,
    block_steps,
    eval_start_days,
    weekly_plan,
)
from hrl_sarp_jax.types import NUM_REGIMES, Array, Params, PyTree
from hrl_sarp_jax.utils.trees import first_member

__all__ = ["MIN_LR_SCALE", "WEEKS_PER_YEAR", "compile_programs", "eval_start_days",
           "phase_optimizer", "stack_hparams"]

PHASE = 3
BEST_METRIC = "val_sharpe"
LOOP = LoopSpec(phase=PHASE, label="phase 3", key_stream=PHASE, eval_at_start=True,
                best_metric=BEST_METRIC)
"""Phase 3's host loop: the starting policy (Phase 1's actor) is evaluated and checkpointed
as update 0, so 'best' never falls below it."""

_F32 = jnp.float32
_I32 = jnp.int32
Metrics = dict[str, Array]

Phase3Spec = PPOSpec
Phase3State = PPOState
Phase3 = PPOProgram
Phase3Setup = PPOSetup
"""Phase 3's names for the engine's types (``training.ppo_engine`` / ``ppo_loop``)."""


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
    return jax.vmap(partial(macro_policy, config, layout, _sub(params, "actor")))(obs)


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

    def allocate(policy_params: PyTree, obs: Array) -> Array:
        return micro_weights(config, layout, policy_params["actor"],
                             policy_params["stock_sector"], obs)

    return allocate


# --------------------------------------------------------------------------- the PPO task


def _dists(config: NetworkConfig, layout: MacroObsLayout, params: Params, obs: Array) -> dict:
    """{"weights": Dirichlet over the available sectors, "regime": Categorical} for obs [B, D]
    from the actor half."""
    policy = actor_apply(config, layout, params, obs)
    mask = layout.unflatten(obs)["sector_mask"] > 0
    return {"weights": Dirichlet(policy.concentration, mask),
            "regime": Categorical(policy.regime_logits)}


def _sampled_action(action: dict) -> Array:
    return env_action(action["weights"], action["regime"])


def _mean_action(config: NetworkConfig, layout: MacroObsLayout, params: Params, obs: Array
                 ) -> Array:
    """Dirichlet mean ⊕ argmax regime [S+3] for one observation obs [1, D]."""
    pol = actor_apply(config, layout, params, obs)
    return env_action(pol.mean_weights[0], jnp.argmax(pol.regime_logits[0]))


def _baseline_action(layout: MacroObsLayout, obs: Array) -> Array:
    return equal_weight_action(layout.unflatten(obs)["sector_mask"])


def _train_metrics(out: StepOut, params: Params) -> Metrics:
    """Regime-call accuracy over the rollout's weeks with a known label."""
    label = out.info["regime_label"]
    known = label >= 0
    return {"regime_accuracy": jnp.sum((out.info["regime_call"] == label) & known)
            / jnp.maximum(jnp.sum(known), 1)}


def _eval_step(info: dict, live: Array) -> dict:
    return {"regime_hit": (info["regime_call"] == info["regime_label"]) & live,
            "regime_known": (info["regime_label"] >= 0) & live}


def _eval_stats(out: dict, live: Array) -> dict:
    return {"regime_hits": jnp.sum(out["regime_hit"]).astype(_I32),
            "regime_known": jnp.sum(out["regime_known"]).astype(_I32)}


def _eval_metrics(pol: dict, ew: dict) -> Metrics:
    """val_regime_accuracy: the policy's hits over weeks with a known label."""
    return {"val_regime_accuracy": jnp.sum(pol["regime_hits"])
            / jnp.maximum(jnp.sum(pol["regime_known"]), 1)}


def _regime_target(info: dict) -> dict:
    """The regime head's supervised target: the label of the regime after the decision day."""
    return {"regime": info["regime_label"]}


def macro_task(env: MacroEnv, net: MacroActorCritic, regime_aux: bool = False) -> PPOTask:
    """The Macro agent in ``env`` (its allocator frozen inside) as a PPO task; with
    ``regime_aux`` the regime head also learns the next regime label (``hp.aux_coef``)."""
    layout, config = env.layout, net.config
    return PPOTask(
        env=env, net=net, inputs=partial(obs_inputs, layout),
        apply=partial(policy_apply, net, layout), dists=partial(_dists, config, layout),
        values=partial(critic_apply, config, layout), env_action=_sampled_action,
        mean_action=partial(_mean_action, config, layout),
        baseline_action=partial(_baseline_action, layout),
        step_info=("net_return", "cost_frac", "exposure", "regime_call", "regime_label"),
        train_metrics=_train_metrics, eval_step=_eval_step, eval_stats=_eval_stats,
        eval_metrics=_eval_metrics, start_days=True,
        targets=_regime_target if regime_aux else None)


def make_phase3(env: MacroEnv, net: NetworkConfig | MacroActorCritic, spec: Phase3Spec,
                regime_aux: bool = False) -> Phase3:
    """Pure Phase-3 functions for ``env`` (its allocator is frozen inside) and the Macro network
    (``regime_aux``: see ``macro_task``).

    Nothing is jitted here: wrap as needed, e.g. a sweep over seeds × hparams in one compile is
    ``jax.jit(jax.vmap(p.run_chunk, in_axes=(0, None, 0, None)))``.
    """
    module = net if isinstance(net, MacroActorCritic) else MacroActorCritic(net)
    return make_ppo(macro_task(env, module, regime_aux), spec)


def deterministic_weights(p3: Phase3, params: Params, obs: Array) -> Array:
    """Dirichlet-mean sector weights [B, S] (before the env's projection) for obs [B, D]."""
    return actor_apply(p3.net.config, p3.env.layout, params, obs).mean_weights


# --------------------------------------------------------------------------- host side


# HOST ONLY
def phase3_keys(seed: int, count: int) -> Array:
    """[count] keys for Phase 3: member k = fold_in(fold_in(key(seed), PHASE), k), independent of
    ``count`` (so a K-seed run's member k equals a one-seed run with that member's key)."""
    return member_keys(seed, PHASE, count)



# HOST ONLY
def setup_phase3(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet, *,
                 micro_params: Params | None = None,
                 rule: cur.CurriculumRule = cur.DEFAULT_RULE,
                 total_env_steps: int | None = None, max_eval_episodes: int = MAX_EPISODES,
                 pool: tuple[PoolMarket, ...] = ()) -> Phase3Setup:
    """Env params for the train / validation splits, the curriculum stages, the eval starts and
    the Phase-3 functions. ``micro_params``: a Phase-2 MicroActor to freeze inside the env
    (None: the env's equal-weight-in-sector allocator).

    ``pool`` (``training.market_pool``): more markets of the run's generator. Env i then trains
    on market i mod M (M = 1 + len(pool), the run's own first; M must divide the number of
    envs) with that market's curriculum, and validation runs every market's validation window
    (M·K episodes)."""
    spec = Phase3Spec.from_config(cfg.train.ppo, updates_per_chunk=cfg.train.eval_interval,
                                  total_env_steps=total_env_steps,
                                  eval_block_weeks=block_steps(cfg.train.validation))
    policy_params = None if micro_params is None else {
        "actor": micro_params, "stock_sector": jnp.asarray(market.stock_sector, _I32)}
    markets = [(market, meta, feats)] + [(p.market, p.meta, p.feats) for p in pool]
    if spec.num_envs % len(markets):
        raise ConfigError(f"train.pool: Phase 3 runs env i on market i mod {len(markets)} "
                          f"(the run's and {len(pool)} pool markets), so "
                          f"train.ppo.num_envs ({spec.num_envs}) must be a multiple of "
                          f"{len(markets)}")
    parts = [_market_setup(cfg, *m, policy_params, rule, spec, max_eval_episodes)
             for m in markets]
    train_params, val_params, windows, days, cinfo, source = parts[0]
    dates = np.asarray(meta.dates)
    val_start, test_start, _ = split_bounds(meta, cfg, market.num_days)
    info = {
        "allocator": "phase2_micro" if micro_params is not None else "equal_weight_in_sector",
        "curriculum": {**cinfo, "regime_source": source, "enabled": rule.enabled},
        "train_span": [str(dates[0]), str(dates[val_start - 1])],
        "val_span": [str(dates[val_start]), str(dates[test_start - 1])],
        "eval_start_days": [str(dates[d]) for d in days],
        "spec": {k: getattr(spec, k) for k in spec.__dataclass_fields__},
    }
    if pool:
        if len({len(p[3]) for p in parts}) != 1:
            raise ConfigError("train.pool: the markets' validation windows hold different "
                              "numbers of episodes; the pool needs the run's own calendar")
        copies = spec.num_envs // len(parts)
        train_params = stack_markets([p[0] for p in parts], copies)
        val_params = stack_markets([p[1] for p in parts])
        windows = cur.stack_windows([p[2] for p in parts], copies)
        days = np.stack([p[3] for p in parts])
        info["pool"] = {"seeds": [p.seed for p in pool], "envs_per_market": copies,
                        "val_episodes_per_market": int(days.shape[1])}
    if float(cfg.train.ppo.regime_aux_coef) > 0:
        info["regime_aux_coef"] = float(cfg.train.ppo.regime_aux_coef)
    if spec.anchored:
        info["anchor"] = (f"KL to the policy Phase 3 starts from, weight "
                          f"{float(cfg.train.ppo.anchor_kl_coef):g}")
    n, s, f_s = market.num_stocks, market.num_sectors, int(feats.sector.shape[-1])
    p3 = _phase3_functions(n, s, f_s, cfg.env.return_window, cfg.networks, spec,
                           micro_params is not None, float(cfg.train.ppo.regime_aux_coef) > 0,
                           macro_features=int(feats.macro.shape[-1]))
    return Phase3Setup(p3, train_params, val_params, jnp.asarray(days),
                       with_schedule(PPOHParams.from_config(cfg.train.ppo), spec), info, windows)


# HOST ONLY
def _market_setup(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                  policy_params: Any, rule: cur.CurriculumRule, spec: Phase3Spec,
                  max_eval_episodes: int) -> tuple:
    """One market's (train params, val params, curriculum windows, eval start days [K],
    curriculum info, the curriculum's regime source)."""
    val_start, test_start, _ = split_bounds(meta, cfg, market.num_days)
    train_params = MacroEnv.make_params(market, feats, cfg.env, split=(0, val_start - 1),
                                        policy_params=policy_params)
    val_params = MacroEnv.make_params(market, feats, cfg.env, split=(val_start, test_start - 1),
                                      policy_params=policy_params)
    regime, source = cur.regime_for_curriculum(np.asarray(market.latent_regime),
                                               np.asarray(feats.regime_rule))
    windows, cinfo = cur.build_stage_windows(
        np.asarray(market.week_end), regime, np.asarray(market.benchmark_returns),
        int(train_params.start_lo), int(train_params.start_hi), int(train_params.t_hi), rule,
        width_lo=0)  # the training split's first day: one width for one training span
    val_params, days = weekly_plan(cfg.train.validation, np.asarray(market.week_end),
                                   val_start, test_start - 1, val_params, max_eval_episodes)
    return train_params, val_params, windows, days, cinfo, source


# HOST ONLY
def _phase3_functions(num_stocks: int, num_sectors: int, sector_features: int,
                      return_window: int, networks: NetworkConfig, spec: Phase3Spec,
                      with_micro: bool, regime_aux: bool = False, *,
                      macro_features: int = NUM_MACRO_FEATURES) -> Phase3:
    """One Phase3 (env, network, pure functions) per static setup, so that repeated runs in
    one process (resume, phase 'all', Phase 5's Macro block, tests) reuse the same jitted
    programs. The schedule's lengths (``total_updates``, the warm-ups) are traced
    hyperparameters (``ppo_engine.with_schedule``), not part of the programs: budgets that
    differ only there share the functions, and ``spec`` is the caller's own for the host."""
    core = _phase3_core(num_stocks, num_sectors, sector_features, return_window, networks,
                        dataclasses.replace(spec, total_updates=spec.updates_per_chunk,
                                            warmup_updates=0, critic_warmup_updates=0),
                        with_micro, regime_aux, macro_features)
    return core._replace(spec=spec)


@lru_cache(maxsize=8)
def _phase3_core(num_stocks: int, num_sectors: int, sector_features: int, return_window: int,
                 networks: NetworkConfig, spec: Phase3Spec, with_micro: bool,
                 regime_aux: bool, macro_features: int) -> Phase3:
    allocator = micro_allocator(networks, num_stocks, num_sectors) if with_micro else None
    env = MacroEnv(num_stocks, num_sectors, sector_features, return_window=return_window,
                   allocator=allocator, macro_features=macro_features)
    return make_phase3(env, networks, spec, regime_aux)


# HOST ONLY
def abstract_state(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                   seeds: int) -> Phase3State:
    """Shapes and dtypes of a K-seed Phase3State (the restore target of Phase 3's
    checkpoints; the allocator does not change them)."""
    setup = setup_phase3(cfg, market, meta, feats)
    init = jax.vmap(setup.program.init, in_axes=(0, 0, None, None))
    return jax.eval_shape(init, phase3_keys(cfg.seed, seeds), stack_hparams(setup.hp, seeds),
                          setup.train_params, cur.stage_starts(0, setup.windows))


# HOST ONLY
def load_phase2_micro(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                      feats: FeatureSet) -> tuple[Params | None, dict[str, Any]]:
    """The Phase-2 Micro actor (``best_params`` of the seed with the lowest validation loss,
    from the latest checkpoint: ``runner.restore_best_params``), or None with the reason
    when Phase 2 has no usable checkpoint."""
    if not (run.phase_dir(2) / "ckpt").is_dir():
        return None, {"phase2": "no checkpoint: equal-weight-in-sector allocator"}
    from hrl_sarp_jax.training.runner import restore_best_params

    try:
        state, _meta, step = restore_best_params(run, 2, cfg, market, meta, feats)
    except (CheckpointError, ConfigError) as exc:
        return None, {"phase2": f"not restored ({exc}); equal-weight-in-sector allocator"}
    k = int(np.argmin(np.asarray(state.best_val)))
    params = jax.tree.map(lambda x: np.asarray(x)[k], state.best_params)
    return params, {"phase2": f"best_params of seed {k} from step {step}"}


# HOST ONLY
def load_phase1_actor(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                      feats: FeatureSet, seeds: int) -> tuple[Params | None, dict[str, Any]]:
    """Phase-1 MacroActor params stacked [K] for the K Phase-3 seeds (seed k from Phase-1 seed
    k when the counts match, else every seed from the one with the lowest validation loss), each
    seed's ``best_params`` from the latest checkpoint (``runner.restore_best_params``)."""
    if not (run.phase_dir(1) / "ckpt").is_dir():
        return None, {"phase1": "no checkpoint: actor initialised at random"}
    from hrl_sarp_jax.training.runner import restore_best_params

    try:
        state, _meta, step = restore_best_params(run, 1, cfg, market, meta, feats)
    except (CheckpointError, ConfigError) as exc:
        return None, {"phase1": f"not restored ({exc}); actor initialised at random"}
    best = np.asarray(state.best_val)
    if best.shape[0] == seeds:
        params, how = state.best_params, "seed k from Phase-1 seed k"
    else:
        k = int(np.argmin(best))
        params = jax.tree.map(lambda x: np.repeat(np.asarray(x)[k][None], seeds, axis=0),
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
    opt_state = jax.jit(jax.vmap(ts.tx.init))(params)  # one program, not one per leaf
    opt_state = copy_injected(ts.opt_state, opt_state)
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
    opt_state = copy_injected(ts.opt_state, jax.jit(jax.vmap(ts.tx.init))(params))
    return state.replace(train=ts.replace(params=params, opt_state=opt_state))


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

    K = ``seeds`` (default ``cfg.train.seeds``) seeds in one vmapped program, sharded over the
    devices; ``ppo_loop.run_ppo`` runs it (the step-0 evaluation, chunks of
    ``cfg.train.eval_interval`` updates, evaluations on the validation split, the curriculum,
    checkpoints latest-N plus best by mean ``val_sharpe``, exact resume). The frozen allocator
    is the Phase-2 Micro actor when Phase 2 has a checkpoint (else equal weight in each sector,
    recorded in the summary); the actor starts from Phase 1 when it has one.

    ``hparams`` (leaves [K], e.g. a sweep's settings × seeds) replaces K copies of
    ``cfg.train.ppo``; ``member_keys`` [K] replaces ``phase3_keys(cfg.seed, K)`` (a sweep gives
    every setting the same seed keys). A resume must pass the same ones.
    """
    k = int(cfg.train.seeds if seeds is None else seeds)
    if k < 1:
        raise ConfigError(f"Phase 3 needs at least one seed (got {k})")
    check_member_axis("run_phase3", k, hparams=hparams, member_keys=member_keys)

    def make_setup() -> tuple[Phase3Setup, dict[str, Any]]:
        micro, micro_info = load_phase2_micro(run, cfg, market, meta, feats)
        pool = market_pool(cfg, run.info.get("market"), PHASE, market, meta)
        return setup_phase3(cfg, market, meta, feats, micro_params=micro, rule=rule,
                            total_env_steps=total_env_steps, pool=pool), micro_info

    def prepare(state: Phase3State) -> tuple[Phase3State, dict[str, Any]]:
        """Phase 1's actor and the initial concentration, on a fresh start."""
        actor, info = load_phase1_actor(run, cfg, market, meta, feats, k)
        applied = False
        if actor is not None:
            state, applied = warm_start_actor(state, actor)
            if not applied:
                info["phase1"] = "Phase-1 actor does not fit the network; random init"
        if cfg.networks.macro_allocation == "regime_table" and (actor is None or not applied):
            raise ConfigError(f"networks.macro_allocation: regime_table reads its allocation "
                              f"table from Phase 1, which run '{run.name}' lacks "
                              f"({info['phase1']}): run Phase 1 first")
        if float(cfg.train.ppo.concentration) > 0:
            state = set_concentration(state, float(cfg.train.ppo.concentration))
            info["concentration"] = float(cfg.train.ppo.concentration)
        return state, info

    out = run_ppo(run, cfg, LOOP, make_setup, seeds=k, resume=resume,
                  update_limit=update_limit, rule=rule, mesh=seed_mesh_for(k),
                  hparams=hparams, keys=member_keys, prepare=prepare, log=log, final_keys=(
                      "val_sharpe", "val_sharpe_std", "val_equal_weight_sharpe", "val_return",
                      "val_equal_weight_return", "val_regime_accuracy", "val_max_drawdown"))
    summary: dict[str, Any] = {
        **out.summary,
        "stage": out.stage,
        "stage_history": out.history,
        "params_used": "final params (the best checkpoint by val_sharpe is kept as well)",
        **out.start_info,
        **out.setup.info,
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
    total, gradient steps (seeds x updates x epochs x minibatches) and XLA's flops of one
    (``step_gflop``), and the original's reference (190 env steps/s, 335-376 s for 70,000)."""
    if allocator not in ("micro", "equal_weight"):
        raise ConfigError(f"bench phase 3: allocator {allocator!r} is not one of micro, "
                          f"equal_weight")
    micro = example_micro_actor(cfg, market) if allocator == "micro" else None
    setup = setup_phase3(cfg, market, meta, feats, micro_params=micro,
                         total_env_steps=total_env_steps)
    spec = setup.program.spec
    out: dict[str, Any] = {"phase": 3, "total_env_steps_per_seed": spec.total_updates
                           * spec.steps_per_update, "updates": spec.total_updates,
                           "spec": setup.info["spec"], "allocator": setup.info["allocator"],
                           "original_env_steps_per_s": 190.0,
                           "original_wall_s": [335.0, 376.0], "epochs": spec.epochs,
                           "num_minibatches": spec.num_minibatches, "runs": []}
    key = jax.random.key(int(cfg.seed))
    for k in seed_counts:
        t0 = time.perf_counter()
        c = compile_programs(setup, k)
        init, chunk, evaluate, compile_s = c.init, c.chunk, c.evaluate, c.compile_s
        hp = stack_hparams(setup.hp, k)
        starts = cur.stage_starts(1, setup.windows)
        state = init(phase3_keys(cfg.seed, k), hp, c.train_params, starts)
        t_eval_compile = 0.0
        if with_eval:
            t1 = time.perf_counter()
            jax.block_until_ready(evaluate(state.train.params, c.val_params,
                                           setup.eval_days, key))
            t_eval_compile = time.perf_counter() - t1
        jax.block_until_ready(state)
        if "step_gflop" not in out:
            out["step_gflop"] = round(gradient_step_flop(
                setup.program, first_member(state), setup.train_params, setup.hp,
                starts) / 1e9, 6)
        t_run = time.perf_counter()
        for _ in range(spec.num_chunks):
            state, metrics = chunk(state, c.train_params, hp, starts)
            if with_eval:
                ev = evaluate(state.train.params, c.val_params, setup.eval_days, key)
                jax.device_get((metrics, ev))
        jax.block_until_ready(state)
        run_s = time.perf_counter() - t_run
        wall = time.perf_counter() - t0
        steps = int(np.sum(np.asarray(state.env_steps)))
        out["runs"].append({
            "seeds": k, "compile_s": round(compile_s, 3),
            "eval_first_call_s": round(t_eval_compile, 3), "run_s": round(run_s, 3),
            "wall_s": round(wall, 3), "env_steps": steps,
            "gradient_steps": k * spec.total_updates * spec.epochs * spec.num_minibatches,
            "env_steps_per_s": round(steps / wall, 1),
            "env_steps_per_s_excl_compile": round(steps / run_s, 1),
            "speedup_vs_original": round(steps / wall / 190.0, 1),
        })
    if len(out["runs"]) > 1:
        out["wall_ratio_last_vs_first"] = round(out["runs"][-1]["wall_s"]
                                                / out["runs"][0]["wall_s"], 2)
    return out
