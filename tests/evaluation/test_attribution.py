"""Attribution: hand-built Brinson-Fachler, Carino linking, turnover by source, regime scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from hrl_sarp_jax.evaluation import attribution as at

# ---------------------------------------------------------------- the hand-built case
# 2 sectors x 2 stocks (stocks 0, 1 in sector 0; 2, 3 in sector 1), 3 days, all active, so the
# benchmark holds 0.25 of each stock every day.
SEC = np.array([0, 0, 1, 1])
W_P = np.array([[0.4, 0.2, 0.3, 0.0],     # day 1: 0.1 cash
                [0.0, 0.5, 0.25, 0.25],   # day 2: fully invested
                [0.5, 0.5, 0.0, 0.0]])    # day 3: skips sector 1
R = np.array([[0.02, -0.01, 0.01, 0.03],
              [0.05, 0.0, -0.02, -0.04],
              [0.01, 0.03, 0.02, 0.0]])
# Day 1: Rb_0 = 0.005, Rb_1 = 0.02, Rb = 0.0125; Wp = (0.6, 0.3, cash 0.1),
#   Rp_0 = (0.008 - 0.002) / 0.6 = 0.01, Rp_1 = 0.003 / 0.3 = 0.01, Rp = 0.009.
#   A = 0.1(0.005 - 0.0125) = -0.00075, -0.2(0.02 - 0.0125) = -0.0015, cash 0.1(0 - 0.0125)
#   = -0.00125 -> -0.0035; S = 0.5(0.01 - 0.005) = 0.0025, 0.5(0.01 - 0.02) = -0.005;
#   I = 0.1 * 0.005 = 0.0005, -0.2 * -0.01 = 0.002; A + S + I = -0.0035 = Rp - Rb.
# Day 2: Rb_0 = 0.025, Rb_1 = -0.03, Rb = -0.0025; Wp = (0.5, 0.5), Rp_0 = 0, Rp_1 = -0.03,
#   Rp = -0.015: only selection, S_0 = 0.5(0 - 0.025) = -0.0125 = Rp - Rb.
# Day 3: Rb_0 = 0.02, Rb_1 = 0.01, Rb = 0.015; Wp = (1, 0), Rp_0 = 0.02, Rp_1 borrows Rb_1:
#   only allocation, 0.5(0.02 - 0.015) + (-0.5)(0.01 - 0.015) = 0.005 = Rp - Rb.
RP = np.array([0.009, -0.015, 0.02])
RB = np.array([0.0125, -0.0025, 0.015])
A_DAY = np.array([[-0.00075, -0.0015, -0.00125], [0, 0, 0], [0.0025, 0.0025, 0]])
S_DAY = np.array([[0.0025, -0.005, 0], [-0.0125, 0, 0], [0, 0, 0]])
I_DAY = np.array([[0.0005, 0.002, 0], [0, 0, 0], [0, 0, 0]])
# Window: prod(1 + RP) = 1.009 * 0.985 * 1.02 = 1.0137423, prod(1 + RB) = 1.0125 * 0.9975
# * 1.015 = 1.02511828125: geometric excess 0.0137423 - 0.02511828125 = -0.01137598125.
# Carino k = (0.98936532, 1.00884061, 0.98280296), K = 0.98095023, so linked
# allocation = (-0.0035 k1 + 0.005 k3) / K = 0.00147942, selection = (-0.0025 k1 - 0.0125 k2)
# / K = -0.01537685, interaction = 0.0025 k1 / K = 0.00252145; sum -0.01137598.
GEO_EXCESS = 1.0137423 - 1.02511828125


def _carino_ref(rp, rb):
    """k_t and K from the textbook logs (no log1p), for rp != rb."""
    k = (np.log(1 + rp) - np.log(1 + rb)) / (rp - rb)
    Rp, Rb = np.prod(1 + rp) - 1, np.prod(1 + rb) - 1
    return k, (np.log(1 + Rp) - np.log(1 + Rb)) / (Rp - Rb)


def test_equal_weight_benchmark_by_hand():
    sec = np.array([0, 0, 0, 1, 2])
    active = np.array([[1, 1, 1, 1, 1],     # 3 sectors: 1/3 each, sector 0 split 3 ways
                       [1, 0, 0, 1, 0],     # sectors 0 and 1 only: 1/2 each
                       [0, 1, 1, 0, 0],     # sector 0 alone: 1/2 and 1/2
                       [0, 0, 0, 0, 0]], bool)  # nothing tradable: all cash
    want = np.array([[1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 3],
                     [0.5, 0, 0, 0.5, 0],
                     [0, 0.5, 0.5, 0, 0],
                     [0, 0, 0, 0, 0]])
    np.testing.assert_allclose(at.equal_weight_benchmark(sec, active), want, atol=1e-15)
    np.testing.assert_allclose(at.equal_weight_benchmark(sec, active[1]), want[1], atol=1e-15)


def test_brinson_fachler_hand_case():
    wb = at.equal_weight_benchmark(SEC, np.ones((3, 4), bool))
    np.testing.assert_allclose(wb, 0.25)
    bf = at.brinson_fachler_daily(W_P, wb, R, SEC, 2)
    np.testing.assert_allclose(bf["r_p"], RP, atol=1e-15)
    np.testing.assert_allclose(bf["r_b"], RB, atol=1e-15)
    np.testing.assert_allclose(bf["allocation"], A_DAY, atol=1e-15)
    np.testing.assert_allclose(bf["selection"], S_DAY, atol=1e-15)
    np.testing.assert_allclose(bf["interaction"], I_DAY, atol=1e-15)
    np.testing.assert_allclose(bf["weight_p"][0], [0.6, 0.3, 0.1], atol=1e-15)
    np.testing.assert_allclose(bf["return_p"][2], [0.02, 0.01, 0.0], atol=1e-15)  # borrowed
    # the attribution sums to the excess return every day (no leftover term)
    total = bf["allocation_total"] + bf["selection_total"] + bf["interaction_total"]
    np.testing.assert_allclose(total, RP - RB, atol=1e-15)
    np.testing.assert_allclose(bf["excess"], RP - RB, atol=1e-15)


def test_brinson_fachler_sector_missing_from_the_benchmark_is_allocation():
    # stocks 2, 3 are untradable (benchmark 0.5 / 0.5 in sector 0) but the book still holds
    # 0.4 of stock 2. Rb_0 = 0.02 = Rb; Rp_0 = 0.01, Rp_1 = -0.05 and Rb_1 borrows -0.05:
    # A = (-0.4)(0.02 - 0.02) = 0, 0.4(-0.05 - 0.02) = -0.028; S = 1(0.01 - 0.02) = -0.01, 0;
    # I = (-0.4)(-0.01) = 0.004, 0; sum -0.034 = Rp - Rb = (0.006 - 0.02) - 0.02.
    wb = at.equal_weight_benchmark(SEC, np.array([[1, 1, 0, 0]], bool))
    np.testing.assert_allclose(wb, [[0.5, 0.5, 0, 0]])
    bf = at.brinson_fachler_daily([[0.6, 0, 0.4, 0]], wb, [[0.01, 0.03, -0.05, 0.0]], SEC)
    np.testing.assert_allclose(bf["allocation"][0], [0, -0.028, 0], atol=1e-15)
    np.testing.assert_allclose(bf["selection"][0], [-0.01, 0, 0], atol=1e-15)
    np.testing.assert_allclose(bf["interaction"][0], [0.004, 0, 0], atol=1e-15)
    assert bf["excess"][0] == pytest.approx(-0.034, abs=1e-15)


def test_brinson_fachler_sums_on_random_books():
    rng = np.random.default_rng(0)
    t, n, s = 40, 9, 3
    sec = rng.integers(0, s, n)
    wp = rng.dirichlet(np.ones(n), t) * rng.uniform(0.5, 1.0, (t, 1))   # with cash
    wp[rng.random((t, n)) < 0.3] = 0.0                                   # empty sectors too
    active = rng.random((t, n)) < 0.8
    wb = at.equal_weight_benchmark(sec, active)
    r = rng.normal(0, 0.02, (t, n))
    bf = at.brinson_fachler_daily(wp, wb, r, sec, s)
    np.testing.assert_allclose(bf["r_p"], (wp * r).sum(1), atol=1e-15)
    np.testing.assert_allclose(bf["allocation"].sum(1) + bf["selection"].sum(1)
                               + bf["interaction"].sum(1), bf["r_p"] - bf["r_b"], atol=1e-15)


def test_carino_hand_case_sums_to_geometric_excess():
    k, K = at.carino_factors(RP, RB)
    k_ref, K_ref = _carino_ref(RP, RB)
    np.testing.assert_allclose(k, k_ref, rtol=1e-10)
    assert K == pytest.approx(K_ref, rel=1e-10)
    np.testing.assert_allclose(k, [0.98936532, 1.00884061, 0.98280296], atol=1e-8)
    eff = np.stack([A_DAY.sum(1), S_DAY.sum(1), I_DAY.sum(1)], axis=1)   # [T, 3]
    linked = at.carino_link(eff, RP, RB)
    np.testing.assert_allclose(linked, [0.00147942, -0.01537685, 0.00252145], atol=1e-8)
    assert linked.sum() == pytest.approx(GEO_EXCESS, abs=1e-15)


def test_carino_random_case_and_equal_days():
    rng = np.random.default_rng(1)
    t = 250
    rp, rb = rng.normal(5e-4, 0.015, t), rng.normal(3e-4, 0.012, t)
    rp[7] = rb[7]                      # a day with no excess: k = 1 / (1 + r)
    rp[8] = rb[8] + 1e-13              # and a nearly equal one
    split = rng.dirichlet(np.ones(4), t) * 3 - 0.5                 # 4 effects summing to 1
    eff = split * (rp - rb)[:, None]
    linked = at.carino_link(eff, rp, rb)
    geo = np.prod(1 + rp) - np.prod(1 + rb)
    assert linked.sum() == pytest.approx(geo, abs=1e-14)
    k, _ = at.carino_factors(rp, rb)
    assert k[7] == pytest.approx(1 / (1 + rb[7]), rel=1e-15)
    assert k[8] == pytest.approx(1 / (1 + rb[8]), rel=1e-12)
    ok = np.abs(rp - rb) > 1e-6
    np.testing.assert_allclose(k[ok], _carino_ref(rp[ok], rb[ok])[0], rtol=1e-9)


def test_single_day_link_is_plain_brinson_fachler():
    wb = np.full((1, 4), 0.25)
    bf = at.brinson_fachler_daily(W_P[:1], wb, R[:1], SEC, 2)
    for name in ("allocation", "selection", "interaction"):
        np.testing.assert_allclose(at.carino_link(bf[name], bf["r_p"], bf["r_b"]), bf[name][0],
                                   rtol=1e-13)
    out = at.decision_attribution(W_P[:1], R[:1], SEC, np.ones((1, 4), bool), RP[:1], RP[:1])
    assert out["allocation"] == pytest.approx(-0.0035, abs=1e-15)
    assert out["selection"] == pytest.approx(-0.0025, abs=1e-15)
    assert out["interaction"] == pytest.approx(0.0025, abs=1e-15)
    assert out["per_sector"]["cash"]["allocation"] == pytest.approx(-0.00125, abs=1e-15)
    assert out["per_sector"]["1"]["selection"] == pytest.approx(-0.005, abs=1e-15)


def test_decision_attribution_hand_case():
    active = np.ones((3, 4), bool)
    cost = np.array([0.001, 0.0, 0.0005])
    net = RP - cost
    net_norisk = np.array([0.012, -0.02, 0.02])
    out = at.decision_attribution(W_P, R, SEC, active, RP, net, net_norisk=net_norisk)
    assert out["rule"] == at.RULE
    assert out["allocation"] == pytest.approx(0.00147942, abs=1e-8)
    assert out["selection"] == pytest.approx(-0.01537685, abs=1e-8)
    assert out["interaction"] == pytest.approx(0.00252145, abs=1e-8)
    assert out["total_excess_gross"] == pytest.approx(GEO_EXCESS, abs=1e-15)
    # costs: 1.008 * 0.985 * 1.0195 - 1.0137423 = 1.01224446 - 1.0137423 = -0.00150114
    assert out["costs"] == pytest.approx(1.008 * 0.985 * 1.0195 - 1.0137423, abs=1e-15)
    assert out["costs"] < 0
    assert out["total_excess_net"] == pytest.approx(1.008 * 0.985 * 1.0195 - 1.02511828125,
                                                    abs=1e-15)
    # the components explain the net excess return: nothing is left over
    assert abs(out["residual"]) < 1e-15
    assert out["gross_matches_weights"] and out["gross_gap_max_daily"] < 1e-15
    # risk manager: 1.008 * 0.985 * 1.0195 - 1.012 * 0.98 * 1.02 = 1.01224446 - 1.0115952
    assert out["risk_manager"] == pytest.approx(1.008 * 0.985 * 1.0195 - 1.012 * 0.98 * 1.02,
                                                abs=1e-15)
    ps = out["per_sector"]
    assert set(ps) == {"0", "1", "cash"}
    assert sum(v["allocation"] for v in ps.values()) == pytest.approx(out["allocation"])
    # sector 0 selection: (0.0025 k1 - 0.0125 k2) / K
    k, K = _carino_ref(RP, RB)
    assert ps["0"]["selection"] == pytest.approx((0.0025 * k[0] - 0.0125 * k[1]) / K, rel=1e-10)
    assert "without_risk_manager" not in out      # only with w_norisk


def test_decision_attribution_reports_a_gross_gap_as_residual():
    active = np.ones((3, 4), bool)
    gross = RP + np.array([0.002, 0.0, 0.0])   # the caller's gross disagrees on day 1
    out = at.decision_attribution(W_P, R, SEC, active, gross, gross)
    gap = 1.011 * 0.985 * 1.02 - 1.0137423     # G(gross) - G(w . r)
    assert out["residual"] == pytest.approx(gap, abs=1e-15)
    assert out["gross_gap_max_daily"] == pytest.approx(0.002, abs=1e-15)
    assert not out["gross_matches_weights"]
    assert out["costs"] == 0.0
    parts = out["allocation"] + out["selection"] + out["interaction"] + out["residual"]
    assert parts == pytest.approx(out["total_excess_net"], abs=1e-15)


def test_decision_attribution_without_risk_manager_split():
    active = np.ones((3, 4), bool)
    w0 = np.full((3, 4), 0.25)                  # the replay held the benchmark itself
    net0 = RB - 0.0005
    out = at.decision_attribution(W_P, R, SEC, active, RP, RP, w_norisk=w0, net_norisk=net0)
    wr = out["without_risk_manager"]
    assert wr["allocation"] == wr["selection"] == wr["interaction"] == 0.0
    assert wr["costs_and_residual"] == pytest.approx(np.prod(1 + net0) - np.prod(1 + RB),
                                                     abs=1e-15)
    assert out["risk_manager"] == pytest.approx(1.0137423 - np.prod(1 + net0), abs=1e-15)


def test_decision_attribution_random_window_adds_up():
    rng = np.random.default_rng(2)
    t, n, s = 120, 12, 4
    sec = np.repeat(np.arange(s), 3)
    active = rng.random((t, n)) < 0.9
    w = rng.dirichlet(np.ones(n), t) * 0.95 * active
    r = rng.normal(4e-4, 0.02, (t, n))
    gross = (w * r).sum(1)
    net = gross - rng.uniform(0, 5e-4, t)
    out = at.decision_attribution(w, r, sec, active, gross, net, num_sectors=s)
    rb = (at.equal_weight_benchmark(sec, active) * r).sum(1)
    assert out["benchmark"] == pytest.approx(np.prod(1 + rb) - 1, rel=1e-12)
    parts = out["allocation"] + out["selection"] + out["interaction"] + out["costs"]
    assert parts == pytest.approx(out["total_excess_net"], abs=1e-13)
    assert abs(out["residual"]) < 1e-13
    assert out["total_excess_net"] - out["total_excess_gross"] == pytest.approx(out["costs"])


# ---------------------------------------------------------------- turnover
TSEC = np.array([0, 0, 1, 1])
# one day each: (a) exposure cut 1 -> 0.5, (b) sector rotation 0.5/0.5 -> 0.7/0.3 keeping the
# 3:2 proportions inside each sector, (c) a swap of one name for another inside sector 0,
# (d) re-weighting between the two held names of sector 0.
W_DRIFT = np.array([[0.25, 0.25, 0.25, 0.25],
                    [0.30, 0.20, 0.30, 0.20],
                    [0.30, 0.00, 0.35, 0.35],
                    [0.30, 0.20, 0.25, 0.25]])
W_NEW = np.array([[0.125, 0.125, 0.125, 0.125],   # tau = 1/2 * 0.5 = 0.25
                  [0.42, 0.28, 0.18, 0.12],       # tau = 1/2 (0.12 + 0.08 + 0.12 + 0.08) = 0.2
                  [0.00, 0.30, 0.35, 0.35],       # tau = 1/2 (0.3 + 0.3) = 0.3
                  [0.20, 0.30, 0.25, 0.25]])      # tau = 1/2 (0.1 + 0.1) = 0.1
PURE = {"exposure": [0.25, 0, 0, 0], "macro": [0, 0.2, 0, 0], "support": [0, 0, 0.3, 0],
        "micro": [0, 0, 0, 0.1]}


def test_turnover_pure_cases_move_one_source_each():
    d = at.turnover_split_daily(W_DRIFT, W_NEW, TSEC)
    np.testing.assert_allclose(d["total"], [0.25, 0.2, 0.3, 0.1], atol=1e-15)
    for k, want in PURE.items():
        np.testing.assert_allclose(d[k], want, atol=1e-15, err_msg=k)


def test_turnover_sector_exit_is_macro():
    # leave sector 0 for sector 1: names leave and enter the book, but whole sectors move
    d = at.turnover_split_daily([[0.5, 0.5, 0, 0]], [[0, 0, 0.5, 0.5]], TSEC)
    assert d["total"][0] == pytest.approx(1.0)
    assert d["macro"][0] == pytest.approx(1.0)
    assert d["support"][0] == d["micro"][0] == d["exposure"][0] == 0.0


def test_turnover_mixed_day_by_hand():
    sec = np.array([0, 0, 0, 1, 1])
    # sector 0: stock 0 leaves (-0.3), stock 1 kept (+0.1), stock 2 enters (+0.1):
    #   B = 0.2 (0.1 entering), S = 0.3 (all leaving), dW = -0.1, matched m = 0.2;
    # sector 1: +0.05 +0.05, B = 0.1, S = 0, dW = +0.1; dE = 0.
    # exposure 0; macro = min(0.1, 0.1) = 0.1; support = 1/2 * 0.2 (0.1/0.2 + 0.3/0.3) = 0.15;
    # micro = 0.2 - 0.15 = 0.05; total = 1/2 (0.3 + 0.1 + 0.1 + 0.05 + 0.05) = 0.3.
    d = at.turnover_split_daily([[0.3, 0.2, 0.0, 0.2, 0.2]], [[0.0, 0.3, 0.1, 0.25, 0.25]], sec)
    got = {k: float(v[0]) for k, v in d.items()}
    assert got == pytest.approx({"exposure": 0.0, "macro": 0.1, "support": 0.15,
                                 "micro": 0.05, "total": 0.3}, abs=1e-15)


def test_turnover_held_tol():
    # a 1e-9 leftover counts as held by default (a re-weighting), not with held_tol = 1e-6
    wd, wn = [[0.3, 1e-9, 0.35, 0.35]], [[1e-9, 0.3, 0.35, 0.35]]
    d = at.turnover_split_daily(wd, wn, TSEC)
    assert d["micro"][0] == pytest.approx(0.3 - 1e-9) and d["support"][0] == 0.0
    d = at.turnover_split_daily(wd, wn, TSEC, held_tol=1e-6)
    assert d["support"][0] == pytest.approx(0.3 - 1e-9) and d["micro"][0] == 0.0


def test_turnover_random_split_is_exact_and_nonnegative():
    rng = np.random.default_rng(3)
    t, n = 200, 10
    sec = rng.integers(0, 3, n)
    wd = rng.dirichlet(np.ones(n), t) * rng.uniform(0.6, 1, (t, 1))
    wn = rng.dirichlet(np.ones(n), t) * rng.uniform(0.6, 1, (t, 1))
    wd[rng.random((t, n)) < 0.3] = 0.0
    wn[rng.random((t, n)) < 0.3] = 0.0
    d = at.turnover_split_daily(wd, wn, sec)
    parts = sum(d[k] for k in at.TURNOVER_SOURCES)
    np.testing.assert_allclose(parts, 0.5 * np.abs(wn - wd).sum(1), atol=1e-15)
    for k in at.TURNOVER_SOURCES:
        assert np.all(d[k] >= -1e-16), k


def test_turnover_by_source_annualises():
    out = at.turnover_by_source(W_DRIFT, W_NEW, TSEC)
    # mean daily x 252 = sum / 4 x 252 = sum x 63
    assert out["days"] == 4
    assert out["exposure"] == pytest.approx(0.25 * 63)
    assert out["macro"] == pytest.approx(0.2 * 63)
    assert out["support"] == pytest.approx(0.3 * 63)
    assert out["micro"] == pytest.approx(0.1 * 63)
    assert out["total"] == pytest.approx(0.85 * 63)
    assert out["share"]["support"] == pytest.approx(0.3 / 0.85)
    assert sum(out["share"].values()) == pytest.approx(1.0)


# ---------------------------------------------------------------- regime call

def test_regime_scores_by_hand():
    calls = np.array([0, 0, 1, 2, 1])
    labels = np.array([0, 1, 1, 2, -1])          # the last call has no realised label
    probs = np.array([[0.8, 0.1, 0.1],
                      [0.6, 0.4, 0.0],
                      [0.2, 0.5, 0.3],
                      [0.0, 0.0, 1.0],
                      [0.3, 0.4, 0.3]])
    out = at.regime_scores(calls, labels, probs)
    assert out["n"] == 4 and out["n_unlabelled"] == 1
    assert out["accuracy"] == pytest.approx(3 / 4)
    # recalls: class 0 1/1, class 1 1/2, class 2 1/1
    assert out["recall"] == pytest.approx([1.0, 0.5, 1.0])
    assert out["balanced_accuracy"] == pytest.approx(2.5 / 3)
    # Brier: (0.04 + 0.01 + 0.01) + (0.36 + 0.36 + 0) + (0.04 + 0.25 + 0.09) + 0 = 1.16 / 4
    assert out["brier"] == pytest.approx(0.29)
    assert out["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert at.regime_scores(calls, labels)["brier"] is None


def test_regime_scores_match_sklearn():
    rng = np.random.default_rng(4)
    w, c = 300, 3
    labels = rng.choice([0, 1, 2, -1], w, p=[0.5, 0.3, 0.15, 0.05])
    labels[labels == 2] = 1                       # class 2 absent from the labels
    calls = np.where(rng.random(w) < 0.6, np.maximum(labels, 0), rng.integers(0, c, w))
    probs = rng.dirichlet(np.ones(c), w)
    out = at.regime_scores(calls, labels, probs, num_classes=c)
    keep = labels >= 0
    y, yhat = labels[keep], calls[keep]
    assert out["accuracy"] == pytest.approx(accuracy_score(y, yhat), abs=1e-15)
    with pytest.warns(UserWarning):               # sklearn: y_pred has a class y_true lacks
        ref = balanced_accuracy_score(y, yhat)
    assert out["balanced_accuracy"] == pytest.approx(ref, abs=1e-15)
    assert out["recall"][2] is None
    brier = np.mean([sum((probs[i, j] - (labels[i] == j)) ** 2 for j in range(c))
                     for i in np.flatnonzero(keep)])
    assert out["brier"] == pytest.approx(brier, abs=1e-15)


def test_regime_scores_without_labels():
    out = at.regime_scores([0, 1], [-1, -1])
    assert out["n"] == 0 and out["accuracy"] is None and out["balanced_accuracy"] is None


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, match", [
    (lambda: at.brinson_fachler_daily(W_P, np.full((3, 3), 0.25), R, SEC), "w_b has shape"),
    (lambda: at.brinson_fachler_daily(W_P, W_P, R * np.nan, SEC), "r has NaN"),
    (lambda: at.brinson_fachler_daily(W_P, W_P, R, [0, 0, -1, 1]), "sector_of has negative"),
    (lambda: at.brinson_fachler_daily(W_P, W_P, R, SEC, 1), "num_sectors=1"),
    (lambda: at.carino_link(np.ones(3), RP, [0.1, -1.0, 0.0]), "r_b has a daily return <= -1"),
    (lambda: at.carino_link(np.ones(2), RP, RB), "effects must have the days first"),
    (lambda: at.decision_attribution(W_P, R, SEC, np.ones((3, 4), bool), RP, RP[:2]),
     "net must be a"),
    (lambda: at.decision_attribution(W_P, R, SEC, np.ones((3, 4), bool), RP, RP, w_norisk=W_P),
     "w_norisk needs net_norisk"),
    (lambda: at.turnover_split_daily(W_DRIFT, W_NEW, TSEC, held_tol=-1), "held_tol"),
    (lambda: at.regime_scores([0, 3], [0, 1]), "calls must hold"),
    (lambda: at.regime_scores([0, 1], [0, 1], [[0.5, 0.6, 0], [1, 0, 0]]), "probs rows"),
    (lambda: at.equal_weight_benchmark(SEC, np.full((2, 4), 2)), "active must be boolean"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
