"""networks.inputs: hand-computed glue values, and agreement with the envs' flat observations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.networks.inputs import (
    DRAWDOWN_SLOT,
    macro_inputs,
    macro_inputs_from_views,
    micro_inputs,
    micro_inputs_from_views,
)


def _macro_args(s=4, f=14):
    rng = np.random.default_rng(0)
    macro = rng.normal(size=18).astype(np.float32)
    sector = rng.normal(size=(s, f)).astype(np.float32)
    sector[3] = 0.0  # sector 3 unavailable (features are 0 where masked)
    adj = rng.uniform(size=(s, s)).astype(np.float32)
    mask = np.array([True, True, True, False])
    weights = np.array([0.5, 0.3, 0.18, 0.0], np.float32)
    return macro, sector, adj, mask, weights


def test_macro_inputs_hand_values():
    macro, sector, adj, mask, weights = _macro_args()
    inp = macro_inputs(macro, sector, adj, mask, weights, 0.02, 0.07)
    assert DRAWDOWN_SLOT == 17
    np.testing.assert_array_equal(inp.macro[:17], macro[:17])
    assert float(inp.macro[17]) == np.float32(0.07)
    assert inp.sector_features.shape == (4, 15)
    np.testing.assert_array_equal(inp.sector_features[:, :14], sector)
    # current weight as a multiple of the equal share: 3 valid sectors -> w * 3
    np.testing.assert_allclose(inp.sector_features[:, 14], [1.5, 0.9, 0.54, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(inp.sector_mask, mask)
    np.testing.assert_allclose(inp.portfolio, [0.02, 0.07])


def test_macro_inputs_are_permutation_equivariant():
    macro, sector, adj, mask, weights = _macro_args()
    perm = np.array([2, 0, 3, 1])
    a = macro_inputs(macro, sector, adj, mask, weights, 0.02, 0.0)
    b = macro_inputs(macro, sector[perm], adj[perm][:, perm], mask[perm], weights[perm], 0.02, 0.0)
    np.testing.assert_array_equal(a.sector_features[perm], b.sector_features)
    np.testing.assert_array_equal(a.adjacency[perm][:, perm], b.adjacency)


def test_micro_inputs_append_own_sector_goal_and_weight():
    feats = np.arange(5 * 22, dtype=np.float32).reshape(5, 22)
    mask = np.array([True, True, True, True, False])  # stock 4 is padding
    sector = np.array([0, 0, 1, 2, 0])
    goal = np.array([0.6, 0.3, 0.1, 1.0, 0.0, 0.0], np.float32)  # S = 3, bull
    weights = np.array([0.2, 0.2, 0.3, 0.28, 0.0], np.float32)
    x = micro_inputs(feats, mask, sector, goal, weights)
    assert x.shape == (5, 24)
    np.testing.assert_array_equal(x[:4, :22], feats[:4])
    # 3 active sectors: goal share = g_s * 3; 4 valid stocks: weight * 4
    np.testing.assert_allclose(x[:4, 22], [1.8, 1.8, 0.9, 0.3], rtol=1e-6)
    np.testing.assert_allclose(x[:4, 23], [0.8, 0.8, 1.2, 1.12], rtol=1e-6)
    np.testing.assert_array_equal(x[4], 0.0)


def test_from_views_match_the_env_observation_layouts():
    macro, sector, adj, mask, weights = _macro_args()
    layout = MacroObsLayout(num_sectors=4, sector_features=14)
    obs = layout.flatten(np.r_[macro[:17], 0.05], sector, mask, adj, weights,
                         np.array([0.02, 0.05]))
    got = macro_inputs_from_views(layout.unflatten(obs))
    want = macro_inputs(macro, sector, adj, mask, weights, 0.02, 0.05)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-6)

    rng = np.random.default_rng(1)
    n, s = 6, 3
    stock = rng.normal(size=(n, 22)).astype(np.float32)
    smask = np.array([1, 1, 0, 1, 1, 1], np.float32)
    sec = np.array([0, 0, 1, 1, 2, 2])
    w = rng.uniform(size=n).astype(np.float32) / 6
    goal = np.array([0.2, 0.5, 0.3, 0, 1, 0], np.float32)
    mlayout = MicroObsLayout(num_stocks=n, num_sectors=s)
    mobs = mlayout.flatten(stock, smask, w, np.array([0.1, 0.0]), goal)
    batched = jnp.stack([mobs, mobs])
    views = mlayout.unflatten(batched)
    got = jax.vmap(lambda v: micro_inputs_from_views(v, sec))(views)
    want = micro_inputs(stock, smask > 0, sec, goal, w)
    np.testing.assert_allclose(got[1], want, rtol=1e-6)
