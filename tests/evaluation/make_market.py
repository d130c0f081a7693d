"""A tiny hand-built market for evaluation tests: T=260 weekdays from 2020-01-01 (covers the
covid window), N=9 stocks (+1 padding slot) in S=3 sectors named IT / FMCG / Metals, a latent
Markov regime that shifts sector drifts (weakly, next to the noise), random circuit locks, a
late-listing stock and a 4-day gap. Features are zeros except the ones the backtest reads
(event flag) and the rule regime. No loader, no feature builder: nothing to compile.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hrl_sarp_jax.config import ConstraintConfig, CostConfig, EnvConfig
from hrl_sarp_jax.data.calendar import week_end_flags
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.features.featureset import FeatureSet

T, N, S = 260, 10, 3
SECTORS = ("IT", "FMCG", "Metals")
DRIFT = np.array([[0.05, -0.10, 0.40], [0.10, 0.30, -0.50], [0.20, 0.05, -0.10]], np.float32)
LATE, LATE_DAY = 2, 60
GAP, GAP_DAYS = 7, (150, 151, 152, 153)
PAD = 9

# Small-universe constraints: 10 stocks cannot hold 98% under a 10% cap, so widen it; keep a
# binding max_positions to exercise the liquidity rules.
ENV_CFG = EnvConfig(
    cost=CostConfig(impact_coef=0.1, brokerage_pct=0.0003, brokerage_cap=20.0),
    constraints=ConstraintConfig(max_stock_weight=0.25, max_sector_weight=0.5, min_cash=0.02,
                                 max_positions=6),
)


def make_market(seed: int = 0) -> tuple[MarketArrays, MarketMeta, FeatureSet]:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    dates = pd.bdate_range("2020-01-01", periods=T).values.astype("datetime64[D]")
    sector = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0], np.int32)
    valid = np.ones(N, bool)
    valid[PAD] = False
    mask = np.broadcast_to(valid, (T, N)).copy()
    mask[:LATE_DAY, LATE] = False
    mask[list(GAP_DAYS), GAP] = False
    regime = np.zeros(T, np.int32)
    for t in range(1, T):
        regime[t] = rng.integers(0, 3) if rng.random() < 0.04 else regime[t - 1]
    mkt = rng.normal(0.0003, 0.01, T)
    sec = rng.normal(0.0, 0.006, (T, S)) + DRIFT[regime] / 252.0
    rets = (mkt[:, None] + sec[:, sector] + rng.normal(0, 0.012, (T, N))).astype(f32)
    rets[0] = 0.0
    prev = np.vstack([mask[:1], mask[:-1]])
    rets = np.where(mask & prev, rets, 0.0).astype(f32)
    close = (100.0 * np.cumprod(1.0 + rets, axis=0)).astype(f32) * mask
    volume = (rng.uniform(1e4, 1e5, (T, N)) * (1 + np.arange(N))[None]).astype(f32) * mask
    lock = np.zeros((T, N), np.int8)
    u = rng.random((T, N))
    lock[u < 0.03] = 1
    lock[u > 0.97] = -1
    onehot = (sector[:, None] == np.arange(S)[None]).astype(f32) * valid[:, None]
    both = (mask & prev).astype(f32)
    cnt = both @ onehot
    sec_ret = np.where(cnt > 0, (rets * both) @ onehot / np.maximum(cnt, 1), 0.0).astype(f32)
    bench = (rets * both)[:, valid].sum(1) / np.maximum(both[:, valid].sum(1), 1)
    bench = bench.astype(f32)
    z = np.zeros((T, N), f32)
    market = MarketArrays(
        open=close, high=close, low=close, close=close, volume=volume, returns=rets,
        market_cap=z, delivery_pct=z, circuit_lock=lock, stock_mask=mask,
        stock_sector=sector, stock_valid=valid, has_ohlc=valid.copy(),
        market_cap_mask=np.zeros((T, N), bool), delivery_mask=np.zeros((T, N), bool),
        sector_returns=sec_ret, sector_close=np.cumprod(1 + sec_ret, 0).astype(f32),
        sector_mask=cnt > 0,
        sector_valid=np.ones(S, bool),
        benchmark_close=np.cumprod(1 + bench).astype(f32), benchmark_returns=bench,
        macro=np.zeros((T, 1), f32), macro_mask=np.ones((T, 1), bool),
        fundamentals=np.zeros((T, N, 1), f32), fundamentals_mask=np.zeros((T, N, 1), bool),
        sentiment=z, sentiment_mask=np.zeros((T, N), bool),
        week_end=week_end_flags(dates), latent_regime=regime,
    )
    macro = np.zeros((T, 18), f32)
    macro[:, 14] = (rng.random(T) < 0.05).astype(f32)
    rule = rng.integers(0, 3, T).astype(np.int32)
    feats = FeatureSet(
        stock=np.zeros((T, N, 22), f32), stock_mask=np.zeros((T, N, 22), bool),
        macro=macro, macro_mask=np.ones((T, 18), bool),
        sector=np.zeros((T, S, 14), f32), sector_mask=cnt > 0,
        adjacency=np.broadcast_to(np.eye(S, dtype=f32), (T, S, S)).copy(),
        regime_label=regime, regime_rule=rule,
    )
    meta = MarketMeta(dates=dates, tickers=(*tuple(f"S{i}" for i in range(9)), ""),
                      sectors=SECTORS, macro_names=("vix",), fundamental_names=("pe",),
                      market="tiny-test", synthetic=True)
    return market, meta, feats


def meta_json() -> dict:
    names = ("bull", "bear", "sideways")
    return {"sector_drift_annual": {n: {s: float(DRIFT[r, i]) for i, s in enumerate(SECTORS)}
                                    for r, n in enumerate(names)}}


def with_constraints(**kw) -> EnvConfig:
    return dataclasses.replace(ENV_CFG, constraints=dataclasses.replace(ENV_CFG.constraints, **kw))
