"""Masked multi-head attention over a set (original §4.1) for one example.

Inputs are a set x [L, D] with a mask [L] (False = padding). Masked keys get exactly zero
attention, masked rows output 0, and an all-masked set gives zeros, never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrl_sarp_jax.networks.common import dense, masked_mean, masked_softmax, orthogonal
from hrl_sarp_jax.types import Array


def _stacked_orthogonal(blocks: int, gain: float) -> Callable[..., Array]:
    """Kernel init [D, blocks·n]: ``blocks`` independent orthogonal(gain) [D, n] matrices side by
    side, so a fused projection starts like separate ones (one orthogonal [D, 3n] would shrink
    each block's singular values by √3)."""

    def init(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        width = shape[-1] // blocks
        keys = jax.random.split(key, blocks)
        return jnp.concatenate([orthogonal(gain)(k, (*shape[:-1], width), dtype) for k in keys],
                               axis=-1)

    return init


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention: Q, K, V = Dense(dim) (one fused 'qkv' kernel; biases on Q and V
    only; split into ``heads``), softmax(QKᵀ/√d) over valid keys, dropout on the weights, output Dense back to
    the input width D.

    [L, D], [L] -> [L, D]; rows at masked positions are 0.
    Projections use orthogonal gain 1 (the original's √2 doubles the QKᵀ logits at init).
    """

    dim: int
    heads: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool = True) -> Array:
        if self.dim % self.heads:
            raise ValueError(
                f"attention dim ({self.dim}) must be divisible by heads ({self.heads})"
            )
        length, width = x.shape
        head_dim = self.dim // self.heads
        mask = mask.astype(bool)
        x = jnp.where(mask[:, None], x, 0.0)
        # One [D, 3·dim] projection instead of three: a third of the small matmul calls, which
        # dominate on CPU at these sizes (docs/benchmarks.md). No key bias:
        # q·b_k is the same for every key, so softmax ignores it (its gradient is rounding noise).
        qkv = nn.Dense(3 * self.dim, use_bias=False, kernel_init=_stacked_orthogonal(3, 1.0),
                       param_dtype=jnp.float32, name="qkv")(x)
        qkv = qkv.reshape(length, 3, self.heads, head_dim)
        bias_q = self.param("query_bias", nn.initializers.zeros, (self.dim,), jnp.float32)
        bias_v = self.param("value_bias", nn.initializers.zeros, (self.dim,), jnp.float32)
        q = qkv[:, 0] + bias_q.reshape(self.heads, head_dim)  # [L, heads, d]
        k = qkv[:, 1]
        v = qkv[:, 2] + bias_v.reshape(self.heads, head_dim)
        logits = jnp.einsum("qhd,khd->hqk", q, k) / jnp.sqrt(jnp.float32(head_dim))
        weights = masked_softmax(logits, mask[None, None, :])
        weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        out = jnp.einsum("hqk,khd->qhd", weights, v).reshape(length, self.dim)
        out = dense(width, 1.0, name="out")(out)
        return jnp.where(mask[:, None], out, 0.0)


class SetAttentionPool(nn.Module):
    """Original §4.1 pooler: x' = LayerNorm(x + MHA(x)), then the masked mean over the set.

    [L, D], [L] -> [D]; zeros for an all-masked set.
    """

    dim: int
    heads: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool = True) -> Array:
        mask = mask.astype(bool)
        x = jnp.where(mask[:, None], x, 0.0)
        a = MaskedSelfAttention(self.dim, self.heads, self.dropout, name="attention")(
            x, mask, deterministic
        )
        h = nn.LayerNorm(param_dtype=jnp.float32, name="norm")(x + a)
        return masked_mean(h, mask)
