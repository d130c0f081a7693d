"""evaluate_baselines on the tiny market -> write_report: structure, PNGs, HTML."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest

from hrl_sarp_jax.config import Config
from hrl_sarp_jax.evaluation.evaluate import add_strategy, evaluate_baselines
from hrl_sarp_jax.evaluation.report import PLOTS, write_report
from tests.evaluation.make_market import ENV_CFG, meta_json

INCLUDE = ("equal_weight", "index_buy_hold", "random", "oracle", "sector_momentum")


@pytest.fixture(scope="module")
def payload(tiny):
    market, meta, feats, _ = tiny
    cfg = Config(env=ENV_CFG)
    return evaluate_baselines(market, meta, feats, cfg, split=("2020-02-03", "2020-06-30"),
                              seeds=3, sector_drift=meta_json(), include=INCLUDE,
                              bootstrap_num=200)


def test_payload(payload, tiny):
    market, _meta, *_ = tiny
    w = payload["window"]
    assert w["start"] == "2020-02-03" and w["end"] == "2020-06-30"
    assert len(payload["dates"]) == w["days"] and payload["dates"][0] == np.datetime64(
        "2020-02-04")
    assert set(payload["strategies"]) == set(INCLUDE) - {"oracle"}
    assert payload["oracle"]["upper_bound"] and "UPPER BOUND" in payload["oracle"]["note"]
    rnd = payload["strategies"]["random"]
    assert rnd["seeds"]["sharpe"]["n"] == 3 and rnd["per_seed_net"].shape == (3, w["days"])
    assert "flat_rl" in payload["requires_trained_run"]
    assert payload["regimes"]["source"] == "latent"
    # the benchmark's series is the index itself after the first day
    b = np.asarray(market.benchmark_returns)[w["t0"] + 2: w["t0"] + 1 + w["days"]]
    np.testing.assert_allclose(payload["strategies"]["index_buy_hold"]["series"]["net"][1:], b)
    hist = payload["stress"]["historical"]["equal_weight"]
    assert hist["covid_crash"]["days"] > 40 and "skipped" in hist["ilfs_crisis"]
    tests = payload["tests"]["vs_benchmark"]
    assert set(tests["pairs"]) == set(INCLUDE) - {"oracle", "index_buy_hold"}
    assert "per_seed" in tests["pairs"]["random"]


def test_report_files(payload, tmp_path):
    rng = np.random.default_rng(0)
    days = payload["window"]["days"]
    ew = payload["strategies"]["equal_weight"]["series"]
    agent = ew["net"][None] + rng.normal(0, 0.002, (3, days))
    full = add_strategy(payload, "hrl_sarp", agent, description="agent (test)",
                        sector_weights=np.tile(ew["sector_weights"][None], (3, 1, 1)),
                        turnover=np.full((3, days), 0.01), cost_frac=np.full((3, days), 2e-5),
                        regime_calls=rng.integers(0, 3, (3, days)))
    assert "hrl_sarp" not in payload["strategies"]  # the input payload is not modified
    files = write_report(full, tmp_path / "report")
    doc = json.loads((tmp_path / "report" / "metrics.json").read_text())
    for name in (*INCLUDE[:3], "sector_momentum", "hrl_sarp"):
        m = doc["strategies"][name]
        for key in ("sharpe", "cagr", "max_drawdown", "cvar_95", "turnover", "cost_drag"):
            assert isinstance(m[key], float), (name, key)
    assert doc["oracle"]["sharpe"] is not None and doc["seeds"]["random"] == [0, 1, 2]
    vs = doc["tests"]["vs_hrl_sarp"]
    assert set(vs["pairs"]) == set(INCLUDE) - {"oracle"}
    assert vs["pairs"]["random"]["per_seed"]["n_seeds"] == 3
    assert set(vs["holm_bootstrap"]) == set(vs["pairs"])
    assert doc["stress"]["sector_shocks"]["equal_weight"]["summary"]["failed"] >= 0
    html = files["html"].read_text()
    md = files["markdown"].read_text()
    import matplotlib.pyplot as plt

    for name in PLOTS:
        png = (tmp_path / "report" / "plots" / f"{name}.png").read_bytes()
        assert plt.imread(io.BytesIO(png), format="png").ndim == 3
        m = re.search(rf"id='plot-{name}' alt='{name}' src='data:image/png;base64,([^']+)'", html)
        assert m, name
        assert base64.b64decode(m.group(1)) == png
        assert f"plots/{name}.png" in md
    assert "hrl_sarp" in html and "UPPER BOUND" in md


def test_verdict_names_the_best_classical_baseline_and_the_cost_diagnosis(payload):
    from hrl_sarp_jax.evaluation.report import verdict

    days = payload["window"]["days"]
    ew = payload["strategies"]["equal_weight"]["series"]["net"]
    # an agent that is equal weight minus 30 bp of costs a day from heavy trading
    agent = np.tile(ew[None] - 0.003, (3, 1))
    full = add_strategy(payload, "hrl_sarp", agent, turnover=np.full((3, days), 0.5),
                        cost_frac=np.full((3, days), 0.003))
    v = verdict(full)
    classical = {n: e["metrics"]["sharpe"] for n, e in full["strategies"].items()
                 if e["kind"] in ("weights", "index")}
    best = max(classical, key=classical.get)
    assert v["best_classical"] == best and v["best_classical_sharpe"] == classical[best]
    assert v["beats_best_classical"] is False
    assert any("does NOT beat" in n for n in v["diagnostics"])
    assert any(n.startswith("Costs:") for n in v["diagnostics"])
    # gross of its costs the agent is equal weight exactly
    ew_sh = float(np.mean(ew) / np.std(ew, ddof=1) * np.sqrt(252))
    np.testing.assert_allclose(v["agent_gross_sharpe"], ew_sh, rtol=1e-9)
    # the "still trails gross of costs" note appears exactly when the gross Sharpes say so
    trails = v["agent_gross_sharpe"] < v["best_classical_gross_sharpe"]
    assert any("Gross of costs it still trails" in n for n in v["diagnostics"]) == trails
    edge = full["oracle"]["metrics"]["sharpe"] - classical[best]
    if edge > 0:
        np.testing.assert_allclose(v["oracle_edge_captured"],
                                   (full["strategies"]["hrl_sarp"]["metrics"]["sharpe"]
                                    - classical[best]) / edge)
    else:   # no edge over the best baseline on this window: no share to report
        assert v["oracle_edge_captured"] is None
    assert verdict(payload) is None   # no agent, no verdict


def test_the_cost_note_names_the_largest_turnover_source():
    from hrl_sarp_jax.evaluation.report import turnover_source_note

    tov = {"rule": "r", "days": 400, "exposure": 0.99, "macro": 1.73, "micro": 0.2,
           "sector_between_goals": 0.58, "support": 0.04, "total": 3.55}
    note = turnover_source_note({"turnover_by_source": tov})
    assert "the Macro's sector moves on its decision days (1.7 of 3.5/yr" in note
    assert "env.goal_step" in note
    gate = turnover_source_note({"turnover_by_source": {**tov, "exposure": 2.5}})
    assert "the risk manager's exposure changes (2.5 of 3.5/yr" in gate
    assert turnover_source_note(None) == "" == turnover_source_note(
        {"turnover_by_source": None})


def _chromium() -> str | None:
    import shutil

    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                        "google-chrome")) if p), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (Debian: apt "
                                                "install chromium)")
def test_report_html_renders_in_headless_chromium(payload, tmp_path):
    """A real browser parses report.html, decodes every embedded PNG and draws the page."""
    import subprocess

    files = write_report(payload, tmp_path / "report")
    page = files["html"].read_text()
    probe = ("<script>document.body.setAttribute('data-images-ok', [...document.images]"
             ".filter(i => i.complete && i.naturalWidth > 0).length);"
             "document.body.setAttribute('data-tables', document.querySelectorAll('table')"
             ".length);</script></body>")
    probed = tmp_path / "probe.html"
    probed.write_text(page.replace("</body>", probe))
    base = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", probed.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    n_img = len(re.findall(r"<img ", page))
    assert n_img == len(PLOTS)
    assert f'data-images-ok="{n_img}"' in dom
    assert int(re.search(r'data-tables="(\d+)"', dom).group(1)) >= 2
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1200,2000",
                    files["html"].as_uri()], capture_output=True, timeout=120)
    import matplotlib.pyplot as plt

    img = plt.imread(shot)
    assert img.shape[0] >= 1000 and float(np.std(img[..., :3])) > 0.05   # not a blank page


def test_report_states_what_the_rl_phases_kept(payload, tmp_path):
    """The RL phases against their starting policies, from the run's phase summaries, in the
    report and metrics.json (issue 13: where a phase does not improve, the report says so)."""
    from hrl_sarp_jax.checkpointing import create_run, write_phase_summary
    from hrl_sarp_jax.evaluation.report import rl_phases_line
    from hrl_sarp_jax.pipeline import rl_phase_record

    run = create_run(tmp_path, "r", Config(), "fp", resume=False)
    vs = {"diff": [-0.1, 0.05, -0.04], "se": [0.1, 0.02, 0.03], "improved_seeds": 1}
    write_phase_summary(run, 3, {"best_step": 0, "latest_step": 64, "checkpoint_margin": 1.0,
                                 "final_vs_start": vs, "val_sharpe": 1.2})
    write_phase_summary(run, 4, {"best_step": 4096, "latest_step": 8192})
    record = rl_phase_record(run)  # phase 5 has no summary: left out
    assert record == {"3": {"best_step": 0, "latest_step": 64, "checkpoint_margin": 1.0,
                            "final_vs_start": vs, "checkpoint_rule": "best"},
                      "4": {"best_step": 4096, "latest_step": 8192, "checkpoint_rule": "best"}}
    line = rl_phases_line({**payload, "rl_phases": record})
    assert line == (
        "RL phases on validation (checkpoints ranked by validation Sharpe minus 1 standard "
        "error(s) of the improvement over the start; step 0 is the starting policy): Phase 3 "
        "kept step 0 of 64; its final policy beats the start by more than one standard error "
        "for 1 of 3 seed(s) (mean change -0.030, SE 0.050); Phase 4 kept step 4096 of 8192.")
    # under train.checkpoint: latest the policy is the last step, whatever ranked best
    latest = {k: {**r, "checkpoint_rule": "latest"} for k, r in record.items()}
    assert "Phase 4 used its latest step 8192 (train.checkpoint: latest; ranked best: step " \
        "4096)." in rl_phases_line({**payload, "rl_phases": latest})
    assert rl_phases_line(payload) is None  # a baselines-only report has no RL phases
    files = write_report({**payload, "rl_phases": record}, tmp_path / "rep")
    assert line in files["markdown"].read_text()
    assert json.loads(files["metrics"].read_text())["rl_phases"] == record
