"""Risk manager: the gross exposure allowed for the next rebalance. Pure jnp.

Replaces the original's waterfall (spec §7.2) by one scalar in [0, 1] that scales the budget
of the constraint projection (caps and position counts are the projection's job):
1. drawdown gate with hysteresis: de-risk at drawdown >= derisk_drawdown and stay de-risked
   (exposure = derisked_exposure) until drawdown <= rerisk_drawdown (the original never
   enforced the band between the two);
2. CVaR budget: if cvar_budget > 0 and the CVaR of the recent valid returns exceeds it, scale
   by cvar_budget / CVaR (not compiled at all when the static ``use_cvar`` is False);
3. event risk: multiply by 1 - event_reduction on flagged days (the original read the wrong
   key and always cut 50%).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import RiskConfig

_F32 = jnp.float32


@struct.dataclass
class RiskParams:
    derisk_drawdown: jax.Array
    rerisk_drawdown: jax.Array
    derisked_exposure: jax.Array
    cvar_alpha: jax.Array
    cvar_budget: jax.Array       # per-period CVaR budget; 0 disables
    event_reduction: jax.Array
    # Static: compile the CVaR term at all. risk_params sets it from cfg.cvar_budget > 0, so a
    # disabled budget costs nothing per step; when True, cvar_budget / cvar_alpha stay sweepable
    # leaves (a budget of 0 still disables the term at run time).
    use_cvar: bool = struct.field(pytree_node=False, default=True)


@struct.dataclass
class RiskState:
    derisked: jax.Array          # bool scalar


# HOST ONLY
def risk_params(cfg: RiskConfig) -> RiskParams:
    f = lambda x: jnp.asarray(x, _F32)  # noqa: E731
    return RiskParams(
        derisk_drawdown=f(cfg.derisk_drawdown), rerisk_drawdown=f(cfg.rerisk_drawdown),
        derisked_exposure=f(cfg.derisked_exposure), cvar_alpha=f(cfg.cvar_alpha),
        cvar_budget=f(cfg.cvar_budget), event_reduction=f(cfg.event_reduction),
        use_cvar=bool(cfg.cvar_budget > 0),
    )


def tail_cvar(r: jax.Array, alpha: jax.Array, mask: jax.Array) -> jax.Array:
    """``finance.metrics.cvar`` without a sort: minus the mean of the k = ceil((1 - alpha) n)
    smallest valid returns of a short window r [W] (0 if none are valid).

    Each return's rank is counted pairwise (ties broken by index), O(W^2) compares that fuse
    into one loop; ``jnp.sort`` under vmap is several times slower on CPU for W ~ 20.
    """
    r = jnp.asarray(r, _F32)
    m = jnp.asarray(mask, bool)
    n = jnp.sum(m).astype(_F32)
    k = jnp.maximum(jnp.ceil((1.0 - jnp.asarray(alpha, _F32)) * n - 1e-4), 1.0)
    k = jnp.minimum(k, n)
    x = jnp.where(m, r, jnp.inf)
    idx = jnp.arange(r.shape[-1], dtype=jnp.int32)
    before = (x[None, :] < x[:, None]) | ((x[None, :] == x[:, None]) & (idx[None] < idx[:, None]))
    rank = jnp.sum(before, axis=1).astype(_F32)
    tail = jnp.sum(jnp.where(m & (rank < k), r, 0.0))
    return jnp.where(n > 0, -tail / jnp.maximum(k, 1.0), 0.0).astype(_F32)


def init_risk_state() -> RiskState:
    return RiskState(derisked=jnp.zeros((), bool))


def exposure(
    state: RiskState,
    drawdown: jax.Array,
    recent_returns: jax.Array,
    recent_mask: jax.Array,
    event_flag: jax.Array,
    params: RiskParams,
) -> tuple[RiskState, jax.Array]:
    """New RiskState and the allowed exposure (float32 scalar in [0, 1]).

    Args:
      drawdown: current drawdown (positive fraction).
      recent_returns: [W] recent portfolio returns (a ring buffer; order does not matter).
      recent_mask: [W] bool, valid entries of the buffer.
      event_flag: bool scalar, an event-risk day.
    """
    p = params
    dd = jnp.asarray(drawdown, _F32)
    derisked = jnp.where(state.derisked, dd > p.rerisk_drawdown, dd >= p.derisk_drawdown)
    level = jnp.where(derisked, p.derisked_exposure, 1.0)
    if p.use_cvar:
        tail = tail_cvar(recent_returns, p.cvar_alpha, recent_mask)
        over = (p.cvar_budget > 0) & (tail > p.cvar_budget)
        level = level * jnp.where(over, p.cvar_budget / jnp.where(over, tail, 1.0), 1.0)
    level = level * jnp.where(jnp.asarray(event_flag, bool), 1.0 - p.event_reduction, 1.0)
    return RiskState(derisked=derisked), jnp.clip(level, 0.0, 1.0).astype(_F32)
