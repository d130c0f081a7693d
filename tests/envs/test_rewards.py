"""Reward terms: hand-computed values, the NumPy reference, and the documented bounds."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import RewardConfig
from hrl_sarp_jax.envs import reference as ref
from hrl_sarp_jax.envs import rewards as rw
from hrl_sarp_jax.envs.params import reward_params

P = reward_params(RewardConfig())
W = ref.scalars(P)


def test_ring_buffer_keeps_the_last_r_newest_last():
    buf, cnt = jnp.zeros(3, jnp.float32), jnp.int32(0)
    for r in (1.0, 2.0, 3.0, 4.0):
        buf, cnt = rw.push_return(buf, cnt, jnp.float32(r))
    assert buf.tolist() == [2.0, 3.0, 4.0] and int(cnt) == 3
    assert rw.buffer_mask(buf, jnp.int32(1)).tolist() == [False, False, True]


def test_goal_terms_by_hand():
    ids = jnp.array([0, 1, 1, 2], jnp.int32)
    ach = rw.achieved_goal(jnp.array([0.5, 0.25, 0.25, 0.0]), ids, 3, jnp.int32(1))
    assert ach.tolist() == [0.5, 0.5, 0.0, 0.0, 1.0, 0.0]
    assert rw.achieved_goal(jnp.zeros(4), ids, 3, jnp.int32(-1)).tolist() == [0.0] * 6
    goal = jnp.array([1.0, 0.0, 0.0, 0.0, 0.0, 1.0])
    assert float(rw.goal_alignment(ach[:3], goal)) == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert float(rw.goal_alignment(jnp.zeros(3), goal)) == 0.0
    assert float(rw.goal_reward(ach[:3], goal, P)) == pytest.approx(0.5 * 0.3 / math.sqrt(2),
                                                                    rel=1e-6)


def test_portfolio_reward_by_hand():
    buf = jnp.array([0.0, 0.0, 0.01, -0.02, 0.03], jnp.float32)
    out = rw.portfolio_reward(buf, jnp.int32(3), jnp.float32(0.001), P)
    total = 1.01 * 0.98 * 1.03 - 1.0
    mdd = 1.0 - 1.01 * 0.98 / 1.01
    assert float(out["calmar"]) == pytest.approx(total / mdd, rel=1e-5)
    assert float(out["cvar"]) == pytest.approx(0.02, rel=1e-5)  # k = ceil(0.05 * 3) = 1
    want = math.tanh(total / mdd) * (1 - 0.02) - 0.001
    assert float(out["r_portfolio"]) == pytest.approx(want, rel=1e-5)


def test_macro_reward_regime_and_alpha_by_hand():
    call = jnp.array([0.5, 0.3, 0.2], jnp.float32)
    prev = jnp.array([0.2, 0.3, 0.0], jnp.float32)
    growth = jnp.array([1.02, 0.99, 1.0], jnp.float32)
    args = (jnp.zeros(4, jnp.float32), jnp.int32(0), call, prev, growth, jnp.float32(1.005))
    regimes = {}
    for label in (-1, 0, 2):
        _, c = rw.macro_reward(*args, jnp.int32(0), jnp.int32(label), jnp.float32(0.0),
                               jnp.float32(0.0), P)
        regimes[label] = float(c["r_regime"])
    assert regimes == {-1: 0.0, 0: pytest.approx(0.3), 2: pytest.approx(-0.1)}
    alpha = 0.5 * 0.02 - 0.3 * 0.01 - 0.005
    assert float(c["alpha"]) == pytest.approx(alpha, abs=1e-7)
    r_macro = alpha - 0.1 * (0.25 + 0.09 + 0.04) - 0.001 * 0.5
    assert float(c["r_macro"]) == pytest.approx(r_macro, abs=1e-7)


@pytest.fixture(scope="module")
def jit_rewards():
    micro = jax.jit(lambda *a: rw.micro_reward(*a, P))
    macro = jax.jit(lambda *a: rw.macro_reward(*a, P))
    return micro, macro


def test_rewards_match_numpy_reference(jit_rewards):
    """abs 1e-5: the Calmar term divides float32 window returns by a 1% floor."""
    micro, macro = jit_rewards
    rng = np.random.default_rng(0)
    for _ in range(30):
        cnt = int(rng.integers(0, 21))
        buf = np.zeros(20, np.float32)
        buf[20 - cnt:] = rng.normal(0.0, 0.02, cnt)
        ach, goal = rng.dirichlet(np.ones(3)).astype(np.float32), rng.random(6).astype(np.float32)
        dd, cost, val = (np.float32(x) for x in (rng.uniform(0, 0.3), rng.uniform(0, 0.01),
                                                  rng.normal(0, 0.01)))
        r, _ = micro(buf, jnp.int32(cnt), ach, goal, dd, cost, val)
        want = ref.micro_reward(buf[20 - cnt:].astype(np.float64), ach, goal, dd, cost, val, W)
        assert float(r) == pytest.approx(want, rel=1e-5, abs=1e-5)
        call, prev = rng.dirichlet(np.ones(3)).astype(np.float32), rng.random(3).astype(np.float32)
        growth = (1 + rng.normal(0, 0.03, 3)).astype(np.float32)
        bench = np.float32(1 + rng.normal(0, 0.02))
        rc, lab = int(rng.integers(3)), int(rng.integers(-1, 3))
        r, _ = macro(buf, jnp.int32(cnt), call, prev, growth, bench, jnp.int32(rc), jnp.int32(lab),
                     cost, val)
        want = ref.macro_reward(buf[20 - cnt:].astype(np.float64), call, prev, growth, bench, rc,
                                lab, cost, val, W)
        assert float(r) == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_every_component_is_bounded_under_extremes(jit_rewards):
    micro, macro = jit_rewards
    crash = np.array([0.9, -0.95] * 10, np.float32)
    for buf in (crash, -crash, np.full(20, 5.0, np.float32)):
        r, c = micro(buf, jnp.int32(20), jnp.ones(3), jnp.ones(6), jnp.float32(0.99),
                     jnp.float32(3.0), jnp.float32(-7.0))
        assert -0.7 <= float(c["r_micro"]) <= 0.8
        assert -2.0 <= float(c["r_portfolio"]) <= 1.0 and -1.0 <= float(c["r_value"]) <= 1.0
        assert -1.45 <= float(r) <= 1.0
        r, c = macro(buf, jnp.int32(20), jnp.array([1.0, 0, 0]), jnp.array([0, 0, 1.0]),
                     jnp.array([9.0, 0, 0]), jnp.float32(0.0), jnp.int32(0), jnp.int32(1),
                     jnp.float32(3.0), jnp.float32(7.0))
        assert -1.102 - 1e-6 <= float(c["r_macro"]) <= 1.0
        assert float(c["r_regime"]) == pytest.approx(-0.1)
        assert -1.1 <= float(r) <= 1.0


PX = reward_params(RewardConfig(kind="excess"))


def test_excess_rewards_by_hand():
    buf = jnp.array([0.0, 0.0, 0.01, -0.02, 0.03], jnp.float32)
    # Macro: week 0.03 vs benchmark +1%; vol = SD(0.01, -0.02, 0.03) = 0.025166 (ddof 1)
    args = (jnp.zeros(3), jnp.zeros(3), jnp.ones(3), jnp.float32(1.01), jnp.int32(0),
            jnp.int32(2), jnp.float32(0.003), jnp.float32(0.0), PX)
    r, c = rw.macro_reward(buf, jnp.int32(3), *args)
    assert float(c["vol"]) == pytest.approx(0.0251661, rel=1e-5)
    assert float(r) == pytest.approx((math.log(1.03) - math.log(1.01)) / 0.0251661, rel=1e-5)
    # the regime call, concentration and Calmar do not enter
    r2, _ = rw.macro_reward(buf, jnp.int32(3), *args[:4], jnp.int32(2), *args[5:])
    assert float(r2) == float(r)
    # Micro: one valid day -> the 0.005 floor; selection = 0.004 - 0.001 - 0.0005 = 0.0025
    ach = jnp.array([0.6, 0.4, 0.0])
    goal = jnp.array([0.6, 0.4, 0.0, 1.0, 0.0, 0.0])
    rm, cm = rw.micro_reward(buf, jnp.int32(1), ach, goal, jnp.float32(0.2), jnp.float32(0.0005),
                             jnp.float32(0.5), PX, jnp.float32(0.004), jnp.float32(0.001))
    assert float(cm["vol"]) == pytest.approx(0.005)
    assert float(rm) == pytest.approx(0.0025 / 0.005 + 0.5 * 0.3 * 1.0, rel=1e-5)
    # HER's contract: the goal enters only through goal_reward
    other = jnp.array([0.0, 0.0, 0.98, 0.0, 1.0, 0.0])
    rm2, _ = rw.micro_reward(buf, jnp.int32(1), ach, other, jnp.float32(0.2),
                             jnp.float32(0.0005), jnp.float32(0.5), PX, jnp.float32(0.004),
                             jnp.float32(0.001))
    assert float(rm2) == pytest.approx(float(rm) - float(rw.goal_reward(ach, goal, PX))
                                       + float(rw.goal_reward(ach, other, PX)), abs=1e-6)


def test_macro_excess_pays_the_macro_its_excess_and_the_micro_its_composite():
    pm = reward_params(RewardConfig(kind="macro_excess"))
    po = reward_params(RewardConfig(kind="original"))
    buf = jnp.array([0.0, 0.0, 0.01, -0.02, 0.03], jnp.float32)
    args = (jnp.array([0.5, 0.3, 0.2]), jnp.zeros(3), jnp.array([1.02, 1.0, 0.99]),
            jnp.float32(1.01), jnp.int32(0), jnp.int32(2), jnp.float32(0.003), jnp.float32(0.0))
    r, _ = rw.macro_reward(buf, jnp.int32(3), *args, pm)
    assert float(r) == pytest.approx((math.log(1.03) - math.log(1.01)) / 0.0251661, rel=1e-5)
    ach = jnp.array([0.6, 0.4, 0.0])
    goal = jnp.array([0.6, 0.4, 0.0, 1.0, 0.0, 0.0])
    micro = (buf, jnp.int32(3), ach, goal, jnp.float32(0.02), jnp.float32(0.0005),
             jnp.float32(0.01))
    want, comps = rw.micro_reward(*micro, po)
    got, _ = rw.micro_reward(*micro, pm, jnp.float32(0.004), jnp.float32(0.001))
    assert float(got) == float(want) and "sharpe" in comps


def test_excess_turnover_cost_by_hand():
    """(log 1.03 - log 1.01 - c x 0.5 x |0.5-0.2| + |0.3-0.3| + |0.2-0.5|) / vol, c = 0.02."""
    p = reward_params(RewardConfig(kind="macro_excess", excess_turnover_cost=0.02))
    buf = jnp.array([0.0, 0.0, 0.01, -0.02, 0.03], jnp.float32)
    call, prev = jnp.array([0.5, 0.3, 0.2]), jnp.array([0.2, 0.3, 0.5])
    r, c = rw.macro_reward(buf, jnp.int32(3), call, prev, jnp.ones(3), jnp.float32(1.01),
                           jnp.int32(0), jnp.int32(2), jnp.float32(0.003), jnp.float32(0.0), p)
    assert float(c["turnover"]) == pytest.approx(0.3, rel=1e-6)
    want = (math.log(1.03) - math.log(1.01) - 0.02 * 0.3) / 0.0251661
    assert float(r) == pytest.approx(want, rel=1e-5)
    from hrl_sarp_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"env\.reward\.excess_turnover_cost"):
        reward_params(RewardConfig(excess_turnover_cost=-1.0))


@pytest.mark.parametrize("kind", ["original", "excess"])
def test_micro_turnover_cost_by_hand(kind):
    """The Micro's turnover charge: the same day with turnover 0.3 and c = 0.2 earns exactly
    0.06 less than with no charge, in both Micro kinds; a negative charge is refused."""
    buf = jnp.array([0.0, 0.0, 0.01, -0.02, 0.03], jnp.float32)
    day = (buf, jnp.int32(3), jnp.array([0.6, 0.4, 0.0]),
           jnp.array([0.5, 0.5, 0.0, 1.0, 0.0, 0.0]), jnp.float32(0.02), jnp.float32(0.0005),
           jnp.float32(0.01))
    free, _ = rw.micro_reward(*day, reward_params(RewardConfig(kind=kind)), jnp.float32(0.004),
                              jnp.float32(0.001), jnp.float32(0.3))
    charged, c = rw.micro_reward(
        *day, reward_params(RewardConfig(kind=kind, micro_turnover_cost=0.2)),
        jnp.float32(0.004), jnp.float32(0.001), jnp.float32(0.3))
    assert float(c["turnover_charge"]) == pytest.approx(0.06, rel=1e-6)
    assert float(free) - float(charged) == pytest.approx(0.06, rel=1e-5)
    from hrl_sarp_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"env\.reward\.micro_turnover_cost"):
        reward_params(RewardConfig(micro_turnover_cost=-0.1))


def test_reward_kind_and_floors_checked():
    from hrl_sarp_jax.errors import ConfigError

    with pytest.raises(ConfigError, match=r"env\.reward\.kind"):
        reward_params(RewardConfig(kind="sharpe"))
    with pytest.raises(ConfigError, match=r"env\.reward\.micro_vol_floor"):
        reward_params(RewardConfig(micro_vol_floor=0.0))
