"""Phase 4 (Micro TD3+HER) in a vectorized sweep: settings × seeds as ONE Phase-4 program.

# HOST ONLY (not jittable)
``sweep: {phase: 4, ...}`` (the ``sweep_td3_smoke`` preset): ``training.sweep`` parses the
settings, ranks them and judges the selection as for Phase 3; this module is what Phase 4
brings (``TD3_SWEEP``):

  hparams[m] = Phase4HParams of cfg with settings[m // K] applied   (leaves [M·K])
  key[m]     = phase4_keys(cfg.seed, K) training key m % K            (common random numbers)
  goals      = the run's Phase-3 Macro, member m paired with Phase-3 seed m mod K3 (sampled
               goals in a run without Phase 3, as ``hrl-sarp train --phase 4``)
  start      = the run's Phase-2 actor for every member (the init's without Phase 2)
  run_phase4(M·K members) → one compiled, vmapped program; per-member validation metrics
  walk       = every member's final actor on ONE episode through the validation split (daily
               net returns compounded into the weeks that end there) for the PBO / deflated
               Sharpe of the choice
  best/      = the best setting's K seeds' Phase-4 state with copies of the run's Phases 1-3,
               so ``hrl-sarp train --phase 5`` and ``hrl-sarp evaluate`` continue from it

Only dynamic TD3 hyperparameters (``sweep.DYNAMIC_TD3``) can be swept this way; the warm-up,
batch, buffer, env count and network sizes change the program and need separate runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.checkpointing import PhaseCheckpointer, Run, write_phase_summary
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.params import seed_axes
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.training import rl_micro as rmi
from hrl_sarp_jax.training.sweep import (
    PhaseSweep,
    SweepSpec,
    best_run_folder,
    setting_members,
    settings_config,
)
from hrl_sarp_jax.training.validation import daily_plan
from hrl_sarp_jax.utils.trees import first_member, take_members

PHASE = 4
METRICS = ("val_sharpe", "val_equal_weight_sharpe", "val_goal_alignment", "val_turnover",
           "val_cost_frac")
"""Phase 4's per-member validation metrics in results.json (its summary's ``per_seed``)."""
COLUMNS = (("equal-weight Sharpe", "val_equal_weight_sharpe_mean"),
           ("goal alignment", "val_goal_alignment_mean"),
           ("turnover / day", "val_turnover_mean"), ("cost / day", "val_cost_frac_mean"))


# HOST ONLY
def member_hparams(cfg: Config, settings: Sequence[Mapping[str, float]], seeds: int
                   ) -> rmi.Phase4HParams:
    """Phase4HParams with leaves [M·K]: member m = ``Phase4HParams.from_config`` of ``cfg``
    with settings[m // K] applied, so a member's values are those of a run with that setting."""
    per_setting = [rmi.Phase4HParams.from_config(settings_config(cfg, s, seeds).train.td3)
                   for s in settings]
    return jax.tree.map(lambda *xs: jnp.repeat(jnp.stack(xs), int(seeds), axis=0),
                        *per_setting)


# HOST ONLY
def member_keys(seed: int, num_settings: int, seeds: int) -> jax.Array:
    """[M·K] keys: member m gets training key m % K of ``phase4_keys(seed, K)``, the same for
    every setting (common random numbers)."""
    train_keys, _ = rmi.phase4_keys(seed, seeds)
    return train_keys[np.arange(int(num_settings) * seeds) % seeds]


# HOST ONLY
def train_members(run: Run, cfg: Config, spec: SweepSpec,
                  settings: Sequence[Mapping[str, float]], market: MarketArrays,
                  meta: MarketMeta, feats: FeatureSet, *, resume: bool = False,
                  unit_limit: int | None = None, total_env_steps: int | None = None,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Phase 4 of the M·K members as one program (``unit_limit``: chunks in total), as
    ``hrl-sarp train --phase 4`` would train each: goals from the run's Phase-3 Macro (sampled
    without one), the actor from Phase 2 (its init without one), both in the summary."""
    k, m = spec.seeds, len(settings)
    return rmi.run_phase4(run, cfg, market, meta, feats, seeds=m * k, resume=resume,
                          total_env_steps=total_env_steps, chunk_limit=unit_limit, log=log,
                          hparams=member_hparams(cfg, settings, k),
                          member_keys=member_keys(cfg.seed, m, k))


def _setup(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
           members: int) -> tuple[rmi.Phase4Setup, Any]:
    """(the Phase-4 setup with each member's Phase-3 Macro, the Macros [M·K] or None)."""
    macro, _ = rmi.load_phase3_macro(run, cfg, market, meta, feats, members)
    setup = rmi.setup_phase4(cfg, market, meta, feats, macro_params=macro,
                             seeds=None if macro is None else members)
    return setup, macro


def _latest_state(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                  feats: FeatureSet, macro: Any) -> tuple[rmi.Phase4State, dict, int]:
    """The sweep's latest Phase-4 checkpoint, all M·K members (networks, optimisers, buffer)."""
    example = None if macro is None else first_member(macro)
    return rmi.restore_phase4(run, cfg, market, meta, feats, example, "latest")


# HOST ONLY
def latest_members(run: Run, cfg: Config, spec: SweepSpec,
                   settings: Sequence[Mapping[str, float]], market: MarketArrays,
                   meta: MarketMeta, feats: FeatureSet, *, total_env_steps: int | None = None
                   ) -> tuple[rmi.Phase4State, dict, int]:
    """(state, saved meta, step): the sweep's latest Phase-4 checkpoint, all M·K members."""
    macro, _ = rmi.load_phase3_macro(run, cfg, market, meta, feats, 1)
    return _latest_state(run, cfg, market, meta, feats, macro)


def weekly_from_daily(daily: np.ndarray, alive: np.ndarray, week_end: np.ndarray, day0: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily net returns [n, L] of walks whose day i is decided at ``day0 + i`` (its outcome on
    day ``day0 + i + 1``) compounded into the weeks ending on the ``week_end`` days after
    ``day0``: (weekly returns [n, W], live [n, W]: every day of the week alive, ended [n]: alive
    throughout). Days after the last week end (a partial week) are left out; a day not alive
    counts as 0 return."""
    n, length = daily.shape
    outcome = day0 + 1 + np.arange(length)
    ends = np.flatnonzero(np.asarray(week_end, bool)[day0 + 1: day0 + 1 + length]) + day0 + 1
    week = np.searchsorted(ends, outcome)  # the first week end on or after the outcome day
    keep = week < ends.size
    r = np.where(alive, daily, 0.0).astype(np.float64)
    log_growth = np.zeros((n, ends.size))
    dead = np.zeros((n, ends.size), bool)
    np.add.at(log_growth.T, week[keep], np.log1p(r[:, keep]).T)
    np.logical_or.at(dead.T, week[keep], ~alive[:, keep].T)
    return np.expm1(log_growth), ~dead, alive.all(axis=1)


# HOST ONLY
def validation_weekly_returns(run: Run, cfg: Config, spec: SweepSpec,
                              settings: Sequence[Mapping[str, float]], market: MarketArrays,
                              meta: MarketMeta, feats: FeatureSet, *,
                              total_env_steps: int | None = None) -> dict[str, Any]:
    """Every member's final actor (the latest checkpoint) on one ``rl_micro.validation_walk``
    through the validation split, from its first start day to its last day, with goals from
    the member's Phase-3 Macro; daily net returns compounded into weeks
    (``weekly_from_daily``). The same keys as ``training.sweep.validation_weekly_returns``."""
    n = len(settings) * spec.seeds
    setup, macro = _setup(run, cfg, market, meta, feats, n)
    state, _, step = _latest_state(run, cfg, market, meta, feats, macro)
    params, _ = daily_plan("continuous", setup.val_params)
    day0, t_hi = int(params.start_lo), int(params.t_hi)
    _, eval_key = rmi.phase4_keys(cfg.seed, spec.seeds)
    walks = jax.jit(jax.vmap(setup.p4.walk, in_axes=(0, seed_axes(params)
                                                     if macro is not None else None, None)))
    daily, alive = jax.device_get(walks(state.agent.actor_params, params, eval_key))
    weekly, live, ended = weekly_from_daily(np.asarray(daily, np.float64),
                                            np.asarray(alive, bool), market.week_end, day0)
    if weekly.shape[1] < 1:
        raise ConfigError(f"the validation split holds no full week after its first start day "
                          f"{meta.dates[day0]}; move data.test_start later")
    dates = np.asarray(meta.dates)
    last_end = day0 + 1 + int(np.flatnonzero(np.asarray(market.week_end, bool)
                                             [day0 + 1: t_hi + 1])[-1])
    return {"returns": weekly, "live": live, "ended": ended, "start": str(dates[day0]),
            "end": str(dates[last_end]), "weeks": int(weekly.shape[1]), "step": int(step)}


# HOST ONLY
def save_best_setting(run: Run, cfg: Config, spec: SweepSpec,
                      settings: Sequence[Mapping[str, float]], best: int,
                      summary: Mapping[str, Any], market: MarketArrays, meta: MarketMeta,
                      feats: FeatureSet, *, total_env_steps: int | None = None,
                      name: str = "best", restored: tuple | None = None) -> Path:
    """Setting ``best``'s K seeds of the sweep's latest Phase-4 checkpoint (the whole state)
    in a run folder ``<run>/sweep/<name>`` with copies of the sweep run's Phases 1-3
    (``best_run_folder``; config = ``cfg`` with the setting's values and train.seeds = K),
    replacing any earlier one. ``restored``: ``latest_members``' result when the caller has
    it (one restore for many settings). Returns its path."""
    k = spec.seeds
    state, saved, step = restored or latest_members(run, cfg, spec, settings, market, meta,
                                                    feats)
    sm = setting_members(run, settings, best, k, summary, saved)
    state = take_members(state, sm.members)
    best_cfg = settings_config(cfg, settings[best], k)
    anchored = float(best_cfg.train.td3.anchor_kl_coef) > 0
    if state.agent.anchor is not None and not anchored:  # its config has no anchor
        state = state.replace(agent=state.agent.replace(anchor=None))
    best_run = best_run_folder(run, best_cfg, (1, 2, 3), name,
                               trials=len(settings) if name == "best" else 1)
    metric = best_cfg.train.td3.checkpoint_metric
    with PhaseCheckpointer(best_run, PHASE, keep_latest=cfg.train.keep_latest,
                           best_metric=metric) as out:
        out.save(int(step), state, metrics={m: sm.means[m] for m in METRICS if m in sm.means},
                 meta=sm.meta)
    spec_record = {**summary.get("spec", {}), "anchored": anchored}
    write_phase_summary(best_run, PHASE, {
        **{key: v for key, v in summary.items() if not key.startswith("val_")},
        **{key: v for key, v in sm.means.items() if key in summary},
        "seeds": k, "env_steps": int(summary["env_steps_per_seed"]) * k,
        "per_seed": sm.per_seed, "best_step": int(step), "latest_step": int(step),
        "spec": spec_record, "sweep": sm.origin,
        "params_used": "the sweep's final state of this setting's seeds"})
    return best_run.root


TD3_SWEEP = PhaseSweep(
    PHASE, METRICS, COLUMNS, "daily, annualised, on validation episodes", train_members,
    validation_weekly_returns, save_best_setting, latest_members,
    lambda s: f"{s['updates_per_seed']} updates, {s['env_steps_per_seed']} env steps per seed")
"""Phase 4's part of ``training.sweep.run_sweep``."""

__all__ = ["TD3_SWEEP", "latest_members", "member_hparams", "member_keys", "save_best_setting",
           "train_members", "validation_weekly_returns", "weekly_from_daily"]
