"""``hrl-sarp data fetch``: daily bars, the benchmark and macro series from Yahoo Finance into
the canonical market folder. The only place where the package downloads anything.

# HOST ONLY (not jittable)
- Universe: ``nifty-sectors`` (the original HRL-SARP's configured 11 sectors x 10 NSE stocks,
  reference §2.5, shipped as ``universes/nifty_sectors.csv``) or a user's ``ticker,sector`` CSV
  of Yahoo symbols. Stored tickers drop the ``.NS``/``.BO`` suffix, as ``data import`` does.
  The original's list has symbols NSE no longer uses; the packaged file has the current ones:
  LARSENTOUB -> LT, PVR -> PVRINOX (merger), STERLITE -> STLTECH, TEJAS -> TEJASNET,
  KNR -> KNRCON, PNC -> PNCINFRA, TIPS -> TIPSMUSIC. A symbol that changes later (a rename,
  merger or demerger) fails by name and the rest is kept; pass a corrected CSV then.
- Series: prices from Open High Low Close Adj Close Volume (``adj_close`` is what returns use);
  the benchmark ^NSEI -> index.parquet; macro series from their Close: ^INDIAVIX -> vix,
  INR=X -> usd_inr, BZ=F -> crude. The other canonical macro series (flows, policy rate, ...)
  have no public daily source here: they are left out, the features mask them, and a note says
  so. A universe that is not NSE/BSE gets no index or macro series unless asked for.
- Transport: anything with ``history(symbol, start, end)`` returning yfinance's own frame
  (index Date, columns Open High Low Close Adj Close Volume), ``start`` inclusive and ``end``
  exclusive as in yfinance. ``YahooTransport`` imports yfinance on first use (the optional
  extra ``fetch``).
- Retries: a connection error, time-out or rate limit is retried with exponential backoff. A
  connection error that persists before any symbol arrived is one line (nothing written);
  after some arrived, the symbols not yet fetched are reported failed and the rest is written.
- Incremental: a folder written by this command is extended, not refetched. Each symbol is
  asked from its last stored date on: that one day overlaps, and if the provider's close or
  adjusted close for it changed, a split or dividend re-adjusted the history since the last
  fetch and the ticker is refetched from its first stored date (else the join would hold a
  false return). Rows are merged and every file is rewritten atomically.
- A session that has not closed (an hour's margin) is not fetched: its bar is provisional.
- Price rows on dates that are not sessions of the calendar (NSE's Muhurat or weekend special
  sessions) are dropped with a note; then the folder is validated as ``data import`` does.
"""

from __future__ import annotations

import math
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from hrl_sarp_jax.data import calendar, io, schema
from hrl_sarp_jax.data.importers import (
    CALENDAR_HELP,
    HRL_SARP_SECTORS,
    Notes,
    check_calendar,
    parse_macro_map,
    read_sector_map,
    strip_suffix,
    write_and_validate,
)
from hrl_sarp_jax.errors import DataError

NIFTY_SECTORS = "nifty-sectors"
INSTALL_HINT = "pip install 'hrl-sarp-jax[fetch]'"
NSE_INDEX = "^NSEI"
INDIA_MACRO = {"^INDIAVIX": "vix", "INR=X": "usd_inr", "BZ=F": "crude"}
MACRO_LEAD_DAYS = 14   # macro is asked from this many days before --start: known on day one
READJUST_RTOL = 1e-5   # relative change of an overlap day's price that means re-adjusted history
MAX_DELAY = 60.0       # seconds: the longest backoff between two tries
SETTLE = pd.Timedelta(hours=1)  # after a session's close, before its daily bar counts as final
_BARS = ("open", "high", "low", "close", "adj_close", "volume")
_YAHOO_COLUMNS = {"open": "open", "high": "high", "low": "low", "close": "close",
                  "adj close": "adj_close", "adj_close": "adj_close", "volume": "volume"}

Log = Callable[[str], None] | None


class Transport(Protocol):
    """A price provider: one symbol's daily bars in yfinance's output format."""

    def history(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        """Bars for ``start <= day < end``: index Date, Open High Low Close Adj Close Volume."""
        ...


class SymbolError(Exception):
    """The provider has no usable data for a symbol (unknown, delisted, malformed): no retry."""


class RateLimitError(Exception):
    """The provider refuses requests for now: retried with backoff."""


_TRANSIENT = (ConnectionError, TimeoutError, RateLimitError)


# --------------------------------------------------------------------------- Yahoo transport


class YahooTransport:
    """Yahoo Finance through yfinance (imported here): unadjusted OHLC plus Adj Close."""

    def __init__(self, pause: float = 0.5, timeout: float = 30.0):
        try:
            import yfinance
        except ImportError:
            raise DataError("data fetch needs yfinance, which is not installed: "
                            f"{INSTALL_HINT}") from None
        self._yf = yfinance
        self._pause, self._timeout, self._last = pause, timeout, 0.0
        self._online = False

    def history(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        wait = self._last + self._pause - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            df = self._yf.Ticker(symbol).history(
                start=str(start), end=str(end), interval="1d", auto_adjust=False,
                actions=False, raise_errors=True, timeout=self._timeout)
        except Exception as exc:
            err = classify_error(exc)
            # yfinance reports an unreachable server as a missing time zone ("possibly
            # delisted"): tell the two apart once, by opening a connection to Yahoo.
            if isinstance(err, SymbolError) and not self._online and not _reachable():
                err = ConnectionError(f"cannot connect to Yahoo Finance ({err})")
            raise err from exc
        finally:
            self._last = time.monotonic()
        self._online = True
        return df


def _reachable(host: str = "query2.finance.yahoo.com", timeout: float = 5.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def classify_error(exc: BaseException) -> Exception:
    """A provider exception as RateLimitError, ConnectionError (both retried) or SymbolError."""
    names = {c.__name__ for c in type(exc).__mro__}
    text = str(exc).splitlines()[0].strip() if str(exc).strip() else type(exc).__name__
    if "YFRateLimitError" in names or "too many requests" in text.lower():
        return RateLimitError(text)
    kinds = " ".join(n.lower() for n in names)
    network = ("connection", "timeout", "timed out", "could not resolve", "failed to connect",
               "name or service not known", "network is unreachable")
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror)) or any(
            w in kinds or w in text.lower() for w in network):
        return ConnectionError(text)
    return SymbolError(text)


def default_transport() -> Transport:
    """The transport ``data fetch`` uses: Yahoo Finance."""
    return YahooTransport()


# --------------------------------------------------------------------------- universe


@dataclass(frozen=True)
class Universe:
    """Symbols to fetch: ``table`` has columns symbol, ticker (stored name), sector."""

    label: str
    table: pd.DataFrame
    sectors: list[str]
    indian: bool


def load_universe(spec: str) -> Universe:
    """``nifty-sectors`` or a ``ticker,sector`` CSV of Yahoo symbols (DataError if unusable)."""
    if spec == NIFTY_SECTORS:
        ref = resources.files("hrl_sarp_jax.data").joinpath("universes/nifty_sectors.csv")
        with resources.as_file(ref) as path:
            smap = read_sector_map(Path(path))
        label = NIFTY_SECTORS
    else:
        path = Path(spec)
        if not path.is_file():
            raise DataError(f"--universe {spec}: file not found; give '{NIFTY_SECTORS}' or a "
                            "CSV with columns ticker,sector (Yahoo symbols, e.g. TCS.NS)")
        smap = read_sector_map(path)
        label = str(path)
    if smap.empty:
        raise DataError(f"--universe {spec}: lists no tickers; add ticker,sector rows")
    table = pd.DataFrame({"symbol": smap.index.astype(str), "sector": smap.to_numpy()})
    table["ticker"] = strip_suffix(table["symbol"]).to_numpy()
    twice = table["ticker"][table["ticker"].duplicated()].tolist()
    if twice:
        raise DataError(f"--universe {spec}: {', '.join(twice[:5])} listed twice (e.g. on NSE "
                        "and BSE); keep one symbol per stock")
    order = list(dict.fromkeys(table["sector"]))
    if spec == NIFTY_SECTORS:
        canon = list(HRL_SARP_SECTORS.values())
        order = [s for s in canon if s in order] + [s for s in order if s not in canon]
    indian = bool(table["symbol"].str.upper().str.endswith((".NS", ".BO")).all())
    return Universe(label, table, order, indian)


# --------------------------------------------------------------------------- payloads


def _day(text: str | date | None, option: str) -> date | None:
    if isinstance(text, pd.Timestamp | datetime):
        return text.date()
    if text is None or isinstance(text, date):
        return text
    try:
        return pd.Timestamp(str(text)).date()
    except (ValueError, TypeError):
        raise DataError(f"{option} {text}: not a date; use YYYY-MM-DD") from None


def from_yahoo(df: pd.DataFrame | None, symbol: str, lo: date, hi: date) -> pd.DataFrame:
    """A yfinance frame as columns date (day, exchange-local) + open high low close adj_close
    volume (float), rows ``lo <= date <= hi`` with a close, one per date, ascending."""
    cols = ["date", *_BARS]
    if df is None or len(df) == 0:
        return pd.DataFrame({c: pd.Series(dtype="datetime64[ns]" if c == "date" else "float64")
                             for c in cols})
    df = df.copy()
    if isinstance(df.columns, pd.MultiIndex):  # yf.download: (field, symbol) columns
        df.columns = df.columns.get_level_values(0)
    if not isinstance(df.index, pd.DatetimeIndex):
        dcol = [c for c in df.columns if str(c).strip().lower() in ("date", "datetime")]
        df = df.set_index(dcol[0]) if dcol else df
        try:
            df.index = pd.DatetimeIndex(pd.to_datetime(df.index, utc=False))
        except (ValueError, TypeError):
            raise SymbolError(f"{symbol}: the payload's dates cannot be parsed") from None
    idx = df.index
    if idx.tz is not None:  # the exchange's local day, never shifted through UTC
        idx = idx.tz_localize(None)
    df.index = idx.normalize().astype("datetime64[ns]")
    df = df.rename(columns={c: _YAHOO_COLUMNS.get(str(c).strip().lower(), c) for c in df.columns})
    if "close" not in df.columns:
        raise SymbolError(f"{symbol}: the payload has no Close column")
    out = pd.DataFrame({"date": df.index})
    for c in _BARS:
        v = df[c] if c in df.columns else pd.Series(np.nan, index=df.index)
        out[c] = pd.to_numeric(v, errors="coerce").astype("float64").to_numpy()
    out = out[out["close"].notna()]
    out = out[(out["date"] >= pd.Timestamp(lo)) & (out["date"] <= pd.Timestamp(hi))]
    out = out.drop_duplicates("date", keep="last").sort_values("date", ignore_index=True)
    return out[cols]


# --------------------------------------------------------------------------- fetching


@dataclass
class FetchResult:
    """What ``fetch_market`` did: the tickers written, the net number of price rows added,
    the symbols that failed and why."""

    out: Path
    tickers: list[str]
    new_rows: int
    failed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    masked: list[str] = field(default_factory=list)


class _Fetcher:
    """Asks the transport with retries and keeps the failures by symbol."""

    def __init__(self, transport: Transport, tries: int, base_delay: float,
                 sleep: Callable[[float], None], log: Log):
        self.transport, self.tries, self.base_delay = transport, tries, base_delay
        self.sleep, self.log = sleep, log
        self.failed: dict[str, str] = {}
        self.arrived = False       # a request succeeded in this run
        self.lost: str | None = None  # the network failed after something arrived

    def fail(self, symbol: str, reason: str) -> None:
        self.failed[symbol] = reason
        if self.log is not None:
            self.log(f"failed: {symbol}: {reason}")

    def ask(self, symbol: str, lo: date, hi: date) -> pd.DataFrame | None:
        """Rows of ``symbol`` in [lo, hi] (empty: none), or None when the symbol failed."""
        if self.lost is not None:
            self.fail(symbol, f"not asked: the connection failed at {self.lost}; run the command "
                      "again to add it")
            return None
        err: Exception | None = None
        for k in range(self.tries):
            try:
                df = self.transport.history(symbol, lo, hi + timedelta(days=1))
                self.arrived = True
                return from_yahoo(df, symbol, lo, hi)
            except SymbolError as exc:
                self.fail(symbol, _msg(exc))
                return None
            except _TRANSIENT as exc:
                err = exc
                if k + 1 < self.tries:
                    self.sleep(min(self.base_delay * 2.0 ** k, MAX_DELAY))
        assert err is not None
        if isinstance(err, RateLimitError):
            self.fail(symbol, f"rate-limited after {self.tries} tries ({_msg(err)}); run the "
                      "command again later")
            return None
        if not self.arrived:
            raise DataError(f"cannot reach the data provider after {self.tries} tries "
                            f"({symbol}: {_msg(err)}); check the network connection and run "
                            "the command again (nothing was written)")
        self.lost = symbol
        self.fail(symbol, f"connection failed after {self.tries} tries ({_msg(err)}); run the "
                  "command again to add it")
        return None


def _msg(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _existing(out: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    """The stored tables (dates as datetime64[ns]) and meta of a folder ``data fetch`` wrote."""
    if not (out / schema.PRICES_FILE).is_file():
        return {}, {}
    meta = io.read_meta(out)
    if "fetch" not in meta:
        raise DataError(f"--out {out}: holds a market that data fetch did not write (meta.json "
                        "has no 'fetch' entry); give a new folder")
    tables = {}
    for name in (schema.PRICES_FILE, schema.MACRO_FILE, schema.INDEX_FILE):
        if (out / name).is_file():
            df = io.read_table(out / name)
            df["date"] = pd.to_datetime(df["date"]).astype("datetime64[ns]")
            tables[name] = df
    return tables, meta


def _changed(old: pd.Series, new: pd.Series) -> bool:
    """True if a stored bar and the provider's bar for the same day differ (re-adjusted)."""
    for c in ("close", "adj_close"):
        a, b = float(old[c]), float(new[c])
        if math.isfinite(a) and math.isfinite(b) and not math.isclose(a, b, rel_tol=READJUST_RTOL):
            return True
    return False


def _extend(f: _Fetcher, symbol: str, stored: pd.DataFrame, start: date, end: date,
            notes: Notes, check_overlap: bool) -> pd.DataFrame | None:
    """``stored`` rows of one symbol extended to ``end`` (None: failed and nothing stored)."""
    if stored.empty:
        new = f.ask(symbol, start, end)
        if new is not None and new.empty:
            f.fail(symbol, f"no data from {start} to {end} (unknown or delisted symbol?)")
            return None
        return new
    last = stored["date"].max().date()
    if last >= end:
        return stored
    new = f.ask(symbol, last, end)
    if new is None:
        return stored  # failed: reported, the stored rows kept
    at = new[new["date"] == pd.Timestamp(last)]
    if check_overlap and len(at) and _changed(stored.iloc[-1], at.iloc[0]):
        first = stored["date"].min().date()
        notes.add(f"{symbol}: the provider's prices for {last} changed since the last fetch (a "
                  f"split or dividend re-adjusted the history): refetched from {first}")
        full = f.ask(symbol, first, end)
        return stored if full is None or full.empty else full
    both = pd.concat([stored, new], ignore_index=True)  # the provider's overlap row wins
    return both.drop_duplicates("date", keep="last").sort_values("date", ignore_index=True)


def fetch_market(universe: str, out: Path, *, start: str | date | None = None,
                 end: str | date | None = None, calendar_code: str | None = None,
                 index: str | None = None, macro: list[str] | None = None,
                 transport: Transport | None = None, tries: int = 4, base_delay: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, log: Log = print,
                 now: pd.Timestamp | None = None) -> FetchResult:
    """Fetch ``universe`` into the market folder ``out`` (or extend it); see the module doc.

    ``index``: the benchmark symbol (default ^NSEI for an NSE/BSE universe, else none; 'none'
    for none). ``macro``: ``SYMBOL=series`` items replacing the default India series. ``now``
    (UTC, default the clock) decides which sessions have closed.
    """
    out = Path(out)
    start_d, end_d = _day(start, "--start"), _day(end, "--end") or date.today()
    uni = load_universe(universe)
    stored, meta_old = _existing(out)
    old_fetch = meta_old.get("fetch", {})
    if start_d is None:
        if not old_fetch:
            raise DataError(f"--start is needed for the new folder {out} (YYYY-MM-DD)")
        start_d = _day(old_fetch["start"], "meta.json fetch.start")
    if end_d < start_d:
        raise DataError(f"--end {end_d} is before --start {start_d}; give a later --end")
    cal = _calendar(calendar_code, meta_old, uni)
    notes = Notes(log)
    end_d = _settled_end(end_d, cal, now, notes)
    if end_d < start_d:
        raise DataError(f"nothing to fetch yet: the '{cal}' session of {start_d} has not closed; "
                        "run the command after the close")
    index_symbol = (NSE_INDEX if uni.indian else None) if index is None else index
    index_symbol = None if str(index_symbol).lower() == "none" else index_symbol
    macro_map = (dict(INDIA_MACRO) if uni.indian else {}) if macro is None else \
        parse_macro_map(macro, "--macro", lower_source=False)

    if old_fetch and start_d < _day(old_fetch["start"], "meta.json fetch.start"):
        notes.add(f"the folder starts {old_fetch['start']}: earlier dates are not backfilled "
                  "(fetch into a new folder for a longer history)")
    transport = default_transport() if transport is None else transport
    f = _Fetcher(transport, tries, base_delay, sleep, log)
    old_prices = stored.get(schema.PRICES_FILE, pd.DataFrame(columns=["date", "ticker"]))

    frames = []
    for row in uni.table.itertuples(index=False):
        mine = old_prices[old_prices["ticker"] == row.ticker]
        mine = mine.reindex(columns=["date", *_BARS]).sort_values("date", ignore_index=True)
        got = _extend(f, row.symbol, mine, start_d, end_d, notes, check_overlap=True)
        if got is None or got.empty:
            continue
        frames.append(got.assign(ticker=row.ticker, sector=row.sector))
    others = sorted(set(old_prices["ticker"]) - set(uni.table["ticker"]))
    if others:
        notes.add(f"kept stored tickers that are not in the universe: {', '.join(others[:10])}")
        keep = old_prices[old_prices["ticker"].isin(others)]
        frames.append(keep.reindex(columns=["date", "ticker", "sector", *_BARS]))

    idx_frame = None
    if index_symbol is not None:
        old_idx = stored.get(schema.INDEX_FILE, pd.DataFrame(columns=["date", "close"]))
        got = _extend(f, index_symbol, old_idx.reindex(columns=["date", *_BARS]), start_d,
                      end_d, notes, check_overlap=False)
        if got is not None and not got.empty:
            idx_frame = got[["date", "close"]]
    elif schema.INDEX_FILE in stored:
        idx_frame = stored[schema.INDEX_FILE][["date", "close"]]

    macro_frame = _macro(f, stored.get(schema.MACRO_FILE), macro_map, start_d, end_d, notes)

    if not frames:
        first = next(iter(f.failed.items()), ("", "no symbols"))
        raise DataError(f"--universe {universe}: no ticker returned data ({first[0]}: "
                        f"{first[1]}); check the symbols (Yahoo spells NSE stocks as TCS.NS) "
                        "and the network connection (nothing was written)")
    prices = pd.concat(frames, ignore_index=True)
    prices, idx_frame = _sessions_only(prices, idx_frame, cal, notes)
    prices = prices.sort_values(["date", "ticker"], ignore_index=True)
    if macro_frame is None:
        macro_frame = pd.DataFrame({"date": sorted(prices["date"].unique())})
    masked = [s for s in schema.MACRO_SERIES if s not in macro_frame.columns]
    if masked:
        notes.add(f"macro: no public source for {', '.join(masked)}: left out (the features "
                  "mask them)")

    tables = {schema.PRICES_FILE: prices[["date", "ticker", "sector", "open", "high", "low",
                                          "close", "volume", "adj_close"]],
              schema.MACRO_FILE: macro_frame}
    if idx_frame is not None:
        tables[schema.INDEX_FILE] = idx_frame.sort_values("date", ignore_index=True)
    present = set(prices["sector"])
    sectors = [s for s in uni.sectors if s in present]
    sectors += sorted(present - set(sectors))
    meta = {"market": "NSE" if uni.label == NIFTY_SECTORS else Path(uni.label).stem,
            "sectors": sectors, "synthetic": False,
            "source": f"hrl-sarp data fetch of {uni.label} (Yahoo Finance)",
            "fetch": {"universe": uni.label, "start": str(old_fetch.get("start", start_d)),
                      "end": str(end_d), "index": index_symbol, "macro": macro_map}}
    if uni.indian:
        meta["currency"] = "INR"
    write_and_validate(out, tables, meta, notes, cal)
    return FetchResult(out, sorted(set(prices["ticker"])), len(prices) - len(old_prices),
                       dict(f.failed),
                       list(notes), masked)


def _settled_end(end: date, cal: str, now: pd.Timestamp | None, notes: Notes) -> date:
    """``end``, or the last session of ``cal`` that closed at least SETTLE before ``now`` if
    that is earlier: a bar of a session still trading is provisional and is never stored."""
    if cal == "weekdays":
        return end
    import exchange_calendars as xc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exchange_calendars trips a pandas deprecation warning
        c = xc.get_calendar(cal)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    closes = c.closes
    if now > closes.iloc[-1] or now < closes.iloc[0]:
        return end  # outside the calendar's range: nothing known about sessions
    settled = closes.index[(closes + SETTLE <= now).to_numpy()].max()
    open_ = closes.index[(closes.index > settled) & (closes.index <= pd.Timestamp(end))]
    if len(open_) == 0:
        return end
    notes.add(f"the '{cal}' session of {open_[0].date()} has not closed (its bar is "
              f"provisional): fetched up to {settled.date()}")
    return settled.date()


def _calendar(code: str | None, meta_old: dict, uni: Universe) -> str:
    stored = meta_old.get("calendar")
    if code is not None:
        code = check_calendar(code)
        if stored and stored != code:
            raise DataError(f"--calendar {code}: the folder's meta.json says '{stored}'; use "
                            f"--calendar {stored} or a new --out folder")
        return code
    if stored:
        return str(stored)
    if uni.indian:
        return calendar.NSE_CALENDAR
    raise DataError(f"--calendar is needed for --universe {uni.label} (not NSE/BSE symbols): "
                    f"give its exchange's code, e.g. XNYS; {CALENDAR_HELP}")


def _macro(f: _Fetcher, old: pd.DataFrame | None, macro_map: dict[str, str], start: date,
           end: date, notes: Notes) -> pd.DataFrame | None:
    """The stored macro table extended by each mapped series (asked from its last value on)."""
    series: dict[str, pd.Series] = {}
    if old is not None:
        for c in old.columns:
            if c != "date":
                series[c] = old.set_index("date")[c].dropna()
    lead = start - timedelta(days=MACRO_LEAD_DAYS)
    for symbol, name in macro_map.items():
        have = series.get(name, pd.Series(dtype="float64"))
        if len(have):
            last = have.index.max().date()
            if last >= end:
                continue
            new = f.ask(symbol, last, end)
        else:
            new = f.ask(symbol, lead, end)
            if new is not None and new.empty:
                f.fail(symbol, f"no data from {lead} to {end} for macro series '{name}'")
                continue
        if new is None:
            continue
        got = new.set_index("date")["close"]
        series[name] = got.combine_first(have).sort_index()
    if not series:
        return None
    names = [s for s in schema.MACRO_SERIES if s in series]
    names += sorted(s for s in series if s not in schema.MACRO_SERIES)
    table = pd.DataFrame({n: series[n] for n in names}).sort_index()
    table.index.name = "date"
    return table.reset_index()


def _sessions_only(prices: pd.DataFrame, idx: pd.DataFrame | None, cal: str,
                   notes: Notes) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Drop price and index rows on days that are not sessions of ``cal`` (with a note)."""
    lo, hi = prices["date"].min(), prices["date"].max()
    if idx is not None and len(idx):
        lo, hi = min(lo, idx["date"].min()), max(hi, idx["date"].max())
    sessions = calendar.trading_days(str(lo.date()), str(hi.date()), cal)
    off_days: set[str] = set()
    frames = []
    for df in (prices, idx):
        if df is None:
            frames.append(None)
            continue
        off = ~np.isin(df["date"].to_numpy().astype("datetime64[D]"), sessions)
        off_days |= {str(d.date()) for d in df.loc[off, "date"]}
        frames.append(df[~off].reset_index(drop=True))
    if off_days:
        days = sorted(off_days)
        notes.add(f"dropped rows on {len(days)} day(s) that are not '{cal}' sessions (special "
                  f"or weekend sessions): {', '.join(days[:5])}"
                  + (f" and {len(days) - 5} more" if len(days) > 5 else ""))
    return frames[0], frames[1]
