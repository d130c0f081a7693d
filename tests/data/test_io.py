"""io: the date column a market file stores is each stamp's calendar day."""

from __future__ import annotations

import pandas as pd

from hrl_sarp_jax.data import io


def test_written_dates_are_the_calendar_days_pandas_gives(tmp_path):
    """Against pandas' own ``.dt.date``: naive stamps with a time of day, days before 1970, a
    missing date, tz-aware stamps (their local day, not UTC's), date strings, and a frame whose
    index is not 0..n-1."""
    columns = {
        "naive": pd.to_datetime(pd.Series(["2020-01-02 23:30", None, "1969-12-31 15:30",
                                           "1900-03-01 00:00"])),
        "kolkata": pd.Series(pd.to_datetime(["2020-01-02 23:30", "2020-06-01 00:10"])
                             .tz_localize("Asia/Kolkata")),
        "new_york": pd.Series(pd.to_datetime(["2020-01-03 03:30"]).tz_localize("UTC")
                              .tz_convert("America/New_York")),
        "strings": pd.Series(["2021-03-04", "2021-03-05"]),
        "filtered": pd.Series(pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]),
                              index=[7, 3, 5]).iloc[1:],  # a frame's rows kept by a filter
    }
    for label, dates in columns.items():
        path = tmp_path / f"{label}.parquet"
        io.write_table(path, "notes.parquet", pd.DataFrame({"date": dates, "x": 1.0}))
        back = io.read_table(path)["date"]
        want = pd.to_datetime(dates).dt.date
        assert [None if pd.isna(d) else d for d in want] == list(back), label
    assert list(io.read_table(tmp_path / "new_york.parquet")["date"]) == [pd.Timestamp(
        "2020-01-02").date()]  # 03:30 UTC is the evening before in New York
