"""Indian cost schedule: pinned effective rates, itemised hand-computed trades."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import CostConfig
from hrl_sarp_jax.finance.costs import cost_params, effective_rates, trade_costs


@pytest.fixture(scope="module")
def costs_fn():
    return jax.jit(trade_costs)


def test_default_effective_rates_match_original():
    buy, sell = effective_rates(cost_params(CostConfig()))
    assert buy.dtype == jnp.float32 and sell.dtype == jnp.float32
    # 0.001 STT + 0.00015 stamp + 0.0000325 exch + 0.000001 SEBI + 0.18*0.0000325 GST + 0.0005 slip
    assert abs(float(buy) - 0.00168935) < 1e-9
    assert abs(float(sell) - 0.00153935) < 1e-9


def test_gst_on_sebi_adds_18pct_of_sebi_fee():
    buy, sell = effective_rates(cost_params(CostConfig(gst_on_sebi=True)))
    assert abs(float(buy) - (0.00168935 + 0.18e-6)) < 1e-9
    assert abs(float(sell) - (0.00153935 + 0.18e-6)) < 1e-9


def test_itemised_trade_by_hand(costs_fn):
    cfg = CostConfig(brokerage_pct=0.0003, brokerage_cap=20.0, impact_coef=0.1)
    c = costs_fn(jnp.array([1e5, 0.0]), jnp.array([0.0, 2e5]), jnp.array([1e7, 8e6]),
                 cost_params(cfg))
    # buy 1e5 of asset 0, sell 2e5 of asset 1; traded 3e5.
    stt = 0.001 * 1e5 + 0.001 * 2e5                     # 300
    stamp = 0.00015 * 1e5                               # 15
    exchange = 0.0000325 * 3e5                          # 9.75
    sebi = 0.000001 * 3e5                               # 0.3
    brokerage = min(0.0003 * 1e5, 20) + min(0.0003 * 2e5, 20)   # 20 + 20 (both capped)
    gst = 0.18 * (brokerage + exchange)                 # 8.955 (no GST on SEBI by default)
    slippage = 5e-4 * 3e5                               # 150
    impact = 0.1 * np.sqrt(1e5 / 1e7) * 1e5 + 0.1 * np.sqrt(2e5 / 8e6) * 2e5  # 1000 + 3162.28
    want = dict(stt=stt, stamp=stamp, exchange=exchange, sebi=sebi, brokerage=brokerage,
                gst=gst, slippage=slippage, impact=impact)
    for name, value in want.items():
        np.testing.assert_allclose(float(getattr(c, name)), value, rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(c.total), sum(want.values()), rtol=1e-5)


def test_brokerage_cap_zero_means_uncapped(costs_fn):
    cfg = CostConfig(brokerage_pct=0.0003, brokerage_cap=0.0)
    c = costs_fn(jnp.array([1e5, 0.0]), jnp.array([0.0, 2e5]), jnp.zeros(2), cost_params(cfg))
    np.testing.assert_allclose(float(c.brokerage), 0.0003 * 3e5, rtol=1e-6)   # 90
    np.testing.assert_allclose(float(c.gst), 0.18 * (90 + 9.75), rtol=1e-5)


def test_impact_square_root_law_and_unknown_adv(costs_fn):
    p = cost_params(CostConfig(impact_coef=0.2, slippage_bps=0.0))
    c1 = costs_fn(jnp.array([1e6, 1e6]), jnp.zeros(2), jnp.array([4e6, 0.0]), p)
    # asset 0: 0.2 * sqrt(0.25) * 1e6 = 1e5; asset 1: ADV unknown -> no impact
    np.testing.assert_allclose(float(c1.impact), 1e5, rtol=1e-6)
    # Quadrupling the trade doubles the impact rate: impact scales as value^1.5 (x8).
    c4 = costs_fn(jnp.array([4e6, 0.0]), jnp.zeros(2), jnp.array([4e6, 0.0]), p)
    np.testing.assert_allclose(float(c4.impact), 8 * 1e5, rtol=1e-6)


def test_trade_costs_consistent_with_effective_rates(costs_fn):
    p = cost_params(CostConfig())
    buy_rate, sell_rate = effective_rates(p)
    c = costs_fn(jnp.array([3e5, 0.0]), jnp.array([0.0, 7e5]), jnp.array([1e6, 1e6]), p)
    np.testing.assert_allclose(float(c.total), 3e5 * float(buy_rate) + 7e5 * float(sell_rate),
                               rtol=1e-6)


def test_zero_trade_zero_cost(costs_fn):
    cfg = CostConfig(brokerage_pct=0.0003, impact_coef=0.1)
    c = costs_fn(jnp.zeros(2), jnp.zeros(2), jnp.array([1e6, 0.0]), cost_params(cfg))
    for f in dataclasses.fields(c):
        assert float(getattr(c, f.name)) == 0.0, f.name
    assert all(np.isfinite(float(getattr(c, f.name))) for f in dataclasses.fields(c))


def test_cost_params_are_float32_leaves_and_vmappable():
    p = cost_params(CostConfig())
    leaves = jax.tree.leaves(p)
    assert len(leaves) == 11 and all(x.dtype == jnp.float32 and x.shape == () for x in leaves)
    p2 = cost_params(CostConfig(stt_buy=0.002, slippage_bps=10.0))
    batch = jax.tree.map(lambda a, b: jnp.stack([a, b]), p, p2)   # a sweep over 2 schedules
    buy, _ = jax.vmap(effective_rates)(batch)
    # second schedule: +0.001 STT and +5 bps slippage on top of the default buy rate
    np.testing.assert_allclose(np.asarray(buy), [0.00168935, 0.00168935 + 0.0015], rtol=1e-6)
