"""Flat single-level baseline: a Dirichlet actor and a value critic over N stocks (no goal).

One example: stock features [N, F] (F = 22), stock mask [N] bool (tradable), current weights
[N], context [C] (macro row ⊕ cash ⊕ drawdown in the flat env). The design is MicroActor's with
the goal encoder replaced by a context encoder:
  context [C] -> MLP(goal_embedding) -> broadcast to every stock;
  per stock: features ⊕ (w_i · N_valid: the current weight as a multiple of the equal share)
  ⊕ context embedding -> MLP(micro_stock_hidden) -> stock mixer (networks.stocks)
  -> score head (orthogonal gain 0.01, so the initial policy is equal weight).
Policy: Dirichlet(alpha) on the tradable stocks with
  alpha_i = N_valid · kappa · softmax_valid(scores)_i + floor,   kappa = softplus(raw) (init 1),
so every alpha starts at kappa + floor = 1.1 (a broad exploration around equal weight, like the
Macro's sum(alpha) = 11.1 over 11 sectors), the mean alpha / sum(alpha) is the deterministic
action, and kappa (how tightly samples sit around the mean) is learned. The actor is
permutation-equivariant over stocks; the critic (DeepSets: per-stock MLP, masked mean ⊕ max
pooling ⊕ context embedding -> MLP(critic_hidden) -> Dense(1)) is permutation-invariant, so the
same parameters serve any N. Actor and critic have separate parameters.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
from flax import struct

from hrl_sarp_jax.config import NetworkConfig
from hrl_sarp_jax.networks.common import MLP, dense, masked_max, masked_mean, masked_softmax
from hrl_sarp_jax.networks.stocks import mix_stocks, stock_mlp_shared
from hrl_sarp_jax.types import Array

_F32 = jnp.float32


@struct.dataclass
class FlatPolicy:
    """Flat actor output for one example."""

    concentration: Array        # [N] Dirichlet alpha; 0 on masked stocks
    mean_weights: Array         # [N] alpha / sum(alpha): the deterministic action
    scores: Array               # [N] pre-softmax scores (0 on masked stocks)
    total_concentration: Array  # [] kappa (alpha_i = N_valid kappa softmax_i + floor)


def stock_hidden(cfg: NetworkConfig, stock_features: Array, stock_mask: Array,
                 weights: Array, context_embedding: Array) -> Array:
    """The per-stock MLP on features ⊕ w_i · N_valid ⊕ context embedding (masked rows 0):
    [N, F], [N], [N], [E] -> [N, H] (``networks.stocks.stock_mlp_shared``)."""
    mask = stock_mask.astype(bool)
    n_valid = jnp.maximum(jnp.sum(mask), 1).astype(_F32)
    w = jnp.asarray(weights, _F32)[:, None] * n_valid
    x = jnp.concatenate([jnp.asarray(stock_features, _F32), w], axis=-1)
    return stock_mlp_shared(cfg, x, context_embedding, mask)


class FlatActor(nn.Module):
    """[N, F], [N] mask, [N] weights, [C] context -> FlatPolicy."""

    config: NetworkConfig
    concentration_init: float = 1.0
    concentration_floor: float = 0.1

    @nn.compact
    def __call__(self, stock_features: Array, stock_mask: Array, weights: Array,
                 context: Array, deterministic: bool = True) -> FlatPolicy:
        cfg = self.config
        mask = stock_mask.astype(bool)
        ctx = MLP((cfg.goal_embedding,), name="context")(jnp.asarray(context, _F32))
        h = stock_hidden(cfg, stock_features, mask, weights, ctx)
        h = mix_stocks(cfg, h, mask, deterministic)  # [N, H]
        scores = jnp.where(mask, dense(1, 0.01, name="score_head")(h)[:, 0], 0.0)
        k0 = self.concentration_init
        raw = self.param("concentration_raw",
                         nn.initializers.constant(k0 + math.log(-math.expm1(-k0))), (), _F32)
        kappa = nn.softplus(raw)
        n_valid = jnp.maximum(jnp.sum(mask), 1).astype(_F32)
        alpha = jnp.where(mask, n_valid * kappa * masked_softmax(scores, mask)
                          + self.concentration_floor, 0.0)
        mean = alpha / jnp.maximum(jnp.sum(alpha), 1e-12)
        return FlatPolicy(alpha, mean, scores, kappa)


class FlatCritic(nn.Module):
    """V(s): DeepSets over stocks. Same inputs as FlatActor -> [] float32."""

    config: NetworkConfig

    @nn.compact
    def __call__(self, stock_features: Array, stock_mask: Array, weights: Array,
                 context: Array, deterministic: bool = True) -> Array:
        del deterministic
        cfg = self.config
        mask = stock_mask.astype(bool)
        ctx = MLP((cfg.goal_embedding,), name="context")(jnp.asarray(context, _F32))
        h = stock_hidden(cfg, stock_features, mask, weights, ctx)
        pooled = jnp.concatenate([masked_mean(h, mask), masked_max(h, mask), ctx], axis=-1)
        return MLP(cfg.critic_hidden, out=1, out_gain=1.0, name="head")(pooled)[0]


class FlatActorCritic(nn.Module):
    """Actor and critic side by side (params under 'actor' and 'critic') -> (policy, value)."""

    config: NetworkConfig

    @nn.compact
    def __call__(self, stock_features: Array, stock_mask: Array, weights: Array,
                 context: Array, deterministic: bool = True) -> tuple[FlatPolicy, Array]:
        args = (stock_features, stock_mask, weights, context, deterministic)
        return (FlatActor(self.config, name="actor")(*args),
                FlatCritic(self.config, name="critic")(*args))
