"""Shared env-test inputs: one small market (T=200, N=8 with one padding slot, S=3)."""

from __future__ import annotations

import dataclasses

import pytest

from hrl_sarp_jax.config import CostConfig, EnvConfig, RiskConfig
from tests.envs.make_inputs import make_inputs

T, N, S, FS = 200, 8, 3, 4


@pytest.fixture(scope="session")
def inputs():
    return make_inputs(num_days=T, num_stocks=N, num_sectors=S, sector_features=FS, seed=0)


@pytest.fixture(scope="session")
def cfg():
    """Every accounting branch switched on: capped brokerage, impact, de-risking with a timed
    re-risk, CVaR, events, a partial goal step and a partial goal lock."""
    base = EnvConfig(micro_episode_days=40, macro_episode_weeks=10, goal_step=0.5,
                     goal_lock=0.5)
    return dataclasses.replace(
        base,
        cost=CostConfig(brokerage_pct=0.0003, brokerage_cap=20.0, impact_coef=0.1),
        risk=RiskConfig(derisk_drawdown=0.03, rerisk_drawdown=0.015, derisked_exposure=0.5,
                        cvar_budget=0.02, event_reduction=0.5, rerisk_days=5),
    )


def make_rollout(env, params, length: int):
    """jit(vmap(one env: reset, then ``length`` gymnax ``env.step`` calls with auto-reset)).

    Returns f(keys [E], actions [E, L, ...]) -> (obs0 [E, ...], start0 [E], per-step dict [E, L]).
    """
    import jax

    def one(key, actions):
        k_reset, k_steps = jax.random.split(key)
        obs0, st0 = env.reset(k_reset, params)

        def body(carry, x):
            obs, st = carry
            k, a = x
            obs2, st2, r, term, trunc, info = env.step(k, st, a, params)
            out = {"obs": obs, "next_obs": obs2, "final": info["final_observation"], "reward": r,
                   "terminated": term, "truncated": trunc, "start": st2.start, "t": st2.t,
                   "time": st2.time, "info": info}
            return (obs2, st2), out

        keys = jax.random.split(k_steps, length)
        _, out = jax.lax.scan(body, (obs0, st0), (keys, actions))
        return obs0, st0.start, out

    return jax.jit(jax.vmap(one))


@pytest.fixture(scope="session")
def micro_params(inputs, cfg):
    from hrl_sarp_jax.envs.micro import MicroEnv

    return MicroEnv.make_params(*inputs, cfg)


@pytest.fixture(scope="session")
def macro_params(inputs, cfg):
    from hrl_sarp_jax.envs.macro import MacroEnv

    return MacroEnv.make_params(*inputs, cfg)


@pytest.fixture(scope="session")
def micro_env(cfg):
    from hrl_sarp_jax.envs.micro import MicroEnv

    return MicroEnv(N, S, return_window=cfg.return_window)


@pytest.fixture(scope="session")
def macro_env(cfg):
    from hrl_sarp_jax.envs.macro import MacroEnv

    return MacroEnv(N, S, FS, return_window=cfg.return_window)


@pytest.fixture(scope="session")
def hier_env(cfg):
    from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv

    return HierarchicalEnv(N, S, FS, return_window=cfg.return_window)
