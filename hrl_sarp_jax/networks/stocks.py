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
from hrl_sarp_jax.networks.common import ACTIVATIONS, MLP, dense, masked_mean

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
    if net.attention_dim % net.attention_heads:  # the Macro's sector pool attends too
        raise ConfigError(f"networks.attention_dim = {net.attention_dim} must be divisible by "
                          f"networks.attention_heads = {net.attention_heads}")


def stock_mlp(cfg: NetworkConfig, x, name: str = "stock_mlp"):
    """MLP(cfg.micro_stock_hidden) applied to every stock: [N, F] -> [N, H]."""
    return MLP(cfg.micro_stock_hidden, norm=cfg.stock_norm, activation=cfg.stock_activation,
               name=name)(x)


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
