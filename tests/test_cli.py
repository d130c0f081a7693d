"""Command line: help on every level, one-line errors with non-zero exit codes."""

from __future__ import annotations

import pytest

from hrl_sarp_jax.cli import build_parser, main


def _subcommands(parser):
    for action in parser._actions:  # argparse keeps subparsers here
        if action.__class__.__name__ == "_SubParsersAction":
            return action.choices
    return {}


def test_help_on_every_level(capsys):
    parser = build_parser()
    stack = [((), parser)]
    seen = 0
    while stack:
        path, p = stack.pop()
        with pytest.raises(SystemExit) as exc:
            main([*path, "--help"])
        assert exc.value.code == 0
        assert "usage: hrl-sarp" in capsys.readouterr().out
        seen += 1
        stack.extend(((*path, name), sub) for name, sub in _subcommands(p).items())
    assert seen >= 6  # root, run, data, data synth/validate/import, bench


def test_config_error_is_one_line_and_exit_2(capsys, tmp_path):
    code = main(["data", "synth", "--out", str(tmp_path), "--set", "synth.nope=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1
    assert err[0].startswith("hrl-sarp: error: unknown config key 'synth.nope'")


def test_missing_market_folder_is_a_clear_error(capsys, tmp_path):
    code = main(["data", "validate", str(tmp_path / "nowhere")])
    captured = capsys.readouterr()
    assert code != 0
    assert "nowhere" in captured.err
    assert "Traceback" not in captured.err


def test_import_long_without_sector_map_is_rejected(capsys, tmp_path):
    code = main(["data", "import", "--from", "long", str(tmp_path / "p.csv"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "--sectors" in capsys.readouterr().err


def test_the_default_market_is_regenerated_when_its_synth_settings_change(tmp_path):
    """``_synth_matches``: data/default is kept only for the same generator settings, the
    drift jitter included (a meta.json without one was made without one)."""
    import dataclasses
    import json

    from hrl_sarp_jax.cli import _synth_matches
    from hrl_sarp_jax.config import SynthConfig

    synth = SynthConfig(preset="small", seed=3)
    meta = {k: getattr(synth, k) for k in ("seed", "preset", "stocks_per_sector", "start", "end")}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    assert _synth_matches(tmp_path, synth)
    assert not _synth_matches(tmp_path, dataclasses.replace(synth, seed=4))
    jittered = dataclasses.replace(synth, alpha_jitter=0.1)
    assert not _synth_matches(tmp_path, jittered)
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "alpha_jitter": 0.1}))
    assert _synth_matches(tmp_path, jittered) and not _synth_matches(tmp_path, synth)
    assert not _synth_matches(tmp_path / "missing", synth)


def test_compilation_cache_keeps_quick_programs(tmp_path):
    """The CLI's persistent cache keeps a program however quickly it compiles (a warm main
    job otherwise compiled ~320 sub-0.5 s programs again), and an empty HRL_SARP_JAX_CACHE
    turns the cache off. In a fresh interpreter: the test session has its own cache."""
    import os
    import subprocess
    import sys

    code = ("from hrl_sarp_jax.cli import _enable_compilation_cache as e; e(); import jax; "
            "jax.jit(lambda x: x * 3.0 + 1.0)(2.0).block_until_ready()")
    folder = tmp_path / "cache"
    for value in (str(folder), ""):
        env = {**os.environ, "HRL_SARP_JAX_CACHE": value, "JAX_PLATFORMS": "cpu"}
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    entries = [p for p in folder.iterdir() if p.name.startswith("jit_")]
    assert len(entries) == 1, sorted(p.name for p in folder.iterdir())


def test_a_config_that_changes_a_runs_parameter_shapes_is_refused(tmp_path):
    """evaluate / explain / decide with --config: a key that fixes parameter shapes must match
    the run's saved config (named in the error with the --set that fixes it); other keys may
    differ, and without --config the run's own config is used."""
    import argparse

    import yaml

    from hrl_sarp_jax.cli import _config_for_run
    from hrl_sarp_jax.config import load_config, to_dict
    from hrl_sarp_jax.errors import HrlSarpError

    trained = load_config("smoke", ["features.macro_levels=true", "env.goal_step=0.3"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(to_dict(trained)))

    def ns(config, *overrides):
        return argparse.Namespace(config=config, overrides=list(overrides))

    assert _config_for_run(ns(None), tmp_path) == trained
    with pytest.raises(HrlSarpError, match=r"features\.macro_levels=False .* trained with True.*"
                                           r"--set features\.macro_levels=True"):
        _config_for_run(ns("smoke"), tmp_path)
    got = _config_for_run(ns("smoke", "features.macro_levels=True"), tmp_path)
    assert got.features.macro_levels and got.env.goal_step != 0.3  # an evaluation rule may differ
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text(yaml.safe_dump(to_dict(
        load_config("smoke", ["networks.macro_hidden=[16, 8]"]))))
    with pytest.raises(HrlSarpError, match=r"networks\.macro_hidden=\[32, 16\] .* \[16, 8\]"):
        _config_for_run(ns("smoke"), other)
    # a key without parameters: a run saved before networks.stock_activation existed was
    # trained with gelu (its saved config's meaning), the preset says relu
    old = tmp_path / "old"
    old.mkdir()
    data = to_dict(load_config("smoke"))
    del data["networks"]["stock_activation"]
    (old / "config.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(HrlSarpError, match=r"stock_activation='relu' .* trained with 'gelu'"):
        _config_for_run(ns("smoke"), old)


def test_train_reads_a_sweep_preset_without_its_sweep_section(capsys):
    """A Phase-4 sweep runs in a run whose Phases 1-3 were trained with the same preset, so
    `train` takes a sweep preset: the rest of it, with a note that the sweep is `sweep`."""
    from hrl_sarp_jax.cli import _load_cfg
    from hrl_sarp_jax.config import load_config_sections

    args = build_parser().parse_args(
        ["train", "--config", "sweep_td3_smoke", "--phase", "1", "--run", "x"])
    cfg = _load_cfg(args, sweep_preset=True)
    want, extra = load_config_sections("sweep_td3_smoke", (), ("sweep",))
    assert cfg == want and extra["sweep"]["phase"] == 4
    assert cfg.train.td3.warmup_transitions == 128
    assert "'sweep:' section" in capsys.readouterr().err
    with pytest.raises(Exception, match="unknown config key 'sweep'"):
        _load_cfg(args)


@pytest.mark.parametrize("branch, expected", [
    ("main", "--branch 'main': give RUN:K"),
    ("main:x", "--branch 'main:x': give RUN:K"),
    ("main:7", "--branch RUN:K keeps phases 1..K: K must be one of 1, 2, 3, 4, 5, not 7"),
])
def test_a_bad_branch_is_one_line_before_any_work(capsys, tmp_path, branch, expected):
    code = main(["run", "--config", "smoke", "--checkpoints", str(tmp_path / "ck"),
                 "--data", str(tmp_path / "market"), "--branch", branch])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and err[0].startswith(f"hrl-sarp: error: {expected}")
    assert not (tmp_path / "ck").exists() and not (tmp_path / "market").exists()
