"""A small hand-built MarketArrays from seeded NumPy draws (no loader involved).

Layout of ``make_market()`` (defaults T=240, 3 real sectors + 1 padding sector, 9 real stocks
+ 1 padding stock): stock 0..2 sector 0, 3..5 sector 1, 6..8 sector 2; stock 4 lists late
(day 40), stock 7 has a 3-day gap (days 120-122), stock 8 is close-only (``has_ohlc`` False,
open/high/low 0). ``np_arrays`` holds the float64/bool NumPy versions the tests use as the
reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.data import schema
from hrl_sarp_jax.data.calendar import week_end_flags
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta

LATE_STOCK, LATE_DAY = 4, 40
GAP_STOCK, GAP_DAYS = 7, (120, 121, 122)
CLOSE_ONLY_STOCK = 8
PAD_STOCK, PAD_SECTOR = 9, 3


@dataclass
class Built:
    market: MarketArrays
    meta: MarketMeta
    np: dict  # name -> numpy array (same content as the market, float64 where float)


def _markov_regimes(rng: np.random.Generator, num: int) -> np.ndarray:
    out = np.empty(num, np.int32)
    state = 0
    for t in range(num):
        if rng.random() < 0.05:
            state = int(rng.integers(0, 3))
        out[t] = state
    return out


def make_market(
    num_days: int = 240, seed: int = 0, latent: bool = True, sectors: int = 3, per_sector: int = 3
) -> Built:
    """The test market; ``sectors``/``per_sector`` only grow it for benchmarks (same quirks)."""
    rng = np.random.default_rng(seed)
    n_real, s_real = sectors * per_sector, sectors
    num_n, num_s = n_real + 1, s_real + 1
    dates = np.busday_offset(np.datetime64("2021-01-04"), np.arange(num_days), roll="forward")
    week_end = week_end_flags(dates)

    sector_of = np.r_[np.repeat(np.arange(s_real), per_sector), 0].astype(np.int32)
    market_f = rng.normal(0.0004, 0.01, num_days)
    sector_f = rng.normal(0.0, 0.008, (num_days, s_real))
    idio = rng.normal(0.0, 0.012, (num_days, n_real))
    logret = market_f[:, None] + sector_f[:, sector_of[:n_real]] + idio
    logret[0] = 0.0
    start = rng.uniform(50, 3000, n_real)
    close = np.zeros((num_days, num_n))
    close[:, :n_real] = start * np.exp(np.cumsum(logret, axis=0))
    mask = np.zeros((num_days, num_n), bool)
    mask[:, :n_real] = True
    mask[:LATE_DAY, LATE_STOCK] = False
    mask[list(GAP_DAYS), GAP_STOCK] = False
    close[~mask] = 0.0

    spread = rng.uniform(0.002, 0.02, (num_days, num_n))
    high = np.where(mask, close * (1 + spread), 0.0)
    low = np.where(mask, close * (1 - spread), 0.0)
    opn = np.where(mask, close * (1 + rng.normal(0, 0.003, (num_days, num_n))), 0.0)
    for a in (high, low, opn):
        a[:, CLOSE_ONLY_STOCK] = 0.0
    volume = np.where(mask, rng.lognormal(12, 0.5, (num_days, num_n)), 0.0)
    returns = np.zeros_like(close)
    both = mask[1:] & mask[:-1]
    returns[1:][both] = close[1:][both] / close[:-1][both] - 1.0
    shares = rng.uniform(1e6, 1e8, num_n)
    market_cap = np.where(mask, close * shares, 0.0)
    mcap_mask = mask.copy()
    mcap_mask[:, 2] = False  # one stock without market cap
    market_cap[~mcap_mask] = 0.0
    delivery = np.where(mask, rng.uniform(20, 80, (num_days, num_n)), 0.0)
    delivery_mask = mask.copy()
    delivery_mask[:60, :] = False
    delivery[~delivery_mask] = 0.0

    # sectors: equal-weighted member returns (members valid on t-1 and t)
    sector_returns = np.zeros((num_days, num_s))
    sector_mask = np.zeros((num_days, num_s), bool)
    for s in range(s_real):
        members = np.where(sector_of[:n_real] == s)[0]
        ok = mask[:, members]
        sector_mask[:, s] = ok.any(axis=1)
        pair = np.zeros_like(ok)
        pair[1:] = ok[1:] & ok[:-1]
        cnt = pair.sum(axis=1)
        sector_returns[:, s] = np.where(
            cnt > 0, (returns[:, members] * pair).sum(1) / np.maximum(cnt, 1), 0
        )
    sector_close = np.zeros((num_days, num_s))
    sector_close[:, :s_real] = np.cumprod(1 + sector_returns[:, :s_real], axis=0)
    bench_returns = sector_returns[:, :s_real].mean(axis=1)
    bench_close = np.cumprod(1 + bench_returns) * 1000.0

    # macro: every MACRO_SERIES column, daily; fii starts late
    m_names = schema.MACRO_SERIES
    macro = np.zeros((num_days, len(m_names)))
    vals = {
        "vix": 15 + np.cumsum(rng.normal(0, 0.5, num_days)).clip(-10, 40),
        "fii_flow": rng.normal(0, 2000, num_days),
        "dii_flow": rng.normal(0, 1500, num_days),
        "put_call_ratio": rng.uniform(0.6, 1.6, num_days),
        "usd_inr": 74 * np.exp(np.cumsum(rng.normal(0, 0.003, num_days))),
        "crude": 75 + np.cumsum(rng.normal(0, 1.5, num_days)),
        "policy_rate": np.repeat(rng.choice([4.0, 5.5, 6.5], size=num_days // 60 + 1), 60)[
            :num_days
        ],
        "credit_spread": 1.5 + np.cumsum(rng.normal(0, 0.02, num_days)),
        "gsec_10y": 6.5 + np.cumsum(rng.normal(0, 0.02, num_days)),
        "fno_oi": 1e6 * np.exp(np.cumsum(rng.normal(0, 0.02, num_days))),
        "event_flag": (rng.random(num_days) < 0.06).astype(float),
    }
    for i, n in enumerate(m_names):
        macro[:, i] = vals[n]
    macro_mask = np.ones_like(macro, bool)
    macro_mask[:30, m_names.index("fii_flow")] = False
    macro[~macro_mask] = 0.0

    # fundamentals: quarterly step values, published on day 10 for most, day 70 for stock 0
    k_names = schema.FUNDAMENTAL_FIELDS
    fundamentals = np.zeros((num_days, num_n, len(k_names)))
    lo_hi = {
        "pe": (5, 60),
        "pb": (0.5, 8),
        "ev_ebitda": (4, 30),
        "roe": (-5, 45),
        "roce": (-5, 60),
        "debt_to_equity": (0, 6),
        "earnings_growth": (-70, 70),
        "promoter_pledge": (0, 100),
        "free_float": (10, 100),
        "inst_holding_change": (-7, 7),
    }
    quarters = num_days // 63 + 1
    for k, n in enumerate(k_names):
        q = rng.uniform(*lo_hi[n], (quarters, num_n))
        fundamentals[:, :, k] = np.repeat(q, 63, axis=0)[:num_days]
    fund_mask = np.broadcast_to(mask[:, :, None], fundamentals.shape).copy()
    fund_mask[:10] = False
    fund_mask[:70, 0] = False
    fundamentals[~fund_mask] = 0.0
    sentiment = np.where(mask, rng.normal(0, 0.6, (num_days, num_n)), 0.0)
    sentiment_mask = mask & (rng.random((num_days, num_n)) < 0.7)
    sentiment[~sentiment_mask] = 0.0

    latent_regime = _markov_regimes(rng, num_days) if latent else np.full(num_days, -1, np.int32)
    circuit = np.zeros((num_days, num_n), np.int8)
    stock_valid = np.arange(num_n) < n_real
    has_ohlc = stock_valid.copy()
    has_ohlc[CLOSE_ONLY_STOCK] = False
    sector_valid = np.arange(num_s) < s_real

    arrs = {
        "open": opn,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "returns": returns,
        "market_cap": market_cap,
        "delivery_pct": delivery,
        "circuit_lock": circuit,
        "stock_mask": mask,
        "stock_sector": sector_of,
        "stock_valid": stock_valid,
        "has_ohlc": has_ohlc,
        "market_cap_mask": mcap_mask,
        "delivery_mask": delivery_mask,
        "sector_returns": sector_returns,
        "sector_close": sector_close,
        "sector_mask": sector_mask,
        "sector_valid": sector_valid,
        "benchmark_close": bench_close,
        "benchmark_returns": np.r_[0.0, bench_close[1:] / bench_close[:-1] - 1],
        "macro": macro,
        "macro_mask": macro_mask,
        "fundamentals": fundamentals,
        "fundamentals_mask": fund_mask,
        "sentiment": sentiment,
        "sentiment_mask": sentiment_mask,
        "week_end": week_end,
        "latent_regime": latent_regime,
    }
    return Built(to_market(arrs), _meta(dates, num_n, num_s), arrs)


def to_market(arrs: dict) -> MarketArrays:
    """NumPy dict -> MarketArrays with the contract's dtypes (float32 / bool / int32 / int8)."""

    def conv(name, a):
        a = np.asarray(a)
        if a.dtype == bool:
            return jnp.asarray(a)
        if name == "circuit_lock":
            return jnp.asarray(a, jnp.int8)
        if name in ("stock_sector", "latent_regime"):
            return jnp.asarray(a, jnp.int32)
        return jnp.asarray(a, jnp.float32)

    return MarketArrays(**{k: conv(k, v) for k, v in arrs.items()})


def _meta(dates: np.ndarray, num_n: int, num_s: int) -> MarketMeta:
    tickers = (*(f"S{i}" for i in range(num_n - 1)), "")
    sectors = (*(f"SEC{i}" for i in range(num_s - 1)), "")
    return MarketMeta(
        dates=dates.astype("datetime64[D]"),
        tickers=tickers,
        sectors=sectors,
        macro_names=schema.MACRO_SERIES,
        fundamental_names=schema.FUNDAMENTAL_FIELDS,
        market="test",
        synthetic=True,
    )


def float32_np(arrs: dict) -> dict:
    """The arrays as the market holds them (float32-rounded), as float64 for references."""
    return {
        k: (
            np.asarray(v, np.float32).astype(np.float64)
            if np.asarray(v).dtype.kind == "f"
            else np.asarray(v)
        )
        for k, v in arrs.items()
    }
