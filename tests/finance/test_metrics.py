"""Metrics against NumPy and hand computations, masks, and zero-variance safety."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.finance import metrics as M

R = np.array([0.01, -0.02, 0.015, -0.005, 0.03, -0.01, 0.0, 0.02, -0.03, 0.012], np.float64)
PAD = 4   # padded slots filled with garbage, masked out


@pytest.fixture(scope="module")
def all_metrics():
    def f(r, mask):
        return {
            "sharpe": M.sharpe(r, 252, 0.0001, mask=mask),
            "sortino": M.sortino(r, 252, 0.0, mask=mask),
            "mdd": M.max_drawdown(r, mask=mask),
            "mdd_dur": M.max_drawdown_duration(r, mask=mask),
            "calmar": M.calmar(r, 252, mask=mask),
            "cagr": M.annualised_return(r, 252, mask=mask),
            "vol": M.annualised_vol(r, 252, mask=mask),
            "cvar95": M.cvar(r, 0.95, mask=mask),
            "cvar80": M.cvar(r, 0.8, mask=mask),
            "var80": M.var(r, 0.8, mask=mask),
            "hit": M.hit_rate(r, mask=mask),
            "total": M.total_return(r, mask=mask),
        }
    return jax.jit(f)


def _np_metrics(r):
    e = r - 0.0001
    wealth = np.cumprod(1 + r)
    peak = np.maximum(np.maximum.accumulate(wealth), 1.0)
    mdd = np.max(1 - wealth / peak)
    cagr = wealth[-1] ** (252 / len(r)) - 1
    srt = np.sort(r)
    return {
        "sharpe": e.mean() / e.std(ddof=1) * np.sqrt(252),
        "sortino": r.mean() / np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(252),
        "mdd": mdd,
        "calmar": cagr / mdd,
        "cagr": cagr,
        "vol": r.std(ddof=1) * np.sqrt(252),
        "cvar95": -srt[: math.ceil(0.05 * len(r))].mean(),     # k = 1 of 10
        "cvar80": -srt[:2].mean(),                              # k = ceil(0.2 * 10) = 2
        "var80": -np.quantile(r, 0.2, method="inverted_cdf"),  # 2nd smallest
        "hit": np.mean(r > 0),
        "total": wealth[-1] - 1,
    }


def test_metrics_match_numpy(all_metrics):
    got = all_metrics(jnp.asarray(R, jnp.float32), jnp.ones(len(R), bool))
    want = _np_metrics(R)
    for k, v in want.items():
        np.testing.assert_allclose(float(got[k]), v, rtol=2e-5, atol=1e-7, err_msg=k)
        assert got[k].dtype == jnp.float32, k


def test_mask_drops_padding(all_metrics):
    padded = np.concatenate([R, np.full(PAD, -0.9)])
    mask = np.concatenate([np.ones(len(R), bool), np.zeros(PAD, bool)])
    # [14] with 4 garbage slots (-0.9) that the mask must remove
    got = all_metrics(jnp.asarray(padded, jnp.float32), jnp.asarray(mask))
    want = _np_metrics(R)
    for k, v in want.items():
        np.testing.assert_allclose(float(got[k]), v, rtol=2e-5, atol=1e-7, err_msg=k)


def test_drawdown_by_hand():
    r = jnp.array([0.1, -0.2, 0.05, 0.2, -0.1], jnp.float32)
    # wealth 1.1, 0.88, 0.924, 1.1088, 0.99792; peaks 1.1, 1.1, 1.1, 1.1088, 1.1088
    # drawdowns 0, 0.2, 0.16, 0, 0.1 -> max 0.2, longest run 2 (periods 1-2)
    np.testing.assert_allclose(np.asarray(M.drawdown_series(r)), [0, 0.2, 0.16, 0, 0.1],
                               atol=1e-6)
    assert float(M.max_drawdown(r)) == pytest.approx(0.2, abs=1e-6)
    assert int(M.max_drawdown_duration(r)) == 2
    # a loss on day one counts against the starting wealth of 1
    r2 = jnp.array([-0.1, 0.05, 0.2], jnp.float32)
    assert float(M.max_drawdown(r2)) == pytest.approx(0.1, abs=1e-6)
    assert int(M.max_drawdown_duration(r2)) == 2
    # masked periods neither extend nor end a run
    r3 = jnp.array([-0.1, 0.5, 0.05, 0.0], jnp.float32)
    m3 = jnp.array([True, False, True, True])
    assert int(M.max_drawdown_duration(r3, mask=m3)) == 3


def test_turnover_by_hand():
    w = jnp.array([[0.5, 0.5], [0.6, 0.4], [0.6, 0.4], [0.0, 1.0]], jnp.float32)
    # one-way turnover 0.1, 0.0, 0.6 -> mean 0.7 / 3
    assert float(M.turnover(w)) == pytest.approx(0.7 / 3, rel=1e-6)
    # row 3 invalid: only transitions 1 and 2 count -> mean 0.05
    assert float(M.turnover(w, mask=jnp.array([1, 1, 1, 0], bool))) == pytest.approx(0.05)


def test_zero_variance_and_degenerate_inputs_are_safe():
    flat = jnp.full((6,), 0.001, jnp.float32)
    for v in (M.sharpe(flat), M.sortino(flat), M.calmar(flat), M.annualised_vol(flat)):
        assert float(v) == 0.0
    one = jnp.array([0.02], jnp.float32)
    assert float(M.sharpe(one)) == 0.0
    empty_mask = jnp.zeros(6, bool)
    vals = [M.sharpe(flat, mask=empty_mask), M.cvar(flat, mask=empty_mask),
            M.var(flat, mask=empty_mask), M.hit_rate(flat, mask=empty_mask),
            M.annualised_return(flat, mask=empty_mask), M.turnover(jnp.zeros((1, 3)))]
    assert all(float(v) == 0.0 for v in vals)
    # a constant loss has full downside: sortino = -sqrt(252)
    assert float(M.sortino(-flat)) == pytest.approx(-np.sqrt(252), rel=1e-5)


def test_cvar_tail_size_at_alpha_095():
    # n = 20, alpha 0.95: k = ceil(0.05 * 20) = 1 (float32 gives 1.0000002 without the guard)
    r = jnp.asarray(np.linspace(-0.05, 0.045, 20), jnp.float32)
    assert float(M.cvar(r, 0.95)) == pytest.approx(0.05, rel=1e-6)
    # n = 21: k = ceil(1.05) = 2 -> mean of the two worst
    r21 = jnp.asarray(np.linspace(-0.05, 0.05, 21), jnp.float32)
    assert float(M.cvar(r21, 0.95)) == pytest.approx((0.05 + 0.045) / 2, rel=1e-5)
    assert float(M.var(r21, 0.95)) == pytest.approx(0.045, rel=1e-5)
    assert float(M.var(r21, 0.95)) <= float(M.cvar(r21, 0.95))


def test_block_sharpes_cut_the_series_into_consecutive_blocks():
    assert M.block_index(5, 2).tolist() == [0, 0, 1, 1, 1]
    assert M.block_index(8, 4).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # shorter than two blocks: two halves of at least 2 periods
    assert M.block_index(7, 13).tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert M.block_index(6, 4).tolist() == [0, 0, 0, 1, 1, 1]
    assert M.block_index(3, 4).tolist() == [0, 0, 0]      # too short to halve: one block
    mask = np.ones(R.size, bool)
    mask[4] = False                                        # dropped inside its block
    got = np.asarray(jax.jit(lambda r, m: M.block_sharpes(r, 3, 52, mask=m))(R, mask))

    def numpy_sharpe(x):
        return x.mean() / x.std(ddof=1) * math.sqrt(52)

    # blocks [0, 3), [3, 6) and [6, 10) (the remainder joins the last), period 4 masked out
    want = [numpy_sharpe(R[:3]), numpy_sharpe(R[[3, 5]]), numpy_sharpe(R[6:])]
    np.testing.assert_allclose(got, want, rtol=1e-5)
