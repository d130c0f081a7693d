"""Resampled histories of one market: the stationary block bootstrap of its days.

# HOST ONLY (NumPy; not jittable)
A real market has one history; ``train.pool`` (issue 13, "train on many markets") needs more
of it. ``bootstrap_market`` draws a new history of the same length and calendar whose day k
is the source's day ``days[k]``, the days drawn by the stationary bootstrap (Politis &
Romano 1994, "The stationary bootstrap", JASA 89: blocks of geometric length with mean
``mean_block``, wrapping circularly) from a window ``[lo, hi)`` of the source, e.g. its
training days only. Everything observed on a day moves with it: stock, sector and benchmark
returns, volume, delivery, circuit locks, caps relative to price, macro levels, fundamentals,
sentiment, the latent regime, and every mask. Price levels (close, OHLC, sector and benchmark
levels) are rebuilt by compounding the drawn returns, so ``close[k] / close[k-1] - 1 ==
returns[k]`` holds as the loader defines it (0 where either day is not listed). The calendar
(dates, week ends) stays the source's, so the same date splits apply.

Macro series are drawn as levels (a jump at a block boundary, as a regime change would show),
not as differences: differences would let bounded series (volatility indices, spreads) drift
out of their range.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.data.market import MarketArrays, MarketMeta


def stationary_bootstrap_indices(n: int, num: int, mean_block: float,
                                 rng: np.random.Generator, length: int | None = None
                                 ) -> np.ndarray:
    """int [num, length] resampling indices in [0, n) of the stationary bootstrap (circular
    blocks; ``length`` defaults to n).

    Each position starts a new block with probability 1 / mean_block (at a uniform random
    index), else continues the previous block at the next index (mod n).
    """
    if mean_block < 1:
        raise ValueError(f"mean_block must be >= 1, got {mean_block}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    m = n if length is None else int(length)
    starts = rng.integers(0, n, size=(num, m))
    new = rng.random((num, m)) < 1.0 / mean_block
    new[:, 0] = True
    # index = start of the current block + offset within it
    pos = np.arange(m)[None, :]
    last_start_pos = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
    block_start = np.take_along_axis(starts, last_start_pos, axis=1)
    return (block_start + (pos - last_start_pos)) % n


def bootstrap_days(lo: int, hi: int, length: int, mean_block: float, seed: int) -> np.ndarray:
    """int [length] source days in [lo, hi): one stationary-bootstrap draw with ``seed``."""
    if not 0 <= lo < hi:
        raise ValueError(f"bootstrap window [{lo}, {hi}) is empty")
    rng = np.random.default_rng(int(seed))
    return lo + stationary_bootstrap_indices(hi - lo, 1, mean_block, rng, length)[0]


_NOT_PER_DAY = frozenset({"stock_sector", "stock_valid", "has_ohlc", "sector_valid", "week_end"})
"""MarketArrays fields that are not indexed by day (the calendar's week ends stay in place)."""


def _levels(returns: np.ndarray, base: np.ndarray) -> np.ndarray:
    """[T, ...] base * cumprod(1 + returns) in float64 (returns[0] is ignored: level base)."""
    growth = np.cumprod(1.0 + np.concatenate([np.zeros_like(returns[:1]), returns[1:]]), axis=0)
    return base * growth


def resample_days(market: MarketArrays, days: np.ndarray) -> MarketArrays:
    """The market whose day k is ``market``'s day ``days[k]`` (int [T'], any T'; the calendar
    fields ``week_end`` are kept from the first T' days, so T' <= T), levels rebuilt.

    [T', N] stock fields, [T', S] sector fields, [T'] benchmark, [T', M] macro, [T', N, K]
    fundamentals; per-stock and per-sector fields [N], [S] unchanged.
    """
    days = np.asarray(days, np.int64)
    t_new = days.size
    if t_new > market.num_days or t_new < 1:
        raise ValueError(f"resample_days: {t_new} days drawn for a market of {market.num_days}")
    src = {f.name: np.asarray(getattr(market, f.name)) for f in dataclasses.fields(market)}
    take = {k: v[days] for k, v in src.items() if k not in _NOT_PER_DAY}
    mask = take["stock_mask"]
    prev_ok = np.vstack([np.zeros((1, mask.shape[1]), bool), mask[:-1]])
    both = mask & prev_ok
    ret = np.where(both, take["returns"].astype(np.float64), 0.0)
    # a stock's price level: its first listed close in the drawn window, compounded
    src_close = take["close"].astype(np.float64)
    first = np.argmax(mask, axis=0)
    base = np.where(mask.any(0), src_close[first, np.arange(mask.shape[1])], 0.0)
    close = np.where(mask, _levels(ret, base), 0.0)
    scale = np.where(mask & (src_close > 0), close / np.where(src_close > 0, src_close, 1.0), 0.0)

    def f32(x: np.ndarray) -> jnp.ndarray:
        return jnp.asarray(x.astype(np.float32))

    bars = {k: f32(take[k].astype(np.float64) * scale) for k in ("open", "high", "low")}
    cap = np.where(take["market_cap_mask"], take["market_cap"].astype(np.float64) * scale, 0.0)
    sector_ret = take["sector_returns"].astype(np.float64)
    sector_ret[0] = 0.0
    bench_ret = take["benchmark_returns"].astype(np.float64)
    bench_ret[0] = 0.0
    bench_base = float(src["benchmark_close"][days[0]]) or 1.0
    out = {k: jnp.asarray(v) for k, v in take.items()}
    out.update(
        bars, close=f32(close), returns=f32(ret), market_cap=f32(cap),
        circuit_lock=jnp.asarray(np.where(both, take["circuit_lock"], 0).astype(np.int8)),
        sector_returns=f32(sector_ret), sector_close=f32(_levels(sector_ret, np.float64(1.0))),
        benchmark_returns=f32(bench_ret),
        benchmark_close=f32(_levels(bench_ret, np.float64(bench_base))),
        week_end=jnp.asarray(src["week_end"][:t_new]),
    )
    return market.replace(**out)


# HOST ONLY
def bootstrap_market(market: MarketArrays, meta: MarketMeta, window: tuple[int, int],
                     mean_block: float, seed: int) -> tuple[MarketArrays, MarketMeta, np.ndarray]:
    """(arrays, meta, days [T]) of one resampled history of ``market``, as long as it and on
    its calendar, every day drawn from the source days ``window = (lo, hi)`` (e.g. the
    training days ``[1, val_start)``); nothing outside the window is read."""
    days = bootstrap_days(window[0], window[1], market.num_days, mean_block, seed)
    what = meta.source or meta.market
    new_meta = dataclasses.replace(
        meta, synthetic=False, repairs=(),
        source=(f"stationary block bootstrap of {what} days {window[0]}..{window[1] - 1} "
                f"(mean block {mean_block:g} days, seed {seed})"))
    return resample_days(market, days), new_meta, days
