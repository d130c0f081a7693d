"""A tiny NetworkConfig shared by the macro and micro tests (few compiles, small matmuls)."""

from __future__ import annotations

import pytest

from hrl_sarp_jax.config import GNNConfig, NetworkConfig

TINY = NetworkConfig(
    gnn=GNNConfig(kind="gat", hidden=8, embedding=8, layers=2, heads=2),
    macro_hidden=(16, 8),
    attention_heads=2,
    attention_dim=8,
    goal_embedding=8,
    micro_stock_hidden=(16, 8),
    critic_hidden=(16, 8),
)


@pytest.fixture(scope="session")
def tiny_config() -> NetworkConfig:
    return TINY
