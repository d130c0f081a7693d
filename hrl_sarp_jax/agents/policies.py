"""The trained actors applied to flat env observations, written once for training, the
backtest and the goal sources: the Macro's policy and deterministic action, the Micro's stock
weights. (Explanations differentiate through ``networks.inputs`` with some inputs replaced, so
they call the actors on views directly.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from hrl_sarp_jax.config import NetworkConfig
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.networks.inputs import macro_inputs_from_views, micro_inputs_from_views
from hrl_sarp_jax.networks.macro import MacroActor, MacroPolicy
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.types import Array, Params

_F32 = jnp.float32


def macro_policy(config: NetworkConfig, layout: MacroObsLayout, params: Params, obs: Array
                 ) -> MacroPolicy:
    """MacroActor ``params``' policy for one flat MacroEnv observation obs [D]."""
    return MacroActor(config).apply(params, *macro_inputs_from_views(layout.unflatten(obs)))


def macro_action(config: NetworkConfig, layout: MacroObsLayout, params: Params, obs: Array
                 ) -> Array:
    """The Macro's deterministic action [S+3] for obs [D]: Dirichlet-mean sector weights ⊕
    regime probabilities (the env projects the weights and one-hots the regime argmax)."""
    pol = macro_policy(config, layout, params, obs)
    return jnp.concatenate([pol.mean_weights, jax.nn.softmax(pol.regime_logits).astype(_F32)])


def micro_weights(config: NetworkConfig, layout: MicroObsLayout, params: Params,
                  stock_sector: Array, obs: Array) -> Array:
    """MicroActor ``params``' stock weights [N] for one flat MicroEnv observation obs [D]
    (``stock_sector`` [N]: the sector map is not part of the observation)."""
    views = layout.unflatten(obs)
    x = micro_inputs_from_views(views, stock_sector)
    return MicroActor(config).apply(params, x, views["goal"], views["stock_mask"] > 0).weights
