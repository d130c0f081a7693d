"""data fetch: recorded Yahoo payloads (tests/data/fixtures/yahoo) -> canonical market folders.

No test touches the network or needs yfinance: a recorded-payload transport serves the
committed CSVs (yfinance's own output format) and a fake yfinance module stands in for the
real client where the Yahoo transport itself is tested.
"""

from __future__ import annotations

import json
import sys
import types
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.cli import main
from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import fetch, schema
from hrl_sarp_jax.data.fetch import (
    INSTALL_HINT,
    RateLimitError,
    SymbolError,
    YahooTransport,
    fetch_market,
    from_yahoo,
    load_universe,
)
from hrl_sarp_jax.data.validate import validate_market
from hrl_sarp_jax.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "yahoo"
UNIVERSE = FIXTURES / "universe.csv"
START, MID, END = "2024-01-01", "2024-02-09", "2024-02-29"


class RecordedTransport:
    """Serves the recorded payloads like ``Ticker.history`` (start inclusive, end exclusive);
    ``script`` maps a symbol to exceptions raised (in order) before the payload is served."""

    def __init__(self, script: dict[str, list[Exception]] | None = None, adjust=None):
        self.manifest = json.loads((FIXTURES / "manifest.json").read_text())
        self.calls: list[tuple[str, date, date]] = []
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.adjust = adjust  # optional (symbol, frame) -> frame: a later vintage of the data

    def history(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        self.calls.append((symbol, start, end))
        if self.script.get(symbol):
            raise self.script[symbol].pop(0)
        if symbol not in self.manifest:
            raise SymbolError(f"${symbol}: possibly delisted; no timezone found")
        df = payload(symbol)
        if self.adjust is not None:
            df = self.adjust(symbol, df)
        day = df.index.tz_localize(None).normalize()
        return df[(day >= pd.Timestamp(start)) & (day < pd.Timestamp(end))]


def payload(symbol: str) -> pd.DataFrame:
    name = json.loads((FIXTURES / "manifest.json").read_text())[symbol]
    df = pd.read_csv(FIXTURES / name, index_col="Date")
    df.index = pd.DatetimeIndex(pd.to_datetime(df.index), name="Date")
    return df


def _fetch(out, transport, start=START, end=END, **kw):
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("log", None)
    return fetch_market(str(UNIVERSE), out, start=start, end=end, transport=transport, **kw)


def _local_days(df: pd.DataFrame) -> pd.DatetimeIndex:
    return df.index.tz_localize(None).normalize()


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    out = tmp_path_factory.mktemp("fetch") / "one_shot"
    lines: list[str] = []
    res = _fetch(out, RecordedTransport(), log=lines.append)
    return out, res, lines


# --------------------------------------------------------------------------- one fetch


def test_prices_are_the_payload_numbers(one_shot):
    out, res, _ = one_shot
    prices = pd.read_parquet(out / schema.PRICES_FILE)
    assert res.tickers == ["HDFCBANK", "INFY", "TCS"]
    for symbol, ticker in (("TCS.NS", "TCS"), ("INFY.NS", "INFY"), ("HDFCBANK.NS", "HDFCBANK")):
        raw = payload(symbol)
        raw = raw[_local_days(raw) != pd.Timestamp("2024-01-20")]
        got = prices[prices["ticker"] == ticker]
        # dates are the exchange's local days (the payload's +05:30 midnight, not UTC's day)
        np.testing.assert_array_equal(pd.to_datetime(got["date"]).to_numpy(),
                                      _local_days(raw).to_numpy())
        for col, src in (("open", "Open"), ("high", "High"), ("low", "Low"),
                         ("close", "Close"), ("adj_close", "Adj Close"), ("volume", "Volume")):
            np.testing.assert_array_equal(got[col].to_numpy(), raw[src].to_numpy(float))
    tcs = prices[prices["ticker"] == "TCS"]
    assert tcs["close"].iloc[0] == 3715.34 and tcs["adj_close"].iloc[0] == 3678.1866
    assert set(prices.loc[prices["ticker"] == "TCS", "sector"]) == {"IT"}
    assert set(prices.loc[prices["ticker"] == "HDFCBANK", "sector"]) == {"Financials"}


def test_gap_failing_ticker_and_off_session_day(one_shot):
    out, res, lines = one_shot
    prices = pd.read_parquet(out / schema.PRICES_FILE)
    infy = pd.to_datetime(prices.loc[prices["ticker"] == "INFY", "date"])
    assert len(infy) == 39 and not infy.isin(pd.to_datetime(["2024-02-05", "2024-02-06",
                                                              "2024-02-07"])).any()
    assert "BADCO" not in set(prices["ticker"])
    assert list(res.failed) == ["BADCO.NS"]
    failed = [ln for ln in lines if ln.startswith("failed:")]
    assert failed == [f"failed: BADCO.NS: {res.failed['BADCO.NS']}"]
    assert "no data from 2024-01-01 to 2024-02-29" in failed[0]
    # NSE's Saturday special session 2024-01-20 is no XBOM session: dropped, with a note
    assert pd.Timestamp("2024-01-20") not in set(pd.to_datetime(prices["date"]))
    meta = json.loads((out / schema.META_FILE).read_text())
    assert any("2024-01-20" in n and "XBOM" in n for n in meta["import_notes"])


def test_index_macro_meta_and_validation(one_shot):
    out, res, _ = one_shot
    idx = pd.read_parquet(out / schema.INDEX_FILE)
    raw = payload("^NSEI")
    np.testing.assert_array_equal(idx["close"].to_numpy(), raw["Close"].to_numpy())
    macro = pd.read_parquet(out / schema.MACRO_FILE)
    assert list(macro.columns) == ["date", "vix", "usd_inr", "crude"]
    dates = pd.to_datetime(macro["date"])
    assert dates.min() == pd.Timestamp("2023-12-18")  # 14 days before --start: known on day 1
    inr = payload("INR=X")
    on = pd.Timestamp("2024-01-26")  # Republic Day: NSE shut, the FX market open
    assert macro.loc[dates == on, "usd_inr"].item() == inr.loc[_local_days(inr) == on,
                                                               "Close"].item()
    assert np.isnan(macro.loc[dates == on, "vix"].item())
    brent = payload("BZ=F")  # New York midnight: still that local day
    np.testing.assert_array_equal(macro["crude"].dropna().to_numpy(),
                                  brent.loc[_local_days(brent) >= pd.Timestamp("2023-12-18"),
                                            "Close"].to_numpy())
    assert res.masked == ["fii_flow", "dii_flow", "put_call_ratio", "policy_rate",
                          "credit_spread", "gsec_10y", "fno_oi", "event_flag"]
    meta = json.loads((out / schema.META_FILE).read_text())
    assert any(n.startswith("macro: no public source for fii_flow, dii_flow")
               for n in meta["import_notes"])
    assert meta["calendar"] == "XBOM" and meta["sectors"] == ["IT", "Financials"]
    assert meta["currency"] == "INR" and meta["synthetic"] is False
    assert meta["fetch"] == {"universe": str(UNIVERSE), "start": START, "end": END,
                             "index": "^NSEI", "macro": {"^INDIAVIX": "vix", "INR=X": "usd_inr",
                                                          "BZ=F": "crude"}}
    report = validate_market(out, DataConfig(min_history_days=20))
    assert report.problems == []
    assert report.summary["tickers"] == 3 and report.summary["macro_series"] == 3


def test_adj_close_drives_returns(one_shot):
    from hrl_sarp_jax.data.loader import load_market

    out, _, _ = one_shot
    a, m = load_market(out, DataConfig(min_history_days=20))
    n = m.tickers.index("HDFCBANK")
    t = int(np.flatnonzero(m.dates == np.datetime64("2024-02-01"))[0])
    raw = payload("HDFCBANK.NS")
    adj = raw["Adj Close"].to_numpy()
    # the raw close halves on 2024-02-01 (-49%); the adjusted close moves as the stock did
    assert raw["Close"].iloc[t] / raw["Close"].iloc[t - 1] - 1 < -0.45
    np.testing.assert_allclose(float(a.returns[t, n]), adj[t] / adj[t - 1] - 1, rtol=1e-5)
    assert abs(float(a.returns[t, n])) < 0.05
    assert m.macro_names == ("vix", "usd_inr", "crude")


def test_from_yahoo_download_format_and_local_days():
    raw = payload("TCS.NS").iloc[:3]
    multi = raw.copy()
    multi.columns = pd.MultiIndex.from_product([multi.columns, ["TCS.NS"]])  # yf.download
    got = from_yahoo(multi, "TCS.NS", date(2024, 1, 1), date(2024, 1, 2))
    assert list(got["date"]) == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]
    assert list(got["adj_close"]) == list(raw["Adj Close"].iloc[:2])
    with pytest.raises(SymbolError, match="no Close column"):
        from_yahoo(raw.drop(columns="Close"), "TCS.NS", date(2024, 1, 1), date(2024, 1, 9))


# --------------------------------------------------------------------------- incremental


def test_incremental_asks_from_the_last_stored_day_and_equals_one_shot(tmp_path, one_shot):
    first = RecordedTransport()
    _fetch(tmp_path / "m", first, end=MID)
    assert {c[1] for c in first.calls if c[0].endswith(".NS") or c[0] == "^NSEI"} == \
        {date(2024, 1, 1)}
    again = RecordedTransport()
    res = _fetch(tmp_path / "m", again, start=None)  # an existing folder keeps its start
    asked = {sym: (lo, hi) for sym, lo, hi in again.calls}
    last = date(2024, 2, 9)  # each symbol is asked from its last stored day on (one overlap)
    for sym in ("TCS.NS", "INFY.NS", "HDFCBANK.NS", "^NSEI", "^INDIAVIX", "INR=X", "BZ=F"):
        assert asked[sym] == (last, date(2024, 3, 1)), sym
    assert asked["BADCO.NS"] == (date(2024, 1, 1), date(2024, 3, 1))  # nothing stored yet
    assert len(again.calls) == 8
    assert res.new_rows == 3 * 14  # 14 sessions after 2024-02-09 for each of the three stocks
    ref, _, _ = one_shot
    for name in (schema.PRICES_FILE, schema.INDEX_FILE, schema.MACRO_FILE):
        assert (tmp_path / "m" / name).read_bytes() == (ref / name).read_bytes(), name


def test_an_up_to_date_folder_asks_nothing(tmp_path):
    _fetch(tmp_path / "m", RecordedTransport())
    before = (tmp_path / "m" / schema.PRICES_FILE).read_bytes()
    again = RecordedTransport()
    res = _fetch(tmp_path / "m", again)
    assert [c[0] for c in again.calls] == ["BADCO.NS"]  # the one symbol without stored rows
    assert res.new_rows == 0
    assert (tmp_path / "m" / schema.PRICES_FILE).read_bytes() == before


def test_readjusted_history_is_refetched(tmp_path):
    """A dividend going ex on 2024-02-15 lowers every earlier Adj Close at the provider: the
    overlap day shows it and the ticker is refetched whole (no false return at the seam)."""
    _fetch(tmp_path / "m", RecordedTransport(), end=MID)

    def dividend(symbol, df):
        if symbol == "TCS.NS":
            df = df.copy()
            before = _local_days(df) < pd.Timestamp("2024-02-15")
            df.loc[before, "Adj Close"] = df.loc[before, "Adj Close"] * 0.98
        return df

    later = RecordedTransport(adjust=dividend)
    lines: list[str] = []
    _fetch(tmp_path / "m", later, log=lines.append)
    tcs_calls = [c for c in later.calls if c[0] == "TCS.NS"]
    assert tcs_calls == [("TCS.NS", date(2024, 2, 9), date(2024, 3, 1)),
                         ("TCS.NS", date(2024, 1, 1), date(2024, 3, 1))]
    assert next(c for c in later.calls if c[0] == "INFY.NS")[1] == date(2024, 2, 9)
    prices = pd.read_parquet(tmp_path / "m" / schema.PRICES_FILE)
    new = dividend("TCS.NS", payload("TCS.NS"))
    new = new[_local_days(new) != pd.Timestamp("2024-01-20")]
    np.testing.assert_allclose(prices.loc[prices["ticker"] == "TCS", "adj_close"].to_numpy(),
                               new["Adj Close"].to_numpy(), rtol=0, atol=0)
    assert any("TCS.NS: the provider's prices for 2024-02-09 changed" in ln for ln in lines)


def test_a_failing_ticker_keeps_its_stored_rows(tmp_path):
    _fetch(tmp_path / "m", RecordedTransport(), end=MID)
    stored = pd.read_parquet(tmp_path / "m" / schema.PRICES_FILE)
    lines: list[str] = []
    bad = RecordedTransport(script={"INFY.NS": [SymbolError("$INFY.NS: possibly delisted")]})
    res = _fetch(tmp_path / "m", bad, log=lines.append)
    assert res.failed["INFY.NS"] == "$INFY.NS: possibly delisted"
    assert "failed: INFY.NS: $INFY.NS: possibly delisted" in lines
    prices = pd.read_parquet(tmp_path / "m" / schema.PRICES_FILE)
    pd.testing.assert_frame_equal(prices[prices["ticker"] == "INFY"].reset_index(drop=True),
                                  stored[stored["ticker"] == "INFY"].reset_index(drop=True))
    assert pd.to_datetime(prices.loc[prices["ticker"] == "TCS", "date"]).max() == \
        pd.Timestamp(END)


def test_a_session_still_trading_is_not_fetched(tmp_path):
    lines: list[str] = []
    t = RecordedTransport()
    # 11:30 in Mumbai on 2024-02-29: that day's bar is provisional
    _fetch(tmp_path / "m", t, now=pd.Timestamp("2024-02-29 06:00", tz="UTC"), log=lines.append)
    assert {hi for _, _, hi in t.calls} == {date(2024, 2, 29)}  # end exclusive: up to 02-28
    prices = pd.read_parquet(tmp_path / "m" / schema.PRICES_FILE)
    assert pd.to_datetime(prices["date"]).max() == pd.Timestamp("2024-02-28")
    assert "note: the 'XBOM' session of 2024-02-29 has not closed (its bar is provisional): " \
           "fetched up to 2024-02-28" in lines
    assert json.loads((tmp_path / "m" / schema.META_FILE).read_text())["fetch"]["end"] == \
        "2024-02-28"


# --------------------------------------------------------------------------- retries, network


def test_retries_back_off_exponentially(tmp_path):
    waits: list[float] = []
    t = RecordedTransport(script={
        "TCS.NS": [ConnectionError("reset by peer"), TimeoutError("read timed out")],
        "INFY.NS": [RateLimitError("Too Many Requests")] * 4,
    })
    res = _fetch(tmp_path / "m", t, sleep=waits.append, tries=4, base_delay=2.0)
    assert [c[0] for c in t.calls].count("TCS.NS") == 3
    assert waits == [2.0, 4.0, 2.0, 4.0, 8.0]  # TCS: two retries; INFY: three, then given up
    assert "TCS" in res.tickers and "INFY" not in res.tickers
    assert res.failed["INFY.NS"].startswith("rate-limited after 4 tries (Too Many Requests)")


def test_no_network_is_one_line_and_writes_nothing(tmp_path):
    down = {s: [ConnectionError("Failed to resolve 'query2.finance.yahoo.com'")] * 9
            for s in json.loads((FIXTURES / "manifest.json").read_text())}
    with pytest.raises(DataError) as exc:
        _fetch(tmp_path / "new", RecordedTransport(script=down))
    msg = str(exc.value)
    assert "\n" not in msg and "cannot reach the data provider after 4 tries" in msg
    assert "check the network connection" in msg
    assert not (tmp_path / "new").exists()
    _fetch(tmp_path / "m", RecordedTransport(), end=MID)
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    with pytest.raises(DataError, match="cannot reach"):
        _fetch(tmp_path / "m", RecordedTransport(script=down))
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before


def test_network_lost_midway_writes_what_arrived(tmp_path):
    lost = {s: [ConnectionError("connection reset")] * 9
            for s in ("HDFCBANK.NS", "BADCO.NS", "^NSEI", "^INDIAVIX", "INR=X", "BZ=F")}
    lines: list[str] = []
    t = RecordedTransport(script=lost)
    res = _fetch(tmp_path / "m", t, log=lines.append)
    assert res.tickers == ["INFY", "TCS"]
    assert res.failed["HDFCBANK.NS"].startswith("connection failed after 4 tries")
    assert all(res.failed[s].startswith("not asked: the connection failed at HDFCBANK.NS")
               for s in ("BADCO.NS", "^NSEI", "^INDIAVIX", "INR=X", "BZ=F"))
    assert sum(ln.startswith("failed: ") for ln in lines) == 6
    assert [c[0] for c in t.calls].count("BADCO.NS") == 0
    assert not (tmp_path / "m" / schema.INDEX_FILE).exists()
    assert list(pd.read_parquet(tmp_path / "m" / schema.MACRO_FILE).columns) == ["date"]


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(("kw", "match"), [
    ({"calendar_code": "NOPE"}, r"^--calendar NOPE: unknown trading calendar; list the codes "
                                r"with: python -c .*get_calendar_names"),
    ({"start": "2024-13-01"}, r"^--start 2024-13-01: not a date; use YYYY-MM-DD$"),
    ({"end": "2023-12-01"}, r"^--end 2023-12-01 is before --start 2024-01-01"),
    ({"start": None}, r"^--start is needed for the new folder"),
    ({"macro": ["^VIX=volatility"]}, r"^--macro \^VIX=volatility: 'volatility' is not a macro "
                                     r"series; use one of vix, fii_flow"),
])
def test_bad_options_are_one_line(tmp_path, kw, match):
    with pytest.raises(DataError, match=match) as exc:
        _fetch(tmp_path / "m", RecordedTransport(), **kw)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "m").exists()


def test_bad_universes_are_one_line(tmp_path):
    with pytest.raises(DataError, match=r"^--universe .*nowhere\.csv: file not found; give "
                                        r"'nifty-sectors' or a CSV"):
        fetch_market(str(tmp_path / "nowhere.csv"), tmp_path / "m", start=START, end=END,
                     transport=RecordedTransport(), log=None)
    us = tmp_path / "us.csv"
    us.write_text("ticker,sector\nAAPL,Tech\nXOM,Energy\n")
    with pytest.raises(DataError, match=r"^--calendar is needed for --universe .*us\.csv "
                                        r"\(not NSE/BSE symbols\): give its exchange's code"):
        fetch_market(str(us), tmp_path / "m", start=START, end=END,
                     transport=RecordedTransport(), log=None)
    both = tmp_path / "both.csv"
    both.write_text("ticker,sector\nTCS.NS,IT\nTCS.BO,IT\n")
    with pytest.raises(DataError, match="TCS listed twice"):
        fetch_market(str(both), tmp_path / "m", start=START, end=END,
                     transport=RecordedTransport(), log=None)
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("ticker,sector\nNOSUCH.NS,IT\n")
    with pytest.raises(DataError, match=r"no ticker returned data \(NOSUCH\.NS: \$NOSUCH\.NS: "
                                        r"possibly delisted"):
        fetch_market(str(unknown), tmp_path / "m", start=START, end=END,
                     transport=RecordedTransport(), log=None)
    assert not (tmp_path / "m").exists()


def test_a_folder_not_written_by_fetch_or_another_calendar_is_refused(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"date": [], "ticker": []}).to_parquet(other / schema.PRICES_FILE)
    (other / schema.META_FILE).write_text('{"synthetic": true}')
    with pytest.raises(DataError, match=r"^--out .*other: holds a market that data fetch did "
                                        r"not write"):
        _fetch(other, RecordedTransport())
    _fetch(tmp_path / "m", RecordedTransport(), end=MID)
    with pytest.raises(DataError, match=r"^--calendar XNYS: the folder's meta.json says 'XBOM'"):
        _fetch(tmp_path / "m", RecordedTransport(), calendar_code="XNYS")


def test_calendar_code_goes_into_meta(tmp_path):
    _fetch(tmp_path / "m", RecordedTransport(), calendar_code="weekdays")
    meta = json.loads((tmp_path / "m" / schema.META_FILE).read_text())
    assert meta["calendar"] == "weekdays"
    # Mon-Fri: the Saturday session is still dropped
    prices = pd.read_parquet(tmp_path / "m" / schema.PRICES_FILE)
    assert pd.Timestamp("2024-01-20") not in set(pd.to_datetime(prices["date"]))
    _fetch(tmp_path / "x", RecordedTransport(), calendar_code="xbom")  # codes are upper-cased
    assert json.loads((tmp_path / "x" / schema.META_FILE).read_text())["calendar"] == "XBOM"


# --------------------------------------------------------------------------- universe


def test_nifty_sectors_universe():
    uni = load_universe("nifty-sectors")
    assert uni.sectors == ["IT", "Financials", "Auto", "Pharma", "FMCG", "Energy", "Metals",
                           "Realty", "Media", "Telecom", "Infra"]
    assert len(uni.table) == 110 and uni.indian
    assert (uni.table.groupby("sector").size() == 10).all()
    assert uni.table["symbol"].str.endswith(".NS").all() and uni.table["ticker"].is_unique
    assert {"LT.NS", "M&M.NS", "BAJAJ-AUTO.NS", "PVRINOX.NS"} <= set(uni.table["symbol"])
    assert "LARSENTOUB.NS" not in set(uni.table["symbol"])
    assert uni.table.loc[uni.table["symbol"] == "M&M.NS", "ticker"].item() == "M&M"


# --------------------------------------------------------------------------- Yahoo transport


def _fake_yfinance(monkeypatch, behaviour):
    calls = []

    class Ticker:
        def __init__(self, symbol):
            self.symbol = symbol

        def history(self, **kw):
            calls.append((self.symbol, kw))
            return behaviour(self.symbol)

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(Ticker=Ticker))
    return calls


def test_yahoo_transport_asks_unadjusted_bars(monkeypatch):
    calls = _fake_yfinance(monkeypatch, lambda s: payload(s))
    t = YahooTransport(pause=0)
    df = t.history("TCS.NS", date(2024, 1, 1), date(2024, 1, 10))
    assert df.equals(payload("TCS.NS"))
    assert calls == [("TCS.NS", {"start": "2024-01-01", "end": "2024-01-10", "interval": "1d",
                                 "auto_adjust": False, "actions": False, "raise_errors": True,
                                 "timeout": 30.0})]


def test_yahoo_transport_classifies_errors(monkeypatch):
    class YFRateLimitError(Exception):
        pass

    class YFPricesMissingError(Exception):
        pass

    class ConnectTimeout(OSError):  # noqa: N818 (requests' own name)
        pass

    errors = {"RL.NS": YFRateLimitError("Too Many Requests. Rate limited."),
              "GONE.NS": YFPricesMissingError("$GONE.NS: possibly delisted; no price data"),
              "SLOW.NS": ConnectTimeout("Connection to query2 timed out")}

    def behaviour(symbol):
        raise errors[symbol]

    _fake_yfinance(monkeypatch, behaviour)
    monkeypatch.setattr(fetch, "_reachable", lambda: True)
    t = YahooTransport(pause=0)
    with pytest.raises(RateLimitError, match="Too Many Requests"):
        t.history("RL.NS", date(2024, 1, 1), date(2024, 1, 2))
    with pytest.raises(SymbolError, match="possibly delisted"):
        t.history("GONE.NS", date(2024, 1, 1), date(2024, 1, 2))
    with pytest.raises(ConnectionError, match="timed out"):
        t.history("SLOW.NS", date(2024, 1, 1), date(2024, 1, 2))
    # offline, yfinance reports every symbol as "possibly delisted": a probe tells them apart
    monkeypatch.setattr(fetch, "_reachable", lambda: False)
    with pytest.raises(ConnectionError, match="cannot connect to Yahoo Finance"):
        YahooTransport(pause=0).history("GONE.NS", date(2024, 1, 1), date(2024, 1, 2))


def test_missing_yfinance_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "yfinance", None)  # import yfinance -> ImportError
    with pytest.raises(DataError, match=r"^data fetch needs yfinance, which is not installed: "
                                        r"pip install 'hrl-sarp-jax\[fetch\]'$"):
        YahooTransport()
    code = main(["data", "fetch", "--universe", str(UNIVERSE), "--start", START, "--end", END,
                 "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and INSTALL_HINT in err[0]
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------- command line


def test_cli_fetch(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(fetch, "default_transport", RecordedTransport)
    monkeypatch.setattr(fetch.time, "sleep", lambda s: None)
    out = tmp_path / "m"
    code = main(["data", "fetch", "--universe", str(UNIVERSE), "--start", START, "--end", END,
                 "--out", str(out), "--calendar", "XBOM", "--macro", "^INDIAVIX=vix"])
    stdout = capsys.readouterr().out.splitlines()
    assert code == 1  # one symbol failed; the rest is written
    assert [ln for ln in stdout if ln.startswith("failed:")] == [
        "failed: BADCO.NS: no data from 2024-01-01 to 2024-02-29 (unknown or delisted symbol?)"]
    assert stdout[-1] == (f"fetched 3 tickers into {out} (123 new price rows); 1 failed: "
                          f"BADCO.NS; check it with: hrl-sarp data validate {out}")
    assert list(pd.read_parquet(out / schema.MACRO_FILE).columns) == ["date", "vix"]
    code = main(["data", "fetch", "--universe", str(UNIVERSE), "--end", "2024-02-30",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["hrl-sarp: error: --end 2024-02-30: not a date; use YYYY-MM-DD"]
