"""Sector node statistics [T, S, F_s] and the trailing correlation adjacency [T, S, S].

The adjacency lives here rather than in ``graph/`` because the feature set carries it and the
L2 siblings may not import each other; ``graph/sector_graph.py`` turns one row of it into a
jraph ``GraphsTuple``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from hrl_sarp_jax.features.rolling import (
    lag,
    safe_div,
    window_extreme,
    window_mean_var,
    window_stack,
    window_sum,
)
from hrl_sarp_jax.features.sorting import sort_axis0
from hrl_sarp_jax.types import Array

ANNUAL = 252.0
SQRT_ANNUAL = math.sqrt(ANNUAL)
RS_HORIZON, ROTATION_LAG, WEEK, MONTH = 65, 20, 5, 20


def sector_log_returns(sector_returns: Array, run: Array) -> tuple[Array, Array]:
    """log(1 + r) of the sector index; available where the sector was valid on t and t-1."""
    ok = run >= 2
    return jnp.where(ok, jnp.log1p(jnp.where(ok, sector_returns, 0.0)), 0.0), ok


def window_statistics(logret: Array, run: Array, window: int) -> tuple[Array, Array]:
    """The 8 node statistics of the original over the last ``window`` daily log returns.

    [T, S] -> [T, S, 8]: mean·252, std·√252 (ddof 1), window log return, mean/std·√252,
    min·√252, max·√252, fraction > 0, median·252. Available with ``window`` returns.
    """
    mean, var = window_mean_var(logret, window, ddof=1)
    std = jnp.sqrt(var)
    ordered = sort_axis0(window_stack(logret, window))  # [w_pow2, T, S]
    median = 0.5 * (ordered[(window - 1) // 2] + ordered[window // 2])
    stats = jnp.stack(
        [
            mean * ANNUAL,
            std * SQRT_ANNUAL,
            window_sum(logret, window),
            safe_div(mean, std) * SQRT_ANNUAL,
            window_extreme(logret, window, largest=False) * SQRT_ANNUAL,
            window_extreme(logret, window, largest=True) * SQRT_ANNUAL,
            window_sum((logret > 0).astype(logret.dtype), window) / window,
            median * ANNUAL,
        ],
        axis=-1,
    )
    ok = run >= window + 1
    return jnp.where(ok[..., None], stats, 0.0), ok


def pct_change(level: Array, run: Array, k: int) -> tuple[Array, Array]:
    """``level_t / level_{t-k} - 1`` over k+1 consecutive valid days."""
    prev = lag(level, k)
    ok = (run >= k + 1) & (prev > 0)
    return jnp.where(ok, safe_div(level, prev) - 1.0, 0.0), ok


def rotation_features(
    sector_close: Array, sector_run: Array, bench_close: Array, bench_run: Array
) -> tuple[Array, Array]:
    """[T, S, 4]: relative_strength_13w, rotation_score, return_1w, return_4w (+ availability).

    relative_strength_13w = sector 65-day pct change − benchmark 65-day pct change;
    rotation_score = RS_t − RS_{t-20}.
    """
    sec_rs, sec_ok = pct_change(sector_close, sector_run, RS_HORIZON)
    bench_rs, bench_ok = pct_change(bench_close, bench_run, RS_HORIZON)
    rs_ok = sec_ok & bench_ok[:, None]
    rs = jnp.where(rs_ok, sec_rs - bench_rs[:, None], 0.0)
    rot_ok = rs_ok & lag(rs_ok, ROTATION_LAG, False)
    rot = jnp.where(rot_ok, rs - lag(rs, ROTATION_LAG), 0.0)
    r1w, ok1w = pct_change(sector_close, sector_run, WEEK)
    r4w, ok4w = pct_change(sector_close, sector_run, MONTH)
    return jnp.stack([rs, rot, r1w, r4w], -1), jnp.stack([rs_ok, rot_ok, ok1w, ok4w], -1)


def sector_vol(logret: Array, run: Array, window: int = MONTH) -> tuple[Array, Array]:
    """Sample std of the last 20 daily sector log returns × √252."""
    _, var = window_mean_var(logret, window, ddof=1)
    ok = run >= window + 1
    return jnp.where(ok, jnp.sqrt(var) * SQRT_ANNUAL, 0.0), ok


def sector_breadth(
    stock_ret20: Array, stock_ok: Array, sector: Array, num_sectors: int
) -> tuple[Array, Array]:
    """Fraction of a sector's stocks with a positive 20-day log return (among available ones).

    stock_ret20, stock_ok [T, N]; sector int32 [N] -> [T, S].
    """
    member = (sector[:, None] == jnp.arange(num_sectors, dtype=sector.dtype)[None, :]).astype(
        jnp.float32
    )  # [N, S]
    up = (stock_ok & (stock_ret20 > 0)).astype(jnp.float32) @ member
    count = stock_ok.astype(jnp.float32) @ member
    ok = count > 0
    return jnp.where(ok, safe_div(up, count), 0.0), ok


def correlation_adjacency(
    logret: Array, run: Array, sector_valid: Array, window: int, threshold: float
) -> Array:
    """[T, S, S] weighted adjacency from trailing ``window``-day Pearson |corr| of log returns.

    Off-diagonal weight |ρ_ij| where both sectors have ``window`` returns, neither is constant
    and |ρ_ij| >= threshold, else 0. Diagonal 1 for real sectors. Before a sector has enough
    history it has only its self loop, so early rows are the identity. Padding sectors
    (``sector_valid`` False) are isolated: all-zero rows and columns, diagonal included.
    """
    num_s = logret.shape[1]
    pairs = (logret[:, :, None] * logret[:, None, :]).reshape(-1, num_s * num_s)
    sums = window_sum(jnp.concatenate([logret, pairs], axis=1), window)
    s1, s2 = sums[:, :num_s], sums[:, num_s:].reshape(-1, num_s, num_s)
    cov = s2 - s1[:, :, None] * s1[:, None, :] / window  # window · covariance
    var = jnp.diagonal(cov, axis1=1, axis2=2)  # [T, S]
    varying = var > 1e-6 * jnp.diagonal(s2, axis1=1, axis2=2)  # not constant to float32 precision
    sd = jnp.sqrt(jnp.maximum(var, 0.0))
    ok = (run >= window + 1) & varying & sector_valid[None, :]
    denom = sd[:, :, None] * sd[:, None, :]
    corr = jnp.abs(safe_div(cov, denom))
    pair = ok[:, :, None] & ok[:, None, :]
    keep = pair & (corr >= threshold)
    eye = jnp.eye(logret.shape[1], dtype=bool)[None]
    adj = jnp.where(keep & ~eye, jnp.minimum(corr, 1.0), 0.0)
    self_loop = eye & sector_valid[None, :, None]
    return jnp.where(self_loop, 1.0, adj).astype(jnp.float32)
