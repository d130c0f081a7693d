"""Macro (weekly, PPO) actor and critic over S sectors (original §4.2-4.3, fixed per §11.12).

One example: macro [M], sector node features [S, F_s], adjacency [S, S] (or a GraphsTuple for
``impl='segment'``), sector mask [S] bool, portfolio state [P]. Trunk: SectorGNN -> masked set
attention pooling -> concat(macro, pooled, portfolio) -> MLP(macro_hidden) -> Dense -> latent.
Actor and critic have separate trunks (no shared parameters).

Sector policy: Dirichlet(alpha) with alpha_s = c * softmax_valid(logits)_s + floor on valid
sectors and 0 on padded ones; c = softplus(raw) is a learnable scalar initialised at 10, so
sum(alpha) = 11.1 at S = 11 like the original, but exploration can be learned. The logits are
bilinear in the node embeddings and the latent (logit_s = e_s . Dense(latent)), so the policy is
permutation-equivariant over sectors and the same parameters serve any S.

``networks.macro_allocation: regime_table`` ties the sector policy to the regime head: the
Dirichlet's sector shares are sum_r p_r softmax_valid(L_r) with p = softmax(regime logits) and
L [3, S] a frozen parameter (``regime_allocation``, Phase 1 writes tau x its table of mean
next-week sector returns per regime; gradients stop at it), so what the Macro executes follows
its regime call and PPO's gradient reaches the regime head through the allocation.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import NetworkConfig
from hrl_sarp_jax.networks.attention import SetAttentionPool
from hrl_sarp_jax.networks.common import MLP, dense, masked_softmax
from hrl_sarp_jax.networks.gnn import Graph, SectorGNN
from hrl_sarp_jax.types import NUM_REGIMES, Array

MACRO_ALLOCATIONS = ("head", "regime_table")
"""``networks.macro_allocation`` choices: the sector head's logits (the original's), or the
regime head's probabilities over a frozen per-regime allocation table."""
FROZEN_PARAM = "regime_allocation"
"""The name of the Macro actor's frozen parameter (no gradient, no weight decay)."""


def decayable(params):
    """A pytree of bools like ``params``: False at the frozen ``regime_allocation`` leaves (a
    weight-decay mask: their gradient is 0, so Adam leaves them unchanged without decay)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: not any(getattr(k, "key", None) == FROZEN_PARAM for k in path), params)


def regime_allocation(probs: Array, table_logits: Array, mask: Array) -> Array:
    """Sector shares [S] = sum_r probs[r] softmax_valid(table_logits[r]) for regime
    probabilities [3], per-regime logits [3, S] and a valid-sector mask [S] (0 where masked)."""
    rows = masked_softmax(table_logits, jnp.broadcast_to(mask, table_logits.shape))
    return probs @ rows


@struct.dataclass
class MacroPolicy:
    """Macro actor output for one example."""

    concentration: Array  # [S] Dirichlet alpha; 0 on padded sectors
    mean_weights: Array  # [S] alpha / sum(alpha): the deterministic action; 0 on padding
    sector_logits: Array  # [S] pre-softmax sector scores (0 on padding)
    total_concentration: Array  # [] learnable c (sum(alpha) = c + floor * S_valid)
    regime_logits: Array  # [3] Bull, Bear, Sideways


class MacroTrunk(nn.Module):
    """-> (latent [hidden[-1]], node embeddings [S, gnn.embedding])."""

    config: NetworkConfig

    @nn.compact
    def __call__(
        self,
        macro: Array,
        sector_features: Array,
        graph: Graph,
        sector_mask: Array,
        portfolio: Array,
        deterministic: bool = True,
    ) -> tuple[Array, Array]:
        cfg = self.config
        mask = sector_mask.astype(bool)
        if cfg.sector_embedding > 0:
            table = self.param("sector_embedding", nn.initializers.normal(1.0),
                               (sector_features.shape[-2], cfg.sector_embedding), jnp.float32)
            sector_features = jnp.concatenate([sector_features.astype(jnp.float32), table], -1)
        nodes = SectorGNN(cfg.gnn, cfg.dropout, name="gnn")(
            sector_features, graph, mask, deterministic
        )
        pool = SetAttentionPool(cfg.attention_dim, cfg.attention_heads, cfg.dropout, name="pool")
        pooled = pool(nodes, mask, deterministic)
        z = jnp.concatenate([macro, pooled, portfolio], axis=-1).astype(jnp.float32)
        latent = MLP(cfg.macro_hidden, out=cfg.macro_hidden[-1], name="mlp")(z)
        return latent, nodes


class MacroActor(nn.Module):
    """Dirichlet sector policy with learnable total concentration + categorical regime head."""

    config: NetworkConfig
    concentration_init: float = 10.0
    concentration_floor: float = 0.1

    @nn.compact
    def __call__(
        self,
        macro: Array,
        sector_features: Array,
        graph: Graph,
        sector_mask: Array,
        portfolio: Array,
        deterministic: bool = True,
    ) -> MacroPolicy:
        """Shapes: macro [M], sector_features [S, F_s], graph [S, S] | GraphsTuple,
        sector_mask [S] bool, portfolio [P] -> MacroPolicy."""
        mask = sector_mask.astype(bool)
        latent, nodes = MacroTrunk(self.config, name="trunk")(
            macro, sector_features, graph, mask, portfolio, deterministic
        )
        regime = dense(NUM_REGIMES, 0.01, name="regime_head")(latent)
        if self.config.macro_allocation == "regime_table":
            table = self.param(FROZEN_PARAM, nn.initializers.zeros,
                               (NUM_REGIMES, mask.shape[-1]), jnp.float32)
            share = regime_allocation(nn.softmax(regime), jax.lax.stop_gradient(table), mask)
            logits = jnp.where(mask, jnp.log(jnp.maximum(share, 1e-30)), 0.0)
        else:
            query = dense(nodes.shape[-1], 0.01, name="sector_query")(latent)
            logits = jnp.where(mask, nodes @ query, 0.0)
            share = masked_softmax(logits, mask)
        raw_init = self.concentration_init + math.log(-math.expm1(-self.concentration_init))
        raw = self.param("concentration_raw", nn.initializers.constant(raw_init), (), jnp.float32)
        total = nn.softplus(raw)
        alpha = jnp.where(mask, total * share + self.concentration_floor, 0.0)
        mean = alpha / jnp.maximum(jnp.sum(alpha), 1e-12)
        return MacroPolicy(alpha, mean, logits, total, regime)


class MacroCritic(nn.Module):
    """State value V(s): its own trunk, then Dense(1) with orthogonal gain 1. Same inputs as
    MacroActor -> [] float32."""

    config: NetworkConfig

    @nn.compact
    def __call__(
        self,
        macro: Array,
        sector_features: Array,
        graph: Graph,
        sector_mask: Array,
        portfolio: Array,
        deterministic: bool = True,
    ) -> Array:
        latent, _ = MacroTrunk(self.config, name="trunk")(
            macro, sector_features, graph, sector_mask, portfolio, deterministic
        )
        return dense(1, 1.0, name="value_head")(latent)[0]


class MacroActorCritic(nn.Module):
    """Actor and critic side by side (params under 'actor' and 'critic') -> (policy, value)."""

    config: NetworkConfig

    @nn.compact
    def __call__(
        self,
        macro: Array,
        sector_features: Array,
        graph: Graph,
        sector_mask: Array,
        portfolio: Array,
        deterministic: bool = True,
    ) -> tuple[MacroPolicy, Array]:
        args = (macro, sector_features, graph, sector_mask, portfolio, deterministic)
        policy = MacroActor(self.config, name="actor")(*args)
        return policy, MacroCritic(self.config, name="critic")(*args)
