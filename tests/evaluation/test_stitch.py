"""``evaluation.stitch.stitch_payloads``: stitching consecutive windows of known series gives
the payload of the concatenated window (metrics, seeds, tests), checked against NumPy
formulas; mismatched payloads and non-consecutive windows are one clear error."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation import metrics as em
from hrl_sarp_jax.evaluation.evaluate import SEEDED_METRICS, add_strategy, benchmark_tests
from hrl_sarp_jax.evaluation.stitch import stitch_payloads

L, S, K_RANDOM, K_AGENT = 150, 3, 3, 2
COSTS = ("brokerage", "stt")
SECTORS = ["Bank", "IT", "Pharma"]


def _data(seed: int = 0) -> dict:
    """Per-day arrays over L return days for every strategy (the 'one window' truth)."""
    rng = np.random.default_rng(seed)
    day = lambda *shape: rng.normal(4e-4, 0.01, (*shape, L))  # noqa: E731
    small = lambda *shape: rng.uniform(0, 1e-3, (*shape, L))  # noqa: E731

    def weights(*lead):
        w = rng.uniform(0.1, 1.0, (*lead, L, S))
        return w / w.sum(-1, keepdims=True) * 0.95

    return {
        "dates": np.datetime64("2020-01-01") + np.arange(L + 1),
        "bench": day(), "ew": day(), "oracle": day() + 1e-3, "agent": day(K_AGENT),
        "flat": day(), "random": day(K_RANDOM),
        "turn": {n: small(*k) for n, k in (("ew", ()), ("oracle", ()), ("random", (K_RANDOM,)),
                                            ("agent", (K_AGENT,)), ("flat", ()))},
        "cost": {n: {c: small(*k) for c in COSTS}
                 for n, k in (("ew", ()), ("oracle", ()), ("random", (K_RANDOM,)),
                              ("agent", (K_AGENT,)), ("flat", ()))},
        "sw": {"ew": weights(), "oracle": weights(), "random": weights(K_RANDOM),
               "agent": weights(K_AGENT), "flat": weights()},
        "regimes": rng.integers(0, 3, L), "calls": rng.integers(0, 3, (K_AGENT, L)),
    }


def _series(net, turn, cost, sw, value0=1e7) -> dict:
    frac = sum(cost.values())
    w = np.cumprod(1 + net)
    return {"net": net, "gross": net + frac, "cost_frac": frac, "costs": cost,
            "turnover": turn, "value": value0 * w,
            "drawdown": 1 - w / np.maximum.accumulate(np.r_[1.0, w])[1:],
            "sector_weights": sw}


def _payload(d: dict, lo: int, hi: int) -> dict:
    """A payload over return days lo..hi-1, laid out as ``evaluate_baselines`` + ``evaluate_run``
    (flat_rl, then hrl_sarp with its tests) build it."""
    cut = lambda x: np.asarray(x)[..., lo:hi]  # noqa: E731
    cutd = lambda c: {k: cut(v) for k, v in c.items()}  # noqa: E731
    cutsw = lambda x: np.asarray(x)[..., lo:hi, :]  # noqa: E731
    bench, regimes = cut(d["bench"]), cut(d["regimes"])
    zeros = {c: np.zeros(hi - lo) for c in COSTS}

    def metrics(s):
        return em.strategy_metrics(s["net"], benchmark=bench, turnover=s["turnover"],
                                   costs=s["costs"], cost_frac=s["cost_frac"], regimes=regimes)

    idx = _series(bench, np.zeros(hi - lo), zeros, None)
    ew = _series(cut(d["ew"]), cut(d["turn"]["ew"]), cutd(d["cost"]["ew"]), cutsw(d["sw"]["ew"]))
    orc = _series(cut(d["oracle"]), cut(d["turn"]["oracle"]), cutd(d["cost"]["oracle"]),
                  cutsw(d["sw"]["oracle"]))
    per = [_series(cut(d["random"][k]), cut(d["turn"]["random"][k]),
                   {c: cut(v[k]) for c, v in d["cost"]["random"].items()},
                   cutsw(d["sw"]["random"][k])) for k in range(K_RANDOM)]
    rnd = jax.tree.map(lambda *x: np.mean(x, 0), *per)
    w = np.cumprod(1 + rnd["net"])  # the seed blend's own wealth path, as evaluate_baselines
    rnd.update(value=1e7 * w, drawdown=1 - w / np.maximum.accumulate(np.r_[1.0, w])[1:])
    one = [metrics(p) for p in per]
    rnd_m = {m: float(np.mean([p[m] for p in one])) for m in SEEDED_METRICS}
    rnd_m["cost_drag_items"] = {c: float(np.mean([p["cost_drag_items"][c] for p in one]))
                                for c in COSTS}
    rnd_m["regimes"] = metrics(rnd)["regimes"]
    rnd_m["seed_blend_sharpe"] = em.strategy_metrics(rnd["net"])["sharpe"]
    stress = {"limit": 0.07, "historical": {}, "sector_shocks": {
        "equal_weight": {"value": 1e7}}}
    p = {
        "version": 1, "market": {"name": "m", "synthetic": True, "sectors": SECTORS,
                                 "num_stocks": 9},
        "window": {"start": str(d["dates"][lo]), "end": str(d["dates"][hi]), "t0": lo,
                   "days": hi - lo, "first_return_date": str(d["dates"][lo + 1])},
        "dates": d["dates"][lo + 1: hi + 1],
        "settings": {"rf_annual": 0.0, "schedule": "weekly", "risk_manager": True,
                     "stress_limit": 0.07, "bootstrap": {"num": 200, "mean_block": 5.0}},
        "seeds": {"random": list(range(K_RANDOM))}, "benchmark": "index_buy_hold",
        "regimes": {"source": "latent", "realised": regimes},
        "strategies": {
            "index_buy_hold": {"description": "index", "kind": "index", "schedule": "none",
                               "series": {**idx, "sector_weights": None},
                               "metrics": metrics(idx)},
            "equal_weight": {"description": "ew", "kind": "weights", "schedule": "weekly",
                             "upper_bound": False, "series": ew, "metrics": metrics(ew)},
            "random": {"description": "rnd", "kind": "seeded", "schedule": "weekly",
                       "upper_bound": False, "series": rnd, "metrics": rnd_m,
                       "seeds": {"seeds": list(range(K_RANDOM)),
                                 **{m: em.dispersion([q[m] for q in one])
                                    for m in SEEDED_METRICS}},
                       "per_seed_net": np.stack([q["net"] for q in per])}},
        "oracle": {"description": "oracle", "kind": "oracle", "schedule": "weekly",
                   "upper_bound": True, "series": orc, "metrics": metrics(orc),
                   "note": "UPPER BOUND"},
        "oracle_note": None, "stress": stress,
        "requires_trained_run": {"flat_rl": "x", "hrl_sarp": "y"},
    }
    p["tests"] = {"vs_benchmark": benchmark_tests(p)}
    p = add_strategy(p, "flat_rl", cut(d["flat"]), description="flat",
                     sector_weights=cutsw(d["sw"]["flat"]), turnover=cut(d["turn"]["flat"]),
                     cost_frac=sum(cutd(d["cost"]["flat"]).values()),
                     costs=cutd(d["cost"]["flat"]), compare=False)
    return add_strategy(p, "hrl_sarp", cut(d["agent"]), description="agent",
                        sector_weights=cutsw(d["sw"]["agent"]),
                        turnover=cut(d["turn"]["agent"]),
                        cost_frac=sum(cutd(d["cost"]["agent"]).values()),
                        costs=cutd(d["cost"]["agent"]), regime_calls=cut(d["calls"]), seed=3)


def _close(a, b, path=""):
    """Recursive equality of metric trees (floats to 1e-9 relative)."""
    if isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and b is not None:
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=path)
    else:
        assert a == b, (path, a, b)


def _ref(r: np.ndarray) -> dict:
    """NumPy reference metrics of daily returns r (rf = 0; finance.metrics runs in float32,
    hence rtol 1e-5 against these)."""
    w = np.cumprod(1 + r)
    k = int(np.ceil(0.05 * r.size))
    return {"sharpe": r.mean() / r.std(ddof=1) * np.sqrt(252),
            "cagr": w[-1] ** (252 / r.size) - 1,
            "max_drawdown": np.max(1 - w / np.maximum.accumulate(np.r_[1.0, w])[1:]),
            "cvar_95": -np.sort(r)[:k].mean()}


def test_stitching_windows_gives_the_concatenated_windows_metrics(tmp_path):
    d = _data()
    whole = _payload(d, 0, L)
    parts = [_payload(d, 0, 40), _payload(d, 40, 97), _payload(d, 97, L)]
    out = stitch_payloads(parts)

    assert out["window"] == whole["window"]
    np.testing.assert_array_equal(out["dates"], whole["dates"])
    np.testing.assert_array_equal(out["regimes"]["realised"], d["regimes"])
    assert [w["days"] for w in out["settings"]["stitched"]] == [40, 57, 53]
    assert list(out["strategies"]) == list(whole["strategies"])
    for name, e in whole["strategies"].items():
        _close(out["strategies"][name]["metrics"], e["metrics"], name)
        for key in ("net", "turnover", "cost_frac", "value", "drawdown"):
            np.testing.assert_allclose(out["strategies"][name]["series"][key],
                                       e["series"][key], rtol=1e-9, err_msg=f"{name}.{key}")
    _close(out["oracle"]["metrics"], whole["oracle"]["metrics"], "oracle")
    # the agent's seed dispersion and every test equal the concatenated window's
    _close(out["strategies"]["hrl_sarp"]["seeds"]["sharpe"],
           whole["strategies"]["hrl_sarp"]["seeds"]["sharpe"])
    _close(json.loads(json.dumps(out["tests"])), json.loads(json.dumps(whole["tests"])))
    assert set(out["tests"]["vs_hrl_sarp"]["pairs"]) == set(whole["strategies"]) - {"hrl_sarp"}
    np.testing.assert_array_equal(out["strategies"]["hrl_sarp"]["regime_calls"], d["calls"])
    assert out["requires_trained_run"] == {}

    # against NumPy formulas on the concatenated series
    blend = d["agent"].mean(0)
    agent = out["strategies"]["hrl_sarp"]
    for key, value in _ref(blend).items():
        np.testing.assert_allclose(agent["metrics"][key], value, rtol=1e-5, atol=2e-6, err_msg=key)
    np.testing.assert_allclose(agent["metrics"]["turnover"], d["turn"]["agent"].mean() * 252)
    np.testing.assert_allclose(agent["metrics"]["cost_drag"],
                               sum(d["cost"]["agent"].values()).mean() * 252)
    for key in ("sharpe", "cagr", "max_drawdown", "cvar_95"):
        np.testing.assert_allclose(agent["seeds"]["per_seed"][key],
                                   [_ref(r)[key] for r in d["agent"]], rtol=1e-5, atol=2e-6)
    rnd = out["strategies"]["random"]["metrics"]
    np.testing.assert_allclose(rnd["sharpe"], np.mean([_ref(r)["sharpe"] for r in d["random"]]),
                               rtol=1e-5)
    np.testing.assert_allclose(rnd["turnover"], d["turn"]["random"].mean() * 252)
    np.testing.assert_allclose(rnd["cost_drag"], sum(d["cost"]["random"].values()).mean() * 252)
    ew = out["strategies"]["equal_weight"]
    np.testing.assert_allclose(ew["series"]["value"], 1e7 * np.cumprod(1 + d["ew"]))
    shocked = out["stress"]["sector_shocks"]["equal_weight"]["scenarios"]
    assert shocked and all("max_drawdown" in s for s in shocked.values())

    # a stitched payload is a report payload
    from hrl_sarp_jax.evaluation.report import write_report

    files = write_report(out, tmp_path / "report")
    doc = json.loads(files["metrics"].read_text())
    assert doc["window"]["days"] == L and len(doc["settings"]["stitched"]) == 3
    assert doc["strategies"]["hrl_sarp"]["seed_dispersion"]["per_seed"]["sharpe"] == \
        pytest.approx([_ref(r)["sharpe"] for r in d["agent"]], rel=1e-5)
    for key in ("sharpe", "cagr", "max_drawdown", "cvar_95", "turnover", "cost_drag"):
        assert all(key in doc["strategies"][n] for n in doc["strategies"]), key
    assert doc["oracle"]["sharpe"] == pytest.approx(_ref(d["oracle"])["sharpe"], rel=1e-5)


def test_one_window_stitches_to_itself():
    d = _data(1)
    p = _payload(d, 10, 90)
    out = stitch_payloads([p])
    for name, e in p["strategies"].items():
        _close(out["strategies"][name]["metrics"], e["metrics"], name)


def test_mismatched_or_non_consecutive_windows_are_one_clear_error():
    d = _data(2)
    a, b, c = _payload(d, 0, 50), _payload(d, 50, 100), _payload(d, 100, L)
    with pytest.raises(ConfigError, match="must be consecutive"):
        stitch_payloads([a, c])
    with pytest.raises(ConfigError, match="must be consecutive"):
        stitch_payloads([b, a])
    dropped = {**b, "strategies": {n: e for n, e in b["strategies"].items() if n != "random"}}
    with pytest.raises(ConfigError, match=r"other strategies .*missing \['random'\]"):
        stitch_payloads([a, dropped])
    fewer = {**b, "strategies": {**b["strategies"], "hrl_sarp": {
        **b["strategies"]["hrl_sarp"],
        "per_seed_net": b["strategies"]["hrl_sarp"]["per_seed_net"][:1]}}}
    with pytest.raises(ConfigError, match="'hrl_sarp' has 1 seed"):
        stitch_payloads([a, fewer])
    with pytest.raises(ConfigError, match="rf_annual"):
        stitch_payloads([a, {**b, "settings": {**b["settings"], "rf_annual": 0.07}}])
    with pytest.raises(ConfigError, match="no payloads"):
        stitch_payloads([])
    for err in ("must be consecutive", "no payloads"):
        try:
            stitch_payloads([a, c] if err != "no payloads" else [])
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith("stitch_payloads:")


def _carry(parts: list[dict]) -> list[dict]:
    """The windows as a walk-forward evaluates them: every window after the first marked
    'carried', each single-path strategy's value and drawdown continuing the previous
    window's value and peak (as backtests started from the carried book give them)."""
    out, ends = [], {}
    for i, p in enumerate(parts):
        p = {**p, "window": {**p["window"], **({"start_book": "carried"} if i else {})},
             "strategies": dict(p["strategies"])}
        entries = [*p["strategies"].items(), ("oracle", p["oracle"])]
        for name, e in entries:
            if "per_seed_net" in e:
                continue
            v0, peak0 = ends.get(name, (1e7, 1e7))
            value = v0 * np.cumprod(1 + np.asarray(e["series"]["net"]))
            peak = np.maximum.accumulate(np.r_[peak0, value])[1:]
            e = {**e, "series": {**e["series"], "value": value, "drawdown": 1 - value / peak}}
            ends[name] = (value[-1], peak[-1])
            if name == "oracle":
                p["oracle"] = e
            else:
                p["strategies"][name] = e
        out.append(p)
    return out


def test_carried_windows_stitch_into_one_continuous_wealth_path():
    d = _data(3)
    whole = _payload(d, 0, L)
    parts = _carry([_payload(d, 0, 40), _payload(d, 40, 97), _payload(d, 97, L)])
    out = stitch_payloads(parts)
    assert [w["start_book"] for w in out["folds"]["windows"]] == ["cash", "carried", "carried"]
    assert out["folds"]["carried"] is True
    for name in ("index_buy_hold", "equal_weight", "oracle"):
        got = out["oracle"] if name == "oracle" else out["strategies"][name]
        src = [p["oracle"] if name == "oracle" else p["strategies"][name] for p in parts]
        for key in ("value", "drawdown"):
            np.testing.assert_allclose(got["series"][key],
                                       np.concatenate([e["series"][key] for e in src]),
                                       rtol=1e-9, atol=1e-12, err_msg=f"{name}.{key}")
        np.testing.assert_allclose(got["series"]["value"][-1],
                                   1e7 * np.prod(1 + np.asarray(
                                       (whole["oracle"] if name == "oracle"
                                        else whole["strategies"][name])["series"]["net"])))
    # a window said to carry the book but starting again from the initial value is refused
    broken = [parts[0], {**_payload(d, 40, 97), "window": parts[1]["window"]}]
    with pytest.raises(ConfigError, match=r"window 1 starts from the carried book but "
                                          r"'index_buy_hold' starts at value 1e\+07") as err:
        stitch_payloads(broken)
    assert "\n" not in str(err.value)


def _np_sharpe(r) -> float:
    return float(np.mean(r) / np.std(r, ddof=1) * np.sqrt(252))


def test_folds_block_switch_costs_and_paired_folds(tmp_path):
    """Per window: Sharpes by NumPy (seed-mean for seeded and trained strategies), the switch
    turnover / cost = day 0 of each later window (the seed mean), and paired_folds =
    paired_over_markets of the per-window Sharpes, plus the stitched tests' difference."""
    from hrl_sarp_jax.evaluation import stats as st
    from hrl_sarp_jax.evaluation.report import write_report

    d = _data(4)
    cuts = [(0, 40), (40, 97), (97, L)]
    parts = _carry([_payload(d, lo, hi) for lo, hi in cuts])
    out = stitch_payloads(parts, labels=["fold2", "fold3", "fold4"])
    folds = out["folds"]
    assert [w["label"] for w in folds["windows"]] == ["fold2", "fold3", "fold4"]
    assert [w["days"] for w in folds["windows"]] == [40, 57, 53]
    assert set(folds["strategies"]) == {*out["strategies"], "oracle"}

    def per_window(series):  # [.., L] -> list of per-window NumPy Sharpes (seed mean)
        x = np.atleast_2d(series)
        return [float(np.mean([_np_sharpe(r[lo:hi]) for r in x])) for lo, hi in cuts]

    truth = {"index_buy_hold": d["bench"], "equal_weight": d["ew"], "random": d["random"],
             "flat_rl": d["flat"], "hrl_sarp": d["agent"], "oracle": d["oracle"]}
    for name, series in truth.items():
        np.testing.assert_allclose(folds["strategies"][name]["sharpe"], per_window(series),
                                   rtol=1e-5, err_msg=name)
    # switch = day 0 of windows 1 and 2: the seed mean for the seeded / trained ones
    for name, turn, cost in (
            ("equal_weight", d["turn"]["ew"], sum(d["cost"]["ew"].values())),
            ("random", d["turn"]["random"].mean(0), sum(d["cost"]["random"].values()).mean(0)),
            ("hrl_sarp", d["turn"]["agent"].mean(0), sum(d["cost"]["agent"].values()).mean(0))):
        e = folds["strategies"][name]
        np.testing.assert_allclose(e["switch_turnover"], [turn[40], turn[97]], rtol=1e-12)
        np.testing.assert_allclose(e["switch_cost"], [cost[40], cost[97]], rtol=1e-12)
        np.testing.assert_allclose(e["switch_cost_total"], cost[40] + cost[97], rtol=1e-12)
    assert folds["strategies"]["index_buy_hold"]["switch_cost"] == [0.0, 0.0]

    pf = out["paired_folds"]["vs_hrl_sarp"]
    assert pf["agent"] == "hrl_sarp" and pf["n"] == 3 and pf["folds"] == ["fold2", "fold3",
                                                                           "fold4"]
    assert "wide" in pf["note"]
    assert set(pf["pairs"]) == set(out["strategies"]) - {"hrl_sarp"}
    agent = per_window(d["agent"])
    for name, pair in pf["pairs"].items():
        other = per_window(truth[name])
        np.testing.assert_allclose(pair["per_fold"], np.subtract(agent, other), rtol=1e-5,
                                   atol=1e-5)  # Sharpes ~1 computed in float32
        ref = st.paired_over_markets(folds["strategies"]["hrl_sarp"]["sharpe"],
                                     folds["strategies"][name]["sharpe"])
        _close(pair["pooled"], ref, name)
        diff = np.subtract(agent, other)   # the t-interval by hand (t_{0.975, 2} = 4.3027)
        half = 4.302652729911275 * diff.std(ddof=1) / np.sqrt(3)
        np.testing.assert_allclose(pair["pooled"]["ci95"], [diff.mean() - half,
                                                             diff.mean() + half], rtol=1e-4)
        assert pair["pooled"]["wins"] == int(np.sum(np.array(agent) > np.array(other)))
        boot = out["tests"]["vs_hrl_sarp"]["pairs"][name]["bootstrap"]
        assert pair["stitched"]["diff"] == boot["diff"]
        assert pair["stitched"]["ci_low"] == boot["ci_low"]

    files = write_report(out, tmp_path / "report")
    doc = json.loads(files["metrics"].read_text())
    assert doc["folds"]["strategies"]["hrl_sarp"]["switch_cost"] == pytest.approx(
        folds["strategies"]["hrl_sarp"]["switch_cost"])
    assert doc["paired_folds"]["vs_hrl_sarp"]["pairs"]["equal_weight"]["pooled"]["n"] == 3
    md = files["markdown"].read_text()
    assert "## Walk-forward folds" in md and "## Paired over folds: vs_hrl_sarp" in md
    assert "switch fold3: turnover / cost" in md and "wide" in md
    assert "Paired over folds" in files["html"].read_text()
    # a single window (or a plain evaluation payload) has no fold section
    one = stitch_payloads([parts[0]])
    assert one["folds"]["strategies"]["equal_weight"]["switch_cost"] == []
    from hrl_sarp_jax.evaluation.report import fold_tables

    assert fold_tables(one) == [] and fold_tables(parts[0]) == []


def test_evaluate_baselines_carries_each_strategys_book_into_the_next_window(tiny):
    """Window B started from window A's end books: every strategy starts at the value it
    ended A with (each random seed its own), the index holds on without a new entry, equal
    weight trades only its drift back (not a buy-in from cash), the windows stitch with
    their switch costs; asking for the end books changes nothing."""
    from hrl_sarp_jax.config import Config
    from hrl_sarp_jax.evaluation.evaluate import evaluate_baselines
    from tests.evaluation.make_market import ENV_CFG, meta_json

    market, meta, feats, _ = tiny
    cfg = Config(env=ENV_CFG)
    kw = {"seeds": 2, "sector_drift": meta_json(), "bootstrap_num": 50, "historical": False,
          "include": ("equal_weight", "index_buy_hold", "random", "oracle"),
          "risk_manager": False}
    run = lambda split, **more: evaluate_baselines(market, meta, feats, cfg,  # noqa: E731
                                                   split=split, **kw, **more)
    a = run(("2020-02-03", "2020-04-01"), return_books=True)
    plain = run(("2020-02-03", "2020-04-01"))
    for n, e in plain["strategies"].items():
        for key in ("net", "value", "turnover", "cost_frac"):
            np.testing.assert_array_equal(a["strategies"][n]["series"][key], e["series"][key])
    books = a["end_books"]
    assert set(books) == {"equal_weight", "index_buy_hold", "random", "oracle"}
    np.testing.assert_allclose(books["random"].port.value, 1e7 * np.prod(
        1 + a["strategies"]["random"]["per_seed_net"], axis=1), rtol=1e-5)

    split_b = (a["window"]["end"], "2020-06-30")
    b = run(split_b, start_books=books)
    fresh = run(split_b)
    assert b["window"]["start_book"] == "carried" and "start_book" not in fresh["window"]
    for name in ("equal_weight", "oracle", "index_buy_hold"):
        ea = a["oracle"] if name == "oracle" else a["strategies"][name]
        eb = b["oracle"] if name == "oracle" else b["strategies"][name]
        start = eb["series"]["value"][0] / (1 + eb["series"]["net"][0])
        np.testing.assert_allclose(start, ea["series"]["value"][-1], rtol=1e-5, err_msg=name)
    idx = b["strategies"]["index_buy_hold"]["series"]
    t0 = b["window"]["t0"]
    np.testing.assert_array_equal(idx["net"], np.asarray(market.benchmark_returns, np.float64)[
        t0 + 1: t0 + 1 + b["window"]["days"]])
    assert idx["turnover"][0] == 0 and idx["cost_frac"][0] == 0
    assert fresh["strategies"]["index_buy_hold"]["series"]["cost_frac"][0] > 0
    ew_b, ew_fresh = b["strategies"]["equal_weight"]["series"], fresh["strategies"][
        "equal_weight"]["series"]
    assert ew_b["turnover"][0] < 0.2 < 0.45 < ew_fresh["turnover"][0]
    assert ew_b["cost_frac"][0] < ew_fresh["cost_frac"][0]

    out = stitch_payloads([a, b], labels=["fold0", "fold1"])
    assert "end_books" not in out
    for name, e in out["folds"]["strategies"].items():
        eb = b["oracle"] if name == "oracle" else b["strategies"][name]
        assert e["switch_cost"] == [float(eb["series"]["cost_frac"][0])], name
        assert e["switch_turnover"] == [float(eb["series"]["turnover"][0])], name
    with pytest.raises(ConfigError, match=r"start_books: \['hrl_sarp'\] are not among"):
        run(split_b, start_books={"hrl_sarp": books["equal_weight"]})
