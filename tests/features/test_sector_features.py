"""Sector node statistics and the correlation adjacency against pandas / np.corrcoef."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hrl_sarp_jax.features.featureset import SECTOR_FEATURES
from tests.features import reference as ref
from tests.features.conftest import CFG
from tests.features.make_market import PAD_SECTOR

W = CFG.corr_window
S_REAL = 3


def _sector_logret(ref_np):
    lr = np.log1p(ref_np["sector_returns"][:, :S_REAL])
    lr[0] = np.nan  # no return on the first day
    return pd.DataFrame(lr)


def _expected(ref_np):
    lr = _sector_logret(ref_np)
    roll = lr.rolling(W)
    mean, std = roll.mean(), roll.std()
    sc = pd.DataFrame(ref_np["sector_close"][:, :S_REAL])
    bench = pd.Series(ref_np["benchmark_close"])
    rs = sc.pct_change(65, fill_method=None).sub(bench.pct_change(65, fill_method=None), axis=0)
    raw20 = ref.stock_raw(ref_np)["ret_20d"]
    sector = ref_np["stock_sector"]
    with np.errstate(invalid="ignore"):  # 0/0 -> NaN before any member has a 20-day return
        breadth = np.stack(
            [
                np.nansum(raw20[:, sector == s] > 0, 1) / (~np.isnan(raw20[:, sector == s])).sum(1)
                for s in range(S_REAL)
            ],
            1,
        )
    cols = {
        "mean_ret": mean * 252,
        "std_ret": std * np.sqrt(252),
        "cum_ret": roll.sum(),
        "sharpe": mean / std * np.sqrt(252),
        "min_ret": roll.min() * np.sqrt(252),
        "max_ret": roll.max() * np.sqrt(252),
        "frac_pos": (lr > 0).astype(float).where(lr.notna()).rolling(W).mean(),
        "median_ret": roll.median() * 252,
        "rel_strength_13w": rs,
        "rotation_score": rs - rs.shift(20),
        "ret_1w": sc.pct_change(5, fill_method=None),
        "ret_4w": sc.pct_change(20, fill_method=None),
        "vol_20d": lr.rolling(20).std() * np.sqrt(252),
        "breadth": pd.DataFrame(breadth),
    }
    return {k: np.clip(v.to_numpy(), -CFG.clip, CFG.clip) for k, v in cols.items()}


def test_sector_features_match_pandas(feats_np, ref_np):
    expected = _expected(ref_np)
    mask = feats_np["sector_mask"][:, :S_REAL]
    all_ok = np.all([~np.isnan(expected[n]) for n in SECTOR_FEATURES], axis=0)
    np.testing.assert_array_equal(mask, all_ok)
    assert mask.any()
    for i, name in enumerate(SECTOR_FEATURES):
        got = feats_np["sector"][:, :S_REAL, i]
        np.testing.assert_allclose(
            got[mask], expected[name][mask], atol=2e-4, rtol=1e-4, err_msg=name
        )
        assert np.all(got[~mask] == 0), name


def test_rotation_features_gate_the_mask(feats_np):
    # rotation needs a 65-day return 20 days ago: first available row is 85
    mask = feats_np["sector_mask"][:, :S_REAL]
    assert not mask[:85].any() and mask[85].all()


def test_adjacency_matches_corrcoef(feats_np, ref_np):
    lr = _sector_logret(ref_np).to_numpy()
    adj = feats_np["adjacency"]
    for t in (W, W + 17, len(lr) - 1):
        corr = np.abs(np.corrcoef(lr[t - W + 1 : t + 1].T))
        want = np.where(corr >= CFG.corr_threshold, corr, 0.0)
        np.fill_diagonal(want, 1.0)
        np.testing.assert_allclose(adj[t, :S_REAL, :S_REAL], want, atol=1e-4)
    assert adj.dtype == np.float32


def test_adjacency_identity_before_history_and_padding_isolated(feats_np):
    adj = feats_np["adjacency"]
    eye = np.diag([1.0] * S_REAL + [0.0])
    np.testing.assert_array_equal(adj[:W], np.broadcast_to(eye, (W, 4, 4)))  # needs W+1 closes
    assert np.all(adj[:, PAD_SECTOR, :] == 0) and np.all(adj[:, :, PAD_SECTOR] == 0)
    np.testing.assert_array_equal(adj, np.swapaxes(adj, 1, 2))


def test_padding_sector_all_zero(feats_np):
    assert not feats_np["sector_mask"][:, PAD_SECTOR].any()
    assert np.all(feats_np["sector"][:, PAD_SECTOR] == 0)
