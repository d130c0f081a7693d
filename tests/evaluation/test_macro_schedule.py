"""scripts/macro_schedule.py (an evaluation-only probe): its weekly schedule is the library's
HierarchicalStrategy, and the other schedules decide on the days they name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from hrl_sarp_jax.evaluation.agent import agent_rebalance, run_agent
from hrl_sarp_jax.evaluation.backtest import run_backtest
from tests.evaluation.test_agent import ENV, NET, K, L, S, world  # noqa: F401 (fixture)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "macro_schedule.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("macro_schedule", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclass resolves its module
    spec.loader.exec_module(mod)
    return mod


def _window(world):  # noqa: F811
    """A window opening mid-week (the Macro decides on day 0 either way)."""
    return int(np.flatnonzero(~world.week_end[61:])[0]) + 61


def _run(script, world, schedule, t0):  # noqa: F811
    strategy = script.ScheduledStrategy(NET, schedule=schedule)
    carries = strategy.init_carries(world.macro, world.micro, world.p, t0, L)
    return run_backtest(strategy, carries, world.p, t0, agent_rebalance("daily", world.p, t0, L),
                        batched=True, risk_manager=True, return_window=ENV.return_window)


def test_weekly_schedule_is_the_library_strategy(script, world):  # noqa: F811
    t0 = _window(world)
    carry, res = _run(script, world, "weekly", t0)
    ref_carry, ref = run_agent(NET, world.macro, world.micro, world.p, t0, L,
                               risk_manager=True, return_window=ENV.return_window)
    np.testing.assert_array_equal(np.asarray(carry.macro_step), np.asarray(ref_carry.macro_step))
    np.testing.assert_allclose(np.asarray(carry.goals), np.asarray(ref_carry.goals), atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.weights), np.asarray(ref.weights), atol=1e-6)
    np.testing.assert_allclose(np.asarray(res.net_return), np.asarray(ref.net_return),
                               atol=1e-7)


def test_daily_and_twice_decide_on_the_days_they_name(script, world):  # noqa: F811
    t0 = _window(world)
    days = np.arange(t0, t0 + L)
    carry, _ = _run(script, world, "daily", t0)
    assert np.asarray(carry.macro_step).all()
    carry, _ = _run(script, world, "twice", t0)
    we = world.week_end
    expected = we[days] | we[days - 2]
    expected[0] = True
    assert (expected & ~we[days]).sum() >= 3  # days besides the week ends
    np.testing.assert_array_equal(np.asarray(carry.macro_step),
                                  np.broadcast_to(expected, (K, L)))


def test_regime_schedule_decides_off_week_ends_only_on_a_changed_call(script, world):  # noqa: F811
    t0 = _window(world)
    carry, _ = _run(script, world, "regime", t0)
    steps = np.asarray(carry.macro_step)
    goals = np.asarray(carry.goals)
    calls = np.argmax(goals[..., S:], axis=-1)
    we = world.week_end[t0:t0 + L]
    assert steps[:, 0].all() and steps[:, we].all()
    extra = steps[:, 1:] & ~we[None, 1:]
    # off a week end the Macro decides only where its call differs from the goal in force
    np.testing.assert_array_equal(extra, steps[:, 1:] & (calls[:, 1:] != calls[:, :-1])
                                  & ~we[None, 1:])
    # and between decisions the goal does not move
    moved = np.any(goals[:, 1:] != goals[:, :-1], axis=-1)
    assert not np.any(moved & ~steps[:, 1:])
    assert extra.any(), "the tiny jittered nets change their call mid-week somewhere"
