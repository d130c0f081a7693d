"""The ladder of what each training phase added (``evaluation.ladder``): per-seed Sharpe
differences and their standard errors against NumPy, on one window and over markets."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.data.resample import stationary_bootstrap_indices
from hrl_sarp_jax.evaluation import stats as st
from hrl_sarp_jax.evaluation.ladder import (
    ladder_lines,
    ladder_rows,
    markets_ladder,
    stitched_ladder,
    window_ladder,
)


def _sharpe(r: np.ndarray) -> np.ndarray:
    return r.mean(-1) / r.std(-1, ddof=1) * np.sqrt(252)


def test_window_ladder_per_seed_differences_and_bootstrap_errors():
    rng = np.random.default_rng(0)
    base = rng.normal(0.0003, 0.01, (2, 400))
    better = base.copy()
    better[0] += 0.002                       # seed 0 gains 0.2% a day; seed 1 is unchanged
    rows = window_ladder([("pre", "a", base), ("p3", "b", better)], seed=3, num_boot=400)
    assert [r["strategy"] for r in rows] == ["a", "b"] and rows[0]["vs_previous"] is None
    np.testing.assert_allclose(rows[0]["sharpe"], _sharpe(base).mean(), rtol=1e-12)
    np.testing.assert_allclose(rows[1]["sharpe"], _sharpe(better).mean(), rtol=1e-12)
    v = rows[1]["vs_previous"]
    np.testing.assert_allclose(v["per_seed"]["diff"], _sharpe(better) - _sharpe(base),
                               rtol=1e-12, atol=1e-12)
    # seed 0's standard error is the bootstrap's spread of its Sharpe difference
    boot = st.sharpe_diff_bootstrap(better[0], base[0], num=400, seed=3)
    assert v["per_seed"]["se"][0] == pytest.approx(boot["se"]) and boot["se"] > 0
    # seed 1: the same returns, so every resample's difference is 0: not improved
    assert v["per_seed"]["se"][1] == 0.0 and v["per_seed"]["diff"][1] == 0.0
    assert v["per_seed"]["improved"] == [True, False]
    assert v["improved_seeds"] == 1 and v["seeds"] == 2 and v["previous"] == "a"


def test_sharpe_diff_bootstrap_se_is_the_resamples_standard_deviation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.001, 0.01, 300), rng.normal(0.0, 0.01, 300)
    out = st.sharpe_diff_bootstrap(a, b, num=500, mean_block=5.0, seed=7)
    idx = stationary_bootstrap_indices(300, 500, 5.0, np.random.default_rng(7))
    d = _sharpe(a[idx]) - _sharpe(b[idx])
    assert out["se"] == pytest.approx(float(d.std(ddof=1)), rel=1e-12)


def _records(sharpes: dict[str, np.ndarray]) -> list[dict]:
    """Market records of seeded strategies from per-market, per-seed Sharpes [M, K]."""
    m = next(iter(sharpes.values())).shape[0]
    return [{"strategies": {n: {"sharpe": float(v[i].mean()), "gross_sharpe": float(v[i].mean())
                                + 0.1, "turnover": 2.0, "seeds": {"sharpe": v[i].tolist()}}
                            for n, v in sharpes.items()}} for i in range(m)]


def test_markets_ladder_by_hand():
    pre = np.array([[1.0, 0.5], [0.2, 0.4], [0.8, 0.6]])          # 3 markets x 2 seeds
    p3 = pre + np.array([[0.3, -0.1], [0.1, 0.0], [0.2, 0.1]])
    rows = markets_ladder(_records({"pre": pre, "p3": p3}), [("before", "pre"), ("after", "p3")])
    assert rows[0]["sharpe"] == pytest.approx(pre.mean()) and rows[0]["vs_previous"] is None
    assert rows[1]["gross_sharpe"] == pytest.approx(p3.mean() + 0.1)
    v = rows[1]["vs_previous"]
    # seed 0: differences 0.3, 0.1, 0.2 -> mean 0.2, sd 0.1, SE 0.1 / sqrt(3)
    # seed 1: -0.1, 0.0, 0.1 -> mean 0.0, SE 0.1 / sqrt(3)
    np.testing.assert_allclose(v["per_seed"]["diff"], [0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(v["per_seed"]["se"], [0.1 / np.sqrt(3)] * 2, atol=1e-12)
    assert v["per_seed"]["improved"] == [True, False] and v["improved_seeds"] == 1
    over = v["over_markets"]                       # the seeds' mean: 0.1, 0.05, 0.15
    assert over["mean"] == pytest.approx(0.1) and over["wins"] == 3 and over["n"] == 3
    text = ladder_rows(rows)
    assert text[0] == ["before", "+0.583", "-", "-", "-"]
    assert text[1][3] == "+0.200 (0.058), +0.000 (0.058)" and text[1][4] == "1/2"
    lines = ladder_lines({"over": "markets", "rows": rows})
    assert len(lines) == 3 and "markets" in lines[0]
    assert lines[2].split() == ["after", "Sharpe", "+0.683", "Δ", "+0.100,", "seeds", "improved",
                                "1/2"]
    assert ladder_lines(None) == []


def test_a_ladder_refuses_unpaired_seeds_and_a_single_rung():
    pre, p3 = np.ones((2, 2)), np.ones((2, 3))
    with pytest.raises(ValueError, match="pairs seed k with seed k"):
        markets_ladder(_records({"pre": pre, "p3": np.c_[pre, pre[:, :1]]}),
                       [("a", "pre"), ("b", "p3")])
    with pytest.raises(ValueError, match="2 rungs"):
        markets_ladder(_records({"pre": pre}), [("a", "pre")])
    with pytest.raises(ValueError, match="one shape"):
        window_ladder([("a", "x", np.zeros((2, 10))), ("b", "y", np.zeros((3, 10)))])
    del p3


def test_stitched_ladder_concatenates_each_rungs_windows():
    """Walk-forward folds: a rung's per-seed returns over the folds, end to end."""
    rng = np.random.default_rng(2)
    folds = [{n: rng.normal(0.0005, 0.01, (2, days)) for n in ("pre", "agent")}
             for days in (120, 80)]
    rungs = [("before", "pre"), ("final", "agent")]

    def payload(nets):
        return {"strategies": {n: {"per_seed_net": r} for n, r in nets.items()},
                "ladder": {"rows": [{"rung": a, "strategy": b} for a, b in rungs]}}

    out = stitched_ladder([payload(f) for f in folds], seed=1, num_boot=100)
    whole = {n: np.concatenate([f[n] for f in folds], axis=1) for n in ("pre", "agent")}
    assert "2 windows" in out["over"]
    np.testing.assert_allclose(out["rows"][1]["vs_previous"]["per_seed"]["diff"],
                               _sharpe(whole["agent"]) - _sharpe(whole["pre"]), atol=1e-12)
    # a fold without the ladder, or with other rungs: no stitched ladder
    assert stitched_ladder([payload(folds[0]), {**payload(folds[1]), "ladder": None}]) is None
    other = payload(folds[1])
    other["ladder"]["rows"] = other["ladder"]["rows"][:1] * 2
    assert stitched_ladder([payload(folds[0]), other]) is None
