"""Per-stock layers shared by the Micro actor/critics and the flat baseline, built from
``NetworkConfig``'s ``stock_*`` options (activation, LayerNorm, how stocks see each other).

Called inside a Flax ``@nn.compact`` method: the submodules they create belong to the caller,
under the names given here ('stock_mlp', 'attention' / 'deepsets', 'norm'), so checkpoints of
the original layout ('attention', LayerNorm, GELU) restore unchanged.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from hrl_sarp_jax.config import NetworkConfig
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.networks.attention import MaskedSelfAttention
from hrl_sarp_jax.networks.common import ACTIVATIONS, MLP, SQRT2, dense, masked_mean, orthogonal
from hrl_sarp_jax.networks.macro import MACRO_ALLOCATIONS
from hrl_sarp_jax.types import Array

STOCK_MIXERS = ("attention", "deepsets")


def check_network_config(net: NetworkConfig) -> None:
    """ConfigError naming the key for a ``networks.stock_*`` (or attention) value no network
    can build."""
    if net.stock_activation not in ACTIVATIONS:
        raise ConfigError(f"networks.stock_activation = {net.stock_activation!r} is not one of "
                          f"{', '.join(ACTIVATIONS)}")
    if net.stock_mixer not in STOCK_MIXERS:
        raise ConfigError(f"networks.stock_mixer = {net.stock_mixer!r} is not one of "
                          f"{', '.join(STOCK_MIXERS)}")
    if net.macro_allocation not in MACRO_ALLOCATIONS:
        raise ConfigError(f"networks.macro_allocation = {net.macro_allocation!r} is not one of "
                          f"{', '.join(MACRO_ALLOCATIONS)}")
    if net.attention_dim % net.attention_heads:  # the Macro's sector pool attends too
        raise ConfigError(f"networks.attention_dim = {net.attention_dim} must be divisible by "
                          f"networks.attention_heads = {net.attention_heads}")


def stock_mlp(cfg: NetworkConfig, x, name: str = "stock_mlp"):
    """MLP(cfg.micro_stock_hidden) applied to every stock: [N, F] -> [N, H]."""
    return MLP(cfg.micro_stock_hidden, norm=cfg.stock_norm, activation=cfg.stock_activation,
               name=name)(x)


def stock_mlp_shared(cfg: NetworkConfig, per_stock: Array, shared: Array, mask: Array,
                     name: str = "stock_mlp") -> Array:
    """``stock_mlp`` on every stock's row ``per_stock[i] ⊕ shared`` (the example's goal or
    context embedding, the same for every stock), masked rows 0: [N, F], [E], [N] -> [N, H].

    ``cfg.stock_shared_once`` false builds the [N, F + E] rows and multiplies them as they are;
    true computes the shared part of the first layer once per example, ``x W[:F] + (e W[F:])``,
    with the same parameters (names, shapes, initial values): the same function up to float
    rounding, with (F + E) / F times fewer first-layer multiplies per stock.
    """
    if not cfg.stock_shared_once:
        n = per_stock.shape[0]
        x = jnp.concatenate([per_stock, jnp.broadcast_to(shared, (n, shared.shape[-1]))],
                            axis=-1)
        return stock_mlp(cfg, jnp.where(mask[:, None], x, 0.0), name=name)
    return SharedInputMLP(tuple(cfg.micro_stock_hidden), norm=cfg.stock_norm,
                          activation=cfg.stock_activation, name=name)(per_stock, shared, mask)


class _SharedInputDense(nn.Module):
    """The first Dense of ``SharedInputMLP``: kernel [F + E, H] and bias [H] as ``dense``'s
    (orthogonal √2, zeros); [N, F], [E], [N] -> where(mask, x W[:F] + e W[F:], 0) + b."""

    features: int

    @nn.compact
    def __call__(self, per_stock: Array, shared: Array, mask: Array) -> Array:
        f = per_stock.shape[-1]
        kernel = self.param("kernel", orthogonal(SQRT2), (f + shared.shape[-1], self.features),
                            jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        y = per_stock @ kernel[:f] + (shared @ kernel[f:])[None, :]
        return jnp.where(mask[:, None], y, 0.0) + bias


class SharedInputMLP(nn.Module):
    """``MLP(hidden, norm, activation)`` on rows ``per_stock[i] ⊕ shared`` (masked rows 0)
    with the shared input's share of the first layer computed once; its submodules carry
    ``MLP``'s names (Dense_k, LayerNorm_k), so parameters move between the two unchanged."""

    hidden: tuple[int, ...]
    norm: bool = True
    activation: str = "gelu"

    @nn.compact
    def __call__(self, per_stock: Array, shared: Array, mask: Array) -> Array:
        act = ACTIVATIONS[self.activation]
        x = _SharedInputDense(self.hidden[0], name="Dense_0")(
            jnp.asarray(per_stock, jnp.float32), jnp.asarray(shared, jnp.float32), mask)
        for k, width in enumerate(self.hidden):
            if k:
                x = dense(width, name=f"Dense_{k}")(x)
            x = act(nn.LayerNorm(param_dtype=jnp.float32, name=f"LayerNorm_{k}")(x)
                    if self.norm else x)
        return x


def mix_stocks(cfg: NetworkConfig, h, mask, deterministic: bool):
    """Let each stock see the others: [N, H], [N] bool -> [N, H] (masked rows are 0 before the
    final LayerNorm, as the attention path always was).

    attention: LayerNorm(h + MHA(h)).  deepsets: h + act(Dense(h ⊕ masked_mean(h))), then
    LayerNorm when ``cfg.stock_norm``.
    """
    if cfg.stock_mixer == "attention":
        mixed = MaskedSelfAttention(cfg.attention_dim, cfg.attention_heads, cfg.dropout,
                                    name="attention")(h, mask, deterministic)
    elif cfg.stock_mixer == "deepsets":
        n, width = h.shape
        pooled = jnp.broadcast_to(masked_mean(h, mask), (n, width))
        z = dense(width, name="deepsets")(jnp.concatenate([h, pooled], axis=-1))
        mixed = jnp.where(mask[:, None], ACTIVATIONS[cfg.stock_activation](z), 0.0)
    else:
        check_network_config(cfg)  # raises the one-line error naming the key
        raise AssertionError(cfg.stock_mixer)
    h = h + mixed
    return nn.LayerNorm(param_dtype=jnp.float32, name="norm")(h) if cfg.stock_norm else h
