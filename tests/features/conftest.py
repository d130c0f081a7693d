"""Shared fixtures: one small market and its features, built (and compiled) once per session."""

from __future__ import annotations

import numpy as np
import pytest

from hrl_sarp_jax.config import FeatureConfig
from hrl_sarp_jax.features.build import build_features
from tests.features.make_market import float32_np, make_market

CFG = FeatureConfig()


@pytest.fixture(scope="session")
def built():
    return make_market()


@pytest.fixture(scope="session")
def ref_np(built):
    """The market's arrays as float32-rounded float64 NumPy (what the features see)."""
    return float32_np(built.np)


@pytest.fixture(scope="session")
def feats(built):
    return build_features(built.market, CFG)


@pytest.fixture(scope="session")
def feats_np(feats):
    return {k: np.asarray(getattr(feats, k)) for k in feats.__dataclass_fields__}
