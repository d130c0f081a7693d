"""Price and volume indicators per stock, [T, N] in, ``(value, available)`` pairs out.

All functions take ``close`` [T, N] and ``valid`` [T, N] (listed, price present). History is
counted in *consecutive* valid days: a gap (masked day) restarts every indicator, so a value
never spans missing data. Definitions are tabulated in ``features/build.py``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from hrl_sarp_jax.features.rolling import lag, safe_div, window_mean_var, window_stack, window_sum
from hrl_sarp_jax.types import Array

ANNUALISE = math.sqrt(252.0)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
MACD_WARMUP = MACD_SLOW + MACD_SIGNAL - 1  # closes before the histogram is reported (34)
BB_WINDOW, BB_WIDTH = 20, 2.0
VOLUME_WINDOW, VOLUME_CAP = 20, 5.0
VOL_WINDOW = 20


def log_close(close: Array, valid: Array) -> Array:
    """log(close) where valid, 0 elsewhere. [T, N]"""
    return jnp.where(valid, jnp.log(jnp.where(valid & (close > 0), close, 1.0)), 0.0)


def log_return(logc: Array, run: Array, k: int) -> tuple[Array, Array]:
    """k-day log return ``log(c_t / c_{t-k})``; needs k+1 consecutive valid closes."""
    ok = run >= k + 1
    return jnp.where(ok, logc - lag(logc, k), 0.0), ok


def realised_vol(logc: Array, run: Array, window: int = VOL_WINDOW) -> tuple[Array, Array]:
    """Sample std (ddof 1) of the last ``window`` daily log returns × √252."""
    r1 = jnp.where(run >= 2, logc - lag(logc, 1), 0.0)
    _, var = window_mean_var(r1, window, ddof=1)
    ok = run >= window + 1
    return jnp.where(ok, jnp.sqrt(var) * ANNUALISE, 0.0), ok


def bollinger_pctb(close: Array, run: Array) -> tuple[Array, Array]:
    """%B = (c - (m - 2σ)) / 4σ over 20 closes incl. t (population σ), clipped [-0.5, 1.5].

    0.5 where the 20 closes are all equal (σ = 0).
    """
    win = window_stack(close, BB_WINDOW)  # [20, T, N]: exact two-pass (prices are levels)
    mean = win.mean(axis=0)
    sigma = jnp.sqrt(jnp.mean((win - mean) ** 2, axis=0))
    pctb = jnp.where(sigma > 0, 0.5 + safe_div(close - mean, 2.0 * BB_WIDTH * sigma), 0.5)
    ok = run >= BB_WINDOW
    return jnp.where(ok, jnp.clip(pctb, -0.5, 1.5), 0.0), ok


def volume_ratio(volume: Array, valid: Array, run: Array) -> tuple[Array, Array]:
    """volume_t / mean(volume_{t-20..t-1}), capped to [0, 5].

    The trailing mean *excludes* day t so a volume spike is not diluted by itself (causal
    either way). Needs 21 consecutive valid days and a positive trailing mean.
    """
    vol = jnp.where(valid, jnp.maximum(volume, 0.0), 0.0)
    prev = lag(window_sum(vol, VOLUME_WINDOW), 1) / VOLUME_WINDOW
    ok = (run >= VOLUME_WINDOW + 1) & (prev > 0)
    return jnp.where(ok, jnp.clip(safe_div(vol, prev), 0.0, VOLUME_CAP), 0.0), ok


def rsi_macd(close: Array, valid: Array) -> tuple[Array, Array, Array, Array]:
    """Wilder RSI-14 scaled to [-1, 1] and the MACD(12, 26, 9) histogram / close, one scan over T.

    RSI: the first average gain/loss is the simple mean of the first 14 changes, then Wilder's
    recursion ``avg = (13·avg + x)/14`` (EWM α = 1/14). ``(RSI - 50)/50 = (G - L)/(G + L)``;
    0 (RSI 50) when there was no change at all. Reported from the 14th change on.
    MACD: EMAs with ``adjust=False`` seeded by the first close (pandas ``ewm(span, adjust=False)``);
    reported from the 34th consecutive close on. Returns ``(rsi, rsi_ok, macd, macd_ok)``.
    """
    a_fast, a_slow, a_sig = (2.0 / (p + 1.0) for p in (MACD_FAST, MACD_SLOW, MACD_SIGNAL))
    n = RSI_PERIOD
    zeros = jnp.zeros(close.shape[1:], close.dtype)

    def step(carry, inp):
        run, prev, gsum, lsum, gavg, lavg, e_fast, e_slow, sig = carry
        c, ok = inp
        run = jnp.where(ok, run + 1, 0)
        first = run == 1
        change = jnp.where(run >= 2, c - prev, 0.0)
        gain, loss = jnp.maximum(change, 0.0), jnp.maximum(-change, 0.0)
        nchg = run - 1
        seeding = nchg <= n
        gsum = jnp.where(first, 0.0, jnp.where(seeding, gsum + gain, gsum))
        lsum = jnp.where(first, 0.0, jnp.where(seeding, lsum + loss, lsum))
        gavg = jnp.where(nchg == n, gsum / n, jnp.where(nchg > n, (gavg * (n - 1) + gain) / n, 0.0))
        lavg = jnp.where(nchg == n, lsum / n, jnp.where(nchg > n, (lavg * (n - 1) + loss) / n, 0.0))
        rsi = safe_div(gavg - lavg, gavg + lavg)
        e_fast = jnp.where(first, c, e_fast + a_fast * (c - e_fast))
        e_slow = jnp.where(first, c, e_slow + a_slow * (c - e_slow))
        macd = e_fast - e_slow
        sig = jnp.where(first, macd, sig + a_sig * (macd - sig))
        hist = safe_div(macd - sig, c)
        carry = (run, jnp.where(ok, c, prev), gsum, lsum, gavg, lavg, e_fast, e_slow, sig)
        return carry, (rsi, nchg >= n, hist, run >= MACD_WARMUP)

    init = (
        jnp.zeros(close.shape[1:], jnp.int32),
        zeros,
        zeros,
        zeros,
        zeros,
        zeros,
        zeros,
        zeros,
        zeros,
    )
    _, (rsi, rsi_ok, hist, hist_ok) = lax.scan(step, init, (jnp.where(valid, close, 0.0), valid))
    rsi_ok = rsi_ok & valid
    hist_ok = hist_ok & valid
    return jnp.where(rsi_ok, rsi, 0.0), rsi_ok, jnp.where(hist_ok, hist, 0.0), hist_ok
