"""``hrl-sarp explain`` on a run trained in-process (Phases 1-2, smoke preset; the fixtures of
tests/test_cli_evaluate.py): the printed drivers are real macro features / sector inputs /
stock features, the JSON holds the agent's own decision and complete attributions, the
backtest book is the one the agent decided on, and bad input is one clear line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import open_run
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy, run_agent
from hrl_sarp_jax.evaluation.explain import flat_book
from hrl_sarp_jax.features.featureset import MACRO_FEATURES, SECTOR_FEATURES, STOCK_FEATURES
from hrl_sarp_jax.training.policy import load_policy
from tests import test_cli_evaluate as _evaluate

# the Phase 1-2 smoke run of tests/test_cli_evaluate.py (module fixtures: trained once here)
smoke_market = _evaluate.smoke_market
trained = _evaluate.trained

KEYS = {"run", "date", "requested_date", "note", "t", "seed", "seeds", "policy", "method",
        "book", "macro_when", "micro_goal_source", "macro", "micro", "completeness"}


def _base(trained_root, market_dir):
    return ["explain", "--run", "ev", "--data", str(market_dir), "--checkpoints",
            str(trained_root)]


def _test_week_end(market, meta, cfg, nth: int = 3) -> int:
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    week_end = np.asarray(market.week_end, bool)
    return int(np.flatnonzero(week_end & (dates >= np.datetime64(cfg.data.test_start)))[nth])


def _allowed(meta):
    sectors = [s for s in meta.sectors if s]
    tickers = [t for t in meta.tickers if t]
    return (set(MACRO_FEATURES) | {f"{s}.{f}" for s in sectors for f in SECTOR_FEATURES},
            {f"{t}.{f}" for t in tickers for f in STOCK_FEATURES})


def _policy_seed0(trained_root, smoke):
    _, market, meta, feats, cfg = smoke
    policy = load_policy(open_run(trained_root / "ev"), cfg, market, meta, feats)
    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    return first(policy.macro_actor), first(policy.micro_actor), policy


@pytest.mark.slow  # cold-cache CI time; attributions are tested in tests/evaluation/test_explain.py
def test_explain_prints_named_drivers_and_json(trained, smoke_market, capsys):
    market_dir, market, meta, feats, cfg = smoke_market
    t = _test_week_end(market, meta, cfg)
    date = str(np.asarray(meta.dates).astype("datetime64[D]")[t])
    assert main([*_base(trained, market_dir), "--date", date, "--top", "3", "--stocks",
                 "2"]) == 0
    out = capsys.readouterr().out
    macro_names, stock_names = _allowed(meta)
    assert out.startswith(f"explain run ev at {date} (seed 0 of 1)")
    assert "book: flat: all cash" in out and "Macro (" in out and "Micro (" in out
    drivers = [line.split()[1] for line in out.splitlines() if line.startswith("    ")]
    macro_rows = [d for d in drivers if "." not in d or d.split(".")[0] in meta.sectors]
    assert len(drivers) >= 3 * 2 and len(macro_rows) >= 3
    assert set(drivers) <= macro_names | stock_names, set(drivers) - macro_names - stock_names
    assert any(d in MACRO_FEATURES for d in drivers)           # a real macro feature ...
    assert any(d.split(".")[0] in meta.sectors for d in macro_rows if "." in d)  # ... and sector
    for s in (s for s in meta.sectors if s):
        assert f"  weight[{s}] = " in out
    assert "completeness (sum of attributions vs f(x) - f(0))" in out

    assert main([*_base(trained, market_dir), "--date", date, "--top", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == KEYS and doc["date"] == date and doc["t"] == t and doc["note"] is None
    assert doc["book"]["kind"] == "flat" and doc["book"]["cash"] == 1.0
    assert doc["policy"]["macro"].startswith("phase 1")
    # the explained decision is the agent's own at t from a flat book
    macro_p, micro_p, _ = _policy_seed0(trained, smoke_market)
    params = make_env_params(market, feats, cfg.env)
    goal, probs = HierarchicalStrategy(cfg.networks).macro_decision(
        macro_p, flat_book(params), jnp.int32(t), params)
    m = doc["macro"]
    np.testing.assert_allclose([m["regime_probs"][r] for r in ("bull", "bear", "sideways")],
                               np.asarray(probs), atol=1e-6)
    sectors = [s for s in meta.sectors if s]
    np.testing.assert_allclose([m["goal_sector_weights"][s] for s in sectors],
                               np.asarray(goal)[: len(sectors)], atol=1e-6)
    micro_w = HierarchicalStrategy(cfg.networks).micro_weights(
        micro_p, flat_book(params), goal, jnp.int32(t), params)
    top = np.argsort(-np.asarray(micro_w), kind="stable")[:5]
    assert [e["ticker"] for e in doc["micro"]["explained"]] == [meta.tickers[i] for i in top]
    # every output: named drivers, sorted by |attribution|, complete within the tolerance
    assert doc["method"]["tolerance"] == 0.01 and doc["completeness"]["within_tolerance"]
    assert [e["output"] for e in m["explained"]][-1] == f"p({m['regime']})"
    for e in m["explained"] + doc["micro"]["explained"]:
        assert len(e["drivers"]) == 4
        assert {d["input"] for d in e["drivers"]} <= macro_names | stock_names
        mags = [abs(d["attribution"]) for d in e["drivers"]]
        assert mags == sorted(mags, reverse=True)
        # within 1% of the change, or of one percentage point for smaller changes
        assert abs(e["attribution_sum"] - e["delta"]) <= 0.01 * max(abs(e["delta"]), 0.01)
        assert e["relative_error"] <= 0.01
        assert abs(sum(e["by_group"].values()) - e["attribution_sum"]) < 1e-9


def test_explain_from_backtest_uses_the_agents_own_book(trained, smoke_market, capsys):
    """The Macro decision explained at a week end D of the test window, with the agent's own
    book, equals the one its backtest from data.test_start logs at D."""
    market_dir, market, meta, feats, cfg = smoke_market
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    t = _test_week_end(market, meta, cfg, nth=2)
    assert main([*_base(trained, market_dir), "--date", str(dates[t]), "--from-backtest",
                 "--json", "--stocks", "1", "--top", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    t0 = int(np.searchsorted(dates, np.datetime64(cfg.data.test_start)))
    assert doc["book"]["kind"] == "backtest" and doc["book"]["window_start"] == str(dates[t0])
    assert doc["book"]["cash"] < 0.5  # the agent is invested by then
    *_, policy = _policy_seed0(trained, smoke_market)
    params = make_env_params(market, feats, cfg.env)
    carry, _ = run_agent(cfg.networks, policy.macro_actor, policy.micro_actor, params, t0,
                         t - t0 + 1, return_window=cfg.env.return_window)
    assert bool(np.asarray(carry.macro_step)[0, t - t0])
    np.testing.assert_allclose(
        [doc["macro"]["regime_probs"][r] for r in ("bull", "bear", "sideways")],
        np.asarray(carry.regime_probs)[0, t - t0], atol=1e-5)


def test_explain_dates_and_bad_input(trained, smoke_market, capsys):
    market_dir, market, meta, _, cfg = smoke_market
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    t = _test_week_end(market, meta, cfg)
    saturday = dates[t] + 1  # week ends here are Fridays (or the last day before a holiday)
    assert saturday not in set(dates)
    base = _base(trained, market_dir)
    assert main([*base, "--date", str(saturday), "--json", "--top", "1", "--stocks", "1"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["date"] == str(dates[t]) and doc["requested_date"] == str(saturday)
    assert f"{saturday} is not a trading day; explaining the previous trading day " \
           f"{dates[t]}" in doc["note"] and doc["note"] in cap.err

    cases = [(["--run", "nope", "--date", str(dates[t])], "no run folder"),
             (["--run", "ev", "--date", str(dates[0] - 3)], "outside the market's dates"),
             (["--run", "ev", "--date", str(dates[-1] + 30)], "outside the market's dates"),
             (["--run", "ev", "--date", "2020-02-30"], "not an ISO date"),
             (["--run", "ev", "--date", str(dates[t]), "--seed", "3"], "--seed 3"),
             (["--run", "ev", "--date", str(dates[t]), "--top", "0"], "--top 0"),
             (["--run", "ev", "--date", str(dates[t]), "--steps", "128", "--max-steps", "64"],
              "--max-steps 64"),
             (["--run", "ev", "--date", str(dates[t]), "--tolerance", "1.5"], "--tolerance")]
    for extra, needle in cases:
        args = [a for a in base if a not in ("--run", "ev")] + extra
        assert main(args) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], (extra, err)
