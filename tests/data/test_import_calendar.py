"""data import for any market: --calendar (any exchange_calendars code) and --macro-map."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import calendar, schema
from hrl_sarp_jax.data.importers import (
    import_hrl_sarp,
    import_table,
    parse_macro_map,
    read_sector_map,
)
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.validate import validate_market
from hrl_sarp_jax.errors import DataError

CFG = DataConfig(min_history_days=20)


@pytest.fixture()
def us_market(tmp_path):
    """A New York market: XNYS sessions (open on Indian holidays, shut on US ones), its own
    macro names."""
    dates = pd.DatetimeIndex(calendar.trading_days("2023-01-03", "2023-04-28", "XNYS"))
    rng = np.random.default_rng(3)
    rows = []
    for t in ("AAPL", "MSFT", "XOM"):
        close = np.round(150 * np.cumprod(1 + rng.normal(0, 0.01, len(dates))), 2)
        rows.append(pd.DataFrame({"date": dates, "ticker": t, "close": close}))
    pd.concat(rows).to_csv(tmp_path / "prices.csv", index=False)
    pd.DataFrame({"ticker": ["AAPL", "MSFT", "XOM"], "sector": ["Tech", "Tech", "Energy"]}) \
        .to_csv(tmp_path / "sectors.csv", index=False)
    macro = pd.DataFrame({"Date": dates, "WTI_Spot": np.linspace(70, 80, len(dates)),
                          "us_vix": np.linspace(20, 15, len(dates)),
                          "dgs10": np.linspace(3.5, 3.9, len(dates)),
                          "gold": 1900.0})
    macro.to_csv(tmp_path / "macro.csv", index=False)
    return tmp_path, dates, macro


def _import(root, out="mkt", **kw):
    return import_table(root / "prices.csv", root / out, layout="long",
                        sectors=root / "sectors.csv", macro=root / "macro.csv", index=None,
                        log=None, **kw)


def test_calendar_code_goes_into_meta_and_validates(us_market):
    root, dates, _ = us_market
    out = _import(root, calendar_code="XNYS")
    meta = json.loads((out / schema.META_FILE).read_text())
    assert meta["calendar"] == "XNYS"
    assert validate_market(out, CFG).problems == []
    _, m = load_market(out, CFG)
    np.testing.assert_array_equal(m.dates, dates.to_numpy().astype("datetime64[D]"))
    # without --calendar the dates are read as India's: XNYS trades on Republic Day
    auto = _import(root, out="auto")
    assert json.loads((auto / schema.META_FILE).read_text())["calendar"] == "weekdays"


def test_wrong_calendar_is_a_validation_note(us_market):
    root, _, _ = us_market
    out = _import(root, calendar_code="xbom")  # case-insensitive code
    meta = json.loads((out / schema.META_FILE).read_text())
    assert meta["calendar"] == "XBOM"
    assert any("not sessions of the 'XBOM' calendar" in n and "2023-01-26" in n
               for n in meta["import_notes"])


def test_unknown_calendar_is_one_line(us_market):
    root, _, _ = us_market
    with pytest.raises(DataError) as exc:
        _import(root, calendar_code="NYSEX")
    msg = str(exc.value)
    assert msg.startswith("--calendar NYSEX: unknown trading calendar; list the codes with: "
                          "python -c \"import exchange_calendars as xc; "
                          "print(xc.get_calendar_names())\"")
    assert "\n" not in msg and not (root / "mkt").exists()


def test_macro_map_feeds_the_features(us_market):
    root, _, macro = us_market
    notes: list[str] = []
    out = import_table(root / "prices.csv", root / "mkt", layout="long",
                       sectors=root / "sectors.csv", macro=root / "macro.csv", index=None,
                       log=notes.append, calendar_code="XNYS",
                       macro_map=parse_macro_map(["WTI_Spot=crude", "us_vix=vix",
                                                  "dgs10=gsec_10y"]))
    table = pd.read_parquet(out / schema.MACRO_FILE)
    assert list(table.columns) == ["date", "vix", "crude", "gsec_10y", "gold"]
    np.testing.assert_array_equal(table["crude"].to_numpy(), macro["WTI_Spot"].to_numpy())
    a, m = load_market(out, CFG)
    # canonical series first, in schema order; the unmapped 'gold' stays an extra series
    assert m.macro_names == ("vix", "crude", "gsec_10y", "gold")
    np.testing.assert_allclose(np.asarray(a.macro)[:, 1], macro["WTI_Spot"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a.macro)[:, 0], macro["us_vix"], rtol=1e-6)
    assert np.asarray(a.macro_mask).all()
    assert "note: macro: 'wti_spot' -> 'crude' (--macro-map)" in notes
    meta = json.loads((out / schema.META_FILE).read_text())
    assert "macro: 'dgs10' -> 'gsec_10y' (--macro-map)" in meta["import_notes"]


def test_macro_map_wins_over_an_alias_column(us_market):
    root, _, macro = us_market
    m2 = macro.assign(crude_oil=1.0)  # an alias of 'crude' beside the mapped column
    m2.to_csv(root / "macro.csv", index=False)
    notes: list[str] = []
    out = import_table(root / "prices.csv", root / "mkt", layout="long",
                       sectors=root / "sectors.csv", macro=root / "macro.csv", index=None,
                       log=notes.append, macro_map={"wti_spot": "crude"})
    table = pd.read_parquet(out / schema.MACRO_FILE)
    np.testing.assert_array_equal(table["crude"].to_numpy(), macro["WTI_Spot"].to_numpy())
    assert "crude_oil" not in table.columns
    assert "note: macro: column 'crude_oil' duplicates 'crude'; dropped" in notes


@pytest.mark.parametrize(("items", "match"), [
    (["wti_spot=oil"], r"^--macro-map wti_spot=oil: 'oil' is not a macro series; use one of "
                       r"vix, fii_flow, dii_flow, put_call_ratio, usd_inr, crude, policy_rate, "
                       r"credit_spread, gsec_10y, fno_oi, event_flag$"),
    (["wti_spot"], r"^--macro-map wti_spot: use SOURCE=CANONICAL, e.g. wti_spot=crude$"),
    (["a=crude", "b=crude"], r"^--macro-map b=crude: two columns map to 'crude'; keep one$"),
    (["a=crude", "A=vix"], r"^--macro-map A=vix: 'a' is mapped twice; map it once$"),
])
def test_bad_macro_maps_are_one_line(items, match):
    with pytest.raises(DataError, match=match):
        parse_macro_map(items)


def test_macro_map_of_a_missing_column_or_without_macro(us_market):
    root, _, _ = us_market
    with pytest.raises(DataError, match=r"^--macro-map brent=crude: .*macro\.csv has no column "
                                        r"'brent' \(found wti_spot, us_vix, dgs10, gold\)$"):
        _import(root, macro_map={"brent": "crude"})
    with pytest.raises(DataError, match=r"^--macro-map needs the macro table: add --macro FILE$"):
        import_table(root / "prices.csv", root / "mkt", layout="long",
                     sectors=root / "sectors.csv", macro=None, index=None, log=None,
                     macro_map={"wti_spot": "crude"})
    with pytest.raises(DataError, match=r"^--macro-map: .* has no macro/macro_indicators"):
        (root / "raw" / "market").mkdir(parents=True)
        pd.DataFrame({"date": pd.bdate_range("2023-01-02", periods=3), "symbol": "TCS.NS",
                      "close": 1.0}).to_parquet(root / "raw" / "market" / "it_ohlcv.parquet")
        import_hrl_sarp(root / "raw", root / "orig", log=None, macro_map={"x": "vix"})
    assert not (root / "mkt").exists() and not (root / "orig").exists()


def test_original_layout_with_calendar_and_macro_map(tmp_path):
    dates = pd.DatetimeIndex(calendar.trading_days("2023-01-02", "2023-03-31"))
    (tmp_path / "market").mkdir()
    (tmp_path / "macro").mkdir()
    pd.DataFrame({"date": dates, "symbol": "TCS.NS", "close": np.linspace(3000, 3300,
                                                                          len(dates))}) \
        .to_parquet(tmp_path / "market" / "it_ohlcv.parquet")
    pd.DataFrame({"date": dates, "us_10y_yield": 3.8, "india_vix": 14.0}).to_parquet(
        tmp_path / "macro" / "macro_indicators.parquet")
    out = import_hrl_sarp(tmp_path, tmp_path / "mkt", log=None, calendar_code="weekdays",
                          macro_map={"us_10y_yield": "gsec_10y"})
    meta = json.loads((out / schema.META_FILE).read_text())
    assert meta["calendar"] == "weekdays"
    assert list(pd.read_parquet(out / schema.MACRO_FILE).columns) == ["date", "vix", "gsec_10y"]


def test_sector_map_without_a_sector_is_one_line(tmp_path):
    (tmp_path / "s.csv").write_text("ticker,sector\nAAA,Tech\nBBB,\n")
    with pytest.raises(DataError, match=r"s\.csv: tickers without a sector: BBB; give each one "
                                        r"a sector$"):
        read_sector_map(tmp_path / "s.csv")


def test_cli_import_flags(us_market, capsys):
    root, _, _ = us_market
    out = root / "cli"
    code = main(["data", "import", "--from", "long", str(root / "prices.csv"), "--out", str(out),
                 "--sectors", str(root / "sectors.csv"), "--macro", str(root / "macro.csv"),
                 "--calendar", "XNYS", "--macro-map", "wti_spot=crude",
                 "--macro-map", "us_vix=vix"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((out / schema.META_FILE).read_text())["calendar"] == "XNYS"
    assert {"crude", "vix"} <= set(pd.read_parquet(out / schema.MACRO_FILE).columns)
    capsys.readouterr()
    code = main(["data", "import", "--from", "long", str(root / "prices.csv"), "--out",
                 str(root / "bad"), "--sectors", str(root / "sectors.csv"),
                 "--macro-map", "wti_spot=oil"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("hrl-sarp: error: --macro-map wti_spot=oil: 'oil' is not a macro "
                             "series; use one of vix, fii_flow")
    code = main(["data", "import", "--from", "hrl-sarp", str(root), "--out", str(root / "bad"),
                 "--calendar", "MARS"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(
        "hrl-sarp: error: --calendar MARS: unknown trading calendar; list the codes with")
    assert not (root / "bad").exists()
