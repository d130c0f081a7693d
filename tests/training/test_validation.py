"""train.validation: the plans of weekly and daily validation walks, by hand."""

from __future__ import annotations

import types

import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.training import validation as v


class _Params(types.SimpleNamespace):
    def replace(self, **kw):
        return _Params(**{**vars(self), **kw})


# week ends on days 4, 9, 14, ..., 49
WEEK_END = np.zeros(50, bool)
WEEK_END[4::5] = True


def test_weekly_plans_by_hand():
    params = _Params(max_steps_in_episode=3, t_hi=47)
    same, days = v.weekly_plan("episodes", WEEK_END, 10, 47, params, max_episodes=2)
    # week ends 14..44 in [10, 47]; 3 weeks must fit before 47: 14..29, every 2nd
    assert same is params and days.tolist() == [14, 24]
    cont, days = v.weekly_plan("continuous", WEEK_END, 10, 47, params)
    # from the first week end (14) every week end up to 47 (19..44: 6), plus one step
    assert days.tolist() == [14] and cont.max_steps_in_episode == 7 and cont.t_hi == 47
    assert v.block_steps("continuous") == v.BLOCK_WEEKS == 13
    assert v.block_steps("continuous", daily=True) == v.BLOCK_DAYS == 63
    assert v.block_steps("episodes") == 0
    with pytest.raises(ConfigError, match="no full week"):
        v.weekly_plan("continuous", WEEK_END, 40, 47, params)


def test_daily_plan_and_windows_by_hand():
    params = _Params(start_lo=100, start_hi=160, t_hi=229, max_steps_in_episode=20)
    assert v.daily_plan("episodes", params, 16) == (params, 16)
    cont, episodes = v.daily_plan("continuous", params, 16)
    assert episodes == 1 and (cont.start_lo, cont.start_hi) == (100, 100)
    assert cont.max_steps_in_episode == 129
    # 129 days in blocks of 63: two blocks (the remainder of 3 joins the second)
    assert v.windows(np.array([100]), 129, 63, steps_per_week=5) == 2.0
    # two markets' walks of 27 weeks in blocks of 13: 2 blocks each
    assert v.windows(np.array([[4], [4]]), 27, 13) == 4.0
    # episodes: effective_windows of the start days (span 20 days over 2-week episodes)
    assert v.windows(np.array([0, 10, 20]), 10, 0, steps_per_week=5) == pytest.approx(3.0)


def test_an_unknown_validation_kind_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.validation = 'weekly' is not one of "
                                          r"episodes, continuous"):
        v.block_steps("weekly")
