"""A tiny valid canonical market built programmatically (3 sectors, 8 tickers, ~300 days).

Numbers come from a seeded ``np.random.default_rng``; tests mutate the frames returned by
``market_tables`` to make one thing wrong, then write them with ``write_tables``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hrl_sarp_jax.data import calendar, io, schema

SECTORS = {"IT": ["INFY", "TCS", "WIPRO"], "Financials": ["SBIN", "HDFCBANK", "AXISBANK"],
           "Pharma": ["CIPLA", "LUPIN"]}
SECTOR_ORDER = ["IT", "Financials", "Pharma"]  # deliberately not alphabetical
START, END = "2019-01-01", "2020-03-31"


def market_tables(seed: int = 0, start: str = START, end: str = END) -> tuple[dict, dict]:
    """Canonical frames ({file name: DataFrame}) and meta.json content of a valid market."""
    rng = np.random.default_rng(seed)
    days = pd.DatetimeIndex(calendar.trading_days(start, end, "XBOM"))
    T = len(days)
    rows = []
    for sector, tickers in SECTORS.items():
        for ticker in tickers:
            r = rng.normal(0.0005, 0.015, T)
            close = 100.0 * rng.uniform(0.5, 5.0) * np.cumprod(1.0 + r)
            rng_pct = rng.uniform(0.0, 0.02, T)
            open_ = close * (1.0 + rng.uniform(-0.5, 0.5, T) * rng_pct)
            high = np.maximum(open_, close) * (1.0 + rng.uniform(0, 0.5, T) * rng_pct)
            low = np.minimum(open_, close) * (1.0 - rng.uniform(0, 0.5, T) * rng_pct)
            rows.append(pd.DataFrame({
                "date": days, "ticker": ticker, "sector": sector,
                "open": open_, "high": high, "low": low, "close": close,
                "volume": rng.integers(1_000, 100_000, T).astype(float),
                "market_cap": close * rng.uniform(1e6, 1e7),
                "circuit_band": 0.2 if ticker in ("WIPRO", "LUPIN") else np.nan,
                "delivery_pct": rng.uniform(20, 80, T),
            }))
    prices = pd.concat(rows, ignore_index=True)  # ticker-major, like the original's files

    pre = str((pd.Timestamp(start) - pd.DateOffset(months=1)).date())
    mdays = pd.DatetimeIndex(calendar.trading_days(pre, end, "XBOM"))
    macro = pd.DataFrame({
        "date": mdays,
        "vix": 15 + rng.normal(0, 1, len(mdays)).cumsum() * 0.1,
        "usd_inr": 70 + rng.normal(0, 0.1, len(mdays)).cumsum(),
        "gold": 30_000 + rng.normal(0, 50, len(mdays)).cumsum(),  # an extra series
    })
    monthly = pd.DataFrame({"date": pd.date_range(pre, end, freq="MS")})
    monthly["policy_rate"] = np.round(rng.uniform(5.5, 6.5, len(monthly)), 2)
    macro = macro.merge(monthly, on="date", how="outer").sort_values("date", ignore_index=True)

    qdates = pd.date_range(pre, end, freq="QS-FEB") + pd.Timedelta(days=14)
    fund = pd.DataFrame([
        {"date": d, "ticker": t, "pe": rng.uniform(10, 40), "pb": rng.uniform(1, 8),
         "roe": rng.uniform(5, 25)}
        for t in prices["ticker"].unique() for d in qdates
    ])
    index = pd.DataFrame({"date": days, "close": 10_000 * np.cumprod(1 + rng.normal(0, 0.01, T))})
    sent = pd.DataFrame({"date": days[::7], "ticker": prices["ticker"].iat[0],
                         "score": rng.uniform(-1, 1, len(days[::7]))})
    regimes = pd.DataFrame({"date": days, "regime": (np.arange(T) // 40 % 3).astype(np.int8)})
    tables = {
        schema.PRICES_FILE: prices, schema.MACRO_FILE: macro, schema.FUNDAMENTALS_FILE: fund,
        schema.INDEX_FILE: index, schema.SENTIMENT_FILE: sent, schema.REGIMES_FILE: regimes,
    }
    meta = {"market": "test", "currency": "INR", "calendar": "XBOM", "sectors": SECTOR_ORDER,
            "synthetic": True}
    return tables, meta


def write_tables(out: Path, tables: dict, meta: dict | None) -> Path:
    """Write frames as-is with pandas (no schema cast), so deliberately bad types survive."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(out / name, index=False)
    if meta is not None:
        io.write_json(out / schema.META_FILE, meta)
    return out


def build_market(out: Path, seed: int = 0) -> Path:
    """Write the valid market with the canonical writer ``io.write_market``."""
    tables, meta = market_tables(seed)
    return io.write_market(Path(out), tables, meta)
