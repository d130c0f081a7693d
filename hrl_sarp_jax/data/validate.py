"""Validation of a canonical market folder: every rule checked, every problem reported.

# HOST ONLY (not jittable)
Each problem names the file, the column, the offending rows (0-based positions in the file,
with their date and ticker; the first few plus a count) and the fix. Warnings describe repairs
the loader will make (forward-filling short gaps, masking before listing / after delisting).

Decisions (documented here because the loader relies on them):
- Rows may come in any ticker order (the original's symbol-major files are accepted), but
  within one ticker dates must ascend in file order: a ticker whose dates jump backwards is
  spliced data (the original's defect) and is a problem.
- The price used for returns is ``adj_close`` for tickers that have any ``adj_close`` value,
  else ``close``. A ticker whose ``open``, ``high`` and ``low`` are all NaN is close-only
  (accepted; the loader sets ``has_ohlc`` False). NaN volume is allowed (unknown volume).
- Leading and trailing NaN prices of a ticker mean "not listed yet / delisted". Inside the
  listed span, a run of NaN prices longer than ``ffill_limit`` is a problem, a shorter one a
  warning (it will be forward-filled). Missing *rows* inside the span are gaps: forward-filled
  up to ``ffill_limit`` days, longer gaps masked (a suspension); both are warnings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import calendar as cal
from hrl_sarp_jax.data import io, schema
from hrl_sarp_jax.errors import DataError

_SHOW = 5  # rows or names quoted per problem
_PRICE_NUMERIC = ("open", "high", "low", "close", "volume", *schema.PRICE_OPTIONAL)


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of ``validate_market``; valid when ``problems`` is empty."""

    problems: list[str]
    warnings: list[str]
    summary: dict

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_line(self) -> str:
        s = self.summary
        span = f"{s.get('first_date', '?')}..{s.get('last_date', '?')}"
        return (
            f"{s.get('sectors', 0)} sectors, {s.get('tickers', 0)} tickers, "
            f"{s.get('trading_days', 0)} trading days {span}, "
            f"macro: {s.get('macro_series', 0)} series, "
            f"fundamentals: {'yes' if s.get('fundamentals') else 'no'}, "
            f"index: {'yes' if s.get('index') else 'no'}"
        )


@dataclass
class MarketFrames:
    """Parsed tables of a market folder (what the loader builds arrays from).

    ``prices`` has columns date (datetime64[ns], day precision), ticker, sector, open, high,
    low, close (raw), price (close used for returns), volume, market_cap, circuit_band,
    delivery_pct (NaN where absent), in file order. Other frames: parsed ``date`` column.
    """

    meta: dict[str, Any]
    calendar: str
    sector_order: list[str]
    prices: pd.DataFrame | None = None
    macro: pd.DataFrame | None = None
    fundamentals: pd.DataFrame | None = None
    index: pd.DataFrame | None = None
    sentiment: pd.DataFrame | None = None
    regimes: pd.DataFrame | None = None


class _Report:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def problem(self, file: str, col: str | None, what: str, fix: str) -> None:
        where = f"{file}: column '{col}'" if col else file
        self.problems.append(f"{where}: {what}. Fix: {fix}")

    def warn(self, file: str, col: str | None, what: str) -> None:
        where = f"{file}: column '{col}'" if col else file
        self.warnings.append(f"{where}: {what}")


# --------------------------------------------------------------------------- helpers


def _names(items: Any, limit: int = _SHOW) -> str:
    items = [str(x) for x in items]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _rows(df: pd.DataFrame, mask: Any, limit: int = _SHOW) -> str:
    """'3 rows: row 4 (2020-01-03, INFY), ...' for the True positions of ``mask``."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))
    items = []
    for i in idx[:limit]:
        bits = []
        if "date" in df.columns:
            d = df["date"].iat[i]
            bits.append(str(d.date()) if isinstance(d, pd.Timestamp) else str(d))
        if "ticker" in df.columns:
            bits.append(str(df["ticker"].iat[i]))
        items.append(f"row {i} ({', '.join(bits)})" if bits else f"row {i}")
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return f"{len(idx)} row{'s' if len(idx) != 1 else ''}: {', '.join(items)}{more}"


def _read(path: Path, rep: _Report, required: bool) -> pd.DataFrame | None:
    name = path.name
    if not path.is_file():
        if required:
            rep.problem(name, None, f"required file is missing from {path.parent}",
                        f"write {name} (see hrl_sarp_jax/data/schema.py) or import the data "
                        "with 'hrl-sarp data import'")
        return None
    try:
        df = io.read_table(path)
    except DataError as exc:
        rep.problem(name, None, f"cannot be read ({exc})",
                    "rewrite the file as Parquet (pandas.DataFrame.to_parquet)")
        return None
    return _as_table(name, df, rep)


def _as_table(name: str, df: pd.DataFrame, rep: _Report) -> pd.DataFrame | None:
    """A read frame with ``date`` as a column and a fresh index; None (reported) if empty."""
    if "date" not in df.columns and df.index.name == "date":
        df = df.reset_index()
    df = df.reset_index(drop=True)
    if len(df) == 0 and name != schema.MACRO_FILE:
        rep.problem(name, None, "file has no rows", f"write the data into {name} or remove it")
        return None
    return df


def _parse_dates(df: pd.DataFrame, name: str, rep: _Report) -> pd.Series | None:
    """Parsed day-precision dates (NaT where bad, reported); None if no date column."""
    if "date" not in df.columns:
        alt = [c for c in df.columns if str(c).lower() == "date"]
        hint = f"rename column '{alt[0]}' to 'date'" if alt else "add a 'date' column (YYYY-MM-DD)"
        rep.problem(name, "date", "required column is missing", hint)
        return None
    raw = df["date"]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw.dt.tz_localize(None) if getattr(raw.dt, "tz", None) is not None else raw
    elif pd.api.types.is_numeric_dtype(raw) and not raw.isna().all():
        rep.problem(name, "date", f"holds numbers (dtype {raw.dtype}), not dates",
                    "store dates as date32/timestamp or 'YYYY-MM-DD' strings")
        return pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    else:
        parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
    parsed = parsed.astype("datetime64[ns]").dt.normalize()
    null = raw.isna().to_numpy()
    bad = parsed.isna().to_numpy() & ~null
    if null.any():
        rep.problem(name, "date", f"empty dates in {_rows(df.drop(columns='date'), null)}",
                    "fill in or drop those rows")
    if bad.any():
        shown = _names(raw[bad].astype(str).unique())
        rep.problem(name, "date", f"unparsable dates ({shown}) in "
                    f"{_rows(df.drop(columns='date'), bad)}", "write dates as YYYY-MM-DD")
    return parsed


def _numeric(df: pd.DataFrame, cols: Any, name: str, rep: _Report) -> list[str]:
    """Columns among ``cols`` that are numeric; others reported. Returns the usable ones."""
    good = []
    for c in cols:
        if c not in df.columns:
            continue
        s = df[c]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            good.append(c)
            continue
        coerced = pd.to_numeric(s, errors="coerce")
        bad = coerced.isna().to_numpy() & s.notna().to_numpy()
        example = _names(s[bad].astype(str).unique(), 3) if bad.any() else ""
        rep.problem(name, c, f"has dtype {s.dtype}, expected numbers"
                    + (f" (non-numeric values {example} in {_rows(df, bad)})" if bad.any() else ""),
                    f"store '{c}' as float (e.g. pd.to_numeric) and drop text such as units")
    return good


def _str_col(s: pd.Series) -> pd.Series:
    """Strings with surrounding blanks stripped; null and blank become NA."""
    out = s.astype("string").str.strip()
    return out.mask(out.eq("").fillna(False))


def _out_of(df: pd.DataFrame, mask: np.ndarray, name: str, col: str, what: str, fix: str,
            rep: _Report) -> None:
    if mask.any():
        rep.problem(name, col, f"{what} in {_rows(df, mask)}", fix)


# --------------------------------------------------------------------------- prices


def _check_prices(df: pd.DataFrame, cfg: DataConfig, frames: MarketFrames,
                  rep: _Report) -> pd.DataFrame | None:
    f = schema.PRICES_FILE
    missing = [c for c in schema.PRICE_REQUIRED if c not in df.columns]
    for c in missing:
        alt = [x for x in df.columns if str(x).lower() == c]
        fix = f"rename column '{alt[0]}' to '{c}'" if alt else (
            f"add column '{c}'" + (" (NaN for close-only data)" if c in ("open", "high", "low")
                                   else ""))
        rep.problem(f, c, "required column is missing", fix)
    unknown = [c for c in df.columns if c not in schema.PRICE_REQUIRED + schema.PRICE_OPTIONAL]
    if unknown:
        rep.warn(f, None, f"extra columns ignored: {_names(unknown)}")

    dates = _parse_dates(df, f, rep)
    nums = _numeric(df, _PRICE_NUMERIC, f, rep)
    out = pd.DataFrame(index=df.index)
    out["date"] = dates if dates is not None else pd.Series(pd.NaT, df.index, "datetime64[ns]")
    for key in ("ticker", "sector"):
        out[key] = _str_col(df[key]) if key in df.columns else None
    for c in _PRICE_NUMERIC:
        out[c] = df[c].astype("float64") if c in nums else np.nan
    if "ticker" in df.columns:
        empty = out["ticker"].isna().to_numpy()
        _out_of(out, empty, f, "ticker", "empty ticker", "fill in the ticker or drop the rows", rep)
    ok = out["date"].notna().to_numpy() & out["ticker"].notna().to_numpy()
    if not ok.any():
        rep.problem(f, "date", "no row has both a valid date and a ticker",
                    "write one row per (date, ticker)")
        return None

    # sectors: every ticker has exactly one non-empty sector
    if "sector" in df.columns:
        empty = out["sector"].isna().to_numpy() & ok
        _out_of(out, empty, f, "sector", "ticker without a sector",
                "give every row its ticker's sector (e.g. from a ticker,sector map)", rep)
        good = out[ok & ~empty]
        n_sec = good.groupby("ticker")["sector"].nunique()
        for t in n_sec.index[n_sec > 1][:_SHOW]:
            secs = sorted(good.loc[good["ticker"] == t, "sector"].unique())
            rep.problem(f, "sector", f"ticker {t} is mapped to {len(secs)} sectors "
                        f"({_names(secs)})", f"use one sector for {t} in every row")
        if (n_sec > 1).sum() > _SHOW:
            rep.problem(f, "sector", f"{(n_sec > 1).sum() - _SHOW} more tickers map to several "
                        "sectors", "use one sector per ticker")
        _check_sector_order(sorted(good["sector"].unique()), frames, rep)

    # duplicates and per-ticker date order
    sub = out[ok]
    dup = np.zeros(len(out), bool)
    dup[ok] = sub.duplicated(["date", "ticker"], keep=False).to_numpy()
    _out_of(out, dup, f, "date", "duplicate (date, ticker) rows",
            "keep one row per ticker and date", rep)
    back = np.zeros(len(out), bool)
    single = ok & ~dup
    back[single] = (out[single].groupby("ticker", sort=False)["date"].diff()
                    < pd.Timedelta(0)).to_numpy()
    _out_of(out, back, f, "date", "dates go backwards within a ticker (spliced or unsorted data)",
            "sort the rows by (ticker, date) or (date, ticker)", rep)

    # value ranges
    for c in ("open", "high", "low", "close", "adj_close", "market_cap"):
        v = out[c].to_numpy()
        _out_of(out, v <= 0, f, c, "non-positive values", f"'{c}' must be > 0 (NaN if unknown)",
                rep)
    _out_of(out, out["volume"].to_numpy() < 0, f, "volume", "negative volume",
            "volume must be >= 0 (NaN if unknown)", rep)
    band = out["circuit_band"].to_numpy()
    _out_of(out, (band <= 0) | (band > 1), f, "circuit_band", "circuit band outside (0, 1]",
            "write the band as a fraction, e.g. 0.2 for a 20% band (NaN if none)", rep)
    dp = out["delivery_pct"].to_numpy()
    _out_of(out, (dp < 0) | (dp > 100), f, "delivery_pct", "delivery % outside [0, 100]",
            "write delivery as a percentage 0..100", rep)
    o, h, lo, c = (out[k].to_numpy() for k in ("open", "high", "low", "close"))
    tol = 1e-9 * np.abs(h)
    _out_of(out, h < lo - tol, f, "high", "high < low", "fix or drop those bars", rep)
    both = ~(h < lo - tol)
    _out_of(out, both & ((c > h + tol) | (c < lo - tol)), f, "close",
            "close outside [low, high]", "fix or drop those bars", rep)
    _out_of(out, both & ((o > h + tol) | (o < lo - tol)), f, "open",
            "open outside [low, high]", "fix or drop those bars", rep)

    _set_price(out, ok, rep)
    if "close" in nums and ("adj_close" in nums or "adj_close" not in df.columns):
        _check_nan_runs(out, ok & ~dup, cfg, rep)
    _check_calendar(out, ok, frames, rep)
    n_days = out.loc[ok, "date"].nunique()
    if ok.any() and n_days < cfg.min_history_days:
        rep.problem(f, "date", f"only {n_days} trading days of history "
                    f"({out.loc[ok, 'date'].min().date()}..{out.loc[ok, 'date'].max().date()}), "
                    f"fewer than data.min_history_days={cfg.min_history_days}",
                    "supply a longer history or lower data.min_history_days")
    return out


def _check_sector_order(present: list[str], frames: MarketFrames, rep: _Report) -> None:
    listed = frames.meta.get("sectors")
    if listed is None:
        frames.sector_order = present
        return
    m = schema.META_FILE
    if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
        rep.problem(m, "sectors", "must be a list of sector names", 'e.g. "sectors": ["IT", ...]')
        frames.sector_order = present
        return
    dups = sorted({s for s in listed if listed.count(s) > 1})
    if dups:
        rep.problem(m, "sectors", f"sectors listed twice: {_names(dups)}", "list each once")
    empty = [s for s in listed if s not in present]
    if empty:
        rep.problem(m, "sectors", f"sectors with no stocks in {schema.PRICES_FILE}: "
                    f"{_names(empty)}", "remove them from meta.json or add their stocks")
    unlisted = [s for s in present if s not in listed]
    if unlisted:
        rep.problem(m, "sectors", f"sectors in {schema.PRICES_FILE} missing from the order: "
                    f"{_names(unlisted)}", "add them to meta.json 'sectors'")
    frames.sector_order = list(dict.fromkeys(listed))


def _set_price(out: pd.DataFrame, ok: np.ndarray, rep: _Report) -> None:
    """out['price'] = adj_close for tickers having any adj_close, else close."""
    has_adj = out["adj_close"].notna().groupby(out["ticker"]).transform("any").to_numpy(bool)
    out["price"] = np.where(has_adj, out["adj_close"].to_numpy(), out["close"].to_numpy())
    if has_adj.any() and not has_adj[ok].all():
        t = sorted(out.loc[ok & ~has_adj, "ticker"].unique())
        rep.warn(schema.PRICES_FILE, "adj_close",
                 f"no adjusted closes for {_names(t)}; their raw 'close' is used for returns")
    ohlc = out[["open", "high", "low"]].notna().any(axis=1)
    has_ohlc = ohlc.groupby(out["ticker"]).transform("any").to_numpy(bool)
    close_only = sorted(out.loc[ok & ~has_ohlc, "ticker"].unique())
    if close_only:
        rep.warn(schema.PRICES_FILE, "open", f"close-only tickers (no open/high/low): "
                 f"{_names(close_only)}")
    partial = ok & has_ohlc & ~out[["open", "high", "low"]].notna().all(axis=1).to_numpy()
    partial &= out["price"].notna().to_numpy()
    if partial.any():
        rep.warn(schema.PRICES_FILE, "open", f"open/high/low missing on {partial.sum()} rows of "
                 "tickers with bars; the loader fills them with the close")


def _check_nan_runs(out: pd.DataFrame, ok: np.ndarray, cfg: DataConfig, rep: _Report) -> None:
    f = schema.PRICES_FILE
    col = "adj_close" if out["adj_close"].notna().any() else "close"
    sub = out[ok].sort_values(["ticker", "date"], kind="stable")
    if sub.empty:
        return
    nan = sub["price"].isna().to_numpy()
    tick = sub["ticker"].to_numpy()
    # listed span = first..last row with a price; NaN outside it = not listed yet / delisted
    valid_pos = pd.Series(np.where(~nan, np.arange(len(sub)), np.nan))
    first = valid_pos.groupby(tick).transform("min").to_numpy()
    last = valid_pos.groupby(tick).transform("max").to_numpy()
    pos = np.arange(len(sub))
    inside = nan & (pos > first) & (pos < last)
    no_price = sorted(set(tick[np.isnan(first)]))
    if no_price:
        rep.problem(f, col, f"tickers without a single price: {_names(no_price)}",
                    "drop those tickers or supply their prices")
    outside = nan & ~inside & ~np.isnan(first)
    if outside.any():
        rep.warn(f, col, f"{outside.sum()} leading/trailing NaN prices treated as not listed")
    if not inside.any():
        return
    start = inside & ~np.r_[False, inside[:-1]]
    run_id = np.cumsum(start)
    lengths = np.bincount(run_id[inside])
    long_runs = np.flatnonzero(lengths > cfg.ffill_limit)
    long_rows = inside & np.isin(run_id, long_runs)
    file_rows = sub.index.to_numpy()
    if long_rows.any():
        mask = np.zeros(len(out), bool)
        mask[file_rows[long_rows]] = True
        rep.problem(f, col, f"{len(long_runs)} runs of NaN prices longer than "
                    f"data.ffill_limit={cfg.ffill_limit} days in {_rows(out, mask)}",
                    "supply the missing prices, drop those rows if the stock was suspended "
                    "(the gap is then masked), or raise data.ffill_limit")
    short = inside & ~long_rows
    if short.any():
        rep.warn(f, col, f"{short.sum()} NaN prices in short runs (<= {cfg.ffill_limit} days) "
                 "will be forward-filled")


def _check_calendar(out: pd.DataFrame, ok: np.ndarray, frames: MarketFrames,
                    rep: _Report) -> None:
    if not ok.any():
        return
    dates = out.loc[ok, "date"]
    try:
        sessions = cal.trading_days(str(dates.min().date()), str(dates.max().date()),
                                    frames.calendar)
    except DataError as exc:
        rep.problem(schema.META_FILE, "calendar", str(exc),
                    "use 'XBOM' (NSE/BSE) or 'weekdays', or another exchange_calendars name")
        return
    off = np.zeros(len(out), bool)
    off[ok] = ~np.isin(dates.to_numpy().astype("datetime64[D]"), sessions)
    if off.any():
        bad_days = sorted({str(d.date()) for d in out.loc[off, "date"]})
        rep.problem(schema.PRICES_FILE, "date",
                    f"{len(bad_days)} date(s) not sessions of the '{frames.calendar}' calendar "
                    f"({_names(bad_days)}; weekends or holidays) in {_rows(out, off)}",
                    "drop those rows, or set \"calendar\": \"weekdays\" in meta.json if the "
                    "market really traded then")
    # missing rows inside a ticker's listed span (gaps the loader repairs or masks)
    axis = np.unique(dates.to_numpy())
    sub = out[ok]
    pos = np.searchsorted(axis, sub["date"].to_numpy())
    g = pd.DataFrame({"t": sub["ticker"].to_numpy(), "p": pos}).groupby("t")["p"]
    expected = g.max() - g.min() + 1
    missing = int((expected - g.nunique()).sum())
    if missing:
        rep.warn(schema.PRICES_FILE, "date", f"{missing} missing rows inside tickers' listed "
                 f"spans: gaps up to data.ffill_limit days are forward-filled, longer ones masked")


# --------------------------------------------------------------------------- other files


def _check_dated(df: pd.DataFrame, name: str, rep: _Report, by_ticker: bool,
                 tickers: set[str] | None) -> pd.DataFrame | None:
    """Shared checks of a dated table: date parse, ticker column, duplicates, unknown tickers."""
    dates = _parse_dates(df, name, rep)
    out = df.copy()
    out["date"] = dates if dates is not None else pd.NaT
    ok = out["date"].notna().to_numpy().copy()
    keys = ["date"]
    if by_ticker:
        if "ticker" not in df.columns:
            alt = [c for c in df.columns if str(c).lower() in ("ticker", "symbol")]
            rep.problem(name, "ticker", "required column is missing",
                        f"rename '{alt[0]}' to 'ticker'" if alt else "add a 'ticker' column")
            return None
        out["ticker"] = _str_col(df["ticker"])
        ok &= out["ticker"].notna().to_numpy()
        keys.append("ticker")
        if tickers is not None:
            unknown = ok & ~out["ticker"].isin(tickers).to_numpy()
            if unknown.any():
                names = sorted(out.loc[unknown, "ticker"].unique())
                rep.problem(name, "ticker", f"tickers not in {schema.PRICES_FILE} "
                            f"({_names(names)}) in {_rows(out, unknown)}",
                            "drop those rows or add the tickers' prices")
    dup = np.zeros(len(out), bool)
    dup[ok] = out[ok].duplicated(keys, keep=False).to_numpy()
    _out_of(out, dup, name, "date", f"duplicate ({', '.join(keys)}) rows",
            "keep one row per " + ", ".join(keys), rep)
    if dates is None:
        return None
    return out


def _check_macro(df: pd.DataFrame, first_price: pd.Timestamp | None,
                 rep: _Report) -> pd.DataFrame | None:
    f = schema.MACRO_FILE
    out = _check_dated(df, f, rep, by_ticker=False, tickers=None)
    series = [c for c in df.columns if c != "date"]
    good = _numeric(df, series, f, rep)
    if out is None:
        return None
    if series and len(df) == 0:
        rep.problem(f, series[0], "file has columns but no rows", "write the series' values")
        return None
    if good and first_price is not None and out["date"].notna().any():
        first = out["date"].min()
        if first > first_price:
            rep.problem(f, "date", f"macro data starts {first.date()}, after the first price "
                        f"date {first_price.date()}: the as-of join would leave early days "
                        "without macro values", "supply earlier macro data (or trim prices)")
        for c in good:
            fv = out.loc[out[c].notna(), "date"].min()
            if pd.notna(fv) and fv > first_price and fv > first:
                rep.warn(f, c, f"series starts {fv.date()}; masked before that")
    return out[["date", *good]]


def _check_index(df: pd.DataFrame, span: tuple | None, rep: _Report) -> pd.DataFrame | None:
    f = schema.INDEX_FILE
    out = _check_dated(df, f, rep, by_ticker=False, tickers=None)
    if "close" not in df.columns:
        rep.problem(f, "close", "required column is missing", "add the benchmark's 'close'")
        return None
    if not _numeric(df, ["close"], f, rep) or out is None:
        return None
    c = out["close"].to_numpy(dtype=float)
    _out_of(out, c <= 0, f, "close", "non-positive index close", "index levels must be > 0", rep)
    _out_of(out, np.isnan(c), f, "close", "NaN index close", "fill or drop those rows", rep)
    have = out.loc[out["date"].notna() & out["close"].notna(), "date"]
    if span is not None and len(have) and (have.min() > span[0] or have.max() < span[1]):
        rep.problem(f, "date", f"index covers {have.min().date()}..{have.max().date()}, not "
                    f"the price range {span[0].date()}..{span[1].date()}",
                    "supply the index over the whole price range or remove index.parquet")
    return out[["date", "close"]]


def _check_fundamentals(df: pd.DataFrame, tickers: set[str] | None, rep: _Report):
    f = schema.FUNDAMENTALS_FILE
    out = _check_dated(df, f, rep, by_ticker=True, tickers=tickers)
    fields = [c for c in df.columns if c in schema.FUNDAMENTAL_FIELDS]
    other = [c for c in df.columns if c not in (*schema.FUNDAMENTAL_FIELDS, "date", "ticker")]
    if other:
        rep.warn(f, None, f"columns not in schema.FUNDAMENTAL_FIELDS ignored: {_names(other)}")
    good = _numeric(df, fields, f, rep)
    if not fields:
        rep.problem(f, None, f"no known fundamental columns ({_names(schema.FUNDAMENTAL_FIELDS)})",
                    "rename the ratio columns to the schema names or remove the file")
    return None if out is None else out[["date", "ticker", *good]]


def _check_sentiment(df: pd.DataFrame, tickers: set[str] | None, rep: _Report):
    f = schema.SENTIMENT_FILE
    out = _check_dated(df, f, rep, by_ticker=True, tickers=tickers)
    if "score" not in df.columns:
        rep.problem(f, "score", "required column is missing", "add a 'score' column in [-1, 1]")
        return None
    if not _numeric(df, ["score"], f, rep) or out is None:
        return None
    s = out["score"].to_numpy(dtype=float)
    _out_of(out, (s < -1) | (s > 1), f, "score", "score outside [-1, 1]",
            "rescale scores to [-1, 1]", rep)
    return out[["date", "ticker", "score"]]


def _check_regimes(df: pd.DataFrame, rep: _Report):
    f = schema.REGIMES_FILE
    out = _check_dated(df, f, rep, by_ticker=False, tickers=None)
    if "regime" not in df.columns:
        rep.problem(f, "regime", "required column is missing", "add 'regime' (0 Bull, 1 Bear, 2 "
                    "Sideways)")
        return None
    if not _numeric(df, ["regime"], f, rep) or out is None:
        return None
    r = out["regime"].to_numpy(dtype=float)
    _out_of(out, ~np.isin(r, [0.0, 1.0, 2.0]), f, "regime", "values outside {0, 1, 2}",
            "use 0 Bull, 1 Bear, 2 Sideways", rep)
    return out[["date", "regime"]]


# --------------------------------------------------------------------------- entry points


def check_market(market_dir: Path, cfg: DataConfig) -> tuple[ValidationReport, MarketFrames]:
    """Validate ``market_dir`` and return the parsed frames (usable only if the report is ok)."""
    market_dir = Path(market_dir)
    rep = _Report()
    if not market_dir.is_dir():
        rep.problem(str(market_dir), None, "market folder not found",
                    "generate one with 'hrl-sarp data synth' or import one")
        return ValidationReport(rep.problems, rep.warnings, {}), MarketFrames({}, "XBOM", [])
    try:
        meta = io.read_meta(market_dir)
    except DataError as exc:
        rep.problem(schema.META_FILE, None, f"unparsable ({exc})", "fix the JSON or delete it")
        meta = {}
    tables = {name: _read(market_dir / name, rep, required=name in schema.REQUIRED_FILES)
              for name in _TABLE_FILES}
    return _check_tables(tables, meta, cfg, rep)


_TABLE_FILES = (schema.PRICES_FILE, schema.MACRO_FILE, schema.INDEX_FILE,
                schema.FUNDAMENTALS_FILE, schema.SENTIMENT_FILE, schema.REGIMES_FILE)


def _check_tables(tables: dict[str, pd.DataFrame | None], meta: dict[str, Any], cfg: DataConfig,
                  rep: _Report) -> tuple[ValidationReport, MarketFrames]:
    calendar = meta.get("calendar", cal.NSE_CALENDAR)
    if not isinstance(calendar, str):
        rep.problem(schema.META_FILE, "calendar", f"must be a string, got {calendar!r}",
                    "use 'XBOM' or 'weekdays'")
        calendar = cal.NSE_CALENDAR
    frames = MarketFrames(meta=meta, calendar=calendar, sector_order=[])

    raw = tables[schema.PRICES_FILE]
    prices = _check_prices(raw, cfg, frames, rep) if raw is not None else None
    frames.prices = prices
    tickers = span = first_price = None
    if prices is not None:
        tickers = set(prices["ticker"].dropna().unique())
        if prices["date"].notna().any():
            first_price = prices["date"].min()
            span = (first_price, prices["date"].max())

    macro = tables[schema.MACRO_FILE]
    if macro is not None:
        frames.macro = _check_macro(macro, first_price, rep)
    checks = {
        schema.INDEX_FILE: lambda d: _check_index(d, span, rep),
        schema.FUNDAMENTALS_FILE: lambda d: _check_fundamentals(d, tickers, rep),
        schema.SENTIMENT_FILE: lambda d: _check_sentiment(d, tickers, rep),
        schema.REGIMES_FILE: lambda d: _check_regimes(d, rep),
    }
    attrs = {schema.INDEX_FILE: "index", schema.FUNDAMENTALS_FILE: "fundamentals",
             schema.SENTIMENT_FILE: "sentiment", schema.REGIMES_FILE: "regimes"}
    for name, check in checks.items():
        df = tables[name]
        if df is not None:
            setattr(frames, attrs[name], check(df))

    summary: dict[str, Any] = {
        "calendar": calendar,
        "macro_series": 0 if frames.macro is None else frames.macro.shape[1] - 1,
        "fundamentals": tables[schema.FUNDAMENTALS_FILE] is not None,
        "index": tables[schema.INDEX_FILE] is not None,
    }
    if prices is not None and len(prices):
        summary.update(
            sectors=prices["sector"].nunique(),
            tickers=prices["ticker"].nunique(),
            trading_days=prices["date"].nunique(),
            first_date=str(prices["date"].min().date()),
            last_date=str(prices["date"].max().date()),
        )
    return ValidationReport(rep.problems, rep.warnings, summary), frames


def validate_market(market_dir: Path, cfg: DataConfig) -> ValidationReport:
    """Check every rule on the market folder; the report lists all problems and warnings."""
    return check_market(market_dir, cfg)[0]
