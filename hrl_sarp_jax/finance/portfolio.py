"""Portfolio accounting: trade from drifted weights, pay itemised costs, earn, drift. Pure jnp.

Cash is implicit (weight ``1 - sum(weights)``) and earns 0. Unlike the original constant-mix
model, trades are measured against the *drifted* weights, so rebalancing back from drift is
charged. Shapes: A assets of the level (N stocks or S sectors).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.finance.costs import CostBreakdown, CostParams, trade_costs

_F32 = jnp.float32


@struct.dataclass
class PortfolioState:
    weights: jax.Array   # [A] drifted weights of the risky assets at the close, before trading
    value: jax.Array     # scalar portfolio value (currency)
    peak: jax.Array      # scalar running peak value


@struct.dataclass
class StepInfo:
    executed_weights: jax.Array  # [A] weights right after trading
    gross_return: jax.Array      # sum(executed * r), before costs
    net_return: jax.Array        # V_after / V_before - 1 = gross_return - cost_frac
    costs: CostBreakdown
    cost_frac: jax.Array         # total cost / value before trading
    turnover: jax.Array          # 0.5 * sum |executed - drifted|
    drawdown: jax.Array          # (peak - value) / peak after the step
    blocked: jax.Array           # [A] bool: trade blocked by a circuit lock


def init_portfolio(num_assets: int, value: float) -> PortfolioState:
    """All cash: zero weights [num_assets], value and peak = ``value``."""
    v = jnp.asarray(value, _F32)
    return PortfolioState(weights=jnp.zeros((num_assets,), _F32), value=v, peak=v)


def execute_trades(
    drifted: jax.Array, target: jax.Array, lock: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Executed weights [A] and blocked mask [A] after circuit locks.

    lock = +1 (upper circuit, no sellers) blocks buys, lock = -1 (lower circuit, no buyers)
    blocks sells; a blocked asset stays at its drifted weight. A blocked buy leaves its money in
    cash. A blocked sell cannot fund buys, so the unblocked buys are scaled down pro rata until
    the executed book is no larger than the target's total (no borrowing).
    """
    wanted = target - drifted
    blocked = ((lock == 1) & (wanted > 0)) | ((lock == -1) & (wanted < 0))
    delta = jnp.where(blocked, 0.0, wanted)
    buys = jnp.maximum(delta, 0.0)
    sells = jnp.maximum(-delta, 0.0)
    total_buys = jnp.sum(buys)
    # Cash the buys may use: the target's own funding, plus money a blocked buy left unspent,
    # minus proceeds a blocked sell never produced. Written so that it is exactly total_buys
    # (scale exactly 1) when nothing is blocked.
    blocked_buy = jnp.sum(jnp.where(blocked, jnp.maximum(wanted, 0.0), 0.0))
    blocked_sell = jnp.sum(jnp.where(blocked, jnp.maximum(-wanted, 0.0), 0.0))
    room = total_buys + blocked_buy - blocked_sell
    scale = jnp.clip(room / jnp.where(total_buys > 0, total_buys, 1.0), 0.0, 1.0)
    scale = jnp.where(total_buys > 0, scale, 1.0)
    executed = drifted + scale * buys - sells
    return executed.astype(_F32), blocked


def portfolio_step(
    state: PortfolioState,
    target: jax.Array,
    next_returns: jax.Array,
    lock: jax.Array,
    adv_value: jax.Array,
    params: CostParams,
) -> tuple[PortfolioState, StepInfo]:
    """Rebalance to ``target`` at the close of day t, then earn ``next_returns`` (day t+1).

    Args:
      state: weights [A] (drifted), value, peak.
      target: [A] target weights, already projected onto the constraints (sum <= 1).
      next_returns: [A] simple returns over the next period (0 for invalid assets).
      lock: [A] int8 circuit lock of day t (+1 upper, -1 lower, 0 free).
      adv_value: [A] average daily traded value (currency) for impact; 0 = unknown.
      params: cost schedule.
    Returns:
      (new state with drifted weights, StepInfo).
    """
    target = jnp.asarray(target, _F32)
    r = jnp.asarray(next_returns, _F32)
    v0 = state.value
    executed, blocked = execute_trades(state.weights, target, lock)
    delta = executed - state.weights
    costs = trade_costs(v0 * jnp.maximum(delta, 0.0), v0 * jnp.maximum(-delta, 0.0),
                        adv_value, params)
    holdings = v0 * executed
    cash = v0 * (1.0 - jnp.sum(executed)) - costs.total
    grown = holdings * (1.0 + r)
    v2 = jnp.sum(grown) + cash
    alive = v2 > 0
    weights = jnp.where(alive, grown / jnp.where(alive, v2, 1.0), 0.0)
    peak = jnp.maximum(state.peak, v2)
    safe_v0 = jnp.where(v0 > 0, v0, 1.0)
    cost_frac = costs.total / safe_v0
    info = StepInfo(
        executed_weights=executed,
        gross_return=jnp.sum(executed * r),
        net_return=v2 / safe_v0 - 1.0,
        costs=costs,
        cost_frac=cost_frac,
        turnover=0.5 * jnp.sum(jnp.abs(delta)),
        drawdown=(peak - v2) / jnp.where(peak > 0, peak, 1.0),
        blocked=blocked,
    )
    return PortfolioState(weights=weights.astype(_F32), value=v2, peak=peak), info
