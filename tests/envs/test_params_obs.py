"""EnvParams construction (host helpers, windows, errors) and the observation layouts."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout, set_goal
from hrl_sarp_jax.envs.params import NO_WEEK, make_env_params, trailing_adv, week_arrays
from hrl_sarp_jax.errors import ConfigError
from tests.envs.conftest import FS, N, S, T


def test_trailing_adv_matches_a_loop():
    rng = np.random.default_rng(0)
    close, vol = rng.uniform(1, 2, (30, 3)), rng.uniform(10, 20, (30, 3))
    valid = rng.random((30, 3)) > 0.3
    valid[:8, 0] = False
    got = trailing_adv(close, vol, valid, 5)
    for t in range(30):
        for i in range(3):
            days = [d for d in range(max(0, t - 4), t + 1) if valid[d, i]]
            want = np.mean([close[d, i] * vol[d, i] for d in days]) if days else 0.0
            assert got[t, i] == pytest.approx(want, rel=1e-6)


def test_week_arrays_by_hand():
    idx, before, longest = week_arrays(np.array([0, 0, 1, 0, 1, 1, 0], bool))
    assert idx[:3].tolist() == [2, 4, 5] and (idx[3:] == NO_WEEK).all() and idx.size == 8
    assert before.tolist() == [0, 0, 0, 1, 1, 2, 3, 3]
    assert longest == 2


def test_make_env_params_windows_and_leaves(inputs, cfg, micro_params, macro_params):
    market, _ = inputs
    p = micro_params
    assert (int(p.start_lo), int(p.start_hi), int(p.t_hi)) == (0, T - 1 - 40, T - 1)
    assert p.max_steps_in_episode == 40 and macro_params.max_steps_in_episode == 10
    assert not np.asarray(p.tradable)[:, -1].any()          # the padding slot never trades
    assert not np.asarray(p.tradable)[: T // 4, 0].any()     # nor a stock before listing
    assert p.reward.macro_w_macro.dtype == jnp.float32
    assert float(p.reward.macro_w_macro) == pytest.approx(0.4)
    # macro: the latest start is a week end with exactly 10 full weeks fitting before t_hi
    ends = np.flatnonzero(np.asarray(market.week_end))
    k = int(np.searchsorted(ends, int(macro_params.start_hi)))
    assert ends[k] == int(macro_params.start_hi) and k + 10 == np.sum(ends <= T - 1) - 1
    assert macro_params.max_week_days == int(np.diff(ends).max())
    # one compile per shape: start windows and the split end are leaves, not static
    leaves = jax.tree.leaves(p)
    assert any(x is p.start_lo for x in leaves) and any(x is p.t_hi for x in leaves)


def test_make_env_params_rejects_bad_inputs(inputs, cfg):
    market, feats = inputs
    with pytest.raises(ConfigError, match="split"):
        make_env_params(market, feats, cfg, split=(50, T))
    with pytest.raises(ConfigError, match="episode length"):
        make_env_params(market, feats, dataclasses.replace(cfg, micro_episode_days=0))
    with pytest.raises(ConfigError, match="stock"):
        make_env_params(market, feats.replace(stock=feats.stock[:, :-1]), EnvConfig())


def test_micro_obs_layout_names_the_env_observation(micro_env, micro_params):
    p = micro_params
    obs, st = micro_env.reset(jax.random.key(11), p)
    lay = micro_env.layout
    assert lay.size == N * 22 + 2 * N + 2 + S + 3 == obs.shape[0]
    v = lay.unflatten(obs)
    t = int(st.t)
    assert np.array_equal(v["stock"], p.stock_features[t])
    assert np.array_equal(v["stock_mask"], np.asarray(p.tradable[t], np.float32))
    assert np.array_equal(v["weights"], np.zeros(N)) and v["portfolio"].tolist() == [1.0, 0.0]
    assert np.array_equal(v["goal"], p.fixed_goal)
    assert np.array_equal(lay.flatten(**v), obs)
    batch = jnp.stack([obs, obs + 1.0])
    goals = jnp.arange(2 * (S + 3), dtype=jnp.float32).reshape(2, S + 3)
    new = set_goal(lay, batch, goals)
    assert np.array_equal(lay.unflatten(new)["goal"], goals)
    keep = np.ones(obs.shape[0], bool)
    keep[lay.slices["goal"]] = False
    assert np.array_equal(new[:, keep], batch[:, keep])


def test_macro_obs_layout_fills_the_drawdown(macro_env, macro_params):
    p = macro_params
    obs, st = macro_env.reset(jax.random.key(12), p)
    _, st, _, _, _, _ = macro_env.step(jax.random.key(0), st, jnp.array([0.9, 0.05, 0.05, 1, 0, 0],
                                                                        jnp.float32), p)
    obs = macro_env.get_obs(st, p)
    lay = MacroObsLayout(S, FS)
    assert lay.size == 18 + S * FS + S + S * S + S + 2 == obs.shape[0]
    v = lay.unflatten(obs)
    t = int(st.t)
    dd = 1.0 - float(st.port.value) / float(st.port.peak)
    assert v["macro"][17] == pytest.approx(dd, abs=1e-7)
    assert np.array_equal(v["macro"][:17], p.macro_features[t, :17])
    assert np.array_equal(v["sector"], p.sector_features[t])
    assert np.array_equal(v["adjacency"], p.adjacency[t])
    held = np.bincount(np.asarray(p.stock_sector), np.asarray(st.port.weights), S)
    np.testing.assert_allclose(v["sector_weights"], held, rtol=1e-6)
    assert v["portfolio"][0] == pytest.approx(1.0 - held.sum(), abs=1e-6)
    assert np.array_equal(lay.flatten(**v), obs)


def test_micro_layout_is_static_python():
    lay = MicroObsLayout(55, 11)
    assert lay.slices["goal"] == slice(55 * 22 + 110 + 2, 55 * 22 + 110 + 2 + 14)


def test_hierarchical_params_need_a_week_end_to_start_on(inputs, cfg):
    from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv

    week_end = np.asarray(inputs[0].week_end)
    day = int(np.flatnonzero(~week_end[:-1] & ~week_end[1:])[0])  # two non-week-end days
    with pytest.raises(ConfigError, match="week end"):
        HierarchicalEnv.make_params(*inputs, cfg, start=(day, day + 1))


def test_macro_obs_carries_the_level_features(inputs, cfg):
    """With ``features.macro_levels`` the feature rows are 24 wide: the Macro observation holds
    all 24 (the drawdown in slot 17, the six levels after it) and the layout finds the rest
    where it was; any other width is refused."""
    from hrl_sarp_jax.envs.macro import MacroEnv

    market, feats = inputs
    extra = jnp.asarray(np.random.default_rng(3).normal(size=(T, 6)), jnp.float32)
    wide = feats.replace(macro=jnp.concatenate([feats.macro, extra], 1),
                         macro_mask=jnp.concatenate([feats.macro_mask, extra > 0], 1))
    p = MacroEnv.make_params(market, wide, cfg)
    assert p.macro_feature_dim == 24
    env = MacroEnv(N, S, FS, return_window=cfg.return_window, macro_features=24)
    obs, st = env.reset(jax.random.key(12), p)
    lay = MacroObsLayout(S, FS, 24)
    assert obs.shape == (MacroObsLayout(S, FS).size + 6,) == (lay.size,)
    v = lay.unflatten(obs)
    t = int(st.t)
    np.testing.assert_array_equal(v["macro"][18:], extra[t])
    np.testing.assert_array_equal(v["macro"][:17], p.macro_features[t, :17])
    assert float(v["macro"][17]) == 0.0  # the drawdown at the start
    np.testing.assert_array_equal(v["sector"], p.sector_features[t])
    bad = feats.replace(macro=wide.macro[:, :20], macro_mask=wide.macro_mask[:, :20])
    with pytest.raises(ConfigError, match="macro/sector shapes"):
        MacroEnv.make_params(market, bad, cfg)
