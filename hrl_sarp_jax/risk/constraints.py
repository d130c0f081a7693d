"""Exact Euclidean projections of target weights onto the portfolio constraints. Pure jnp.

The original clipped to caps and sent the clipped mass to cash (or rescaled and broke the caps
again). Here a target w is mapped to argmin ||x - w||^2 over the feasible set, so weight removed
by a cap is redistributed to the other assets and the policy's preferences are kept.

KKT form used throughout: x_i = clip(w_i - t_i, 0, c_i) with a threshold t_i. For the
sector-capped problem t_i = max(tau, theta_s(i)), where theta_s is the threshold that puts sector
s exactly at its cap on its own, and tau is the global threshold meeting the budget. Thresholds
are found by bisection with a fixed iteration count, then polished by one exact Newton step on
the piecewise-linear sum. Shapes: N stocks, S sectors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import ConstraintConfig

_F32 = jnp.float32
_BISECT_ITERS = 32  # brackets of width ~6 shrink below float32 resolution; Newton finishes


@struct.dataclass
class ConstraintParams:
    max_stock_weight: jax.Array   # float32 scalar
    max_sector_weight: jax.Array  # float32 scalar
    min_cash: jax.Array           # float32 scalar
    max_positions: int = struct.field(pytree_node=False, default=0)  # <= 0: no limit


# HOST ONLY
def constraint_params(cfg: ConstraintConfig) -> ConstraintParams:
    f = lambda x: jnp.asarray(x, _F32)  # noqa: E731
    return ConstraintParams(
        max_stock_weight=f(cfg.max_stock_weight), max_sector_weight=f(cfg.max_sector_weight),
        min_cash=f(cfg.min_cash), max_positions=int(cfg.max_positions),
    )


def _solve_threshold(total_fn, slope_fn, lo, hi, budget):
    """Largest-mass threshold t in [lo, hi] with total_fn(t) == budget (nonincreasing total).

    If total_fn(lo) < budget (infeasible) returns lo, the allocation of maximal total.
    Works elementwise on batched lo/hi/budget (e.g. one threshold per sector).
    """
    feasible = total_fn(lo) >= budget

    def body(_, carry):
        a, b = carry
        mid = 0.5 * (a + b)
        go_up = total_fn(mid) >= budget
        return jnp.where(go_up, mid, a), jnp.where(go_up, b, mid)

    t, _ = jax.lax.fori_loop(0, _BISECT_ITERS, body, (lo, hi))
    # Newton on the linear piece: total(t + d) = total(t) - slope * d.
    n = jnp.asarray(slope_fn(t), _F32)
    t_new = t + (total_fn(t) - budget) / jnp.maximum(n, 1.0)
    return jnp.where(feasible, t_new, lo)


def project_capped_simplex(w: jax.Array, caps: jax.Array, budget: jax.Array) -> jax.Array:
    """Euclidean projection of w [A] onto {0 <= x <= caps, sum x = budget}.

    If sum(caps) < budget returns caps (cash absorbs the rest); budget <= 0 gives zeros.
    """
    w = jnp.asarray(w, _F32)
    caps = jnp.maximum(jnp.asarray(caps, _F32), 0.0)
    budget = jnp.asarray(budget, _F32)
    alloc = lambda t: jnp.clip(w - t, 0.0, caps)  # noqa: E731
    total = lambda t: jnp.sum(alloc(t))  # noqa: E731
    slope = lambda t: jnp.sum(((w - t) > 0) & ((w - t) < caps))  # noqa: E731
    t = _solve_threshold(total, slope, jnp.min(w - caps), jnp.max(w), budget)
    return jnp.where(budget > 0, alloc(t), 0.0).astype(_F32)


def _top_k_mask(w: jax.Array, valid: jax.Array, k: int) -> jax.Array:
    """Bool [N]: the k largest valid entries of w (ties by lower index)."""
    n = w.shape[0]
    if k <= 0 or k >= n:
        return valid
    scores = jnp.where(valid, w, -jnp.inf)
    _, idx = jax.lax.top_k(scores, k)
    return valid & jnp.zeros((n,), bool).at[idx].set(True)


def project_weights(
    w: jax.Array,
    sector_ids: jax.Array,
    valid: jax.Array,
    num_sectors: int,
    params: ConstraintParams,
    exposure: jax.Array | float = 1.0,
) -> jax.Array:
    """Project stock weights w [N] onto the long-only constraint set; returns [N] float32.

    Feasible set: invalid slots 0; 0 <= x_i <= max_stock_weight; per-sector sum <=
    max_sector_weight; sum = exposure * (1 - min_cash), or the largest feasible total when the
    caps cannot hold the budget (then, and only then, the rest is cash). At most max_positions
    nonzero: the support is restricted to the max_positions largest valid inputs before the
    (exact) projection on that support.
    """
    w = jnp.asarray(w, _F32)
    sector_ids = jnp.asarray(sector_ids, jnp.int32)
    support = _top_k_mask(w, jnp.asarray(valid, bool), params.max_positions)
    caps = jnp.where(support, params.max_stock_weight, 0.0).astype(_F32)
    budget = jnp.asarray(exposure, _F32) * (1.0 - params.min_cash)
    sector_cap = params.max_sector_weight
    seg = lambda v: jax.ops.segment_sum(v, sector_ids, num_segments=num_sectors)  # noqa: E731
    gather = lambda v: v[sector_ids]  # noqa: E731

    # Per-sector thresholds theta [S]: sector s alone at its cap.
    s_total = lambda th: seg(jnp.clip(w - gather(th), 0.0, caps))  # noqa: E731
    s_slope = lambda th: seg(  # noqa: E731
        (((w - gather(th)) > 0) & ((w - gather(th)) < caps)).astype(_F32))
    big = jnp.max(jnp.abs(w)) + 2.0
    lo_s = jnp.full((num_sectors,), -big, _F32)
    hi_s = jnp.full((num_sectors,), big, _F32)
    theta = _solve_threshold(s_total, s_slope, lo_s, hi_s, jnp.broadcast_to(sector_cap,
                                                                             (num_sectors,)))
    theta_i = gather(theta)

    # Global threshold tau; a sector uses max(tau, theta_s).
    alloc = lambda tau: jnp.clip(w - jnp.maximum(tau, theta_i), 0.0, caps)  # noqa: E731
    total = lambda tau: jnp.sum(alloc(tau))  # noqa: E731

    def slope(tau):
        d = w - tau
        return jnp.sum((theta_i <= tau) & (d > 0) & (d < caps))

    tau = _solve_threshold(total, slope, -big, big, budget)
    x = alloc(tau)
    # Polish float error so sector sums never exceed the cap.
    sums = seg(x)
    x = x * gather(jnp.minimum(1.0, sector_cap / jnp.maximum(sums, 1e-30)))
    return jnp.where(budget > 0, x, 0.0).astype(_F32)


def project_sector_weights(
    w: jax.Array, valid: jax.Array, params: ConstraintParams, exposure: jax.Array | float = 1.0
) -> jax.Array:
    """Project sector weights w [S]: each <= max_sector_weight, sum = exposure*(1-min_cash)."""
    caps = jnp.where(jnp.asarray(valid, bool), params.max_sector_weight, 0.0)
    budget = jnp.asarray(exposure, _F32) * (1.0 - params.min_cash)
    return project_capped_simplex(w, caps, budget)
