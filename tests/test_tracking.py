"""Experiment tracking: TensorBoard event files per phase and per seed (read back with
TensorBoard's own reader), env steps per second, per-seed values from every phase's record
builder, and MLflow (``--mlflow URI``) or its one-line error when the extra is missing."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from hrl_sarp_jax import checkpointing as ck
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.errors import HrlSarpError

FP = "sha256:" + "0" * 64
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _log_phase3(run):
    """Two Phase-3-like eval records (means, per-seed values, stage, env steps)."""
    a = run.log_metrics(3, 0, {"val_sharpe": 0.2, "val_equal_weight_sharpe": 0.15, "stage": 0,
                               "eval": True, "env_steps": 0,
                               "per_seed": {"val_sharpe": [0.1, 0.3]}})
    b = run.log_metrics(3, 8, {"val_sharpe": -0.25, "val_equal_weight_sharpe": 0.15, "stage": 1,
                               "eval": True, "env_steps": 2 * 8 * 16,
                               "per_seed": {"val_sharpe": [-0.5, 0.0]}})
    c = run.log_metrics(1, 1, {"train_loss": 1.5, "val_loss": 2.0, "tag": "text",
                               "val_loss_per_seed": [1.75, 2.25]})
    return a, b, c


def test_tensorboard_events_hold_the_logged_values_per_seed(tmp_path):
    run = ck.create_run(tmp_path, "tb", Config(), FP, resume=False)
    a, b, c = _log_phase3(run)
    run.close()
    root = tmp_path / "tb" / "tb"
    means, seed0, seed1 = _scalars(root), _scalars(root / "seed0"), _scalars(root / "seed1")
    f32 = lambda x: float(np.float32(x))  # noqa: E731 (TensorBoard stores float32)
    assert means["phase3/val_sharpe"] == [(0, f32(0.2)), (8, f32(-0.25))]
    assert means["phase3/val_equal_weight_sharpe"] == [(0, f32(0.15)), (8, f32(0.15))]
    assert means["phase3/stage"] == [(0, 0.0), (8, 1.0)]  # the curriculum stage
    assert means["phase3/env_steps"] == [(0, 0.0), (8, 256.0)]
    assert means["phase1/train_loss"] == [(1, 1.5)] and means["phase1/val_loss"] == [(1, 2.0)]
    assert seed0["phase3/val_sharpe"] == [(0, f32(0.1)), (8, -0.5)]
    assert seed1["phase3/val_sharpe"] == [(0, f32(0.3)), (8, 0.0)]
    assert seed0["phase1/val_loss"] == [(1, 1.75)] and seed1["phase1/val_loss"] == [(1, 2.25)]
    assert "phase3/eval" not in means and "phase1/tag" not in means  # flags and text are not
    assert set(seed0) == {"phase3/val_sharpe", "phase1/val_loss"}  # means stay out of seeds

    # env steps per second: the rate since the phase's previous env_steps, in both logs
    lines = [json.loads(x) for x in run.metrics_path.read_text().splitlines()]
    assert "env_steps_per_s" not in lines[0] and "env_steps_per_s" not in lines[2]
    rate = lines[1]["env_steps_per_s"]
    assert rate == pytest.approx(256 / (lines[1]["time"] - lines[0]["time"]))
    assert b["env_steps_per_s"] == rate
    assert means["phase3/env_steps_per_s"] == [(8, f32(rate))]
    assert lines[1]["per_seed"] == {"val_sharpe": [-0.5, 0.0]}  # kept in metrics.jsonl too
    assert a["stage"] == 0 and c["val_loss_per_seed"] == [1.75, 2.25]


def test_runs_without_tensorboard_write_no_events(tmp_path):
    run = ck.create_run(tmp_path, "quiet", Config(), FP, resume=False, tensorboard=False)
    run.log_metrics(3, 1, {"x": 1.0, "per_seed": {"x": [1.0]}})
    run.close()
    assert not (tmp_path / "quiet" / "tb").exists() and run.read_metrics()[0]["x"] == 1.0


def test_every_phase_record_carries_per_seed_values():
    from hrl_sarp_jax.training import joint, ppo_loop, rl_micro, runner

    # Phases 1-2: per epoch, the seeds active that epoch (a stopped seed is None)
    m = {"active": np.array([[True, True], [True, False]]), "epoch": np.array([[1, 2], [1, 2]]),
         "train_loss": np.array([[1.0, 0.5], [3.0, 9.0]]),
         "val_loss": np.array([[2.0, 1.0], [4.0, 9.0]])}
    e1, e2 = runner._epoch_records(m)
    assert e1["train_loss"] == 2.0 and e1["per_seed"]["train_loss"] == [1.0, 3.0]
    assert e2["train_loss"] == 0.5 and e2["per_seed"] == {"train_loss": [0.5, None],
                                                         "val_loss": [1.0, None]}
    # Phase 3 / flat: per update, [K, U]
    u = ppo_loop.mean_records({"pg_loss": np.array([[0.1, 0.2], [0.3, 0.6]])}, 4)
    assert [r["update"] for r in u] == [5, 6] and u[1]["pg_loss"] == pytest.approx(0.4)
    assert u[0]["per_seed"] == {"pg_loss": [0.1, 0.3]} and u[1]["per_seed"]["pg_loss"] == [0.2, 0.6]
    ev = {"val_sharpe": np.array([0.5, -0.5]), "val_curve": np.zeros((2, 3)), "x": np.ones(2)}
    assert ppo_loop.seed_lists(ev) == {"val_sharpe": [0.5, -0.5]}
    # Phase 4: per chunk [K, steps]; losses only over the steps that updated
    chunk = {"critic_loss": np.array([[1.0, 3.0], [5.0, 7.0]]),
             "updating": np.array([[0, 1], [1, 1]]), "reward": np.array([[1.0, 2.0], [3.0, 4.0]]),
             "episodes_done": np.array([[1, 0], [0, 0]]),
             "episode_return_sum": np.array([[0.5, 0.0], [0.0, 0.0]]),
             "episode_length_sum": np.array([[10, 0], [0, 0]])}
    rec = rl_micro._chunk_record(chunk)
    assert rec["critic_loss"] == pytest.approx(5.0) and rec["reward"] == 2.5
    assert rec["per_seed"]["critic_loss"] == [3.0, 6.0] and rec["per_seed"]["reward"] == [1.5, 3.5]
    assert rec["per_seed"]["episode_return"] == [0.5, None]
    assert rec["per_seed"]["episodes_finished"] == [1, 0]
    # the actor's loss and anchor KL: over the updates that stepped the actor (per-step means
    # over 2 updates per step: 0.5 = one of the two stepped it), not diluted by critic-only ones
    chunk = {"actor_loss": np.array([[0.0, -1.0, -2.0], [-3.0, 0.0, 0.0]]),
             "anchor_kl": np.array([[0.0, 0.1, 0.4], [0.3, 0.0, 0.0]]),
             "actor_updated": np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.0]]),
             "updating": np.ones((2, 3)), "episodes_done": np.zeros((2, 3)),
             "episode_return_sum": np.zeros((2, 3)), "episode_length_sum": np.zeros((2, 3))}
    rec = rl_micro._chunk_record(chunk)
    assert rec["actor_loss"] == pytest.approx(-6.0 / 2.5)
    assert rec["anchor_kl"] == pytest.approx(0.8 / 2.5)
    assert rec["per_seed"]["actor_loss"] == pytest.approx([-3.0 / 1.5, -3.0])
    none = {**chunk, "actor_updated": np.zeros((2, 3))}
    assert rl_micro._chunk_record(none)["anchor_kl"] is None
    m4 = [{k: chunk[k][:, :2] for k in ("actor_loss", "actor_updated")},
          {k: chunk[k][:, 2:] for k in ("actor_loss", "actor_updated")}]
    assert joint._block_record(m4, "micro_") == {"micro_actor_loss": pytest.approx(-2.4)}
    assert joint._block_record(m4, "micro_", True)["micro_actor_loss"] == pytest.approx(
        [-2.0, -3.0])
    # PPO's anchor KL (no actor_updated): the plain mean
    assert joint._block_record([{"anchor_kl": np.array([[0.1, 0.3]])}], "macro_") == {
        "macro_anchor_kl": pytest.approx(0.2)}
    # Phase 5: per round, over every chunk of a block
    blocks = [{"value_loss": np.array([[1.0, 2.0], [3.0, 4.0]])}, {"value_loss": np.array(
        [[3.0], [5.0]])}]
    assert joint._block_record(blocks, "macro_") == {"macro_value_loss": 3.0}
    assert joint._block_record(blocks, "macro_", True) == {"macro_value_loss": [2.0, 4.0]}


@pytest.mark.slow  # one Phase-1 compile on a small market (~30 s on 2 cores)
def test_a_trained_phase_writes_its_seeds_to_tensorboard(tmp_path):
    from hrl_sarp_jax.config import load_config
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.training.runner import run_pretrain_phase

    cfg = load_config("smoke", ["train.seeds=2", "train.macro_pretrain.epochs=2",
                                "train.macro_pretrain.chunk_epochs=2", "networks.gnn.hidden=8",
                                "networks.gnn.embedding=8", "networks.macro_hidden=[16,8]"])
    market_dir = write_synthetic_market(tmp_path / "market", cfg.synth)
    market, meta = load_market(market_dir, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    with ck.create_run(tmp_path, "p1", cfg, FP, resume=False) as run:
        run_pretrain_phase(1, cfg, market, meta, feats, run, progress=False)
    recs = [r for r in run.read_metrics() if r["phase"] == 1]
    assert [r["step"] for r in recs] == [1, 2]
    root = tmp_path / "p1" / "tb"
    means = _scalars(root)
    for k in (0, 1):
        seed = _scalars(root / f"seed{k}")
        for name in ("train_loss", "val_loss"):
            got = [v for _, v in seed[f"phase1/{name}"]]
            assert got == pytest.approx([r["per_seed"][name][k] for r in recs], rel=1e-6)
    assert [v for _, v in means["phase1/val_loss"]] == pytest.approx(
        [r["val_loss"] for r in recs], rel=1e-6)
    assert recs[0]["per_seed"]["val_loss"][0] != recs[0]["per_seed"]["val_loss"][1]


# --------------------------------------------------------------------------- MLflow


def test_mlflow_missing_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    with pytest.raises(HrlSarpError, match=r"pip install 'hrl-sarp-jax\[mlflow\]'"):
        ck.configure_tracking(mlflow="file:///nowhere")
    assert ck._TRACKING["mlflow"] is None
    code = main(["train", "--phase", "1", "--run", "x", "--checkpoints", str(tmp_path),
                 "--data", str(tmp_path / "no-market"), "--mlflow", f"file://{tmp_path}/ml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--mlflow needs the optional mlflow package" in err[0]
    assert not (tmp_path / "x").exists()  # nothing started


@pytest.mark.skipif(not HAS_MLFLOW, reason="mlflow not installed (pip install "
                                           "'hrl-sarp-jax[mlflow]'); the missing-extra error "
                                           "is tested instead")
def test_mlflow_run_gets_config_metrics_and_artifacts(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 retired the file store
    uri = (tmp_path / "mlruns").as_uri()
    run = ck.create_run(tmp_path, "ml", Config(), FP, resume=False, mlflow=uri)
    _, b, _ = _log_phase3(run)
    ck.write_phase_summary(run, 3, {"val_sharpe": -0.25})
    (run.root / "report").mkdir()
    (run.root / "report" / "metrics.json").write_text('{"strategies": {}}\n')
    run.close()
    client = MlflowClient(tracking_uri=uri)
    run_id = json.loads((tmp_path / "ml" / "mlflow.json").read_text())[uri]
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "ml"
    params = got.data.params
    assert params["train.seeds"] == "1" and params["env.cost.stt_buy"] == str(
        Config().env.cost.stt_buy)
    assert params["networks.macro_hidden"] == str(list(Config().networks.macro_hidden))
    hist = lambda key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)]  # noqa: E731
    assert hist("phase3/val_sharpe") == [(0, 0.2), (8, -0.25)]
    assert hist("phase3/seed1/val_sharpe") == [(0, 0.3), (8, 0.0)]
    assert hist("phase1/seed0/val_loss") == [(1, 1.75)]
    assert hist("phase3/env_steps_per_s") == [(8, pytest.approx(b["env_steps_per_s"]))]
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "run.json", "metrics.jsonl", "phase3", "report"} <= files
    assert {a.path for a in client.list_artifacts(run_id, "phase3")} == {"phase3/summary.json"}
    assert {a.path for a in client.list_artifacts(run_id, "report")} == {"report/metrics.json"}
    # resuming the run folder continues the same MLflow run
    again = ck.create_run(tmp_path, "ml", Config(), FP, resume=True, mlflow=uri)
    again.log_metrics(3, 16, {"val_sharpe": 0.5})
    again.close()
    assert hist("phase3/val_sharpe")[-1] == (16, 0.5)
    assert len(client.search_runs([got.info.experiment_id])) == 1
