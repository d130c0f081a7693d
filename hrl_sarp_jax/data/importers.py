"""Convert other layouts into the canonical market folder (DESIGN §3).

# HOST ONLY (not jittable)
- ``import_hrl_sarp``: the original HRL-SARP ``data/raw`` layout (per-sector OHLCV files,
  ``NSEI_index.parquet``, ``macro/macro_indicators.parquet``,
  ``fundamentals/fundamentals.parquet``).
- ``import_table``: a long or wide CSV/Parquet price table plus a ``ticker,sector`` map.

The calendar written to meta.json is the one given (``calendar_code``, any exchange_calendars
code or 'weekdays'); without one it is 'XBOM' when every price date is an XBOM session, else
'weekdays' (the original's demo data uses business days, which include Indian holidays).
``macro_map`` renames a market's own macro columns to canonical series (``{"wti_spot":
"crude"}``) so the features use them. Every choice the importer makes is a note: printed
through ``log`` and stored in meta.json under ``import_notes``. The output is then validated
and any problem is added to the notes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hrl_sarp_jax.config import DataConfig
from hrl_sarp_jax.data import calendar, io, schema
from hrl_sarp_jax.data.validate import validate_market
from hrl_sarp_jax.errors import DataError

Log = Callable[[str], None] | None

# The original's file stems -> its canonical sector names, in its canonical order.
HRL_SARP_SECTORS = {
    "it": "IT", "financials": "Financials", "auto": "Auto", "pharma": "Pharma", "fmcg": "FMCG",
    "energy": "Energy", "metals": "Metals", "realty": "Realty", "media": "Media",
    "telecom": "Telecom", "infra": "Infra",
}
# Macro column names seen in the original (demo generator and MacroFetcher) -> canonical.
MACRO_ALIASES = {
    "vix": "vix", "india_vix": "vix",
    "fii_flows": "fii_flow", "fii_net_buy": "fii_flow", "fii_flow": "fii_flow",
    "dii_flows": "dii_flow", "dii_net_buy": "dii_flow", "dii_flow": "dii_flow",
    "usd_inr": "usd_inr", "crude_oil": "crude", "crude": "crude",
    "interest_rate": "policy_rate", "rbi_rate": "policy_rate", "policy_rate": "policy_rate",
    "put_call_ratio": "put_call_ratio", "pcr": "put_call_ratio",
    "credit_spread": "credit_spread", "gsec_10y": "gsec_10y", "fno_oi": "fno_oi",
    "event_flag": "event_flag",
}
FUNDAMENTAL_ALIASES = {"pe_ratio": "pe", "pb_ratio": "pb", "roe": "roe",
                       "debt_to_equity": "debt_to_equity"}
_PRICE_ALIASES = {"symbol": "ticker", "adj close": "adj_close", "adjclose": "adj_close",
                  "adj_close": "adj_close", "adjusted_close": "adj_close"}


class Notes(list):
    """The importer's (and fetcher's) notes: each one printed through ``log`` and kept."""

    def __init__(self, log: Log):
        super().__init__()
        self._log = log

    def add(self, text: str) -> None:
        self.append(text)
        if self._log is not None:
            self._log(f"note: {text}")


# --------------------------------------------------------------------------- helpers


def _lower_columns(df: pd.DataFrame, aliases: dict[str, str] | None = None) -> pd.DataFrame:
    """Lower-case, strip column names; a DatetimeIndex becomes a 'date' column."""
    if isinstance(df.index, pd.DatetimeIndex):
        df = df.reset_index(names="date") if "date" not in [str(c).lower() for c in df.columns] \
            else df.reset_index(drop=True)
    cols = {c: str(c).strip().lower() for c in df.columns}
    if aliases:
        cols = {c: aliases.get(v, v) for c, v in cols.items()}
    out = df.rename(columns=cols)
    dup = out.columns[out.columns.duplicated()].tolist()
    if dup:
        raise DataError(f"columns {dup} appear twice after lower-casing names; drop one of them")
    return out


def strip_suffix(s: pd.Series) -> pd.Series:
    """Tickers without the Yahoo exchange suffix of NSE/BSE symbols ('TCS.NS' -> 'TCS')."""
    return s.astype(str).str.strip().str.replace(r"\.(NS|BO)$", "", regex=True)


CALENDAR_HELP = ("list the codes with: python -c \"import exchange_calendars as xc; "
                 "print(xc.get_calendar_names())\" (e.g. XNYS New York, XLON London, XBOM "
                 "India), or use 'weekdays'")


def check_calendar(code: str, option: str = "--calendar") -> str:
    """``code`` if it names an exchange_calendars calendar (or 'weekdays'), else a DataError."""
    code = str(code).strip()
    if code == "weekdays":
        return code
    import exchange_calendars as xc

    names = set(xc.get_calendar_names(include_aliases=True))
    if code not in names and code.upper() in names:
        code = code.upper()
    if code not in names:
        raise DataError(f"{option} {code}: unknown trading calendar; {CALENDAR_HELP}")
    return code


def parse_macro_map(items: list[str] | None, option: str = "--macro-map",
                    lower_source: bool = True) -> dict[str, str]:
    """``['wti_spot=crude', ...]`` -> ``{'wti_spot': 'crude'}`` (source lower-cased unless
    ``lower_source`` is False); a bad item or a name that is not a canonical macro series is a
    DataError naming ``option``."""
    out: dict[str, str] = {}
    valid = ", ".join(schema.MACRO_SERIES)
    for item in items or []:
        source, sep, target = str(item).rpartition("=")
        source, target = source.strip(), target.strip().lower()
        source = source.lower() if lower_source else source
        if not sep or not source or not target:
            raise DataError(f"{option} {item}: use SOURCE=CANONICAL, e.g. wti_spot=crude")
        if target not in schema.MACRO_SERIES:
            raise DataError(f"{option} {item}: '{target}' is not a macro series; use one of "
                            f"{valid}")
        if source in out:
            raise DataError(f"{option} {item}: '{source}' is mapped twice; map it once")
        if target in out.values():
            raise DataError(f"{option} {item}: two columns map to '{target}'; keep one")
        out[source] = target
    return out


def _choose_calendar(dates: pd.Series, notes: Notes) -> str:
    d = np.unique(pd.to_datetime(dates).to_numpy().astype("datetime64[D]"))
    sessions = calendar.trading_days(str(d[0]), str(d[-1]), calendar.NSE_CALENDAR)
    off = d[~np.isin(d, sessions)]
    if len(off) == 0:
        return calendar.NSE_CALENDAR
    shown = ", ".join(str(x) for x in off[:5])
    shown += f" and {len(off) - 5} more" if len(off) > 5 else ""
    notes.add(f"{len(off)} price dates are not XBOM sessions ({shown}); meta.json calendar set "
              "to 'weekdays'")
    return "weekdays"


def _numeric_table(df: pd.DataFrame, keep: list[str], what: str, notes: Notes) -> pd.DataFrame:
    """Keep ``keep`` columns; others numeric-coercible are kept, non-numeric dropped with a note."""
    out = df[keep].copy()
    for c in df.columns:
        if c in keep:
            continue
        if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]):
            out[c] = df[c].astype("float64")
        else:
            notes.add(f"{what}: dropped non-numeric column '{c}'")
    return out


def _macro_frame(df: pd.DataFrame, src: Path, notes: Notes,
                 macro_map: dict[str, str] | None = None) -> pd.DataFrame:
    df = _lower_columns(df)
    if "date" not in df.columns:
        raise DataError(f"{src}: no 'date' column (or DatetimeIndex) in the macro table; add one")
    macro_map = macro_map or {}
    absent = [s for s in macro_map if s not in df.columns]
    if absent:
        raise DataError(f"--macro-map {absent[0]}={macro_map[absent[0]]}: {src} has no column "
                        f"'{absent[0]}' (found {', '.join(c for c in df.columns if c != 'date')})")
    renamed = dict(macro_map)
    used = set(macro_map.values())
    for s_col, target in macro_map.items():
        notes.add(f"macro: '{s_col}' -> '{target}' (--macro-map)")
    for c in df.columns:
        if c in macro_map:
            continue
        target = MACRO_ALIASES.get(c)
        if target is None or c == "date":
            continue
        if target in used:
            notes.add(f"macro: column '{c}' duplicates '{target}'; dropped")
            continue
        used.add(target)
        renamed[c] = target
        if c != target:
            notes.add(f"macro: '{c}' -> '{target}'")
    dropped = [c for c in df.columns
               if (MACRO_ALIASES.get(c) or c in used) and c not in renamed]
    df = df.drop(columns=dropped).rename(columns=renamed)
    out = _numeric_table(df, ["date"], "macro", notes)
    extra = [c for c in out.columns if c != "date" and c not in schema.MACRO_SERIES]
    if extra:
        notes.add(f"macro: kept extra series {', '.join(extra)} (not used by default features)")
    out["date"] = pd.to_datetime(out["date"])
    return out.sort_values("date", ignore_index=True)


def _index_frame(df: pd.DataFrame, src: Path) -> pd.DataFrame:
    df = _lower_columns(df, _PRICE_ALIASES)
    for c in ("date", "close"):
        if c not in df.columns:
            raise DataError(f"{src}: index table has no '{c}' column; it needs date and close")
    out = df[["date", "close"]].copy()
    out["date"] = pd.to_datetime(out["date"])
    return out.sort_values("date", ignore_index=True)


def write_and_validate(out: Path, tables: dict[str, pd.DataFrame], meta: dict, notes: Notes,
                       calendar_code: str | None = None) -> Path:
    """Write the market folder (each file atomically), validate it and keep every problem found
    as a note in meta.json. ``calendar_code`` None: chosen from the price dates."""
    prices = tables[schema.PRICES_FILE]
    meta["calendar"] = calendar_code or _choose_calendar(prices["date"], notes)
    # a permissive history check: importing a short sample is not an error
    report = validate_market(io.write_market(out, tables, {**meta, "import_notes": list(notes)}),
                             DataConfig(min_history_days=1))
    for p in report.problems:
        notes.add(f"validation problem in the imported data: {p}")
    io.write_json(out / schema.META_FILE, {**meta, "import_notes": list(notes)})
    return out


def _check_options(calendar_code: str | None, macro_map: dict[str, str] | None) -> str | None:
    """Check the options before reading any data: the calendar code and the macro map."""
    if macro_map:
        parse_macro_map([f"{k}={v}" for k, v in macro_map.items()])
    return None if calendar_code is None else check_calendar(calendar_code)


# --------------------------------------------------------------------------- original layout


def _read_sector_file(path: Path, sector: str) -> pd.DataFrame:
    df = _lower_columns(io.read_table(path), _PRICE_ALIASES)
    if "date" not in df.columns:
        raise DataError(f"{path}: has no 'date' column and no DatetimeIndex (the original "
                        "collect_data.py dropped the dates); re-collect the data with dates")
    if "ticker" not in df.columns:
        raise DataError(f"{path}: has no 'symbol' column; add one naming each row's stock")
    if "close" not in df.columns and "adj_close" not in df.columns:
        raise DataError(f"{path}: has no 'close' column")
    df["ticker"] = strip_suffix(df["ticker"])
    df["sector"] = sector
    df["date"] = pd.to_datetime(df["date"])
    for c in ("open", "high", "low", "close", "volume", "adj_close"):
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        elif c != "adj_close":
            df[c] = np.nan
    if "close" in df.columns and df["close"].isna().all() and "adj_close" in df.columns:
        df["close"] = df["adj_close"]
    return df[[c for c in (*schema.PRICE_REQUIRED, "adj_close") if c in df.columns]]


def import_hrl_sarp(src: Path, out: Path, log: Log = print, *,
                    calendar_code: str | None = None,
                    macro_map: dict[str, str] | None = None) -> Path:
    """Import the original HRL-SARP ``data/raw`` folder ``src`` into the market folder ``out``.

    Fundamentals have no history there (one row per symbol, fetched on ``fetch_date``): they are
    dated at ``fetch_date``, the day the figures became known, so they are only usable from then
    on (typically after the price history: masked throughout it).
    """
    src, out = Path(src), Path(out)
    calendar_code = _check_options(calendar_code, macro_map)
    root = src if (src / "market").is_dir() else src / "raw"
    if not (root / "market").is_dir():
        raise DataError(f"{src}: no 'market/' folder (expected the original data/raw layout with "
                        "market/<sector>_ohlcv.parquet)")
    notes = Notes(log)
    files = sorted((root / "market").glob("*_ohlcv.parquet"))
    if not files:
        raise DataError(f"{root / 'market'}: no <sector>_ohlcv.parquet files")
    frames, order = [], []
    for path in files:
        stem = path.name[: -len("_ohlcv.parquet")]
        sector = HRL_SARP_SECTORS.get(stem.lower(), stem.replace("_", " ").title())
        if stem.lower() not in HRL_SARP_SECTORS:
            notes.add(f"{path.name}: unknown sector file; sector named '{sector}'")
        frames.append(_read_sector_file(path, sector))
        order.append(sector)
    prices = pd.concat(frames, ignore_index=True)
    canonical = list(HRL_SARP_SECTORS.values())
    order = [s for s in canonical if s in order] + sorted(s for s in order if s not in canonical)
    tables = {schema.PRICES_FILE: prices}
    known = set(prices["ticker"])

    idx_path = root / "market" / "NSEI_index.parquet"
    if idx_path.is_file():
        tables[schema.INDEX_FILE] = _index_frame(io.read_table(idx_path), idx_path)
    others = [p.name for p in (root / "market").glob("*_index.parquet") if p != idx_path]
    if others:
        notes.add(f"ignored other index files: {', '.join(sorted(others))}")

    macro_path = root / "macro" / "macro_indicators.parquet"
    if macro_path.is_file():
        tables[schema.MACRO_FILE] = _macro_frame(io.read_table(macro_path), macro_path, notes,
                                                 macro_map)
    elif macro_map:
        raise DataError(f"--macro-map: {src} has no macro/macro_indicators.parquet to map")
    else:
        notes.add("no macro/macro_indicators.parquet: wrote a macro.parquet without series")
        tables[schema.MACRO_FILE] = pd.DataFrame({"date": sorted(prices["date"].unique())})

    fund_path = root / "fundamentals" / "fundamentals.parquet"
    if fund_path.is_file():
        fund = _original_fundamentals(io.read_table(fund_path), fund_path, known, notes)
        if fund is not None:
            tables[schema.FUNDAMENTALS_FILE] = fund
    meta = {"market": "NSE", "currency": "INR", "sectors": order, "synthetic": False,
            "source": f"hrl-sarp import of {src}"}
    return write_and_validate(out, tables, meta, notes, calendar_code)


def _original_fundamentals(df: pd.DataFrame, path: Path, known: set[str],
                           notes: Notes) -> pd.DataFrame | None:
    df = _lower_columns(df, {"symbol": "ticker"})
    if "ticker" not in df.columns or "fetch_date" not in df.columns:
        notes.add(f"{path.name}: needs 'symbol' and 'fetch_date' columns; fundamentals skipped")
        return None
    out = pd.DataFrame({"date": pd.to_datetime(df["fetch_date"], errors="coerce").dt.normalize(),
                        "ticker": strip_suffix(df["ticker"])})
    for src_col, dst in FUNDAMENTAL_ALIASES.items():
        if src_col in df.columns:
            out[dst] = pd.to_numeric(df[src_col], errors="coerce").astype("float64")
    dropped = [c for c in df.columns
               if c not in FUNDAMENTAL_ALIASES and c not in ("ticker", "fetch_date")]
    if dropped:
        notes.add(f"fundamentals: dropped columns {', '.join(dropped)} (no canonical field)")
    notes.add("fundamentals: dated at fetch_date (the day they became known); usable only from "
              "then on")
    bad = out["date"].isna() | ~out["ticker"].isin(known)
    if bad.any():
        notes.add(f"fundamentals: dropped {int(bad.sum())} rows with an unparsable fetch_date "
                  "or a symbol without prices")
    out = out[~bad]
    n = len(out)
    out = out.drop_duplicates(["date", "ticker"], keep="last")
    if len(out) < n:
        notes.add(f"fundamentals: {n - len(out)} duplicate (date, symbol) rows; kept the last")
    return out if len(out) else None


# --------------------------------------------------------------------------- generic tables


def read_sector_map(path: Path) -> pd.Series:
    """A ``ticker,sector`` CSV/Parquet file as a Series ticker -> sector, in file order."""
    df = _lower_columns(io.read_table(path), {"symbol": "ticker"})
    if "ticker" not in df.columns or "sector" not in df.columns:
        raise DataError(f"{path}: the sector map needs columns ticker,sector "
                        f"(found {', '.join(map(str, df.columns))})")
    df = df.dropna(subset=["ticker"])
    df["ticker"] = df["ticker"].astype(str).str.strip()
    no_sector = df.loc[df["sector"].isna() | (df["sector"].astype(str).str.strip() == ""),
                       "ticker"].tolist()
    if no_sector:
        raise DataError(f"{path}: tickers without a sector: {', '.join(no_sector[:5])}"
                        + (f" and {len(no_sector) - 5} more" if len(no_sector) > 5 else "")
                        + "; give each one a sector")
    two = df.groupby("ticker")["sector"].nunique()
    if (two > 1).any():
        raise DataError(f"{path}: tickers mapped to several sectors: "
                        f"{', '.join(two.index[two > 1][:5])}; give each one sector")
    return df.drop_duplicates("ticker").set_index("ticker")["sector"].astype(str).str.strip()


def _long_prices(df: pd.DataFrame, src: Path) -> pd.DataFrame:
    df = _lower_columns(df, _PRICE_ALIASES)
    for c in ("date", "ticker"):
        if c not in df.columns:
            raise DataError(f"{src}: long table has no '{c}' column (found "
                            f"{', '.join(map(str, df.columns))})")
    if "close" not in df.columns and "adj_close" not in df.columns:
        raise DataError(f"{src}: long table needs a 'close' or 'adj_close' column")
    if "close" not in df.columns:
        df["close"] = df["adj_close"]
    keep = [c for c in (*schema.PRICE_REQUIRED, *schema.PRICE_OPTIONAL) if c in df.columns]
    return df[keep]


def _wide_prices(df: pd.DataFrame, src: Path) -> pd.DataFrame:
    if isinstance(df.index, pd.DatetimeIndex):
        df = df.reset_index(names="date")
    dcol = [c for c in df.columns if str(c).strip().lower() == "date"]
    if len(dcol) != 1:
        raise DataError(f"{src}: wide table needs exactly one 'date' column (the others are "
                        "tickers' closes)")
    df = df.rename(columns={dcol[0]: "date"})  # ticker columns keep their case
    long = df.melt(id_vars="date", var_name="ticker", value_name="close")
    return long.dropna(subset=["close"])  # NaN = not listed that day (masked or filled later)


def import_table(src: Path, out: Path, *, layout: str, sectors: Path, macro: Path | None,
                 index: Path | None, log: Log = print, calendar_code: str | None = None,
                 macro_map: dict[str, str] | None = None) -> Path:
    """Import a CSV/Parquet price table (``layout`` 'long' or 'wide') into ``out``.

    Missing open/high/low are NaN (close-only tickers); missing volume is NaN (unknown, loaded
    as 0). Without ``macro`` a macro.parquet with only the date column is written (no series:
    macro features are masked).
    """
    src, out = Path(src), Path(out)
    if layout not in ("long", "wide"):
        raise DataError(f"unknown table layout '{layout}'; use 'long' or 'wide'")
    calendar_code = _check_options(calendar_code, macro_map)
    if macro_map and macro is None:
        raise DataError("--macro-map needs the macro table: add --macro FILE")
    notes = Notes(log)
    raw = io.read_table(src)
    prices = _long_prices(raw, src) if layout == "long" else _wide_prices(raw, src)
    prices = prices.copy()
    prices["ticker"] = prices["ticker"].astype(str).str.strip()
    prices["date"] = pd.to_datetime(prices["date"], format="mixed")
    smap = read_sector_map(sectors)
    unmapped = sorted(set(prices["ticker"]) - set(smap.index))
    if unmapped:
        raise DataError(f"{sectors}: no sector for tickers {', '.join(unmapped[:10])}"
                        + (f" and {len(unmapped) - 10} more" if len(unmapped) > 10 else "")
                        + "; add them to the ticker,sector map")
    unused = sorted(set(smap.index) - set(prices["ticker"]))
    if unused:
        notes.add(f"sector map lists tickers without prices (ignored): {', '.join(unused[:10])}")
    prices["sector"] = prices["ticker"].map(smap)
    for c in ("open", "high", "low", "volume"):
        if c not in prices.columns:
            prices[c] = np.nan
            notes.add(f"no '{c}' column: written as NaN"
                      + (" (close-only bars)" if c != "volume" else " (unknown volume)"))
    for c in prices.columns:
        if c not in ("date", "ticker", "sector"):
            prices[c] = pd.to_numeric(prices[c], errors="coerce").astype("float64")
    tables = {schema.PRICES_FILE: prices}
    if macro is not None:
        tables[schema.MACRO_FILE] = _macro_frame(io.read_table(macro), macro, notes, macro_map)
    else:
        tables[schema.MACRO_FILE] = pd.DataFrame({"date": sorted(prices["date"].unique())})
        notes.add("no macro table: macro.parquet has no series (macro features are masked)")
    if index is not None:
        tables[schema.INDEX_FILE] = _index_frame(io.read_table(index), index)
    meta = {"market": src.stem, "sectors": sorted(prices["sector"].unique()),
            "synthetic": False, "source": f"{layout} table import of {src}"}
    return write_and_validate(out, tables, meta, notes, calendar_code)
