"""Every numeric key has a range (config_ranges.RANGES), checked whenever a Config is built, and
a section given in part keeps its parent's defaults for the rest."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hrl_sarp_jax.config import (
    Config,
    config_from_dict,
    list_presets,
    load_config,
    load_config_sections,
    to_dict,
)
from hrl_sarp_jax.config_ranges import RANGES, numeric_keys
from hrl_sarp_jax.errors import ConfigError


def _outside(key: str) -> list[float]:
    """Values just outside RANGES[key] on each finite side, and NaN for a float key."""
    b = RANGES[key]
    out = []
    if math.isfinite(b.lo):
        out.append(b.lo if b.lo_open else b.lo - 1)
    if math.isfinite(b.hi):
        out.append(b.hi if b.hi_open else b.hi + 1)
    return out


def _default(key: str):
    node = Config()
    for part in key.split("."):
        node = getattr(node, part)
    return node


def test_the_table_covers_exactly_the_numeric_keys():
    assert sorted(RANGES) == sorted(numeric_keys(Config))


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_is_in_range(preset):
    cfg, _ = load_config_sections(preset, (), ("sweep",))
    assert isinstance(cfg, Config)


@pytest.mark.parametrize("key", sorted(RANGES))
def test_a_value_outside_a_keys_range_is_one_error_naming_it(key):
    default = _default(key)
    values = _outside(key)
    if isinstance(default, float):
        values.append(float("nan"))
    assert values, f"{key} has no finite bound and is not a float: nothing to check"
    for v in values:
        if (isinstance(default, int) and not isinstance(default, bool)) or default is None:
            v = int(v) if math.isfinite(v) else v
        text = f"[{v}]" if isinstance(default, tuple) else (".nan" if v != v else repr(v))
        with pytest.raises(ConfigError) as err:
            load_config(None, [f"{key}={text}"])
        msg = str(err.value)
        assert f"'{key}'" in msg and "must be" in msg and "\n" not in msg, msg


def test_hand_written_messages_and_bounds():
    cases = {
        "train.ppo.lr=0": "config key 'train.ppo.lr' = 0.0 must be > 0",
        "train.ppo.gamma=1.5": "config key 'train.ppo.gamma' = 1.5 must be in (0, 1] "
                               "(a discount factor)",
        "networks.macro_hidden=[64, 0]": "config key 'networks.macro_hidden' = (64, 0) must be "
                                         ">= 1 (a layer width)",
        "env.constraints.rebalance_threshold=0.5": "config key "
        "'env.constraints.rebalance_threshold' = 0.5 must be in [0, 0.5) (a one-way turnover; "
        "0: always trade)",
        "env.cost.stt_buy=-0.001": "config key 'env.cost.stt_buy' = -0.001 must be >= 0 "
                                   "(a fraction of traded value)",
    }
    for override, message in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config("quick", [override])
        assert str(err.value) == message
    # the edges themselves are valid
    for ok in ("train.ppo.gamma=1", "env.constraints.rebalance_threshold=0",
               "env.risk.event_reduction=1", "train.pool.phase3_markets=null"):
        load_config(None, [ok])


def test_rules_between_keys_and_dates():
    with pytest.raises(ConfigError, match=r"'env\.risk\.rerisk_drawdown' = 0\.1 must be at most "
                                          r"'env\.risk\.derisk_drawdown' = 0\.07"):
        load_config(None, ["env.risk.rerisk_drawdown=0.1"])
    with pytest.raises(ConfigError, match=r"'features\.norm_min_periods' = 300 must be at most"):
        load_config(None, ["features.norm_min_periods=300"])
    with pytest.raises(ConfigError, match=r"'data\.val_start' = '2023-06-01' must be before "
                                          r"'data\.test_start'"):
        load_config(None, ["data.val_start=2023-06-01"])
    with pytest.raises(ConfigError, match=r"'synth\.end' = 'soon' is not a date; write it as "
                                          r"YYYY-MM-DD"):
        load_config(None, ["synth.end=soon"])
    # YAML reads an unquoted date as a date: it is the same key as the quoted string
    assert load_config(None, ["data.val_start=2020-06-01"]) == load_config(
        None, ["data.val_start='2020-06-01'"])
    assert load_config(None, ["data.val_start=2020-06-01"]).data.val_start == "2020-06-01"


def test_a_replaced_config_is_checked_too():
    cfg = Config()
    with pytest.raises(ConfigError, match=r"'train\.td3\.tau' = 0\.0 must be in \(0, 1\]"):
        dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, td3=dataclasses.replace(cfg.train.td3, tau=0.0)))


def test_a_section_given_in_part_keeps_its_parents_defaults():
    """TrainConfig's own defaults for the pre-training sections differ from the class's
    (Phase 2: 30 epochs at lr 5e-4, patience 10, tau 20); one key given must not reset the
    others to PretrainConfig's (50 epochs at 1e-3, patience 15, tau 50), as it did before."""
    default = Config().train.micro_pretrain
    assert (default.epochs, default.lr, default.patience, default.alloc_temperature) == (
        30, 5e-4, 10, 20.0)
    got = load_config(None, ["train.micro_pretrain.chunk_epochs=2"]).train.micro_pretrain
    assert got == dataclasses.replace(default, chunk_epochs=2)
    assert load_config(None, ["train.macro_pretrain.epochs=3"]).train.macro_pretrain.lr == 3e-4
    # a saved run's config (every key written) comes back as it was
    cfg = load_config("quick")
    assert config_from_dict(to_dict(cfg)) == cfg


def test_the_presets_keep_the_values_they_were_measured_with():
    """quick and smoke name the pre-training values they always trained with (before the
    loader kept the parent's defaults, their sections started from the class's): the main
    job's Phases 1-2 are unchanged."""
    for preset in ("quick", "smoke"):
        cfg = load_config(preset)
        assert cfg.train.macro_pretrain.lr == 1e-3
        m = cfg.train.micro_pretrain
        assert (m.lr, m.patience, m.alloc_temperature) == (1e-3, 15, 50.0)
