"""Sharpe-difference tests: hand computations, reproducibility, coverage, Holm."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from hrl_sarp_jax.evaluation import stats as st


def _pair(seed: int, n: int = 500, rho: float = 0.6, sr_gap: float = 0.0):
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n)
    return 0.0005 + sr_gap + 0.01 * z[:, 0], 0.0005 + 0.01 * z[:, 1]


def test_jobson_korkie_memmel_by_hand():
    a = np.array([0.01, -0.005, 0.02, 0.003, -0.01, 0.007])
    b = np.array([0.004, -0.002, 0.01, 0.006, -0.008, 0.001])
    n = 6
    ma, mb = a.sum() / n, b.sum() / n
    va = ((a - ma) ** 2).sum() / (n - 1)
    vb = ((b - mb) ** 2).sum() / (n - 1)
    cab = ((a - ma) * (b - mb)).sum() / (n - 1)
    sa, sb = va**0.5, vb**0.5
    # JK's form with Memmel's corrected theta
    theta = (2 * va * vb - 2 * sa * sb * cab + 0.5 * ma**2 * vb + 0.5 * mb**2 * va
             - ma * mb / (sa * sb) * cab**2) / n
    z = (sb * ma - sa * mb) / theta**0.5
    out = st.jobson_korkie_memmel(a, b)
    assert out["z"] == pytest.approx(z, rel=1e-10)
    assert out["p_value"] == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-10)
    assert out["diff"] == pytest.approx((ma / sa - mb / sb) * np.sqrt(252))


def test_bootstrap_reproducible_and_centred():
    a, b = _pair(0, sr_gap=0.0015)
    x = st.sharpe_diff_bootstrap(a, b, num=400, seed=5)
    y = st.sharpe_diff_bootstrap(a, b, num=400, seed=5)
    assert x == y
    z = st.sharpe_diff_bootstrap(a, b, num=400, seed=6)
    assert z["ci_low"] != x["ci_low"]
    assert x["ci_low"] < x["diff"] < x["ci_high"]
    assert x["significant"] and x["p_value"] < 0.05  # a large true gap is detected


def test_stationary_bootstrap_blocks():
    rng = np.random.default_rng(0)
    idx = st.stationary_bootstrap_indices(1000, 50, 10.0, rng)
    assert idx.shape == (50, 1000) and idx.min() >= 0 and idx.max() < 1000
    cont = (np.diff(idx, axis=1) % 1000) == 1
    assert 0.85 < cont.mean() < 0.95  # continue with prob 1 - 1/10 (+ rare random hits)


@pytest.mark.slow
def test_bootstrap_coverage_monte_carlo():
    """95% CIs cover the true Sharpe difference in most seeds (iid normal, known truth)."""
    gap = 0.0004
    true = gap / 0.01 * np.sqrt(252)
    cover = [st.sharpe_diff_bootstrap(*_pair(s, n=750, sr_gap=gap), num=500, seed=s)
             for s in range(60)]
    rate = np.mean([c["ci_low"] <= true <= c["ci_high"] for c in cover])
    assert rate >= 0.85


def test_holm_by_hand():
    adj, rej = st.holm([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_array_equal(rej, [True, False, False, True])
    d = st.holm({"a": 0.5, "b": 0.01})
    assert d["a"]["p_holm"] == 0.5 and d["b"]["p_holm"] == 0.02 and d["b"]["reject"]


def test_sign_and_seed_tests():
    a = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0.0])
    b = np.array([0, 1, 2, 3, 4, 5, 6, 7, 10, 0.0])
    s = st.sign_test(a, b)
    assert (s["positive"], s["negative"]) == (8, 1)
    assert s["p_value"] == pytest.approx(sps.binomtest(8, 9).pvalue)
    assert s["p_value"] == pytest.approx(2 * 10 / 512)  # P(X >= 8) + P(X <= 1), n = 9
    few = st.paired_seed_tests([1.0, 2.0], 0.5)
    assert few["t_p_value"] is None and "3 seeds" in few["note"]
    d = np.array([0.3, 0.5, 0.1, 0.4])
    res = st.paired_seed_tests(d + 1.0, 1.0)
    assert res["t_p_value"] == pytest.approx(sps.ttest_1samp(d, 0).pvalue)
    assert res["wilcoxon_p_value"] == pytest.approx(sps.wilcoxon(d).pvalue)
