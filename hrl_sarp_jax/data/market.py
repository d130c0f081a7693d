"""MarketArrays: a market as date-aligned, device-ready arrays (a pytree of arrays only).

Time discipline: index t is the close of trading day t. ``returns[t]`` is the simple return
from close t-1 to close t. A decision made at the close of t may use anything indexed <= t and
earns ``returns[t+1]``.

Shapes: T trading days, N stocks (padded to a static N_max, ``stock_valid`` marks real ones),
S sectors (padded to S_max, ``sector_valid``), M macro series, K fundamental fields.
Host-only metadata (dates, names) lives in ``MarketMeta``, never in the pytree.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
from flax import struct


@struct.dataclass
class MarketArrays:
    # --- stocks [T, N] (float32 unless noted); invalid entries are 0 with the mask False
    open: jax.Array
    high: jax.Array
    low: jax.Array
    close: jax.Array            # adjusted close (adj_close when present), used for returns
    volume: jax.Array
    returns: jax.Array          # close[t] / close[t-1] - 1; 0 where either day is invalid
    market_cap: jax.Array       # 0 where unknown (see market_cap_mask)
    delivery_pct: jax.Array     # 0..100; 0 where unknown
    circuit_lock: jax.Array     # int8: +1 locked at upper circuit, -1 at lower, 0 free
    stock_mask: jax.Array       # bool: listed, price present (after explicit ffill repair)
    # --- per-stock [N]
    stock_sector: jax.Array     # int32 sector id in [0, S); padding slots hold 0
    stock_valid: jax.Array      # bool: a real ticker (False for padding)
    has_ohlc: jax.Array         # bool: open/high/low are real (False for close-only tickers)
    market_cap_mask: jax.Array  # bool [T, N]
    delivery_mask: jax.Array    # bool [T, N]
    # --- sectors [T, S]
    sector_returns: jax.Array   # cap- or equal-weighted member returns (weights from t-1)
    sector_close: jax.Array     # sector index level, 1.0 on the first day
    sector_mask: jax.Array      # bool [T, S]: at least one valid member that day
    sector_valid: jax.Array     # bool [S]
    # --- benchmark [T]
    benchmark_close: jax.Array
    benchmark_returns: jax.Array
    # --- macro [T, M], as-of joined (value from its own date on), NaN-free
    macro: jax.Array
    macro_mask: jax.Array       # bool [T, M]: a value is available at t
    # --- fundamentals [T, N, K], as-of joined on the publication date
    fundamentals: jax.Array
    fundamentals_mask: jax.Array
    # --- sentiment [T, N]
    sentiment: jax.Array
    sentiment_mask: jax.Array
    # --- calendar [T]
    week_end: jax.Array         # bool: the last trading day of its calendar (ISO) week
    latent_regime: jax.Array    # int32: generator's regime (0 Bull, 1 Bear, 2 Sideways); -1 unknown

    @property
    def num_days(self) -> int:
        return int(self.close.shape[0])

    @property
    def num_stocks(self) -> int:
        return int(self.close.shape[1])

    @property
    def num_sectors(self) -> int:
        return int(self.sector_returns.shape[1])


@dataclass(frozen=True)
class MarketMeta:
    """Host-side description of a MarketArrays: names, dates and provenance."""

    dates: np.ndarray            # datetime64[D] [T]
    tickers: tuple[str, ...]     # length N_max; padding slots are ''
    sectors: tuple[str, ...]     # length S_max; padding slots are ''
    macro_names: tuple[str, ...]
    fundamental_names: tuple[str, ...]
    market: str = "unknown"
    currency: str = "INR"
    synthetic: bool = False
    source: str = ""
    repairs: tuple[str, ...] = ()  # human-readable list of repairs applied while loading
