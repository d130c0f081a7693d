"""data/resample.py: the stationary block bootstrap of a market's days."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import io, schema
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.resample import (
    bootstrap_days,
    bootstrap_market,
    resample_days,
    stationary_bootstrap_indices,
)
from tests.data.market_fixtures import market_tables

DATA = DataConfig(val_start="2020-01-01", test_start="2020-03-01")


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The fixture market with TCS unlisted for its first 30 days and 9 mid-window days."""
    tables, meta = market_tables(3)
    prices = tables[schema.PRICES_FILE]
    days = np.sort(prices["date"].unique())
    gone = (prices["ticker"] == "TCS") & (prices["date"].isin(days[:30])
                                          | prices["date"].isin(days[100:109]))
    tables[schema.PRICES_FILE] = prices[~gone].reset_index(drop=True)
    meta = {**meta, "synthetic": False}
    out = io.write_market(tmp_path_factory.mktemp("resample") / "m", tables, meta)
    return load_market(out, DATA)


def test_stationary_bootstrap_blocks():
    rng = np.random.default_rng(0)
    idx = stationary_bootstrap_indices(1000, 50, 10.0, rng)
    assert idx.shape == (50, 1000) and idx.min() >= 0 and idx.max() < 1000
    cont = (np.diff(idx, axis=1) % 1000) == 1
    assert 0.85 < cont.mean() < 0.95  # continue with prob 1 - 1/10 (+ rare random hits)
    # a longer draw than the source: the same rule, indices still inside [0, n)
    long = stationary_bootstrap_indices(100, 20, 25.0, np.random.default_rng(1), length=3000)
    assert long.shape == (20, 3000) and long.min() >= 0 and long.max() < 100
    p = ((np.diff(long, axis=1) % 100) == 1).mean()
    # P(continue) = 1 - 1/25 + (1/25)(1/100) (a new start that happens to be the next day)
    want = 1 - 1 / 25 + 1 / 2500
    assert abs(p - want) < 4 * np.sqrt(want * (1 - want) / long[:, 1:].size)
    # the default length keeps the earlier draws bit for bit (evaluation/stats.py uses them)
    np.testing.assert_array_equal(
        stationary_bootstrap_indices(50, 3, 5.0, np.random.default_rng(2)),
        stationary_bootstrap_indices(50, 3, 5.0, np.random.default_rng(2), length=50))


def test_bootstrap_days_stay_in_their_window():
    days = bootstrap_days(40, 140, 5000, 20.0, seed=3)
    assert days.min() >= 40 and days.max() < 140
    assert len(np.unique(days)) == 100  # 5,000 draws cover the whole window
    np.testing.assert_array_equal(days, bootstrap_days(40, 140, 5000, 20.0, seed=3))
    assert not np.array_equal(days, bootstrap_days(40, 140, 5000, 20.0, seed=4))
    with pytest.raises(ValueError, match="empty"):
        bootstrap_days(5, 5, 10, 2.0, seed=0)


def test_each_day_moves_whole_and_levels_compound_its_returns(loaded):
    market, _ = loaded
    a = {f.name: np.asarray(getattr(market, f.name)) for f in dataclasses.fields(market)}
    days = np.r_[np.arange(20, 60), np.arange(95, 130), np.arange(5, 25), np.arange(200, 220)]
    out = resample_days(market, days)
    b = {f.name: np.asarray(getattr(out, f.name)) for f in dataclasses.fields(out)}
    t = days.size
    for k in ("macro", "macro_mask", "fundamentals", "fundamentals_mask", "sentiment",
              "stock_mask", "sector_mask", "volume", "delivery_pct", "latent_regime"):
        np.testing.assert_array_equal(b[k], a[k][days], err_msg=k)
    for k in ("stock_sector", "stock_valid", "has_ohlc", "sector_valid"):
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    np.testing.assert_array_equal(b["week_end"], a["week_end"][:t])  # the calendar stays
    mask = b["stock_mask"]
    both = mask[1:] & mask[:-1]
    # a return is the source day's where this and the previous drawn day are listed, else 0
    np.testing.assert_array_equal(b["returns"][1:][both], a["returns"][days[1:]][both])
    np.testing.assert_array_equal(b["returns"][1:][~both], 0.0)
    np.testing.assert_array_equal(b["returns"][0], 0.0)
    np.testing.assert_array_equal(b["circuit_lock"][1:][~both], 0)
    # TCS (column 1) is unlisted on source days 100-108: a gap inside the second block
    tcs = 1
    assert not mask[[np.flatnonzero(days == d)[0] for d in range(100, 109)], tcs].any()
    # close: the first listed close, compounded by the drawn returns (NumPy oracle, float64)
    for n in range(int(market.num_stocks)):
        first = int(np.argmax(mask[:, n]))
        level = a["close"][days[first], n] * np.cumprod(
            1.0 + np.where(np.arange(t) > first, b["returns"][:, n].astype(np.float64), 0.0))
        np.testing.assert_allclose(b["close"][mask[:, n], n], level[mask[:, n]], rtol=2e-6)
        assert (b["close"][~mask[:, n], n] == 0).all()
    ratio = np.where(mask, b["close"] / np.where(mask, a["close"][days], 1.0), 0.0)
    for k in ("open", "high", "low"):  # bars keep their source-day ratio to the close
        np.testing.assert_allclose(b[k][mask] / b["close"][mask],
                                   a[k][days][mask] / a["close"][days][mask], rtol=2e-6)
    cap_ok = b["market_cap_mask"]
    np.testing.assert_allclose(b["market_cap"][cap_ok], (a["market_cap"][days] * ratio)[cap_ok],
                               rtol=2e-6)
    for lvl, ret in (("sector_close", "sector_returns"), ("benchmark_close", "benchmark_returns")):
        np.testing.assert_array_equal(b[ret][1:], a[ret][days[1:]])
        np.testing.assert_allclose(b[lvl][1:] / b[lvl][:-1] - 1.0, b[ret][1:], atol=2e-6)
    np.testing.assert_allclose(b["benchmark_close"][0], a["benchmark_close"][days[0]], rtol=1e-7)


def test_a_bootstrap_reads_nothing_outside_its_window(loaded):
    """No look-ahead: changing every day from the window's end on changes nothing drawn."""
    market, meta = loaded
    hi = int(np.searchsorted(meta.dates, np.datetime64(DATA.val_start)))
    one, one_meta, days = bootstrap_market(market, meta, (1, hi), 15.0, seed=9)
    assert one.num_days == market.num_days and days.min() >= 1 and days.max() < hi
    assert list(one_meta.dates) == list(meta.dates) and not one_meta.synthetic
    assert "bootstrap" in one_meta.source and "seed 9" in one_meta.source

    def later(x):
        x = np.array(x)
        if x.ndim and x.shape[0] == market.num_days:
            if x.dtype == bool:
                x[hi:] = ~x[hi:]
            else:
                x[hi:] = x[hi:] * 3 + 1
        return x

    changed = market.replace(**{f.name: later(getattr(market, f.name))
                                for f in dataclasses.fields(market)
                                if f.name not in ("week_end",)})
    other, _, days2 = bootstrap_market(changed, meta, (1, hi), 15.0, seed=9)
    np.testing.assert_array_equal(days, days2)
    for f in dataclasses.fields(one):
        np.testing.assert_array_equal(np.asarray(getattr(other, f.name)),
                                      np.asarray(getattr(one, f.name)), err_msg=f.name)
    # and another seed is another history
    two, _, _ = bootstrap_market(market, meta, (1, hi), 15.0, seed=10)
    assert not np.array_equal(np.asarray(two.returns), np.asarray(one.returns))
