"""Typed config: presets, dotted overrides, and clear errors for unknown keys and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrl_sarp_jax.config import Config, config_from_dict, load_config, parse_override, to_dict
from hrl_sarp_jax.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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
    cfg = load_config(None, ["env.cost.stt_buy=0.002", "synth.seed=7", "networks.macro_hidden=[8, 4]"])
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
    with pytest.raises(ConfigError, match="must look like key.sub=value"):
        parse_override("env.cost.stt_buy")


def test_unknown_key_in_yaml_file_names_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  sector_weigting: cap\n")
    with pytest.raises(ConfigError, match="unknown config key 'data.sector_weigting'"):
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
