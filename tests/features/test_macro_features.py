"""Macro features against pandas, missing series, and the published event schedule."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.data import schema
from hrl_sarp_jax.features.build import build_features
from hrl_sarp_jax.features.featureset import MACRO_FEATURES, macro_feature_names
from hrl_sarp_jax.features.macro import event_features
from tests.features import reference as ref
from tests.features.conftest import CFG
from tests.features.make_market import to_market


def _col(name):
    return MACRO_FEATURES.index(name)


def _check(feats_np, name, expected, atol=1e-5):
    got, mask = feats_np["macro"][:, _col(name)], feats_np["macro_mask"][:, _col(name)]
    want = ~np.isnan(expected)
    np.testing.assert_array_equal(mask, want, err_msg=f"{name}: mask")
    assert np.all(got[~mask] == 0)
    np.testing.assert_allclose(got[mask], expected[want], atol=atol, rtol=0, err_msg=name)


@pytest.fixture(scope="module")
def series(ref_np):
    mac, mask = ref_np["macro"], ref_np["macro_mask"]
    return {
        n: pd.Series(np.where(mask[:, i], mac[:, i], np.nan))
        for i, n in enumerate(schema.MACRO_SERIES)
    }


def test_zscored_series(feats_np, series):
    z = lambda s, w, m: ref.rolling_z(s.to_numpy()[:, None], w, m, 3.0)[:, 0]  # noqa: E731
    _check(feats_np, "vix_z", z(series["vix"], 252, 20), 1e-4)
    _check(feats_np, "fii_flow_z", z(series["fii_flow"], 60, 10), 1e-4)
    _check(feats_np, "dii_flow_z", z(series["dii_flow"], 60, 10), 1e-4)
    _check(
        feats_np,
        "credit_spread",
        z(series["credit_spread"], CFG.norm_window, CFG.norm_min_periods),
        1e-4,
    )
    # fii starts on day 30: needs 10 values
    mask = feats_np["macro_mask"][:, _col("fii_flow_z")]
    assert not mask[:39].any() and mask[39]


def test_transformed_levels_and_changes(feats_np, series):
    s = series
    _check(feats_np, "vix_chg_1w", (s["vix"] / s["vix"].shift(5) - 1).clip(-1, 1).to_numpy())
    _check(feats_np, "pcr", (s["put_call_ratio"] - 1).clip(-1, 1).to_numpy())
    _check(
        feats_np,
        "usdinr_mom",
        (10 * (s["usd_inr"] / s["usd_inr"].shift(20) - 1)).clip(-1, 1).to_numpy(),
    )
    crude = s["crude"].to_numpy()
    _check(feats_np, "crude_regime", np.digitize(crude, [60, 80, 100]) / 3.0)
    _check(feats_np, "policy_rate", ((s["policy_rate"] - 4) / 4).clip(0, 1).to_numpy())
    _check(feats_np, "yield_slope", ((s["gsec_10y"] - s["policy_rate"]).clip(-2, 4) / 4).to_numpy())
    _check(feats_np, "fno_oi_chg", (s["fno_oi"] / s["fno_oi"].shift(5) - 1).clip(-1, 1).to_numpy())


def test_index_return_vol_and_breadth(feats_np, ref_np, built):
    lb = pd.Series(np.log(ref_np["benchmark_close"]))
    _check(feats_np, "index_ret_4w", (lb - lb.shift(20)).clip(-0.3, 0.3).to_numpy(), 1e-5)
    _check(
        feats_np,
        "index_vol_4w",
        (lb.diff().rolling(20).std() * np.sqrt(252)).clip(0, 1).to_numpy(),
        1e-4,
    )
    raw20 = ref.stock_raw(ref_np)["ret_20d"]
    n_ok = (~np.isnan(raw20)).sum(1)
    breadth = np.where(n_ok > 0, (raw20 > 0).sum(1) / np.maximum(n_ok, 1), np.nan)
    _check(feats_np, "breadth", breadth, 1e-6)


def test_regime_prev_encodes_the_rule_regime(feats_np):
    rule = feats_np["regime_rule"]
    expected = np.where(rule < 0, np.nan, np.select([rule == 0, rule == 1], [1.0, -1.0], 0.0))
    _check(feats_np, "regime_prev", expected, 0)
    assert not feats_np["macro_mask"][:, _col("portfolio_drawdown")].any()


def test_event_schedule_hand_computed():
    # events on days 2 and 9; schedule known for days 0..11 of 14
    sched = np.zeros(14, np.float32)
    sched[[2, 9]] = 1.0
    known = np.arange(14) < 12
    flag, flag_ok, days, days_ok = jax.jit(event_features)(jnp.asarray(sched), jnp.asarray(known))
    np.testing.assert_array_equal(np.asarray(flag), [1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0])
    # flag needs t+1..t+3 known unless an event was found: day 9 -> days 10, 11, 12 (12 unknown)
    np.testing.assert_array_equal(np.asarray(flag_ok), np.arange(14) <= 8)
    # day 0: next event in 2 days; day 2: next in 7 (day 9); day 9: none known ahead
    np.testing.assert_allclose(np.asarray(days)[[0, 1, 2, 8]], np.array([2, 1, 7, 1]) / 20)
    assert bool(days_ok[0]) and bool(days_ok[2]) and not bool(days_ok[9])


def test_missing_series_give_zero_and_mask_false(built):
    names = list(schema.MACRO_SERIES)
    names[names.index("vix")] = "not_a_known_series"
    names[names.index("event_flag")] = "also_unknown"
    feats = build_features(built.market, CFG, macro_names=names)  # same shapes: no recompile
    macro, mask = np.asarray(feats.macro), np.asarray(feats.macro_mask)
    for name in ("vix_z", "vix_chg_1w", "event_flag", "days_to_event"):
        assert not mask[:, _col(name)].any() and np.all(macro[:, _col(name)] == 0), name
    assert mask[:, _col("pcr")].all()


# ----------------------------------------------------------------- features.macro_levels

LEVELS = dataclasses.replace(CFG, macro_levels=True)


@pytest.fixture(scope="module")
def levels_np(built):
    f = build_features(built.market, LEVELS)
    return np.asarray(f.macro), np.asarray(f.macro_mask)


def test_level_features_against_pandas(levels_np, feats_np, series, ref_np):
    macro, mask = levels_np
    assert macro.shape[1] == len(macro_feature_names(True)) == 24
    # the 18 are the same features (another program: float32 rounding only)
    np.testing.assert_array_equal(mask[:, :18], feats_np["macro_mask"])
    np.testing.assert_allclose(macro[:, :18], feats_np["macro"], atol=1e-6, rtol=0)
    names = macro_feature_names(True)

    def check(name, expected, atol):
        i = names.index(name)
        want = ~np.isnan(expected)
        np.testing.assert_array_equal(mask[:, i], want, err_msg=f"{name}: mask")
        assert np.all(macro[~mask[:, i], i] == 0)
        np.testing.assert_allclose(macro[mask[:, i], i], expected[want], atol=atol, rtol=0,
                                   err_msg=name)

    for feat, ser in (("vix_ma20_z", "vix"), ("fii_flow_ma20_z", "fii_flow"),
                      ("dii_flow_ma20_z", "dii_flow"), ("credit_spread_ma20_z", "credit_spread")):
        ma = series[ser].rolling(20, min_periods=10).mean()
        roll = ma.rolling(CFG.norm_window, min_periods=60)
        check(feat, ((ma - roll.mean()) / roll.std()).clip(-3, 3).to_numpy(), 2e-4)
    pcr = series["put_call_ratio"].rolling(20, min_periods=10).mean()
    check("pcr_ma20", (pcr - 1).clip(-1, 1).to_numpy(), 1e-5)
    lb = pd.Series(np.log(ref_np["benchmark_close"]))
    check("index_ret_13w", (lb - lb.shift(60)).clip(-0.5, 0.5).to_numpy(), 1e-5)
    # fii starts on day 30: 10 values for the mean (day 39), then 60 means for the z (day 98)
    fii = mask[:, names.index("fii_flow_ma20_z")]
    assert not fii[:98].any() and fii[98]


def test_level_features_are_causal(built, levels_np):
    """Every input after t replaced: the 24 columns up to t are bitwise unchanged."""
    from tests.features.test_causality import _perturb_after

    t = 150
    f = build_features(to_market(_perturb_after(built.np, t, seed=t, keep_schedule=True)), LEVELS)
    macro, mask = levels_np
    np.testing.assert_array_equal(np.asarray(f.macro)[: t + 1], macro[: t + 1])
    np.testing.assert_array_equal(np.asarray(f.macro_mask)[: t + 1], mask[: t + 1])
    assert not np.array_equal(np.asarray(f.macro)[t + 1:, 18:], macro[t + 1:, 18:])


def test_level_features_of_a_missing_series_are_masked(built, levels_np):
    """A market without VIX (e.g. one imported without it): its level feature is 0 with mask
    False on every day, the others are untouched (same shapes: the compiled builder is reused)."""
    names = list(schema.MACRO_SERIES)
    names[names.index("vix")] = "not_a_known_series"
    f = build_features(built.market, LEVELS, macro_names=names)
    macro, mask = np.asarray(f.macro), np.asarray(f.macro_mask)
    cols = macro_feature_names(True)
    i = cols.index("vix_ma20_z")
    assert not mask[:, i].any() and np.all(macro[:, i] == 0)
    j = cols.index("fii_flow_ma20_z")
    np.testing.assert_array_equal(mask[:, j], levels_np[1][:, j])
    np.testing.assert_array_equal(macro[:, j], levels_np[0][:, j])


def test_regime_hmm_features_come_last_and_are_the_filters():
    """features.regime_hmm: three columns after the 18 and the six levels, equal to
    ``features.hmm.regime_probabilities`` of the index closes (another program), on a market
    long enough for two refits."""
    from hrl_sarp_jax.features.featureset import MACRO_HMM_FEATURES, macro_names_for_width
    from hrl_sarp_jax.features.hmm import regime_probabilities
    from tests.features.make_market import make_market

    long = make_market(num_days=800)
    f = build_features(long.market, dataclasses.replace(LEVELS, regime_hmm=True))
    macro, mask = np.asarray(f.macro), np.asarray(f.macro_mask)
    assert macro.shape[1] == 27 and macro_names_for_width(27)[-3:] == MACRO_HMM_FEATURES
    plain = build_features(long.market, LEVELS)
    np.testing.assert_allclose(macro[:, :24], np.asarray(plain.macro), atol=1e-6, rtol=0)
    probs, ok = (np.asarray(a) for a in jax.jit(regime_probabilities)(
        long.market.benchmark_close))
    np.testing.assert_array_equal(mask[:, 24:], ok)
    assert ok[504:].all() and not ok[:504].any()
    np.testing.assert_allclose(macro[:, 24:], probs, atol=1e-5)
    np.testing.assert_allclose(macro[504:, 24:].sum(1), 1.0, rtol=1e-5)
    assert macro_names_for_width(21) == (*MACRO_FEATURES, *MACRO_HMM_FEATURES)
