"""The regime oracle told the regime late (``evaluate --oracle-lags``): its call scores, the
lag check and the report's table, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation.markets_report import (
    equivalent_lag_line,
    knowledge_rows,
    knowledge_section,
)
from hrl_sarp_jax.many_markets import (
    check_oracle_lags,
    equivalent_lag,
    oracle_call_scores,
    regime_knowledge,
)


def test_oracle_call_scores_by_hand():
    # day:    0  1  2  3  4  5  6  7  8  9
    latent = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, -1])
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 2, -1, -1])
    days = np.array([1, 2, 4, 5, 7])
    out = oracle_call_scores(latent, labels, days, {"oracle": 0, "late": 2, "later": 6})
    # lag 0 calls latent[t + 1] = 0, 1, 1, 2, 2 against labels 0, 1, 1, 2, 2: all right
    assert out["oracle"] == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    # lag 2 calls latent[t - 1] = 0, 0, 1, 1, 2 against 0, 1, 1, 2, 2: recalls 1, 1/2, 1/2
    assert out["late"]["accuracy"] == pytest.approx(3 / 5)
    assert out["late"]["balanced_accuracy"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    # lag 6 reads days t - 5 (clipped at day 0): 0, 0, 0, 0, 0 -> only regime 0's recall
    assert out["later"]["balanced_accuracy"] == pytest.approx((1 + 0 + 0) / 3)
    # an unknown latent regime (-1) is left out, not scored as a call
    unknown = oracle_call_scores(latent, labels, np.array([8]), {"oracle": 0})
    assert unknown["oracle"]["balanced_accuracy"] is None


def test_equivalent_lag_by_hand():
    curve = [(20, 0.38), (0, 0.72), (10, 0.53), (30, 0.25), (40, 0.27)]  # given out of order
    assert equivalent_lag(curve, 0.26) == pytest.approx(20 + 10 * 0.12 / 0.13)
    assert equivalent_lag(curve, 0.72) == pytest.approx(0.0)
    assert equivalent_lag(curve, 0.60) == pytest.approx(10 * 0.12 / 0.19)
    # the first bracketing pair wins where noise makes the curve rise again (30 -> 40 days)
    assert equivalent_lag(curve, 0.255) == pytest.approx(20 + 10 * 0.125 / 0.13)
    assert equivalent_lag(curve, 0.80) is None and equivalent_lag(curve, 0.1) is None
    assert equivalent_lag([(0, 0.5), (5, 0.5)], 0.5) is None


def test_check_oracle_lags():
    assert check_oracle_lags([20, 5, 5, 10]) == [5, 10, 20]
    assert check_oracle_lags(()) == []
    for bad in (0, -3, 1.5, 253, True):
        with pytest.raises(ConfigError, match="--oracle-lags") as e:
            check_oracle_lags([bad])
        assert "\n" not in str(e.value)


def _record(sharpes: dict, accs: dict, agent_acc: float) -> dict:
    return {"strategies": {n: {"sharpe": v} for n, v in sharpes.items()},
            "oracle_calls": {n: {"accuracy": a, "balanced_accuracy": a} for n, a in accs.items()},
            "regime_call": {"balanced_accuracy": agent_acc}}


def test_regime_knowledge_table_by_hand():
    recs = [_record({"equal_weight": 0.5, "oracle": 1.5, "oracle_late_5d": 1.0,
                     "hrl_sarp": 0.8, "hrl_sarp_ensemble": 0.9}, {"oracle": 0.9,
                                                                   "oracle_late_5d": 0.7}, 0.6),
            _record({"equal_weight": 0.7, "oracle": 1.3, "oracle_late_5d": 1.1,
                     "hrl_sarp": 0.8, "hrl_sarp_ensemble": 0.8}, {"oracle": 1.0,
                                                                   "oracle_late_5d": 0.5}, 0.5)]
    k = regime_knowledge(recs, [5])
    rows = {r["strategy"]: r for r in k["rows"]}
    assert list(rows) == ["oracle", "oracle_late_5d", "hrl_sarp", "hrl_sarp_ensemble"]
    assert rows["oracle"]["lag_days"] == 0 and rows["oracle_late_5d"]["lag_days"] == 5
    assert rows["oracle"]["balanced_accuracy"] == pytest.approx(0.95)
    assert rows["oracle_late_5d"]["balanced_accuracy"] == pytest.approx(0.6)
    assert rows["hrl_sarp"]["balanced_accuracy"] == pytest.approx(0.55)
    assert rows["hrl_sarp_ensemble"]["balanced_accuracy"] is None
    # minus equal weight, paired: oracle (1.0, 0.6), late (0.5, 0.4), agent (0.3, 0.1)
    assert rows["oracle"]["minus_equal_weight"]["mean"] == pytest.approx(0.8)
    assert rows["oracle_late_5d"]["minus_equal_weight"]["mean"] == pytest.approx(0.45)
    assert rows["hrl_sarp"]["minus_equal_weight"]["mean"] == pytest.approx(0.2)
    assert rows["hrl_sarp"]["minus_equal_weight"]["wins"] == 2
    # the agent's +0.2 lies beyond the 5-day oracle's +0.45: outside the lags run; a curve
    # 0: +0.8, 5: +0.45 puts +0.5 at 5 * 0.3 / 0.35 days
    assert k["equivalent_lag_days"] == {"hrl_sarp": None, "hrl_sarp_ensemble": None}
    assert equivalent_lag([(0, 0.8), (5, 0.45)], 0.5) == pytest.approx(5 * 0.3 / 0.35)
    line = equivalent_lag_line({"regime_knowledge": k})
    assert "hrl_sarp outside the lags run (0..5 days)" in line
    table = knowledge_rows({"regime_knowledge": k})
    assert table[1][:4] == ["oracle_late_5d", "5 days late", "0.600", "+0.45"]
    assert table[0][1] == "next day" and table[2][1] == "-"
    assert knowledge_rows({"regime_knowledge": None}) == []


def test_the_report_section_only_when_asked():
    assert knowledge_section({"regime_knowledge": None}, md=True) == []
    recs = [_record({"equal_weight": 0.5, "oracle": 1.5, "hrl_sarp": 0.8,
                     "hrl_sarp_ensemble": 0.9}, {"oracle": 0.9}, 0.6)] * 2
    doc = {"regime_knowledge": regime_knowledge(recs, [])}
    md = "\n".join(knowledge_section(doc, md=True))
    assert md.startswith("## Regime knowledge: the oracle told the regime late")
    assert "| oracle | next day | 0.900 | +1.00 |" in md
    page = "".join(knowledge_section(doc, md=False))
    assert "<td>next day</td>" in page and "<td>0.900</td>" in page
    doc["regime_knowledge"]["equivalent_lag_days"] = {"hrl_sarp": 29.6, "hrl_sarp_ensemble": None}
    line = equivalent_lag_line(doc)
    assert "hrl_sarp as an oracle about 30 trading days late" in line
    assert line in "\n".join(knowledge_section(doc, md=True))


def _call_value_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "call_value.py"
    spec = importlib.util.spec_from_file_location("call_value", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_call_value_holds_each_call_until_the_next(capsys):
    script = _call_value_script()
    probs = np.array([[0.1, 0.7, 0.2], [0, 0, 0], [0, 0, 0], [0.6, 0.3, 0.1], [0, 0, 0]])
    steps = np.array([True, False, False, True, False])
    # decision day t0 + l; RegimeOracle reads day t + 1 at t: the call in force at t
    path = script.held_calls(probs, steps, t0=3, num_days=10)
    np.testing.assert_array_equal(path, [-1, -1, -1, -1, 1, 1, 1, 0, 0, -1])
    assert script.main(["--checkpoints", "x", "--run", "y", "--first-seed", "9990"]) == 2
    assert "judgement range" in capsys.readouterr().err


def test_call_value_days_since_switch_and_filter_by_hand():
    script = _call_value_script()
    np.testing.assert_array_equal(script.days_since_switch(np.array([0, 0, 1, 1, 1, 0])),
                                  [0, 1, 0, 1, 2, 0])
    # with no persistence (weekly rows = pi) and weight 1 the filter is the calls themselves
    pi = np.array([0.5, 0.2, 0.3])
    q = np.array([[0.2, 0.7, 0.1], [0.4, 0.3, 0.3], [0.1, 0.2, 0.7]])
    flat = np.tile(pi, (3, 1))
    # p ∝ pi * q / pi = q
    np.testing.assert_array_equal(script.filtered_calls(q, flat, pi, 1.0), [1, 0, 2])
    # a sticky prior keeps regime 1 through a weak second week: p1 ∝ (0.2, 0.7, 0.1),
    # prior = p1 (identity transition), p2 ∝ p1 * q2 / pi = (0.16, 1.05, 0.1) -> 1
    np.testing.assert_array_equal(script.filtered_calls(q[:2], np.eye(3), pi, 1.0), [1, 1])
