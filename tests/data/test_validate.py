"""validate_market: every rule, one bad input each; the valid fixture passes with no problems."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import schema
from hrl_sarp_jax.data.validate import validate_market
from tests.data.market_fixtures import build_market, market_tables, write_tables

CFG = DataConfig()
P, M, F, I, S, R = (schema.PRICES_FILE, schema.MACRO_FILE, schema.FUNDAMENTALS_FILE,
                    schema.INDEX_FILE, schema.SENTIMENT_FILE, schema.REGIMES_FILE)


@pytest.fixture(scope="module")
def base() -> tuple[dict, dict]:
    return market_tables(seed=1)


def _rows_of(prices: pd.DataFrame, ticker: str) -> np.ndarray:
    return np.flatnonzero((prices["ticker"] == ticker).to_numpy())


# --- mutations: each makes exactly one rule fail -------------------------------------------


def drop_prices(t, m, d):
    t.pop(P)


def drop_macro(t, m, d):
    t.pop(M)


def corrupt_prices(t, m, d):
    d["raw"] = {P: b"PAR1 this is not parquet"}


def empty_prices(t, m, d):
    t[P] = t[P].iloc[:0]


def empty_ticker(t, m, d):
    t[P]["ticker"] = t[P]["ticker"].astype(object)
    t[P].loc[9, "ticker"] = None


def missing_volume(t, m, d):
    t[P] = t[P].drop(columns="volume")


def text_close(t, m, d):
    p = t[P]
    p["close"] = p["close"].map(lambda x: f"{x:.2f}").astype(object)
    p.loc[7, "close"] = "12,5 INR"


def bad_date(t, m, d):
    p = t[P]
    p["date"] = p["date"].dt.strftime("%Y-%m-%d").astype(object)
    p.loc[3, "date"] = "2019-13-45"


def duplicate_row(t, m, d):
    t[P] = pd.concat([t[P], t[P].iloc[[10]]], ignore_index=True)


def zero_close(t, m, d):
    t[P].loc[20, ["close", "low"]] = [0.0, 0.0]


def long_nan_run(t, m, d):
    rows = _rows_of(t[P], "TCS")[100:108]  # 8 > ffill_limit=5
    t[P].loc[rows, "close"] = np.nan


def high_below_low(t, m, d):
    p = t[P]
    p.loc[30, "high"] = p.loc[30, "low"] * 0.9


def close_above_high(t, m, d):
    p = t[P]
    p.loc[31, "close"] = p.loc[31, "high"] * 1.05


def open_below_low(t, m, d):
    p = t[P]
    p.loc[32, "open"] = p.loc[32, "low"] * 0.95


def unsorted_dates(t, m, d):
    p = t[P]
    r = _rows_of(p, "SBIN")[50:52]
    p.loc[r, "date"] = p.loc[r[::-1], "date"].to_numpy()


def weekend_date(t, m, d):
    p = t[P]
    r = np.flatnonzero((p["ticker"] == "INFY").to_numpy() & (p["date"] == "2019-01-04").to_numpy())
    p.loc[r, "date"] = pd.Timestamp("2019-01-05")  # a Saturday


def empty_sector(t, m, d):
    t[P].loc[_rows_of(t[P], "CIPLA")[5], "sector"] = ""


def two_sectors(t, m, d):
    t[P].loc[_rows_of(t[P], "CIPLA")[5:9], "sector"] = "IT"


def sector_without_stocks(t, m, d):
    m["sectors"] = [*m["sectors"], "Energy"]


def short_history(t, m, d):
    d["cfg"] = DataConfig(min_history_days=400)


def macro_no_date(t, m, d):
    t[M] = t[M].drop(columns="date")


def macro_late(t, m, d):
    t[M] = t[M][t[M]["date"] >= "2019-02-01"]


def macro_text(t, m, d):
    t[M]["vix"] = t[M]["vix"].map(lambda x: f"{x:.1f}%").astype(object)


def fund_unknown_ticker(t, m, d):
    f = t[F]
    f.loc[0, "ticker"] = "NOSUCH"


def fund_duplicate(t, m, d):
    t[F] = pd.concat([t[F], t[F].iloc[[3]]], ignore_index=True)


def index_nonpositive(t, m, d):
    t[I].loc[40, "close"] = -1.0


def index_short(t, m, d):
    t[I] = t[I].iloc[10:]


def negative_volume(t, m, d):
    t[P].loc[44, "volume"] = -5.0


def band_out_of_range(t, m, d):
    t[P].loc[_rows_of(t[P], "WIPRO")[3], "circuit_band"] = 20.0


def delivery_out_of_range(t, m, d):
    t[P].loc[45, "delivery_pct"] = 150.0


def regime_out_of_range(t, m, d):
    t[R].loc[12, "regime"] = 3


def sentiment_out_of_range(t, m, d):
    t[S].loc[2, "score"] = 4.0


def unknown_calendar(t, m, d):
    m["calendar"] = "XNOPE"


def meta_broken(t, m, d):
    d["meta_text"] = '{"market": "test", '


# (mutation, file named, column named or None, words in the message)
CASES = [
    (drop_prices, P, None, "missing"),
    (drop_macro, M, None, "missing"),
    (corrupt_prices, P, None, "cannot be read"),
    (empty_prices, P, None, "no rows"),
    (empty_ticker, P, "ticker", "empty ticker"),
    (missing_volume, P, "volume", "required column is missing"),
    (text_close, P, "close", "expected numbers"),
    (bad_date, P, "date", "unparsable"),
    (duplicate_row, P, "date", "duplicate (date, ticker)"),
    (zero_close, P, "close", "non-positive"),
    (long_nan_run, P, "close", "longer than data.ffill_limit=5"),
    (high_below_low, P, "high", "high < low"),
    (close_above_high, P, "close", "outside [low, high]"),
    (open_below_low, P, "open", "outside [low, high]"),
    (unsorted_dates, P, "date", "backwards"),
    (weekend_date, P, "date", "2019-01-05"),
    (empty_sector, P, "sector", "without a sector"),
    (two_sectors, P, "sector", "CIPLA is mapped to 2 sectors"),
    (sector_without_stocks, schema.META_FILE, "sectors", "Energy"),
    (short_history, P, "date", "min_history_days=400"),
    (macro_no_date, M, "date", "required column is missing"),
    (macro_late, M, "date", "supply earlier macro data"),
    (macro_text, M, "vix", "expected numbers"),
    (fund_unknown_ticker, F, "ticker", "NOSUCH"),
    (fund_duplicate, F, "date", "duplicate (date, ticker)"),
    (index_nonpositive, I, "close", "non-positive"),
    (index_short, I, "date", "not the price range"),
    (negative_volume, P, "volume", "negative"),
    (band_out_of_range, P, "circuit_band", "(0, 1]"),
    (delivery_out_of_range, P, "delivery_pct", "[0, 100]"),
    (regime_out_of_range, R, "regime", "{0, 1, 2}"),
    (sentiment_out_of_range, S, "score", "[-1, 1]"),
    (unknown_calendar, schema.META_FILE, "calendar", "XNOPE"),
    (meta_broken, schema.META_FILE, None, "unparsable"),
]


def _write(tmp_path: Path, base, mutate) -> tuple[Path, DataConfig]:
    tables, meta = copy.deepcopy(base)
    extra: dict = {}
    mutate(tables, meta, extra)
    out = write_tables(tmp_path / "m", tables, meta)
    if "meta_text" in extra:
        (out / schema.META_FILE).write_text(extra["meta_text"])
    for name, data in extra.get("raw", {}).items():
        (out / name).write_bytes(data)
    return out, extra.get("cfg", CFG)


def test_valid_fixture_has_no_problems(tmp_path, base):
    report = validate_market(build_market(tmp_path / "ok", seed=1), CFG)
    assert report.problems == []
    assert report.summary["tickers"] == 8 and report.summary["sectors"] == 3
    assert report.summary_line().startswith("3 sectors, 8 tickers, 307 trading days 2019-01-01..")
    assert "macro: 4 series, fundamentals: yes, index: yes" in report.summary_line()
    # the same frames written by plain pandas (timestamp dates, ticker-major) are valid too
    assert validate_market(write_tables(tmp_path / "pd", *copy.deepcopy(base)), CFG).problems == []


@pytest.mark.parametrize("mutate, file, column, words", CASES, ids=[c[0].__name__ for c in CASES])
def test_bad_input_is_reported(tmp_path, base, mutate, file, column, words):
    path, cfg = _write(tmp_path, base, mutate)
    report = validate_market(path, cfg)
    hits = [p for p in report.problems if p.startswith(file) and words in p]
    assert hits, f"no problem naming {file} / {words!r} in {report.problems}"
    if column is not None:
        assert any(f"column '{column}'" in p for p in hits), hits
    assert all("Fix:" in p for p in report.problems)
    # one bad input, one problem (a zero close with a zero low breaks two columns)
    assert len(report.problems) == (2 if mutate is zero_close else 1), report.problems


def test_problem_names_rows_with_date_and_ticker(tmp_path, base):
    path, _ = _write(tmp_path, base, duplicate_row)
    (msg,) = [p for p in validate_market(path, CFG).problems if "duplicate" in p]
    tables, _ = base
    d, tk = tables[P].loc[10, "date"].date(), tables[P].loc[10, "ticker"]
    n = len(tables[P])
    assert f"2 rows: row 10 ({d}, {tk}), row {n} ({d}, {tk})" in msg


def test_all_problems_reported_together(tmp_path, base):
    def several(t, m, d):
        high_below_low(t, m, d)
        negative_volume(t, m, d)
        macro_late(t, m, d)
        fund_duplicate(t, m, d)

    path, _ = _write(tmp_path, base, several)
    problems = validate_market(path, CFG).problems
    assert any("high < low" in p for p in problems)
    assert any("negative volume" in p for p in problems)
    assert any(p.startswith(M) and "earlier macro" in p for p in problems)
    assert any(p.startswith(F) and "duplicate" in p for p in problems)
    assert len(problems) == 4


def test_short_gaps_close_only_and_date_major_are_warnings(tmp_path, base):
    def tweak(t, m, d):
        p = t[P]
        p.loc[_rows_of(p, "TCS")[100:103], "close"] = np.nan  # 3 <= ffill_limit
        p.loc[_rows_of(p, "LUPIN"), ["open", "high", "low"]] = np.nan  # close-only ticker
        p.loc[_rows_of(p, "SBIN")[5:25], "close"] = np.nan  # inside the span: the one problem
        t[P] = p.sort_values(["date", "ticker"], ignore_index=True)  # date-major order is fine

    path, _ = _write(tmp_path, base, tweak)
    report = validate_market(path, CFG)
    assert len(report.problems) == 1 and "SBIN" in report.problems[0]
    assert any("3 NaN prices in short runs" in w and "forward-filled" in w for w in report.warnings)
    assert any("close-only tickers" in w and "LUPIN" in w for w in report.warnings)


def test_leading_nan_and_missing_rows_are_not_problems(tmp_path, base):
    def tweak(t, m, d):
        p = t[P]
        p.loc[_rows_of(p, "SBIN")[:20], "close"] = np.nan  # not listed yet
        t[P] = p.drop(index=_rows_of(p, "AXISBANK")[40:50])  # a 10-day suspension (no rows)

    path, _ = _write(tmp_path, base, tweak)
    report = validate_market(path, CFG)
    assert report.problems == []
    assert any("20 leading/trailing NaN prices" in w for w in report.warnings)
    assert any("10 missing rows" in w for w in report.warnings)
