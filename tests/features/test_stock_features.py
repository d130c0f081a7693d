"""Every stock feature against a NumPy/pandas reference on the same (float32-rounded) panel."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.data import schema
from hrl_sarp_jax.features.featureset import STOCK_FEATURES
from tests.features import reference as ref
from tests.features.conftest import CFG
from tests.features.make_market import (
    CLOSE_ONLY_STOCK,
    GAP_DAYS,
    GAP_STOCK,
    LATE_DAY,
    LATE_STOCK,
    PAD_STOCK,
)


def _col(name):
    return STOCK_FEATURES.index(name)


def _check(feats_np, name, expected, atol):
    """Feature ``name`` equals ``expected`` where expected is not NaN; masked (and 0) elsewhere."""
    got = feats_np["stock"][..., _col(name)]
    mask = feats_np["stock_mask"][..., _col(name)]
    want_mask = ~np.isnan(expected)
    np.testing.assert_array_equal(mask, want_mask, err_msg=f"{name}: availability mask")
    assert np.all(got[~mask] == 0), f"{name}: unavailable entries must be 0"
    np.testing.assert_allclose(got[mask], expected[want_mask], atol=atol, rtol=0, err_msg=name)


@pytest.fixture(scope="module")
def raw(ref_np):
    return ref.stock_raw(ref_np)


ZSCORED = ("ret_1d", "ret_5d", "ret_20d", "vol_20d", "macd_hist")


@pytest.mark.parametrize("name", ZSCORED)
def test_price_features_are_trailing_zscores_of_the_raw_indicator(feats_np, raw, name):
    expected = ref.rolling_z(raw[name], CFG.norm_window, CFG.norm_min_periods, CFG.clip)
    _check(feats_np, name, expected, atol=1e-4)


def test_rsi_is_wilder_scaled(feats_np, raw):
    _check(feats_np, "rsi_14", raw["rsi_14"], atol=1e-4)
    # first value 14 changes after listing: index LATE_DAY + 14 for the late stock
    mask = feats_np["stock_mask"][:, LATE_STOCK, _col("rsi_14")]
    assert not mask[LATE_DAY + 13] and mask[LATE_DAY + 14]


def test_bollinger_pctb_population_sigma_clipped(feats_np, raw):
    _check(feats_np, "bb_pctb", raw["bb_pctb"], atol=1e-4)
    got = feats_np["stock"][..., _col("bb_pctb")]
    assert got.min() >= -0.5 and got.max() <= 1.5


def test_volume_ratio_excludes_today_and_caps(feats_np, raw):
    _check(feats_np, "volume_ratio", raw["volume_ratio"], atol=1e-4)


def test_indicators_restart_after_a_gap(feats_np):
    last_gap = GAP_DAYS[-1]
    mask = feats_np["stock_mask"][:, GAP_STOCK, _col("ret_20d")]
    assert not mask[GAP_DAYS[0] : last_gap + 21].any()  # 21 consecutive closes needed again


def test_bounded_fundamental_transforms(feats_np, ref_np):
    k = schema.FUNDAMENTAL_FIELDS.index
    fund, fmask = ref_np["fundamentals"], ref_np["fundamentals_mask"]
    valid = (ref_np["stock_mask"] & ref_np["stock_valid"][None])[..., None] & fmask

    def nan_where_missing(x, field):
        return np.where(valid[..., k(field)], x, np.nan)

    f = lambda field: fund[..., k(field)]  # noqa: E731
    cases = {
        "roe": np.clip(f("roe"), 0, 40) / 40,
        "roce": np.clip(f("roce"), 0, 50) / 50,
        "leverage": 1 / (1 + np.clip(f("debt_to_equity"), 0, 5)),
        "earnings_growth": np.clip(f("earnings_growth"), -50, 50) / 50,
        "promoter_pledge": 1 - np.clip(f("promoter_pledge"), 0, 100) / 100,
        "free_float": np.clip(f("free_float"), 0, 100) / 100,
        "inst_holding_change": np.clip(f("inst_holding_change"), -5, 5) / 5,
    }
    field_of = {"leverage": "debt_to_equity"}
    for name, expected in cases.items():
        _check(feats_np, name, nan_where_missing(expected, field_of.get(name, name)), atol=1e-6)


def test_sector_zscores_of_valuation_ratios(feats_np, ref_np):
    valid = ref_np["stock_mask"] & ref_np["stock_valid"][None]
    for name, field in (("pe_z", "pe"), ("pb_z", "pb"), ("ev_ebitda_z", "ev_ebitda")):
        k = schema.FUNDAMENTAL_FIELDS.index(field)
        avail = valid & ref_np["fundamentals_mask"][..., k]
        expected = ref.sector_z(ref_np["fundamentals"][..., k], avail, ref_np["stock_sector"])
        _check(feats_np, name, expected, atol=1e-4)
    # stock 0 publishes late: before that its sector (0) has only stocks 1 and 2 as peers
    assert feats_np["stock_mask"][20, 1, _col("pe_z")]


def test_delivery_sentiment_and_log_mcap(feats_np, ref_np):
    valid = ref_np["stock_mask"] & ref_np["stock_valid"][None]
    dm = valid & ref_np["delivery_mask"]
    _check(
        feats_np,
        "delivery_pct",
        np.where(dm, np.clip(ref_np["delivery_pct"], 0, 100) / 100, np.nan),
        1e-6,
    )
    sm = valid & ref_np["sentiment_mask"]
    _check(feats_np, "sentiment", np.where(sm, np.clip(ref_np["sentiment"], -1, 1), np.nan), 1e-6)
    mm = valid & ref_np["market_cap_mask"] & (ref_np["market_cap"] > 0)
    logm = np.where(mm, np.log(np.where(mm, ref_np["market_cap"], 1.0)), np.nan)
    mean = np.nanmean(logm, axis=1, keepdims=True)
    std = np.nanstd(logm, axis=1, ddof=1, keepdims=True)
    _check(feats_np, "log_mcap", np.clip((logm - mean) / std, -3, 3), 1e-4)


def test_relative_strength_vs_own_sector(feats_np, ref_np, raw):
    sector_close = ref_np["sector_close"][:, ref_np["stock_sector"]]
    sec_ret20 = np.log(sector_close) - np.log(np.roll(sector_close, 20, axis=0))
    sec_ret20[:20] = np.nan
    rs = raw["ret_20d"] - sec_ret20
    expected = ref.rolling_z(rs, CFG.norm_window, CFG.norm_min_periods, CFG.clip)
    _check(feats_np, "rel_strength_sector", expected, atol=1e-4)


def test_padding_stock_is_all_zero_and_masked(feats_np):
    assert not feats_np["stock_mask"][:, PAD_STOCK].any()
    assert np.all(feats_np["stock"][:, PAD_STOCK] == 0)


def test_close_only_stock_gets_every_price_feature(feats_np):
    # no stock feature reads open/high/low, so a close-only ticker is as available as others
    for name in ("ret_20d", "rsi_14", "macd_hist", "bb_pctb", "volume_ratio"):
        np.testing.assert_array_equal(
            feats_np["stock_mask"][:, CLOSE_ONLY_STOCK, _col(name)],
            feats_np["stock_mask"][:, CLOSE_ONLY_STOCK - 2, _col(name)],
        )
