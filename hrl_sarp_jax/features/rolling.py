"""Causal rolling-window primitives along the time axis (axis 0), pure jnp.

Every output at t reads inputs at indices <= t only, and each output element is computed from
its own window alone (no prefix sums over the whole history), so perturbing data after t leaves
row t bitwise unchanged and there is no float32 drift over long series.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from hrl_sarp_jax.types import Array


def lag(x: Array, k: int, fill: float | int | bool = 0) -> Array:
    """``x[t-k]`` along axis 0 (``fill`` where t < k); k >= 0 static."""
    if k == 0:
        return x
    num = x.shape[0]
    pad = jnp.full((min(k, num), *x.shape[1:]), fill, x.dtype)
    return jnp.concatenate([pad, x[: max(num - k, 0)]], axis=0)


def lead(x: Array, k: int, fill: float | int | bool = 0) -> Array:
    """``x[t+k]`` along axis 0 (``fill`` where t+k >= T); only for published schedules, labels."""
    if k == 0:
        return x
    num = x.shape[0]
    pad = jnp.full((min(k, num), *x.shape[1:]), fill, x.dtype)
    return jnp.concatenate([x[min(k, num) :], pad], axis=0)


def _time_index(x: Array) -> Array:
    return jnp.arange(x.shape[0], dtype=jnp.int32).reshape((-1,) + (1,) * (x.ndim - 1))


def run_length(valid: Array) -> Array:
    """int32 [T, ...]: count of consecutive True values ending at t (0 where ``valid`` is False)."""
    t = _time_index(valid)
    last_bad = lax.cummax(jnp.where(valid, jnp.int32(-1), t), axis=0)
    return jnp.where(valid, t - last_bad, 0).astype(jnp.int32)


def window_stack(x: Array, w: int) -> Array:
    """``[w, T, ...]`` with ``out[j, t] = x[t-j]`` (0 where t-j < 0); for small windows.

    Built with a constant number of ops whatever w (a tile-and-reshape skew): ``xp`` = w-1
    zeros, x, one zero (length L = T+w); w copies of xp read as rows of length L-1 start one
    element earlier each row, so row j, column i holds ``xp[i-j]``.
    """
    num, rest = x.shape[0], x.shape[1:]
    xp = jnp.concatenate([jnp.zeros((w - 1, *rest), x.dtype), x, jnp.zeros((1, *rest), x.dtype)])
    length = num + w
    tiled = jnp.broadcast_to(xp[None], (w, length, *rest)).reshape((w * length, *rest))
    rows = tiled[: w * (length - 1)].reshape((w, length - 1, *rest))
    return rows[:, w - 1 : w - 1 + num]


def _reduce_sum(x: Array, size: int, dilation: int = 1) -> Array:
    """``sum_{i < size} x[t - i·dilation]`` along axis 0 (zeros before 0): one XLA reduce_window."""
    span = (size - 1) * dilation
    ones = (1,) * (x.ndim - 1)
    return lax.reduce_window(
        x,
        jnp.zeros((), x.dtype),
        lax.add,
        window_dimensions=(size, *ones),
        window_strides=(1, *ones),
        padding=((span, 0), *((0, 0),) * (x.ndim - 1)),
        window_dilation=(dilation, *ones),
    )


def window_extreme(x: Array, w: int, largest: bool) -> Array:
    """Max (or min) of ``x[t-w+1 .. t]`` along axis 0 (missing days before 0 ignored)."""
    ones = (1,) * (x.ndim - 1)
    init = -jnp.inf if largest else jnp.inf
    return lax.reduce_window(
        x,
        jnp.asarray(init, x.dtype),
        lax.max if largest else lax.min,
        window_dimensions=(w, *ones),
        window_strides=(1, *ones),
        padding=((w - 1, 0), *((0, 0),) * (x.ndim - 1)),
    )


def _chain(w: int) -> list[int]:
    """Factors of w grouped into stages of size <= 16 (empty if a prime factor exceeds 16)."""
    primes, rest, p = [], w, 2
    while p * p <= rest:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    if rest > 1:
        primes.append(rest)
    if max(primes, default=1) > 16:
        return []
    stages: list[int] = []
    for f in sorted(primes, reverse=True):  # first-fit decreasing into stages of product <= 16
        for i, s in enumerate(stages):
            if s * f <= 16:
                stages[i] = s * f
                break
        else:
            stages.append(f)
    return stages


def window_sum(x: Array, w: int, axis: int = 0) -> Array:
    """``sum(x[t-w+1 .. t])`` along time ``axis`` (zeros before 0).

    w is factored into stages f1·f2·…: a sum of f1, then a sum of f2 of those dilated by f1, …
    (252 → 14·9·2: 25 adds per element instead of 252); a large prime factor splits off a
    small remainder window. Each output adds only values inside its own window (no running
    cumulative sum), so float32 error does not grow with T and perturbing data after t leaves
    the sum at t bitwise unchanged.
    """
    if axis != 0:
        return jnp.moveaxis(window_sum(jnp.moveaxis(x, axis, 0), w), 0, axis)
    if w <= 16:
        return _reduce_sum(x, w)
    stages = _chain(w)
    if not stages:
        head = w - w % 12
        return window_sum(x, head) + lag(_reduce_sum(x, w - head), head)
    total, dilation = x, 1
    for f in stages:
        total = _reduce_sum(total, f, dilation)
        dilation *= f
    return total


def window_mean_var(x: Array, w: int, ddof: int = 1) -> tuple[Array, Array]:
    """Mean and variance of ``x[t-w+1 .. t]`` (zeros before 0) from window sums of x and x².

    For series whose window mean is not large against their spread (returns, log returns);
    level series with a small relative spread (prices) need ``window_stack`` and two passes.
    """
    sums = window_sum(jnp.stack([x, x * x]), w, axis=1)
    mean = sums[0] / w
    ss = jnp.maximum(sums[1] - sums[0] * mean, 0.0)
    return mean, ss / (w - ddof)


def rolling_moments(x: Array, valid: Array, w: int, ddof: int = 1) -> tuple[Array, Array, Array]:
    """Trailing-window (incl. t) count, mean and variance over entries where ``valid``.

    Returns ``(count int32, mean, var)``; var uses ``ddof`` and is 0 where count <= ddof or the
    window is constant to float32 precision (var below 1e-6 of the mean square).
    """
    xv = jnp.where(valid, x, 0.0)
    sums = window_sum(jnp.stack([valid.astype(x.dtype), xv, xv * xv]), w, axis=1)
    s1, s2 = sums[1], sums[2]
    n = jnp.round(sums[0]).astype(jnp.int32)  # exact: integer counts <= w are exact in float32
    nf = jnp.maximum(n, 1).astype(x.dtype)
    mean = s1 / nf
    ss = jnp.maximum(s2 - s1 * mean, 0.0)
    constant = ss <= 1e-6 * s2
    var = jnp.where((n > ddof) & ~constant, ss / jnp.maximum(n - ddof, 1).astype(x.dtype), 0.0)
    return n, mean, var


def rolling_offset_moments(
    x: Array, valid: Array, w: int, ddof: int = 1
) -> tuple[Array, Array, Array]:
    """Window count, mean of ``x[t-j] - x[t]`` and variance: two passes over a [w, T, ...] window.

    Centring each window on its own last value keeps float32 precise for level series whose
    spread is small against their mean (rates, spreads, VIX), where sums of squares cancel.
    Costs w× the memory, so for few columns only. Returns ``(count int32, mean offset, var)``.
    """
    win = window_stack(jnp.where(valid, x, 0.0), w) - jnp.where(valid, x, 0.0)[None]
    inside = window_stack(valid, w)
    win = jnp.where(inside, win, 0.0)
    n = inside.sum(axis=0, dtype=jnp.int32)
    nf = jnp.maximum(n, 1).astype(x.dtype)
    offset = win.sum(axis=0) / nf
    ss = jnp.where(inside, (win - offset) ** 2, 0.0).sum(axis=0)
    constant = ss <= 1e-10 * jnp.maximum((win * win).sum(axis=0), 1e-30)
    var = jnp.where((n > ddof) & ~constant, ss / jnp.maximum(n - ddof, 1).astype(x.dtype), 0.0)
    return n, offset, var


def rolling_zscore(
    x: Array, valid: Array, w: int, min_periods: int | Array, clip: float, exact: bool = False
) -> tuple[Array, Array]:
    """Trailing z-score ``(x_t - mean)/std`` (window w incl. t, sample std), clipped to ±clip.

    Available where ``valid[t]`` and at least ``min_periods`` valid values are in the window;
    0 where the window is constant. ``exact`` uses ``rolling_offset_moments`` (level series).
    Returns ``(value, mask)``, value 0 where the mask is False.
    """
    if exact:
        n, offset, var = rolling_offset_moments(x, valid, w)
        deviation = -offset  # x_t - mean
    else:
        n, mean, var = rolling_moments(x, valid, w)
        deviation = x - mean
    std = jnp.sqrt(var)
    z = jnp.where(std > 0, deviation / jnp.where(std > 0, std, 1.0), 0.0)
    ok = valid & (n >= min_periods)
    return jnp.where(ok, jnp.clip(z, -clip, clip), 0.0), ok


def safe_div(num: Array, den: Array) -> Array:
    """``num / den`` with 0 where ``den == 0`` (no NaN/inf ever produced)."""
    nz = den != 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), 0.0)
