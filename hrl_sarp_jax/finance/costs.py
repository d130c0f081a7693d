"""Indian delivery-equity transaction costs (original HRL-SARP schedule, spec §6.1), pure jnp.

All rates are fractions of traded value. With the defaults one rupee bought costs 0.00168935 and
one rupee sold 0.00153935 (about 0.323% round trip), before square-root market impact.
Shapes: A assets (stocks or sectors).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import CostConfig

_F32 = jnp.float32


@struct.dataclass
class CostParams:
    """Cost schedule; every field is a float32 scalar leaf (vmappable over sweeps)."""

    stt_buy: jax.Array
    stt_sell: jax.Array
    stamp_buy: jax.Array
    exchange: jax.Array
    sebi: jax.Array
    gst: jax.Array
    brokerage_pct: jax.Array
    brokerage_cap: jax.Array   # currency per order; 0 = no cap
    slippage_bps: jax.Array
    impact_coef: jax.Array
    gst_on_sebi: jax.Array     # 1.0: GST also on the SEBI fee; 0.0: original schedule


@struct.dataclass
class CostBreakdown:
    """Itemised costs of one rebalance, scalars in currency, summed over assets."""

    stt: jax.Array
    stamp: jax.Array
    exchange: jax.Array
    sebi: jax.Array
    gst: jax.Array
    brokerage: jax.Array
    slippage: jax.Array
    impact: jax.Array
    total: jax.Array


# HOST ONLY
def cost_params(cfg: CostConfig) -> CostParams:
    """CostParams from a CostConfig (float32 scalars)."""
    f = lambda x: jnp.asarray(x, _F32)  # noqa: E731
    return CostParams(
        stt_buy=f(cfg.stt_buy), stt_sell=f(cfg.stt_sell), stamp_buy=f(cfg.stamp_buy),
        exchange=f(cfg.exchange), sebi=f(cfg.sebi), gst=f(cfg.gst),
        brokerage_pct=f(cfg.brokerage_pct), brokerage_cap=f(cfg.brokerage_cap),
        slippage_bps=f(cfg.slippage_bps), impact_coef=f(cfg.impact_coef),
        gst_on_sebi=f(1.0 if cfg.gst_on_sebi else 0.0),
    )


def trade_costs(
    buy_value: jax.Array, sell_value: jax.Array, adv_value: jax.Array, params: CostParams
) -> CostBreakdown:
    """Itemised costs of buying ``buy_value`` and selling ``sell_value`` (currency, >= 0).

    Args:
      buy_value, sell_value: [A] traded currency per asset.
      adv_value: [A] 20-day average daily traded value; 0 (unknown) means no impact.
    Returns:
      CostBreakdown of float32 scalars. Each asset side is one order: brokerage per order is
      ``min(brokerage_pct * value, brokerage_cap)`` (no cap when cap is 0); impact is the
      square-root law ``impact_coef * sqrt(value / adv) * value``.
    """
    p = params
    buy = jnp.asarray(buy_value, _F32)
    sell = jnp.asarray(sell_value, _F32)
    adv = jnp.asarray(adv_value, _F32)
    traded = buy + sell

    def brokerage_of(v: jax.Array) -> jax.Array:
        pct = p.brokerage_pct * v
        return jnp.where(p.brokerage_cap > 0, jnp.minimum(pct, p.brokerage_cap), pct)

    stt = jnp.sum(p.stt_buy * buy + p.stt_sell * sell)
    stamp = jnp.sum(p.stamp_buy * buy)
    exchange = jnp.sum(p.exchange * traded)
    sebi = jnp.sum(p.sebi * traded)
    brokerage = jnp.sum(brokerage_of(buy) + brokerage_of(sell))
    gst = p.gst * (brokerage + exchange + p.gst_on_sebi * sebi)
    slippage = jnp.sum(p.slippage_bps * _F32(1e-4) * traded)
    known = adv > 0
    participation = jnp.where(known, traded / jnp.where(known, adv, 1.0), 0.0)
    impact = jnp.sum(p.impact_coef * jnp.sqrt(participation) * traded)
    total = stt + stamp + exchange + sebi + gst + brokerage + slippage + impact
    return CostBreakdown(
        stt=stt, stamp=stamp, exchange=exchange, sebi=sebi, gst=gst, brokerage=brokerage,
        slippage=slippage, impact=impact, total=total,
    )


def effective_rates(params: CostParams) -> tuple[jax.Array, jax.Array]:
    """Cost per currency unit (buy_rate, sell_rate), impact off, brokerage uncapped.

    Defaults give 0.00168935 / 0.00153935.
    """
    p = params
    fees = p.exchange + p.sebi + p.brokerage_pct
    gst = p.gst * (p.brokerage_pct + p.exchange + p.gst_on_sebi * p.sebi)
    common = fees + gst + p.slippage_bps * _F32(1e-4)
    return p.stt_buy + p.stamp_buy + common, p.stt_sell + common
