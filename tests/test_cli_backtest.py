"""``hrl-sarp backtest --walk-forward``: fold dates worked out by hand, phase lists, market
slicing, one-line errors, and one end-to-end walk-forward on the smoke market (2 rolling
folds, Phases 1-2, tiny networks) whose stitched report covers exactly the folds' test
windows with no look-ahead in any fold's training, carries every strategy's book into the
next fold, reports the switch costs and pools the agent's Sharpe differences over folds."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import load_config
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.days import slice_days
from hrl_sarp_jax.walk_forward import parse_walk_forward_phases, walk_forward_folds
from tests.training.conftest import FAST

D = np.datetime64


def _busdays(start: str, end: str) -> np.ndarray:
    d = np.arange(D(start), D(end) + 1)
    return d[np.is_busday(d)]


def _expect(fold, name, train, val, test, end, eval_start, eval_end, lo):
    days = int(np.busday_count(D(eval_start), D(eval_end)))
    assert fold == {"fold": int(name[4:]), "name": name, "train_start": train,
                    "val_start": val, "test_start": test, "test_end": end,
                    "eval_start": eval_start, "eval_end": eval_end,
                    "eval_split": f"{eval_start}:{eval_end}", "test_days": days,
                    "train_lo": lo}


def test_rolling_and_expanding_folds_by_hand():
    dates = _busdays("2018-01-01", "2020-12-31")  # Mon 2018-01-01 .. Thu 2020-12-31
    rolling = walk_forward_folds(dates, 1, 0.5, 0.5)
    # fold 2 would test [2020-07-01, 2021-01-01): past the last day, so 2 folds fit
    assert len(rolling) == 2
    # 2018-07-01 is a Sunday: the rolling slice starts on Monday 2018-07-02, trading day 130
    assert int(np.flatnonzero(dates == D("2018-07-02"))[0]) == 130
    _expect(rolling[0], "fold0", "2018-01-01", "2019-01-01", "2019-07-01", "2020-01-01",
            "2019-07-01", "2020-01-01", 0)
    _expect(rolling[1], "fold1", "2018-07-01", "2019-07-01", "2020-01-01", "2020-07-01",
            "2020-01-01", "2020-07-01", 130)
    assert rolling[0]["test_days"] == 132 and rolling[1]["test_days"] == 130
    expanding = walk_forward_folds(dates, 1, 0.5, 0.5, expanding=True)
    assert [f["train_start"] for f in expanding] == ["2018-01-01"] * 2
    assert [f["train_lo"] for f in expanding] == [0, 0]
    assert [f["test_start"] for f in expanding] == [f["test_start"] for f in rolling]
    # --folds N keeps the LAST N (their names keep the index among all folds)
    assert walk_forward_folds(dates, 1, 0.5, 0.5, folds=1) == rolling[1:]


def test_windows_end_on_the_next_trading_day_and_stay_consecutive():
    dates = _busdays("2018-01-01", "2019-12-31")
    # test windows of 2 months from 2019-04-01: the first ends Saturday 2019-06-01, so its
    # last return day (the next fold's first decision day) is Monday 2019-06-03
    folds = walk_forward_folds(dates, 1, 0.25, 2 / 12)
    _expect(folds[0], "fold0", "2018-01-01", "2019-01-01", "2019-04-01", "2019-06-01",
            "2019-04-01", "2019-06-03", 0)
    assert [f["test_start"] for f in folds] == ["2019-04-01", "2019-06-01", "2019-08-01",
                                                "2019-10-01"]
    for a, b in itertools.pairwise(folds):
        assert a["test_end"] == b["test_start"] and a["eval_end"] == b["eval_start"]
    # month ends clamp from the anchor: Jan 31 + 1 month = Feb 28, + 2 = Mar 31, ...
    daily = np.arange(D("2019-01-31"), D("2019-12-31") + 1)
    monthly = walk_forward_folds(daily, 1 / 12, 1 / 12, 1 / 12)
    assert len(monthly) == 9  # the last test window ends 2019-12-31, the last day
    assert [f["val_start"] for f in monthly[:3]] == ["2019-02-28", "2019-03-31", "2019-04-30"]
    assert [f["test_start"] for f in monthly[:3]] == ["2019-03-31", "2019-04-30", "2019-05-31"]
    assert monthly[0]["test_end"] == monthly[1]["test_start"] == "2019-04-30"
    assert monthly[-1]["test_end"] == "2019-12-31"
    assert sum(f["test_days"] for f in monthly) == int(
        np.sum((daily >= D(monthly[0]["eval_start"])) & (daily < D(monthly[-1]["eval_end"]))))


def test_fold_errors_name_the_option_and_the_fix():
    dates = _busdays("2018-01-01", "2020-12-31")
    cases = [((0.3, 0.5, 0.5, {}), "--train-years 0.3: give a positive span in whole months"),
             ((1, 0, 0.5, {}), "--val-years 0"),
             ((1, 0.5, 0.5, {"folds": 3}), "--folds 3: only 2 fold(s) fit"),
             ((1, 0.5, 0.5, {"folds": 0}), "--folds 0: give at least 1"),
             ((2, 1, 0.5, {}), "no walk-forward fold fits in the data (2018-01-01 .. "
                               "2020-12-31) with --train-years 2 --val-years 1 --test-years "
                               "0.5: the first fold needs data through 2021-07-01")]
    for (a, b, c, kw), needle in cases:
        with pytest.raises(ConfigError) as err:
            walk_forward_folds(dates, a, b, c, **kw)
        assert needle in str(err.value) and "\n" not in str(err.value)


def test_phase_lists():
    assert parse_walk_forward_phases("all") == ("1", "2", "3", "4", "5", "flat")
    assert parse_walk_forward_phases(" 2,1 ") == ("1", "2")
    assert parse_walk_forward_phases("flat,4,3") == ("3", "4", "flat")
    assert parse_walk_forward_phases("3,4,5") == ("3", "4", "5")
    for bad, needle in (("1,6", "unknown phase(s) ['6']"), ("", "unknown phase"),
                        ("5", "Phase 5 fine-tunes"), ("1", "needs a Macro agent"),
                        ("2,4,flat", "needs a Macro agent")):
        with pytest.raises(ConfigError, match="--phases") as err:
            parse_walk_forward_phases(bad)
        assert needle in str(err.value)


def test_slice_days_cuts_every_day_axis_and_keeps_the_rest():
    from tests.evaluation.make_market import make_market

    market, meta, feats = make_market()
    lo = 37
    m2, meta2, f2 = slice_days(market, meta, feats, lo)
    assert m2.num_days == market.num_days - lo and m2.num_stocks == market.num_stocks
    np.testing.assert_array_equal(meta2.dates, np.asarray(meta.dates)[lo:])
    assert meta2.tickers == meta.tickers and meta2.sectors == meta.sectors
    np.testing.assert_array_equal(m2.returns, np.asarray(market.returns)[lo:])
    np.testing.assert_array_equal(m2.week_end, np.asarray(market.week_end)[lo:])
    np.testing.assert_array_equal(m2.stock_sector, market.stock_sector)
    np.testing.assert_array_equal(m2.sector_valid, market.sector_valid)
    np.testing.assert_array_equal(f2.stock, np.asarray(feats.stock)[lo:])
    np.testing.assert_array_equal(f2.adjacency, np.asarray(feats.adjacency)[lo:])
    assert slice_days(market, meta, feats, 0) == (market, meta, feats)
    with pytest.raises(ConfigError, match="outside the market"):
        slice_days(market, meta, feats, market.num_days - 1)


def test_pad_days_appends_empty_days_and_leaves_every_real_day_as_it_was():
    """pad_days by hand: the next business days, no tradable stock, zero returns, prices and
    features held, regime unknown; the env params of the padded market equal the unpadded
    ones on every real day with the same static sizes, so a program indexing days of a split
    computes the same; and the Phase-3 curriculum's start sets keep their width."""
    import dataclasses

    import jax

    from hrl_sarp_jax.envs.params import make_env_params
    from hrl_sarp_jax.features.days import pad_days
    from hrl_sarp_jax.training import curriculum as cur
    from tests.evaluation.make_market import ENV_CFG, make_market

    market, meta, feats = make_market()
    t = market.num_days
    m2, meta2, f2 = pad_days(market, meta, feats, 3)
    assert m2.num_days == t + 3 and pad_days(market, meta, feats, 0) == (market, meta, feats)
    last = np.asarray(meta.dates)[-1]
    np.testing.assert_array_equal(np.asarray(meta2.dates)[t:],
                                  np.busday_offset(last, [1, 2, 3], roll="forward"))
    assert not np.asarray(m2.stock_mask)[t:].any() and not np.asarray(m2.week_end)[t:].any()
    assert not np.asarray(f2.sector_mask)[t:].any() and not np.asarray(f2.stock_mask)[t:].any()
    assert (np.asarray(m2.returns)[t:] == 0).all()
    assert (np.asarray(m2.latent_regime)[t:] == -1).all()
    assert (np.asarray(f2.regime_label)[t:] == -1).all()
    np.testing.assert_array_equal(np.asarray(m2.close)[t:],
                                  np.repeat(np.asarray(market.close)[-1:], 3, 0))
    assert isinstance(m2.returns, type(market.returns))  # device arrays stay device arrays
    for f in dataclasses.fields(market):
        a, b = np.asarray(getattr(market, f.name)), np.asarray(getattr(m2, f.name))
        np.testing.assert_array_equal(b if a.shape == b.shape else b[:t], a, err_msg=f.name)
    split = (0, t - 10)  # the phases and the evaluation always pass a split
    p1 = make_env_params(market, feats, ENV_CFG, split=split)
    p2 = make_env_params(m2, f2, ENV_CFG, split=split)
    assert jax.tree.structure(p1) == jax.tree.structure(p2)  # static sizes included
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(p1)[0], jax.tree.leaves(p2),
                            strict=True):
        a, b = np.asarray(a), np.asarray(b)
        lead = a.ndim and a.shape[0] in (t, t + 1) and b.shape[0] == a.shape[0] + 3
        np.testing.assert_array_equal(b[: a.shape[0]] if lead else b, a,
                                      err_msg=jax.tree_util.keystr(path))
    week_end = np.asarray(market.week_end)
    regime = np.zeros(t, np.int32)
    w1, _ = cur.build_stage_windows(week_end, regime, np.zeros(t), 40, 180, 200, width_lo=0)
    w2, _ = cur.build_stage_windows(np.asarray(m2.week_end), np.zeros(t + 3, np.int32),
                                    np.zeros(t + 3), 40, 180, 200, width_lo=0)
    np.testing.assert_array_equal(w1.days, w2.days)
    with pytest.raises(ValueError, match="days must be >= 0"):
        pad_days(market, meta, feats, -1)


def test_bad_arguments_are_one_clear_line(capsys):
    base = ["backtest", "--data", "/nonexistent-market"]
    spans = ["--train-years", "1", "--val-years", "0.5", "--test-years", "0.5"]
    cases = [([*spans], "add --walk-forward", "hrl-sarp evaluate"),
             (["--walk-forward", "--train-years", "1"], "--val-years, --test-years", "needs"),
             (["--walk-forward", "--train-years", "0.3", "--val-years", "1", "--test-years",
               "1"], "--train-years 0.3", "whole months"),
             (["--walk-forward", *spans, "--folds", "0"], "--folds 0", "at least 1"),
             (["--walk-forward", *spans, "--phases", "5"], "--phases 5", "3,4,5"),
             (["--walk-forward", *spans, "--phases", "1"], "--phases 1", "Micro agent"),
             (["--walk-forward", *spans, "--random-seeds", "0"], "--random-seeds 0", "1 seed"),
             (["--walk-forward", *spans, "--baselines", "equal_weight,flat_rl"], "['flat_rl']",
              "choose from"),
             (["--walk-forward", *spans], "--data /nonexistent-market", "no such market")]
    for extra, needle, fix in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and fix in err[0], err
        assert "Traceback" not in err[0]


TINY = [*FAST, "train.seeds=2"]
BASELINES = ("equal_weight", "index_buy_hold", "random", "oracle")
METRICS = ("sharpe", "cagr", "max_drawdown", "cvar_95", "turnover", "cost_drag")


@pytest.mark.slow
def test_walk_forward_end_to_end(tmp_path, capsys):
    """2 rolling folds of (1, 0.5, 0.5) years on the smoke market (2018-2020), Phases 1-2."""
    from hrl_sarp_jax.data.synthetic import write_synthetic_market

    smoke = "smoke"   # the shipped preset (hrl_sarp_jax/configs/smoke.yaml)
    market_dir = write_synthetic_market(tmp_path / "market",
                                        load_config(smoke, TINY).synth)
    ckpts = tmp_path / "ckpts"
    args = ["backtest", "--walk-forward", "--train-years", "1", "--val-years", "0.5",
            "--test-years", "0.5", "--config", smoke,
            *[x for s in TINY for x in ("--set", s)], "--data", str(market_dir),
            "--checkpoints", str(ckpts), "--run", "wf", "--phases", "1,2",
            "--random-seeds", "2", "--bootstrap", "100", "--baselines", ",".join(BASELINES)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "folds (rolling):" in out and "fold0: train 2018-01-01 .. 2019-01-01" in out
    assert "fold1: train 2018-07-01 .. 2019-07-01" in out and "hrl_sarp" in out

    doc = json.loads((ckpts / "wf" / "report" / "metrics.json").read_text())
    folds = doc["settings"]["folds"]
    assert [f["name"] for f in folds] == ["fold0", "fold1"]
    assert [(f["val_start"], f["test_start"], f["test_end"]) for f in folds] == [
        ("2019-01-01", "2019-07-01", "2020-01-01"), ("2019-07-01", "2020-01-01", "2020-07-01")]
    # the stitched series covers exactly the folds' consecutive test windows
    from hrl_sarp_jax.data.loader import load_market

    _, meta = load_market(market_dir, load_config(smoke, TINY).data)
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    fold_docs = [json.loads((Path(f["report"]) / "metrics.json").read_text()) for f in folds]
    days = [d["window"]["days"] for d in fold_docs]
    assert doc["window"]["days"] == sum(days) == sum(f["test_days"] for f in folds)
    assert sum(days) == int(np.sum((dates > D(folds[0]["eval_start"]))
                                   & (dates <= D(folds[1]["eval_end"]))))
    assert fold_docs[0]["window"]["end"] == fold_docs[1]["window"]["start"] == "2020-01-01"
    assert (doc["window"]["start"], doc["window"]["end"]) == ("2019-07-01", "2020-07-01")
    assert [w["days"] for w in doc["settings"]["stitched"]] == days

    # the report schema: every strategy's metrics, per-seed agent, oracle, tests
    assert set(doc["strategies"]) == {*BASELINES, "hrl_sarp"} - {"oracle"}
    for name, e in doc["strategies"].items():
        assert all(isinstance(e[k], float) for k in METRICS), name
    agent = doc["strategies"]["hrl_sarp"]
    assert agent["seed_dispersion"]["n"] == 2
    assert len(agent["seed_dispersion"]["per_seed"]["sharpe"]) == 2
    assert doc["oracle"] is not None and isinstance(doc["oracle"]["sharpe"], float)
    assert set(doc["tests"]["vs_hrl_sarp"]["pairs"]) == set(doc["strategies"]) - {"hrl_sarp"}
    assert set(doc["tests"]["vs_benchmark"]["pairs"]) == set(doc["strategies"]) - {
        "hrl_sarp", "index_buy_hold"}
    # stitched wealth = the folds' wealth compounded, strategy by strategy (seed blends)
    for name in ("hrl_sarp", "equal_weight", "index_buy_hold"):
        total = np.prod([1 + d["strategies"][name]["total_return"] for d in fold_docs]) - 1
        np.testing.assert_allclose(doc["strategies"][name]["total_return"], total, rtol=1e-5)
    total = np.prod([1 + d["oracle"]["total_return"] for d in fold_docs]) - 1
    np.testing.assert_allclose(doc["oracle"]["total_return"], total, rtol=1e-5)

    # the book carries: fold1 starts from each strategy's fold0 end book (stitch checks the
    # value continuity); the switch on fold1's first day is reported per strategy
    assert "start_book" not in fold_docs[0]["window"]
    assert fold_docs[1]["window"]["start_book"] == "carried"
    fb = doc["folds"]
    assert [w["label"] for w in fb["windows"]] == ["fold0", "fold1"] and fb["carried"]
    assert set(fb["strategies"]) == {*doc["strategies"], "oracle"}
    for name, e in fb["strategies"].items():
        assert len(e["sharpe"]) == 2 and len(e["switch_cost"]) == 1, name
        assert e["switch_cost_total"] == e["switch_cost"][0] >= 0.0
    assert fb["strategies"]["index_buy_hold"]["switch_turnover"] == [0.0]
    assert fb["strategies"]["index_buy_hold"]["switch_cost"] == [0.0]
    # weekly equal weight only trades its drift back (a buy-in from cash would be ~0.49)
    assert fb["strategies"]["equal_weight"]["switch_turnover"][0] < 0.2
    # the fold Sharpes are the folds' own: the strategy's, or its seeds' mean
    for i, d in enumerate(fold_docs):
        for name in ("equal_weight", "index_buy_hold"):
            np.testing.assert_allclose(fb["strategies"][name]["sharpe"][i],
                                       d["strategies"][name]["sharpe"], rtol=1e-6)
        np.testing.assert_allclose(
            fb["strategies"]["hrl_sarp"]["sharpe"][i],
            d["strategies"]["hrl_sarp"]["seed_dispersion"]["sharpe"]["mean"],
            rtol=1e-6)
    # paired over folds: paired_over_markets of the per-fold Sharpes, agent vs every strategy
    from hrl_sarp_jax.evaluation.stats import paired_over_markets

    pf = doc["paired_folds"]["vs_hrl_sarp"]
    assert pf["n"] == 2 and pf["folds"] == ["fold0", "fold1"] and "wide" in pf["note"]
    assert set(pf["pairs"]) == set(doc["strategies"]) - {"hrl_sarp"}
    for name, pair in pf["pairs"].items():
        ref = paired_over_markets(fb["strategies"]["hrl_sarp"]["sharpe"],
                                  fb["strategies"][name]["sharpe"])
        assert pair["pooled"] == pytest.approx(ref), name
        assert pair["stitched"]["diff"] == doc["tests"]["vs_hrl_sarp"]["pairs"][name][
            "bootstrap"]["diff"]
    md = (ckpts / "wf" / "report" / "report.md").read_text()
    assert "## Walk-forward folds" in md and "## Paired over folds: vs_hrl_sarp" in md
    assert "switch" in out and "switch index_buy_hold: turnover 0.00" in out

    # each fold: its own run, its own split dates, trained only before its validation start
    # (rolling: from its training start on), selected on its validation window only
    for f in folds:
        run = Path(f["run"])
        cfg = load_config(run / "config.yaml")
        assert (cfg.data.val_start, cfg.data.test_start) == (f["val_start"], f["test_start"])
        for phase in (1, 2):
            s = json.loads((run / f"phase{phase}" / "summary.json").read_text())
            lo, hi = (D(x) for x in s["train_span"])
            vlo, vhi = (D(x) for x in s["val_span"])
            assert D(f["train_start"]) <= lo and hi < D(f["val_start"]) <= vlo
            assert vhi < D(f["test_start"])
    lines = [json.loads(x) for x in
             (ckpts / "wf" / "report" / "decisions.jsonl").read_text().splitlines()]
    micro = [x for x in lines if x["kind"] == "micro"]
    assert len(micro) == 2 * sum(days) and {x["fold"] for x in lines} == {"fold0", "fold1"}
    plan = json.loads((ckpts / "wf" / "walk_forward.json").read_text())
    assert plan["mode"] == "rolling" and len(plan["folds"]) == 2

    # the same run with another plan is refused before any work
    assert main([*args, "--expanding"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another walk-forward plan" in err[0] and "mode" in err[0]
