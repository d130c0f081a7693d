"""FlatEnv (the flat RL baseline's weekly env over stocks): reward = the week's net log-return
of the shared accounting (hand-computed and against envs.common), holding between week ends,
truncation vs termination, observation causality, layout round trip."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import ConstraintConfig, EnvConfig, RiskConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.flat import FlatEnv, FlatObsLayout, flat_obs
from hrl_sarp_jax.envs.rewards import buffer_mask, push_return
from hrl_sarp_jax.finance.portfolio import init_portfolio
from hrl_sarp_jax.risk.manager import init_risk_state
from tests.envs.conftest import FS, N, S, T, make_rollout

# one rupee bought costs stt 0.001 + stamp 0.00015 + exchange 0.0000325 + sebi 0.000001
# + GST 18% of exchange + slippage 5 bps (finance/costs.py, default schedule, no impact)
BUY_RATE = 0.001 + 0.00015 + 0.0000325 + 0.000001 + 0.18 * 0.0000325 + 0.0005
# everything in one stock must be reachable; no risk-manager scaling
OPEN = EnvConfig(
    macro_episode_weeks=10,
    constraints=ConstraintConfig(max_stock_weight=1.0, max_sector_weight=1.0, min_cash=0.0,
                                 max_positions=0),
    risk=RiskConfig(derisk_drawdown=1.0, rerisk_drawdown=0.99, event_reduction=0.0),
)


def at_week(params, day: int):
    return params.replace(start_lo=jnp.int32(day), start_hi=jnp.int32(day))


def week_ends(inputs) -> np.ndarray:
    return np.flatnonzero(np.asarray(inputs[0].week_end))


@pytest.fixture(scope="module")
def env(cfg):
    return FlatEnv(N, S, return_window=cfg.return_window)


@pytest.fixture(scope="module")
def step(env):
    return jax.jit(env.step_env)


def test_all_in_one_stock_earns_the_hand_computed_log_return(inputs, env, step):
    # From cash, everything into stock 2 at the close of week end d: the buy costs BUY_RATE of
    # the value (paid from cash, which earns 0), then the stock is held to the next week end d'
    # (no further trades), so V' / V = close[d'] / close[d] - BUY_RATE.
    market, feats = inputs
    market = market.replace(circuit_lock=np.zeros_like(np.asarray(market.circuit_lock)))
    params = FlatEnv.make_params(market, feats, OPEN)
    ends = week_ends(inputs)
    d, d2 = int(ends[30]), int(ends[31])
    assert d2 - d >= 2                                    # a week with held days
    p = at_week(params, d)
    _, st = env.reset(jax.random.key(0), p)
    action = jnp.zeros(N).at[2].set(1.0)
    _, st2, r, term, info = step(jax.random.key(1), st, action, p)
    close = np.asarray(market.close, np.float64)
    growth = close[d2, 2] / close[d, 2]
    np.testing.assert_allclose(float(r), np.log(growth - BUY_RATE), rtol=1e-4, atol=2e-6)
    np.testing.assert_allclose(float(info["net_return"]), growth - BUY_RATE - 1, rtol=1e-4,
                               atol=2e-6)
    np.testing.assert_allclose(float(info["cost_frac"]), BUY_RATE, rtol=1e-5)
    np.testing.assert_allclose(float(info["turnover"]), 0.5, rtol=1e-6)   # one-way, from cash
    np.testing.assert_allclose(float(st2.port.value), 1e7 * (growth - BUY_RATE), rtol=1e-5)
    assert int(st2.t) == d2 and int(info["next_day"]) == d2 and not bool(term)
    np.testing.assert_allclose(np.asarray(info["executed_weights"]), np.eye(N)[2], atol=1e-6)


def _accounting_week(params, port, risk, buf, cnt, action, d, d2):
    """The week by hand with envs.common: risk exposure at d, projection, trade at d, hold;
    the risk manager steps on every day of the week and reads the daily net returns, as in
    the backtest."""
    risk2, expo = common.risk_exposure(risk, port, buf, buffer_mask(buf, cnt), d, params)
    target = common.project_stocks(jnp.asarray(action, jnp.float32), d, expo, params,
                                   port.weights)
    log_growth, cost, turnover = 0.0, 0.0, 0.0
    v0 = float(port.value)
    for day in range(d, d2):
        if day > d:
            risk2, _ = common.risk_exposure(risk2, port, buf, buffer_mask(buf, cnt), day, params)
        tgt = target if day == d else port.weights
        port, info, _ = common.trade_day(port, tgt, jnp.int32(day), params)
        buf, cnt = push_return(buf, cnt, common.net_return(info))
        log_growth += float(np.log1p(np.float64(common.net_return(info))))
        cost += float(info.costs.total)
        turnover += float(info.turnover)
    return port, risk2, expo, log_growth, cost / v0, turnover, buf, cnt


def test_reward_is_the_net_log_return_of_the_shared_accounting(inputs, cfg, env, step):
    # The conftest config switches every accounting branch on (capped brokerage, impact,
    # de-risking, CVaR budget, events), with random circuit locks; three consecutive weeks,
    # the CVaR budget tight enough to bind on the daily returns.
    params = FlatEnv.make_params(*inputs, cfg)
    params = params.replace(risk=params.risk.replace(cvar_budget=jnp.float32(0.004)))
    ends = week_ends(inputs)
    d = int(ends[25])
    p = at_week(params, d)
    _, st = env.reset(jax.random.key(0), p)
    rng = np.random.default_rng(0)
    port, risk = init_portfolio(N, 1e7), init_risk_state()
    buf, cnt = jnp.zeros(cfg.return_window, jnp.float32), jnp.zeros((), jnp.int32)
    expos = []
    for w in range(3):
        d, d2 = int(ends[25 + w]), int(ends[26 + w])
        action = rng.dirichlet(np.ones(N)).astype(np.float32)
        _, st, r, term, info = step(jax.random.key(w), st, action, p)
        port, risk, expo, lg, cost_frac, turn, buf, cnt = _accounting_week(
            p, port, risk, buf, cnt, action, d, d2)
        expos.append(float(expo))
        np.testing.assert_allclose(float(r), lg, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(info["exposure"]), float(expo), rtol=1e-6)
        np.testing.assert_allclose(float(info["cost_frac"]), cost_frac, rtol=1e-4)
        np.testing.assert_allclose(float(info["turnover"]), turn, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(np.asarray(st.port.weights), np.asarray(port.weights),
                                   atol=1e-5)
        np.testing.assert_allclose(float(st.port.value), float(port.value), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(st.ret_buf), np.asarray(buf), atol=1e-7)
        assert bool(st.risk.derisked) == bool(risk.derisked) and int(st.risk.since) == int(
            risk.since)
        assert not bool(term)
    # the budget bound after the first week: an exposure no gate level gives
    levels = [1.0, float(p.risk.derisked_exposure)]
    levels += [x * float(p.risk.event_reduction) for x in levels]
    assert any(min(abs(e - x) for x in levels) > 1e-3 for e in expos[1:]), expos
    assert float(cost_frac) > 0 and abs(float(r)) > 1e-4


def test_between_week_ends_the_drifted_book_is_held(inputs, env, step):
    # A second action inside the same week can not happen: one step spans the whole week, and
    # on its non-decision days nothing trades (all turnover and cost is the decision day's).
    params = FlatEnv.make_params(*inputs, OPEN)
    ends = week_ends(inputs)
    p = at_week(params, int(ends[33]))
    _, st = env.reset(jax.random.key(0), p)
    _, st, *_ = step(jax.random.key(0), st, jnp.ones(N), p)       # invested at equal weight
    d, d2 = int(ends[34]), int(ends[35])
    assert d2 - d >= 3
    info = step(jax.random.key(1), st, jnp.zeros(N).at[0].set(1.0), p)[4]
    first = common.trade_day(st.port, common.project_stocks(
        jnp.zeros(N).at[0].set(1.0), jnp.int32(d), info["exposure"], p, st.port.weights),
        jnp.int32(d), p)[1]
    np.testing.assert_allclose(float(info["turnover"]), float(first.turnover), rtol=1e-5)
    np.testing.assert_allclose(float(info["cost"]), float(first.costs.total), rtol=1e-5)
    assert int(info["day"]) == d and int(info["next_day"]) == d2 and float(first.turnover) > 0.1


def test_truncation_after_the_episode_length_and_at_the_end_of_data(inputs):
    env_cfg = dataclasses.replace(OPEN, macro_episode_weeks=3)
    params = FlatEnv.make_params(*inputs, env_cfg)
    env = FlatEnv(N, S)
    rollout = make_rollout(env, params, 9)
    actions = jnp.broadcast_to(jnp.ones(N, jnp.float32), (4, 9, N))
    _, _, out = rollout(jax.random.split(jax.random.key(0), 4), actions)
    trunc, term = np.asarray(out["truncated"]), np.asarray(out["terminated"])
    assert not term.any()
    np.testing.assert_array_equal(trunc, np.tile([False, False, True], (4, 3)))
    # at a truncation the next observation is a fresh reset (all cash), the final one is not
    lay = env.layout
    nxt = np.asarray(lay.unflatten(out["next_obs"])["weights"])
    fin = np.asarray(lay.unflatten(out["final"])["weights"])
    assert np.all(nxt[trunc] == 0.0) and np.all(fin[trunc].sum(-1) > 0.5)
    # end of data: the split ends two weeks after the start -> truncated at the second week
    ends = week_ends(inputs)
    short = FlatEnv.make_params(*inputs, OPEN, split=(0, int(ends[12]) + 1))
    p = at_week(short, int(ends[10]))
    _, st = env.reset(jax.random.key(0), p)
    st1 = env.step_env(jax.random.key(0), st, jnp.ones(N), p)[1]
    assert not bool(env.is_truncated(st1, p))
    _, st2, _, term2, info2 = env.step_env(jax.random.key(0), st1, jnp.ones(N), p)
    assert bool(env.is_truncated(st2, p)) and bool(info2["end_of_data"]) and not bool(term2)


def test_ruin_terminates(inputs):
    # a -70% crash of every stock in the week: value below ruin_value (50%) -> terminated
    market, feats = inputs
    ends = week_ends(inputs)
    d, d2 = int(ends[20]), int(ends[21])
    rets = np.asarray(market.returns).copy()
    rets[d2] = np.where(np.asarray(market.stock_mask)[d2], -0.7, 0.0)
    params = FlatEnv.make_params(market.replace(returns=rets), feats, OPEN)
    env = FlatEnv(N, S)
    p = at_week(params, d)
    _, st = env.reset(jax.random.key(0), p)
    _, st2, r, term, _ = env.step_env(jax.random.key(0), st, jnp.ones(N), p)
    assert bool(term) and bool(env.is_terminated(st2, p)) and not bool(env.is_truncated(st2, p))
    assert float(st2.port.value) < 0.5e7 and float(r) < np.log(0.5)


def test_observation_and_reward_are_causal(inputs, cfg, env):
    # Perturbing every market / feature row after day t leaves the observation at t unchanged;
    # the reward of the week d -> d' depends on rows <= d' only.
    params = FlatEnv.make_params(*inputs, cfg)
    ends = week_ends(inputs)
    d, d2 = int(ends[30]), int(ends[31])
    rng = np.random.default_rng(1)

    def perturbed(after: int):
        def shake(x):
            x = np.asarray(x)
            if x.ndim == 0 or x.shape[0] != T:
                return x
            noise = rng.standard_normal(x.shape).astype(np.float32)
            if x.dtype == bool:
                y = x.copy()
                y[after + 1:] = ~y[after + 1:]
                return y
            y = x.copy()
            if np.issubdtype(x.dtype, np.floating):
                y[after + 1:] = x[after + 1:] + 0.05 * noise[after + 1:]
            else:
                y[after + 1:] = (x[after + 1:] + 1) % 2
            return y
        names = ["returns", "circuit_lock", "tradable", "adv_value", "sector_returns",
                 "benchmark_returns", "stock_features", "macro_features", "sector_features",
                 "sector_mask", "adjacency", "regime_label"]
        return params.replace(**{k: jnp.asarray(shake(getattr(params, k))) for k in names})

    def week(p):
        p = at_week(p, d)
        obs0, st = env.reset(jax.random.key(0), p)
        obs1, _, r, _, _ = env.step_env(jax.random.key(0), st, jnp.linspace(1, 2, N), p)
        return np.asarray(obs0), np.asarray(obs1), float(r)

    base = week(params)
    after_d = week(perturbed(d))
    np.testing.assert_array_equal(base[0], after_d[0])                # obs at d
    assert not np.allclose(base[1], after_d[1])                       # (rows d+1.. matter later)
    after_d2 = week(perturbed(d2))
    np.testing.assert_array_equal(base[1], after_d2[1])               # obs at d'
    assert base[2] == after_d2[2]                                     # reward of the week


def test_layout_round_trip_and_policy_inputs(inputs, cfg):
    params = FlatEnv.make_params(*inputs, cfg)
    lay = FlatObsLayout(N)
    port = init_portfolio(N, 1e7).replace(weights=jnp.linspace(0.0, 0.1, N),
                                          peak=jnp.float32(1.25e7))
    t = jnp.int32(120)
    obs = flat_obs(port, t, params)
    assert obs.shape == (lay.size,) == (N * 22 + N + N + 18 + 2,)
    v = lay.unflatten(obs)
    np.testing.assert_array_equal(v["stock"], params.stock_features[t])
    np.testing.assert_array_equal(v["stock_mask"], params.tradable[t].astype(np.float32))
    np.testing.assert_allclose(v["portfolio"], [1.0 - 0.4, 0.2], rtol=1e-6)  # sum(w) = 0.4
    assert float(v["macro"][common.DRAWDOWN_INDEX]) == pytest.approx(0.2)
    np.testing.assert_array_equal(lay.flatten(*(v[k] for k in lay.slices)), obs)
    stock, mask, w, ctx = lay.policy_inputs(obs)
    np.testing.assert_array_equal(mask, np.asarray(params.tradable[t]))
    assert ctx.shape == (20,) and stock.shape == (N, 22)
    # no tradable stock: an all-True mask keeps the Dirichlet finite
    empty = lay.flatten(v["stock"], jnp.zeros(N), w, v["macro"], v["portfolio"])
    assert bool(jnp.all(lay.policy_inputs(empty)[1]))


def test_one_compile_serves_another_market(inputs, cfg):
    # market arrays are EnvParams leaves: a second market of the same shapes reuses the step
    env = FlatEnv(N, S, return_window=cfg.return_window)
    traces = []

    @jax.jit
    def run(p):
        traces.append(1)
        _, st = env.reset(jax.random.key(0), p)
        return env.step_env(jax.random.key(0), st, jnp.ones(N), p)[2]

    from tests.envs.make_inputs import make_inputs

    other = make_inputs(num_days=T, num_stocks=N, num_sectors=S, sector_features=FS, seed=5)
    a = run(FlatEnv.make_params(*inputs, cfg))
    b = run(FlatEnv.make_params(*other, cfg))
    assert len(traces) == 1 and float(a) != float(b)
