"""``hrl-sarp monitor``: the page of a hand-written run folder (progress, ETA, per-seed curves,
validation Sharpe vs comparators, throughput, decisions), its updates while files change, the
server on an ephemeral port, and (where a Chromium is on PATH) the page in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from hrl_sarp_jax import monitor as mon
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import load_config, to_dict

T0 = 1_700_000_000.0
PLOT_W = mon.WIDTH - mon.LEFT - mon.RIGHT
PLOT_H = mon.HEIGHT - mon.TOP - mon.BOTTOM


def _line(rec: dict) -> str:
    return json.dumps(rec) + "\n"


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder as training leaves it mid-Phase 3: Phase 1 done (2 seeds), Phase 3 at
    update 2 of 6, a report from an earlier evaluation, a torn line being written."""
    root = tmp_path / "checkpoints" / "demo"
    (root / "phase1").mkdir(parents=True)
    cfg = load_config("smoke", ["train.seeds=2", "train.macro_pretrain.epochs=4",
                                "train.ppo.total_env_steps=96", "train.ppo.rollout_steps=16",
                                "train.ppo.num_envs=4", "train.ppo.minibatch_size=16",
                                "train.eval_interval=2"])
    (root / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    (root / "run.json").write_text(json.dumps({"run_name": "demo", "format_version": 1}))
    lines = [_line({"phase": 1, "step": e, "time": T0 + 10 * e, "train_loss": 1.0 / e,
                    "val_loss": 2.0 / e, "per_seed": {"train_loss": [0.8 / e, 1.2 / e],
                                                      "val_loss": [1.5 / e, 2.5 / e]}})
             for e in (1, 2, 3, 4)]
    lines += [
        _line({"phase": 3, "step": 0, "time": T0 + 100, "val_sharpe": 0.1,
               "val_equal_weight_sharpe": 0.05, "stage": 0, "eval": True, "env_steps": 0,
               "per_seed": {"val_sharpe": [0.0, 0.2]}}),
        _line({"phase": 3, "step": 1, "time": T0 + 110, "pg_loss": 0.5, "stage": 0,
               "per_seed": {"pg_loss": [0.4, 0.6]}}),
        _line({"phase": 3, "step": 2, "time": T0 + 120, "pg_loss": 0.3, "stage": 0,
               "per_seed": {"pg_loss": [0.2, 0.4]}}),
        _line({"phase": 3, "step": 2, "time": T0 + 120, "val_sharpe": 0.3,
               "val_equal_weight_sharpe": 0.05, "val_sharpe_std": 0.1, "stage": 1,
               "eval": True, "env_steps": 256, "env_steps_per_s": 12.8,
               "per_seed": {"val_sharpe": [0.2, 0.4]}}),
    ]
    torn = '{"phase": 3, "step": 3, "time": 1700000130.0, "pg_loss": 0.1'  # being written
    (root / "metrics.jsonl").write_text("".join(lines) + torn)
    (root / "phase1" / "summary.json").write_text(json.dumps({"val_regime_accuracy": 0.6}))
    report = root / "report"
    report.mkdir()
    (report / "metrics.json").write_text(json.dumps({
        "window": {"start": "2020-07-01", "end": "2020-12-31"},
        "strategies": {"equal_weight": {"metrics": {"sharpe": 0.87, "cagr": 0.1,
                                                    "max_drawdown": -0.2}},
                       "hrl_sarp": {"metrics": {"sharpe": 1.23, "cagr": 0.153,
                                                "max_drawdown": -0.118}}},
        "oracle": {"metrics": {"sharpe": 3.5, "cagr": 0.9, "max_drawdown": -0.05}}}))
    decisions = [
        {"kind": "macro", "date": "2020-12-28", "seed": 0, "regime": "bull",
         "sector_weights": {"IT": 0.5, "BANK": 0.3, "FMCG": 0.2}, "regime_probs": {}},
        {"kind": "micro", "date": "2020-12-30", "seed": 0, "top_weights": {"OLD": 0.9},
         "cash": 0.1},
        {"kind": "micro", "date": "2020-12-31", "seed": 0, "top_weights": {"INFY": 0.25,
                                                                           "TCS": 0.2},
         "cash": 0.55},
    ]
    (report / "decisions.jsonl").write_text("".join(_line(d) for d in decisions))
    return root


def _pts(pairs, x_range, y_range) -> str:
    """The polyline points the chart must hold (the mapping written out here)."""
    (x0, x1), (y0, y1) = x_range, y_range
    return " ".join(f"{mon.LEFT + (x - x0) / (x1 - x0) * PLOT_W:.1f},"
                    f"{mon.TOP + (y1 - y) / (y1 - y0) * PLOT_H:.1f}" for x, y in pairs)


def test_snapshot_reads_progress_eta_and_validation(run_dir):
    snap = mon.snapshot(run_dir, now=T0 + 125)
    by = {p["phase"]: p for p in snap["phases"]}
    assert [p["phase"] for p in snap["phases"]] == ["1", "2", "3", "4", "5", "flat"]
    assert snap["run"] == "demo" and snap["seeds"] == 2 and snap["records"] == 8  # torn: out
    p1, p3 = by["1"], by["3"]
    assert (p1["status"], p1["progress"], p1["step"], p1["budget"]) == ("done", 1.0, 4, 4)
    assert p3["status"] == "running" and (p3["step"], p3["budget"], p3["unit"]) == (
        2, 6, "updates")
    assert p3["progress"] == pytest.approx(2 / 6)
    assert p3["steps_per_s"] == pytest.approx(0.1)  # 2 updates in 20 s
    assert p3["eta_s"] == pytest.approx(40.0)  # 4 updates left
    assert p3["env_steps_per_s"] == 12.8 and p3["stage"] == 1
    assert p3["last_update_s"] == pytest.approx(5.0)
    assert [by[p]["status"] for p in ("2", "4", "5", "flat")] == ["pending"] * 4
    v = p3["validation"]
    assert v["val_sharpe"] == 0.3 and v["per_seed"] == [0.2, 0.4]
    assert v["comparators"] == {"val_equal_weight_sharpe": 0.05}  # not the _std
    assert p3["curves"]["pg_loss"] == {"steps": [1, 2], "mean": [0.5, 0.3],
                                       "seeds": [[0.4, 0.2], [0.6, 0.4]]}
    assert p1["curves"]["val_loss"]["seeds"][1] == pytest.approx([2.5, 1.25, 2.5 / 3, 0.625])
    rep = snap["report"]
    assert [r["strategy"] for r in rep["rows"]] == ["hrl_sarp", "equal_weight",
                                                    "oracle (upper bound)"]
    assert rep["last_date"] == "2020-12-31" and rep["micro"][0]["top_weights"]["INFY"] == 0.25
    assert rep["macro_date"] == "2020-12-28" and rep["macro"][0]["regime"] == "bull"


def test_page_holds_the_numbers_and_the_svg_points(run_dir, tmp_path, capsys):
    out = tmp_path / "page" / "monitor.html"
    assert main(["monitor", "--run", "demo", "--checkpoints", str(run_dir.parent), "--once",
                 "--out", str(out), "--refresh", "20"]) == 0
    assert capsys.readouterr().out.strip() == f"monitor page: {out}"
    page = out.read_text()
    assert '<meta http-equiv="refresh" content="20">' in page and "<script" not in page
    for text in ("<td>done</td>", "<td>running</td>", "33%", "2 / 6 updates", "<td>40s</td>",
                 "<td>12.8</td>", "<b>0.300</b>", "0.200 0.400", "equal_weight_sharpe 0.050",
                 "<td>hrl_sarp</td><td>1.23</td><td>15.3%</td><td>-11.8%</td>",
                 "oracle (upper bound)", "Micro book of 2020-12-31", "INFY 25.0%", "TCS 20.0%",
                 "<td>55.0%</td>", "Macro decision of 2020-12-28", "IT 50.0%", "bull"):
        assert text in page, text
    assert "OLD" not in page  # only the latest day's book
    # validation chart of Phase 3: steps 0..2, values 0.0..0.4 over seeds, mean, comparator
    xr, yr = (0, 2), (0.0, 0.4)
    for pairs in ([(0, 0.0), (2, 0.2)], [(0, 0.2), (2, 0.4)], [(0, 0.1), (2, 0.3)],
                  [(0, 0.05), (2, 0.05)]):
        assert f'points="{_pts(pairs, xr, yr)}"' in page
    assert 'stroke-dasharray="4 3"' in page  # the comparator is dashed
    # Phase 3's pg_loss per seed: steps 1..2, values 0.2..0.6
    assert f'points="{_pts([(1, 0.4), (2, 0.2)], (1, 2), (0.2, 0.6))}"' in page
    assert f'points="{_pts([(1, 0.6), (2, 0.4)], (1, 2), (0.2, 0.6))}"' in page
    # self-contained: nothing loaded from elsewhere (the SVG namespace is a name, not a fetch)
    assert "src=" not in page and "<link" not in page
    bare = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in bare and "https://" not in bare
    assert not list(out.parent.glob(".*.tmp"))  # written atomically


def test_page_follows_the_files_while_a_phase_trains(run_dir):
    before = mon.render_fragment(mon.snapshot(run_dir, now=T0 + 125))
    # the torn line is completed, then the next validation arrives
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write(', "stage": 1}\n')
        fh.write(_line({"phase": 3, "step": 4, "time": T0 + 140, "val_sharpe": 0.5,
                        "val_equal_weight_sharpe": 0.05, "stage": 1, "eval": True,
                        "env_steps": 512, "env_steps_per_s": 16.0,
                        "per_seed": {"val_sharpe": [0.45, 0.55]}}))
    snap = mon.snapshot(run_dir, now=T0 + 141)
    p3 = next(p for p in snap["phases"] if p["phase"] == "3")
    assert snap["records"] == 10 and p3["step"] == 4 and p3["curves"]["pg_loss"]["steps"] == [
        1, 2, 3]
    assert p3["eta_s"] == pytest.approx(20.0)  # 0.1 update/s, 2 updates left
    after = mon.render_fragment(snap)
    assert after != before
    assert "<b>0.500</b>" in after and "0.450 0.550" in after and "4 / 6 updates" in after
    assert "<b>0.500</b>" not in before
    # Phase 3 finishing: its summary makes it done
    (run_dir / "phase3").mkdir()
    (run_dir / "phase3" / "summary.json").write_text("{}")
    done = next(p for p in mon.snapshot(run_dir)["phases"] if p["phase"] == "3")
    assert done["status"] == "done" and done["progress"] == 1.0 and done["eta_s"] == 0.0


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def server(run_dir):
    srv = mon.make_server(run_dir, port=0, refresh_s=0.25)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_server_answers_on_an_ephemeral_local_port(server, run_dir):
    host, port = server.server_address[:2]
    assert host == "127.0.0.1" and port > 0
    base = f"http://{host}:{port}"
    code, kind, page = _get(base + "/")
    assert code == 200 and kind.startswith("text/html")
    assert "fetch('fragment'" in page and "var ms=250;" in page and "<b>0.300</b>" in page
    code, kind, state = _get(base + "/state.json")
    assert code == 200 and kind.startswith("application/json")
    p3 = next(p for p in json.loads(state)["phases"] if p["phase"] == "3")
    assert p3["step"] == 2 and p3["budget"] == 6
    assert _get(base + "/nope")[0] == 404
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write(', "stage": 1}\n' + _line({"phase": 3, "step": 4, "time": T0 + 140,
                                             "val_sharpe": 0.5, "eval": True}))
    code, _, fragment = _get(base + "/fragment")
    assert code == 200 and "<b>0.500</b>" in fragment and "<html" not in fragment


def test_monitor_bad_input_is_one_line(tmp_path, capsys, run_dir):
    cases = [
        (["--run", "nope", "--checkpoints", str(tmp_path), "--once", "--out", "x.html"],
         "no such run folder"),
        (["--run", "demo", "--checkpoints", str(run_dir.parent), "--once"],
         "--once and --out FILE.html go together"),
        (["--run", "demo", "--checkpoints", str(run_dir.parent), "--refresh", "0"],
         "--refresh 0"),
        (["--run", "demo", "--checkpoints", str(run_dir.parent), "--port", "70000"],
         "--port 70000"),
    ]
    for args, text in cases:
        assert main(["monitor", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and text in err[0], err


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell",
                 "chrome-headless-shell"):
        if shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _chromium()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install "
                                             "chromium; .ci/run installs it where apt works)")
def test_the_page_loads_renders_and_updates_in_headless_chromium(run_dir, tmp_path,
                                                                 monkeypatch):
    served: list[dict] = []
    real = mon.snapshot

    def snapshot_then_train(folder, **kw):
        snap = real(folder, **kw)
        served.append(snap)
        if len(served) == 2:  # right after the page itself was drawn: the next validation
            with open(run_dir / "metrics.jsonl", "a") as fh:
                fh.write(', "stage": 1}\n' + _line({
                    "phase": 3, "step": 4, "time": T0 + 140, "val_sharpe": 0.5, "eval": True,
                    "val_equal_weight_sharpe": 0.05, "per_seed": {"val_sharpe": [0.45, 0.55]}}))
        return snap

    monkeypatch.setattr(mon, "snapshot", snapshot_then_train)
    srv = mon.make_server(run_dir, port=0, refresh_s=0.2)  # snapshot call 1
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000"]
    try:
        dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120).stdout
        shot = tmp_path / "page.png"
        subprocess.run([*flags, "--window-size=1200,1400", f"--screenshot={shot}", url],
                       capture_output=True, timeout=120, cwd=tmp_path)
    finally:
        srv.shutdown()
        srv.server_close()
    first = next(p for p in served[1]["phases"] if p["phase"] == "3")
    assert first["step"] == 2  # the page was drawn before the new line
    assert len(served) >= 3  # the page's script asked for fragments
    # the DOM now shows the later state, swapped in by the page's own script
    assert "<b>0.500</b>" in dom and "0.450 0.550" in dom and "4 / 6 updates" in dom
    assert dom.count("<polyline") >= 8 and '<p id="status" class="warn"></p>' in dom
    # the charts are drawn: the seed colours appear in the rendered pixels
    import matplotlib.image as mpimg
    import numpy as np

    pixels = (mpimg.imread(shot)[..., :3] * 255).round().astype(int).reshape(-1, 3)
    for color in ("#1f77b4", "#ff7f0e"):  # seed 0, seed 1
        rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(pixels - rgb).sum(axis=1) <= 30).any(), color


def test_a_finished_phase_shows_its_walk_beside_the_baselines(run_dir, tmp_path):
    """Once an RL phase's summary holds ``val_baselines`` (plain 1/N and sector momentum over
    the same validation walk), the snapshot and the page show them beside its Sharpe."""
    (run_dir / "phase3").mkdir()
    (run_dir / "phase3" / "summary.json").write_text(json.dumps({
        "val_sharpe": 0.3, "val_baselines": {"strategies": {
            "equal_weight": {"sharpe": 1.04, "return": 0.2},
            "sector_momentum": {"sharpe": 1.35, "return": 0.3}}}}))
    snap = mon.snapshot(run_dir, now=T0 + 125)
    v = next(p for p in snap["phases"] if p["phase"] == "3")["validation"]
    assert v["walk_baselines"] == {"equal_weight": 1.04, "sector_momentum": 1.35}
    page = mon.render_page(snap, live=False)
    assert ("equal_weight_sharpe 0.050; over the same walk: equal_weight 1.040, "
            "sector_momentum 1.350") in page
    # a summary without them, or a damaged entry, shows none
    (run_dir / "phase3" / "summary.json").write_text(json.dumps({"val_baselines": {
        "strategies": "?"}}))
    snap = mon.snapshot(run_dir, now=T0 + 125)
    assert next(p for p in snap["phases"] if p["phase"] == "3")["validation"][
        "walk_baselines"] == {}
