"""JAX envs against the independent NumPy reference over >= 1,000 random steps each.

The JAX side runs gymnax's own ``env.step`` (auto-reset included) under vmap + scan; the NumPy
side replays the same actions one step at a time, re-starting where the JAX episode restarted.
Values, rewards and observations must agree to 1e-5 relative. Costs too, with a floor of
1e-7 of the book (1 rupee on 1e7): float32 holds a trade only to about 1e-8..1e-7 of the value
(weights have ulp ~1e-8, and the CVaR budget divides by a float32 tail estimate), so a small
rebalance's cost cannot be matched more closely than that. Rewards get an absolute floor of
1e-5: the Calmar term divides window returns (float32, ~1e-7 absolute) by a 1% floor.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.envs import reference as ref
from tests.envs.conftest import N, S, make_rollout

RTOL, ATOL = 1e-5, 1e-6
COST_ATOL = 1e-7 * 1e7
REWARD_ATOL = 1e-5
# The excess rewards divide a return (float32: ~1e-7 absolute per day, compounded over a week)
# by a volatility floored at 0.005-0.01: 1e-7 x 5 days / 0.01 = 5e-5 of reward.
EXCESS_REWARD_ATOL = 1e-4


def reward_atol(params):
    return EXCESS_REWARD_ATOL if params.reward.kind != "original" else REWARD_ATOL


# The Macro observation's book entries (sector weights, cash, drawdown: its last S + 2) come out
# of a week of float32 drift, trades and costs: over this test's 1,000 steps their largest
# relative error is 1.4e-5 at XLA's default level and at -O0 alike (measured), so they get 5e-5.
BOOK_RTOL = 5e-5


def close(a, b, what, atol=ATOL, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol,
                               atol=atol, err_msg=what)


def close_macro_obs(a, b, what):
    """``close`` with ``BOOK_RTOL`` on the book entries (the last S + 2)."""
    book = S + 2
    close(a[:-book], b[:-book], what)
    close(a[-book:], b[-book:], f"{what} (book)", rtol=BOOK_RTOL)


def stock_actions(rng, shape):
    """Random targets: sparse Dirichlet draws, sometimes raw reals (the env projects)."""
    a = rng.dirichlet(np.full(N, 0.4), shape)
    raw = rng.normal(0.1, 0.3, (*shape, N))
    return np.where(rng.random((*shape, 1)) < 0.2, raw, a).astype(np.float32)


def macro_actions(rng, shape):
    w = rng.dirichlet(np.full(S, 0.7), shape)
    return np.concatenate([w, rng.normal(size=(*shape, 3))], -1).astype(np.float32)


def replay(out, obs0, start0, e, reset, step, check_obs, atol=REWARD_ATOL):
    """Drive a reference env through env e's JAX trajectory; returns the number of steps."""
    done_prev, steps = True, out["reward"].shape[1]
    for i in range(steps):
        if done_prev:
            start = int(start0[e]) if i == 0 else int(out["start"][e, i - 1])
            o = reset(start)
            check_obs(o, obs0 if i == 0 else None, e, i)
        r_np, term, trunc, _info, o = step(e, i)
        close(r_np, out["reward"][e, i], f"reward env {e} step {i}", atol)
        assert bool(term) == bool(out["terminated"][e, i])
        assert bool(trunc) == bool(out["truncated"][e, i]), (e, i)
        done_prev = bool(term or trunc)
        check_obs(o, None, e, i, final=True)
    return steps


@pytest.fixture(scope="module", params=["original", "excess", "macro_excess"])
def kind(request):
    """Every reward kind (envs.rewards): the composite, the excess-return rewards, and the
    Macro's excess reward with the Micro's composite."""
    return request.param


def with_kind(params, kind):
    """``kind``; the excess kinds also with the Macro's turnover charge, and every kind but the
    original with the Micro's, so the parity covers both."""
    charge = jnp.float32(0.0 if kind == "original" else 0.01)
    micro_charge = jnp.float32(0.0 if kind == "original" else 0.5)
    return params.replace(reward=params.reward.replace(
        kind=kind, excess_turnover_cost=charge, micro_turnover_cost=micro_charge))


@pytest.fixture(scope="module")
def micro_run(micro_params, micro_env, kind):
    params, env = with_kind(micro_params, kind), micro_env
    e, length = 25, 45  # 40-day episodes: every env auto-resets once
    acts = stock_actions(np.random.default_rng(1), (e, length))
    obs0, start0, out = make_rollout(env, params, length)(jax.random.split(jax.random.key(1), e),
                                                         acts)
    return params, acts, jax.device_get((obs0, start0, out))


def test_micro_parity(micro_run):
    params, acts, (obs0, start0, out) = micro_run
    renv = ref.RefMicroEnv(params)
    goal = np.asarray(params.fixed_goal)

    def check_obs(o, first, e, i, final=False):
        if first is not None:
            close(o, first[e], "reset obs")
        elif final:
            close(o, out["final"][e, i], f"obs env {e} step {i}")
        else:
            close(o, out["obs"][e, i], f"reset obs env {e} step {i}")

    rearmed = []

    def step(e, i):
        o, r, term, trunc, info = renv.step(acts[e, i])
        rearmed.append(renv.gate[1] > 0)
        close(renv.book.value, out["info"]["value"][e, i], "value")
        close(info["cost"]["total"], out["info"]["cost"][e, i], "cost", COST_ATOL)
        return r, term, trunc, info, o

    n = sum(replay(out, obs0, start0, e, lambda t: renv.reset(t, goal), step, check_obs,
                   reward_atol(params))
            for e in range(acts.shape[0]))
    assert n >= 1000
    assert out["truncated"].sum() == acts.shape[0]  # each env finished exactly one episode
    # both paths are exercised: de-risked exposure, trading days and no-trade-band days
    cost = out["info"]["cost"]
    assert (out["info"]["exposure"] < 1).any() and (cost > 0).mean() > 0.5 and (cost == 0).any()
    assert any(rearmed)  # the timed re-risk (risk.rerisk_days) fired and re-armed the gate


@pytest.fixture(scope="module")
def macro_run(macro_params, macro_env, kind):
    params, env = with_kind(macro_params, kind), macro_env
    e, length = 85, 12
    acts = macro_actions(np.random.default_rng(2), (e, length))
    obs0, start0, out = make_rollout(env, params, length)(jax.random.split(jax.random.key(2), e),
                                                         acts)
    return params, acts, jax.device_get((obs0, start0, out))


def test_macro_parity(macro_run):
    params, acts, (obs0, start0, out) = macro_run
    renv = ref.RefMacroEnv(params)

    def check_obs(o, first, e, i, final=False):
        if first is not None:
            close_macro_obs(o, first[e], "reset obs")
        elif final:
            close_macro_obs(o, out["final"][e, i], f"obs env {e} week {i}")
        else:
            close_macro_obs(o, out["obs"][e, i], f"reset obs env {e} week {i}")

    def step(e, i):
        o, r, term, trunc, info = renv.step(acts[e, i])
        close(info["value"], out["info"]["value"][e, i], "value")
        close(info["cost"], out["info"]["cost"][e, i], "cost", COST_ATOL)
        assert renv.t == int(out["info"]["next_day"][e, i])
        return r, term, trunc, info, o

    n = sum(replay(out, obs0, start0, e, renv.reset, step, check_obs, reward_atol(params))
            for e in range(acts.shape[0]))
    assert n >= 1000
    days = out["info"]["next_day"] - out["info"]["day"]
    assert days.min() >= 1 and (days != 5).any()  # calendar weeks, not 5-row blocks


@pytest.fixture(scope="module")
def hier_run(micro_params, hier_env, kind):
    params, env = with_kind(micro_params, kind), hier_env
    e, length = 25, 45
    rng = np.random.default_rng(3)
    acts = {"macro": macro_actions(rng, (e, length)), "micro": stock_actions(rng, (e, length))}
    obs0, start0, out = make_rollout(env, params, length)(jax.random.split(jax.random.key(3), e),
                                                         acts)
    return params, acts, jax.device_get((obs0, start0, out))


def test_hierarchical_parity(hier_run):
    params, acts, (obs0, start0, out) = hier_run
    renv = ref.RefHierarchicalEnv(params)
    info = out["info"]

    def check_obs(o, first, e, i, final=False):
        src = first if first is not None else (out["final"] if final else out["obs"])
        idx = (e,) if first is not None else (e, i)
        for k in ("macro", "micro"):
            close(o[k], src[k][idx], f"{k} obs env {e} step {i}")

    def step(e, i):
        o, r_micro, r_macro, term, trunc, _ = renv.step(acts["macro"][e, i], acts["micro"][e, i])
        close(renv.book.value, info["value"][e, i], "value")
        assert (r_macro is not None) == bool(info["macro_reward_ready"][e, i])
        if r_macro is not None:
            close(r_macro, info["macro_reward"][e, i], f"macro reward {e} {i}",
                  reward_atol(params))
        return r_micro, term, trunc, None, o

    n = sum(replay(out, obs0, start0, e, renv.reset, step, check_obs, reward_atol(params))
            for e in range(acts["micro"].shape[0]))
    assert n >= 1000
    # the first step of every episode is a macro step; macro steps are exactly the week ends
    week_end = np.asarray(params.week_end)
    assert np.array_equal(info["is_macro_step"], week_end[info["day"]])
    done = out["terminated"] | out["truncated"]
    first = np.concatenate([np.ones((25, 1), bool), done[:, :-1]], 1)
    assert info["is_macro_step"][first].all()
