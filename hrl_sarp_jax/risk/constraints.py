"""Exact Euclidean projections of target weights onto the portfolio constraints. Pure jnp.

The original clipped to caps and sent the clipped mass to cash (or rescaled and broke the caps
again). Here a target w is mapped to argmin ||x - w||^2 over the feasible set, so weight removed
by a cap is redistributed to the other assets and the policy's preferences are kept.

KKT form used throughout: x_i = clip(w_i - t_i, 0, c_i) with a threshold t_i. For the
sector-capped problem t_i = max(tau, theta_s(i)), where theta_s is the threshold that puts sector
s exactly at its cap on its own, and tau is the global threshold meeting the budget. Thresholds
are found by a safeguarded Newton iteration on the piecewise-linear totals (exact
once a step crosses no breakpoint: typically 2-6 evaluations), with sector sums as masked
[S, N] reductions and one-hot products, never scatters. Shapes: N stocks, S sectors.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import ConstraintConfig
from hrl_sarp_jax.errors import ConfigError

_F32 = jnp.float32
_MAX_ITERS = 64  # safety cap of the Newton loops (typically 2-6 evaluations)
_TOL = 2e-7      # residual (relative to max(|target|, 1)) at which a threshold is done
SUPPORT_RULES = ("hysteresis", "top_k")


@struct.dataclass
class ConstraintParams:
    max_stock_weight: jax.Array   # float32 scalar
    max_sector_weight: jax.Array  # float32 scalar
    min_cash: jax.Array           # float32 scalar
    rebalance_threshold: jax.Array  # float32 scalar: skip rebalances with smaller turnover
    support_margin: jax.Array = 0.0  # float32 scalar: hysteresis of the held support
    rebalance_residual: jax.Array = 0.0  # float32 scalar: band fraction left after a trade
    max_positions: int = struct.field(pytree_node=False, default=0)  # <= 0: no limit
    # Static: the support under max_positions keeps held names (``sticky_top_k_mask``); False
    # is the original rule (the max_positions largest targets, ties by index).
    sticky_support: bool = struct.field(pytree_node=False, default=False)


# HOST ONLY
def constraint_params(cfg: ConstraintConfig) -> ConstraintParams:
    buy_in = 0.5 * (1.0 - cfg.min_cash)  # turnover of the first buy from an all-cash book
    if not 0.0 <= cfg.rebalance_threshold < buy_in:
        raise ConfigError(
            f"env.constraints.rebalance_threshold = {cfg.rebalance_threshold} must be in "
            f"[0, {buy_in:g}): at or above ½(1 - min_cash) an all-cash book never buys; use 0 to "
            f"trade on every decision")
    if cfg.support_rule not in SUPPORT_RULES:
        raise ConfigError(f"env.constraints.support_rule = {cfg.support_rule!r} is not one of "
                          f"{', '.join(SUPPORT_RULES)}")
    if not 0.0 <= cfg.support_margin < 1.0:
        raise ConfigError(f"env.constraints.support_margin = {cfg.support_margin} must be in "
                          "[0, 1): a held name stays while its target >= (1 - margin) x the "
                          "max_positions-th largest target")
    f = lambda x: jnp.asarray(x, _F32)  # noqa: E731
    return ConstraintParams(
        max_stock_weight=f(cfg.max_stock_weight), max_sector_weight=f(cfg.max_sector_weight),
        min_cash=f(cfg.min_cash), rebalance_threshold=f(cfg.rebalance_threshold),
        support_margin=f(cfg.support_margin), rebalance_residual=f(cfg.rebalance_residual),
        max_positions=int(cfg.max_positions),
        sticky_support=cfg.support_rule == "hysteresis",
    )


def _newton_threshold(eval_fn, t0, lo, hi, target, f_lo, skip, max_iters: int):
    """Root t in [lo, hi] of a nonincreasing piecewise-linear total(t) = target.

    Safeguarded Newton: ``eval_fn(t)`` returns (total(t), slope count = number of free items
    at t). On the right linear piece a Newton step lands on the root (up to rounding), so an
    element is done once its residual |total(t) - target| <= tol (one more cheap Newton step
    is still applied) or its next point no longer changes t in float32. A Newton step is only
    taken if it stays strictly inside the bracket [a, b] (total(a) >= target >= total(b));
    otherwise the bracket's secant point, and the midpoint every third iteration, so the
    bracket shrinks whatever happens. The
    ``while_loop`` stops when every element is done (under vmap: the slowest of the batch;
    typically 2-6 evaluations) or after ``max_iters`` (the point is then inside the bracket).
    Elementwise on batched t0 / lo / hi / target; f_lo = total(lo), total(hi) = 0. Elements
    flagged ``skip`` (e.g. infeasible: f_lo < target) are not iterated.
    Returns (t, number of evaluations).
    """
    tol = _TOL * jnp.maximum(jnp.abs(target), 1.0)

    def cond(c):
        return (c[0] < max_iters) & ~jnp.all(c[-1])

    def body(c):
        it, a, b, fa, fb, t, done = c
        f, n = eval_fn(t)
        g = f - target                          # > 0: the root lies right of t
        a2, fa2 = jnp.where(g >= 0, t, a), jnp.where(g >= 0, f, fa)
        b2, fb2 = jnp.where(g <= 0, t, b), jnp.where(g <= 0, f, fb)
        cand = t + g / jnp.maximum(n, 1.0)
        hit = jnp.abs(g) <= tol
        newton = (n > 0) & (hit | ((cand > a2) & (cand < b2)))
        sec = a2 + (fa2 - target) * (b2 - a2) / jnp.maximum(fa2 - fb2, 1e-30)
        sec_ok = (sec > a2) & (sec < b2) & (it % 3 != 2)
        t_new = jnp.where(newton, cand, jnp.where(hit, t, jnp.where(sec_ok, sec, 0.5 * (a2 + b2))))
        stuck = t_new == t                      # step below float resolution of t
        keep = lambda new, old: jnp.where(done, old, new)  # noqa: E731
        return (it + 1, keep(a2, a), keep(b2, b), keep(fa2, fa), keep(fb2, fb),
                keep(t_new, t), done | hit | stuck)

    zero = jnp.zeros_like(f_lo)
    init = (jnp.zeros((), jnp.int32), lo, hi, f_lo, zero, jnp.clip(t0, lo, hi),
            jnp.asarray(skip, bool))
    out = jax.lax.while_loop(cond, body, init)
    return out[5], out[0]


def _ramp(d, caps):
    """clip(d, 0, caps) and the bool 'free' mask (slope -1 in t) of d = w - t."""
    return jnp.clip(d, 0.0, caps), (d > 0) & (d < caps)


def sector_membership(sector_ids: jax.Array, num_sectors: int) -> jax.Array:
    """float32 [N, S] one-hot sector membership (fixed per market: build it once)."""
    ids = jnp.asarray(sector_ids, jnp.int32)
    return (ids[:, None] == jnp.arange(num_sectors, dtype=jnp.int32)[None]).astype(_F32)


def project_capped_simplex(w: jax.Array, caps: jax.Array, budget: jax.Array) -> jax.Array:
    """Euclidean projection of w [A] onto {0 <= x <= caps, sum x = budget}.

    If sum(caps) < budget returns caps (cash absorbs the rest); budget <= 0 gives zeros.
    """
    w = jnp.asarray(w, _F32)
    caps = jnp.maximum(jnp.asarray(caps, _F32), 0.0)
    budget = jnp.asarray(budget, _F32)
    live = caps > 0
    n_live = jnp.maximum(jnp.sum(live).astype(_F32), 1.0)
    t0 = (jnp.sum(jnp.where(live, w, 0.0)) - budget) / n_live   # exact if nothing clips

    def terms(t):
        x, free = _ramp(w - t, caps)
        return jnp.sum(x), jnp.sum(free).astype(_F32)

    lo, top = jnp.min(w - caps), jnp.sum(caps)
    t, _ = _newton_threshold(terms, t0, lo, jnp.max(w), budget, top, top < budget, _MAX_ITERS)
    t = jnp.where(top >= budget, t, lo)
    return jnp.where(budget > 0, jnp.clip(w - t, 0.0, caps), 0.0).astype(_F32)


def _order_key(w: jax.Array) -> jax.Array:
    """uint32 [N] keys with the order of the float32 values w (-0.0 and +0.0 tie)."""
    w = jnp.where(w == 0, 0.0, jnp.asarray(w, _F32))
    bits = jax.lax.bitcast_convert_type(w, jnp.uint32)
    sign = jnp.uint32(0x80000000)
    return jnp.where(bits >= sign, ~bits, bits | sign)


def _top_k_of_keys(key: jax.Array, k: int) -> jax.Array:
    """Bool [N]: the k largest uint32 keys (ties by lower index); k static, 0 < k < N.

    Sort-free radix select (``lax.top_k`` + a scatter cost ~6x more on CPU under vmap): the
    k-th largest key is built bit by bit (32 counting passes), then ties at that key are taken
    in index order (prefix count as a matmul).
    """
    n = key.shape[0]

    def body(i, kth):
        cand = kth | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
        return jnp.where(jnp.sum(key >= cand) >= k, cand, kth)

    kth = jax.lax.fori_loop(0, 32, body, jnp.uint32(0))     # largest v: #{key >= v} >= k
    above, tie = key > kth, key == kth
    upper = jnp.triu(jnp.ones((n, n), _F32))                # prefix count of ties: tie @ upper
    first_ties = (tie.astype(_F32) @ upper) <= (k - jnp.sum(above))
    return above | (tie & first_ties)


def _top_k_mask(w: jax.Array, valid: jax.Array, k: int) -> jax.Array:
    """Bool [N]: the k largest valid entries of w (ties by lower index)."""
    if k <= 0 or k >= w.shape[0]:
        return valid
    return valid & _top_k_of_keys(_order_key(jnp.where(valid, w, -jnp.inf)), k)


def sticky_top_k_mask(w: jax.Array, valid: jax.Array, k: int, held: jax.Array,
                      margin: jax.Array) -> jax.Array:
    """Bool [N]: a support of at most k valid names that keeps the book's names.

    A held name (``held`` [N] bool: in the drifted book) with a positive target stays while
    w_i >= (1 - margin) * w_(k), the k-th largest valid target; the free places go to the
    largest other targets (ties by lower index). With a nearly uniform target the held set no
    longer follows the noise (the original's top-k rule swapped 7-9 of 30 names a day, DESIGN
    issue 13); margin 0 still prefers held names at a tie.
    """
    if k <= 0 or k >= w.shape[0]:
        return valid
    valid = jnp.asarray(valid, bool)
    key = _order_key(jnp.where(valid, w, -jnp.inf))
    kth = jnp.where(_top_k_of_keys(key, k), jnp.where(valid, w, jnp.inf), jnp.inf).min()
    floor = (1.0 - jnp.asarray(margin, _F32)) * kth
    keep = valid & jnp.asarray(held, bool) & (w > 0) & (w >= floor)
    return valid & _top_k_of_keys(jnp.where(keep, jnp.uint32(0xFFFFFFFF), key), k)


def project_weights(
    w: jax.Array,
    sector_ids: jax.Array | None,
    valid: jax.Array,
    num_sectors: int,
    params: ConstraintParams,
    exposure: jax.Array | float = 1.0,
    *,
    membership: jax.Array | None = None,
    held: jax.Array | None = None,
) -> jax.Array:
    """Project stock weights w [N] onto the long-only constraint set; returns [N] float32.

    Feasible set: invalid slots 0; 0 <= x_i <= max_stock_weight; per-sector sum <=
    max_sector_weight; sum = exposure * (1 - min_cash), or the largest feasible total when the
    caps cannot hold the budget (then, and only then, the rest is cash). At most max_positions
    nonzero: the support is restricted to the max_positions largest valid inputs before the
    (exact) projection on that support; with ``params.sticky_support`` and the drifted book's
    weights ``held`` [N], names in the book keep their place unless they fall clearly out
    (``sticky_top_k_mask``).
    ``membership`` [N, S] float32 (``sector_membership``; fixed per market) may replace
    ``sector_ids``; sector sums and gathers are then masked reductions and one-hot products
    (no scatters).
    """
    return _project_weights(w, sector_ids, valid, num_sectors, params, exposure, membership,
                            _MAX_ITERS, held)[0]


def _project_weights(w, sector_ids, valid, num_sectors, params, exposure, membership,
                     max_iters, held=None):
    """project_weights plus the Newton iteration counts (sector level, global level)."""
    w = jnp.asarray(w, _F32)
    if membership is None:
        membership = sector_membership(sector_ids, num_sectors)
    mem = jnp.asarray(membership, _F32)                     # [N, S]
    if params.sticky_support and held is not None:
        support = sticky_top_k_mask(w, jnp.asarray(valid, bool), params.max_positions,
                                    jnp.asarray(held) > 0, params.support_margin)
    else:
        support = _top_k_mask(w, jnp.asarray(valid, bool), params.max_positions)
    caps = jnp.where(support, params.max_stock_weight, 0.0).astype(_F32)
    budget = jnp.asarray(exposure, _F32) * (1.0 - params.min_cash)
    sector_cap = jnp.asarray(params.max_sector_weight, _F32)

    # Per-sector thresholds theta [S]: sector s alone at its cap. Sector sums and the
    # sector -> stock broadcast are one-hot products (exact: one nonzero term each).
    def sector_terms(th):
        x, free = _ramp(w - mem @ th, caps)
        return x @ mem, free.astype(_F32) @ mem

    room_s = caps @ mem                                     # sector total at theta = -inf
    n_s = jnp.maximum((caps > 0).astype(_F32) @ mem, 1.0)
    lo = jnp.min(w - caps) - 1.0
    hi = jnp.max(w) + 1.0
    th0 = (jnp.where(caps > 0, w, 0.0) @ mem - sector_cap) / n_s
    zeros_s = jnp.zeros((num_sectors,), _F32)
    theta, it_s = _newton_threshold(sector_terms, th0, zeros_s + lo, zeros_s + hi,
                                    zeros_s + sector_cap, room_s, room_s <= sector_cap,
                                    max_iters)
    theta = jnp.where(room_s > sector_cap, theta, lo)       # sector cannot exceed its cap
    theta_i = mem @ theta                                   # [N]

    # Global threshold tau; item i uses max(tau, theta_s(i)).
    def terms(tau):
        x, free = _ramp(w - jnp.maximum(tau, theta_i), caps)
        return jnp.sum(x), jnp.sum(free & (tau > theta_i)).astype(_F32)

    top = terms(lo)[0]                                      # largest feasible total
    n_live = jnp.maximum(jnp.sum(caps > 0).astype(_F32), 1.0)
    tau0 = (jnp.sum(jnp.where(caps > 0, w, 0.0)) - budget) / n_live
    tau, it_g = _newton_threshold(terms, tau0, lo, hi, budget, top, top < budget, max_iters)
    tau = jnp.where(top >= budget, tau, lo)
    x = jnp.clip(w - jnp.maximum(tau, theta_i), 0.0, caps)
    # Polish float error so sector sums never exceed the cap.
    sums = x @ mem
    x = x * (mem @ jnp.minimum(1.0, sector_cap / jnp.maximum(sums, 1e-30)))
    return jnp.where(budget > 0, x, 0.0).astype(_F32), it_s, it_g


def project_sector_weights(
    w: jax.Array, valid: jax.Array, params: ConstraintParams, exposure: jax.Array | float = 1.0
) -> jax.Array:
    """Project sector weights w [S]: each <= max_sector_weight, sum = exposure*(1-min_cash)."""
    caps = jnp.where(jnp.asarray(valid, bool), params.max_sector_weight, 0.0)
    budget = jnp.asarray(exposure, _F32) * (1.0 - params.min_cash)
    return project_capped_simplex(w, caps, budget)
