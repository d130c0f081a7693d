"""Parameter counts at default sizes (S=11, N=50, 22 stock / 18 macro features, goal 14,
8 sector features, portfolio state 12), pinned so that architecture changes are deliberate.

Shape-only (jax.eval_shape), so nothing is computed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hrl_sarp_jax.config import GNNConfig, NetworkConfig
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES, NUM_STOCK_FEATURES
from hrl_sarp_jax.networks import (
    GoalEncoder,
    MacroActor,
    MacroCritic,
    MicroActor,
    MicroCritics,
    SectorGNN,
    SetAttentionPool,
    param_count,
)

S, N, F_S, P = 11, 50, 8, 12
G = S + 3
CFG = NetworkConfig()
ORIGINAL = dataclasses.replace(CFG, stock_activation="gelu", stock_norm=True,
                               stock_mixer="attention")  # the original's per-stock layers


def _count(module, *shapes_and_dtypes) -> int:
    args = [jax.ShapeDtypeStruct(s, d) for s, d in shapes_and_dtypes]
    return param_count(jax.eval_shape(module.init, jax.random.key(0), *args))


f32, b = jnp.float32, jnp.bool_
MACRO_IN = (((NUM_MACRO_FEATURES,), f32), ((S, F_S), f32), ((S, S), f32), ((S,), b), ((P,), f32))
MICRO_IN = (((N, NUM_STOCK_FEATURES), f32), ((G,), f32))


def test_blocks_shared_with_the_original_have_its_counts():
    # original §4.7: GCN 8 -> 32 -> 64 + readout = 288 + 64 + 2112 + 128 + 2 * 4160
    assert _count(SectorGNN(GNNConfig()), ((S, F_S), f32), ((S, S), f32)) == 10_912
    # original §4.1: 4 * (64 * 64 + 64) + LayerNorm 128 = 16,768, less its key bias (64), which
    # softmax ignores
    assert _count(SetAttentionPool(64, 4), ((S, 64), f32), ((S,), b)) == 16_768 - 64
    # original §4.4: 14 * 64 + 64 + 128 + 64 * 64 + 64 + 128
    assert _count(GoalEncoder(64), ((G,), f32)) == 5_376
    # original §4.5: 58,753 minus the 16,768 of the attention module it never called
    # (its attention, too, without the key bias)
    assert _count(MicroActor(ORIGINAL), *MICRO_IN, ((N,), b)) == 41_985 - 64


def test_pinned_counts_of_the_redesigned_networks():
    # GAT 8 -> 4 x 8 (concat) -> mean of 4 x 64: (256 + 64 + 32) + 64 + (8192 + 512 + 64) + 128
    # + readout 8320
    assert _count(SectorGNN(GNNConfig(kind="gat")), ((S, F_S), f32), ((S, S), f32)) == 17_632
    # GNN 10,912 + pool 16,768 + MLP from 18 + 64 + 12 = 94 inputs (24,320 + 512 + 32,896 + 256
    # + 8,256 + 128 + 4,160 = 70,528) + sector query 4,160 + regime head 195 + concentration 1
    # + the sector embedding table 11 x 8 = 88 and its 8 x 32 = 256 extra first-layer weights
    # - the pool's key bias 64
    assert _count(MacroActor(CFG), *MACRO_IN) == 102_564 + 88 + 256 - 64
    no_identity = dataclasses.replace(CFG, sector_embedding=0)
    assert _count(MacroActor(no_identity), *MACRO_IN) == 102_564 - 64
    # GNN + pool + MLP as above + value head 65 (+ its own embedding table and weights)
    assert _count(MacroCritic(CFG), *MACRO_IN) == 98_273 + 88 + 256 - 64
    # per critic: goal 5,376 + stock MLP on 22 + 2 + 64 inputs (11,392 + 256 + 8,256 + 128)
    # + head on mean ⊕ max 128 (33,024 + 512 + 32,896 + 256 + 129) = 92,225; two of them
    assert _count(MicroCritics(ORIGINAL), *MICRO_IN, ((N,), f32), ((N,), b)) == 184_450
    # lean per-stock layers (the defaults): no per-stock LayerNorm (-256 - 128 per stock MLP),
    # DeepSets mixer 128 x 64 + 64 = 8,256 in place of attention 16,576 and its norm 128:
    # actor 5,376 + (11,136 + 8,256) + 8,256 + head 65
    assert _count(MicroActor(CFG), *MICRO_IN, ((N,), b)) == 33_089
    # critics: 184,450 - 2 x (256 + 128)
    assert _count(MicroCritics(CFG), *MICRO_IN, ((N,), f32), ((N,), b)) == 184_450 - 768
