"""Typed config: presets, dotted overrides, and clear errors for unknown keys and bad values."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import (
    PRESETS_DIR,
    Config,
    config_from_dict,
    list_presets,
    load_config,
    parse_override,
    resolve_config_path,
    to_dict,
)
from hrl_sarp_jax.errors import ConfigError

CONFIGS = PRESETS_DIR
REPO = Path(__file__).resolve().parents[1]


def test_default_preset_equals_builtin_defaults():
    # default.yaml restates the dataclass defaults; drift between them would confuse users.
    assert load_config(CONFIGS / "default.yaml") == Config()


def test_smoke_preset_overrides_only_what_it_names():
    cfg = load_config(CONFIGS / "smoke.yaml")
    assert cfg.synth.preset == "small"
    assert cfg.synth.stocks_per_sector == 3
    assert cfg.features.norm_window == 60
    assert cfg.env.cost == Config().env.cost  # inherited from default.yaml


def test_dotted_override_is_typed_and_applied():
    cfg = load_config(None, ["env.cost.stt_buy=0.002", "synth.seed=7",
                             "networks.macro_hidden=[8, 4]"])
    assert cfg.env.cost.stt_buy == pytest.approx(0.002)
    assert cfg.synth.seed == 7
    assert cfg.networks.macro_hidden == (8, 4)


def test_integer_accepted_for_float_and_yaml_exponent_string():
    assert load_config(None, ["env.initial_value=5"]).env.initial_value == 5.0
    assert isinstance(load_config(None, ["env.initial_value=5"]).env.initial_value, float)
    assert load_config(None, ["env.initial_value=1.0e6"]).env.initial_value == 1.0e6


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("env.cost.stx=1", "unknown config key 'env.cost.stx'"),
        ("nosuch=1", "unknown config key 'nosuch'"),
        ("synth.seed=abc", "config key 'synth.seed': expected an integer"),
        ("synth.seed=1.5", "config key 'synth.seed': expected an integer"),
        ("env.cost.gst=high", "config key 'env.cost.gst': expected a number"),
        ("synth.preset=3", "config key 'synth.preset': expected a string"),
        ("env.cost=1", "config key 'env.cost': expected a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.").replace("'", "'")):
        load_config(None, [override])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match=r"must look like key\.sub=value"):
        parse_override("env.cost.stt_buy")


def test_unknown_key_in_yaml_file_names_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  sector_weigting: cap\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'data\.sector_weigting'"):
        load_config(p)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(loop)


def test_round_trip_through_plain_dict():
    cfg = load_config(CONFIGS / "smoke.yaml", ["networks.critic_hidden=[16]"])
    assert config_from_dict(to_dict(cfg)) == cfg


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- shipped presets


def test_presets_ship_inside_the_package():
    assert PRESETS_DIR == REPO / "hrl_sarp_jax" / "configs"
    assert list_presets() == ["default", "quick", "smoke", "sweep_ppo", "sweep_smoke", "sweep_td3",
                              "sweep_td3_smoke"]
    assert not (REPO / "configs").exists()  # one copy only


def test_a_preset_is_found_by_name_by_old_path_and_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the repository: nothing found by relative path
    for spec in ("quick", "quick.yaml", "configs/quick.yaml", "./configs/quick.yaml"):
        assert resolve_config_path(spec) == PRESETS_DIR / "quick.yaml"
    cfg = load_config("quick")
    assert cfg.train.seeds == 3 and cfg.train.ppo.total_env_steps == 8192  # quick.yaml
    assert cfg.env.cost == Config().env.cost  # from its base: default.yaml
    # an own file wins over a preset of the same name, and may build on a shipped preset
    (tmp_path / "quick.yaml").write_text("base: smoke.yaml\nseed: 7\n")
    mine = load_config("quick.yaml")
    assert mine.seed == 7 and mine.synth.preset == "small"  # smoke.yaml found in the package
    with pytest.raises(ConfigError, match=r"config 'nope' not found: .*presets: default, quick"):
        load_config("nope")
    with pytest.raises(ConfigError, match="not found"):
        resolve_config_path("elsewhere/quick.yaml")  # only configs/NAME falls back


def test_config_show_prints_the_resolved_preset(capsys):
    assert main(["config", "show", "quick", "--set", "train.seeds=8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# quick: ") and "--set train.seeds=8" in out.splitlines()[0]
    shown = yaml.safe_load(out)
    assert shown == to_dict(load_config("quick", ["train.seeds=8"]))
    assert shown["train"]["seeds"] == 8 and shown["train"]["ppo"]["total_env_steps"] == 8192

    assert main(["config", "show", "sweep_smoke"]) == 0  # the sweep: section is kept
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["sweep"]["seeds"] == 2 and shown["synth"]["preset"] == "small"

    assert main(["config", "show"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in listed[1:]] == list_presets()
    assert listed[1].split(None, 1)[1] == "Full preset"

    assert main(["config", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config 'nope' not found" in err[0]


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel built from a copy of the sources (the checkout is left untouched)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "hrl_sarp_jax", src / "hrl_sarp_jax",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if importlib.util.find_spec("wheel") is None:
        pytest.skip("the wheel build backend is not installed (the dev extra installs it); "
                    "building without it would download it, and tests stay offline")
    # the installed backend, no index: the build never touches the network
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
           "--no-index", "-q", "-w", str(tmp_path / "dist"), str(src)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("hrl_sarp_jax-*.whl")
    return wheel


def test_a_built_wheel_carries_the_presets_and_runs_them_from_any_folder(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        shipped = {n.rsplit("/", 1)[1][:-5] for n in names
                   if n.startswith("hrl_sarp_jax/configs/") and n.endswith(".yaml")}
        assert shipped == set(list_presets())
        assert zf.read("hrl_sarp_jax/configs/quick.yaml") == (PRESETS_DIR / "quick.yaml"
                                                              ).read_bytes()
        site = tmp_path / "site"
        zf.extractall(site)  # a wheel install is this unpacking (plus metadata and scripts)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = ("import hrl_sarp_jax.cli as c, hrl_sarp_jax.config as k; print(c.__file__); "
             "print(k.resolve_config_path(c.QUICK_PRESET)); print(k.load_config('quick').train"
             ".seeds)")
    done = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    module, preset, seeds = done.stdout.split()
    assert Path(module).is_relative_to(site) and Path(preset) == site / (
        "hrl_sarp_jax/configs/quick.yaml")
    assert seeds == "3"
    shown = subprocess.run([sys.executable, "-m", "hrl_sarp_jax", "config", "show", "smoke"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert yaml.safe_load(shown.stdout) == to_dict(load_config("smoke"))


@pytest.mark.parametrize("override, key", [
    ("train.joint.rounds=0", r"train\.joint\.rounds"),
    ("env.goal_step=0", r"env\.goal_step"),
    ("env.goal_lock=1.5", r"env\.goal_lock"),
    ("env.goal_change=-0.1", r"env\.goal_change"),
    ("env.reward.kind=sharpe", r"env\.reward\.kind"),
    ("env.micro_frequency=hourly", r"env\.micro_frequency"),
    ("env.constraints.support_rule=sticky", r"env\.constraints\.support_rule"),
    ("env.risk.rerisk_days=-1", r"risk\.rerisk_days"),
    ("train.checkpoint=last", r"train\.checkpoint"),
    ("train.ppo.epochs=0", r"train\.ppo\.epochs"),
    ("train.micro_pretrain.lr=0", r"micro_pretrain"),
    ("train.td3.updates_per_step=0", r"train\.td3\.updates_per_step' = 0 must be >= 1"),
    ("train.td3.warmup_transitions=-5", r"train\.td3\.warmup_transitions"),
    ("train.ppo.anchor_kl_coef=-1", r"train\.ppo\.anchor_kl_coef"),
    ("train.td3.anchor_kl_coef=-1", r"train\.td3\.anchor_kl_coef"),
    ("networks.stock_mixer=mlp", r"networks\.stock_mixer"),
    ("train.macro_pretrain.alloc_target=oracle", r"macro_pretrain\.alloc_target"),
    ("train.pool.markets=-1", r"train\.pool\.markets"),
    ("train.pool.phases=[5]", r"train\.pool\.phases"),
])
def test_a_bad_key_of_any_phase_fails_before_phase_1(tmp_path, override, key):
    """`hrl-sarp run` checks every phase's keys before it trains anything: the error names
    the key and no run folder is created (Phase 5's keys used to be read only after Phases
    1-4)."""
    from hrl_sarp_jax.cli import main
    from hrl_sarp_jax.training.phases import check_training_config

    with pytest.raises(ConfigError, match=key):
        check_training_config(load_config("smoke", [override]))
    rc = main(["run", "--config", "smoke", "--set", override, "--checkpoints",
               str(tmp_path / "ck"), "--data", str(tmp_path / "market")])
    assert rc != 0 and not (tmp_path / "ck").exists() and not (tmp_path / "market").exists()
