"""Phase 3 (Macro PPO in MacroEnv): learning probes, seeds × hparams vmap, truncation bootstrap,
deterministic multi-start evaluation, the host loop's exact resume and its summary."""

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
    GNNConfig,
    NetworkConfig,
    PPOConfig,
    RewardConfig,
    RiskConfig,
    TrainConfig,
)
from hrl_sarp_jax.data.market import MarketMeta
from hrl_sarp_jax.envs.macro import MacroEnv
from hrl_sarp_jax.envs.obs import MicroObsLayout
from hrl_sarp_jax.networks.inputs import micro_inputs
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training.ppo_engine import with_schedule
from hrl_sarp_jax.training.validation import weekly_plan
from tests.agents._compile import compile_fast
from tests.envs.make_inputs import make_dates, make_inputs

T, N, S, FS = 200, 6, 2, 4  # N = 6 with one padding slot: sectors hold stocks {0,2,4}, {1,3}

TINY = NetworkConfig(gnn=GNNConfig(hidden=8, embedding=8, heads=2), macro_hidden=(32, 32),
                     attention_dim=8, attention_heads=2, goal_embedding=8,
                     micro_stock_hidden=(8,))
# The probe answer (everything in one sector) must be reachable: no caps, no cash floor, no
# no-trade band, no de-risking, no concentration penalty (it would argue for diversification).
PROBE_ENV = EnvConfig(
    macro_episode_weeks=8,
    constraints=ConstraintConfig(max_stock_weight=1.0, max_sector_weight=1.0, min_cash=0.0,
                                 rebalance_threshold=0.0),
    risk=RiskConfig(derisk_drawdown=1.0, rerisk_drawdown=0.99),
    reward=RewardConfig(concentration_penalty=0.0),
)


def probe_market(kind: str, seed: int = 0):
    """Hand-built 2-sector market. 'drift': sector 1 earns +0.4%/day, sector 0 -0.4%/day.
    'flip': each week a coin picks the leader of the *next* week (+0.5%/day vs -0.5%/day) and
    macro[0] at the week end announces it (+1: sector 0 leads, -1: sector 1 leads). Noise
    0.1%/day. Sector node features are a one-hot sector identity (the policy is
    permutation-equivariant, so sectors must be told apart by their features); the graph has
    no cross-sector edges; no circuit locks, events, value stocks or regime labels."""
    market, feats = make_inputs(num_days=T, num_stocks=N, num_sectors=S, sector_features=FS,
                                seed=seed)
    rng = np.random.default_rng(seed + 1)
    sector = np.asarray(market.stock_sector)
    valid = np.asarray(market.stock_valid)
    ends = np.flatnonzero(np.asarray(market.week_end))
    signal = np.zeros(T, np.float32)
    if kind == "drift":
        drift = np.broadcast_to(np.where(sector == 1, 0.004, -0.004), (T, N))
    else:
        leader = np.zeros(T, np.int64)
        coins = rng.integers(0, 2, ends.size)
        for i, e in enumerate(ends):
            nxt = ends[i + 1] if i + 1 < ends.size else T - 1
            leader[e + 1: nxt + 1] = coins[i]
            signal[e] = 1.0 if coins[i] == 0 else -1.0
        drift = np.where(sector[None] == leader[:, None], 0.005, -0.005)
    mask = np.broadcast_to(valid, (T, N)).copy()
    rets = np.where(mask, drift + 0.001 * rng.standard_normal((T, N)), 0.0).astype(np.float32)
    rets[0] = 0.0
    close = (100.0 * np.cumprod(1.0 + rets, axis=0)).astype(np.float32)
    onehot = (sector[:, None] == np.arange(S)[None]).astype(np.float32)
    cnt = mask.astype(np.float32) @ onehot
    sec = ((rets * mask) @ onehot / np.maximum(cnt, 1.0)).astype(np.float32)
    bench = rets[:, valid].mean(1).astype(np.float32)
    market = market.replace(
        returns=rets, close=close, open=close, high=close * 1.01, low=close * 0.99,
        stock_mask=mask, circuit_lock=np.zeros((T, N), np.int8), sector_returns=sec,
        sector_mask=cnt > 0, benchmark_returns=bench,
        benchmark_close=np.cumprod(1.0 + bench).astype(np.float32))
    stock = np.asarray(feats.stock).copy()
    stock[..., 9] = 0.0                                    # no value stocks: R_value = 0
    macro = np.zeros((T, 18), np.float32)
    macro[:, 0] = signal
    node = np.zeros((T, S, FS), np.float32)
    node[:, np.arange(S), np.arange(S)] = 1.0
    feats = feats.replace(
        stock=stock, macro=macro, sector=node, sector_mask=cnt > 0,
        adjacency=np.broadcast_to(np.eye(S, dtype=np.float32), (T, S, S)).copy(),
        regime_label=np.full(T, -1, np.int32))
    return market, feats


def hparams(lr=3e-3, clip=0.2, entropy=0.0, value=0.5, gamma=0.9, lam=0.9, max_norm=0.5,
            spec=None):
    """PPOHParams; with ``spec`` the program's learning-rate schedule (``with_schedule``),
    which a training chunk needs."""
    hp = PPOHParams(*(jnp.float32(x) for x in (lr, clip, entropy, value, gamma, lam, max_norm)))
    return hp if spec is None else with_schedule(hp, spec)


def all_starts(market, params) -> cur.StartSet:
    days = cur.window_week_ends(np.asarray(market.week_end), int(params.start_lo),
                                int(params.start_hi))
    return cur.make_start_set(days, T)


def setup(kind: str, updates: int, *, num_envs: int = 8, rollout_len: int = 8,
          env_cfg: EnvConfig = PROBE_ENV, allocator=None):
    market, feats = probe_market(kind)
    env = MacroEnv(N, S, FS, return_window=20, allocator=allocator)
    params = MacroEnv.make_params(market, feats, env_cfg)
    spec = rm.Phase3Spec(num_envs=num_envs, rollout_len=rollout_len, epochs=4,
                         num_minibatches=2, updates_per_chunk=updates, total_updates=updates,
                         warmup_updates=2)
    return market, feats, env, params, rm.make_phase3(env, TINY, spec)


def reset_obs(env, params, days):
    """[K, D] observations right after a reset at each day of ``days``."""
    def one(d):
        return env.reset(jax.random.key(0), params.replace(start_lo=d, start_hi=d))[0]
    return jax.jit(jax.vmap(one))(jnp.asarray(days, jnp.int32))


def train_probe(kind: str, updates: int, seed: int = 0):
    market, feats, env, params, p3 = setup(kind, updates)
    hp, starts = hparams(spec=p3.spec), all_starts(market, params)
    state = jax.jit(p3.init)(jax.random.key(seed), hp, params, starts)
    chunk = compile_fast(p3.run_chunk, state, params, hp, starts)
    state, metrics = chunk(state, params, hp, starts)
    return market, feats, env, params, p3, state, metrics


# --------------------------------------------------------------------------- learning probes


@pytest.fixture(scope="module")
def drift_probe():
    return train_probe("drift", updates=30)


def test_probe_persistent_drift_concentrates_on_the_good_sector(drift_probe):
    market, _, env, params, p3, state, metrics = drift_probe
    days = cur.window_week_ends(np.asarray(market.week_end), 0, T - 10)
    obs = jnp.concatenate([reset_obs(env, params, days), state.obs])  # fresh and mid-episode
    w = np.asarray(jax.jit(lambda p, o: rm.deterministic_weights(p3, p, o))(
        state.train.params, obs))
    assert w[:, 1].min() > 0.9, w[:, 1]
    r = np.asarray(metrics["reward"])
    assert r[-5:].mean() > r[:3].mean() + 0.1          # it got there by learning


@pytest.mark.slow  # cold-cache CI time; the persistent-drift probe still runs by default
def test_probe_policy_switches_with_the_macro_signal():
    market, feats, env, params, p3, state, _ = train_probe("flip", updates=40)
    days = cur.window_week_ends(np.asarray(market.week_end), 0, T - 10)
    signal = np.asarray(feats.macro)[days, 0]
    w = np.asarray(jax.jit(lambda p, o: rm.deterministic_weights(p3, p, o))(
        state.train.params, reset_obs(env, params, days)))
    assert (signal > 0).sum() >= 5 and (signal < 0).sum() >= 5
    assert w[signal > 0, 0].min() > 0.7, w[signal > 0]   # sector 0 announced to lead
    assert w[signal < 0, 1].min() > 0.7, w[signal < 0]   # sector 1 announced to lead


# --------------------------------------------------------------------------- seeds and sweeps


@pytest.fixture(scope="module")
def small():
    """A short chunk (2 updates of 4 envs x 4 steps) on the drift market."""
    market, _feats, env, params, p3 = setup("drift", 2, num_envs=4, rollout_len=4)
    return market, env, params, p3, all_starts(market, params)


def _assert_leaves_close(a, b, rtol: float, atol: float) -> None:
    """Integer, bool and key leaves exactly; float leaves to (rtol, atol)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
        else:
            np.testing.assert_array_equal(x, y)


def test_vmap_over_seeds_and_hparams_equals_a_python_loop(small):
    # Two members with different keys AND different hparams in one compile, against a loop of
    # single runs. vmapped and single programs are different XLA programs: batched and
    # unbatched kernels round differently (which ones differ depends on the CPU's instruction
    # set), so floats agree to float32 rounding, never bit for bit; integers, bools and keys
    # exactly. Inits (orthogonal init: a QR per kernel, ~2e-7 apart on AVX-512) to 1e-5,
    # rewards, losses and lrs to float32 rounding at their depth; after the Adam steps, Adam
    # turns noise-level gradients into lr-sized steps, so the tolerance is 2% of how far the
    # params moved (a mixed-up seed or an ignored hparam moves them by ~100%).
    _market, _env, params, p3, starts = small
    keys = jnp.stack([jax.random.key(1), jax.random.key(2)])
    hps = jax.tree.map(lambda a, b: jnp.stack([a, b]), hparams(lr=3e-3, spec=p3.spec),
                       hparams(lr=1e-3, clip=0.1, spec=p3.spec))
    init = jax.jit(jax.vmap(p3.init, in_axes=(0, 0, None, None)))
    chunk = jax.jit(jax.vmap(p3.run_chunk, in_axes=(0, None, 0, None)))
    start_both = init(keys, hps, params, starts)
    both, m_both = chunk(start_both, params, hps, starts)
    single_init, single_chunk = jax.jit(p3.init), jax.jit(p3.run_chunk)
    for i in range(2):
        pick = lambda t, i=i: jax.tree.map(lambda x: x[i], t)  # noqa: E731
        hp_i = pick(hps)
        start = single_init(keys[i], hp_i, params, starts)
        # init: params O(1), obs O(1); a wrong key gives O(1) differences
        _assert_leaves_close(start, pick(start_both), rtol=1e-5, atol=1e-6)
        one, m_one = single_chunk(start, params, hp_i, starts)
        # mean rewards ~1e-2, 4e-9 apart on AVX-512; the second rollout runs on updated params
        # (see below), so 1e-6; another seed's rewards are ~2e-2 off
        np.testing.assert_allclose(m_one["reward"], m_both["reward"][i], rtol=1e-6, atol=1e-6)
        # pg_loss: a mean of O(1) terms (normalised advantages x ratios) that cancels to ~3e-2,
        # over the first update's 8 minibatch steps, so absolute: 1.5e-6 apart on AVX-512; a
        # wrong seed's rollout is ~1e-2 off
        np.testing.assert_allclose(m_one["pg_loss"][0], m_both["pg_loss"][i, 0], rtol=1e-5,
                                   atol=2e-5)
        # the schedule's lr: a few scalar ops on the member's peak lr (a wrong hparam: 3x off)
        np.testing.assert_allclose(m_one["lr"], m_both["lr"][i], rtol=1e-6)
        new, old = jax.tree.leaves(one.train.params), jax.tree.leaves(start.train.params)
        moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                    for a, b in zip(new, old, strict=True))
        assert moved > 1e-3
        for a, b in zip(new, jax.tree.leaves(pick(both.train.params)), strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=0.02 * moved)
        assert int(one.env_steps) == 2 * 16
    # different seeds (and hparams) give different parameters and different experience
    first = jax.tree.leaves(both.train.params)
    assert any(not np.allclose(x[0], x[1]) for x in first)
    assert not np.allclose(m_both["reward"][0], m_both["reward"][1])
    np.testing.assert_allclose(m_both["lr"][:, -1] / m_both["lr"][:, -1].max(), [1.0, 1 / 3],
                               rtol=1e-5)


def test_same_key_gives_bit_identical_params(small):
    _market, _env, params, p3, starts = small
    hp = hparams(spec=p3.spec)
    init, chunk = jax.jit(p3.init), jax.jit(p3.run_chunk)
    a, _ = chunk(init(jax.random.key(7), hp, params, starts), params, hp, starts)
    b, _ = chunk(init(jax.random.key(7), hp, params, starts), params, hp, starts)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_learning_rate_schedule_applies(small):
    # 2 warmup updates of 4 epochs x 2 minibatches = 16 gradient steps: the lr the last step
    # used is peak * 16/16; one more chunk starts the cosine decay towards MIN_LR_SCALE.
    _market, _env, params, p3, starts = small
    hp = hparams(lr=1e-3, spec=p3.spec)
    chunk = jax.jit(p3.run_chunk)
    state = jax.jit(p3.init)(jax.random.key(3), hp, params, starts)
    state, m = chunk(state, params, hp, starts)
    lrs = np.asarray(m["lr"])
    assert lrs[0] < lrs[1] <= 1e-3 * (1 + 1e-6)   # warming up (lr is the mean over steps)
    state, m = chunk(state, params, hp, starts)
    assert float(m["lr"][-1]) < 1e-3 * 0.5           # decayed (total_updates = 2: at the floor)
    np.testing.assert_allclose(m["lr"][-1], 1e-3 * rm.MIN_LR_SCALE, rtol=1e-4)


# --------------------------------------------------------------------------- truncation bootstrap


def test_rollout_bootstraps_truncation_from_the_final_observation():
    # 3-week episodes and 8 steps per env: every env truncates at least twice.
    env_cfg = dataclasses.replace(PROBE_ENV, macro_episode_weeks=3)
    market, _feats, env, params, p3 = setup("drift", 1, num_envs=4, rollout_len=8,
                                           env_cfg=env_cfg)
    hp, starts = hparams(), all_starts(market, params)
    state = jax.jit(p3.init)(jax.random.key(0), hp, params, starts)
    collect = jax.jit(lambda s, k: p3.collect(s.train.params, params, starts, s, k))
    _, ro, out = collect(state, jax.random.key(1))
    trunc = np.asarray(ro.truncated)
    assert trunc.sum() >= 8 and not np.asarray(ro.terminated).any()
    critic = jax.jit(lambda o: rm.critic_apply(TINY, env.layout, state.train.params, o))
    v_final = np.asarray(critic(out.final_obs.reshape(-1, env.layout.size))).reshape(trunc.shape)
    v_next = np.asarray(critic(out.obs[1:].reshape(-1, env.layout.size))).reshape(7, 4)
    np.testing.assert_allclose(ro.next_value, v_final, rtol=1e-5, atol=1e-6)
    # inside an episode the final observation is the next one; at a truncation it is not
    # (the next one is the auto-reset), and the bootstrap uses the final one
    inside = ~trunc[:-1]
    np.testing.assert_allclose(np.asarray(ro.next_value)[:-1][inside], v_next[inside],
                               rtol=1e-5, atol=1e-6)
    f_obs, n_obs = np.asarray(out.final_obs)[:-1], np.asarray(out.obs)[1:]
    assert not np.allclose(f_obs[trunc[:-1]], n_obs[trunc[:-1]])
    # an episode lasts exactly 3 weeks: ends are 3 steps apart per env
    for e in range(4):
        ends = np.flatnonzero(trunc[:, e])
        assert np.all(np.diff(ends) == 3)


# --------------------------------------------------------------------------- evaluation


def test_evaluation_uses_many_start_dates_and_beats_equal_weight_after_learning():
    market, _feats, _env, params, p3, state, _ = train_probe("drift", updates=30)
    days = rm.eval_start_days(np.asarray(market.week_end), 100, T - 1, weeks=8, max_episodes=6)
    assert len(set(days.tolist())) == days.size >= 4
    ev = jax.jit(p3.evaluate)
    a = ev(state.train.params, params, jnp.asarray(days), jax.random.key(0))
    b = ev(state.train.params, params, jnp.asarray(days), jax.random.key(99))
    for k in a:  # deterministic: the key does not matter
        np.testing.assert_array_equal(a[k], b[k])
    sh, ew = np.asarray(a["episode_sharpe"]), np.asarray(a["episode_equal_weight_sharpe"])
    assert np.unique(np.round(ew, 5)).size == days.size       # different episodes, not one
    assert np.all(np.asarray(a["episode_weeks"]) == 8)
    assert np.all(sh > ew)                                    # long the rising sector
    assert float(a["val_sharpe"]) == pytest.approx(float(sh.mean()), rel=1e-6)
    assert float(a["val_equal_weight_sharpe"]) == pytest.approx(float(ew.mean()), rel=1e-6)


def test_equal_weight_baseline_matches_a_numpy_recomputation():
    # The evaluator's equal-weight Sharpe per episode against NumPy over the weekly net
    # returns of the env stepped by hand with the 50/50 action from the same start days.
    market, _feats, env, params, p3 = setup("flip", 1)
    days = jnp.asarray(rm.eval_start_days(np.asarray(market.week_end), 0, T - 1, 8, 3))
    state = jax.jit(p3.init)(jax.random.key(0), hparams(), params, all_starts(market, params))
    ev = jax.jit(p3.evaluate)(state.train.params, params, days, jax.random.key(0))
    step = jax.jit(env.step_env)
    a = np.array([0.5, 0.5, 0.0, 0.0, 1.0], np.float32)
    for i, d in enumerate(np.asarray(days)):
        p = params.replace(start_lo=d, start_hi=d)
        _, st = env.reset(jax.random.key(0), p)
        rets = []
        for _ in range(8):
            _, st, _, _, info = step(jax.random.key(0), st, a, p)
            rets.append(float(info["net_return"]))
        r = np.array(rets)
        expect = r.mean() / r.std(ddof=1) * np.sqrt(52)
        np.testing.assert_allclose(ev["episode_equal_weight_sharpe"][i], expect, rtol=1e-3)


def test_continuous_validation_walks_the_whole_window_with_one_book():
    # train.validation: continuous: one walk from the window's first week end to its end (one
    # book, one gate), its Sharpe the validation Sharpe and its 4-week blocks (the remainder
    # joining the last) the per-episode statistics, against NumPy over the env stepped by hand
    # with the 50/50 action for every week of the window.
    market, _feats, env, params, p3 = setup("flip", 1)
    p3c = rm.make_phase3(env, TINY, dataclasses.replace(p3.spec, eval_block_weeks=4))
    lo, hi = 100, T - 1
    val, days = weekly_plan("continuous", np.asarray(market.week_end), lo, hi,
                            params.replace(t_hi=jnp.int32(hi)))
    day0 = int(days[0])
    ends = np.flatnonzero(np.asarray(market.week_end))
    assert days.tolist() == [ends[ends >= lo][0]]
    weeks = int(np.sum(ends > day0))
    assert val.max_steps_in_episode == weeks + 1 and weeks > 2 * PROBE_ENV.macro_episode_weeks
    state = jax.jit(p3c.init)(jax.random.key(0), hparams(), params, all_starts(market, params))
    ev = jax.jit(p3c.evaluate)(state.train.params, val, jnp.asarray(days), jax.random.key(0))
    step = jax.jit(env.step_env)
    a = np.array([0.5, 0.5, 0.0, 0.0, 1.0], np.float32)
    p = val.replace(start_lo=jnp.int32(day0), start_hi=jnp.int32(day0))
    _, st = env.reset(jax.random.key(0), p)
    rets = []
    for _ in range(weeks):
        _, st, _, _, info = step(jax.random.key(0), st, a, p)
        rets.append(float(info["net_return"]))
    r = np.array(rets)

    def numpy_sharpe(x):
        return x.mean() / x.std(ddof=1) * np.sqrt(52)

    np.testing.assert_allclose(ev["val_equal_weight_sharpe"], numpy_sharpe(r), rtol=1e-3)
    starts = list(range(0, 4 * ((weeks + 1) // 4), 4))   # the walk has weeks + 1 steps
    blocks = [numpy_sharpe(r[i:j]) for i, j in zip(starts, [*starts[1:], weeks], strict=True)]
    assert len(blocks) >= 3
    np.testing.assert_allclose(ev["episode_equal_weight_sharpe"], blocks, rtol=1e-3)
    assert int(np.sum(ev["episode_weeks"])) == weeks and int(ev["val_episodes"]) == 1
    assert float(ev["val_sharpe_std"]) == pytest.approx(np.std(ev["episode_sharpe"]), rel=1e-5)


# --------------------------------------------------------------------------- frozen Micro


def test_frozen_micro_allocator_runs_inside_the_env():
    market, feats = probe_market("drift")
    actor = MicroActor(TINY)
    micro = actor.init(jax.random.key(0), jnp.zeros((N, 24)), jnp.zeros(S + 3),
                       jnp.ones(N, bool))
    sector = jnp.asarray(market.stock_sector)
    alloc = rm.micro_allocator(TINY, N, S)
    # the allocator is the Micro actor on networks.inputs.micro_inputs of the flat micro obs
    layout = MicroObsLayout(N, S)
    rng = np.random.default_rng(0)
    stock, goal = rng.standard_normal((N, 22)), np.array([0.7, 0.3, 0.0, 1.0, 0.0])
    mask, w0 = np.array([1, 1, 1, 1, 0, 0], bool), np.full(N, 0.1)
    obs = layout.flatten(stock, mask, w0, np.array([0.4, 0.0]), goal)
    expect = actor.apply(micro, micro_inputs(stock, mask, sector, goal, w0), goal, mask).weights
    got = alloc({"actor": micro, "stock_sector": sector}, obs)
    np.testing.assert_allclose(got, expect, rtol=1e-6, atol=1e-7)
    # inside MacroEnv it replaces the equal split within sectors
    env = MacroEnv(N, S, FS, return_window=20, allocator=alloc)
    params = MacroEnv.make_params(market, feats, PROBE_ENV,
                                  policy_params={"actor": micro, "stock_sector": sector})
    p = params.replace(start_lo=jnp.int32(40), start_hi=jnp.int32(40))
    a = jnp.array([0.8, 0.2, 1.0, 0.0, 0.0], jnp.float32)
    _, st = env.reset(jax.random.key(0), p)
    _, st2, r, _, _ = jax.jit(env.step_env)(jax.random.key(0), st, a, p)
    w = np.asarray(st2.port.weights)
    assert np.isfinite(float(r)) and np.all(w >= -1e-6) and w.sum() <= 1.0 + 1e-4
    ew_env = MacroEnv(N, S, FS, return_window=20)
    _, st_ew = ew_env.reset(jax.random.key(0), p)
    _, st_ew2, *_ = jax.jit(ew_env.step_env)(jax.random.key(0), st_ew, a, p)
    assert not np.allclose(w, np.asarray(st_ew2.port.weights), atol=1e-4)


# --------------------------------------------------------------------------- the host loop


def host_inputs():
    market, feats = probe_market("drift")
    dates = make_dates(T)
    meta = MarketMeta(dates=dates, tickers=(*tuple(f"S{i}" for i in range(N - 1)), ""),
                      sectors=("A", "B"), macro_names=("m0", "m1"), fundamental_names=("f",),
                      market="probe", synthetic=True)
    env_cfg = dataclasses.replace(PROBE_ENV, macro_episode_weeks=4)
    ppo = PPOConfig(num_envs=4, rollout_steps=16, minibatch_size=8, epochs=2,
                    total_env_steps=96, warmup_updates=1)
    cfg = Config(env=env_cfg, networks=TINY,
                 train=TrainConfig(seeds=2, ppo=ppo, eval_interval=2, keep_latest=2))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, val_start=str(dates[130]), test_start=str(dates[190])))
    return cfg, market, meta, feats


def _latest_state(run, cfg, market, meta, feats):
    setup_ = rm.setup_phase3(cfg, market, meta, feats)
    init = jax.vmap(setup_.program.init, in_axes=(0, 0, None, None))
    abstract = jax.eval_shape(init, rm.phase3_keys(cfg.seed, 2),
                              rm.stack_hparams(setup_.hp, 2), setup_.train_params,
                              cur.stage_starts(0, setup_.windows))
    with PhaseCheckpointer(run, 3, read_only=True) as ck:
        return ck.restore(abstract, "latest")


# Slow for cold-cache CI time: Phase-1 resume runs by default, phase-all resume with -m slow.
@pytest.mark.slow
@pytest.mark.parametrize("anchor", [0.0, 1.0])
def test_run_phase3_resumes_exactly_and_writes_its_summary(tmp_path, anchor):
    """With ``anchor`` > 0 the state carries the anchor (here the random start: no Phase 1),
    which the checkpoint must restore, not re-take from the params at the interruption (the
    resumed state then equals the uninterrupted one, anchor included)."""
    cfg, market, meta, feats = host_inputs()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ppo=dataclasses.replace(
        cfg.train.ppo, anchor_kl_coef=anchor)))
    lines: list[str] = []
    full = create_run(tmp_path, "full", cfg, "fp", resume=False)
    summary = rm.run_phase3(full, cfg, market, meta, feats, log=lines.append)
    assert summary["updates"] == 6 and summary["env_steps"] == 2 * 6 * 16
    for key in ("env_steps", "wall_s", "val_sharpe", "val_equal_weight_sharpe"):
        assert key in summary and key in read_phase_summary(full, 3)
    assert len(summary["per_seed"]["val_sharpe"]) == 2
    assert summary["allocator"] == "equal_weight_in_sector"
    assert "no checkpoint" in summary["phase2"] and "no checkpoint" in summary["phase1"]
    assert lines and any("val_sharpe" in ln for ln in lines)
    recs = [r for r in full.read_metrics() if r["phase"] == 3]
    assert sum(1 for r in recs if not r.get("eval")) == 6 and sum(1 for r in recs
                                                                  if r.get("eval")) == 4  # update 0 too
    # interrupted after one chunk, then resumed: the same final state, bit for bit
    part = create_run(tmp_path, "part", cfg, "fp", resume=False)
    first = rm.run_phase3(part, cfg, market, meta, feats, update_limit=2)
    assert first["updates"] == 2
    with pytest.raises(Exception, match="--resume"):
        rm.run_phase3(part, cfg, market, meta, feats)
    resumed = rm.run_phase3(part, cfg, market, meta, feats, resume=True)
    assert resumed["resumed_from_step"] == 2 and resumed["updates"] == 6
    a, _, step_a = _latest_state(full, cfg, market, meta, feats)
    b, _, step_b = _latest_state(part, cfg, market, meta, feats)
    assert step_a == step_b == 6
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert resumed["val_sharpe"] == summary["val_sharpe"]
    if anchor:  # the anchor stayed the start (the states above match, anchors included)
        assert not all(np.array_equal(x, y) for x, y in zip(
            jax.tree.leaves(b.anchor), jax.tree.leaves(b.train.params), strict=True))
        assert any(r.get("anchor_kl", 0) > 0 for r in part.read_metrics() if r["phase"] == 3)
    else:
        assert a.anchor is None


def test_spec_from_default_config_matches_the_original_update_structure():
    spec = rm.Phase3Spec.from_config(PPOConfig(), updates_per_chunk=1)
    assert spec.steps_per_update == 128 and spec.num_minibatches == 2 and spec.epochs == 8
    assert spec.total_updates == 546          # 70,000 // 128, like the original
    with pytest.raises(Exception, match="rollout_steps"):
        rm.Phase3Spec.from_config(PPOConfig(rollout_steps=100), updates_per_chunk=1)


def test_phase3_after_phases_1_and_2_uses_their_checkpoints(tmp_path, smoke_market):
    # End to end on the smoke market: Phase 1 and 2 checkpoints feed Phase 3 (the frozen
    # Micro allocator inside the env, the Phase-1 actor as the initial policy).
    from hrl_sarp_jax.training.runner import run_pretrain_phase
    from tests.training.conftest import smoke_cfg

    _, market, meta, feats, _ = smoke_market
    cfg = smoke_cfg("train.ppo.num_envs=2", "train.ppo.rollout_steps=8",
                    "train.ppo.minibatch_size=4", "train.ppo.epochs=1",
                    "train.ppo.total_env_steps=16", "train.eval_interval=1",
                    "env.macro_episode_weeks=4", "train.seeds=1",
                    "train.ppo.anchor_kl_coef=1.0")
    run = create_run(tmp_path, "e2e", cfg, "fp", resume=False)
    for phase in (1, 2):
        run_pretrain_phase(phase, cfg, market, meta, feats, run, progress=False)
    result = rm.run_phase3_entry(cfg, market, meta, feats, run, progress=False)
    summary = result.summary
    assert summary["allocator"] == "phase2_micro"
    assert summary["phase2"].startswith("best_params") and summary["phase1"].startswith("best")
    assert summary["updates"] == 2 and np.isfinite(summary["val_sharpe"])
    assert result.rows[0][2] == "val_equal_weight_sharpe"
    # the anchor is the Phase-1 actor Phase 3 starts from (not the network's random init):
    # the first update's KL to it is that of one minibatch step away from it
    assert summary["anchor"].endswith("weight 1")
    kl = [r["anchor_kl"] for r in run.read_metrics() if r["phase"] == 3 and "anchor_kl" in r]
    assert len(kl) == 2 and 0.0 <= kl[0] < 1e-3, kl


# --------------------------------------------------------------------------- exploration


def test_at_a_high_initial_concentration_sampled_actions_earn_what_the_mean_earns():
    """PPO learns from the rewards of sampled actions but executes the mean. With costs on (the
    drift market, no caps), one week's reward averaged over 512 Dirichlet samples around a 30/70
    mean vs the mean action's reward, over 20 start weeks: at the network's initial total
    concentration of 10 the samples earn 0.0085 less (a regime-free allocation edge is ~0.001
    per week); at 200 the gap is below 2e-4 (measured 1e-4)."""
    market, feats = probe_market("drift")
    env = MacroEnv(N, S, FS, return_window=20)
    params = MacroEnv.make_params(market, feats, EnvConfig(
        macro_episode_weeks=8, constraints=ConstraintConfig(
            max_stock_weight=1.0, max_sector_weight=1.0, min_cash=0.0)))
    mean = jnp.array([0.3, 0.7], jnp.float32)
    regime = jnp.array([0.0, 0.0, 1.0], jnp.float32)

    def reward(day, w):
        p = params.replace(start_lo=day, start_hi=day)
        _, st = env.reset(jax.random.key(0), p)
        # a week at the mean first: the measured week trades from an established book
        _, st, _, _, _ = env.step_env(jax.random.key(1), st, jnp.concatenate([mean, regime]), p)
        return env.step_env(jax.random.key(2), st, jnp.concatenate([w, regime]), p)[2]

    rewards = jax.jit(jax.vmap(jax.vmap(reward, in_axes=(None, 0)), in_axes=(0, None)))
    days = jnp.asarray(np.flatnonzero(np.asarray(market.week_end))[5:25], jnp.int32)
    at_mean = np.asarray(rewards(days, mean[None]))[:, 0]
    gaps = {}
    for total in (10.0, 200.0):
        # the policy's alpha: total x mean + the floor 0.1 per sector (networks.macro)
        samples = jax.random.dirichlet(jax.random.key(3), total * mean + 0.1, (512,))
        gaps[total] = float(np.mean(np.asarray(rewards(days, samples)).mean(1) - at_mean))
    assert gaps[10.0] < -0.005
    assert abs(gaps[200.0]) < 2e-4


def test_set_concentration_sets_every_seeds_dirichlet_total(small):
    _market, _env, params, p3, starts = small
    keys = jax.random.split(jax.random.key(0), 2)
    state = jax.jit(jax.vmap(p3.init, in_axes=(0, None, None, None)))(
        keys, hparams(), params, starts)
    state = rm.set_concentration(state, 200.0)
    raw = np.asarray(state.train.params["params"]["actor"]["concentration_raw"])
    np.testing.assert_allclose(np.logaddexp(0.0, raw.astype(np.float64)), [200.0, 200.0],
                               rtol=1e-6)  # softplus(raw), as MacroActor computes it
    with pytest.raises(rm.ConfigError, match=r"train\.ppo\.concentration = 0"):
        rm.set_concentration(state, 0.0)


def test_phase3_with_the_allocation_tied_to_the_regime_head(tmp_path, smoke_market):
    """``networks.macro_allocation: regime_table`` end to end: Phase 1 writes tau x its regime
    table into the actor, Phase 3 starts from it, trains the regime head through the executed
    allocation and leaves the table exactly where Phase 1 put it; without Phase 1, Phase 3
    refuses with the fix. A table-less config is refused before any training."""
    from hrl_sarp_jax.errors import ConfigError
    from hrl_sarp_jax.networks.macro import FROZEN_PARAM
    from hrl_sarp_jax.training.phases import check_training_config
    from hrl_sarp_jax.training.policy import load_phase1_macro_all, load_phase3_macro_all
    from hrl_sarp_jax.training.runner import run_pretrain_phase
    from tests.training.conftest import smoke_cfg

    _, market, meta, feats, _ = smoke_market
    tied = ("networks.macro_allocation=regime_table",
            "train.macro_pretrain.alloc_target=regime_table")
    with pytest.raises(ConfigError, match="alloc_target: regime_table"):
        check_training_config(smoke_cfg(tied[0], "train.macro_pretrain.alloc_target=returns"))
    cfg = smoke_cfg(*tied, "train.ppo.num_envs=2", "train.ppo.rollout_steps=8",
                    "train.ppo.minibatch_size=4", "train.ppo.epochs=1",
                    "train.ppo.total_env_steps=16", "train.eval_interval=1",
                    "env.macro_episode_weeks=4", "train.seeds=1")
    check_training_config(cfg)
    bare = create_run(tmp_path, "bare", cfg, "fp", resume=False)
    with pytest.raises(ConfigError, match="run Phase 1 first"):
        rm.run_phase3_entry(cfg, market, meta, feats, bare, progress=False)
    run = create_run(tmp_path, "tied", cfg, "fp", resume=False)
    run_pretrain_phase(1, cfg, market, meta, feats, run, progress=False)
    table = np.asarray(read_phase_summary(run, 1)["regime_table"])
    want = (cfg.train.macro_pretrain.alloc_temperature * table).astype(np.float32)
    p1, _ = load_phase1_macro_all(run, cfg, market, meta, feats)
    np.testing.assert_allclose(np.asarray(p1["params"][FROZEN_PARAM])[0], want, rtol=1e-5,
                               atol=1e-4)  # the summary rounds the table to 6 decimals
    rm.run_phase3_entry(cfg, market, meta, feats, run, progress=False)
    p3, _ = load_phase3_macro_all(run, cfg, market, meta, feats)
    np.testing.assert_array_equal(np.asarray(p3["params"][FROZEN_PARAM]),
                                  np.asarray(p1["params"][FROZEN_PARAM]))
    moved = np.abs(np.asarray(p3["params"]["regime_head"]["kernel"])
                   - np.asarray(p1["params"]["regime_head"]["kernel"])).max()
    assert moved > 0.0
