"""Host loop and CLI on the smoke preset: resume == uninterrupted, summaries, train/inspect."""

from __future__ import annotations

import json

import pytest

from hrl_sarp_jax.checkpointing import content_hash, create_run, read_phase_summary
from hrl_sarp_jax.cli import main
from hrl_sarp_jax.training.runner import (
    PREPARE,
    phase_task,
    restore_phase_state,
    run_pretrain_phase,
)
from tests.training.conftest import FAST, SMOKE

PHASE1_KEYS = {"val_regime_accuracy", "val_regime_balanced_accuracy",
               "majority_baseline_balanced_accuracy", "persistence_baseline_balanced_accuracy",
               "val_alloc_return", "equal_weight_return", "epochs", "wall_s", "seeds", "per_seed"}
PHASE2_KEYS = {"val_goal_alignment", "val_return", "equal_weight_return", "epochs", "wall_s",
               "seeds", "per_seed"}


def test_resume_continues_exactly(smoke_market, tmp_path):
    _, market, meta, feats, cfg = smoke_market
    a = create_run(tmp_path, "a", cfg, "fp", resume=False)
    first = run_pretrain_phase(1, cfg, market, meta, feats, a, epoch_limit=2, progress=False)
    assert first.summary["epochs"] == 2
    a = create_run(tmp_path, "a", cfg, "fp", resume=True)
    resumed = run_pretrain_phase(1, cfg, market, meta, feats, a, resume=True, progress=False)
    assert resumed.summary["resumed_from_step"] == 2 and resumed.summary["epochs"] == 4
    b = create_run(tmp_path, "b", cfg, "fp", resume=False)
    run_pretrain_phase(1, cfg, market, meta, feats, b, progress=False)
    sa, _, step_a = restore_phase_state(a, 1, cfg, market, meta, feats)
    sb, _, step_b = restore_phase_state(b, 1, cfg, market, meta, feats)
    assert step_a == step_b == 4
    assert content_hash(sa) == content_hash(sb)
    # the metrics log holds each epoch once, in order, across the interruption
    steps = [r["step"] for r in a.read_metrics() if r["phase"] == 1]
    assert steps == [1, 2, 3, 4]

    summary = read_phase_summary(a, 1)
    assert set(summary) >= PHASE1_KEYS
    assert 0.0 <= summary["val_regime_balanced_accuracy"] <= 1.0
    assert summary["seeds"] == 1 and summary["epochs"] == 4


@pytest.mark.parametrize("phase", [1, 2])
def test_phase_task_from_shapes_alone_inits_the_trained_networks(smoke_market, phase):
    """Restoring a checkpoint builds the network from the datasets' shapes (eval_shape), not
    from computed samples: the same parameters, bit for bit, as the task training used."""
    import jax
    import numpy as np

    _, market, meta, feats, cfg = smoke_market
    trained = PREPARE[phase](cfg, market, meta, feats).task
    shaped = phase_task(phase, cfg, market, meta, feats)
    key = jax.random.key(3)
    a, b = trained.init(key), shaped.init(key)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow  # its own 2-seed Phase-2 compile (~20 s on 2 cores)
def test_phase2_summary_and_two_seeds(smoke_market, tmp_path):
    _, market, meta, feats, cfg = smoke_market
    import dataclasses

    cfg2 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=2))
    run = create_run(tmp_path, "m", cfg2, "fp", resume=False)
    res = run_pretrain_phase(2, cfg2, market, meta, feats, run, progress=False)
    s = read_phase_summary(run, 2)
    assert set(s) >= PHASE2_KEYS and s["seeds"] == 2 and s["epochs"] == 4
    assert len(s["per_seed"]["goal_alignment"]) == 2
    assert s["per_seed"]["goal_alignment"][0] != s["per_seed"]["goal_alignment"][1]
    assert -1.0 <= s["val_goal_alignment"] <= 1.0
    assert res.summary_path.name == "summary.json"


def test_cli_train_inspect_and_errors(smoke_market, tmp_path, capsys):
    market_dir, *_ = smoke_market
    sets = [a for s in FAST for a in ("--set", s)]
    args = ["train", "--phase", "1", "--config", SMOKE, *sets, "--data", str(market_dir),
            "--run", "cli", "--checkpoints", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "regime balanced accuracy" in out and "summary:" in out
    assert (tmp_path / "cli" / "phase1" / "summary.json").is_file()

    assert main(["inspect", "--run", "cli", "--checkpoints", str(tmp_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    ph = info["phases"]["1"]
    assert ph["latest_step"] == 4 and ph["best_metric"] == "val_loss"
    assert ph["latest"]["verified"] is True and ph["latest"]["content_hash"].startswith("sha256:")
    assert ph["summary"]["epochs"] == 4

    # again without --resume: one clear line
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
    # --resume on a finished phase keeps it as the main job does: nothing rebuilt or rewritten
    summary_file = tmp_path / "cli" / "phase1" / "summary.json"
    before = summary_file.read_bytes()
    assert main([*args, "--resume"]) == 0
    assert "already trained (summary found), kept" in capsys.readouterr().out
    assert summary_file.read_bytes() == before

    # phase 4 needs nothing but says where its goals come from; phase 5 needs phases 3-4
    assert main([*args[:2], "5", *args[3:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--phase 3" in err[0] and "Traceback" not in err[0]
    assert main(["inspect", "--run", "cli", "--checkpoints", str(tmp_path), "--phase", "2"]) == 2
    assert "no phase 2" in capsys.readouterr().err

    # a run branched after Phase 1 with another Phase-2 key restores the same Phase 1 and keeps it
    from hrl_sarp_jax.checkpointing import branch_run, open_run
    from hrl_sarp_jax.config import load_config
    from hrl_sarp_jax.training.phases import sections_free_after

    variant = ["--set", "train.micro_pretrain.lr=2e-4"]
    cfg = load_config(SMOKE, [*FAST, "train.micro_pretrain.lr=2e-4"])
    src = open_run(tmp_path / "cli")
    branch_run(tmp_path, "cli", "br", cfg, src.data_fingerprint, keep=1,
               free_sections=sections_free_after(1))
    _, market, meta, feats, _ = smoke_market
    state_src, _, step_src = restore_phase_state(src, 1, cfg, market, meta, feats)
    state_br, _, step_br = restore_phase_state(open_run(tmp_path / "br"), 1, cfg, market, meta,
                                               feats)
    assert step_br == step_src == 4 and content_hash(state_br) == content_hash(state_src)
    br_args = [*args[:-4], *variant, "--run", "br", "--checkpoints", str(tmp_path), "--resume"]
    assert main(br_args) == 0
    assert "already trained (summary found), kept" in capsys.readouterr().out
