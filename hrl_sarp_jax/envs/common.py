"""Pieces shared by the three envs: one trading day of accounting, goals, observations.

The single accounting is ``finance.portfolio_step`` at the stock level: every env (Macro
included) trades stocks once per trading day. Shapes: N stocks, S sectors, G = S + 3.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment

from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.envs.rewards import PE_Z_INDEX, VALUE_PE_Z, sector_weights
from hrl_sarp_jax.finance.portfolio import PortfolioState, StepInfo, portfolio_step
from hrl_sarp_jax.risk.constraints import project_sector_weights, project_weights
from hrl_sarp_jax.risk.manager import RiskState, exposure

_F32 = jnp.float32
_I32 = jnp.int32
EVENT_FLAG_INDEX = 14  # MACRO_FEATURES index of event_flag (1 on event-risk days)
DRAWDOWN_INDEX = 17    # MACRO_FEATURES index of portfolio_drawdown (filled here)

# A frozen policy: apply_fn(params, obs_flat [D]) -> action. Used as an allocator inside
# MacroEnv (micro obs -> stock weights [N]) and as a goal source of MicroEnv (macro obs ->
# macro action [S+3]). The env holds apply_fn (static, hashable); params live in
# EnvParams.policy_params.
PolicyFn = Callable[[Any, jax.Array], jax.Array]


def drawdown(port: PortfolioState) -> jax.Array:
    return (1.0 - port.value / port.peak).astype(_F32)


def cash(port: PortfolioState) -> jax.Array:
    return (1.0 - jnp.sum(port.weights)).astype(_F32)


def regime_call(action: jax.Array, num_sectors: int) -> jax.Array:
    """int32 argmax of the regime part action[S:S+3] (probabilities or logits alike)."""
    return jnp.argmax(action[num_sectors: num_sectors + 3]).astype(_I32)


def macro_action_to_goal(action: jax.Array, params: EnvParams,
                         book: jax.Array | None) -> jax.Array:
    """Macro action [S+3] -> goal [S+3]: projected sector weights (exposure 1) ⊕ regime one-hot.

    ``book`` [N]: the drifted stock weights the decision starts from (None: no book, e.g. a
    sampled goal). With ``params.goal_step`` < 1 the sector goal is the projection of
    cur + goal_step (call - cur), cur = the book's sector mix scaled to the call's budget (the
    call itself when the book is all cash); goal_step = 1 returns the call exactly.
    """
    s = params.num_sectors
    w = project_sector_weights(action[:s], params.sector_valid, params.constraints)
    if book is not None:
        sw = sector_weights(book, params.stock_sector, s)
        total = jnp.sum(sw)
        cur = jnp.where(total > 1e-6, sw * (jnp.sum(w) / jnp.maximum(total, 1e-6)), w)
        step = params.goal_step
        mixed = project_sector_weights(cur + step * (w - cur), params.sector_valid,
                                       params.constraints)
        w = jnp.where(step < 1.0, mixed, w)
    return jnp.concatenate([w, jax.nn.one_hot(regime_call(action, s), 3, dtype=_F32)])


def sampled_goal(key: jax.Array, params: EnvParams) -> jax.Array:
    """Goal from Dirichlet(1) sector weights over valid sectors ⊕ a uniform random regime."""
    k_w, k_r = jax.random.split(key)
    s = params.num_sectors
    e = jnp.where(params.sector_valid, jax.random.exponential(k_w, (s,), _F32), 0.0)
    w = e / jnp.maximum(jnp.sum(e), 1e-12)
    regime = jax.random.randint(k_r, (), 0, 3, _I32)
    return macro_action_to_goal(jnp.concatenate([w, jax.nn.one_hot(regime, 3, dtype=_F32)]),
                                params, None)


def risk_exposure(
    risk: RiskState, port: PortfolioState, buf: jax.Array, mask: jax.Array, t: jax.Array,
    params: EnvParams,
) -> tuple[RiskState, jax.Array]:
    """Exposure allowed for a rebalance at the close of t (risk manager, data <= t)."""
    event = params.macro_features[t, EVENT_FLAG_INDEX] > 0.5
    return exposure(risk, drawdown(port), buf, mask, event, params.risk, t)


def project_stocks(w: jax.Array, t: jax.Array, exposure_: jax.Array, params: EnvParams,
                   held: jax.Array) -> jax.Array:
    """Project stock targets w [N] onto the constraints for day t (tradable stocks only);
    ``held`` [N] is the drifted book before trading (the support rule keeps its names)."""
    return project_weights(w, params.stock_sector, params.tradable[t], params.num_sectors,
                           params.constraints, exposure_, held=held)


def equal_weight_in_sectors(sector_w: jax.Array, t: jax.Array, params: EnvParams) -> jax.Array:
    """[N] sector weight split equally among the sector's tradable stocks at t."""
    valid = params.tradable[t].astype(_F32)
    counts = sector_weights(valid, params.stock_sector, params.num_sectors)
    per = jnp.where(counts > 0, sector_w / jnp.maximum(counts, 1.0), 0.0)
    return per[params.stock_sector] * valid


def rank_in_sector(score: jax.Array, eligible: jax.Array, sector: jax.Array) -> jax.Array:
    """int32 [N]: each name's rank by descending ``score`` [N] within its sector among the
    ``eligible`` [N] names (0 = highest; ties by lower index)."""
    i = jnp.arange(score.shape[0])
    better = (score[None, :] > score[:, None]) | ((score[None, :] == score[:, None])
                                                   & (i[None, :] < i[:, None]))
    same = (sector[None, :] == sector[:, None]) & eligible[None, :]
    return jnp.sum(better & same, axis=1).astype(jnp.int32)


def cheapest_in_sectors(t: jax.Array, params: EnvParams, per_sector: jax.Array | int
                        ) -> jax.Array:
    """bool [N]: each sector's ``per_sector`` tradable names at t with the lowest ``pe_z``
    stock feature (ties by lower index): a value screen."""
    tradable = params.tradable[t]
    cheap = -params.stock_features[t, :, PE_Z_INDEX]
    return tradable & (rank_in_sector(cheap, tradable, params.stock_sector) < per_sector)


def value_weight_in_sectors(sector_w: jax.Array, t: jax.Array, params: EnvParams,
                            per_sector: jax.Array | int) -> jax.Array:
    """[N] sector weight split equally among the sector's ``per_sector`` cheapest tradable
    names at t (``cheapest_in_sectors``)."""
    members = cheapest_in_sectors(t, params, per_sector).astype(_F32)
    counts = sector_weights(members, params.stock_sector, params.num_sectors)
    per = jnp.where(counts > 0, sector_w / jnp.maximum(counts, 1.0), 0.0)
    return per[params.stock_sector] * members


def lock_to_goal(w: jax.Array, goal: jax.Array, t: jax.Array, params: EnvParams) -> jax.Array:
    """[N] the Micro's weights w [N] with a share ``params.goal_lock`` of its sector mix set to
    the goal's: (1 - lock) w + lock w_locked, where w_locked rescales w within each sector to
    the goal's sector weight goal[:S] (a sector where w holds < 1e-6 gets the goal's weight
    split equally over its stocks tradable at t). lock 0 (static): w itself, nothing added to
    the program."""
    lock = params.goal_lock
    if lock == 0.0:
        return w
    ids = params.stock_sector
    g = goal[:params.num_sectors]
    held = sector_weights(w, ids, params.num_sectors)                   # [S]
    filled = held > 1e-6
    scale = jnp.where(filled, g / jnp.where(filled, held, 1.0), 0.0)
    locked = jnp.where(filled[ids], w * scale[ids], equal_weight_in_sectors(g, t, params))
    return lock * locked + (1.0 - lock) * w


def sector_ew_return(achieved_sector_w: jax.Array, t: jax.Array, params: EnvParams) -> jax.Array:
    """sum_s sw_s ew_s: the return over day t + 1 of holding the executed sector weights
    [S] equal-weighted over each sector's stocks tradable at t (the Micro's ``excess`` reward
    benchmark); 0 unless ``params.reward.kind == 'excess'`` (nothing computed)."""
    if params.reward.kind != "excess":
        return jnp.zeros((), _F32)
    return equal_weight_in_sectors(achieved_sector_w, t, params) @ params.returns[t + 1]


def hold_within_band(drifted: jax.Array, target: jax.Array, threshold: jax.Array,
                     residual: jax.Array | float = 0.0) -> jax.Array:
    """The book [A] to trade to: ``drifted`` if its turnover to ``target`` [A],
    d = ½Σ|target - drifted|, is below ``threshold``; else ``target`` when ``residual`` is 0,
    otherwise target + (residual·threshold / d)·(drifted - target) on the target's support
    and 0 off it (at most residual·threshold away from the target)."""
    gap = 0.5 * jnp.sum(jnp.abs(target - drifted))
    k = residual * threshold / jnp.maximum(gap, 1e-12)
    partial = jnp.where(target > 0, target + k * (drifted - target), 0.0).astype(target.dtype)
    return jnp.where(gap < threshold, drifted, jnp.where(residual > 0, partial, target))


def trade_day(
    port: PortfolioState, target: jax.Array, t: jax.Array, params: EnvParams
) -> tuple[PortfolioState, StepInfo, jax.Array]:
    """Rebalance to target [N] at the close of t, earn returns[t+1]; a rebalance with turnover
    below ``constraints.rebalance_threshold`` is skipped (the drifted book is held), a larger
    one lands ``constraints.rebalance_residual`` of the band short of the target.

    Returns (new portfolio, StepInfo, value_return): value_return = sum of w_exec * r over value
    stocks (pe_z[t] < -0.5). Use ``net_return`` below for returns, not ``info.net_return``.
    """
    r = params.returns[t + 1]
    c = params.constraints
    target = hold_within_band(port.weights, target, c.rebalance_threshold, c.rebalance_residual)
    port2, info = portfolio_step(port, target, r, params.circuit_lock[t], params.adv_value[t],
                                 params.cost)
    value = params.stock_features[t, :, PE_Z_INDEX] < VALUE_PE_Z
    return port2, info, jnp.sum(jnp.where(value, info.executed_weights * r, 0.0))


def net_return(info: StepInfo) -> jax.Array:
    """gross - cost_frac: equal to V2/V0 - 1 but without float32 cancellation at V ~ 1e7."""
    return (info.gross_return - info.cost_frac).astype(_F32)


def is_ruined(port: PortfolioState, params: EnvParams) -> jax.Array:
    """Real end: value below ruin_value * initial, or drawdown >= drawdown_stop (if > 0)."""
    ruin = port.value < params.ruin_value * params.initial_value
    stop = (params.drawdown_stop > 0) & (drawdown(port) >= params.drawdown_stop)
    return ruin | stop


def micro_obs(
    port: PortfolioState, goal: jax.Array, t: jax.Array, params: EnvParams
) -> jax.Array:
    """Flat micro observation at the close of t (layout in envs/obs.py)."""
    return jnp.concatenate([
        params.stock_features[t].reshape(-1), params.tradable[t].astype(_F32), port.weights,
        jnp.stack([cash(port), drawdown(port)]), goal,
    ]).astype(_F32)


def macro_obs(port: PortfolioState, t: jax.Array, params: EnvParams) -> jax.Array:
    """Flat macro observation at the close of t (layout in envs/obs.py)."""
    dd = drawdown(port)
    macro = params.macro_features[t].at[DRAWDOWN_INDEX].set(dd)
    sw = sector_weights(port.weights, params.stock_sector, params.num_sectors)
    return jnp.concatenate([
        macro, params.sector_features[t].reshape(-1), params.sector_mask[t].astype(_F32),
        params.adjacency[t].reshape(-1), sw, jnp.stack([cash(port), dd]),
    ]).astype(_F32)


class ObserveOnce(environment.Environment):
    """gymnax 1.0 ``step`` with the same semantics (split key, step, auto-reset, select,
    ``final_observation``), but the observation is built once, from the selected state.

    gymnax's base step builds the reset observation and the stepped one and selects between
    them; for N x 22 stock features that doubles the dominant memory traffic. Here the reset
    observation is never built and ``final_observation`` is dead code unless the caller reads it.
    """

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params=None):
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        _, state_re = self.reset_env(key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        info = {**info, "terminated": terminated, "truncated": truncated,
                "final_observation": obs_st}
        return self.get_obs(state, params), state, reward, terminated, truncated, info
