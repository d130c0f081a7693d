"""The embedded default market: write a seeded synthetic NSE-like market folder, and measure it.

# HOST ONLY (not jittable)
The model itself is the pure JAX core in ``synthetic_core`` (vmappable over keys for domain
randomisation); calibration and tickers live in ``synthetic_presets``. This module adds the
calendar (XBOM sessions, MPC and budget days, quarterly publication dates), rebuilds prices in
float64 so that every circuit hit is exact, and writes the canonical files of ``schema``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from hrl_sarp_jax.config import REGIME_NAMES, DataConfig, SynthConfig
from hrl_sarp_jax.data import io, schema
from hrl_sarp_jax.data.calendar import NSE_CALENDAR, trading_days
from hrl_sarp_jax.data.loader import build_market_arrays
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.data.synthetic_core import (
    EVENT_BUDGET,
    EVENT_MPC,
    SynthArrays,
    SynthParams,
    SynthShocks,
    draw_shocks,
    generate,
    simulate,
)
from hrl_sarp_jax.data.synthetic_presets import (
    MEAN_DURATION,
    calibration,
    is_calibration,
    make_params,
    preset_sectors,
    preset_tickers,
    sector_drift_annual,
)
from hrl_sarp_jax.data.validate import MarketFrames
from hrl_sarp_jax.errors import ConfigError, DataError, ValidationError

GENERATOR_VERSION = 1
INDEX_BASE = 10_000.0
PUBLICATION_LAG_DAYS = 45
MPC_MONTHS = (2, 4, 6, 8, 10, 12)
MPC_DAY_OF_MONTH = 6
MIN_DAYS = 20

# Two programs rather than one: tests re-simulate edited shocks without another compile.
# XLA backend optimisation level 0 halves the compile time (seconds on CPU) for a ~30% slower
# run (a tenth of a second for the default market).
FAST_COMPILE = {"xla_backend_optimization_level": 0}
draw_shocks_jit = jax.jit(draw_shocks, static_argnums=2)
simulate_jit = jax.jit(simulate, compiler_options=FAST_COMPILE)

__all__ = [
    "SynthArrays",
    "SynthParams",
    "SynthShocks",
    "draw_shocks",
    "event_schedule",
    "generate",
    "generate_market",
    "make_params",
    "market_frames",
    "preset_hash",
    "publication_rows",
    "simulate",
    "simulate_jit",
    "stylized_facts",
    "synth_dates",
    "synthetic_market_arrays",
    "synthetic_markets",
    "synthetic_meta",
    "write_synthetic_market",
]


# --------------------------------------------------------------------------- calendar


def synth_dates(cfg: SynthConfig) -> np.ndarray:
    """XBOM trading days in [cfg.start, cfg.end] as datetime64[D]; ConfigError if unusable."""
    for name in ("start", "end"):
        try:
            pd.Timestamp(getattr(cfg, name))
        except (ValueError, TypeError):
            raise ConfigError(
                f"synth.{name} = {getattr(cfg, name)!r} is not a date (use YYYY-MM-DD)"
            ) from None
    if pd.Timestamp(cfg.end) < pd.Timestamp(cfg.start):
        raise ConfigError(f"synth.end {cfg.end} is before synth.start {cfg.start}")
    dates = trading_days(cfg.start, cfg.end, NSE_CALENDAR)
    if len(dates) < MIN_DAYS:
        raise ConfigError(
            f"synth.start..synth.end ({cfg.start}..{cfg.end}) has {len(dates)} trading days; "
            f"widen the range to at least {MIN_DAYS}"
        )
    return dates


def _first_on_or_after(dates: np.ndarray, day: np.datetime64) -> int | None:
    i = int(np.searchsorted(dates, day, side="left"))
    return i if i < len(dates) else None


def event_schedule(dates: np.ndarray) -> np.ndarray:
    """[T] int32 scheduled events, known in advance: 1 MPC (first session on or after the 6th
    of Feb/Apr/Jun/Aug/Oct/Dec), 2 Union Budget (first session on or after 1 February)."""
    dates = np.asarray(dates, "datetime64[D]")
    out = np.zeros(len(dates), np.int32)
    first_year, last_year = pd.Timestamp(dates[0]).year, pd.Timestamp(dates[-1]).year
    for year in range(first_year, last_year + 1):
        for month in MPC_MONTHS:
            i = _first_on_or_after(dates, np.datetime64(dt.date(year, month, MPC_DAY_OF_MONTH)))
            if i is not None and pd.Timestamp(dates[i]).month == month:
                out[i] = EVENT_MPC
        i = _first_on_or_after(dates, np.datetime64(dt.date(year, 2, 1)))
        if i is not None and pd.Timestamp(dates[i]).month == 2:
            out[i] = EVENT_BUDGET
    return out


def publication_rows(dates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quarterly results: (observation index [Q], publication index [Q]) into ``dates``.

    A quarter's figures are the state on its last session (<= quarter end) and become public on
    the first session >= quarter end + 45 days. Day 0 also publishes its own state, so every
    stock has fundamentals from the first day. publication >= observation always.
    """
    dates = np.asarray(dates, "datetime64[D]")
    obs, pub = [0], [0]
    first, last = pd.Timestamp(dates[0]), pd.Timestamp(dates[-1])
    for qe in pd.date_range(first, last, freq="QE"):
        o = int(np.searchsorted(dates, np.datetime64(qe.date()), side="right")) - 1
        p = _first_on_or_after(
            dates, np.datetime64((qe + pd.Timedelta(days=PUBLICATION_LAG_DAYS)).date())
        )
        if o >= 0 and p is not None:
            obs.append(o)
            pub.append(p)
    return np.asarray(obs, np.int64), np.asarray(pub, np.int64)


# --------------------------------------------------------------------------- frames


def _prices64(a: SynthArrays) -> dict[str, np.ndarray]:
    """Float64 OHLC [T, N] from the core's log returns, with circuit hits exactly at the band."""
    band = np.round(np.asarray(a.circuit_band, np.float64), 6)
    lock = np.asarray(a.circuit_lock)
    r = np.clip(np.expm1(np.asarray(a.log_return, np.float64)), -band, band)
    r = np.where(lock > 0, band, np.where(lock < 0, -band, r))
    price0 = np.round(np.asarray(a.price0, np.float64), 2)
    close = price0 * np.cumprod(1.0 + r, axis=0)
    prev = np.vstack([price0[None], close[:-1]])
    open_ = prev * np.exp(np.asarray(a.gap, np.float64))
    high = np.maximum(prev * np.exp(np.asarray(a.high_rel, np.float64)), np.maximum(open_, close))
    low = np.minimum(prev * np.exp(np.asarray(a.low_rel, np.float64)), np.minimum(open_, close))
    return {"open": open_, "high": high, "low": low, "close": close, "band": band}


def market_frames(
    a: SynthArrays, dates: np.ndarray, tickers: tuple[tuple[str, str], ...]
) -> dict[str, pd.DataFrame]:
    """The canonical tables (schema file name -> frame) of one generated market."""
    t_len, n = np.asarray(a.log_return).shape
    if len(dates) != t_len or len(tickers) != n:
        raise DataError(
            f"market_frames: arrays are [{t_len}, {n}] but got {len(dates)} dates and "
            f"{len(tickers)} tickers"
        )
    px = _prices64(a)
    shares = np.asarray(a.shares, np.float64)
    mcap = px["close"] * shares
    date_col = np.repeat(np.asarray(dates, "datetime64[D]"), n)
    names = np.array([t for t, _ in tickers], dtype=object)
    sectors = np.array([s for _, s in tickers], dtype=object)
    flat = lambda x: np.asarray(x, np.float64).reshape(-1)  # noqa: E731
    prices = pd.DataFrame(
        {
            "date": date_col,
            "ticker": np.tile(names, t_len),
            "sector": np.tile(sectors, t_len),
            "open": flat(px["open"]),
            "high": flat(px["high"]),
            "low": flat(px["low"]),
            "close": flat(px["close"]),
            "volume": flat(np.maximum(np.round(np.asarray(a.volume, np.float64)), 1.0)),
            "market_cap": flat(mcap),
            "circuit_band": np.tile(px["band"], t_len),
            "delivery_pct": flat(a.delivery_pct),
        }
    )
    macro = pd.DataFrame(np.asarray(a.macro, np.float64), columns=list(schema.MACRO_SERIES))
    macro.insert(0, "date", dates)
    obs, pub = publication_rows(dates)
    fund = np.asarray(a.fundamentals, np.float64)[obs]  # [Q, N, K]
    fundamentals = pd.DataFrame(
        fund.reshape(-1, fund.shape[-1]), columns=list(schema.FUNDAMENTAL_FIELDS)
    )
    fundamentals.insert(0, "ticker", np.tile(names, len(pub)))
    fundamentals.insert(0, "date", np.repeat(np.asarray(dates)[pub], n))
    index = pd.DataFrame({"date": dates, "close": INDEX_BASE * mcap.sum(axis=1) / mcap[0].sum()})
    sentiment = pd.DataFrame(
        {"date": date_col, "ticker": np.tile(names, t_len), "score": flat(a.sentiment)}
    )
    regimes = pd.DataFrame({"date": dates, "regime": np.asarray(a.regime).astype(np.int8)})
    return {
        schema.PRICES_FILE: prices,
        schema.MACRO_FILE: macro,
        schema.FUNDAMENTALS_FILE: fundamentals,
        schema.INDEX_FILE: index,
        schema.SENTIMENT_FILE: sentiment,
        schema.REGIMES_FILE: regimes,
    }


def synthetic_meta(cfg: SynthConfig, sectors: tuple[str, ...] | None = None) -> dict:
    """meta.json of the market ``cfg`` describes (generator settings, sector drift table)."""
    sectors = preset_sectors(cfg.preset) if sectors is None else sectors
    drift = sector_drift_annual(cfg.preset, cfg.seed, cfg.alpha_jitter)
    jitter = {"alpha_jitter": float(cfg.alpha_jitter)} if cfg.alpha_jitter else {}
    cal = calibration(cfg.preset) if is_calibration(cfg.preset) else None
    durations = MEAN_DURATION if cal is None else tuple(round(d, 4) for d in cal.mean_durations())
    return {
        "market": "synthetic-nse" if cal is None else "synthetic-calibrated",
        "currency": "INR" if cal is None else cal.currency,
        **({} if cal is None else {"calibration_sha256": cal.sha256}),
        "calendar": NSE_CALENDAR,
        "sectors": list(sectors),
        "synthetic": True,
        "seed": cfg.seed,
        "preset": cfg.preset,
        "stocks_per_sector": cfg.stocks_per_sector,
        "start": cfg.start,
        "end": cfg.end,
        "generator_version": GENERATOR_VERSION,
        **jitter,
        "regime_names": list(REGIME_NAMES),
        "regime_mean_duration_days": dict(zip(REGIME_NAMES, durations, strict=True)),
        "sector_drift_annual": {
            name: {s: round(float(v), 6) for s, v in zip(sectors, drift[r], strict=True)}
            for r, name in enumerate(REGIME_NAMES)
        },
    }


def _dispatch_market(key: jax.Array, params: SynthParams, dates: np.ndarray) -> SynthArrays:
    """``generate_market``'s programs, dispatched: device arrays, computed asynchronously."""
    event_day = jnp.asarray(event_schedule(dates))
    shocks = draw_shocks_jit(key, params, len(dates))
    return simulate_jit(params, shocks, event_day)


def generate_market(key: jax.Array, params: SynthParams, dates: np.ndarray) -> SynthArrays:
    """One market on ``dates`` (host arrays), through the shared jitted programs."""
    return jax.device_get(_dispatch_market(key, params, dates))


def _check_seed(seed: object, what: str = "synth.seed") -> None:
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        # larger seeds would silently alias smaller ones in a 32-bit jax.random.key
        raise ConfigError(f"{what} must be an integer in [0, 2**32), got {seed!r}")


def preset_hash(cfg: SynthConfig) -> str:
    """sha256 of the generator's parameters for ``cfg`` (preset, stocks per sector) and its
    version: two evaluations on markets with equal hashes and seeds saw the same process.
    A calibration counts by its file's content (its universe included), not its path."""
    jitter = f":alpha_jitter={cfg.alpha_jitter!r}" if cfg.alpha_jitter else ""
    name = f"calibration={calibration(cfg.preset).sha256}" if is_calibration(cfg.preset) \
        else cfg.preset
    h = hashlib.sha256(f"hrl-sarp-synth-v{GENERATOR_VERSION}:{name}:"
                       f"{cfg.stocks_per_sector}:{cfg.start}:{cfg.end}{jitter}".encode())
    for leaf in jax.tree.leaves(make_params(cfg.preset, cfg.stocks_per_sector)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


GENERATOR_KEYS = ("preset", "stocks_per_sector", "start", "end", "alpha_jitter")
"""The generator settings a run's market record (run.json ``market``) carries besides the seed."""


def generator_of(record: object, base: SynthConfig) -> SynthConfig | None:
    """``base`` with the generator settings of a run's market record when that market was
    generated (``data.io.market_identity``), else None (a real market, or no record)."""
    if not (isinstance(record, dict) and record.get("synthetic")):
        return None
    keep = {k: record[k] for k in GENERATOR_KEYS if record.get(k) is not None}
    return dataclasses.replace(base, **keep)


def synthetic_markets(cfg: SynthConfig, data_cfg: DataConfig, seeds: list[int]
                      ) -> Iterator[tuple[int, MarketArrays, MarketMeta]]:
    """(seed, arrays, meta) of the market ``write_synthetic_market`` writes for each seed of
    ``seeds`` (``cfg`` gives everything else), built in memory: bit-identical to loading that
    folder. Each market goes through the same compiled generator as ``data synth`` (a
    vmapped generator is a different program whose float32 rounding grows through the
    GARCH/AR(1) recursions to 1e-3 relative in some macro series)."""
    for s in seeds:
        _check_seed(s, "market seed")
    dates = synth_dates(cfg)
    shared = make_params(cfg.preset, cfg.stocks_per_sector)

    def dispatch(s: int) -> SynthArrays:
        params = (make_params(cfg.preset, cfg.stocks_per_sector, s, cfg.alpha_jitter)
                  if cfg.alpha_jitter else shared)
        return _dispatch_market(jax.random.key(s), params, dates)

    # the next market simulates on the device while this one's tables are built on the host
    pending = dispatch(int(seeds[0])) if len(seeds) else None
    for i, s in enumerate(seeds):
        arrays = pending
        pending = dispatch(int(seeds[i + 1])) if i + 1 < len(seeds) else None
        one = dataclasses.replace(cfg, seed=int(s))
        yield (int(s), *synthetic_market_arrays(jax.device_get(arrays), one, data_cfg, dates))


def synthetic_market_arrays(a: SynthArrays, cfg: SynthConfig, data_cfg: DataConfig,
                            dates: np.ndarray) -> tuple[MarketArrays, MarketMeta]:
    """One generated market (``a`` from ``generate_market``, ``cfg.seed`` its seed) as the loader
    builds it from the folder ``write_synthetic_market`` writes, bit for bit: the same tables
    and ``build_market_arrays``, without the Parquet bytes and without the validation's pandas
    work (``_generated_frames``: the generator's tables are valid by construction)."""
    if len(dates) < data_cfg.min_history_days:
        raise ValidationError([
            f"{schema.PRICES_FILE}: column 'date': only {len(dates)} trading days of history, "
            f"fewer than data.min_history_days={data_cfg.min_history_days} -> generate a longer "
            "market (synth.start / synth.end) or lower data.min_history_days"])
    tables = market_frames(a, dates, preset_tickers(cfg.preset, cfg.stocks_per_sector))
    meta = json.loads(json.dumps(synthetic_meta(cfg), default=str))
    return build_market_arrays(_generated_frames(tables, meta), data_cfg,
                               source=f"synthetic seed {cfg.seed}")


def _generated_frames(tables: dict[str, pd.DataFrame], meta: dict) -> MarketFrames:
    """The frames ``check_market`` returns for ``market_frames``' tables written (dates as
    datetime64[ns], the price column the close: the generator writes no ``adj_close``), built
    directly. Equal to validating the written folder, as
    ``test_markets_in_memory_are_the_written_folder_loaded`` checks bit for bit."""
    def dated(name: str) -> pd.DataFrame:
        df = tables[name].reset_index(drop=True)
        return df.assign(date=np.asarray(df["date"], "datetime64[D]").astype("datetime64[ns]"))

    prices = dated(schema.PRICES_FILE)
    prices["price"] = prices["close"]
    return MarketFrames(
        meta=meta, calendar=meta["calendar"], sector_order=list(dict.fromkeys(meta["sectors"])),
        prices=prices, macro=dated(schema.MACRO_FILE), index=dated(schema.INDEX_FILE),
        fundamentals=dated(schema.FUNDAMENTALS_FILE), sentiment=dated(schema.SENTIMENT_FILE),
        regimes=dated(schema.REGIMES_FILE))


def write_synthetic_market(out_dir: Path, cfg: SynthConfig) -> Path:
    """Generate the market described by ``cfg`` and write it as a canonical folder.

    Same cfg (seed included) -> byte-identical files. Returns ``out_dir``.
    """
    _check_seed(cfg.seed)
    sectors = preset_sectors(cfg.preset)
    tickers = preset_tickers(cfg.preset, cfg.stocks_per_sector)
    dates = synth_dates(cfg)
    params = make_params(cfg.preset, cfg.stocks_per_sector, cfg.seed, cfg.alpha_jitter)
    arrays = generate_market(jax.random.key(cfg.seed), params, dates)
    return io.write_market(
        Path(out_dir), market_frames(arrays, dates, tickers), synthetic_meta(cfg, sectors)
    )


# --------------------------------------------------------------------------- stylized facts


def _sharpe(r: np.ndarray) -> float:
    sd = r.std(ddof=1)
    return float(r.mean() / sd * np.sqrt(252.0)) if sd > 0 else 0.0


def _run_lengths(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value of each run, length of each run) of a 1-D array."""
    change = np.flatnonzero(np.diff(x)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(x)]])
    return x[starts], ends - starts


def _autocorr(x: np.ndarray, lag: int) -> np.ndarray:
    """Per-column Pearson autocorrelation at ``lag`` of x [T, N] -> [N]."""
    a, b = x[lag:] - x[lag:].mean(0), x[:-lag] - x[:-lag].mean(0)
    return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))


def stylized_facts(market_dir: Path) -> dict[str, float | int]:
    """Stylized facts of a written synthetic market, from its files (pandas/NumPy only).

    Kurtosis is raw Pearson (normal = 3), mean over stocks. Sharpe ratios are daily,
    annualised by sqrt(252), without costs or risk-free rate. The oracle holds, over each day
    t -> t+1, equal weights in the top-k sectors (by meta's ``sector_drift_annual``) of the
    latent regime of day t+1, equal weights within each sector; k = min(3, max(1, S // 3)).
    """
    market_dir = Path(market_dir)
    meta = io.read_meta(market_dir)
    if "sector_drift_annual" not in meta or not (market_dir / schema.REGIMES_FILE).is_file():
        raise DataError(
            f"{market_dir}: stylized_facts needs a synthetic market (meta.json with "
            "sector_drift_annual and regimes.parquet); write one with `hrl-sarp data synth`"
        )
    prices = io.read_table(market_dir / schema.PRICES_FILE)
    order = list(dict.fromkeys(prices["ticker"]))
    close = prices.pivot(index="date", columns="ticker", values="close")[order].sort_index()
    first = prices.drop_duplicates("ticker").set_index("ticker").loc[order]
    ret = close.pct_change().to_numpy()[1:]  # [T-1, N]
    sectors = list(meta["sectors"])
    sec_id = np.array([sectors.index(s) for s in first["sector"]])
    regimes = io.read_table(market_dir / schema.REGIMES_FILE).sort_values("date")
    regime = regimes["regime"].to_numpy().astype(np.int64)

    dev = ret - ret.mean(0)
    kurt = (dev**4).mean(0) / (dev**2).mean(0) ** 2
    corr = np.corrcoef(ret.T)
    iu = np.triu_indices(len(order), k=1)
    same = sec_id[iu[0]] == sec_id[iu[1]]
    pair_corr = corr[iu]

    ew = ret.mean(1)
    sector_ret = np.stack([ret[:, sec_id == s].mean(1) for s in range(len(sectors))], axis=1)
    drift = np.array(
        [[meta["sector_drift_annual"][name][s] for s in sectors] for name in REGIME_NAMES]
    )
    k = min(3, max(1, len(sectors) // 3))
    top = np.argsort(-drift, axis=1, kind="stable")[:, :k]  # [3, k]
    oracle = np.take_along_axis(sector_ret, top[regime[1:]], axis=1).mean(1)

    band = first["circuit_band"].to_numpy()
    hits = np.abs(ret) >= band[None, :] - 1e-9
    facts: dict[str, float | int] = {
        "num_days": int(close.shape[0]),
        "num_stocks": int(close.shape[1]),
        "num_sectors": len(sectors),
        "daily_return_kurtosis": float(kurt.mean()),
    }
    for lag in range(1, 6):
        facts[f"abs_return_autocorr_lag{lag}"] = float(_autocorr(np.abs(ret), lag).mean())
    facts["within_sector_corr"] = float(pair_corr[same].mean()) if same.any() else float("nan")
    facts["cross_sector_corr"] = float(pair_corr[~same].mean()) if (~same).any() else float("nan")
    values, lengths = _run_lengths(regime)
    for r, name in enumerate(REGIME_NAMES):
        facts[f"regime_mean_duration_days_{name}"] = (
            float(lengths[values == r].mean()) if (values == r).any() else 0.0
        )
    for r, name in enumerate(REGIME_NAMES):
        facts[f"regime_share_{name}"] = float((regime == r).mean())
    facts["equal_weight_sharpe"] = _sharpe(ew)
    facts["oracle_top_k"] = k
    facts["oracle_sharpe"] = _sharpe(oracle)
    facts["oracle_minus_equal_weight_sharpe"] = (
        facts["oracle_sharpe"] - facts["equal_weight_sharpe"]
    )
    facts["circuit_hit_share"] = float(hits.mean())
    return facts
