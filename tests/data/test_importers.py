"""Importers: original HRL-SARP layout and long/wide tables -> valid canonical markets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import calendar, schema
from hrl_sarp_jax.data.importers import import_hrl_sarp, import_table
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.validate import validate_market
from hrl_sarp_jax.errors import DataError

CFG = DataConfig(min_history_days=20)
UNIVERSE = {"it": ["TCS", "INFY"], "financials": ["SBIN", "HDFCBANK", "M&M"]}


def _bars(rng: np.random.Generator, dates: pd.DatetimeIndex, symbol: str) -> pd.DataFrame:
    close = np.round(rng.uniform(100, 2000) * np.cumprod(1 + rng.normal(0, 0.02, len(dates))), 2)
    spread = close * 0.01
    return pd.DataFrame({
        "date": dates, "symbol": symbol, "open": np.round(close + spread * 0.3, 2),
        "high": np.round(close + spread, 2), "low": np.round(close - spread, 2), "close": close,
        "volume": rng.integers(1_000, 9_000, len(dates)),
    })


def _original_layout(root, capitalised: bool, dates: pd.DatetimeIndex, seed: int) -> dict:
    """Write the original data/raw layout; return {symbol: close series} for checking."""
    rng = np.random.default_rng(seed)
    (root / "market").mkdir(parents=True)
    closes = {}
    for stem, symbols in UNIVERSE.items():
        frames = [_bars(rng, dates, f"{s}.NS") for s in symbols]  # symbol-major rows
        df = pd.concat(frames, ignore_index=True)
        for s, f in zip(symbols, frames, strict=True):
            closes[s] = f["close"].to_numpy()
        if capitalised:
            df = df.rename(columns=str.capitalize).set_index("Date")  # DatetimeIndex
            df["Adj_Close"] = df["Close"]
        df.to_parquet(root / "market" / f"{stem}_ohlcv.parquet", index=capitalised)
    idx = pd.DataFrame({"date": dates, "open": 1.0, "high": 2.0, "low": 0.5,
                        "close": 18000 * np.cumprod(1 + rng.normal(0, 0.01, len(dates)))})
    idx.to_parquet(root / "market" / "NSEI_index.parquet", index=False)
    (root / "macro").mkdir()
    months = pd.date_range(dates[0] - pd.offsets.MonthBegin(1), dates[-1], freq="MS")
    macro = pd.DataFrame({"Date" if capitalised else "date": months,
                          "gdp_growth": rng.uniform(5, 8, len(months)),
                          "interest_rate": rng.uniform(5.5, 7.5, len(months)),
                          "fii_flows": rng.normal(0, 5000, len(months)),
                          "india_vix" if capitalised else "vix": rng.uniform(12, 25, len(months)),
                          "crude_oil": rng.uniform(60, 90, len(months)),
                          "us_10y_yield": rng.uniform(3, 5, len(months)),
                          "source": "demo"})
    macro.to_parquet(root / "macro" / "macro_indicators.parquet", index=False)
    (root / "fundamentals").mkdir()
    syms = [s for v in UNIVERSE.values() for s in v]
    fund = pd.DataFrame({"symbol": [f"{s}.NS" for s in syms], "pe_ratio": rng.uniform(10, 50, 5),
                         "pb_ratio": rng.uniform(1, 10, 5), "roe": rng.uniform(5, 25, 5),
                         "debt_to_equity": rng.uniform(0, 2, 5), "eps": rng.uniform(5, 100, 5),
                         "fetch_date": str(dates[40].date())})
    fund.to_parquet(root / "fundamentals" / "fundamentals.parquet", index=False)
    return closes


def test_import_original_lowercase_business_days(tmp_path):
    dates = pd.bdate_range("2023-01-02", periods=60)  # includes Republic Day 2023-01-26
    closes = _original_layout(tmp_path / "raw", capitalised=False, dates=dates, seed=0)
    out = import_hrl_sarp(tmp_path / "raw", tmp_path / "mkt", log=None)
    report = validate_market(out, CFG)
    assert report.problems == []
    meta = json.loads((out / schema.META_FILE).read_text())
    assert meta["calendar"] == "weekdays"
    assert any("2023-01-26" in n and "weekdays" in n for n in meta["import_notes"])
    assert meta["sectors"] == ["IT", "Financials"]
    a, m = load_market(out, CFG)
    assert m.tickers == ("INFY", "TCS", "HDFCBANK", "M&M", "SBIN")
    assert m.sectors == ("IT", "Financials")
    np.testing.assert_array_equal(m.dates, dates.to_numpy().astype("datetime64[D]"))
    for n, t in enumerate(m.tickers):
        np.testing.assert_allclose(np.asarray(a.close)[:, n], closes[t], rtol=1e-6)
    np.testing.assert_array_equal(a.stock_sector, [0, 0, 1, 1, 1])
    assert m.macro_names == ("vix", "fii_flow", "crude", "policy_rate", "gdp_growth",
                             "us_10y_yield")
    assert np.asarray(a.macro_mask).all()
    # fundamentals dated at fetch_date: unknown before it, known from it on
    fm = np.asarray(a.fundamentals_mask)[:, :, schema.FUNDAMENTAL_FIELDS.index("pe")]
    assert not fm[:40].any() and fm[40:].all()
    assert any("eps" in n for n in meta["import_notes"])


def test_import_original_capitalised_xbom(tmp_path):
    dates = pd.DatetimeIndex(calendar.trading_days("2023-01-02", "2023-03-31"))
    closes = _original_layout(tmp_path / "raw", capitalised=True, dates=dates, seed=1)
    extra = pd.DataFrame({"Date": dates, "Symbol": "PIDILITIND.NS", "Close": 2500.0,
                          "Open": 2500.0, "High": 2500.0, "Low": 2500.0, "Volume": 10})
    extra.to_parquet(tmp_path / "raw" / "market" / "chemicals_ohlcv.parquet", index=False)
    out = import_hrl_sarp(tmp_path, tmp_path / "mkt", log=None)  # the parent of raw/ works
    assert validate_market(out, CFG).problems == []
    meta = json.loads((out / schema.META_FILE).read_text())
    assert meta["calendar"] == "XBOM" and meta["sectors"] == ["IT", "Financials", "Chemicals"]
    a, m = load_market(out, CFG)
    np.testing.assert_allclose(np.asarray(a.close)[:, m.tickers.index("SBIN")], closes["SBIN"],
                               rtol=1e-6)
    assert m.macro_names[0] == "vix"  # india_vix mapped
    assert m.tickers[-1] == "PIDILITIND" and np.asarray(a.stock_sector)[-1] == 2


def test_import_original_without_dates_is_an_error(tmp_path):
    (tmp_path / "market").mkdir()
    pd.DataFrame({"Close": [1.0], "symbol": ["TCS"]}).to_parquet(
        tmp_path / "market" / "it_ohlcv.parquet", index=False)
    with pytest.raises(DataError, match=r"it_ohlcv\.parquet: has no 'date' column"):
        import_hrl_sarp(tmp_path, tmp_path / "out", log=None)


@pytest.fixture()
def long_csv(tmp_path):
    rng = np.random.default_rng(5)
    dates = pd.DatetimeIndex(calendar.trading_days("2022-01-03", "2022-04-29"))
    frames = [_bars(rng, dates, s) for s in ("AAA", "BBB", "CCC")]
    df = pd.concat(frames, ignore_index=True).rename(
        columns={"date": "Date", "symbol": "Symbol", "close": "Close", "open": "OPEN"})
    df.to_csv(tmp_path / "long.csv", index=False)
    pd.DataFrame({"ticker": ["AAA", "BBB", "CCC", "ZZZ"],
                  "sector": ["Tech", "Banks", "Tech", "Banks"]}).to_csv(
        tmp_path / "sectors.csv", index=False)
    pd.DataFrame({"DATE": dates, "VIX": 15.0, "gold": 1.0}).to_csv(tmp_path / "macro.csv",
                                                                   index=False)
    pd.DataFrame({"date": dates, "Close": np.linspace(100, 110, len(dates))}).to_csv(
        tmp_path / "index.csv", index=False)
    return tmp_path, dates, {s: f["close"].to_numpy() for s, f in
                             zip(("AAA", "BBB", "CCC"), frames, strict=True)}


def test_import_long_table(long_csv):
    root, dates, closes = long_csv
    out = import_table(root / "long.csv", root / "mkt", layout="long", sectors=root / "sectors.csv",
                       macro=root / "macro.csv", index=root / "index.csv", log=None)
    assert validate_market(out, CFG).problems == []
    a, m = load_market(out, CFG)
    assert m.sectors == ("Banks", "Tech") and m.tickers == ("BBB", "AAA", "CCC")
    for n, t in enumerate(m.tickers):
        np.testing.assert_allclose(np.asarray(a.close)[:, n], closes[t], rtol=1e-6)
    assert np.asarray(a.has_ohlc).all() and m.macro_names == ("vix", "gold")
    np.testing.assert_allclose(np.asarray(a.benchmark_close), np.linspace(100, 110, len(dates)),
                               rtol=1e-6)
    assert json.loads((out / schema.META_FILE).read_text())["calendar"] == "XBOM"


def test_import_long_unmapped_ticker_is_an_error(long_csv):
    root, _, _ = long_csv
    pd.DataFrame({"ticker": ["AAA", "BBB"], "sector": ["Tech", "Banks"]}).to_csv(
        root / "partial.csv", index=False)
    with pytest.raises(DataError, match=r"partial\.csv: no sector for tickers CCC"):
        import_table(root / "long.csv", root / "x", layout="long", sectors=root / "partial.csv",
                     macro=None, index=None, log=None)


def test_import_wide_close_only(tmp_path):
    dates = pd.DatetimeIndex(calendar.trading_days("2022-01-03", "2022-03-31"))
    wide = pd.DataFrame({"Date": dates, "AAA": np.linspace(10, 20, len(dates)),
                         "BBB": np.linspace(50, 40, len(dates))})
    wide.loc[:9, "BBB"] = np.nan  # listed from the 11th day
    wide.to_parquet(tmp_path / "wide.parquet", index=False)
    pd.DataFrame({"ticker": ["AAA", "BBB"], "sector": ["X", "Y"]}).to_csv(
        tmp_path / "s.csv", index=False)
    out = import_table(tmp_path / "wide.parquet", tmp_path / "mkt", layout="wide",
                       sectors=tmp_path / "s.csv", macro=None, index=None, log=None)
    report = validate_market(out, CFG)
    assert report.problems == []
    assert any("close-only" in w for w in report.warnings)
    a, m = load_market(out, CFG)
    assert not np.asarray(a.has_ohlc).any()
    np.testing.assert_array_equal(np.asarray(a.open), np.asarray(a.close))
    np.testing.assert_allclose(np.asarray(a.close)[:, 0], wide["AAA"], rtol=1e-6)
    mask = np.asarray(a.stock_mask)
    assert not mask[:10, 1].any() and mask[10:, 1].all()
    assert m.macro_names == () and a.macro.shape == (len(dates), 0)
    assert not np.asarray(a.volume).any()  # unknown volume loads as 0
