"""Micro (daily, TD3) actor and permutation-invariant critics over N stocks (original §4.4-4.6).

One example: stock features [N, F] (F = 22), goal [G] (G = S + 3: sector weights ⊕ regime
one-hot), stock mask [N] bool. The actor is permutation-equivariant over stocks, the critics
permutation-invariant (the original's flat 1164-input critic was neither, §11.15).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import NetworkConfig
from hrl_sarp_jax.networks.common import MLP, dense, masked_max, masked_mean, masked_softmax
from hrl_sarp_jax.networks.stocks import mix_stocks, stock_mlp_shared
from hrl_sarp_jax.types import Array


@struct.dataclass
class MicroPolicy:
    """Micro actor output for one example."""

    logits: Array  # [N] pre-softmax scores (0 on padded stocks); TD3 smooths in this space
    weights: Array  # [N] masked_softmax(logits, mask): sums to 1 over valid stocks, 0 on padding


class GoalEncoder(nn.Module):
    """Original §4.4: goal [G] -> (Dense -> LayerNorm -> GELU) x 2 -> [goal_embedding]."""

    width: int

    @nn.compact
    def __call__(self, goal: Array) -> Array:
        return MLP((self.width, self.width), name="mlp")(goal.astype(jnp.float32))


class MicroActor(nn.Module):
    """Goal encoder, per-stock MLP on features ⊕ goal embedding, stock mixer (masked
    self-attention or DeepSets, residual, LayerNorm: ``networks.stocks``), logits head (gain
    0.01), ONE masked softmax.

    [N, F], [G], [N] -> MicroPolicy ([N] logits, [N] weights).
    """

    config: NetworkConfig

    @nn.compact
    def __call__(
        self, stock_features: Array, goal: Array, stock_mask: Array, deterministic: bool = True
    ) -> MicroPolicy:
        cfg = self.config
        mask = stock_mask.astype(bool)
        g = GoalEncoder(cfg.goal_embedding, name="goal_encoder")(goal)
        h = stock_mlp_shared(cfg, stock_features.astype(jnp.float32), g, mask)
        h = mix_stocks(cfg, h, mask, deterministic)  # [N, H]
        logits = jnp.where(mask, dense(1, 0.01, name="logit_head")(h)[:, 0], 0.0)
        return MicroPolicy(logits, masked_softmax(logits, mask))


class MicroCritic(nn.Module):
    """One DeepSets Q(s, a): per-stock MLP on features ⊕ (w, w * N_valid) ⊕ goal embedding,
    masked mean ⊕ masked max pooling, MLP(critic_hidden), Dense(1) with gain 1.

    [N, F], [G], [N] weights, [N] mask -> [] Q-value.
    w * N_valid is 1 at equal weight, an input on the scale of the features.
    """

    config: NetworkConfig

    @nn.compact
    def __call__(
        self,
        stock_features: Array,
        goal: Array,
        weights: Array,
        stock_mask: Array,
        deterministic: bool = True,  # no dropout here; kept for a uniform call signature
    ) -> Array:
        del deterministic
        cfg = self.config
        mask = stock_mask.astype(bool)
        g = GoalEncoder(cfg.goal_embedding, name="goal_encoder")(goal)
        w = weights.astype(jnp.float32)[:, None]
        n_valid = jnp.sum(mask).astype(jnp.float32)
        x = jnp.concatenate([stock_features.astype(jnp.float32), w, w * n_valid], axis=-1)
        h = stock_mlp_shared(cfg, x, g, mask)  # [N, H]
        pooled = jnp.concatenate([masked_mean(h, mask), masked_max(h, mask)], axis=-1)
        return MLP(cfg.critic_hidden, out=1, out_gain=1.0, name="head")(pooled)[0]


class MicroCritics(nn.Module):
    """K independent MicroCritics as one module: params stacked on a leading K axis, each
    initialised from its own key. Same inputs as MicroCritic -> [K] Q-values."""

    config: NetworkConfig
    num_critics: int = 2

    @nn.compact
    def __call__(
        self,
        stock_features: Array,
        goal: Array,
        weights: Array,
        stock_mask: Array,
        deterministic: bool = True,
    ) -> Array:
        if self.num_critics < 1:
            raise ValueError(f"num_critics must be >= 1, got {self.num_critics}")
        stacked = nn.vmap(
            MicroCritic,
            variable_axes={"params": 0},
            split_rngs={"params": True, "dropout": True},
            in_axes=None,  # nn.vmap ignores kwargs, so every argument is passed positionally
            out_axes=0,
            axis_size=self.num_critics,
        )
        return stacked(self.config, name="critics")(
            stock_features, goal, weights, stock_mask, deterministic
        )
