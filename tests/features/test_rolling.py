"""Rolling primitives and the sorting network against NumPy/pandas."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hrl_sarp_jax.features.rolling import (
    lag,
    lead,
    rolling_zscore,
    run_length,
    window_extreme,
    window_stack,
    window_sum,
)
from hrl_sarp_jax.features.sorting import sort_axis0

RNG = np.random.default_rng(7)
X = RNG.normal(0.3, 1.0, (300, 3)).astype(np.float32)


def test_lag_lead_and_run_length_hand_computed():
    x = jnp.arange(5.0)
    np.testing.assert_array_equal(np.asarray(lag(x, 2, -1)), [-1, -1, 0, 1, 2])
    np.testing.assert_array_equal(np.asarray(lead(x, 2, -1)), [2, 3, 4, -1, -1])
    np.testing.assert_array_equal(np.asarray(lag(x, 9)), [0] * 5)
    valid = jnp.array([True, True, False, True, True, True, False])
    np.testing.assert_array_equal(np.asarray(run_length(valid)), [1, 2, 0, 1, 2, 3, 0])


def test_window_sum_every_decomposition_matches_numpy():
    # 17, 23: prime (remainder path); 20, 60, 252: factor chains; 301 > T
    for w in (1, 5, 17, 20, 23, 60, 252, 301):
        got = np.asarray(window_sum(jnp.asarray(X), w))
        want = np.stack(
            [X[max(0, t - w + 1) : t + 1].astype(np.float64).sum(0) for t in range(len(X))]
        )
        np.testing.assert_allclose(got, want, atol=2e-5 * w**0.5, err_msg=f"w={w}")


def test_window_stack_and_extremes():
    win = np.asarray(window_stack(jnp.asarray(X), 7))
    for j in range(7):
        np.testing.assert_array_equal(win[j, j:], X[: len(X) - j])
        assert np.all(win[j, :j] == 0)
    mx = np.asarray(window_extreme(jnp.asarray(X), 9, largest=True))
    np.testing.assert_array_equal(mx, pd.DataFrame(X).rolling(9, min_periods=1).max().to_numpy())


@partial(jax.jit, static_argnames=("exact",))
def _z(x, v, exact):
    return rolling_zscore(x, v, 40, 10, 2.5, exact=exact)


def test_rolling_zscore_matches_pandas_with_gaps():
    level = (15.0 + 0.01 * np.cumsum(RNG.normal(size=(300, 3)), 0)).astype(np.float32)
    valid = RNG.random((300, 3)) > 0.2
    for x, exact, tol in ((X, False, 1e-4), (level, True, 1e-4)):
        df = pd.DataFrame(np.where(valid, x.astype(np.float64), np.nan))
        r = df.rolling(40, min_periods=10)
        want = ((df - r.mean()) / r.std()).clip(-2.5, 2.5).to_numpy()
        want = np.where(valid, want, np.nan)
        z, ok = (np.asarray(a) for a in _z(jnp.asarray(x), jnp.asarray(valid), exact))
        np.testing.assert_array_equal(ok, ~np.isnan(want))
        np.testing.assert_allclose(z[ok], want[ok], atol=tol)
        assert np.all(z[~ok] == 0)


def test_rolling_zscore_of_a_constant_window_is_zero():
    x = jnp.full((60, 1), 6.5, jnp.float32)
    z, ok = _z(x, jnp.ones((60, 1), bool), True)
    assert bool(ok[30, 0]) and np.all(np.asarray(z) == 0)


def test_bitonic_sort_matches_numpy():
    x = RNG.normal(size=(60, 50, 2)).astype(np.float32)
    x[:, 0, 0] = 1.0  # ties
    got = np.asarray(jax.jit(sort_axis0)(jnp.asarray(x)))
    assert got.shape == (64, 50, 2) and np.all(np.isinf(got[60:]))
    np.testing.assert_array_equal(got[:60], np.sort(x, axis=0))
