"""The 18 macro features [T, 18] from named macro series, the benchmark and market breadth,
and optionally six level features after them (``features.macro_levels``).

Series are looked up by name on the host into a column-index vector (-1 = absent); a missing
series gives 0 with mask False. Definitions are tabulated in ``features/build.py``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from hrl_sarp_jax.data.schema import MACRO_SERIES
from hrl_sarp_jax.features.featureset import MACRO_FEATURES
from hrl_sarp_jax.features.hmm import regime_probabilities
from hrl_sarp_jax.features.rolling import (
    lag,
    rolling_moments,
    rolling_zscore,
    run_length,
    safe_div,
    window_mean_var,
)
from hrl_sarp_jax.types import BEAR, BULL, Array

VIX_Z_WINDOW, VIX_Z_MIN = 252, 20
FLOW_Z_WINDOW, FLOW_Z_MIN = 60, 10
Z_CLIP = 3.0
INDEX_WINDOW = 20
EVENT_FLAG_DAYS = 3
EVENT_HORIZON = 20
CRUDE_BINS = (60.0, 80.0, 100.0)


def series(table: Array, mask: Array, col: Array) -> tuple[Array, Array]:
    """Column ``col`` (int32 scalar, traced; -1 = absent) of ``table`` [T, M] -> (x [T], ok [T])."""
    if table.shape[1] == 0:
        return jnp.zeros(table.shape[0], jnp.float32), jnp.zeros(table.shape[0], bool)
    safe = jnp.maximum(col, 0)
    ok = mask[:, safe] & (col >= 0)
    return jnp.where(ok, table[:, safe], 0.0).astype(jnp.float32), ok


def named_series(table: Array, mask: Array, columns: Array, name: str) -> tuple[Array, Array]:
    """``series`` of the ``schema.MACRO_SERIES`` name ``name`` (``columns``: its column index)."""
    return series(table, mask, columns[MACRO_SERIES.index(name)])


def _pct_change(x: Array, ok: Array, k: int) -> tuple[Array, Array]:
    prev, prev_ok = lag(x, k), lag(ok, k, False)
    good = ok & prev_ok & (prev > 0)
    return jnp.where(good, safe_div(x, prev) - 1.0, 0.0), good


def _clip(x: Array, ok: Array, lo: float, hi: float) -> tuple[Array, Array]:
    return jnp.where(ok, jnp.clip(x, lo, hi), 0.0), ok


def index_features(bench_close: Array) -> tuple[Array, Array, Array]:
    """4-week index log return (clip ±0.3) and vol (20 log returns, ddof 1, ×√252, clip [0, 1])."""
    run = run_length(bench_close > 0)
    logc = jnp.log(jnp.where(bench_close > 0, bench_close, 1.0))
    ok = run >= INDEX_WINDOW + 1
    ret = jnp.where(ok, jnp.clip(logc - lag(logc, INDEX_WINDOW), -0.3, 0.3), 0.0)
    r1 = jnp.where(run >= 2, logc - lag(logc, 1), 0.0)
    std = jnp.sqrt(window_mean_var(r1, INDEX_WINDOW, ddof=1)[1])
    vol = jnp.where(ok, jnp.clip(std * math.sqrt(252.0), 0.0, 1.0), 0.0)
    return ret, vol, ok


def event_features(schedule: Array, known: Array) -> tuple[Array, Array, Array, Array]:
    """event_flag and days_to_event from the *published schedule* of event days.

    event_flag[t] = 1 if an event is scheduled on t+1..t+3 (mask: those days' schedule known,
    or an event found). days_to_event[t] = (first k in 1..20 with an event) / 20, 1 if none in
    the next 20 days; mask False unless every day up to the event (or all 20) is in the schedule.
    schedule, known [T] (1 on event days; known where the schedule covers the day).
    Returns ``(flag, flag_ok, days, days_ok)``, each [T].
    """
    num = schedule.shape[0]
    event = known & (schedule > 0.5)
    ahead = jnp.arange(num, dtype=jnp.int32)[:, None] + jnp.arange(1, EVENT_HORIZON + 1)[None, :]
    inside = ahead < num  # [T, H]: schedule days t+1..t+H
    ev = event[jnp.minimum(ahead, num - 1)] & inside
    kn = known[jnp.minimum(ahead, num - 1)] & inside
    flag = ev[:, :EVENT_FLAG_DAYS].any(axis=1)
    flag_ok = flag | kn[:, :EVENT_FLAG_DAYS].all(axis=1)
    found = ev.any(axis=1)
    first = jnp.argmax(ev, axis=1)  # index of the first scheduled event (k - 1)
    known_before = jnp.concatenate(
        [jnp.ones((num, 1), bool), jnp.cumprod(kn, axis=1).astype(bool)[:, :-1]], axis=1
    )  # [T, H]: all schedule days before this one are known
    found_ok = jnp.take_along_axis(known_before, first[:, None], axis=1)[:, 0]
    days_ok = jnp.where(found, found_ok, kn.all(axis=1))
    days = jnp.where(found, (first + 1).astype(jnp.float32) / EVENT_HORIZON, 1.0)
    return (
        jnp.where(flag_ok, flag.astype(jnp.float32), 0.0),
        flag_ok,
        jnp.where(days_ok, days, 0.0),
        days_ok,
    )


def macro_features(
    macro: Array,
    macro_mask: Array,
    columns: Array,
    bench_close: Array,
    breadth: tuple[Array, Array],
    regime_rule: Array,
    norm_window: int,
    norm_min_periods: int,
    levels: bool = False,
    hmm: bool = False,
) -> tuple[Array, Array]:
    """[T, M] series -> ([T, F_m] float32, [T, F_m] bool) in ``MACRO_FEATURES`` order, then
    with ``levels`` the six ``MACRO_LEVEL_FEATURES`` (``macro_level_features``), then with
    ``hmm`` the three ``MACRO_HMM_FEATURES`` (``features.hmm.regime_probabilities``): F_m 18,
    21, 24 or 27.

    ``columns`` int32 [len(MACRO_SERIES)]: the column of each ``schema.MACRO_SERIES`` name in
    ``macro``, -1 where the market lacks it (a traced argument: one compile for any layout).
    """

    def get(name: str) -> tuple[Array, Array]:
        return named_series(macro, macro_mask, columns, name)

    out: dict[str, tuple[Array, Array]] = {}
    zscored = (  # feature, series, window, min periods
        ("vix_z", "vix", VIX_Z_WINDOW, VIX_Z_MIN),
        ("fii_flow_z", "fii_flow", FLOW_Z_WINDOW, FLOW_Z_MIN),
        ("dii_flow_z", "dii_flow", FLOW_Z_WINDOW, FLOW_Z_MIN),
        ("credit_spread", "credit_spread", norm_window, norm_min_periods),
    )
    for window in sorted({z[2] for z in zscored}):  # one batched pass per window length
        group = [z for z in zscored if z[2] == window]
        cols = [get(z[1]) for z in group]
        minp = jnp.asarray([z[3] for z in group], jnp.int32)
        zv, zok = rolling_zscore(
            jnp.stack([x for x, _ in cols], 1),
            jnp.stack([o for _, o in cols], 1),
            window,
            minp,
            Z_CLIP,
            exact=True,  # levels (VIX ~ 15 ± 3, spreads ~ 1.5 ± 0.1): sums of squares would cancel
        )
        for i, z in enumerate(group):
            out[z[0]] = (zv[:, i], zok[:, i])
    vix, vix_ok = get("vix")
    out["vix_chg_1w"] = _clip(*_pct_change(vix, vix_ok, 5), -1.0, 1.0)
    pcr, pcr_ok = get("put_call_ratio")
    out["pcr"] = _clip(pcr - 1.0, pcr_ok, -1.0, 1.0)
    fx_chg, fx_ok = _pct_change(*get("usd_inr"), 20)
    out["usdinr_mom"] = _clip(10.0 * fx_chg, fx_ok, -1.0, 1.0)
    crude, crude_ok = get("crude")
    bins = sum((crude >= edge).astype(jnp.float32) for edge in CRUDE_BINS)
    out["crude_regime"] = (jnp.where(crude_ok, bins / 3.0, 0.0), crude_ok)
    rate, rate_ok = get("policy_rate")
    out["policy_rate"] = _clip((rate - 4.0) / 4.0, rate_ok, 0.0, 1.0)
    gsec, gsec_ok = get("gsec_10y")
    slope_ok = gsec_ok & rate_ok
    out["yield_slope"] = (
        jnp.where(slope_ok, jnp.clip(gsec - rate, -2.0, 4.0) / 4.0, 0.0),
        slope_ok,
    )
    ret4w, vol4w, idx_ok = index_features(bench_close)
    out["index_ret_4w"] = (ret4w, idx_ok)
    out["index_vol_4w"] = (vol4w, idx_ok)
    out["breadth"] = breadth
    out["fno_oi_chg"] = _clip(*_pct_change(*get("fno_oi"), 5), -1.0, 1.0)
    flag, flag_ok, days, days_ok = event_features(*get("event_flag"))
    out["event_flag"] = (flag, flag_ok)
    out["days_to_event"] = (days, days_ok)
    prev_ok = regime_rule >= 0
    signed = jnp.where(regime_rule == BULL, 1.0, jnp.where(regime_rule == BEAR, -1.0, 0.0))
    out["regime_prev"] = (jnp.where(prev_ok, signed, 0.0), prev_ok)
    zero = jnp.zeros(macro.shape[0], jnp.float32)
    out["portfolio_drawdown"] = (zero, zero > 0)
    values = jnp.stack([out[n][0] for n in MACRO_FEATURES], axis=1).astype(jnp.float32)
    masks = jnp.stack([out[n][1] for n in MACRO_FEATURES], axis=1)
    if levels:
        more, more_ok = macro_level_features(macro, macro_mask, columns, bench_close, norm_window)
        values, masks = jnp.concatenate([values, more], 1), jnp.concatenate([masks, more_ok], 1)
    if hmm:
        probs, probs_ok = regime_probabilities(bench_close)
        values = jnp.concatenate([values, probs], 1)
        masks = jnp.concatenate([masks, probs_ok], 1)
    return jnp.where(masks, values, 0.0), masks


LEVEL_MA_WINDOW, LEVEL_MA_MIN = 20, 10
LEVEL_Z_MIN = 60
INDEX_LONG_WINDOW = 60


def macro_level_features(
    macro: Array, macro_mask: Array, columns: Array, bench_close: Array, norm_window: int,
) -> tuple[Array, Array]:
    """[T, M] series -> ([T, 6], [T, 6] bool) in ``MACRO_LEVEL_FEATURES`` order.

    ``*_ma20_z``: the trailing 20-day mean of a series (at least 10 values), z-scored over the
    trailing ``norm_window`` days of that mean (at least 60; clip ±3): a regime lasting weeks
    moves it where a short z-score of the daily value has already adapted. ``pcr_ma20``: the
    20-day mean put/call ratio − 1 (clip ±1). ``index_ret_13w``: the index's 60-day log return
    (clip ±0.5). Row t uses days <= t only.
    """

    names = ("vix", "fii_flow", "dii_flow", "credit_spread", "put_call_ratio")
    cols = [named_series(macro, macro_mask, columns, n) for n in names]
    x = jnp.stack([c[0] for c in cols], 1)
    ok = jnp.stack([c[1] for c in cols], 1)
    n, mean, _ = rolling_moments(x, ok, LEVEL_MA_WINDOW)
    ma_ok = n >= LEVEL_MA_MIN
    z, z_ok = rolling_zscore(mean, ma_ok, norm_window, LEVEL_Z_MIN, Z_CLIP, exact=True)
    pcr_ma, pcr_ok = _clip(mean[:, 4] - 1.0, ma_ok[:, 4], -1.0, 1.0)
    run = run_length(bench_close > 0)
    logc = jnp.log(jnp.where(bench_close > 0, bench_close, 1.0))
    idx_ok = run >= INDEX_LONG_WINDOW + 1
    idx = jnp.where(idx_ok, jnp.clip(logc - lag(logc, INDEX_LONG_WINDOW), -0.5, 0.5), 0.0)
    values = jnp.concatenate([z[:, :4], pcr_ma[:, None], idx[:, None]], 1).astype(jnp.float32)
    masks = jnp.concatenate([z_ok[:, :4], pcr_ok[:, None], idx_ok[:, None]], 1)
    return jnp.where(masks, values, 0.0), masks
