"""Seeded hand-built MarketArrays + FeatureSet for env tests (no loader, no feature builder).

A weekday calendar with a few holidays removed (so some weeks have 3-4 days), N stocks over S
sectors (one padding stock, invalid), random circuit locks, a value split in pe_z, and an
event flag on some days. Everything is float32/int32/bool like the real contracts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hrl_sarp_jax.data.calendar import week_end_flags
from hrl_sarp_jax.data.market import MarketArrays
from hrl_sarp_jax.features.featureset import FeatureSet


def make_dates(num_days: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2020-01-06", periods=int(num_days * 1.1) + 10).values
    keep = rng.random(days.size) > 0.07  # ~7% holidays
    return days[keep][:num_days].astype("datetime64[D]")


def make_inputs(num_days: int = 160, num_stocks: int = 8, num_sectors: int = 3,
                sector_features: int = 4, seed: int = 0) -> tuple[MarketArrays, FeatureSet]:
    rng = np.random.default_rng(seed)
    t, n, s = num_days, num_stocks, num_sectors
    f32 = np.float32
    dates = make_dates(t, seed)
    sector = (np.arange(n) % s).astype(np.int32)
    stock_valid = np.ones(n, bool)
    stock_valid[-1] = False                           # one padding slot
    mask = np.broadcast_to(stock_valid, (t, n)).copy()
    mask[: t // 4, 0] = False                         # stock 0 lists late
    rets = (0.0003 + 0.015 * rng.standard_normal((t, n))).astype(f32)
    rets[0] = 0.0
    rets = np.where(mask & np.vstack([mask[:1], mask[:-1]]), rets, 0.0).astype(f32)
    close = (100.0 * np.cumprod(1.0 + rets, axis=0)).astype(f32)
    volume = rng.uniform(1e4, 1e5, (t, n)).astype(f32) * mask
    lock = np.zeros((t, n), np.int8)
    u = rng.random((t, n))
    lock[u < 0.04] = 1
    lock[u > 0.96] = -1
    onehot = (sector[:, None] == np.arange(s)[None]).astype(f32)
    cnt = (mask.astype(f32) @ onehot)
    sec_ret = np.where(cnt > 0, (rets * mask) @ onehot / np.maximum(cnt, 1), 0.0).astype(f32)
    bench = rets[:, stock_valid].mean(1).astype(f32)
    zeros_tn = np.zeros((t, n), f32)
    market = MarketArrays(
        open=close, high=close * 1.01, low=close * 0.99, close=close, volume=volume, returns=rets,
        market_cap=zeros_tn, delivery_pct=zeros_tn, circuit_lock=lock, stock_mask=mask,
        stock_sector=sector, stock_valid=stock_valid, has_ohlc=stock_valid.copy(),
        market_cap_mask=np.zeros((t, n), bool), delivery_mask=np.zeros((t, n), bool),
        sector_returns=sec_ret, sector_close=np.cumprod(1 + sec_ret, 0).astype(f32),
        sector_mask=cnt > 0, sector_valid=np.ones(s, bool),
        benchmark_close=np.cumprod(1 + bench).astype(f32), benchmark_returns=bench,
        macro=np.zeros((t, 2), f32), macro_mask=np.ones((t, 2), bool),
        fundamentals=np.zeros((t, n, 1), f32), fundamentals_mask=np.zeros((t, n, 1), bool),
        sentiment=zeros_tn, sentiment_mask=np.zeros((t, n), bool),
        week_end=week_end_flags(dates), latent_regime=np.full(t, -1, np.int32),
    )
    stock = rng.standard_normal((t, n, 22)).astype(f32)
    stock[..., 9] = rng.choice([-1.0, 0.0, 1.0], (t, n))  # pe_z: about a third are value stocks
    stock *= mask[..., None]
    macro = rng.standard_normal((t, 18)).astype(f32)
    macro[:, 14] = (rng.random(t) < 0.1).astype(f32)      # event_flag
    macro[:, 17] = 0.0
    adj = np.abs(rng.standard_normal((t, s, s))).astype(f32)
    adj = np.minimum((adj + adj.transpose(0, 2, 1)) / 2, 1.0)
    adj[:, np.arange(s), np.arange(s)] = 1.0
    regime = rng.integers(-1, 3, t).astype(np.int32)
    feats = FeatureSet(
        stock=stock, stock_mask=np.broadcast_to(mask[..., None], (t, n, 22)).copy(),
        macro=macro, macro_mask=np.ones((t, 18), bool),
        sector=rng.standard_normal((t, s, sector_features)).astype(f32),
        sector_mask=cnt > 0, adjacency=adj, regime_label=regime, regime_rule=regime.copy(),
    )
    return market, feats
