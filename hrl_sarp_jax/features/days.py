"""Cutting and padding a market's day axis: a walk-forward fold's window of one market
(``slice_days``), rolling folds padded to one length (``pad_days``), and a pool market cut to
a fold's first day (``training.market_pool``)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet

# MarketArrays fields without a day axis (everything else is [T, ...])
_STATIC_MARKET_FIELDS = frozenset({"stock_sector", "stock_valid", "has_ohlc", "sector_valid"})


def slice_days(market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
               lo: int) -> tuple[MarketArrays, MarketMeta, FeatureSet]:
    """The market, its dates and features from trading day ``lo`` on (every day axis cut;
    per-stock and per-sector fields kept). The features were built on the full market, so
    the slice keeps their causal history. ``lo`` = 0 returns the inputs themselves."""
    lo = int(lo)
    t = market.num_days
    if lo == 0:
        return market, meta, feats
    if not 0 < lo <= t - 2:
        raise ConfigError(f"slice_days: day {lo} is outside the market (days 0 .. {t - 1}); "
                          f"give 0 .. {t - 2} so that at least 2 days remain")
    m2 = market.replace(**{f.name: getattr(market, f.name)[lo:]
                           for f in dataclasses.fields(market)
                           if f.name not in _STATIC_MARKET_FIELDS})
    meta2 = dataclasses.replace(meta, dates=np.asarray(meta.dates)[lo:])
    f2 = feats.replace(**{f.name: getattr(feats, f.name)[lo:]
                          for f in dataclasses.fields(feats)})
    return m2, meta2, f2


# padded days: no return, no price move (the last value held), no stock, sector, macro or
# feature data, no week end, no regime; masks and flags False
_ZERO_ON_PAD = frozenset({"returns", "sector_returns", "benchmark_returns", "volume",
                          "circuit_lock"})
_UNKNOWN_ON_PAD = frozenset({"latent_regime", "regime_label"})


def pad_days(market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
             days: int) -> tuple[MarketArrays, MarketMeta, FeatureSet]:
    """The market, its dates and features with ``days`` empty days appended after the last
    one (the next business days): no stock tradable (every mask False), zero returns and
    volume, prices and feature values held at the last day's, no week end, regime unknown
    (-1). Rolling walk-forward folds are padded to the first fold's length so that every fold
    has the same shapes and runs the same compiled programs (``walk_forward``); no phase and
    no evaluation reads a day after a fold's test window, so the padding changes no result
    (a test compares a padded and an unpadded walk-forward). ``days`` = 0 returns the inputs."""
    days = int(days)
    if days == 0:
        return market, meta, feats
    if days < 0:
        raise ValueError(f"pad_days: days must be >= 0 (got {days})")

    def pad(name: str, value: Any) -> Any:
        x = np.asarray(value)
        if x.dtype == bool:
            fill = np.zeros((days, *x.shape[1:]), bool)
        elif name in _ZERO_ON_PAD:
            fill = np.zeros((days, *x.shape[1:]), x.dtype)
        elif name in _UNKNOWN_ON_PAD:
            fill = np.full((days, *x.shape[1:]), -1, x.dtype)
        else:
            fill = np.repeat(x[-1:], days, axis=0)
        out = np.concatenate([x, fill])
        return jnp.asarray(out) if isinstance(value, jax.Array) else out  # keep the kind

    m2 = market.replace(**{f.name: pad(f.name, getattr(market, f.name))
                           for f in dataclasses.fields(market)
                           if f.name not in _STATIC_MARKET_FIELDS})
    last = np.asarray(meta.dates).astype("datetime64[D]")[-1]
    extra = np.busday_offset(last, np.arange(1, days + 1), roll="forward")
    dates = np.concatenate([np.asarray(meta.dates).astype("datetime64[D]"), extra])
    meta2 = dataclasses.replace(meta, dates=dates.astype(np.asarray(meta.dates).dtype))
    f2 = feats.replace(**{f.name: pad(f.name, getattr(feats, f.name))
                          for f in dataclasses.fields(feats)})
    return m2, meta2, f2
