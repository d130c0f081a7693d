"""load_market against pandas/NumPy references on the tiny fixture market."""

from __future__ import annotations

import copy
import time

import jax
import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import calendar, io, schema
from hrl_sarp_jax.data.loader import category_codes, gap_runs, load_market
from hrl_sarp_jax.errors import ConfigError, ValidationError
from tests.data.market_fixtures import market_tables

P = schema.PRICES_FILE
CFG = DataConfig(max_stocks=10, max_sectors=4)
ORDER = ("INFY", "TCS", "WIPRO", "AXISBANK", "HDFCBANK", "SBIN", "CIPLA", "LUPIN")


def _load(tmp, tables, meta, cfg=CFG):
    return load_market(io.write_market(tmp, tables, meta), cfg)


def _pivot(prices: pd.DataFrame, col: str) -> pd.DataFrame:
    return prices.pivot(index="date", columns="ticker", values=col)[list(ORDER)]


def _rows(p: pd.DataFrame, ticker: str, sl) -> np.ndarray:
    return np.flatnonzero((p["ticker"] == ticker).to_numpy())[sl]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    tables, meta = market_tables(seed=2)
    arrays, mmeta = _load(tmp_path_factory.mktemp("plain"), tables, meta)
    return tables, arrays, mmeta


@pytest.fixture(scope="module")
def repaired(tmp_path_factory):
    """A market with every repair: gaps, NaN runs, late listing, delisting, close-only, adj_close,
    circuit hits and a late-starting macro series."""
    tables, meta = market_tables(seed=3)
    p = tables[P]
    p["adj_close"] = np.nan
    ax = _rows(p, "AXISBANK", slice(None))
    p.loc[ax, "adj_close"] = p.loc[ax, "close"] * np.where(np.arange(len(ax)) < 150, 0.5, 1.0)
    wi = _rows(p, "WIPRO", slice(None))
    for day, move in ((200, 1.2), (230, 0.8)):  # exactly at the 20% band
        factor = move * p.loc[wi[day - 1], "close"] / p.loc[wi[day], "close"]
        p.loc[wi[day:], ["open", "high", "low", "close"]] *= factor
    p.loc[_rows(p, "TCS", slice(150, 153)), "close"] = np.nan
    p.loc[_rows(p, "LUPIN", slice(None)), ["open", "high", "low"]] = np.nan
    drop = np.r_[_rows(p, "INFY", slice(100, 102)), _rows(p, "HDFCBANK", slice(60, 70)),
                 _rows(p, "SBIN", slice(0, 20)), _rows(p, "CIPLA", slice(251, None))]
    tables[P] = p.drop(index=drop).reset_index(drop=True)
    m = tables[schema.MACRO_FILE]
    m.loc[m["date"] < "2019-06-01", "gold"] = np.nan
    arrays, mmeta = _load(tmp_path_factory.mktemp("rep"), tables, meta)
    return market_tables(seed=3)[0], arrays, mmeta  # reference: the untouched frames


def test_axes_order_padding_and_dtypes(plain):
    _, a, meta = plain
    assert meta.tickers == (*ORDER, "", "")
    assert meta.sectors == ("IT", "Financials", "Pharma", "")
    np.testing.assert_array_equal(a.stock_sector, [0, 0, 0, 1, 1, 1, 2, 2, 0, 0])
    np.testing.assert_array_equal(a.stock_valid, [True] * 8 + [False] * 2)
    np.testing.assert_array_equal(a.sector_valid, [True, True, True, False])
    np.testing.assert_array_equal(meta.dates, calendar.trading_days("2019-01-01", "2020-03-31"))
    assert meta.dates.dtype == np.dtype("datetime64[D]")
    assert (meta.market, meta.currency, meta.synthetic) == ("test", "INR", True)
    assert meta.fundamental_names == schema.FUNDAMENTAL_FIELDS
    expect = {"circuit_lock": np.int8, "stock_sector": np.int32, "latent_regime": np.int32}
    for name, leaf in vars(a).items():
        if leaf.dtype == bool:
            continue
        assert leaf.dtype == expect.get(name, np.float32), name
        assert not leaf.weak_type, name
    assert a.close.shape == (307, 10) and a.fundamentals.shape == (307, 10, 10)
    assert not np.asarray(a.stock_mask)[:, 8:].any() and not np.asarray(a.close)[:, 8:].any()
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(a) if x.dtype != bool)


def test_prices_and_returns_match_pandas(plain):
    tables, a, _ = plain
    close = _pivot(tables[P], "close")
    np.testing.assert_allclose(np.asarray(a.close)[:, :8], close.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a.returns)[:, :8],
                               close.pct_change().fillna(0.0).to_numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(a.open)[:, :8], _pivot(tables[P], "open"), rtol=1e-6)
    assert np.asarray(a.stock_mask)[:, :8].all() and np.asarray(a.has_ohlc)[:8].all()
    np.testing.assert_allclose(np.asarray(a.market_cap)[:, :8], _pivot(tables[P], "market_cap"),
                               rtol=1e-6)


def _sector_ref(r: np.ndarray, ok: np.ndarray, cap: np.ndarray, sect: np.ndarray, S: int):
    """Loop reference: Σ cap_i(t-1) r_i(t) / Σ cap_i(t-1) over members valid on t-1 and t."""
    T = r.shape[0]
    out = np.zeros((T, S))
    for t in range(1, T):
        for s in range(S):
            m = (sect == s) & ok[t] & ok[t - 1]
            if m.any():
                out[t, s] = (cap[t - 1, m] * r[t, m]).sum() / cap[t - 1, m].sum()
    return out


def test_sector_panels_cap_weighted_and_index_benchmark(plain):
    tables, a, _ = plain
    r = _pivot(tables[P], "close").pct_change().fillna(0.0).to_numpy()
    cap = _pivot(tables[P], "market_cap").to_numpy()
    sect = np.asarray(a.stock_sector)[:8]
    ref = _sector_ref(r, np.ones_like(r, bool), cap, sect, 3)
    np.testing.assert_allclose(np.asarray(a.sector_returns)[:, :3], ref, atol=1e-6)
    np.testing.assert_allclose(np.asarray(a.sector_close)[:, :3], np.cumprod(1 + ref, 0), rtol=1e-5)
    assert np.asarray(a.sector_close)[0, :3].tolist() == [1.0, 1.0, 1.0]
    assert np.asarray(a.sector_mask)[:, :3].all() and not np.asarray(a.sector_mask)[:, 3].any()
    idx = tables[schema.INDEX_FILE]["close"].to_numpy()
    np.testing.assert_allclose(np.asarray(a.benchmark_close), idx, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a.benchmark_returns)[1:], idx[1:] / idx[:-1] - 1,
                               atol=1e-6)


def test_equal_weighting_and_universe_benchmark(tmp_path):
    tables, meta = market_tables(seed=2)
    del tables[schema.INDEX_FILE]
    a, _ = _load(tmp_path, tables, meta, DataConfig(sector_weighting="equal"))
    r = _pivot(tables[P], "close").pct_change().fillna(0.0)
    groups = [list(ORDER[:3]), list(ORDER[3:6]), list(ORDER[6:])]
    ref = np.stack([r[g].mean(axis=1).to_numpy() for g in groups], 1)
    np.testing.assert_allclose(np.asarray(a.sector_returns), ref, atol=1e-6)
    universe = r.mean(axis=1).to_numpy()
    np.testing.assert_allclose(np.asarray(a.benchmark_returns), universe, atol=1e-6)
    np.testing.assert_allclose(np.asarray(a.benchmark_close), np.cumprod(1 + universe), rtol=1e-5)


def test_macro_asof_join(plain):
    tables, a, meta = plain
    assert meta.macro_names == ("vix", "usd_inr", "policy_rate", "gold")
    days = pd.DataFrame({"date": pd.DatetimeIndex(meta.dates)})
    macro = tables[schema.MACRO_FILE]
    for j, name in enumerate(meta.macro_names):
        obs = macro[["date", name]].dropna().astype({"date": "datetime64[ns]"})
        ref = pd.merge_asof(days.astype("datetime64[ns]"), obs, on="date")[name].to_numpy()
        np.testing.assert_allclose(np.asarray(a.macro)[:, j], ref, rtol=1e-6)
    assert np.asarray(a.macro_mask).all()
    # policy_rate is monthly: constant inside a month, equal to that month's first-day value
    feb = (meta.dates >= np.datetime64("2019-02-01")) & (meta.dates < np.datetime64("2019-03-01"))
    first = macro.loc[macro["date"] == "2019-02-01", "policy_rate"].item()
    np.testing.assert_allclose(np.asarray(a.macro)[feb, 2], first, rtol=1e-6)


def test_fundamentals_and_sentiment_asof(plain):
    tables, a, meta = plain
    days = pd.DataFrame({"date": pd.DatetimeIndex(meta.dates).astype("datetime64[ns]")})
    fund = tables[schema.FUNDAMENTALS_FILE].astype({"date": "datetime64[ns]"})
    for n, ticker in enumerate(ORDER):
        obs = fund[fund["ticker"] == ticker].sort_values("date")
        ref = pd.merge_asof(days, obs, on="date")
        for field in ("pe", "pb", "roe"):
            k = schema.FUNDAMENTAL_FIELDS.index(field)
            np.testing.assert_allclose(np.asarray(a.fundamentals)[:, n, k],
                                       ref[field].fillna(0.0), rtol=1e-6)
            np.testing.assert_array_equal(np.asarray(a.fundamentals_mask)[:, n, k],
                                          ref[field].notna())
    fm = np.asarray(a.fundamentals_mask)
    known = [schema.FUNDAMENTAL_FIELDS.index(f) for f in ("pe", "pb", "roe")]
    assert fm[-1, :8][:, known].all() and not np.delete(fm, known, axis=2).any()
    assert not fm[0].any()  # the first figures are published 2019-02-15
    # a figure published on date d is used from d on, never before
    d = np.datetime64("2019-05-15")
    t = int(np.searchsorted(meta.dates, d))
    new = fund.loc[(fund["date"] == "2019-05-15") & (fund["ticker"] == "INFY"), "pe"].item()
    assert np.asarray(a.fundamentals)[t, 0, 0] == np.float32(new)
    assert np.asarray(a.fundamentals)[t - 1, 0, 0] != np.float32(new)

    sent = tables[schema.SENTIMENT_FILE].astype({"date": "datetime64[ns]"})
    ref = pd.merge_asof(days, sent, on="date")["score"].to_numpy()
    np.testing.assert_allclose(np.asarray(a.sentiment)[:, 0], ref, rtol=1e-6)
    sm = np.asarray(a.sentiment_mask)
    assert sm[:, 0].all() and not sm[:, 1:].any()


def test_regimes_and_week_ends(plain):
    tables, a, meta = plain
    np.testing.assert_array_equal(a.latent_regime, tables[schema.REGIMES_FILE]["regime"])
    np.testing.assert_array_equal(a.week_end, calendar.week_end_flags(meta.dates))


def test_repairs_gaps_listing_and_delisting(repaired):
    ref_tables, a, meta = repaired
    d = meta.dates
    close_ref = _pivot(ref_tables[P], "close").to_numpy()
    mask, close, ret = (np.asarray(x) for x in (a.stock_mask, a.close, a.returns))
    infy, tcs, hdfc, sbin, cipla = 0, 1, 4, 5, 6
    # INFY: 2 missing rows forward-filled, volume 0, return bridges the gap
    assert mask[100:102, infy].all()
    np.testing.assert_allclose(close[100:102, infy], close_ref[99, infy], rtol=1e-6)
    assert not np.asarray(a.volume)[100:102, infy].any()
    assert ret[100, infy] == 0.0 and ret[101, infy] == 0.0
    np.testing.assert_allclose(ret[102, infy], close_ref[102, infy] / close_ref[99, infy] - 1,
                               rtol=1e-5)
    assert f"INFY: forward-filled 2 missing closes ({d[100]}..{d[101]})" in meta.repairs
    # TCS: explicit NaN closes (3 days) filled the same way
    assert mask[150:153, tcs].all()
    np.testing.assert_allclose(close[150:153, tcs], close_ref[149, tcs], rtol=1e-6)
    # HDFCBANK: 10-day gap stays masked; no return across it
    assert not mask[60:70, hdfc].any() and not close[60:70, hdfc].any()
    assert ret[70, hdfc] == 0.0 and mask[70, hdfc]
    assert (f"HDFCBANK: 10 missing closes ({d[60]}..{d[69]}) left masked "
            "(longer than data.ffill_limit=5)") in meta.repairs
    # SBIN listed on day 20, CIPLA delisted after day 250
    assert not mask[:20, sbin].any() and mask[20:, sbin].all() and ret[20, sbin] == 0.0
    assert not mask[251:, cipla].any() and mask[:251, cipla].all()
    assert f"SBIN: masked before its first price on {d[20]}" in meta.repairs
    assert f"CIPLA: masked after its last price on {d[250]}" in meta.repairs
    assert not np.asarray(a.market_cap_mask)[:20, sbin].any()
    assert len(meta.repairs) == 5


def test_close_only_adjusted_and_circuit(repaired):
    ref_tables, a, _ = repaired
    o, h, lo, c = (np.asarray(x) for x in (a.open, a.high, a.low, a.close))
    np.testing.assert_array_equal(lo[:, 7], c[:, 7])
    assert np.asarray(a.has_ohlc).tolist()[:8] == [True] * 7 + [False]
    np.testing.assert_array_equal(o[:, 7], c[:, 7])  # LUPIN close-only
    np.testing.assert_array_equal(h[:, 7], c[:, 7])
    # AXISBANK: adjusted close halves the first 150 days; bars scaled with it
    raw_c, raw_o = (_pivot(ref_tables[P], k).to_numpy()[:, 3] for k in ("close", "open"))
    factor = np.where(np.arange(len(raw_c)) < 150, 0.5, 1.0)
    np.testing.assert_allclose(c[:, 3], raw_c * factor, rtol=1e-6)
    np.testing.assert_allclose(o[:, 3], raw_o * factor, rtol=1e-6)
    # WIPRO: +20% on day 200, -20% on day 230 with a 20% band
    lock = np.asarray(a.circuit_lock)
    assert lock[200, 2] == 1 and lock[230, 2] == -1
    assert np.count_nonzero(lock) == 2
    # sector panels honour the masks: loop reference from the loaded arrays
    ok = np.asarray(a.stock_mask)[:, :8]
    cap = np.asarray(a.market_cap, np.float64)[:, :8]
    ref = _sector_ref(np.asarray(a.returns, np.float64)[:, :8], ok, cap,
                      np.asarray(a.stock_sector)[:8], 3)
    np.testing.assert_allclose(np.asarray(a.sector_returns)[:, :3], ref, atol=1e-6)


def test_macro_mask_before_first_observation(repaired):
    _, a, meta = repaired
    first = int(np.searchsorted(meta.dates, np.datetime64("2019-06-01")))
    gold = meta.macro_names.index("gold")
    mm = np.asarray(a.macro_mask)[:, gold]
    assert not mm[:first].any() and mm[first:].all()
    assert not np.asarray(a.macro)[:first, gold].any()


def test_no_lookahead(tmp_path):
    """Changing every value dated after t0 leaves all arrays at <= t0 unchanged."""
    tables, meta = market_tables(seed=4)
    after = copy.deepcopy(tables)
    t0 = pd.Timestamp("2019-10-15")
    rng = np.random.default_rng(9)
    p = after[P]
    late = (p["date"] > t0).to_numpy()
    scale = rng.uniform(0.5, 1.5, late.sum())
    for col in ("open", "high", "low", "close", "market_cap"):
        p.loc[late, col] *= scale
    p.loc[late, "volume"] *= 3
    for name, cols in ((schema.MACRO_FILE, ["vix", "policy_rate"]),
                       (schema.FUNDAMENTALS_FILE, ["pe"]), (schema.INDEX_FILE, ["close"]),
                       (schema.SENTIMENT_FILE, ["score"])):
        f = after[name]
        f.loc[f["date"] > t0, cols] *= 0.5
    r = after[schema.REGIMES_FILE]
    r.loc[r["date"] > t0, "regime"] = 2
    a, m = _load(tmp_path / "a", tables, meta)
    b, _ = _load(tmp_path / "b", after, meta)
    t = int(np.searchsorted(m.dates, np.datetime64(t0.date()))) + 1
    changed = []
    for name in vars(a):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        if x.shape and x.shape[0] == len(m.dates):
            if not np.array_equal(x[:t], y[:t]):
                changed.append(name)
            if name in ("close", "macro", "fundamentals", "benchmark_close", "latent_regime"):
                assert not np.array_equal(x[t:], y[t:]), name  # the perturbation did land
        elif not np.array_equal(x, y):
            changed.append(name)
    assert changed == []


def test_errors(tmp_path):
    tables, meta = market_tables(seed=2)
    root = io.write_market(tmp_path / "ok", tables, meta)
    with pytest.raises(ConfigError, match=r"data\.max_stocks"):
        load_market(root, DataConfig(max_stocks=5))
    with pytest.raises(ConfigError, match=r"data\.max_sectors"):
        load_market(root, DataConfig(max_sectors=2))
    with pytest.raises(ConfigError, match=r"data\.sector_weighting"):
        load_market(root, DataConfig(sector_weighting="market"))
    tables[P].loc[5, "high"] = tables[P].loc[5, "low"] / 2
    tables[P].loc[6, "volume"] = -1.0
    with pytest.raises(ValidationError) as err:
        _load(tmp_path / "bad", tables, meta)
    assert len(err.value.problems) == 2 and "(+1 more problems)" in str(err.value)


def test_gap_runs_hand_computed():
    m = np.array([[0, 1], [1, 1], [1, 0], [0, 1]], bool)
    # column 0: run at t=1 length 2; column 1: run at t=0 length 2, run at t=3 length 1
    t, n, k = gap_runs(m)
    runs = list(zip(t.tolist(), n.tolist(), k.tolist(), strict=True))
    assert runs == [(1, 0, 2), (0, 1, 2), (3, 1, 1)]


@pytest.mark.slow
def test_load_speed_3200_days_55_tickers(tmp_path, monkeypatch):
    import tests.data.market_fixtures as mf

    monkeypatch.setattr(mf, "SECTORS", {f"S{s:02d}": [f"T{s}_{i}" for i in range(5)]
                                        for s in range(11)})
    tables, meta = mf.market_tables(0, "2012-01-02", "2024-12-31")
    meta["sectors"] = sorted(mf.SECTORS)
    root = io.write_market(tmp_path, tables, meta)
    load_market(root, DataConfig())
    t = time.perf_counter()
    a, _ = load_market(root, DataConfig())
    assert a.close.shape == (3199, 55)
    assert time.perf_counter() - t < 2.0


@pytest.mark.parametrize("dtype", ["str", object])
def test_category_codes_hand_values(dtype):
    """Each value's position among the categories; -1 for a value not among them and for a
    missing one (what pd.Categorical(values, categories).codes gave)."""
    values = pd.Series(["IT", "BANK", None, "OIL", "IT", "AUTO"], dtype=dtype)
    got = category_codes(values, ["AUTO", "BANK", "IT"])
    np.testing.assert_array_equal(got, [2, 1, -1, -1, 2, 0])
    assert category_codes(pd.Series([], dtype=dtype), ["AUTO"]).shape == (0,)
