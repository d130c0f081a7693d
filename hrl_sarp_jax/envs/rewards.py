"""Rewards: the original's decomposition and coefficients, without look-ahead, bounded. Pure jnp.

Every term is computed after the step, from the returns that follow the action (never the
same-step returns the action could not earn). Window terms read a fixed ring buffer of the last
R net returns of the level (daily for Micro, weekly for Macro), newest last.

  R_macro     = clip(alpha, -1, 1) - concentration * sum(w^2) - turnover_pen * sum|w - w_prev|
                alpha = w . (sector growth - 1) - (benchmark growth - 1) over the step,
                w = the Macro call (projected sector weights); bounds [-1.102, 1]
  R_portfolio = tanh(calmar) * (1 - clip(cvar, 0, 1)) - clip(cost_frac, 0, 1);   [-2, 1]
                calmar = window total return / max(window max drawdown, 0.01) (not annualised)
  R_regime    = regime_correct | regime_wrong vs regime_label at the decision day; 0 unknown
  R_value     = clip(sum over the step's days of sum_i w_exec_i r_i 1[pe_z_i < -0.5], -1, 1)
  R_micro     = sharpe_w tanh(sharpe / 2) + goal_w cos(achieved, goal) + drawdown_w D   [-0.7, 0.8]
                sharpe: annualised (sqrt 252), sample std, over the window; D = -max(0, dd-free)^2
  Macro R = 0.4 R_macro + 0.3 R_portfolio + 0.2 R_regime + 0.1 R_value
  Micro R = 0.5 R_micro + 0.3 R_portfolio + 0.2 R_value
The goal part of the Micro reward is ``goal_reward`` so HER can swap it:
  r(g') = r(g) - goal_reward(ach, g) + goal_reward(ach, g').

``kind = 'excess'`` (``RewardParams.kind``, static) pays for the decision each level makes,
net of every cost the accounting charges, and nothing else:
  Macro R = (log(1 + week net return) - log(benchmark growth) - c_turn ½Σ|call - book|) / vol_w
  Micro R = (gross - sum_s sw_s ew_s - cost_frac) / vol_d + goal_reward(achieved, goal)
with ew_s the equal-weighted return of sector s's tradable stocks over the day, sw the executed
sector weights, and vol the sample SD of the level's recent net returns (the ring buffer,
causal), floored at ``macro_vol_floor`` / ``micro_vol_floor``. ``kind = 'macro_excess'``: the
Macro's excess reward with the Micro's original composite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hrl_sarp_jax.envs.params import MACRO_EXCESS_KINDS, REWARD_KINDS, RewardParams
from hrl_sarp_jax.finance.metrics import sharpe, total_return
from hrl_sarp_jax.risk.manager import tail_cvar

_F32 = jnp.float32
__all__ = ["REWARD_KINDS"]  # re-exported: the reward kinds live beside RewardParams
VALUE_PE_Z = -0.5       # pe_z threshold of a value stock (original)
PE_Z_INDEX = 9          # STOCK_FEATURES index of pe_z
CALMAR_DD_FLOOR = 0.01  # original's floor on the Calmar denominator
SHARPE_SCALE = 2.0      # tanh(sharpe / SHARPE_SCALE)


def push_return(buf: jax.Array, count: jax.Array, r: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Append r to buf [R] (oldest dropped, newest last); count = valid entries (<= R)."""
    buf = jnp.concatenate([buf[1:], jnp.asarray(r, _F32)[None]])
    return buf, jnp.minimum(count + 1, buf.shape[0]).astype(jnp.int32)


def buffer_mask(buf: jax.Array, count: jax.Array) -> jax.Array:
    """bool [R]: the last ``count`` entries are valid."""
    r = buf.shape[0]
    return jnp.arange(r, dtype=jnp.int32) >= r - count


def sector_weights(w: jax.Array, sector_ids: jax.Array, num_sectors: int) -> jax.Array:
    """[S] sum of stock weights w [N] per sector (one-hot matmul, fast for small S)."""
    onehot = (sector_ids[:, None] == jnp.arange(num_sectors, dtype=jnp.int32)[None]).astype(_F32)
    return w @ onehot


def achieved_goal(
    stock_weights: jax.Array, sector_ids: jax.Array, num_sectors: int, regime: jax.Array
) -> jax.Array:
    """[S+3] achieved sector weights ⊕ one-hot(regime) (all zeros when regime = -1)."""
    sw = sector_weights(stock_weights, sector_ids, num_sectors)
    return jnp.concatenate([sw, jax.nn.one_hot(regime, 3, dtype=_F32)])


def goal_alignment(achieved_sector_weights: jax.Array, goal: jax.Array) -> jax.Array:
    """cos(achieved [S], goal[:S]) in [0, 1] for nonnegative weights; 0 if either is zero."""
    g = goal[..., : achieved_sector_weights.shape[-1]]
    num = jnp.sum(achieved_sector_weights * g, axis=-1)
    den = jnp.linalg.norm(achieved_sector_weights, axis=-1) * jnp.linalg.norm(g, axis=-1)
    cos = jnp.where(den > 1e-12, num / jnp.where(den > 1e-12, den, 1.0), 0.0)
    return jnp.clip(cos, 0.0, 1.0).astype(_F32)


def goal_reward(
    achieved_sector_weights: jax.Array, goal: jax.Array, params: RewardParams
) -> jax.Array:
    """The goal-dependent part of the total Micro reward: w_micro * goal_w * cos."""
    return params.micro_w_micro * params.goal_w * goal_alignment(achieved_sector_weights, goal)


def window_max_drawdown(buf: jax.Array, mask: jax.Array) -> jax.Array:
    """``finance.metrics.max_drawdown`` of a short window buf [R] (masked entries count as 0).

    A sequential loop unrolled over the static R: no cumprod / cummax reduce-windows, which
    cost ~8x more on CPU under vmap for R ~ 20 (and it rounds like the float64 reference's
    left-to-right product rather than a tree).
    """
    x = jnp.where(mask, jnp.asarray(buf, _F32), 0.0)
    wealth = peak = jnp.ones(x.shape[:-1], _F32)
    dd = jnp.zeros(x.shape[:-1], _F32)
    for i in range(x.shape[-1]):
        wealth = wealth * (1.0 + x[..., i])
        peak = jnp.maximum(peak, wealth)
        dd = jnp.maximum(dd, 1.0 - wealth / peak)
    return dd


def portfolio_reward(
    buf: jax.Array, count: jax.Array, cost_frac: jax.Array, params: RewardParams
) -> dict[str, jax.Array]:
    """R_portfolio and its parts from the window buf [R] (newest last)."""
    m = buffer_mask(buf, count)
    mdd = window_max_drawdown(buf, m)
    calmar = total_return(buf, m) / jnp.maximum(mdd, CALMAR_DD_FLOOR)
    tail = tail_cvar(buf, params.cvar_alpha, m)  # = finance.metrics.cvar, sort-free
    cost = jnp.clip(cost_frac, 0.0, 1.0)
    r = jnp.tanh(calmar) * (1.0 - jnp.clip(tail, 0.0, 1.0)) - cost
    return {"calmar": calmar, "cvar": tail, "cost": cost, "r_portfolio": r.astype(_F32)}


def running_vol(buf: jax.Array, count: jax.Array, floor: jax.Array) -> jax.Array:
    """max(sample SD of the valid entries of buf [R], floor); the floor while fewer than 2."""
    m = buffer_mask(buf, count)
    n = jnp.sum(m).astype(_F32)
    mean = jnp.sum(jnp.where(m, buf, 0.0)) / jnp.maximum(n, 1.0)
    var = jnp.sum(jnp.where(m, jnp.square(buf - mean), 0.0)) / jnp.maximum(n - 1.0, 1.0)
    sd = jnp.where(n >= 2, jnp.sqrt(var), 0.0)
    return jnp.maximum(sd, floor).astype(_F32)


def micro_reward(
    buf: jax.Array,
    count: jax.Array,
    achieved_sector_weights: jax.Array,
    goal: jax.Array,
    drawdown: jax.Array,
    cost_frac: jax.Array,
    value_return: jax.Array,
    params: RewardParams,
    gross_return: jax.Array | float = 0.0,
    sector_ew_return: jax.Array | float = 0.0,
    turnover: jax.Array | float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total Micro reward and its components. buf holds daily net returns incl. this step's.
    ``gross_return`` (sum w_exec r) and ``sector_ew_return`` (sum_s sw_s ew_s) feed the
    ``excess`` kind only; ``turnover`` (the day's executed one-way turnover) is charged
    ``micro_turnover_cost`` in every kind."""
    p = params
    charge = p.micro_turnover_cost * turnover
    if p.kind == "excess":
        vol = running_vol(buf, count, p.micro_vol_floor)
        selection = gross_return - sector_ew_return - cost_frac
        g = goal_alignment(achieved_sector_weights, goal)
        total = selection / vol + goal_reward(achieved_sector_weights, goal, p) - charge
        comps = {"selection": selection, "vol": vol, "goal": g, "turnover_charge": charge,
                 "total": total}
        return total.astype(_F32), {k: jnp.asarray(v, _F32) for k, v in comps.items()}
    sr = sharpe(buf, 252, mask=buffer_mask(buf, count))
    s = jnp.tanh(sr / SHARPE_SCALE)
    g = goal_alignment(achieved_sector_weights, goal)
    d = -jnp.square(jnp.maximum(drawdown - p.drawdown_free, 0.0))
    r_micro = p.sharpe_w * s + p.goal_w * g + p.drawdown_w * d
    port = portfolio_reward(buf, count, cost_frac, p)
    r_value = jnp.clip(value_return, -1.0, 1.0)
    total = (p.micro_w_micro * r_micro + p.micro_w_portfolio * port["r_portfolio"]
             + p.micro_w_value * r_value - charge)
    comps = {"sharpe": sr, "sharpe_term": s, "goal": g, "drawdown_term": d, "r_micro": r_micro,
             **port, "r_value": r_value, "turnover_charge": charge, "total": total}
    return total.astype(_F32), {k: jnp.asarray(v, _F32) for k, v in comps.items()}


def macro_reward(
    buf: jax.Array,
    count: jax.Array,
    call_weights: jax.Array,
    prev_sector_weights: jax.Array,
    sector_growth: jax.Array,
    bench_growth: jax.Array,
    regime_call: jax.Array,
    regime_label: jax.Array,
    cost_frac: jax.Array,
    value_return: jax.Array,
    params: RewardParams,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Total Macro reward and components for one (possibly partial) week.

    Args:
      buf, count: weekly net returns incl. this week's.
      call_weights: [S] the Macro call; prev_sector_weights: [S] drifted book before it.
      sector_growth: [S] prod(1 + sector returns) over the week; bench_growth: scalar.
      regime_call, regime_label: int32 (label -1 = unknown, no regime reward).
    """
    p = params
    if p.kind in MACRO_EXCESS_KINDS:
        vol = running_vol(buf, count, p.macro_vol_floor)
        week = buf[-1]
        excess = jnp.log1p(jnp.maximum(week, -0.99)) - jnp.log(jnp.maximum(bench_growth, 0.01))
        turn = 0.5 * jnp.sum(jnp.abs(call_weights - prev_sector_weights))
        total = (excess - p.excess_turnover_cost * turn) / vol
        comps = {"excess_log_return": excess, "vol": vol, "turnover": turn, "total": total}
        return total.astype(_F32), {k: jnp.asarray(v, _F32) for k, v in comps.items()}
    alpha = jnp.sum(call_weights * (sector_growth - 1.0)) - (bench_growth - 1.0)
    conc = jnp.sum(jnp.square(call_weights))
    turn = jnp.sum(jnp.abs(call_weights - prev_sector_weights))
    r_macro = (jnp.clip(alpha, -1.0, 1.0) - p.concentration_penalty * conc
               - p.turnover_penalty * turn)
    r_regime = jnp.where(regime_label < 0, 0.0,
                         jnp.where(regime_call == regime_label, p.regime_correct, p.regime_wrong))
    port = portfolio_reward(buf, count, cost_frac, p)
    r_value = jnp.clip(value_return, -1.0, 1.0)
    total = (p.macro_w_macro * r_macro + p.macro_w_portfolio * port["r_portfolio"]
             + p.macro_w_regime * r_regime + p.macro_w_value * r_value)
    comps = {"alpha": alpha, "concentration": conc, "turnover": turn, "r_macro": r_macro,
             "r_regime": r_regime, **port, "r_value": r_value, "total": total}
    return total.astype(_F32), {k: jnp.asarray(v, _F32) for k, v in comps.items()}
