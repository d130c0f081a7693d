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


# --------------------------------------------------------------------------- over markets


def test_paired_over_markets_by_hand():
    # d = a - b = [1, 2, 3, 6]: mean 3, deviations -2, -1, 0, 3 -> sum of squares 14,
    # sd = sqrt(14 / 3); t_{0.975, 3} = 3.182446 (Student t table) -> half width
    # 3.182446 * sqrt(14 / 3) / 2 = 3.43744; t = 3 / sqrt(7 / 6) = 2.77746.
    a = np.array([1.5, 2.0, 3.25, 6.0])
    b = np.array([0.5, 0.0, 0.25, 0.0])
    out = st.paired_over_markets(a, b)
    sd = np.sqrt(14 / 3)
    assert out["mean"] == pytest.approx(3.0, abs=1e-12)
    assert out["sd"] == pytest.approx(sd, abs=1e-12)
    assert out["ci95"] == pytest.approx([3 - 3.182446 * sd / 2, 3 + 3.182446 * sd / 2], abs=1e-5)
    assert out["ci95"][0] == pytest.approx(-0.43744, abs=1e-5)
    assert (out["wins"], out["n"]) == (4, 4)
    assert not out["significant"]                     # the interval holds 0 ...
    assert out["p_value"] == pytest.approx(2 * sps.t.sf(3 * np.sqrt(6 / 7), 3), rel=1e-12)
    assert 0.05 < out["p_value"] < 0.10               # ... and p (0.069) is above 0.05


def test_paired_over_markets_matches_scipy():
    rng = np.random.default_rng(11)
    a = rng.normal(1.0, 1.0, 40)
    b = a - rng.normal(0.4, 0.7, 40)
    out = st.paired_over_markets(a, b, alpha=0.1)
    d = a - b
    t = sps.ttest_1samp(d, 0.0)
    lo, hi = sps.t.interval(0.9, d.size - 1, loc=d.mean(), scale=sps.sem(d))
    assert out["p_value"] == pytest.approx(t.pvalue, rel=1e-10)
    assert out["ci95"] == pytest.approx([lo, hi], rel=1e-12)
    assert out["sd"] == pytest.approx(d.std(ddof=1), rel=1e-12)
    assert out["wins"] == int(np.sum(d > 0)) and out["significant"] == (lo > 0 or hi < 0)
    assert out["significant"] and out["p_value"] < 0.1   # a true gap of 0.4 over 40 markets


def test_paired_over_markets_edge_cases_and_errors():
    one = st.paired_over_markets([1.2], [0.2])
    assert one["mean"] == pytest.approx(1.0) and one["ci95"] == [None, None]
    assert one["sd"] is None and one["p_value"] is None and not one["significant"]
    flat = st.paired_over_markets([2.0, 3.0, 4.0], [1.5, 2.5, 3.5])   # d = 0.5 everywhere
    assert flat["ci95"] == pytest.approx([0.5, 0.5]) and flat["p_value"] == 0.0
    assert flat["significant"] and flat["wins"] == 3
    with pytest.raises(ValueError, match="paired_over_markets: a and b must be paired"):
        st.paired_over_markets([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="b holds NaN"):
        st.paired_over_markets([1.0, 2.0], [1.0, np.nan])
    with pytest.raises(ValueError, match="a must be a 1-D array"):
        st.paired_over_markets([], [])
    with pytest.raises(ValueError, match="alpha must be in"):
        st.paired_over_markets([1.0, 2.0], [0.0, 0.0], alpha=5)


def test_ratio_of_means_by_hand_and_degenerate_bootstrap():
    # a ratio of means, not a mean of ratios: (1 + 3 + 2) / 3 over (2 + 2 + 8) / 3 = 6 / 12
    out = st.ratio_of_means_bootstrap([1.0, 3.0, 2.0], [2.0, 2.0, 8.0], num_boot=200)
    assert out["value"] == pytest.approx(0.5, abs=1e-12)
    assert np.mean(np.array([1.0, 3.0, 2.0]) / [2.0, 2.0, 8.0]) != pytest.approx(0.5)
    # every market has num = 0.4 den, so every resample's ratio of means is 0.4 exactly
    den = np.array([0.3, 1.7, 0.9, 2.2, 0.5])
    same = st.ratio_of_means_bootstrap(0.4 * den, den, num_boot=500, seed=3)
    assert same["value"] == pytest.approx(0.4, abs=1e-12)
    assert same["ci95"] == pytest.approx([0.4, 0.4], abs=1e-12) and same["n"] == 5
    none = st.ratio_of_means_bootstrap([1.0, 2.0], [1.0, -1.0])
    assert none["value"] is None and none["ci95"] == [None, None]
    with pytest.raises(ValueError, match="num_boot must be a positive integer"):
        st.ratio_of_means_bootstrap([1.0], [1.0], num_boot=0)
    with pytest.raises(ValueError, match="num and den must be paired"):
        st.ratio_of_means_bootstrap([1.0, 2.0], [1.0])


def test_ratio_of_means_bootstrap_is_seeded_and_covers_its_value():
    rng = np.random.default_rng(5)
    den = rng.normal(1.0, 0.3, 30)
    num = 0.6 * den + rng.normal(0.0, 0.4, 30)
    x = st.ratio_of_means_bootstrap(num, den, num_boot=1000, seed=9)
    assert x == st.ratio_of_means_bootstrap(num, den, num_boot=1000, seed=9)
    assert x["ci95"] != st.ratio_of_means_bootstrap(num, den, num_boot=1000, seed=10)["ci95"]
    assert x["ci95"][0] < x["value"] < x["ci95"][1]
    assert x["value"] == pytest.approx(num.mean() / den.mean(), rel=1e-12)
    # the percentile interval by hand from the same generator stream
    idx = np.random.default_rng(9).integers(0, 30, size=(1000, 30))
    ratios = num[idx].mean(1) / den[idx].mean(1)
    assert x["ci95"] == pytest.approx(list(np.quantile(ratios, [0.025, 0.975])), rel=1e-12)
