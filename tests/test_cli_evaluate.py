"""``hrl-sarp evaluate`` on a run trained in-process (Phases 1-2, smoke preset): the report's
agent numbers are those of stepping the HierarchicalEnv with the restored policy, the decision
log is complete, and bad input is one clear line."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import create_run, data_fingerprint, open_run
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.data.io import market_identity
from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.pipeline import resolve_split
from hrl_sarp_jax.training import rl_macro, rl_micro
from hrl_sarp_jax.training.policy import load_policy
from hrl_sarp_jax.training.runner import run_pretrain_phase
from tests.training.conftest import smoke_cfg

BASELINES = ("equal_weight", "index_buy_hold", "random", "sector_momentum", "oracle")


@pytest.fixture(scope="module")
def smoke_market(tmp_path_factory):
    """(market_dir, market, meta, feats, cfg): tests/training's smoke market, tiny networks."""
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from hrl_sarp_jax.features.build import build_features

    cfg = smoke_cfg()
    out = write_synthetic_market(tmp_path_factory.mktemp("smoke") / "market", cfg.synth)
    market, meta = load_market(out, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    return out, market, meta, feats, cfg


@pytest.fixture(scope="module")
def trained(smoke_market, tmp_path_factory):
    market_dir, market, meta, feats, cfg = smoke_market
    root = tmp_path_factory.mktemp("ckpts")
    run = create_run(root, "ev", cfg, data_fingerprint(market_dir), resume=False,
                     market=market_identity(market_dir))
    for phase in (1, 2):
        run_pretrain_phase(phase, cfg, market, meta, feats, run, progress=False)
    return root


def _env_reference(cfg, market, meta, feats, run, t0: int, length: int) -> dict:
    """Net returns and goals of the restored policy stepped through HierarchicalEnv from a
    reset at the week end t0, with training's own policy glue (single seed)."""
    policy = load_policy(run, cfg, market, meta, feats)
    seed0 = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    macro, micro = seed0(policy.macro_actor), seed0(policy.micro_actor)
    n, s, f_s = market.num_stocks, market.num_sectors, int(feats.sector.shape[-1])
    p = make_env_params(market, feats, cfg.env)
    env = HierarchicalEnv(n, s, f_s, return_window=cfg.env.return_window)
    goal_fn = rl_micro.macro_goal_fn(cfg.networks, s, f_s)
    allocate = rl_macro.micro_allocator(cfg.networks, n, s)

    @jax.jit
    def step(state):
        obs = env.get_obs(state, p)
        a_macro = goal_fn(macro, obs["macro"])
        a_micro = allocate({"actor": micro, "stock_sector": p.stock_sector},
                           env.micro_obs_for(obs, a_macro, p))
        _, state2, _, _, info = env.step_env(jax.random.key(0), state,
                                             {"macro": a_macro, "micro": a_micro}, p)
        return state2, (info["net_return"], info["goal"], info["is_macro_step"])

    _, state = env.reset_env(jax.random.key(0), p.replace(start_lo=t0, start_hi=t0))
    out = []
    for _ in range(length):
        state, rec = step(state)
        out.append(jax.device_get(rec))
    net, goal, macro_step = (np.stack(x) for x in zip(*out, strict=True))
    return {"net": net.astype(np.float64), "goal": goal, "macro_step": macro_step}


def test_evaluate_writes_the_report_of_the_trained_policy(trained, smoke_market, capsys):
    market_dir, market, meta, feats, cfg = smoke_market
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    week_end = np.asarray(market.week_end, bool)
    # open the window on a week end so that the env reference's first step is a Macro step
    t0 = int(np.flatnonzero(week_end & (dates >= np.datetime64(cfg.data.test_start)))[0])
    split = f"{dates[t0]}:{dates[-1]}"
    args = ["evaluate", "--run", "ev", "--data", str(market_dir), "--checkpoints", str(trained),
            "--split", split, "--bootstrap", "100", "--random-seeds", "2",
            "--baselines", ",".join(BASELINES)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"on {split} ({dates[t0]} .. {dates[-1]}" in out
    assert "hrl_sarp" in out and "oracle (upper bound)" in out and "decisions:" in out

    report = trained / "ev" / "report"
    doc = json.loads((report / "metrics.json").read_text())
    days = doc["window"]["days"]
    assert doc["window"]["t0"] == t0 and days == len(dates) - 1 - t0
    assert doc["settings"]["split"] == split and doc["settings"]["risk_manager"] is True
    assert doc["settings"]["policy"]["macro"].startswith("phase 1")
    assert doc["settings"]["policy"]["micro"].startswith("phase 2")
    assert doc["oracle"] is not None  # the smoke market is synthetic: its meta.json drift
    assert set(doc["strategies"]) == {*BASELINES, "hrl_sarp"} - {"oracle"}
    assert set(doc["tests"]["vs_hrl_sarp"]["pairs"]) == set(doc["strategies"]) - {"hrl_sarp"}
    agent = doc["strategies"]["hrl_sarp"]

    # the report's agent = the policy stepped through the training env, same accounting
    run = open_run(trained / "ev")
    ref = _env_reference(cfg, market, meta, feats, run, t0, days)
    r = ref["net"]
    sharpe = r.mean() / r.std(ddof=1) * np.sqrt(252)
    wealth = np.cumprod(1 + r)
    mdd = np.max(1 - wealth / np.maximum.accumulate(np.r_[1.0, wealth])[1:])
    np.testing.assert_allclose(agent["sharpe"], sharpe, rtol=1e-4)
    np.testing.assert_allclose(agent["max_drawdown"], mdd, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(agent["total_return"], wealth[-1] - 1, rtol=1e-4, atol=1e-6)

    lines = [json.loads(x) for x in (report / "decisions.jsonl").read_text().splitlines()]
    macro = [x for x in lines if x["kind"] == "macro"]
    micro = [x for x in lines if x["kind"] == "micro"]
    assert len(micro) == days and {x["seed"] for x in lines} == {0}
    assert [x["date"] for x in macro] == [str(dates[t0 + i]) for i in range(days)
                                          if ref["macro_step"][i]]
    sectors = [s for s in meta.sectors if s]
    for x, g in zip(macro, ref["goal"][ref["macro_step"]], strict=True):
        assert list(x["sector_weights"]) == sectors and x["regime"] in ("bull", "bear",
                                                                        "sideways")
        np.testing.assert_allclose([x["sector_weights"][s] for s in sectors],
                                   g[: len(sectors)], atol=2e-6)
        assert x["regime"] == ("bull", "bear", "sideways")[int(np.argmax(g[len(sectors):]))]
    assert all(len(x["top_weights"]) <= 5 and set(x["top_weights"]) <= set(meta.tickers)
               for x in micro)
    for name in ("report.md", "report.html", "plots/equity.png"):
        assert (report / name).is_file()
    # attribution by decision level: the layers add up to the net excess over the
    # equal-weight benchmark; net Sharpe is the seed's own
    for name in ("hrl_sarp", "equal_weight", "sector_momentum"):
        a = doc["strategies"][name]["attribution"]
        parts = sum(a[k] for k in ("allocation", "selection", "interaction", "residual",
                                   "costs"))
        np.testing.assert_allclose(parts, a["total_excess_net"], atol=1e-9)
        assert a["costs"] < 0 and abs(a["residual"]) < 1e-4 and a["risk_manager"] is not None
        tov = a["turnover_by_source"]
        parts = ("exposure", "macro", "support", "micro") + (
            ("sector_between_goals",) if name == "hrl_sarp" else ())
        np.testing.assert_allclose(sum(tov[k] for k in parts), tov["total"], rtol=1e-9)
    # the agent trades sector weights between its weekly goals only through the Micro
    assert doc["strategies"]["hrl_sarp"]["attribution"]["turnover_by_source"][
        "sector_between_goals"] >= 0
    np.testing.assert_allclose(doc["strategies"]["hrl_sarp"]["attribution"]["sharpe_net"],
                               sharpe, rtol=1e-4)
    rc = doc["strategies"]["hrl_sarp"]["regime_call"]
    assert rc["calls"] == int(ref["macro_step"].sum()) and 0 <= rc["accuracy"] <= 1
    md = (report / "report.md").read_text()
    assert "## Attribution by decision level" in md and "## Turnover by source" in md
    assert "Risk manager on hrl_sarp: exposure reduced on" in md
    # deflated Sharpe: the trials are the validation evaluations that chose the checkpoints
    # (Phase 1: cfg epochs, Phase 2: cfg epochs, one per epoch); more trials deflate more
    d = doc["strategies"]["hrl_sarp"]["deflated_sharpe"]
    epochs = cfg.train.macro_pretrain.epochs + cfg.train.micro_pretrain.epochs
    assert d["trials"] == epochs and d["by_phase"] == {
        "1": cfg.train.macro_pretrain.epochs, "2": cfg.train.micro_pretrain.epochs}
    from hrl_sarp_jax.evaluation.overfitting import deflated_sharpe
    psr = deflated_sharpe(r, 1)["dsr"]
    assert d["sr0"] > 0 and d["dsr"] < psr and "Deflated Sharpe ratio" in md


def test_evaluate_bad_input_is_one_clear_line(trained, smoke_market, capsys):
    market_dir = smoke_market[0]
    base = ["evaluate", "--data", str(market_dir), "--checkpoints", str(trained)]
    cases = [(["--run", "nope"], "no run folder"),
             (["--run", "ev", "--split", "2020-13-01:2020-12-31"], "--split"),
             (["--run", "ev", "--split", "2020-12-31:2020-07-01"], "START must be before END"),
             (["--run", "ev", "--random-seeds", "0"], "--random-seeds"),
             (["--run", "ev", "--baselines", "equal_weight,flat_rl"], "['flat_rl']")]
    for extra, needle in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err


def test_resolve_split(smoke_market):
    _, _, meta, _, cfg = smoke_market
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    assert resolve_split(None, cfg, meta) == ("test", cfg.data.test_start, str(dates[-1]))
    label, start, end = resolve_split("val", cfg, meta)
    last_val = dates[dates < np.datetime64(cfg.data.test_start)][-1]
    assert (label, start, end) == ("val", cfg.data.val_start, str(last_val))
    assert resolve_split(" 2020-07-06:2020-09-30 ", cfg, meta)[1:] == ("2020-07-06",
                                                                       "2020-09-30")
    for bad in ("train", "2020-07-06", "a:b:c", "2020-07-06:2020-07-01"):
        with pytest.raises(ConfigError, match="--split"):
            resolve_split(bad, cfg, meta)


def test_an_invalid_market_folder_is_refused_with_its_problems(tmp_path):
    from hrl_sarp_jax.config import Config
    from hrl_sarp_jax.errors import DataError
    from hrl_sarp_jax.pipeline import load_valid_market

    with pytest.raises(DataError, match=r"not a valid market \(2 problem\(s\)\): prices\.parquet.*"
                                        r"run `hrl-sarp data validate"):
        load_valid_market(tmp_path, Config())


def test_one_generated_market_agrees_with_evaluating_its_folder(trained, smoke_market,
                                                                tmp_path):
    """``evaluate --markets 1 --market-seed X`` = ``evaluate`` on the folder ``data synth
    --seed X`` writes: the market is built bit-identically, the backtests are other programs
    (vmapped over markets), so classical Sharpes agree to 1e-3 and the agent's to 0.02."""
    from hrl_sarp_jax.many_markets import evaluate_markets
    from hrl_sarp_jax.pipeline import evaluate_run

    market_dir, market, meta, feats, cfg = smoke_market
    run = open_run(trained / "ev")
    single = evaluate_run(run, cfg, market, meta, feats, split="test", market_dir=market_dir,
                          include=BASELINES, historical=False, bootstrap_num=50,
                          seeds_for_random=2, out_dir=tmp_path / "one", return_payload=True)
    out = evaluate_markets(run, cfg, markets=1, market_seed=cfg.synth.seed, include=BASELINES,
                           random_seeds=2, bootstrap_num=50, out_dir=tmp_path / "many")
    doc = out["metrics"]
    rec = doc["markets"][0]["strategies"]
    payload = single["payload"]
    assert doc["window"]["start"] == payload["window"]["start"]
    assert doc["window"]["days"] == payload["window"]["days"]
    for name in ("equal_weight", "index_buy_hold", "sector_momentum", "random"):
        np.testing.assert_allclose(rec[name]["sharpe"],
                                   payload["strategies"][name]["metrics"]["sharpe"], atol=1e-3)
        np.testing.assert_allclose(rec[name]["turnover"],
                                   payload["strategies"][name]["metrics"]["turnover"],
                                   rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(rec["oracle"]["sharpe"], payload["oracle"]["metrics"]["sharpe"],
                               atol=1e-3)
    per_seed = [em_sharpe(r) for r in payload["strategies"]["hrl_sarp"]["per_seed_net"]]
    np.testing.assert_allclose(rec["hrl_sarp"]["seeds"]["sharpe"], per_seed, atol=0.02)
    # the training market itself: flagged in sample, with a warning
    assert doc["in_sample"] is True and doc["in_sample_seeds"] == [cfg.synth.seed]
    assert any("in sample" in w for w in out["warnings"])
    assert set(doc["paired"]) == set(rec) - {"hrl_sarp"}
    for name in ("metrics.json", "report.md", "report.html", "plots/delta_sharpe.png"):
        assert (tmp_path / "many" / name).is_file()
    # the agent's attribution in the market = the single-market report's (mean over seeds)
    one = payload["strategies"]["hrl_sarp"]["attribution"]
    many = doc["markets"][0]["attribution"]
    for key in ("allocation", "selection", "costs", "risk_manager", "total_excess_net"):
        np.testing.assert_allclose(many[key], one[key], atol=2e-3)
    # what the risk gate did: the share of days it cut exposure, Sharpe with and without it
    for key in ("days_reduced", "mean_exposure", "sharpe_without", "max_drawdown_without"):
        np.testing.assert_allclose(many["risk_gate"][key], one["risk_gate"][key], atol=2e-3)
    assert 0.0 <= one["risk_gate"]["days_reduced"] <= 1.0
    assert one["risk_gate"]["mean_exposure"] <= 1.0
    # the regime call on the Macro's decision days: the same decisions as the folder's report
    rc_one = payload["strategies"]["hrl_sarp"]["regime_call"]
    rc_many = doc["markets"][0]["regime_call"]
    assert rc_many["calls"] == rc_one["calls"] > 0
    for key in ("accuracy", "balanced_accuracy", "brier"):
        np.testing.assert_allclose(rc_many[key], rc_one[key], atol=1e-3)
    np.testing.assert_allclose(doc["regime_call"]["accuracy"], rc_many["accuracy"])


def em_sharpe(r) -> float:
    r = np.asarray(r, np.float64)
    return float(r.mean() / r.std(ddof=1) * np.sqrt(252))


def test_evaluate_markets_cli_output_judgement_log_and_bad_input(trained, smoke_market,
                                                                  capsys, monkeypatch):
    import hrl_sarp_jax.many_markets as mm

    base = ["evaluate", "--run", "ev", "--checkpoints", str(trained), "--bootstrap", "50",
            "--random-seeds", "2", "--baselines", ",".join(BASELINES)]
    # a stand-in judgement range, so that the test never touches the real one (9000-9999)
    monkeypatch.setattr(mm, "JUDGEMENT_SEEDS", range(7, 8))
    assert main([*base, "--markets", "1", "--market-seed", "7", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["seeds"]["markets"] == [7] and doc["in_sample"] is False
    assert doc["best_classical"] in BASELINES
    lines = (trained / "ev" / "judgement.jsonl").read_text().splitlines()
    line = json.loads(lines[-1])
    assert line["run"] == "ev" and line["seeds"] == [7, 7] and len(line["config_hash"]) == 64
    assert line["result"]["equal_weight"]["n"] == 1
    written = json.loads((trained / "ev" / "report-markets" / "metrics.json").read_text())
    assert written["judgement_range"] is True and written["seconds"] > 0
    # what the RL phases kept (none trained here) heads the report when there are some
    from hrl_sarp_jax.evaluation.markets_report import render_markdown

    assert written["rl_phases"] == {}
    # --tag keeps the report beside the others, and compare reads it as RUN:TAG
    assert main([*base, "--markets", "1", "--market-seed", "7", "--json", "--tag", "t1"]) == 0
    capsys.readouterr()
    tagged = json.loads((trained / "ev" / "report-markets-t1" / "metrics.json").read_text())
    assert tagged["markets"] == written["markets"]
    assert main(["compare", "ev", "ev:t1", "--checkpoints", str(trained), "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["strategies"] == {} and "equal_weight" in same["identical"]
    # --oracle-lags: the oracle told the regime late, not a classical baseline, and its table
    assert main([*base, "--markets", "1", "--market-seed", "7", "--json", "--tag", "t2",
                 "--oracle-lags", "5", "--baselines", ",".join((*BASELINES, "sector_value"))]
                ) == 0
    rows = {r["strategy"]: r for r in json.loads(capsys.readouterr().out)[
        "regime_knowledge"]["rows"]}
    late = json.loads((trained / "ev" / "report-markets-t2" / "metrics.json").read_text())
    assert late["strategies"]["oracle_late_5d"]["kind"] == "oracle"
    # the opt-in value screen is no classical baseline (nor the best one)
    assert late["strategies"]["sector_value"]["kind"] == "screen"
    assert late["best_classical"] != "sector_value" and "sector_value" not in written["strategies"]
    assert "oracle_late_5d" not in written["strategies"]
    rec = late["markets"][0]["strategies"]
    assert rows["oracle_late_5d"]["minus_equal_weight"]["mean"] == pytest.approx(
        rec["oracle_late_5d"]["sharpe"] - rec["equal_weight"]["sharpe"])
    assert rows["oracle"]["balanced_accuracy"] >= rows["oracle_late_5d"]["balanced_accuracy"]
    assert rec["oracle"] == written["markets"][0]["strategies"]["oracle"]  # lag 0 unchanged
    assert set(late["regime_knowledge"]["equivalent_lag_days"]) == {"hrl_sarp",
                                                                   "hrl_sarp_ensemble"}
    assert "## Regime knowledge" in (trained / "ev" / "report-markets-t2" / "report.md"
                                     ).read_text()
    kept = {**written, "rl_phases": {"3": {"best_step": 0, "latest_step": 8}}}
    assert "Phase 3 kept step 0 of 8." in render_markdown(kept, "plot.png")
    assert "RL phases" not in render_markdown(written, "plot.png")

    cases = [(["--markets", "0"], "--markets 0"),
             (["--market-seed", "3"], "--market-seed applies to many-market evaluation"),
             (["--markets", "2", "--data", str(smoke_market[0])], "--data"),
             (["--markets", "1", "--tag", "a/b"], "--tag 'a/b'"),
             (["--tag", "x"], "--tag applies to many-market evaluation"),
             (["--oracle-lags", "5"], "--oracle-lags applies to many-market evaluation"),
             (["--markets", "1", "--oracle-lags", "5,x"], "--oracle-lags '5,x'"),
             (["--markets", "1", "--oracle-lags", "0"], "--oracle-lags: 0")]
    for extra, needle in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0], err
    # a run trained on a real market needs --preset
    run_json = trained / "ev" / "run.json"
    saved = run_json.read_text()
    info = json.loads(saved)
    run_json.write_text(json.dumps({**info, "market": {"path": "x", "synthetic": False}}))
    try:
        assert main([*base, "--markets", "2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--preset" in err[0] and "real market" in err[0], err
    finally:
        run_json.write_text(saved)


def test_in_sample_seeds_reads_records_without_a_drift_jitter():
    """A run recorded before ``synth.alpha_jitter`` existed (no key) was made with jitter 0:
    its own seed is in sample for the instrument's default markets, not for jittered ones."""
    import dataclasses

    from hrl_sarp_jax.config import SynthConfig
    from hrl_sarp_jax.many_markets import in_sample_seeds

    synth = SynthConfig(preset="small", stocks_per_sector=2, start="2019-01-01",
                        end="2020-12-31")
    old = {"synthetic": True, "seed": 7, "preset": "small", "stocks_per_sector": 2,
           "start": "2019-01-01", "end": "2020-12-31"}
    assert in_sample_seeds(old, synth, [6, 7, 8]) == [7]
    jittered = dataclasses.replace(synth, alpha_jitter=0.05)
    assert in_sample_seeds(old, jittered, [7]) == []
    assert in_sample_seeds({**old, "alpha_jitter": 0.05}, jittered, [7]) == [7]
    assert in_sample_seeds({**old, "synthetic": False}, synth, [7]) == []


def test_a_markets_cache_serves_the_next_judgement_the_same_markets(trained, smoke_market,
                                                                      tmp_path, monkeypatch):
    """A sweep judges every setting on the same markets: with one ``MarketsCache`` the second
    call builds no market and reports the same figures; a cache stops keeping chunks at its
    byte budget."""
    from hrl_sarp_jax import many_markets as mm

    cfg = smoke_market[4]
    run = open_run(trained / "ev")
    built: list[int] = []
    real = mm.synthetic_markets

    def counting(synth, data, seeds):
        for item in real(synth, data, seeds):
            built.append(item[0])
            yield item

    monkeypatch.setattr(mm, "synthetic_markets", counting)
    kw = {"markets": 3, "market_seed": 1000, "chunk": 2, "include": BASELINES,
          "random_seeds": 2, "bootstrap_num": 50, "ladder": False}
    cache = mm.MarketsCache()
    first = mm.evaluate_markets(run, cfg, out_dir=tmp_path / "a", markets_cache=cache, **kw)
    assert built == [1000, 1001, 1002] and len(cache.kept) == 2
    second = mm.evaluate_markets(run, cfg, out_dir=tmp_path / "b", markets_cache=cache, **kw)
    assert built == [1000, 1001, 1002]  # nothing built again
    assert second["metrics"]["markets"] == first["metrics"]["markets"]
    one_chunk = cache.nbytes - 1  # room for the 2-market chunk, not for the third market too
    small = mm.MarketsCache(max_bytes=one_chunk)
    list(small.chunks(mm.market_settings(run, cfg, None)[0], cfg, [[1000, 1001], [1002]]))
    assert [k[1] for k in small.kept] == [(1000, 1001)] and small.nbytes <= one_chunk
    assert mm.MarketsCache(max_bytes=0).kept == {}
