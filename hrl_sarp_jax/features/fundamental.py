"""Cross-sectional (same-day) stock features: fundamentals, market cap, sentiment.

Every function works row by row in t, so causality only needs the inputs themselves to be
as-of joined on their publication date (``data/market.py``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from hrl_sarp_jax.features.rolling import safe_div
from hrl_sarp_jax.types import Array

Z_CLIP = 3.0


def sector_zscore(
    x: Array, avail: Array, sector: Array, num_sectors: int, clip: float = Z_CLIP
) -> tuple[Array, Array]:
    """Within-sector ``(x - sector median) / sector std`` over available peers at each t.

    x, avail [T, N, K]; sector int32 [N]. Std is the sample std (ddof 1). Clipped to ±clip;
    0 where the sector's peers are all equal. Available only where the stock's own value is
    available and its sector has >= 2 available members that day.
    """
    member = (sector[:, None] == jnp.arange(num_sectors, dtype=sector.dtype)[None, :]).astype(
        x.dtype
    )  # [N, S]
    xa = jnp.where(avail, x, 0.0)
    count = jnp.einsum("tnk,ns->tks", avail.astype(x.dtype), member)  # exact small integers
    mean = jnp.einsum("tnk,ns->tks", xa, member) / jnp.maximum(count, 1.0)
    own_mean = jnp.einsum("tks,ns->tnk", mean, member)
    ss = jnp.einsum("tnk,ns->tks", jnp.where(avail, (x - own_mean) ** 2, 0.0), member)
    std = jnp.sqrt(ss / jnp.maximum(count - 1.0, 1.0))
    # median: one sort per (t, k) by (sector, value); unavailable stocks go last
    keys = jnp.where(avail, sector[None, :, None], num_sectors).astype(jnp.int32)
    _, ordered = lax.sort(
        (jnp.moveaxis(keys, 1, 2), jnp.moveaxis(jnp.where(avail, x, jnp.inf), 1, 2)),
        dimension=2,
        num_keys=2,
    )  # [T, K, N]
    cnt = count.astype(jnp.int32)
    start = jnp.cumsum(cnt, axis=-1) - cnt  # first sorted slot of each sector
    lo = start + jnp.maximum(cnt - 1, 0) // 2
    hi = start + cnt // 2
    median = 0.5 * (
        jnp.take_along_axis(ordered, lo, axis=-1) + jnp.take_along_axis(ordered, hi, axis=-1)
    )
    median = jnp.where(cnt > 0, median, 0.0)
    own = lambda a: jnp.moveaxis(a, 1, 2)[:, sector, :]  # [T, K, S] -> [T, N, K]  # noqa: E731
    z = safe_div(x - own(median), own(std))
    ok = avail & (own(cnt) >= 2)
    return jnp.where(ok, jnp.clip(z, -clip, clip), 0.0), ok


def cross_section_zscore(x: Array, avail: Array, clip: float = Z_CLIP) -> tuple[Array, Array]:
    """``(x - mean) / std`` across available stocks at each t (sample std), clipped; >= 2 needed.

    x, avail [T, N].
    """
    count = avail.sum(axis=1, keepdims=True)
    countf = jnp.maximum(count, 1).astype(x.dtype)
    mean = jnp.where(avail, x, 0.0).sum(axis=1, keepdims=True) / countf
    ss = jnp.where(avail, (x - mean) ** 2, 0.0).sum(axis=1, keepdims=True)
    std = jnp.sqrt(ss / jnp.maximum(count - 1, 1).astype(x.dtype))
    ok = avail & (count >= 2)
    return jnp.where(ok, jnp.clip(safe_div(x - mean, std), -clip, clip), 0.0), ok


def bounded(x: Array, avail: Array, lo: float, hi: float, scale: float) -> tuple[Array, Array]:
    """``clip(x, lo, hi) / scale`` where available, else 0."""
    return jnp.where(avail, jnp.clip(x, lo, hi) / scale, 0.0), avail


def leverage(de: Array, avail: Array) -> tuple[Array, Array]:
    """``1 / (1 + clip(D/E, 0, 5))``: 1 for no debt, 1/6 for D/E >= 5."""
    return jnp.where(avail, 1.0 / (1.0 + jnp.clip(de, 0.0, 5.0)), 0.0), avail


def promoter_pledge(p: Array, avail: Array) -> tuple[Array, Array]:
    """``1 - clip(p, 0, 100)/100``: 1 = nothing pledged (good), 0 = everything pledged."""
    return jnp.where(avail, 1.0 - jnp.clip(p, 0.0, 100.0) / 100.0, 0.0), avail


def log_market_cap(mcap: Array, avail: Array) -> tuple[Array, Array]:
    """Cross-sectional z-score of log market cap (clipped ±3). mcap, avail [T, N]."""
    ok = avail & (mcap > 0)
    logm = jnp.where(ok, jnp.log(jnp.where(ok, mcap, 1.0)), 0.0)
    return cross_section_zscore(logm, ok)
