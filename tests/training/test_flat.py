"""The flat RL baseline (PPO over stock weights in FlatEnv): a learning probe, the network's
equivariance and initial equal weight, truncation bootstrap, seeds, deterministic evaluation,
the host loop (budget, exact resume, summary) and the backtest of the trained policy."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.agents.ppo import PPOHParams
from hrl_sarp_jax.checkpointing import PhaseCheckpointer, create_run, read_phase_summary
from hrl_sarp_jax.config import (
    Config,
    ConstraintConfig,
    EnvConfig,
    NetworkConfig,
    PPOConfig,
    RiskConfig,
    TrainConfig,
)
from hrl_sarp_jax.data.market import MarketMeta
from hrl_sarp_jax.envs.flat import FlatEnv
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.errors import CheckpointError
from hrl_sarp_jax.evaluation import flat_policy as fp
from hrl_sarp_jax.evaluation.backtest import rebalance_mask, run_backtest
from hrl_sarp_jax.networks.flat import FlatActor
from hrl_sarp_jax.training import flat as fl
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training.ppo_engine import with_schedule
from tests.agents._compile import FAST_COMPILE, compile_fast
from tests.envs.make_inputs import make_dates, make_inputs

T, N, S, FS = 200, 6, 2, 4   # N = 6 with one padding slot (stock 5)
GOOD = 1                     # the stock with the persistent positive drift
TINY = NetworkConfig(attention_dim=8, attention_heads=2, goal_embedding=8,
                     micro_stock_hidden=(16,), critic_hidden=(16,))
# Everything in one stock must be reachable (no stock / sector caps, no cash floor, no position
# limit) and the risk manager must not scale the book (no de-risking, no event cuts).
PROBE_ENV = EnvConfig(
    macro_episode_weeks=8,
    constraints=ConstraintConfig(max_stock_weight=1.0, max_sector_weight=1.0, min_cash=0.0,
                                 rebalance_threshold=0.0,
                                 max_positions=0),
    risk=RiskConfig(derisk_drawdown=1.0, rerisk_drawdown=0.99, event_reduction=0.0),
)


def probe_market(seed: int = 0):
    """Stock GOOD earns +0.3%/day, stocks 0, 2 nothing, stocks 3, 4 lose 0.3%/day, noise
    0.1%/day; stock feature 0 = 1 on the good stock and every other stock or macro feature 0
    (the actor is permutation-equivariant, so stocks are told apart by their features; noise
    inputs would only slow the probe down); no circuit locks or event days."""
    market, feats = make_inputs(num_days=T, num_stocks=N, num_sectors=S, sector_features=FS,
                                seed=seed)
    rng = np.random.default_rng(seed + 1)
    valid = np.asarray(market.stock_valid)
    drift = np.array([0.0, 0.003, 0.0, -0.003, -0.003, 0.0], np.float32)
    mask = np.broadcast_to(valid, (T, N)).copy()
    rets = np.where(mask, drift + 0.001 * rng.standard_normal((T, N)), 0.0).astype(np.float32)
    rets[0] = 0.0
    close = (100.0 * np.cumprod(1.0 + rets, axis=0)).astype(np.float32)
    sector = np.asarray(market.stock_sector)
    onehot = (sector[:, None] == np.arange(S)[None]).astype(np.float32)
    cnt = mask.astype(np.float32) @ onehot
    sec = ((rets * mask) @ onehot / np.maximum(cnt, 1.0)).astype(np.float32)
    bench = rets[:, valid].mean(1).astype(np.float32)
    market = market.replace(
        returns=rets, close=close, open=close, high=close * 1.01, low=close * 0.99,
        stock_mask=mask, circuit_lock=np.zeros((T, N), np.int8), sector_returns=sec,
        sector_mask=cnt > 0, benchmark_returns=bench,
        benchmark_close=np.cumprod(1.0 + bench).astype(np.float32))
    stock = np.zeros_like(np.asarray(feats.stock))
    stock[:, GOOD, 0] = 1.0
    stock *= mask[..., None]
    feats = feats.replace(stock=stock, stock_mask=np.broadcast_to(mask[..., None], (T, N, 22)),
                          macro=np.zeros((T, 18), np.float32), sector_mask=cnt > 0)
    return market, feats


def hparams(lr=3e-3, clip=0.2, entropy=0.0, value=0.5, gamma=0.9, lam=0.9, max_norm=0.5,
            spec=None):
    """PPOHParams; with ``spec`` the program's learning-rate schedule (``with_schedule``),
    which a training chunk needs."""
    hp = PPOHParams(*(jnp.float32(x) for x in (lr, clip, entropy, value, gamma, lam, max_norm)))
    return hp if spec is None else with_schedule(hp, spec)


def setup(updates: int, *, num_envs: int = 8, rollout_len: int = 8, env_cfg=PROBE_ENV,
          split=(0, 129)):
    market, feats = probe_market()
    env = FlatEnv(N, S, return_window=20)
    params = FlatEnv.make_params(market, feats, env_cfg, split=split)
    spec = fl.FlatSpec(num_envs=num_envs, rollout_len=rollout_len, epochs=4, num_minibatches=2,
                       updates_per_chunk=updates, total_updates=updates, warmup_updates=2)
    return market, feats, env, params, fl.make_flat(env, TINY, spec)


def weights_of(prog, params, obs):
    return np.asarray(jax.jit(lambda p, o: fl.deterministic_weights(
        TINY, prog.env.layout, p, o))(params, obs))


def reset_obs(env, params, days):
    def one(d):
        return env.reset(jax.random.key(0), params.replace(start_lo=d, start_hi=d))[0]
    return jax.jit(jax.vmap(one))(jnp.asarray(days, jnp.int32))


# --------------------------------------------------------------------------- network


def test_actor_starts_at_equal_weight_and_is_permutation_equivariant():
    actor = FlatActor(TINY)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 22)).astype(np.float32)
    mask = np.array([1, 1, 1, 0, 1, 1], bool)
    w = rng.dirichlet(np.ones(N)).astype(np.float32) * mask
    ctx = rng.standard_normal(20).astype(np.float32)
    params = actor.init(jax.random.key(0), x, mask, w, ctx)
    pol = actor.apply(params, x, mask, w, ctx)
    # scores start near 0 (head gain 0.01): alpha = kappa + floor = 1.1 on valid stocks
    np.testing.assert_allclose(float(pol.total_concentration), 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(pol.concentration)[mask], 1.1, rtol=2e-2)
    assert float(pol.concentration[3]) == 0.0 and float(pol.mean_weights[3]) == 0.0
    np.testing.assert_allclose(np.asarray(pol.mean_weights)[mask], 0.2, rtol=2e-2)
    # permuting the stocks permutes the policy
    perm = np.array([4, 2, 0, 5, 3, 1])
    pol_p = actor.apply(params, x[perm], mask[perm], w[perm], ctx)
    np.testing.assert_allclose(pol_p.concentration, np.asarray(pol.concentration)[perm],
                               rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- learning probe


@pytest.fixture(scope="module")
def probe():
    market, feats, env, params, prog = setup(40)
    hp = hparams(lr=3e-2, gamma=0.5, lam=0.8, spec=prog.spec)  # the week's return: the signal
    state = jax.jit(prog.init)(jax.random.key(0), hp, params)
    chunk = compile_fast(prog.run_chunk, state, params, hp)
    state, metrics = chunk(state, params, hp)
    return market, feats, env, params, prog, state, metrics, chunk, hp


@pytest.fixture(scope="module")
def validation(probe):
    """(validation EnvParams, start days, fast-compiled evaluate) of the probe market."""
    market, feats, _env, _params, prog, state = probe[:6]
    val = FlatEnv.make_params(market, feats, PROBE_ENV, split=(130, T - 1))
    days = jnp.asarray(rm.eval_start_days(np.asarray(market.week_end), 130, T - 1, weeks=8,
                                          max_episodes=6))
    ev = compile_fast(prog.evaluate, state.train.params, val, days, jax.random.key(0))
    return val, days, ev


def test_probe_puts_most_weight_on_the_drifting_stock(probe):
    market, _feats, env, params, prog, state, metrics = probe[:7]
    days = np.flatnonzero(np.asarray(market.week_end))
    obs = jnp.concatenate([reset_obs(env, params, days[5:-2]), state.obs])  # fresh, mid-episode
    w = weights_of(prog, state.train.params, obs)
    assert w[:, GOOD].min() > 0.8, w[:, GOOD]
    # the floor of the concentration (0.1 per stock) keeps the mean below 1: 0.97 at kappa 2.5
    r = np.asarray(metrics["reward"])
    assert r[:3].mean() < 0.0 < 0.01 < r[-5:].mean()   # equal weight loses, the good stock
    assert int(state.env_steps) == 40 * 64              # earns ~1.5%/week


def test_probe_beats_equal_weight_on_the_validation_split(probe, validation):
    state = probe[5]
    val, days, ev = validation
    a = ev(state.train.params, val, days, jax.random.key(0))
    b = ev(state.train.params, val, days, jax.random.key(9))
    for k in a:                                        # deterministic: the key does not matter
        np.testing.assert_array_equal(a[k], b[k])
    sh, ew = np.asarray(a["episode_sharpe"]), np.asarray(a["episode_equal_weight_sharpe"])
    assert days.size >= 4 and np.all(np.asarray(a["episode_weeks"]) == 8)
    assert np.all(sh > ew + 1.0), (sh, ew)
    assert float(a["val_return"]) > float(a["val_equal_weight_return"]) + 0.05
    assert float(a["val_sharpe"]) == pytest.approx(float(sh.mean()), rel=1e-6)


def test_equal_weight_evaluation_matches_stepping_the_env_by_hand(probe, validation):
    env, state = probe[2], probe[5]
    val, days, evaluate_ = validation
    ev = evaluate_(state.train.params, val, days, jax.random.key(0))
    step = jax.jit(env.step_env)
    for i, d in enumerate(np.asarray(days)[:3]):
        p = val.replace(start_lo=jnp.int32(d), start_hi=jnp.int32(d))
        _, st = env.reset(jax.random.key(0), p)
        rets = []
        for _ in range(8):
            mask = np.asarray(p.tradable[int(st.t)], np.float32)
            _, st, _, _, info = step(jax.random.key(0), st, mask / mask.sum(), p)
            rets.append(float(info["net_return"]))
        r = np.array(rets)
        np.testing.assert_allclose(ev["episode_equal_weight_sharpe"][i],
                                   r.mean() / r.std(ddof=1) * np.sqrt(52), rtol=1e-3)


# --------------------------------------------------------------------------- PPO plumbing


@pytest.mark.slow  # keeps the default run short on 2 cores
def test_rollout_bootstraps_truncation_from_the_final_observation():
    env_cfg = dataclasses.replace(PROBE_ENV, macro_episode_weeks=3)
    _market, _feats, env, params, prog = setup(1, num_envs=4, rollout_len=8, env_cfg=env_cfg)
    state = jax.jit(prog.init)(jax.random.key(0), hparams(), params)
    collect = compile_fast(lambda s, k: prog.collect(s.train.params, params, None, s, k),
                           state, jax.random.key(1))
    _, ro, out = collect(state, jax.random.key(1))
    trunc = np.asarray(ro.truncated)
    assert trunc.sum() >= 8 and not np.asarray(ro.terminated).any()
    critic = jax.jit(lambda o: fl.critic_apply(TINY, env.layout, state.train.params, o))
    size = env.layout.size
    v_final = np.asarray(critic(out.final_obs.reshape(-1, size))).reshape(trunc.shape)
    v_next = np.asarray(critic(out.obs[1:].reshape(-1, size))).reshape(7, 4)
    np.testing.assert_allclose(ro.next_value, v_final, rtol=1e-5, atol=1e-6)
    inside = ~trunc[:-1]
    np.testing.assert_allclose(np.asarray(ro.next_value)[:-1][inside], v_next[inside],
                               rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(out.final_obs)[:-1][trunc[:-1]],
                           np.asarray(out.obs)[1:][trunc[:-1]])
    # the stored log-prob is that of the action the env received, and the reward its log-return
    dists, _ = prog.apply(state.train.params, out.obs.reshape(-1, size))
    lp = dists["weights"].log_prob(out.action["weights"].reshape(-1, N)).reshape(8, 4)
    np.testing.assert_allclose(lp, ro.log_prob, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ro.reward, np.log1p(np.asarray(out.info["net_return"])),
                               rtol=1e-4, atol=1e-6)


def test_seeds_differ_and_the_same_key_is_bit_identical(probe):
    _market, _feats, _env, params, prog, _state, _m, chunk, hp = probe
    init = jax.jit(prog.init)
    runs = [chunk(init(jax.random.key(k), hp, params), params, hp) for k in (1, 2, 1)]
    (a, ma), (b, mb), (c, _) = runs
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c), strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.allclose(x, y) for x, y in zip(jax.tree.leaves(a.train.params),
                                                     jax.tree.leaves(b.train.params),
                                                     strict=True))
    assert not np.allclose(ma["reward"], mb["reward"])


# --------------------------------------------------------------------------- host loop


def host_inputs():
    market, feats = probe_market()
    dates = make_dates(T)
    meta = MarketMeta(dates=dates, tickers=(*tuple(f"S{i}" for i in range(N - 1)), ""),
                      sectors=("A", "B"), macro_names=("m0", "m1"), fundamental_names=("f",),
                      market="probe", synthetic=True)
    ppo = PPOConfig(num_envs=4, rollout_steps=16, minibatch_size=8, epochs=2,
                    total_env_steps=96, warmup_updates=1)
    cfg = Config(env=dataclasses.replace(PROBE_ENV, macro_episode_weeks=4), networks=TINY,
                 train=TrainConfig(seeds=2, ppo=ppo, eval_interval=2, keep_latest=2))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, val_start=str(dates[130]), test_start=str(dates[170])))
    return cfg, market, meta, feats


def _latest_state(run, cfg, market, meta, feats):
    setup_ = fl.setup_flat(cfg, market, meta, feats)
    init = jax.vmap(setup_.program.init, in_axes=(0, 0, None))
    abstract = jax.eval_shape(init, fl.flat_keys(cfg.seed, 2), rm.stack_hparams(setup_.hp, 2),
                              setup_.train_params)
    with PhaseCheckpointer(run, fl.PHASE, read_only=True) as ck:
        return ck.restore(abstract, "latest")


@pytest.mark.slow  # keeps the default run short on 2 cores
def test_run_flat_budget_resume_summary_and_saved_policy(tmp_path):
    cfg, market, meta, feats = host_inputs()
    # compile the K = 2 programs once with cheap XLA options; run_flat reuses them
    fl.compile_programs(fl.setup_flat(cfg, market, meta, feats), 2,
                        compiler_options=FAST_COMPILE)
    lines: list[str] = []
    full = create_run(tmp_path, "full", cfg, "fp", resume=False)
    summary = fl.run_flat(full, cfg, market, meta, feats, log=lines.append)
    # Phase 3's budget: 96 env steps -> 6 updates of 16 steps, per seed
    p3 = rm.Phase3Spec.from_config(cfg.train.ppo, updates_per_chunk=2)
    assert summary["updates"] == p3.total_updates == 6
    assert summary["env_steps_per_seed"] == 96 and summary["env_steps"] == 2 * 96
    on_disk = read_phase_summary(full, "flat")
    for key in ("env_steps", "wall_s", "val_sharpe", "val_equal_weight_sharpe"):
        assert key in summary and key in on_disk
    assert len(summary["per_seed"]["val_sharpe"]) == 2 and lines
    recs = [r for r in full.read_metrics() if r["phase"] == "flat"]
    assert sum(1 for r in recs if not r.get("eval")) == 6
    assert sum(1 for r in recs if r.get("eval")) == 3
    # interrupted after one chunk, then resumed: the same final state, bit for bit
    part = create_run(tmp_path, "part", cfg, "fp", resume=False)
    assert fl.run_flat(part, cfg, market, meta, feats, update_limit=2)["updates"] == 2
    with pytest.raises(CheckpointError, match="--resume"):
        fl.run_flat(part, cfg, market, meta, feats)
    resumed = fl.run_flat(part, cfg, market, meta, feats, resume=True)
    assert resumed["resumed_from_step"] == 2 and resumed["updates"] == 6
    a, _, step_a = _latest_state(full, cfg, market, meta, feats)
    b, _, step_b = _latest_state(part, cfg, market, meta, feats)
    assert step_a == step_b == 6
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert resumed["val_sharpe"] == summary["val_sharpe"]

    # the evaluation side restores the saved policy (latest = the final params) and backtests
    params, step = fp.load_flat_policy(full, cfg, "latest")
    assert step == 6
    for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(a.train.params), strict=True):
        np.testing.assert_array_equal(x, y)
    t0, length = 140, 45
    out = fp.flat_daily_returns(full, cfg, market, meta, feats, t0, length, step="latest")
    assert out["daily_returns"].shape == out["turnover"].shape == (2, length)
    assert out["sector_weights"].shape == (2, length, S) and out["seeds"] == 2
    assert set(out["costs"]) >= {"stt", "slippage"} and out["step"] == 6
    np.testing.assert_array_equal(out["dates"], np.asarray(meta.dates)[t0 + 1: t0 + 1 + length])
    reb = rebalance_mask("weekly", t0, length, np.asarray(market.week_end))
    np.testing.assert_array_equal(out["rebalanced"], reb)
    # the whole market's daily EnvParams, as flat_daily_returns builds them: the same compiled
    # backtest on the same restored params, so bit for bit (FlatEnv.make_params' weekly
    # params differ in a static field, i.e. another compile)
    env_params = make_env_params(market, feats, cfg.env)
    _, res = run_backtest(fp.FlatPolicyFn(TINY, N), params, env_params, t0, reb, batched=True)
    np.testing.assert_array_equal(out["daily_returns"], np.asarray(res.net_return, np.float64))
    assert float(np.abs(out["turnover"][:, ~reb]).max()) == 0.0     # holds between week ends
    best = fp.flat_daily_returns(full, cfg, market, meta, feats, t0, length)
    assert best["step"] == summary["best_step"]
    with pytest.raises(CheckpointError, match="no trained flat baseline"):
        fp.flat_daily_returns(create_run(tmp_path, "empty", cfg, "fp", resume=False), cfg,
                              market, meta, feats, t0, length)


@pytest.mark.slow  # keeps the default run short on 2 cores
def test_backtest_of_the_policy_is_the_envs_accounting():
    # Daily returns of the backtest (FlatPolicyFn, weekly rebalancing) compounded over a week
    # equal FlatEnv's weekly net return for the same policy from the same week-end start.
    market, feats, env, _params, prog = setup(1)
    keys = jnp.stack([jax.random.key(3), jax.random.key(4)])
    params = jax.jit(jax.vmap(prog.init, in_axes=(0, None, None)))(
        keys, hparams(), _params).train.params
    env_params = FlatEnv.make_params(market, feats, PROBE_ENV)
    ends = np.flatnonzero(np.asarray(market.week_end))
    d0, d1, d2 = (int(x) for x in ends[30:33])
    reb = rebalance_mask("weekly", d0, d2 - d0, np.asarray(market.week_end))
    assert reb.sum() == 2
    _, bt = run_backtest(fp.FlatPolicyFn(TINY, N), params, env_params, d0, reb, batched=True)
    p = env_params.replace(start_lo=jnp.int32(d0), start_hi=jnp.int32(d0))

    @jax.jit
    def two_weeks(one):
        obs, st = env.reset(jax.random.key(0), p)
        out = []
        for _ in range(2):
            w = fl.deterministic_weights(TINY, env.layout, one, obs[None])[0]
            obs, st, _, _, info = env.step_env(jax.random.key(0), st, w, p)
            out.append(info["net_return"])
        return jnp.stack(out)

    weekly = np.asarray(jax.vmap(two_weeks)(params))
    daily = np.asarray(bt.net_return, np.float64)
    expect = np.stack([np.prod(1 + daily[:, : d1 - d0], 1) - 1,
                       np.prod(1 + daily[:, d1 - d0:], 1) - 1], 1)
    np.testing.assert_allclose(weekly, expect, rtol=1e-4, atol=1e-6)
    assert np.abs(expect).min() > 1e-4 and not np.allclose(expect[0], expect[1])


def test_spec_and_budget_are_phase_3s():
    spec = fl.FlatSpec.from_config(PPOConfig(), updates_per_chunk=1)
    assert spec == rm.Phase3Spec.from_config(PPOConfig(), updates_per_chunk=1)
    assert spec.total_updates * spec.steps_per_update == 546 * 128


def test_compiled_programs_come_with_this_markets_params():
    """A second market of the same shapes (a walk-forward fold) gets the compiled programs of
    the first (compile_s 0) but its own train / validation env params: before, the cache
    handed back the first market's, so the flat baseline of a later fold trained and
    validated on the earlier fold's days."""
    cfg, market, meta, feats = host_inputs()
    first = fl.compile_programs(fl.setup_flat(cfg, market, meta, feats), 2,
                                compiler_options=FAST_COMPILE)
    other = market.replace(returns=-np.asarray(market.returns))  # same calendar and shapes
    again = fl.compile_programs(fl.setup_flat(cfg, other, meta, feats), 2,
                                compiler_options=FAST_COMPILE)
    assert again.compile_s == 0.0 and again.chunk is first.chunk
    for c, m in ((first, market), (again, other)):
        np.testing.assert_array_equal(c.train_params.returns, m.returns)
        np.testing.assert_array_equal(c.val_params.returns, m.returns)
    assert not np.array_equal(market.returns, other.returns)
