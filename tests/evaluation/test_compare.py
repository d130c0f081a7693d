"""hrl-sarp compare: two many-market reports paired by market (evaluation/compare.py)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from hrl_sarp_jax.evaluation.compare import (
    classical_median_turnover,
    compare_reports,
    pool_reports,
    seed_resampled_interval,
)


def _report(agent_seeds, ew, *, turnover=(2.0, 1.0, 3.0), first_seed=1000, split="test",
            run="R"):
    """A many-market payload: 'hrl_sarp' with per-seed Sharpes [K, S], three classical
    baselines (equal_weight's Sharpe ``ew`` [K]; turnovers ``turnover``)."""
    agent_seeds = np.asarray(agent_seeds, float)
    markets = []
    for k, row in enumerate(agent_seeds):
        strat = {"hrl_sarp": {"sharpe": float(row.mean()), "gross_sharpe": float(row.mean()) + 0.1,
                              "turnover": 4.0, "seeds": {"sharpe": row.tolist()}}}
        for name, t in zip(("equal_weight", "inverse_vol", "sector_momentum"), turnover,
                           strict=True):
            strat[name] = {"sharpe": float(ew[k]), "gross_sharpe": float(ew[k]), "turnover": t}
        markets.append({"seed": first_seed + k, "strategies": strat})
    kinds = {"hrl_sarp": {"kind": "agent"}, "equal_weight": {"kind": "classical"},
             "inverse_vol": {"kind": "classical"}, "sector_momentum": {"kind": "classical"}}
    return {"run": run, "split": split, "window": {"start": "2023-01-02", "end": "2024-12-31"},
            "judgement_range": first_seed >= 9000, "strategies": kinds, "markets": markets}


def test_compare_pairs_markets_by_hand():
    a = _report([[1.0, 1.2], [0.5, 0.5], [0.2, 0.4], [0.9, 0.9]], [0.3, 0.3, 0.3, 0.3])
    b = _report([[1.2, 1.2], [0.3, 0.3], [0.6, 0.6], [0.9, 0.9]], [0.3, 0.3, 0.3, 0.3])
    got = compare_reports(a, b, names=("a", "b"), num_boot=200)
    row = got["strategies"]["hrl_sarp"]
    # seed means a: 1.1, 0.5, 0.3, 0.9; b: 1.2, 0.3, 0.6, 0.9 -> differences +0.1, -0.2, +0.3, 0
    d = np.array([0.1, -0.2, 0.3, 0.0])
    assert row["net"] == pytest.approx([0.7, 0.75])
    assert row["difference"]["mean"] == pytest.approx(0.05)
    assert row["difference"]["wins"] == 2
    half = 3.182446305284263 * d.std(ddof=1) / 2.0          # t_{0.975, 3} sd / sqrt(4)
    assert row["difference"]["ci95"] == pytest.approx([0.05 - half, 0.05 + half])
    assert row["gross_difference"] == pytest.approx(0.05)
    # classical median turnover 2.0 (of 2, 1, 3): the agent's 4.0 is 2x
    assert row["turnover_x_classical_median"] == pytest.approx([2.0, 2.0])
    assert list(got["strategies"]) == ["hrl_sarp"]          # the baselines are the same
    assert got["identical"] == ["equal_weight", "inverse_vol", "sector_momentum"]
    assert classical_median_turnover(a) == pytest.approx(2.0)


def test_seed_resampled_interval_is_the_seed_draws_distribution():
    """Every market the same, seeds spread by e = (-0.1, 0, +0.1) in both runs and b = a +
    0.05: the difference of resampled means is 0.05 + mean(e[sb]) - mean(e[sa]), whose
    quantiles come from enumerating the 27 x 27 equally likely seed draws."""
    e = np.array([-0.1, 0.0, 0.1])
    a = np.tile(0.8 + e, (30, 1))
    lo, hi = seed_resampled_interval(a, a + 0.05, num_boot=20000, seed=1)
    means = [np.mean(e[list(s)]) for s in itertools.product(range(3), repeat=3)]
    exact = np.sort([0.05 + mb - ma for ma in means for mb in means])
    want = np.quantile(exact, [0.025, 0.975])
    np.testing.assert_allclose([lo, hi], want, atol=0.1 / 3 + 1e-9)   # one support step
    assert hi - lo > 0.1                                   # the market-only interval is 0 wide


def test_seed_resampled_interval_without_seed_spread_is_the_market_bootstrap():
    """No spread across seeds: the interval is the markets' percentile bootstrap, which for
    200 normal differences is close to the t-interval."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.5, 200)
    diff = rng.normal(0.03, 0.2, 200)
    a = np.repeat(base[:, None], 3, axis=1)
    b = np.repeat((base + diff)[:, None], 2, axis=1)
    lo, hi = seed_resampled_interval(a, b, num_boot=4000, seed=0)
    half = 1.972 * diff.std(ddof=1) / np.sqrt(200)
    np.testing.assert_allclose([lo, hi], [diff.mean() - half, diff.mean() + half], atol=0.006)


def test_compare_refuses_different_markets_or_windows():
    a = _report([[1.0]], [0.3])
    with pytest.raises(ValueError, match=r"a and b judge different markets .*--market-seed"):
        compare_reports(a, _report([[1.0]], [0.3], first_seed=9000), names=("a", "b"))
    with pytest.raises(ValueError, match="differ in split"):
        compare_reports(a, _report([[1.0]], [0.3], split="val"), names=("a", "b"))
    with pytest.raises(ValueError, match="not a many-market report"):
        compare_reports(a, {"run": "x"}, names=("a", "b"))
    with pytest.raises(ValueError, match="--strategies: oracle not in both"):
        compare_reports(a, a, names=("a", "b"), strategies=["oracle"])


def _write_reports(root, runs):
    """root/RUN/report-markets/metrics.json for each run's per-seed agent Sharpes [K, S]."""
    for run, rows in runs.items():
        d = root / run / "report-markets"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(_report(rows, [0.3, 0.3], run=run)))


def test_cli_compare_reads_run_names_and_prints_json(tmp_path, capsys):
    from hrl_sarp_jax.cli import main

    _write_reports(tmp_path, {"A": [[1.0, 1.2], [0.5, 0.5]], "B": [[1.2, 1.2], [0.3, 0.3]]})
    assert main(["compare", "A", "B", "--checkpoints", str(tmp_path), "--json",
                 "--bootstrap", "50"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["runs"] == ["A", "B"]
    assert got["strategies"]["hrl_sarp"]["difference"]["mean"] == pytest.approx(-0.05)
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B" / "report-markets"),
                 "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "hrl_sarp" in text and "1.100 -> 1.000" not in text and "0.800 -> 0.750" in text
    assert main(["compare", "A", "C", "--checkpoints", str(tmp_path)]) != 0
    assert "compare: no many-market report at 'C'" in capsys.readouterr().err


def _with_ensemble(rep, values):
    """``rep`` plus a one-figure-per-run strategy 'hrl_sarp_ensemble' (Sharpe ``values`` [K])."""
    for m, v in zip(rep["markets"], values, strict=True):
        m["strategies"]["hrl_sarp_ensemble"] = {"sharpe": v, "gross_sharpe": v + 0.1,
                                                "turnover": 3.0}
    rep["strategies"]["hrl_sarp_ensemble"] = {"kind": "ensemble"}
    return rep


def test_pool_reports_by_hand():
    r1 = _with_ensemble(_report([[1.0, 1.2], [0.5, 0.5]], [0.3, 0.3], run="Q"), [0.9, 0.6])
    r2 = _with_ensemble(_report([[0.4], [0.2]], [0.3, 0.3], run="S1"), [0.7, 0.2])
    pooled = pool_reports([r1, r2], ["q", "s1"])
    m0 = pooled["markets"][0]["strategies"]
    # the agent: every seed of every replicate, (1.0 + 1.2 + 0.4) / 3
    assert m0["hrl_sarp"]["sharpe"] == pytest.approx(2.6 / 3)
    assert m0["hrl_sarp"]["seeds"]["sharpe"] == [1.0, 1.2, 0.4]
    assert m0["hrl_sarp"]["gross_sharpe"] == pytest.approx(2.6 / 3 + 0.1)
    # one figure per run: the replicates' mean, and each replicate as a "seed"
    assert m0["hrl_sarp_ensemble"]["sharpe"] == pytest.approx(0.8)
    assert m0["hrl_sarp_ensemble"]["seeds"]["sharpe"] == [0.9, 0.7]
    assert m0["equal_weight"]["sharpe"] == pytest.approx(0.3)
    assert pooled["run"] == "Q+S1" and pooled["replicates"] == ["q", "s1"]
    assert pool_reports([r1], ["q"]) == r1
    # the ensemble of a pooled side gets a seed-resampled interval; the baselines are identical
    other = _with_ensemble(_report([[1.0, 1.0], [0.5, 0.5]], [0.3, 0.3], run="B"), [0.5, 0.5])
    got = compare_reports(pool_reports([other, other], ["b1", "b2"]), pooled, num_boot=100)
    assert got["strategies"]["hrl_sarp_ensemble"]["seed_resampled_ci95"] is not None
    assert got["strategies"]["hrl_sarp_ensemble"]["difference"]["mean"] == pytest.approx(
        np.mean([0.8, 0.4]) - 0.5)
    assert "equal_weight" in got["identical"]
    with pytest.raises(ValueError, match="q and s9 judge different markets"):
        pool_reports([r1, _report([[1.0], [1.0]], [0.3, 0.3], first_seed=9000)], ["q", "s9"])


def test_cli_compare_pools_replicates_joined_by_plus(tmp_path, capsys):
    from hrl_sarp_jax.cli import main

    _write_reports(tmp_path, {"A": [[1.0, 1.2], [0.5, 0.5]], "B": [[1.2, 1.2], [0.3, 0.3]],
                              "C": [[0.6, 0.6], [0.9, 0.9]]})
    assert main(["compare", "A", "B+C", "--checkpoints", str(tmp_path), "--json",
                 "--bootstrap", "50"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["runs"] == ["A", "B+C"]
    # B+C per market: (1.2 + 0.6) / 2 = 0.9 and (0.3 + 0.9) / 2 = 0.6 against A's 1.1 and 0.5
    assert got["strategies"]["hrl_sarp"]["net"] == pytest.approx([0.8, 0.75])
    assert main(["compare", "A", "B+", "--checkpoints", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty replicate" in err[0]
