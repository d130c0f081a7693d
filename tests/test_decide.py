"""``hrl-sarp decide`` / ``hrl-sarp paper`` on the smoke run of tests/test_cli_evaluate.py
(Phases 1-2, one seed): the decision at D is the project's backtest's decision at D, orders
in whole shares reach the target exposure, the ledger's hash chain catches edits, paper's P&L
is the hand computation, and bad input is one line that leaves files as they were."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from hrl_sarp_jax import decide as dc
from hrl_sarp_jax.checkpointing import create_run, data_fingerprint, open_run
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import to_dict
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.evaluation import ledger as lg
from hrl_sarp_jax.evaluation.agent import EnsembleStrategy, HierarchicalStrategy
from hrl_sarp_jax.evaluation.backtest import run_backtest
from hrl_sarp_jax.evaluation.explain import window_start
from hrl_sarp_jax.training.policy import TrainedPolicy, load_policy
from tests.test_cli_evaluate import smoke_market, trained  # noqa: F401  (shared fixtures)

# the default cost schedule per currency unit, written out (finance/costs.py): STT + stamp +
# exchange + SEBI + GST on exchange (no brokerage by default) + 5 bps slippage; no impact
BUY_RATE = 0.001 + 0.00015 + 0.0000325 + 0.000001 + 0.18 * 0.0000325 + 0.0005
SELL_RATE = 0.001 + 0.0000325 + 0.000001 + 0.18 * 0.0000325 + 0.0005


def _two_seeds(policy: TrainedPolicy) -> TrainedPolicy:
    """The trained seed and a second, different one (its Micro params scaled by 0.5): an
    ensemble of two seeds without training a second seed."""
    stack = lambda a, b: jax.tree.map(lambda x, y: np.concatenate([x, y]), a, b)  # noqa: E731
    half = jax.tree.map(lambda x: np.asarray(x) * 0.5, policy.micro_actor)
    return TrainedPolicy(macro_actor=stack(policy.macro_actor, policy.macro_actor),
                         micro_actor=stack(policy.micro_actor, half), seeds=2,
                         source=policy.source)


def test_decide_at_d_is_the_backtests_decision_at_d(trained, smoke_market,  # noqa: F811
                                                     monkeypatch):
    _, market, meta, feats, cfg = smoke_market
    run = open_run(trained / "ev")
    policy = _two_seeds(load_policy(run, cfg, market, meta, feats))
    monkeypatch.setattr(dc, "load_policy", lambda *_a: policy)
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    t = len(dates) - 2  # the last day the whole market's backtest can decide on
    doc = dc.decide_run(run, cfg, market, meta, feats, date=str(dates[t]), capital=1e6)
    assert doc["date"] == str(dates[t]) and doc["seeds"] == 2 and doc["seed"] is None
    # not a week end: the goals decided earlier in the backtest must stay in force at D
    assert not np.asarray(market.week_end)[t] and not doc["goal"]["macro_decides_today"]

    # the reference: the project's backtest of the seed ensemble over the whole market
    t0 = window_start(dates, t, cfg.data.val_start, cfg.data.test_start)
    assert doc["window_start"] == str(dates[t0])
    params = make_env_params(market, feats, cfg.env)
    strategy = HierarchicalStrategy(cfg.networks)
    carries = strategy.init_carries(policy.macro_actor, policy.micro_actor, params, t0,
                                    t - t0 + 1)
    carry, res = run_backtest(EnsembleStrategy(cfg.networks), carries, params, t0,
                              np.ones(t - t0 + 1, bool), risk_manager=True,
                              return_window=cfg.env.return_window)
    a = doc["arrays"]
    np.testing.assert_allclose(a["target"], np.asarray(res.target)[-1], atol=1e-5)
    np.testing.assert_allclose(a["weights"], np.asarray(res.weights)[-1], atol=1e-5)
    np.testing.assert_allclose(a["drifted"], np.asarray(res.drifted)[-1], atol=1e-5)
    np.testing.assert_allclose(doc["risk"]["exposure"], np.asarray(res.exposure)[-1], atol=1e-6)
    goal = np.asarray(carry.goals)[:, -1].mean(0)  # the two seeds' goals in force at D
    sectors = [s for s in meta.sectors if s]
    np.testing.assert_allclose([doc["goal"]["sector_weights"][s] for s in sectors],
                               goal[: len(sectors)], atol=1e-5)
    assert np.asarray(res.target)[-1].sum() > 0.99  # a decision was taken at D
    # the backtest's book at D in whole shares: the target exposure within one share a ticker
    price = np.asarray(market.close, np.float64)[t]
    held = (a["shares_target"] > 0) | (a["weights"] > 0)
    assert abs(doc["exposure_after"] - doc["exposure_target"]) <= price[held].sum()
    np.testing.assert_array_equal(a["shares_target"] - a["shares_current"], [
        {o["ticker"]: o["shares"] for o in doc["orders"]}.get(x, 0) for x in meta.tickers])

    # from all cash (an empty book): the orders' value is the target exposure within one
    # share price per ticker bought; whole shares; cash after the estimated costs >= 0
    cash = 2e6
    doc = dc.decide_run(run, cfg, market, meta, feats, date=str(dates[t]), holdings={},
                        cash=cash)
    a = doc["arrays"]
    if not doc["goal"]["macro_decides_today"]:  # the backtest's goals stay in force
        np.testing.assert_allclose([doc["goal"]["sector_weights"][s] for s in sectors],
                                   goal[: len(sectors)], atol=1e-5)
    np.testing.assert_allclose(doc["risk"]["drawdown"], 1 - np.asarray(res.value)[-2] / max(
        float(cfg.env.initial_value), np.asarray(res.value)[:-1].max()), atol=1e-6)
    assert doc["value"] == cash and doc["orders"] and all(o["side"] == "buy"
                                                          for o in doc["orders"])
    values = np.array([o["value"] for o in doc["orders"]])
    bought = np.array([o["price"] for o in doc["orders"]])
    target_value = float(np.sum(a["weights"]) * cash)
    np.testing.assert_allclose(doc["exposure_target"], target_value)
    assert 0 <= target_value - values.sum() <= bought.sum()
    for o in doc["orders"]:
        j = meta.tickers.index(o["ticker"])
        assert o["shares"] == int(np.floor(a["weights"][j] * cash / price[j]))
        assert o["price"] == price[j] and o["value"] == o["shares"] * price[j]
    # the cost model's estimate = the hand rate on the bought value (impact off by default)
    np.testing.assert_allclose(doc["estimated_costs"]["total"], BUY_RATE * values.sum(),
                               rtol=1e-5)
    np.testing.assert_allclose(doc["cash_after"],
                               cash - values.sum() - doc["estimated_costs"]["total"], rtol=1e-9)
    assert doc["cash_after"] >= 0

    # one seed picked: the ensemble of that seed alone
    one = dc.decide_run(run, cfg, market, meta, feats, date=str(dates[t]), capital=1e6, seed=1)
    assert one["seed"] == 1 and not np.allclose(one["arrays"]["target"],
                                                doc["arrays"]["target"], atol=1e-4)


def test_decision_params_cut_the_market_at_d_and_add_a_day(smoke_market):  # noqa: F811
    """Day t, even the last one, becomes a decision day (one more day, zero returns), and
    every array up to t is the whole market's (nothing after t is left)."""
    _, market, _, feats, cfg = smoke_market
    full = make_env_params(market, feats, cfg.env)
    for t in (market.num_days - 1, market.num_days - 30):
        p = dc.decision_params(market, feats, cfg, t)
        assert p.returns.shape[0] == t + 2 and p.stock_features.shape[0] == t + 2
        assert not np.asarray(p.returns)[t + 1].any()
        for name in ("returns", "stock_features", "macro_features", "sector_features",
                     "tradable", "adv_value", "circuit_lock", "week_end", "adjacency"):
            np.testing.assert_array_equal(np.asarray(getattr(p, name))[: t + 1],
                                          np.asarray(getattr(full, name))[: t + 1], name)
        np.testing.assert_array_equal(np.asarray(p.stock_features)[t + 1],
                                      np.asarray(full.stock_features)[t])


def test_integer_targets_floor_and_fund_the_costs():
    price = np.array([10.0, 20.0, 50.0])
    rate = 0.01
    costs = lambda b, s: {"total": rate * float(b.sum() + s.sum())}  # noqa: E731
    # floors; a position to keep keeps its shares; a NaN price is not traded
    q, est, after = dc.integer_targets(np.array([5.9, 3.0 - 1e-9, 7.5]), np.array([0, 1, 2]),
                                    np.array([10.0, 20.0, np.nan]), 200.0,
                                    np.array([False, False, False]), costs)
    assert q.tolist() == [5, 3, 2]
    np.testing.assert_allclose(est["total"], rate * (5 * 10 + 2 * 20))
    np.testing.assert_allclose(after, 200 - 90 - 0.9)
    q, _, _ = dc.integer_targets(np.array([5.9, 0.0, 0.0]), np.array([2, 4, 1]), price, 0.0,
                              np.array([False, True, False]), costs)
    assert q.tolist() == [5, 4, 0]  # sells the third to fund the first
    # all cash spent on the target: the largest buy gives up shares until the costs are paid
    # (buys 100 + 120 and their costs 2.2 exceed the 200 of cash by 22.2: two shares of 20)
    q, est, after = dc.integer_targets(np.array([10.0, 6.0, 0.0]), np.zeros(3, int), price, 200.0,
                                    np.zeros(3, bool), costs)
    assert q.tolist() == [10, 4, 0] and after >= 0
    np.testing.assert_allclose(after, 200 - 180 - 1.8)


def _record(date: str, cash: float, holdings: dict, orders: dict) -> dict:
    from hrl_sarp_jax.config import CostConfig

    return {"kind": "decision", "date": date, "book": {"cash": cash, "holdings": holdings},
            "orders": [{"ticker": k, "shares": v} for k, v in orders.items()],
            "cost_config": to_dict(CostConfig())}


def test_ledger_hash_chain_detects_edits(tmp_path, monkeypatch):
    path = tmp_path / "ledger.jsonl"
    for k in range(3):
        lg.append_entry(path, _record(f"2020-07-0{k + 1}", 100.0 + k, {}, {"A": k}))
    recs = lg.read_ledger(path)
    lines = path.read_text().splitlines()
    assert [r["book"]["cash"] for r in recs] == [100.0, 101.0, 102.0]
    assert recs[0]["prev"] == lg.GENESIS
    assert recs[1]["prev"] == lg.sha256_text(lines[0]) and recs[2]["prev"] == lg.sha256_text(
        lines[1])
    good = path.read_bytes()

    def tampered(new_lines, needle):
        path.write_text("".join(x + "\n" for x in new_lines))
        with pytest.raises(DataError, match=needle) as err:
            lg.read_ledger(path)
        assert "\n" not in str(err.value)
        before = path.read_bytes()
        with pytest.raises(DataError, match=needle):  # nothing is appended to it
            lg.append_entry(path, _record("2020-07-09", 1.0, {}, {}))
        assert path.read_bytes() == before

    edited = lines[1].replace('"cash":101.0', '"cash":999.0')
    assert edited != lines[1]
    tampered([lines[0], edited, lines[2]], "line 2: its content does not match")
    rec = json.loads(edited)  # a careful forger recomputes the line's own hash
    rec["sha256"] = lg.record_hash(rec)
    tampered([lines[0], lg.canonical(rec), lines[2]], "line 3: its prev hash is not the sha256 "
                                                      "of line 2")
    tampered([lines[0], lines[1], lines[2].replace('"cash":102.0', '"cash":1.0')], "line 3")
    tampered([lines[0], lines[2]], "line 2: its prev hash")
    tampered([lines[1], lines[2]], "line 1: the first line does not start the chain")
    path.write_bytes(good[:-5])
    with pytest.raises(DataError, match="line 3: the last line has no newline"):
        lg.read_ledger(path)

    # a write that fails half way leaves the ledger as it was
    path.write_bytes(good)
    real = lg.os.write

    def half(fd, data):
        real(fd, data[:10])
        raise OSError("disk full")

    monkeypatch.setattr(lg.os, "write", half)
    with pytest.raises(OSError, match="disk full"):
        lg.append_entry(path, _record("2020-07-09", 1.0, {}, {}))
    monkeypatch.setattr(lg.os, "write", real)
    assert path.read_bytes() == good and len(lg.read_ledger(path)) == 3


def test_paper_pnl_of_a_hand_made_ledger(smoke_market, tmp_path):  # noqa: F811
    _, market, meta, _, _ = smoke_market
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    close = np.asarray(market.close, np.float64)
    opens = np.asarray(market.open, np.float64)
    a, b, c = (meta.tickers[j] for j in (0, 3, 6))
    ja, jb, jc = 0, 3, 6
    t1, t2 = len(dates) - 40, len(dates) - 20
    path = tmp_path / "paper.jsonl"
    cash0 = 100_000.0
    lg.append_entry(path, _record(str(dates[t1]), cash0, {}, {a: 10, b: 5}))
    buy1 = 10 * close[t1, ja] + 5 * close[t1, jb]
    cost1 = BUY_RATE * buy1
    cash1 = cash0 - buy1 - cost1
    lg.append_entry(path, _record(str(dates[t2]), cash1, {a: 10, b: 5}, {a: -4, c: 3}))
    sell2, buy2 = 4 * close[t2, ja], 3 * close[t2, jc]
    cost2 = SELL_RATE * sell2 + BUY_RATE * buy2
    cash2 = cash1 + sell2 - buy2 - cost2
    last = len(dates) - 1
    value = 6 * close[last, ja] + 5 * close[last, jb] + 3 * close[last, jc] + cash2

    doc = dc.paper(path, market, meta)
    np.testing.assert_allclose(doc["costs_paid"], cost1 + cost2, rtol=1e-5)
    np.testing.assert_allclose(doc["value"], value, rtol=1e-7)
    np.testing.assert_allclose(doc["pnl"], value - cash0, rtol=1e-5)
    assert doc["start_value"] == cash0 and doc["holdings"] == {a: 6, b: 5, c: 3}
    assert doc["mark_date"] == str(dates[last]) and doc["decisions"] == 2
    r1, r2 = doc["rows"]
    assert r1["book_matches"] and r2["book_matches"]
    np.testing.assert_allclose(r1["value_next"], 10 * close[t2, ja] + 5 * close[t2, jb] + cash1,
                               rtol=1e-7)
    np.testing.assert_allclose(r1["pnl"] + r2["pnl"], doc["pnl"], rtol=1e-6)
    gap1 = 10 * (opens[t1 + 1, ja] - close[t1, ja]) + 5 * (opens[t1 + 1, jb] - close[t1, jb])
    assert np.asarray(market.has_ohlc)[[ja, jb]].all()
    np.testing.assert_allclose(r1["gap_to_next_open"], gap1, rtol=1e-6)
    np.testing.assert_allclose(r1["gap_fraction"], gap1 / buy1, rtol=1e-6)
    assert "P&L" in dc.format_paper(doc)


def test_decide_and_paper_cli_ledger_and_bad_input(trained, smoke_market, tmp_path,  # noqa: F811
                                                   capsys):
    market_dir, market, meta, _, cfg = smoke_market
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    ledger = tmp_path / "ledger.jsonl"
    base = ["decide", "--run", "ev", "--data", str(market_dir), "--checkpoints", str(trained)]
    # a non-trading day means the trading day before it (the day the API test compiled for)
    t = len(dates) - 2
    day = str(dates[t] + 1) if dates[t + 1] - dates[t] > 1 else str(dates[t])
    base += ["--date", day]
    assert main([*base, "--capital", "1000000", "--ledger", str(ledger), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["date"] == str(dates[t]) and doc["value"] == 1e6
    assert (doc["note"] is not None) == (day != str(dates[t]))
    holdings = tmp_path / "book.csv"
    a, b = meta.tickers[0], meta.tickers[4]
    holdings.write_text(f"ticker,shares\n{a},100\n{b},7\ncash,250000\n")
    assert main([*base, "--holdings", str(holdings), "--seed", "0", "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert "risk manager:" in out and "regime call:" in out and "goal in force:" in out
    assert f"ledger: appended to {ledger}" in out
    recs = lg.read_ledger(ledger)
    assert len(recs) == 2 and recs[1]["book"]["holdings"] == {a: 100, b: 7}
    assert recs[1]["book"]["cash"] == 250000.0 and recs[1]["seed"] == 0
    assert recs[0]["orders"] == [{"ticker": o["ticker"], "shares": o["shares"],
                                  "price": o["price"]} for o in doc["orders"]]
    assert main(["paper", "--ledger", str(ledger), "--data", str(market_dir), "--json"]) == 0
    paper = json.loads(capsys.readouterr().out)
    assert paper["decisions"] == 2 and paper["mark_date"] == str(dates[-1])
    opens, close = np.asarray(market.open), np.asarray(market.close)
    for rec, row in zip(recs, paper["rows"], strict=True):  # filled at D's close, opens at D+1
        gap = sum(o["shares"] * (float(opens[t + 1, meta.tickers.index(o["ticker"])])
                                 - float(close[t, meta.tickers.index(o["ticker"])]))
                  for o in rec["orders"])
        if rec["orders"]:
            np.testing.assert_allclose(row["gap_to_next_open"], gap, rtol=1e-5)
        else:
            assert row["gap_to_next_open"] is None
    assert not paper["rows"][1]["book_matches"]  # the holdings are not what line 1 left

    saved = ledger.read_bytes()
    bad_ticker = tmp_path / "bad.csv"
    bad_ticker.write_text(f"ticker,shares\n{a},1\nNOPE,3\n")
    root = trained
    create_run(root, "empty", cfg, data_fingerprint(market_dir), resume=False).close()
    tampered = tmp_path / "tampered.jsonl"
    lines = saved.decode().splitlines()
    assert '"seeds":1' in lines[0]
    tampered.write_text(lines[0].replace('"seeds":1', '"seeds":2') + "\n" + lines[1] + "\n")
    cases = [
        ([*base, "--capital", "-5"], "--capital -5: give a positive amount"),
        ([*base, "--holdings", str(bad_ticker), "--cash", "10"], "['NOPE'] are not in the market"),
        ([*base[:2], "empty", *base[3:], "--capital", "1000"], "has no checkpoint of the Macro"),
        ([*base, "--capital", "1000", "--date", "2031-01-02"], "outside the market's dates"),
        ([*base, "--capital", "1000", "--date", str(dates[1])], "before the first day the "),
        ([*base, "--capital", "1000", "--seed", "3"], "--seed 3"),
        ([*base, "--capital", "1000", "--ledger", str(tampered)], "line 1: its content"),
        (["paper", "--ledger", str(tampered), "--data", str(market_dir)], "line 1"),
        (["paper", "--ledger", str(tmp_path / "none.jsonl"), "--data", str(market_dir)],
         "no such file"),
    ]
    before = tampered.read_bytes()
    for args, needle in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    assert ledger.read_bytes() == saved and tampered.read_bytes() == before


def test_weekly_frequency_decides_on_week_ends_only(trained, smoke_market):  # noqa: F811
    """env.micro_frequency = weekly: a date inside the week is one line naming the key and
    the next decision day (the backtest holds its book there)."""
    import dataclasses

    _, market, meta, feats, cfg = smoke_market
    weekly = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, micro_frequency="weekly"))
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    week_end = np.asarray(market.week_end, bool)
    last = int(np.flatnonzero(week_end[: len(dates) - 1])[-1])   # the last week end
    t = last - 1                                                 # the day before it
    assert not week_end[t]
    nxt = dates[last]
    with pytest.raises(ConfigError, match=rf"env\.micro_frequency.*next decision: {nxt}"):
        dc.decide_run(open_run(trained / "ev"), weekly, market, meta, feats,
                      date=str(dates[t]), capital=1e6)
