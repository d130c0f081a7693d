"""Episode semantics under gymnax's own step: auto-reset, truncation vs termination, end of data,
calendar weeks, one trace per shape, and no look-ahead."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.experimental import RolloutWrapper

from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.rewards import sector_weights
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.risk.constraints import project_sector_weights
from tests.envs.conftest import FS, N, S

EQUAL = jnp.full((N,), 1.0 / N, jnp.float32)
MACRO_A = jnp.array([0.5, 0.3, 0.2, 0.1, 2.0, 0.3], jnp.float32)


def _tree_close(a, b):
    """Integer and bool leaves exactly, float leaves to float32 rounding (rtol 1e-6): for two
    different compiled programs (e.g. the reset inside the jitted step vs jitted reset alone),
    which XLA may fuse and vectorise differently."""
    def close(x, y):
        x, y = np.asarray(x), np.asarray(y)
        if np.issubdtype(x.dtype, np.floating):
            return x.shape == y.shape and np.allclose(x, y, rtol=1e-6, atol=1e-7)
        return np.array_equal(x, y)
    return all(close(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_truncates_at_length_then_autoresets(micro_env, micro_params):
    env, p = micro_env, micro_params
    key = jax.random.key(7)
    obs, st = env.reset(jax.random.key(0), p)
    length = p.max_steps_in_episode
    for i in range(length):
        key, k = jax.random.split(key)
        obs, st2, _r, term, trunc, info = env.step(k, st, EQUAL, p)
        assert not bool(term)
        assert bool(trunc) == (i == length - 1)
        if i < length - 1:
            assert int(st2.t) == int(st.t) + 1 and np.array_equal(obs, info["final_observation"])
        st_prev, st = st, st2
    # auto-reset: the returned state/obs are reset_env(key_reset); final_observation is day t+1's
    # (the reset inside step is another program than reset alone: equal to float32 rounding)
    _, k_reset = jax.random.split(k)
    obs_re, st_re = env.reset(k_reset, p)
    assert int(st.time) == 0 and _tree_close(st, st_re) and _tree_close(obs, obs_re)
    expect_final = common.micro_obs(jax.tree.map(lambda x: x, st_prev.port), st_prev.goal,
                                    st_prev.t, p)
    assert not np.array_equal(info["final_observation"], expect_final)  # the book moved on
    assert int(p.start_lo) <= int(st.start) <= int(p.start_hi)


def test_end_of_data_truncates_before_indexing_past_t_hi(micro_env, micro_params):
    env, p = micro_env, micro_params
    t_hi = int(p.t_hi)
    assert t_hi == p.returns.shape[0] - 1
    p = p.replace(start_lo=jnp.int32(t_hi - 3), start_hi=jnp.int32(t_hi - 3))
    _, st = env.reset(jax.random.key(0), p)
    flags = []
    for i in range(3):
        _, st, _, _term, trunc, info = env.step(jax.random.key(i), st, EQUAL, p)
        flags.append((bool(trunc), bool(info["end_of_data"]), int(info["day"])))
    assert flags == [(False, False, t_hi - 3), (False, False, t_hi - 2), (True, True, t_hi - 1)]


def test_ruin_and_drawdown_stop_terminate(micro_env, micro_params):
    env, p = micro_env, micro_params
    _, st = env.reset(jax.random.key(0), p)
    _, st2, _, term, trunc, info = env.step(jax.random.key(1), st, EQUAL,
                                            p.replace(ruin_value=jnp.float32(2.0)))
    assert bool(term) and bool(info["terminated"]) and not bool(trunc) and int(st2.time) == 0
    book = lambda v: PortfolioState(weights=EQUAL, value=jnp.float32(v),  # noqa: E731
                                    peak=jnp.float32(1e7))
    assert bool(common.is_ruined(book(0.49e7), p)) and not bool(common.is_ruined(book(0.9e7), p))
    stop = p.replace(drawdown_stop=jnp.float32(0.05))
    assert bool(common.is_ruined(book(0.94e7), stop))
    assert not bool(common.is_ruined(book(0.96e7), stop))


def test_macro_steps_are_calendar_weeks(macro_env, macro_params):
    env, p = macro_env, macro_params
    week_end = np.asarray(p.week_end)
    _, st = env.reset(jax.random.key(3), p)
    assert week_end[int(st.t)]
    for i in range(4):
        _, st, _, _, trunc, info = env.step(jax.random.key(i), st, MACRO_A, p)
        d, d1 = int(info["day"]), int(info["next_day"])
        assert week_end[d] and week_end[d1] and not week_end[d + 1: d1].any()
    # only one full week left -> the first step is truncated (end of data), never past t_hi
    ends = np.flatnonzero(week_end)
    last_start = ends[ends <= int(p.t_hi)][-2]
    p1 = p.replace(start_lo=jnp.int32(last_start), start_hi=jnp.int32(last_start))
    _, st = env.reset(jax.random.key(0), p1)
    _, _, _, _, trunc, info = env.step(jax.random.key(0), st, MACRO_A, p1)
    assert bool(trunc) and bool(info["end_of_data"]) and int(info["next_day"]) <= int(p.t_hi)


def test_one_trace_per_shape(micro_env, micro_params):
    """Reset and step states have identical avals (no weak types), so step traces once."""
    env, p = micro_env, micro_params
    traces = []

    def counted(key, state, action, params):
        traces.append(1)
        return env.step_env(key, state, action, params)

    step = jax.jit(counted)
    _, st = env.reset(jax.random.key(0), p)
    assert not any(x.weak_type for x in jax.tree.leaves(jax.tree.map(jax.typeof, st)))
    for i in range(3):
        st = step(jax.random.key(i), st, EQUAL, p)[1]
    step(jax.random.key(9), st, EQUAL, p.replace(start_lo=jnp.int32(5)))  # curriculum: leaves
    assert len(traces) == 1


def test_rollout_wrapper_runs_unchanged(micro_env, micro_params):
    env, p = micro_env, micro_params
    wrapper = RolloutWrapper(lambda w, obs, key: w, env=env, env_params=p, num_env_steps=45)
    obs, _action, reward, _next_obs, done, cum = wrapper.single_rollout(jax.random.key(5), EQUAL)
    length = p.max_steps_in_episode
    assert obs.shape == (45, env.layout.size)
    assert np.flatnonzero(np.asarray(done)).tolist() == [length - 1]
    np.testing.assert_allclose(cum[0], np.sum(reward[:length]), rtol=1e-5)


def _perturb_after(p, day: int, rng):
    """Params with every market/feature row > day replaced by noise."""
    def noise(x):
        x = np.array(x)
        x[day + 1:] = rng.normal(size=x[day + 1:].shape).astype(x.dtype) * 0.05
        return jnp.asarray(x)

    fields = ["returns", "adv_value", "sector_returns", "benchmark_returns", "stock_features",
              "macro_features", "sector_features", "adjacency"]
    return p.replace(**{f: noise(getattr(p, f)) for f in fields})


def test_no_look_ahead_micro(micro_env, micro_params):
    """Obs at t and the reward of the action at t depend on nothing after t+1 (returns[t+1]);
    features of t+1 only enter the next observation."""
    env, p = micro_env, micro_params
    rng = np.random.default_rng(0)
    obs, st = env.reset(jax.random.key(2), p)
    t = int(st.t)
    # gymnax's step: [2] is the reward, [5]["final_observation"] the observation at t+1
    out = env.step(jax.random.key(1), st, EQUAL, p)
    p_far = _perturb_after(p, t + 1, rng)
    obs_far, st_far = env.reset(jax.random.key(2), p_far)
    out_far = env.step(jax.random.key(1), st_far, EQUAL, p_far)
    nxt = lambda o: o[5]["final_observation"]  # noqa: E731
    assert np.array_equal(obs, obs_far) and np.array_equal(out[2], out_far[2])
    assert np.array_equal(nxt(out), nxt(out_far))  # next obs: features of t+1 untouched
    p_next = _perturb_after(p, t, rng).replace(returns=p.returns)
    out_next = env.step(jax.random.key(1), st, EQUAL, p_next)
    assert np.array_equal(out[2], out_next[2]) and not np.array_equal(nxt(out), nxt(out_next))


def test_no_look_ahead_macro(macro_env, macro_params):
    env, p = macro_env, macro_params
    obs, st = env.reset(jax.random.key(4), p)
    out = env.step(jax.random.key(1), st, MACRO_A, p)
    d_next = int(out[5]["next_day"])
    p_far = _perturb_after(p, d_next, np.random.default_rng(1))
    obs_far, st_far = env.reset(jax.random.key(4), p_far)
    out_far = env.step(jax.random.key(1), st_far, MACRO_A, p_far)
    assert np.array_equal(obs, obs_far) and np.array_equal(out[2], out_far[2])
    assert np.array_equal(out[5]["final_observation"], out_far[5]["final_observation"])
    # and the week's own returns do matter (the reward is not computed from stale data)
    p_week = p.replace(returns=p.returns.at[d_next].add(0.01))
    assert not np.array_equal(out[2], env.step(jax.random.key(1), st, MACRO_A, p_week)[2])


@pytest.mark.parametrize("source", ["sampled", "policy"])
def test_goal_sources_refresh_at_week_ends(micro_params, source):
    from hrl_sarp_jax.envs.micro import MicroEnv

    p = micro_params
    # a fixed linear "policy" of the macro obs (it reads the drawdown-filled macro row)
    policy = lambda w, obs: jnp.concatenate([jax.nn.softmax(obs[:S] * w), obs[3:6]])  # noqa: E731
    env = MicroEnv(N, S, goal_source=source, goal_fn=policy if source == "policy" else None)
    p = p.replace(policy_params=jnp.float32(2.0)) if source == "policy" else p
    step = jax.jit(lambda k, s: env.step_env(k, s, EQUAL, p))
    _, st = env.reset(jax.random.key(0), p)
    week_end = np.asarray(p.week_end)
    goals, redrawn = [np.asarray(st.goal)], []
    for i in range(12):
        obs, st, *_ = step(jax.random.key(i), st)
        goals.append(np.asarray(st.goal))
        assert np.array_equal(env.layout.unflatten(obs)["goal"], goals[-1])
        if week_end[int(st.t)]:
            # a new goal: this step's draw, or the policy on the new day's book (computed here
            # by another program: equal to float32 rounding). Capped goals pile up on a few
            # vertices, so a draw can repeat the old goal up to rounding: compare with the
            # draw, not with the old goal.
            if source == "policy":
                expect = common.macro_action_to_goal(
                    policy(2.0, common.macro_obs(st.port, st.t, p)), p, st.port.weights)
            else:
                expect = common.sampled_goal(jax.random.key(i), p)
            np.testing.assert_allclose(goals[-1], expect, rtol=1e-6, atol=1e-7)
            redrawn.append(not np.allclose(goals[-1], goals[-2], rtol=0, atol=1e-6))
        else:  # held between week ends: the state's own goal, bit for bit
            np.testing.assert_array_equal(goals[-1], goals[-2])
    assert len(redrawn) >= 2 and any(redrawn)  # week ends seen, and one moved the goal
    g = np.stack(goals)
    assert np.all(g[:, :S] <= 0.35 + 1e-6) and np.allclose(g[:, :S].sum(1), 0.98, atol=1e-5)
    assert np.array_equal(g[:, S:].sum(1), np.ones(len(g)))


def test_macro_with_frozen_allocator_follows_the_goal(macro_params):
    """A frozen Micro policy that reads the goal from its observation steers the stock book."""
    from hrl_sarp_jax.envs.macro import MacroEnv
    from hrl_sarp_jax.envs.obs import MicroObsLayout

    layout = MicroObsLayout(N, S)
    ids = jnp.asarray(macro_params.stock_sector)

    def allocator(_, obs):
        v = layout.unflatten(obs)
        cnt = jnp.zeros(S).at[ids].add(v["stock_mask"])
        return v["goal"][ids] * v["stock_mask"] / jnp.maximum(cnt[ids], 1.0)

    env = MacroEnv(N, S, 4, allocator=allocator)
    # no stock cap and full exposure, so the allocator's book can match the goal exactly
    p = macro_params.replace(
        risk=macro_params.risk.replace(cvar_budget=jnp.float32(0.0),
                                       event_reduction=jnp.float32(0.0),
                                       derisked_exposure=jnp.float32(1.0)),
        constraints=macro_params.constraints.replace(max_stock_weight=jnp.float32(1.0)))
    _, st = env.reset(jax.random.key(1), p)
    a = jnp.array([0.1, 0.3, 0.6, 0.0, 0.0, 1.0], jnp.float32)
    _, st, _, _, info = jax.jit(env.step_env)(jax.random.key(0), st, a, p)
    held = np.asarray(common.sector_weights(st.port.weights, ids, S))
    goal = np.asarray(info["goal"][:S])
    assert np.allclose(goal, [0.28, 0.35, 0.35], atol=1e-6)
    assert np.abs(held - goal).max() < 0.03 and np.corrcoef(held, goal)[0, 1] > 0.95


@pytest.mark.parametrize("cvar_budget", [0.0, 0.004])
def test_macro_with_allocator_trades_the_hierarchical_envs_days(macro_params, cvar_budget):
    """Phase 3's env (MacroEnv with a frozen Micro allocator) and HierarchicalEnv (the
    backtest's path) given the same Macro actions and Micro policy hold the same book every
    week: the risk manager steps daily in both (tight drawdown gate, timed re-risk, event
    cuts, and a CVaR budget read on the daily net returns)."""
    from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv
    from hrl_sarp_jax.envs.macro import MacroEnv
    from hrl_sarp_jax.envs.obs import MicroObsLayout

    layout = MicroObsLayout(N, S)
    ids = jnp.asarray(macro_params.stock_sector)

    def allocator(_, obs):  # tilts towards the goal, so its book depends on the day's inputs
        v = layout.unflatten(obs)
        cnt = jnp.zeros(S).at[ids].add(v["stock_mask"])
        return (v["goal"][ids] + 0.05 * v["weights"]) * v["stock_mask"] / jnp.maximum(
            cnt[ids], 1.0)

    p = macro_params.replace(risk=macro_params.risk.replace(
        cvar_budget=jnp.float32(cvar_budget)))
    macro, hier = MacroEnv(N, S, FS, allocator=allocator), HierarchicalEnv(N, S, FS)
    actions = jax.random.uniform(jax.random.key(7), (6, S + 3))
    _, ms = macro.reset(jax.random.key(3), p)
    obs, hs = hier.reset(jax.random.key(3), p)
    assert int(ms.t) == int(hs.t)
    m_step, h_step = jax.jit(macro.step_env), jax.jit(hier.step_env)
    expos = []
    for a in actions:
        _, ms, _, _, _ = m_step(jax.random.key(0), ms, a, p)
        week = []
        while True:
            micro = allocator(None, hier.micro_obs_for(obs, a, p))
            obs, hs, _, _, info = h_step(jax.random.key(0), hs, {"macro": a, "micro": micro}, p)
            week.append(float(info["exposure"]))
            if int(hs.t) == int(ms.t):
                break
        expos.append(week)
        np.testing.assert_allclose(np.asarray(hs.port.weights), np.asarray(ms.port.weights),
                                   atol=2e-6)
        np.testing.assert_allclose(float(hs.port.value), float(ms.port.value), rtol=1e-6)
        assert bool(hs.risk.derisked) == bool(ms.risk.derisked)
    # the exposure moved inside some week: a weekly gate would have held another book
    assert any(len(set(w)) > 1 for w in expos)
    if cvar_budget:  # the budget binds: exposures no gate level gives (0.5, 1, their events)
        levels = {1.0, float(p.risk.derisked_exposure)}
        levels |= {x * float(p.risk.event_reduction) for x in set(levels)}
        assert any(min(abs(e - x) for x in levels) > 1e-3 for w in expos for e in w)


def test_hierarchical_micro_obs_for_sets_the_goal_only_on_macro_steps(hier_env, micro_params):
    env, p = hier_env, micro_params
    obs, _ = env.reset(jax.random.key(0), p)
    assert bool(obs["is_macro_step"])
    new = env.micro_obs_for(obs, MACRO_A, p)
    goal = env.micro_layout.unflatten(new)["goal"]
    np.testing.assert_allclose(goal, common.macro_action_to_goal(MACRO_A, p, None), rtol=1e-6)
    assert goal[S:].tolist() == [0.0, 1.0, 0.0]  # argmax of the regime scores (Bear)
    off = {**obs, "is_macro_step": jnp.bool_(False)}
    assert np.array_equal(env.micro_obs_for(off, MACRO_A, p), obs["micro"])


def test_her_relabelling_recomputes_the_micro_reward(micro_env, micro_params):
    """r(g2) = r(g1) - goal_reward(ach, g1) + goal_reward(ach, g2), with the env's own info,
    where the achieved mix does not depend on the goal (``env.goal_lock`` 0; under a lock it
    does, and HER's relabelled rewards are approximate: docs/status.md)."""
    from hrl_sarp_jax.envs.rewards import goal_reward

    env, p = micro_env, micro_params.replace(goal_lock=0.0)
    g1 = jnp.array([0.5, 0.3, 0.18, 1.0, 0.0, 0.0], jnp.float32)
    g2 = jnp.array([0.0, 0.1, 0.88, 0.0, 0.0, 1.0], jnp.float32)
    rewards, infos = [], []
    for g in (g1, g2):
        pg = p.replace(fixed_goal=g)
        _, st = env.reset(jax.random.key(3), pg)
        _, st, _, _, _, _ = env.step(jax.random.key(0), st, EQUAL, pg)  # fill the window a bit
        _, _, r, _, _, info = env.step(jax.random.key(1), st, EQUAL * jnp.arange(N), pg)
        rewards.append(float(r))
        infos.append(info)
    ach = infos[0]["achieved_goal"][:S]
    assert np.array_equal(ach, infos[1]["achieved_goal"][:S])
    assert np.array_equal(infos[0]["goal"], g1)
    relabelled = rewards[0] - goal_reward(ach, g1, p.reward) + goal_reward(ach, g2, p.reward)
    assert float(relabelled) == pytest.approx(rewards[1], abs=1e-6)
    assert abs(rewards[0] - rewards[1]) > 1e-3  # the goal term really moved


def test_goal_step_moves_part_of_the_way_from_the_book(micro_params):
    """env.goal_step: the sector goal is the projection of cur + step (call - cur), cur = the
    book's sector mix at the call's budget; from an all-cash book it is the call; step 1 is the
    call bit for bit."""
    p = micro_params
    a = jnp.asarray(MACRO_A, jnp.float32)
    call = np.asarray(common.macro_action_to_goal(a, p, None))[:S]
    ids = np.asarray(p.stock_sector)
    first = [int(np.flatnonzero(ids == k)[0]) for k in range(S)]
    book = jnp.zeros(N).at[jnp.asarray(first)].set(jnp.asarray([0.1, 0.1, 0.12]))  # cash 0.68
    sw = np.asarray(sector_weights(book, p.stock_sector, S))
    cur = sw * call.sum() / sw.sum()
    half = p.replace(goal_step=jnp.float32(0.5))
    got = np.asarray(common.macro_action_to_goal(a, half, book))[:S]
    want = np.asarray(project_sector_weights(jnp.asarray(cur + 0.5 * (call - cur), jnp.float32),
                                             p.sector_valid, p.constraints))
    np.testing.assert_allclose(got, want, atol=1e-6)
    # a feasible mix: half of the sector turnover to the call
    np.testing.assert_allclose(np.abs(got - cur).sum(), 0.5 * np.abs(call - cur).sum(),
                               atol=1e-6)
    assert np.abs(call - cur).sum() > 0.05
    np.testing.assert_allclose(np.asarray(common.macro_action_to_goal(a, half, jnp.zeros(N)))[:S],
                               call, atol=1e-6)
    one = np.asarray(common.macro_action_to_goal(a, p.replace(goal_step=jnp.float32(1.0)), book))
    assert np.array_equal(one[:S], call)


def test_goal_lock_sets_a_share_of_the_micro_sector_mix_to_the_goal(micro_params):
    """env.goal_lock by hand (sectors of stocks 0..6: 0 1 2 0 1 2 0; stock 7 padding): the
    Micro holds 0.6 / 0.4 / 0 in the three sectors, the goal asks 0.3 / 0.5 / 0.2; locked,
    each sector's names are rescaled to the goal's weight and the empty sector is split
    equally; lock 0.5 takes half of each; lock 0 is the Micro's weights bit for bit."""
    p = micro_params
    assert np.asarray(p.stock_sector)[:7].tolist() == [0, 1, 2, 0, 1, 2, 0]
    t = int(np.flatnonzero(np.asarray(p.tradable)[:, :7].all(1))[0])
    w = jnp.asarray([0.2, 0.1, 0.0, 0.2, 0.3, 0.0, 0.2, 0.0], jnp.float32)
    goal = jnp.asarray([0.3, 0.5, 0.2, 1.0, 0.0, 0.0], jnp.float32)
    locked = [0.1, 0.125, 0.1, 0.1, 0.375, 0.1, 0.1, 0.0]
    for lock in (1.0, 0.5):
        got = np.asarray(common.lock_to_goal(w, goal, t, p.replace(goal_lock=lock)))
        want = lock * np.asarray(locked) + (1.0 - lock) * np.asarray(w)
        np.testing.assert_allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(want, [0.15, 0.1125, 0.05, 0.15, 0.3375, 0.05, 0.15, 0.0],
                               atol=1e-7)
    np.testing.assert_allclose(np.asarray(sector_weights(jnp.asarray(locked), p.stock_sector, S)),
                               [0.3, 0.5, 0.2], atol=1e-7)
    assert common.lock_to_goal(w, goal, t, p.replace(goal_lock=0.0)) is w  # nothing traced
