"""Environment throughput: the three gymnax envs under jit(scan(vmap(env.step))) vs NumPy.

# HOST ONLY (not jittable)
The market is a seeded synthetic panel built here (T=2000 weekdays, N=55 stocks x 22 features,
S=11 sectors): a benchmark fixture, not a model of any market. The policy is trivial (equal
weight over the tradable stocks read from the observation; a fixed macro action) so the figures
measure the env. The time loop is a ``lax.scan`` inside one jit; gymnax's ``env.step`` (with
its auto-reset and ``final_observation``) runs every step; observations are produced and fed to
the policy. Compile time is AOT ``lower().compile()``; steps_per_s is the median of ``repeats``
timed runs of the compiled rollout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.data.calendar import week_end_flags
from hrl_sarp_jax.data.market import MarketArrays
from hrl_sarp_jax.envs import reference as ref
from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv
from hrl_sarp_jax.envs.macro import MacroEnv
from hrl_sarp_jax.envs.micro import MicroEnv
from hrl_sarp_jax.features.featureset import FeatureSet

T, N, S, F_S = 2000, 55, 11, 8
BATCHES = (1, 64, 1024, 4096)
ENV_STEPS = {1: 2_000, 64: 64_000, 1024: 204_800, 4096: 409_600}  # per timed run
NUMPY_STEPS = 300


def synthetic_inputs(seed: int = 0) -> tuple[MarketArrays, FeatureSet]:
    """A seeded T x N panel with sector structure, circuit locks and events (bench fixture)."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    dates = pd.bdate_range("2015-01-05", periods=T).values.astype("datetime64[D]")
    sector = (np.arange(N) % S).astype(np.int32)
    factor = rng.normal(0, 0.01, (T, S))
    rets = (0.0003 + factor[:, sector] + rng.normal(0, 0.012, (T, N))).astype(f32)
    rets[0] = 0.0
    close = (100 * np.cumprod(1 + rets, 0)).astype(f32)
    lock = np.where(rng.random((T, N)) < 0.01, rng.choice([-1, 1], (T, N)), 0).astype(np.int8)
    onehot = (sector[:, None] == np.arange(S)).astype(f32)
    sec = (rets @ onehot / onehot.sum(0)).astype(f32)
    bench = rets.mean(1).astype(f32)
    ones, zeros = np.ones((T, N), bool), np.zeros((T, N), f32)
    market = MarketArrays(
        open=close, high=close, low=close, close=close,
        volume=rng.uniform(1e5, 1e6, (T, N)).astype(f32), returns=rets, market_cap=zeros,
        delivery_pct=zeros, circuit_lock=lock, stock_mask=ones, stock_sector=sector,
        stock_valid=np.ones(N, bool), has_ohlc=np.ones(N, bool), market_cap_mask=~ones,
        delivery_mask=~ones, sector_returns=sec, sector_close=np.cumprod(1 + sec, 0).astype(f32),
        sector_mask=np.ones((T, S), bool), sector_valid=np.ones(S, bool),
        benchmark_close=np.cumprod(1 + bench).astype(f32), benchmark_returns=bench,
        macro=np.zeros((T, 1), f32), macro_mask=np.ones((T, 1), bool),
        fundamentals=np.zeros((T, N, 1), f32), fundamentals_mask=np.zeros((T, N, 1), bool),
        sentiment=zeros, sentiment_mask=~ones, week_end=week_end_flags(dates),
        latent_regime=np.full(T, -1, np.int32),
    )
    macro = rng.normal(size=(T, 18)).astype(f32)
    macro[:, 14] = rng.random(T) < 0.05
    macro[:, 17] = 0.0
    feats = FeatureSet(
        stock=rng.normal(size=(T, N, 22)).astype(f32), stock_mask=np.ones((T, N, 22), bool),
        macro=macro, macro_mask=np.ones((T, 18), bool),
        sector=rng.normal(size=(T, S, F_S)).astype(f32), sector_mask=np.ones((T, S), bool),
        adjacency=np.broadcast_to(np.eye(S, dtype=f32), (T, S, S)).copy(),
        regime_label=rng.integers(0, 3, T).astype(np.int32),
        regime_rule=rng.integers(0, 3, T).astype(np.int32),
    )
    return market, feats


MACRO_ACTION = np.concatenate([np.linspace(1.0, 2.0, S), [0.2, 0.1, 0.7]]).astype(np.float32)


def _policy(kind: str, obs):
    """Equal weight over tradable stocks (read from the obs) and/or the fixed macro action."""
    if kind == "macro":
        return jnp.asarray(MACRO_ACTION)
    micro = obs if kind == "micro" else obs["micro"]
    mask = micro[N * 22: N * 23]
    w = mask / jnp.maximum(jnp.sum(mask), 1.0)
    return w if kind == "micro" else {"macro": jnp.asarray(MACRO_ACTION), "micro": w}


def _rollout(env, params, kind: str, batch: int, length: int):
    def run(key):
        keys = jax.random.split(key, batch)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(carry, _):
            obs, state, key = carry
            key, k_step = jax.random.split(key)
            action = jax.vmap(lambda o: _policy(kind, o))(obs)
            obs, state, r, _term, _trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, batch), state, action, params)
            # every observation element is read, so none of it can be dead-code eliminated
            seen = sum(jnp.sum(x.astype(jnp.float32)) for x in jax.tree.leaves(obs))
            return (obs, state, key), jnp.sum(r) + 1e-9 * seen

        (_, state, _), out = jax.lax.scan(body, (obs, state, key), None, length=length)
        return jnp.sum(out), state

    return jax.jit(run)


def _numpy_steps_per_s(kind: str, params_day, params_week, repeats: int) -> float:
    rates = []
    for rep in range(repeats + 1):  # the first pass warms up the host-jitted projection
        if kind == "micro":
            env = ref.RefMicroEnv(params_day)
            obs = env.reset(int(params_day.start_lo), np.asarray(params_day.fixed_goal))
        elif kind == "macro":
            env = ref.RefMacroEnv(params_week)
            obs = env.reset(int(np.flatnonzero(np.asarray(params_week.week_end))[0]))
        else:
            env = ref.RefHierarchicalEnv(params_day)
            obs = env.reset(int(np.flatnonzero(np.asarray(params_day.week_end))[0]))
        steps = NUMPY_STEPS // (5 if kind == "macro" else 1) if rep else 2
        start = time.perf_counter()
        for _ in range(steps):
            micro = obs if kind == "micro" else obs["micro"] if kind == "hierarchical" else None
            if micro is not None:
                mask = micro[N * 22: N * 23]
                w = mask / max(mask.sum(), 1.0)
            if kind == "micro":
                obs = env.step(w)[0]
            elif kind == "macro":
                obs = env.step(MACRO_ACTION)[0]
            else:
                obs = env.step(MACRO_ACTION, w)[0]
        if rep:
            rates.append(steps / (time.perf_counter() - start))
    return float(np.median(rates))


def bench_env(repeats: int = 3, batches: tuple[int, ...] = BATCHES,
              seed: int = 0) -> Iterator[dict]:
    """Yield {env, impl, batch, steps_per_s, compile_s} for each env x impl x batch."""
    market, feats = synthetic_inputs(seed)
    root = jax.random.key(seed)
    cfg = EnvConfig()
    p_day = MicroEnv.make_params(market, feats, cfg)
    p_week = MacroEnv.make_params(market, feats, cfg)
    envs = {"micro": (MicroEnv(N, S), p_day),
            "macro": (MacroEnv(N, S, F_S), p_week),
            "hierarchical": (HierarchicalEnv(N, S, F_S), p_day)}
    for kind, (env, params) in envs.items():
        for batch in batches:
            length = max(ENV_STEPS[batch] // batch // (5 if kind == "macro" else 1), 10)
            fn = _rollout(env, params, kind, batch, length)
            key = jax.random.fold_in(root, batch)
            t0 = time.perf_counter()
            compiled = fn.lower(key).compile()
            compile_s = time.perf_counter() - t0
            jax.block_until_ready(compiled(key))  # warm-up
            times = []
            for i in range(repeats):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(jax.random.fold_in(key, i + 1)))
                times.append(time.perf_counter() - t0)
            yield {"env": kind, "impl": "jax", "batch": batch,
                   "steps_per_s": batch * length / float(np.median(times)),
                   "compile_s": compile_s}
        yield {"env": kind, "impl": "numpy_reference", "batch": 1,
               "steps_per_s": _numpy_steps_per_s(kind, p_day, p_week, repeats), "compile_s": 0.0}


if __name__ == "__main__":
    import json

    for rec in bench_env():
        print(json.dumps(rec), flush=True)
