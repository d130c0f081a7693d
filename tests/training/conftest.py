"""Shared fixtures: the smoke-preset market (3 sectors x 3 stocks, 2018-2020) with features,
and a tiny network config, built once per session."""

from __future__ import annotations

import pytest

from hrl_sarp_jax.config import load_config
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.synthetic import write_synthetic_market
from hrl_sarp_jax.features.build import build_features
from tests.features.make_market import make_market

SMOKE = "smoke"  # a preset shipped in hrl_sarp_jax/configs/
TINY_NETS = [
    "networks.gnn.hidden=8", "networks.gnn.embedding=8", "networks.gnn.heads=2",
    "networks.macro_hidden=[16,8]", "networks.attention_heads=2", "networks.attention_dim=8",
    "networks.goal_embedding=8", "networks.micro_stock_hidden=[16,8]",
    "networks.critic_hidden=[16,8]",
]
FAST = [*TINY_NETS, "train.macro_pretrain.epochs=4", "train.macro_pretrain.chunk_epochs=2",
        "train.micro_pretrain.epochs=4", "train.micro_pretrain.chunk_epochs=2",
        "train.micro_pretrain.batch_size=32"]


def smoke_cfg(*extra: str):
    return load_config(SMOKE, [*FAST, *extra])


@pytest.fixture(scope="session")
def smoke_market(tmp_path_factory):
    """(market_dir, market, meta, feats, cfg) for the smoke preset with tiny networks."""
    cfg = smoke_cfg()
    out = write_synthetic_market(tmp_path_factory.mktemp("smoke") / "market", cfg.synth)
    market, meta = load_market(out, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    return out, market, meta, feats, cfg


@pytest.fixture(scope="session")
def small_built():
    """tests.features' hand-built market (T=240, 3 sectors + padding) and its features."""
    from hrl_sarp_jax.config import FeatureConfig

    built = make_market()
    return built, build_features(built.market, FeatureConfig(), built.meta.macro_names,
                                 built.meta.fundamental_names)
