"""Module-wide inputs: the tiny market, its EnvParams, and one backtest window."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.envs.params import make_env_params
from tests.evaluation.make_market import ENV_CFG, make_market

T0, LENGTH = 5, 240  # decisions on days 5..244; the last return is day 245 of 260


@pytest.fixture(scope="session")
def tiny():
    market, meta, feats = make_market()
    params = make_env_params(market, feats, ENV_CFG)
    return market, meta, feats, params


@pytest.fixture(scope="session")
def weekly(tiny):
    from hrl_sarp_jax.evaluation.backtest import rebalance_mask

    market, meta, _, _ = tiny
    return rebalance_mask("weekly", T0, LENGTH, np.asarray(market.week_end), meta.dates)
