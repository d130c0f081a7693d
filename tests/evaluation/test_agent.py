"""HierarchicalStrategy: equal to stepping the HierarchicalEnv in a Python loop, causal, and the
goal moves only when the Macro agent decides (week ends and the window's first day)."""

from __future__ import annotations

import itertools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import CostConfig, EnvConfig, NetworkConfig, RiskConfig
from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv
from hrl_sarp_jax.envs.obs import MacroObsLayout
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.evaluation.agent import decision_records, regime_calls, run_agent
from hrl_sarp_jax.features.featureset import STOCK_FEATURES
from hrl_sarp_jax.networks.gnn import GNNConfig
from hrl_sarp_jax.networks.inputs import macro_inputs_from_views, micro_inputs
from hrl_sarp_jax.networks.macro import MacroActor
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training import rl_macro, rl_micro
from tests.envs.make_inputs import make_dates, make_inputs

T, N, S, FS, K, L = 200, 8, 3, 4, 2, 40
NET = NetworkConfig(gnn=GNNConfig(hidden=8, embedding=8, heads=2), macro_hidden=(16, 8),
                    attention_heads=2, attention_dim=8, goal_embedding=8,
                    micro_stock_hidden=(16, 8), critic_hidden=(16, 8))
# every accounting branch on: capped brokerage, impact, de-risking on drawdown, CVaR, events
ENV = EnvConfig(cost=CostConfig(brokerage_pct=0.0003, brokerage_cap=20.0, impact_coef=0.1),
                risk=RiskConfig(derisk_drawdown=0.03, rerisk_drawdown=0.015,
                                derisked_exposure=0.5, cvar_budget=0.02, event_reduction=0.5))


def _jitter(params, key, scale):
    """Tiny random nets are nearly uniform; push them so decisions differ by day and seed."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape, x.dtype)
                                     for x, k in zip(leaves, keys, strict=True)])


@pytest.fixture(scope="module")
def world():
    market, feats = make_inputs(num_days=T, num_stocks=N, num_sectors=S, sector_features=FS,
                                seed=3)
    params = make_env_params(market, feats, ENV)
    layout = MacroObsLayout(S, FS)
    ex_macro = macro_inputs_from_views(layout.unflatten(jnp.zeros(layout.size, jnp.float32)))
    goal0 = jnp.zeros(S + 3, jnp.float32)
    ex_micro = (micro_inputs(jnp.zeros((N, 22)), jnp.ones(N, bool), params.stock_sector, goal0,
                             jnp.zeros(N)), goal0, jnp.ones(N, bool))
    macro, micro = [], []
    for k in range(K):
        km, kn, jm, jn = jax.random.split(jax.random.key(10 + k), 4)
        macro.append(_jitter(MacroActor(NET).init(km, *ex_macro), jm, 0.5))
        micro.append(_jitter(MicroActor(NET).init(kn, *ex_micro), jn, 0.5))
    stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    week_end = np.asarray(market.week_end)
    return types.SimpleNamespace(p=params, macro=stack(macro), micro=stack(micro),
                                 week_end=week_end, market=market, feats=feats)


def _run(world, t0, params=None):
    return run_agent(NET, world.macro, world.micro, world.p if params is None else params, t0, L,
                     risk_manager=True, return_window=ENV.return_window)


def _first_week_end(week_end, at_least):
    return int(np.flatnonzero(week_end[at_least:])[0]) + at_least


def test_equals_stepping_the_hierarchical_env_in_a_python_loop(world):
    """Reference: HierarchicalEnv.step_env day by day from a reset at a week end, the Macro
    action from training's goal source (rl_micro.macro_goal_fn) on the env's own macro
    observation, the Micro action from Phase 3's frozen allocator (rl_macro.micro_allocator)
    on env.micro_obs_for. Same goals, regime calls, trades, costs, values, exposures."""
    p, macro, micro, week_end = world.p, world.macro, world.micro, world.week_end
    t0 = _first_week_end(week_end, 60)
    carry, res = _run(world, t0)

    env = HierarchicalEnv(N, S, FS, return_window=ENV.return_window)
    goal_fn = rl_micro.macro_goal_fn(NET, S, FS)
    allocate = rl_macro.micro_allocator(NET, N, S)

    @jax.jit
    def ref_step(state, macro_params, micro_params):
        obs = env.get_obs(state, p)
        a_macro = goal_fn(macro_params, obs["macro"])
        a_micro = allocate({"actor": micro_params, "stock_sector": p.stock_sector},
                           env.micro_obs_for(obs, a_macro, p))
        _, state2, _, _, info = env.step_env(jax.random.key(0), state,
                                             {"macro": a_macro, "micro": a_micro}, p)
        return state2, info

    for k in range(K):
        mk, nk = (jax.tree.map(lambda x, k=k: x[k], tree) for tree in (macro, micro))
        _, state = env.reset_env(jax.random.key(1), p.replace(start_lo=t0, start_hi=t0))
        assert int(state.t) == t0
        ref = []
        for _ in range(L):
            state, info = ref_step(state, mk, nk)
            ref.append(jax.device_get(info))
        stacked = {key: np.stack([r[key] for r in ref]) for key in
                   ("goal", "is_macro_step", "executed_weights", "net_return", "value",
                    "exposure", "cost_frac", "day")}
        np.testing.assert_array_equal(np.asarray(res.t[k]), stacked["day"])
        np.testing.assert_array_equal(np.asarray(carry.macro_step[k]), stacked["is_macro_step"])
        np.testing.assert_allclose(np.asarray(carry.goals[k]), stacked["goal"], atol=1e-6)
        np.testing.assert_array_equal(regime_calls(carry)[k],
                                      np.argmax(stacked["goal"][:, S:], -1))
        np.testing.assert_allclose(np.asarray(res.weights[k]), stacked["executed_weights"],
                                   atol=1e-6)
        np.testing.assert_allclose(np.asarray(res.net_return[k]), stacked["net_return"],
                                   atol=1e-7)
        np.testing.assert_allclose(np.asarray(res.cost_frac[k]), stacked["cost_frac"],
                                   rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(np.asarray(res.value[k]), stacked["value"], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(res.exposure[k]), stacked["exposure"], rtol=1e-5)
    # the test has teeth: the two seeds decide differently, and both regimes and weeks vary
    assert not np.allclose(np.asarray(carry.goals[0]), np.asarray(carry.goals[1]))
    assert np.asarray(carry.macro_step).sum() == K * week_end[t0: t0 + L].sum()


def test_phase3_continuous_validation_is_the_backtest_of_its_window(world):
    """Phase 3's in-training validation (``train.validation: continuous``: MacroEnv with the
    frozen Micro inside, one walk from the window's first week end) earns, week by week, the
    backtest's daily net returns of the same Macro and Micro over the same days (one book,
    the daily risk manager with CVaR and events), so its validation Sharpe is the backtest's
    weekly Sharpe."""
    from hrl_sarp_jax.envs.macro import MacroEnv
    from hrl_sarp_jax.training.validation import BLOCK_WEEKS, weekly_plan

    k, lo, hi = 0, 100, T - 1
    mk, nk = (jax.tree.map(lambda x: x[k], tree) for tree in (world.macro, world.micro))
    policy = {"actor": nk, "stock_sector": jnp.asarray(world.p.stock_sector)}
    weekly = make_env_params(world.market, world.feats, ENV, weekly=True, split=(lo, hi),
                             policy_params=policy)
    val, days = weekly_plan("continuous", world.week_end, lo, hi, weekly)
    env = MacroEnv(N, S, FS, return_window=ENV.return_window,
                   allocator=rl_macro.micro_allocator(NET, N, S))
    spec = rl_macro.Phase3Spec(num_envs=2, rollout_len=2, epochs=1, num_minibatches=1,
                               updates_per_chunk=1, total_updates=1, warmup_updates=0,
                               eval_block_weeks=BLOCK_WEEKS)
    p3 = rl_macro.make_phase3(env, NET, spec)
    ev = jax.jit(p3.evaluate)({"params": {"actor": mk["params"]}}, val, jnp.asarray(days),
                              jax.random.key(0))
    day0 = int(days[0])
    ends = np.flatnonzero(world.week_end)
    ends = ends[(ends > day0) & (ends <= hi)]
    _, res = run_agent(NET, world.macro, world.micro, world.p, day0, int(ends[-1]) - day0,
                       risk_manager=True, return_window=ENV.return_window)
    daily = np.asarray(res.net_return[k], np.float64)
    bounds = np.concatenate([[day0], ends]) - day0
    week = np.array([np.prod(1.0 + daily[a:b]) - 1.0 for a, b in itertools.pairwise(bounds)])
    assert week.size == int(np.sum(ev["episode_weeks"])) >= 10
    want = week.mean() / week.std(ddof=1) * np.sqrt(52)
    np.testing.assert_allclose(float(ev["val_sharpe"]), want, rtol=1e-3)
    np.testing.assert_allclose(float(ev["val_return"]), np.prod(1.0 + week) - 1.0, rtol=1e-4,
                               atol=1e-6)


def test_equal_sectors_strategy_is_the_micro_on_the_fixed_goal(world):
    """HierarchicalStrategy(macro=False) (the agent's Micro on equal sector weights, the Macro's
    counterfactual in the many-market report) equals MicroEnv with the 'fixed' goal source
    stepped day by day with Phase 3's frozen allocator: same trades, returns and exposures."""
    from hrl_sarp_jax.envs.micro import MicroEnv
    from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy
    from hrl_sarp_jax.evaluation.backtest import rebalance_mask, run_backtest

    p, week_end = world.p, world.week_end
    t0 = _first_week_end(week_end, 60)
    carries = HierarchicalStrategy(NET).init_carries(world.macro, world.micro, p, t0, L)
    _, res = run_backtest(HierarchicalStrategy(NET, macro=False), carries, p, t0,
                          rebalance_mask("daily", t0, L, week_end), batched=True,
                          risk_manager=True, return_window=ENV.return_window)
    env = MicroEnv(N, S, return_window=ENV.return_window, goal_source="fixed")
    allocate = jax.jit(rl_macro.micro_allocator(NET, N, S))
    step = jax.jit(env.step_env)
    for k in range(K):
        nk = jax.tree.map(lambda x, k=k: x[k], world.micro)
        obs, state = env.reset_env(jax.random.key(0), p.replace(start_lo=t0, start_hi=t0))
        nets, weights = [], []
        for _ in range(L):
            a = allocate({"actor": nk, "stock_sector": p.stock_sector}, obs)
            obs, state, _, _, info = step(jax.random.key(0), state, a, p)
            nets.append(float(info["net_return"]))
            weights.append(np.asarray(info["executed_weights"]))
        np.testing.assert_allclose(np.asarray(res.net_return[k]), nets, atol=1e-7)
        np.testing.assert_allclose(np.asarray(res.weights[k]), np.stack(weights), atol=1e-6)
    # the test has teeth: the two seeds' Micros trade differently on the same goal
    assert not np.allclose(np.asarray(res.weights[0]), np.asarray(res.weights[1]))


def test_macro_only_strategy_is_the_macro_env_without_an_allocator(world):
    """HierarchicalStrategy(micro=False) re-allocating weekly (the Macro's goal split equally
    within sectors, the many-market report's ``hrl_sarp_macro_only``) holds, at every week
    end, the book of MacroEnv without an allocator stepped with the same Macro's actions.
    With the exposure at 1 (gate, CVaR and events off): MacroEnv scales the sector weights by
    the exposure before its projection, the backtest projects onto the exposure's budget."""
    from hrl_sarp_jax.envs.macro import MacroEnv
    from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy
    from hrl_sarp_jax.evaluation.backtest import rebalance_mask, run_backtest

    # no stock cap, so the equal split and a Micro's weights are different books
    loose = lambda q: q.replace(  # noqa: E731
        constraints=q.constraints.replace(max_stock_weight=jnp.float32(1.0)),
        risk=q.risk.replace(derisk_drawdown=jnp.float32(1.0), cvar_budget=jnp.float32(0.0),
                            event_reduction=jnp.float32(0.0)))
    p, week_end = loose(world.p), world.week_end
    t0 = _first_week_end(week_end, 60)
    strategy = HierarchicalStrategy(NET, micro=False)
    carries = strategy.init_carries(world.macro, world.micro, p, t0, L)
    _, res = run_backtest(strategy, carries, p, t0, rebalance_mask("weekly", t0, L, week_end),
                          batched=True, risk_manager=True, return_window=ENV.return_window)
    weekly = loose(make_env_params(world.market, world.feats, ENV, weekly=True))
    env = MacroEnv(N, S, FS, return_window=ENV.return_window)
    goal_fn = rl_micro.macro_goal_fn(NET, S, FS)
    step = jax.jit(env.step_env)
    ends = [d - t0 for d in np.flatnonzero(week_end) if t0 < d <= t0 + L - 1]
    for k in range(K):
        mk = jax.tree.map(lambda x, k=k: x[k], world.macro)
        obs, state = env.reset_env(jax.random.key(0),
                                   weekly.replace(start_lo=t0, start_hi=t0))
        for i in ends:
            obs, state, _, _, _ = step(jax.random.key(0), state, goal_fn(mk, obs), weekly)
            # the backtest's value after day t0 + i - 1's returns is MacroEnv's at that week end
            np.testing.assert_allclose(float(res.value[k][i - 1]), float(state.port.value),
                                       rtol=1e-5)
        assert len(ends) >= 4


def test_macro_value_strategy_puts_each_goal_weight_on_the_cheapest_names(world):
    """HierarchicalStrategy(micro=False, value_names=2) (the many-market report's
    ``hrl_sarp_macro_value``): on every rebalance day its target gives each sector the goal's
    weight, split equally over the sector's two tradable names with the lowest pe_z (NumPy);
    with value_names 0 it is the equal split."""
    from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy
    from hrl_sarp_jax.evaluation.backtest import rebalance_mask, run_backtest

    p, week_end = world.p, world.week_end
    t0 = _first_week_end(week_end, 60)
    reb = rebalance_mask("weekly", t0, L, week_end)
    strategy = HierarchicalStrategy(NET, micro=False, value_names=2)
    carry, res = run_backtest(strategy, strategy.init_carries(world.macro, world.micro, p, t0, L),
                              p, t0, reb, batched=True, risk_manager=True,
                              return_window=ENV.return_window)
    pe = np.asarray(p.stock_features)[:, :, STOCK_FEATURES.index("pe_z")]
    trad, sec = np.asarray(p.tradable), np.asarray(p.stock_sector)
    goals, target = np.asarray(carry.goals), np.asarray(res.target)
    days = np.flatnonzero(reb)
    for k in range(K):
        for i in days:
            t, want = t0 + i, np.zeros(N)
            for s in range(S):
                names = np.flatnonzero(trad[t] & (sec == s))
                cheap = names[np.argsort(pe[t, names], kind="stable")[:2]]
                want[cheap] = goals[k, i, s] / max(len(cheap), 1)
            np.testing.assert_allclose(target[k, i], want, rtol=1e-5, atol=1e-7)
    assert len(days) >= 4 and (np.count_nonzero(target[0, days[0]]) <= 2 * S)
    plain = HierarchicalStrategy(NET, micro=False)
    _, eq = run_backtest(plain, plain.init_carries(world.macro, world.micro, p, t0, L), p, t0,
                         reb, batched=True, risk_manager=True, return_window=ENV.return_window)
    assert not np.allclose(np.asarray(eq.target), target)  # the screen is not the equal split


def test_decisions_never_read_rows_after_the_decision_day(world):
    """Perturb every market/feature row > tc (the calendar stays): goals, regime calls and
    executed weights of days <= tc are unchanged, later ones change."""
    p, week_end = world.p, world.week_end
    t0 = _first_week_end(week_end, 60)
    tc = t0 + 17
    base_carry, base = _run(world, t0)

    rng = np.random.default_rng(0)
    late = np.arange(T) > tc

    def bend(x):
        x = np.asarray(x)
        m = late.reshape(-1, *([1] * (x.ndim - 1)))
        if x.dtype == bool:
            new = rng.random(x.shape) < 0.5
        elif np.issubdtype(x.dtype, np.integer):
            new = rng.integers(-1, 3, x.shape).astype(x.dtype)
        else:
            new = (x + rng.normal(0, 0.05 + np.abs(x).mean(), x.shape)).astype(x.dtype)
        return jnp.asarray(np.where(m, new, x))

    fields = ("returns", "circuit_lock", "tradable", "adv_value", "sector_returns",
              "benchmark_returns", "stock_features", "macro_features", "sector_features",
              "sector_mask", "adjacency", "regime_label")
    bent = p.replace(**{f: bend(getattr(p, f)) for f in fields})
    carry, res = _run(world, t0, bent)
    ic = tc - t0
    np.testing.assert_array_equal(np.asarray(carry.goals)[:, : ic + 1],
                                  np.asarray(base_carry.goals)[:, : ic + 1])
    np.testing.assert_array_equal(np.asarray(res.weights)[:, : ic + 1],
                                  np.asarray(base.weights)[:, : ic + 1])
    np.testing.assert_array_equal(np.asarray(res.net_return)[:, :ic],
                                  np.asarray(base.net_return)[:, :ic])
    assert not np.allclose(np.asarray(res.weights)[:, ic + 1:],
                           np.asarray(base.weights)[:, ic + 1:])


def test_goal_changes_only_when_the_macro_decides(world):
    """A window opening mid-week: the Macro decides on day 0 (the book starts in cash) and at
    every week end, never in between; the decision log follows the carry and the result."""
    week_end = world.week_end
    t0 = int(np.flatnonzero(~week_end[61:])[0]) + 61
    carry, res = _run(world, t0)
    days = np.arange(t0, t0 + L)
    expected = week_end[days].copy()
    expected[0] = True
    steps = np.asarray(carry.macro_step)
    np.testing.assert_array_equal(steps, np.broadcast_to(expected, (K, L)))
    goals = np.asarray(carry.goals)
    changed = np.any(goals[:, 1:] != goals[:, :-1], axis=-1)
    assert not np.any(changed & ~steps[:, 1:])
    assert changed.sum() >= 2  # the goal does move at week ends
    # goals: projected sector weights (sector cap, budget 1 - min_cash) ⊕ a regime one-hot
    cons = ENV.constraints
    assert np.all(goals[..., :S] <= cons.max_sector_weight + 1e-5)
    np.testing.assert_allclose(goals[..., :S].sum(-1), 1.0 - cons.min_cash, atol=1e-5)
    np.testing.assert_array_equal(goals[..., S:].sum(-1), 1.0)

    dates = make_dates(T, 3)
    tickers = (*(f"T{i}" for i in range(N - 1)), "")
    sectors = ("IT", "FMCG", "Metals")
    recs = decision_records(carry, res, dates, tickers, sectors, seeds=[7, 8], top=3)
    macro_recs = [r for r in recs if r["kind"] == "macro"]
    micro_recs = [r for r in recs if r["kind"] == "micro"]
    assert len(macro_recs) == steps.sum() and len(micro_recs) == K * L
    first = macro_recs[0]
    assert first["date"] == str(dates[t0]) and first["seed"] == 7
    np.testing.assert_allclose([first["sector_weights"][s] for s in sectors], goals[0, 0, :S],
                               atol=1e-6)
    assert first["regime"] == ("bull", "bear", "sideways")[int(np.argmax(goals[0, 0, S:]))]
    m = micro_recs[-1]  # last day, seed index 1
    w = np.asarray(res.weights)[1, -1]
    top = np.argsort(-w[: N - 1], kind="stable")[:3]
    assert list(m["top_weights"]) == [tickers[j] for j in top if w[j] > 0]
    np.testing.assert_allclose(m["cash"], 1.0 - w.sum(), atol=1e-6)
    assert m["date"] == str(dates[t0 + L - 1]) and m["seed"] == 8


def test_mismatched_seed_stacks_are_refused(world):
    one = jax.tree.map(lambda x: x[:1], world.micro)
    from hrl_sarp_jax.errors import HrlSarpError

    with pytest.raises(HrlSarpError, match="2 Macro seeds but 1 Micro"):
        run_agent(NET, world.macro, one, world.p, 70, L)


def test_weekly_frequency_trades_on_the_macro_days_only(world):
    """env.micro_frequency = weekly: the hierarchy re-allocates on the Macro's decision days
    (the window's first day and week ends), holds the drifted book in between, and on those
    days targets exactly what the daily agent targets from the same book."""
    week_end = world.week_end
    t0 = int(np.flatnonzero(~week_end[61:])[0]) + 61
    carry, res = run_agent(NET, world.macro, world.micro, world.p, t0, L, risk_manager=True,
                           return_window=ENV.return_window, frequency="weekly")
    expected = week_end[t0: t0 + L].copy()
    expected[0] = True
    np.testing.assert_array_equal(np.asarray(res.rebalanced), np.broadcast_to(expected, (K, L)))
    np.testing.assert_array_equal(np.asarray(carry.macro_step)[:, expected],
                                  np.ones((K, expected.sum()), bool))
    hold = ~expected
    np.testing.assert_array_equal(np.asarray(res.turnover)[:, hold], 0.0)
    # day 0 is the same decision from the same (cash) book under either frequency
    _, daily = _run(world, t0)
    np.testing.assert_allclose(np.asarray(res.weights)[:, 0], np.asarray(daily.weights)[:, 0],
                               atol=1e-6)
    assert np.asarray(res.turnover).sum() < np.asarray(daily.turnover).sum()
    from hrl_sarp_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"env\.micro_frequency"):
        run_agent(NET, world.macro, world.micro, world.p, t0, L, frequency="hourly")


def test_on_goal_change_holds_the_weeks_the_goal_did_not_move(world):
    """env.micro_frequency = on_goal_change: on the weekly schedule, the hierarchy re-allocates
    on a Macro day only when 0.5 * sum |g - g_last| >= goal_change or the risk manager's
    exposure changed, g_last / the exposure those of its last re-allocation (the NumPy
    recursion over the logged goals and exposures below); a held day targets the drifted
    book and trades nothing. With goal_change 0 it is the weekly run; the ensemble holds
    only when every seed would."""
    week_end = world.week_end
    t0 = int(np.flatnonzero(~week_end[61:])[0]) + 61
    kw = {"risk_manager": True, "return_window": ENV.return_window,
          "frequency": "on_goal_change"}
    _, weekly = run_agent(NET, world.macro, world.micro, world.p, t0, L, risk_manager=True,
                          return_window=ENV.return_window, frequency="weekly")
    _, zero = run_agent(NET, world.macro, world.micro, world.p, t0, L, goal_change=0.0, **kw)
    np.testing.assert_allclose(np.asarray(zero.weights), np.asarray(weekly.weights), atol=1e-6)
    carry, res = run_agent(NET, world.macro, world.micro, world.p, t0, L, goal_change=0.05,
                           **kw)
    goals, macro_days = np.asarray(carry.goals)[..., :S], np.asarray(carry.macro_step)
    expo, traded = np.asarray(res.exposure), np.asarray(res.turnover) > 0
    target, drifted = np.asarray(res.target), np.asarray(res.drifted)
    held_any = False
    for k in range(K):
        last, last_expo, acts = goals[k, 0], 1.0, []
        for i in np.flatnonzero(macro_days[k]):
            act = (i == 0 or 0.5 * np.abs(goals[k, i] - last).sum() >= 0.05
                   or expo[k, i] != last_expo)
            last, last_expo = (goals[k, i], expo[k, i]) if act else (last, last_expo)
            acts.append(act)
        days = np.flatnonzero(macro_days[k])
        held = days[~np.asarray(acts)]
        held_any |= held.size > 0
        np.testing.assert_array_equal(target[k, held], drifted[k, held])
        assert not traded[k, held].any() and not traded[k, ~macro_days[k]].any()
        assert traded[k, days[np.asarray(acts)]].any()
    assert held_any                           # the threshold binds on some weeks
    from hrl_sarp_jax.evaluation.agent import EnsembleStrategy, HierarchicalStrategy

    ens = EnsembleStrategy(NET, goal_change=0.05)
    holds = np.asarray(ens.holds(carry.replace(hold=jnp.asarray([True, False]))))
    assert not holds and ens.holds(carry.replace(hold=jnp.asarray([True, True])))
    assert HierarchicalStrategy(NET).holds(carry) is None
    from hrl_sarp_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"goal_change .* .on_goal_change. only"):
        run_agent(NET, world.macro, world.micro, world.p, t0, L, frequency="weekly",
                  goal_change=0.05)
