"""Masked multi-head attention over a set (original §4.1) for one example.

Inputs are a set x [L, D] with a mask [L] (False = padding). Masked keys get exactly zero
attention, masked rows output 0, and an all-masked set gives zeros, never NaN.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from hrl_sarp_jax.networks.common import dense, masked_mean, masked_softmax
from hrl_sarp_jax.types import Array


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention: Q, K, V = Dense(dim) (split into ``heads``), softmax(QKᵀ/√d)
    over valid keys, dropout on the weights, output Dense back to the input width D.

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

        def split(t: Array) -> Array:
            return t.reshape(length, self.heads, head_dim).transpose(1, 0, 2)  # [heads, L, d]

        q = split(dense(self.dim, 1.0, name="query")(x))
        k = split(dense(self.dim, 1.0, name="key")(x))
        v = split(dense(self.dim, 1.0, name="value")(x))
        logits = jnp.einsum("hqd,hkd->hqk", q, k) / jnp.sqrt(jnp.float32(head_dim))
        weights = masked_softmax(logits, mask[None, None, :])
        weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        out = jnp.einsum("hqk,hkd->qhd", weights, v).reshape(length, self.dim)
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
