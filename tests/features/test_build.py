"""build_features contract: dtypes, errors, one trace per shape, OHLC independence, summary."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hrl_sarp_jax.config import FeatureConfig
from hrl_sarp_jax.data import schema
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.features import build
from hrl_sarp_jax.features.build import build_features, feature_summary
from hrl_sarp_jax.features.featureset import (
    NUM_MACRO_FEATURES,
    NUM_SECTOR_FEATURES,
    NUM_STOCK_FEATURES,
)
from tests.features.conftest import CFG
from tests.features.make_market import make_market, to_market


def test_shapes_and_explicit_dtypes(feats, built):
    t, n, s = built.market.num_days, built.market.num_stocks, built.market.num_sectors
    assert feats.stock.shape == (t, n, NUM_STOCK_FEATURES) and feats.stock.dtype == np.float32
    assert feats.stock_mask.shape == (t, n, NUM_STOCK_FEATURES) and feats.stock_mask.dtype == bool
    assert feats.macro.shape == (t, NUM_MACRO_FEATURES) and feats.macro.dtype == np.float32
    assert feats.sector.shape == (t, s, NUM_SECTOR_FEATURES) and feats.sector.dtype == np.float32
    assert feats.adjacency.shape == (t, s, s)
    assert feats.regime_label.dtype == np.int32 and feats.regime_rule.dtype == np.int32
    for leaf in (feats.stock, feats.macro, feats.sector, feats.adjacency):
        assert np.isfinite(np.asarray(leaf)).all()
        assert not leaf.weak_type


def test_normalised_features_respect_the_clip(feats_np):
    assert np.abs(feats_np["stock"]).max() <= CFG.clip
    assert np.abs(feats_np["sector"]).max() <= CFG.clip


def test_open_high_low_are_never_read(built, feats_np):
    arrs = dict(built.np)
    for k in ("open", "high", "low"):
        arrs[k] = np.full_like(arrs[k], 123.0)
    arrs["has_ohlc"] = np.zeros_like(arrs["has_ohlc"])
    new = build_features(to_market(arrs), CFG)
    np.testing.assert_array_equal(np.asarray(new.stock), feats_np["stock"])
    np.testing.assert_array_equal(np.asarray(new.stock_mask), feats_np["stock_mask"])


def test_one_trace_per_shape(built):
    before = build._build_core._cache_size()
    other = make_market(seed=5)  # same shapes, different data
    build_features(other.market, CFG)
    build_features(built.market, CFG)
    assert build._build_core._cache_size() - before <= 1  # at most the first build of CFG


def test_wrong_number_of_macro_names_is_a_data_error(built):
    with pytest.raises(DataError, match="macro: the market has 11 columns but 2 names"):
        build_features(built.market, CFG, macro_names=("vix", "crude"))
    dup = list(schema.MACRO_SERIES)
    dup[1] = "vix"
    with pytest.raises(DataError, match="'vix' appears twice"):
        build_features(built.market, CFG, macro_names=dup)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("norm_min_periods", 1, "features.norm_min_periods"),
        ("regime_source", "hmm", "features.regime_source"),
        ("corr_threshold", 1.5, "features.corr_threshold"),
        ("clip", 0.0, "features.clip"),
    ],
)
def test_bad_feature_config_names_the_key(built, field, value, match):
    with pytest.raises(ConfigError, match=match):
        build_features(built.market, dataclasses.replace(CFG, **{field: value}))


def test_latent_source_without_a_latent_regime_is_a_config_error():
    real = make_market(latent=False)
    with pytest.raises(ConfigError, match="no latent regime"):
        build_features(real.market, FeatureConfig(regime_source="latent"))


def test_feature_summary_reports_sizes_and_every_feature(built, feats):
    text = feature_summary(built.market, built.meta, feats)
    assert (
        "T=240 days (2021-01-04 .. " in text and "N=9/10 stocks" in text and "S=3/4 sectors" in text
    )
    for name in ("ret_1d", "sentiment", "vix_z", "portfolio_drawdown", "median_ret", "breadth"):
        assert name in text
    assert "regime_label: bull" in text and "adjacency: mean off-diagonal edge density" in text
    drawdown_line = next(line for line in text.splitlines() if "portfolio_drawdown" in line)
    assert " 0.0 " in drawdown_line  # never available here
