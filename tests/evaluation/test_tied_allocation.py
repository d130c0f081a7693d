"""scripts/tied_allocation.py (an evaluation-only probe): the sector weights it executes are
the regime table's softmaxes mixed by the regime probabilities (soft) or the most probable
regime's (hard), over the valid sectors only — checked against NumPy by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "tied_allocation.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("tied_allocation", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


TABLE = np.array([[0.004, 0.008, -0.001, 0.002],    # Bull
                  [-0.010, -0.012, 0.001, 0.003],   # Bear
                  [0.003, 0.000, 0.002, -0.004]])   # Sideways
VALID = np.array([True, True, True, False])


def _softmax_valid(row, tau):
    z = np.exp(tau * (row[VALID] - row[VALID].max()))
    out = np.zeros_like(row)
    out[VALID] = z / z.sum()
    return out


@pytest.mark.parametrize("tau", [0.0, 100.0, 400.0])
def test_soft_mixes_the_rows_by_the_regime_probabilities(script, tau):
    probs = np.array([0.5, 0.3, 0.2])
    expected = sum(p * _softmax_valid(row, tau) for p, row in zip(probs, TABLE, strict=True))
    got = np.asarray(script.tied_weights(jnp.asarray(probs, jnp.float32),
                                         jnp.asarray(TABLE, jnp.float32), jnp.asarray(VALID),
                                         tau, "soft"))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert got[3] == 0.0 and abs(got.sum() - 1.0) < 1e-6
    if tau == 0.0:  # no table information: equal weight over the valid sectors
        np.testing.assert_allclose(got[:3], 1 / 3, rtol=1e-6)


def test_hard_takes_the_most_probable_regimes_row(script):
    probs = jnp.asarray([0.2, 0.45, 0.35], jnp.float32)
    got = np.asarray(script.tied_weights(probs, jnp.asarray(TABLE, jnp.float32),
                                         jnp.asarray(VALID), 400.0, "hard"))
    np.testing.assert_allclose(got, _softmax_valid(TABLE[1], 400.0), rtol=1e-5, atol=1e-7)
    # Bear's row: the third sector (+0.001) dominates the first two (-0.010, -0.012)
    assert got[2] > 0.98 and got[3] == 0.0
