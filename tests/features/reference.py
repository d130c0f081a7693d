"""NumPy/pandas reference implementations of the feature definitions (float64, loops allowed).

Unavailable entries are NaN. Indicators restart after a gap, so each contiguous valid segment
of a stock is computed on its own, as a plain pandas series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ANN = np.sqrt(252.0)


def segments(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) runs of True in a 1-D bool array."""
    out, start = [], None
    for t, v in enumerate(valid):
        if v and start is None:
            start = t
        if not v and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, len(valid)))
    return out


def wilder_rsi_scaled(close: np.ndarray, n: int = 14) -> np.ndarray:
    """(RSI - 50)/50 by Wilder: SMA seed of the first n changes, then (prev·(n-1) + x)/n."""
    out = np.full(len(close), np.nan)
    d = np.diff(close)
    if len(d) < n:
        return out
    gains, losses = np.maximum(d, 0), np.maximum(-d, 0)
    g, l = gains[:n].mean(), losses[:n].mean()
    for i in range(n, len(close)):
        if i > n:
            g = (g * (n - 1) + gains[i - 1]) / n
            l = (l * (n - 1) + losses[i - 1]) / n
        out[i] = 0.0 if g + l == 0 else (g - l) / (g + l)
    return out


def per_segment(values: np.ndarray, valid: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn(pd.Series) -> array`` to each contiguous valid run of each column."""
    out = np.full(values.shape, np.nan)
    for n in range(values.shape[1]):
        for a, b in segments(valid[:, n]):
            out[a:b, n] = np.asarray(fn(pd.Series(values[a:b, n])), float)
    return out


def stock_raw(a: dict) -> dict[str, np.ndarray]:
    """Raw (pre-normalisation) price features [T, N] with NaN where unavailable."""
    valid = a["stock_mask"] & a["stock_valid"][None, :]
    c = a["close"]
    f = {}
    lc = np.where(valid, np.log(np.where(valid, c, 1.0)), np.nan)
    for k, name in ((1, "ret_1d"), (5, "ret_5d"), (20, "ret_20d")):
        f[name] = per_segment(lc, valid, lambda s, k=k: s - s.shift(k))
    f["vol_20d"] = per_segment(lc, valid, lambda s: s.diff().rolling(20).std() * ANN)
    f["rsi_14"] = per_segment(c, valid, lambda s: wilder_rsi_scaled(s.to_numpy()))

    def macd(s):
        m = s.ewm(span=12, adjust=False).mean() - s.ewm(span=26, adjust=False).mean()
        h = (m - m.ewm(span=9, adjust=False).mean()) / s
        h[:33] = np.nan
        return h

    f["macd_hist"] = per_segment(c, valid, macd)

    def pctb(s):
        m, sd = s.rolling(20).mean(), s.rolling(20).std(ddof=0)
        return ((s - (m - 2 * sd)) / (4 * sd)).clip(-0.5, 1.5)

    f["bb_pctb"] = per_segment(c, valid, pctb)
    f["volume_ratio"] = per_segment(
        a["volume"], valid, lambda s: (s / s.shift(1).rolling(20).mean()).clip(0, 5)
    )
    return f


def rolling_z(x: np.ndarray, window: int, min_periods: int, clip: float) -> np.ndarray:
    """Trailing pandas z-score per column over non-NaN entries; NaN where x is NaN."""
    df = pd.DataFrame(x)
    r = df.rolling(window, min_periods=min_periods)
    z = ((df - r.mean()) / r.std()).clip(-clip, clip).to_numpy()
    return np.where(np.isnan(x), np.nan, z)


def sector_z(x: np.ndarray, avail: np.ndarray, sector: np.ndarray) -> np.ndarray:
    """Within-sector (x - median)/std(ddof 1), clip ±3, per day; NaN with < 2 peers."""
    out = np.full(x.shape, np.nan)
    for t in range(x.shape[0]):
        df = pd.DataFrame({"x": np.where(avail[t], x[t], np.nan), "s": sector})
        g = df.groupby("s")["x"]
        med, sd, cnt = g.transform("median"), g.transform("std"), g.transform("count")
        z = ((df["x"] - med) / sd).where(sd > 0, 0.0).clip(-3, 3)
        out[t] = np.where(avail[t] & (cnt.to_numpy() >= 2), z.to_numpy(), np.nan)
    return out
