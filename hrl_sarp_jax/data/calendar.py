"""Trading calendars and calendar-week structure.

# HOST ONLY (not jittable)
The NSE calendar comes from exchange_calendars' XBOM (BSE and NSE share trading holidays; XBOM
excludes the one-hour Diwali Muhurat session, which daily bars do not need). Dates outside its
range fall back to weekdays, with that choice reported by ``calendar_note``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from hrl_sarp_jax.errors import DataError

NSE_CALENDAR = "XBOM"


def trading_days(start: str, end: str, calendar: str = NSE_CALENDAR) -> np.ndarray:
    """Trading sessions in [start, end] as ``datetime64[D]``. calendar 'weekdays' = Mon-Fri."""
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    if e < s:
        raise DataError(f"calendar range {start}..{end} is empty (end before start)")
    if calendar == "weekdays":
        return pd.bdate_range(s, e).values.astype("datetime64[D]")
    import exchange_calendars as xc

    try:
        with warnings.catch_warnings():
            # exchange_calendars 4.13 trips a pandas deprecation warning on first use.
            warnings.simplefilter("ignore")
            cal = xc.get_calendar(calendar)
    except xc.errors.InvalidCalendarName:
        raise DataError(
            f"unknown trading calendar '{calendar}' (use 'XBOM' for NSE/BSE or 'weekdays')"
        ) from None
    lo, hi = max(s, cal.first_session), min(e, cal.last_session)
    parts = []
    if s < cal.first_session:
        parts.append(pd.bdate_range(s, cal.first_session - pd.Timedelta(days=1)).values)
    if lo <= hi:
        parts.append(cal.sessions_in_range(lo, hi).values)
    if e > cal.last_session:
        parts.append(pd.bdate_range(cal.last_session + pd.Timedelta(days=1), e).values)
    return np.concatenate(parts).astype("datetime64[D]") if parts else np.array([], "datetime64[D]")


def week_end_flags(dates: np.ndarray) -> np.ndarray:
    """bool [T]: True on the last trading day of each calendar (ISO) week present in ``dates``.

    The final date counts as a week end only if its week is complete by the calendar
    (the next weekday would fall in the next ISO week), so a series ending mid-week does not
    invent a week end from the end of the data.
    """
    d = pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[D]"))
    if len(d) == 0:
        return np.zeros(0, bool)
    iso = d.isocalendar()
    key = iso["year"].to_numpy() * 100 + iso["week"].to_numpy()
    flags = np.zeros(len(d), bool)
    flags[:-1] = key[1:] != key[:-1]
    flags[-1] = d[-1].day_of_week == 4  # a Friday closes its week
    return flags
