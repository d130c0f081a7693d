"""One application of the trained actors (``agents.policies``) serves Phase 3's evaluation,
the Micro env's Macro goal source, Phase 3's frozen allocator and the backtest."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.policies import macro_action, macro_policy, micro_weights
from hrl_sarp_jax.config import NetworkConfig
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.networks.inputs import macro_inputs_from_views, micro_inputs_from_views
from hrl_sarp_jax.networks.macro import MacroActor
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training import rl_macro, rl_micro

TINY = NetworkConfig(attention_dim=8, attention_heads=1, goal_embedding=8,
                     micro_stock_hidden=(16,), critic_hidden=(16,))
S, FS, N = 4, 3, 7


def _macro_obs(layout: MacroObsLayout, available: np.ndarray) -> jax.Array:
    v = layout.unflatten(jax.random.normal(jax.random.key(1), (layout.size,)))
    return layout.flatten(v["macro"], v["sector"], jnp.asarray(available, jnp.float32),
                          jnp.abs(v["adjacency"]), jnp.full((S,), 1.0 / S), v["portfolio"])


def test_the_macro_decision_is_one_function_everywhere():
    layout = MacroObsLayout(S, FS)
    obs = _macro_obs(layout, np.array([1, 1, 0, 1]))  # sector 2 unavailable
    params = MacroActor(TINY).init(jax.random.key(0),
                                   *macro_inputs_from_views(layout.unflatten(obs)))
    action = np.asarray(macro_action(TINY, layout, params, obs))
    weights, probs = action[:S], action[S:]
    # Dirichlet mean over the available sectors; regime probabilities
    assert weights[2] == 0.0 and abs(weights.sum() - 1.0) < 1e-6 and (weights[[0, 1, 3]] > 0).all()
    assert abs(probs.sum() - 1.0) < 1e-6 and (probs > 0).all()
    pol = macro_policy(TINY, layout, params, obs)
    np.testing.assert_allclose(weights, pol.mean_weights, rtol=1e-6)
    # the Micro env's goal source (Phases 4-5) gives the same action
    goal_fn = rl_micro.macro_goal_fn(TINY, S, FS)
    np.testing.assert_allclose(goal_fn(params, obs), action, rtol=1e-6, atol=1e-7)
    # Phase 3's deterministic evaluation: the same weights with the argmax regime one-hot
    ac_params = {"params": {"actor": params["params"]}}
    det = np.asarray(rl_macro._mean_action(TINY, layout, ac_params, obs[None]))
    np.testing.assert_allclose(det[:S], weights, rtol=1e-6, atol=1e-7)
    assert det[S:].tolist() == np.eye(3)[int(np.argmax(probs))].tolist()


def test_the_micro_weights_are_one_function_everywhere():
    layout = MicroObsLayout(N, S)
    sector = jnp.asarray([0, 0, 1, 1, 2, 3, 3], jnp.int32)
    v = layout.unflatten(jax.random.normal(jax.random.key(2), (layout.size,)))
    mask = jnp.asarray([1, 1, 1, 0, 1, 1, 1], jnp.float32)  # stock 3 not tradable
    goal = jnp.asarray([0.4, 0.3, 0.2, 0.1, 0.0, 1.0, 0.0], jnp.float32)
    obs = layout.flatten(v["stock"], mask, jnp.full((N,), 1.0 / N), v["portfolio"], goal)
    params = MicroActor(TINY).init(jax.random.key(0),
                                   micro_inputs_from_views(layout.unflatten(obs), sector),
                                   goal, mask > 0)
    w = np.asarray(micro_weights(TINY, layout, params, sector, obs))
    assert w[3] == 0.0 and abs(w.sum() - 1.0) < 1e-5
    # Phase 3's frozen allocator inside MacroEnv is the same function
    allocate = rl_macro.micro_allocator(TINY, N, S)
    np.testing.assert_allclose(allocate({"actor": params, "stock_sector": sector}, obs), w,
                               rtol=1e-6, atol=1e-7)
