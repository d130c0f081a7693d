"""``build_features``: MarketArrays -> FeatureSet, strictly causal, normalised and masked.

Row t of every input uses data indexed <= t only; the one exception is the *published* event
schedule (below). Unavailable inputs are 0 with mask False, never noise. "run" means
consecutive valid days of that stock/sector (a gap restarts every indicator). "z(w, m)" is the
trailing per-stock z-score over the last w days incl. t (sample std, >= m valid values; 0 on a
constant window), then clipped to ±cfg.clip; w, m = cfg.norm_window, cfg.norm_min_periods.

Stock features [T, N, 22] (STOCK_FEATURES); "norm" is the normalisation, "needs" availability:

| feature               | definition                                    | norm        | needs      |
|-----------------------|-----------------------------------------------|-------------|------------|
| ret_1d / 5d / 20d     | log(c_t / c_{t-k})                            | z(w, m)     | run >= k+1 |
| vol_20d               | std(20 log returns, ddof 1) · √252            | z(w, m)     | run >= 21  |
| rsi_14                | Wilder RSI-14 (SMA seed, α=1/14), (RSI-50)/50 | in [-1, 1]  | 14 changes |
| macd_hist             | (EMA12 − EMA26 − EMA9 of it) / c_t            | z(w, m)     | run >= 34  |
| bb_pctb               | (c − (SMA20 − 2σ)) / 4σ, population σ         | [-0.5, 1.5] | run >= 20  |
| volume_ratio          | v_t / mean(v_{t-20..t-1}) (excludes t)        | [0, 5]      | run >= 21  |
| delivery_pct          | delivery% / 100                               | [0, 1]      | its mask   |
| pe_z/pb_z/ev_ebitda_z | (x − sector median) / sector std, ddof 1      | ±3          | 2 peers    |
| roe                   | clip(roe, 0, 40) / 40                         | [0, 1]      | field mask |
| roce                  | clip(roce, 0, 50) / 50                        | [0, 1]      | field mask |
| leverage              | 1 / (1 + clip(D/E, 0, 5))                     | [1/6, 1]    | field mask |
| earnings_growth       | clip(g, ±50) / 50                             | [-1, 1]     | field mask |
| promoter_pledge       | 1 − clip(p, 0, 100) / 100                     | [0, 1]      | field mask |
| rel_strength_sector   | ret_20d − sector's 20-day log return          | z(w, m)     | both 21    |
| log_mcap              | cross-sectional z of log(market_cap)          | ±3          | 2 stocks   |
| free_float            | clip(ff, 0, 100) / 100                        | [0, 1]      | field mask |
| inst_holding_change   | clip(x, ±5) / 5                               | [-1, 1]     | field mask |
| sentiment             | clip(score, ±1)                               | [-1, 1]     | its mask   |

No stock feature uses open/high/low, so close-only tickers (``has_ohlc`` False) get all 22.

Macro features [T, 18] (MACRO_FEATURES); series by name from ``schema.MACRO_SERIES``:

| feature            | definition                                           | needs          |
|--------------------|------------------------------------------------------|----------------|
| vix_z              | trailing z of vix, window 252, >= 20 values, clip ±3 | vix            |
| vix_chg_1w         | clip(vix_t / vix_{t-5} − 1, ±1)                      | vix            |
| fii/dii_flow_z     | trailing z, window 60, >= 10 values, clip ±3         | fii/dii_flow   |
| pcr                | clip(put_call_ratio − 1, ±1)                         | put_call_ratio |
| usdinr_mom         | clip(10 · (fx_t / fx_{t-20} − 1), ±1)                | usd_inr        |
| crude_regime       | bins [0, 60, 80, 100, ∞) → 0..3, / 3                 | crude          |
| policy_rate        | clip((rate − 4) / 4, 0, 1)                           | policy_rate    |
| credit_spread      | trailing z(w, m) of the spread, clip ±3              | credit_spread  |
| yield_slope        | clip(gsec_10y − policy_rate, −2, 4) / 4              | both           |
| index_ret_4w       | log(bench_t / bench_{t-20}) = Σ 20 log returns, ±0.3 | 21 closes      |
| index_vol_4w       | std(20 log returns, ddof 1) · √252, clip [0, 1]      | 21 closes      |
| breadth            | share of stocks with a ret_20d whose ret_20d > 0     | >= 1 stock     |
| fno_oi_chg         | clip(oi_t / oi_{t-5} − 1, ±1)                        | fno_oi         |
| event_flag         | 1 if an event is scheduled on t+1..t+3               | the schedule   |
| days_to_event      | trading days to the next event (1..20) / 20; 1 if    | the schedule   |
|                    | none within 20 days                                  | up to it       |
| regime_prev        | regime_rule[t] as +1 Bull / −1 Bear / 0 Sideways     | a whole week   |
| portfolio_drawdown | 0, mask False: the environment fills it              | —              |

With ``features.macro_levels`` six more follow (MACRO_LEVEL_FEATURES, [T, 24] in all), and
with ``features.regime_hmm`` three last (MACRO_HMM_FEATURES: the filtered probabilities of a
3-state Gaussian HMM on the index's daily log returns, refitted every year on the days so far,
calm state first; ``features.hmm``):

| feature              | definition                                                   |
|----------------------|--------------------------------------------------------------|
| X_ma20_z             | m_t = mean of X over 20 days (>= 10 values); trailing z of m |
|                      | over ``norm_window`` days (>= 60 means), clip ±3; X = vix,   |
|                      | fii_flow, dii_flow, credit_spread                            |
| pcr_ma20             | clip(20-day mean of put_call_ratio − 1, ±1)                  |
| index_ret_13w        | log(bench_t / bench_{t-60}), clip ±0.5 (61 closes)           |

The event features are the one forward-looking input, and not look-ahead: the ``event_flag``
series is a schedule (policy meetings, budget, expiries) published ahead of time, so a decision
at t may know the event days after t. Nothing else about those days is read.

Sector features [T, S, 14] (SECTOR_FEATURES), on sector daily log returns log(1 + r), window
``cfg.corr_window`` (W) for the first 8 (the original's node statistics); all clipped ±cfg.clip;
``sector_mask`` is True only where every one of them is available:

| feature          | definition                                              |
|------------------|---------------------------------------------------------|
| mean_ret         | mean of W log returns · 252                             |
| std_ret          | std (ddof 1) · √252                                     |
| cum_ret          | sum of W log returns                                    |
| sharpe           | mean / std · √252 (0 if std = 0)                        |
| min_ret, max_ret | min, max daily log return · √252                        |
| frac_pos         | fraction of the W returns > 0                           |
| median_ret       | median · 252                                            |
| rel_strength_13w | sector 65-day pct change − benchmark 65-day pct change  |
| rotation_score   | rel_strength_13w_t − rel_strength_13w_{t-20}            |
| ret_1w, ret_4w   | sector_close pct change over 5 / 20 days                |
| vol_20d          | std(20 log returns, ddof 1) · √252                      |
| breadth          | fraction of member stocks with a positive 20-day return |

Adjacency [T, S, S]: trailing W-day Pearson |corr| of sector log returns, kept where
>= cfg.corr_threshold, self loops 1; a sector without W returns has only its self loop (so the
first W rows are the identity); padding sectors are all zero.

Labels: ``regime_rule`` and ``regime_label`` as in ``features/regime.py`` (0 Bull, 1 Bear,
2 Sideways, -1 unknown; thresholds ±cfg.regime_threshold). ``regime_label`` is a target.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.config import FeatureConfig
from hrl_sarp_jax.data import schema
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.features import fundamental as fund
from hrl_sarp_jax.features import regime
from hrl_sarp_jax.features import sector as sec
from hrl_sarp_jax.features import technical as tech
from hrl_sarp_jax.features.featureset import (
    SECTOR_FEATURES,
    STOCK_FEATURES,
    FeatureSet,
    macro_names_for_width,
)
from hrl_sarp_jax.features.macro import macro_features
from hrl_sarp_jax.features.rolling import rolling_zscore, run_length
from hrl_sarp_jax.types import Array

ZSCORED_STOCK_FEATURES = (
    "ret_1d",
    "ret_5d",
    "ret_20d",
    "vol_20d",
    "macd_hist",
    "rel_strength_sector",
)


def _stock_features(
    m: MarketArrays, cfg: FeatureConfig, fund_cols: Array
) -> tuple[Array, Array, Array, Array]:
    """-> (stock [T, N, 22], mask [T, N, 22], raw ret_20d [T, N], its availability)."""
    valid = m.stock_mask & m.stock_valid[None, :]
    run = run_length(valid)
    close = jnp.where(valid, m.close, 0.0)
    logc = tech.log_close(close, valid)
    f: dict[str, tuple[Array, Array]] = {}
    f["ret_1d"] = tech.log_return(logc, run, 1)
    f["ret_5d"] = tech.log_return(logc, run, 5)
    f["ret_20d"] = tech.log_return(logc, run, 20)
    f["vol_20d"] = tech.realised_vol(logc, run)
    rsi, rsi_ok, hist, hist_ok = tech.rsi_macd(close, valid)
    f["rsi_14"], f["macd_hist"] = (rsi, rsi_ok), (hist, hist_ok)
    f["bb_pctb"] = tech.bollinger_pctb(close, run)
    f["volume_ratio"] = tech.volume_ratio(m.volume, valid, run)
    f["delivery_pct"] = fund.bounded(m.delivery_pct, valid & m.delivery_mask, 0.0, 100.0, 100.0)

    def field(name: str) -> tuple[Array, Array]:
        k = fund_cols[schema.FUNDAMENTAL_FIELDS.index(name)]
        if m.fundamentals.shape[2] == 0:
            return jnp.zeros_like(close), jnp.zeros_like(valid)
        safe = jnp.maximum(k, 0)
        ok = valid & m.fundamentals_mask[:, :, safe] & (k >= 0)
        return jnp.where(ok, m.fundamentals[:, :, safe], 0.0), ok

    ratios = [field(n) for n in ("pe", "pb", "ev_ebitda")]
    z, z_ok = fund.sector_zscore(
        jnp.stack([r[0] for r in ratios], -1),
        jnp.stack([r[1] for r in ratios], -1),
        m.stock_sector,
        m.num_sectors,
    )
    for i, name in enumerate(("pe_z", "pb_z", "ev_ebitda_z")):
        f[name] = (z[..., i], z_ok[..., i])
    f["roe"] = fund.bounded(*field("roe"), 0.0, 40.0, 40.0)
    f["roce"] = fund.bounded(*field("roce"), 0.0, 50.0, 50.0)
    f["leverage"] = fund.leverage(*field("debt_to_equity"))
    f["earnings_growth"] = fund.bounded(*field("earnings_growth"), -50.0, 50.0, 50.0)
    f["promoter_pledge"] = fund.promoter_pledge(*field("promoter_pledge"))

    sector_ok = (m.sector_mask & m.sector_valid[None, :])[:, m.stock_sector]  # [T, N]
    sector_logc = tech.log_close(m.sector_close[:, m.stock_sector], sector_ok)
    sector_ret20, sector_ret20_ok = tech.log_return(sector_logc, run_length(sector_ok), 20)
    rs_ok = f["ret_20d"][1] & sector_ret20_ok
    f["rel_strength_sector"] = (jnp.where(rs_ok, f["ret_20d"][0] - sector_ret20, 0.0), rs_ok)
    f["log_mcap"] = fund.log_market_cap(m.market_cap, valid & m.market_cap_mask)
    f["free_float"] = fund.bounded(*field("free_float"), 0.0, 100.0, 100.0)
    f["inst_holding_change"] = fund.bounded(*field("inst_holding_change"), -5.0, 5.0, 5.0)
    f["sentiment"] = fund.bounded(m.sentiment, valid & m.sentiment_mask, -1.0, 1.0, 1.0)

    raw_ret20 = f["ret_20d"]
    zs = jnp.stack([f[n][0] for n in ZSCORED_STOCK_FEATURES], -1)
    zs_ok = jnp.stack([f[n][1] for n in ZSCORED_STOCK_FEATURES], -1)
    zv, zv_ok = rolling_zscore(zs, zs_ok, cfg.norm_window, cfg.norm_min_periods, cfg.clip)
    for i, name in enumerate(ZSCORED_STOCK_FEATURES):
        f[name] = (zv[..., i], zv_ok[..., i])

    values = jnp.stack([f[n][0] for n in STOCK_FEATURES], -1).astype(jnp.float32)
    masks = jnp.stack([f[n][1] for n in STOCK_FEATURES], -1) & valid[..., None]
    return jnp.where(masks, values, 0.0), masks, raw_ret20[0], raw_ret20[1]


def _sector_features(
    m: MarketArrays, cfg: FeatureConfig, ret20: Array, ret20_ok: Array
) -> tuple[Array, Array, Array, Array]:
    """-> (sector [T, S, 14], sector_mask [T, S], adjacency [T, S, S], sector log returns)."""
    ok = m.sector_mask & m.sector_valid[None, :]
    run = run_length(ok)
    logret, _ = sec.sector_log_returns(m.sector_returns, run)
    stats, stats_ok = sec.window_statistics(logret, run, cfg.corr_window)
    bench_run = run_length(m.benchmark_close > 0)
    rot, rot_ok = sec.rotation_features(
        jnp.where(ok, m.sector_close, 0.0), run, m.benchmark_close, bench_run
    )
    vol, vol_ok = sec.sector_vol(logret, run)
    breadth, breadth_ok = sec.sector_breadth(ret20, ret20_ok, m.stock_sector, m.num_sectors)
    values = jnp.concatenate([stats, rot, vol[..., None], breadth[..., None]], -1)
    mask = ok & stats_ok & rot_ok.all(-1) & vol_ok & breadth_ok
    values = jnp.where(mask[..., None], jnp.clip(values, -cfg.clip, cfg.clip), 0.0)
    adjacency = sec.correlation_adjacency(
        logret, run, m.sector_valid, cfg.corr_window, cfg.corr_threshold
    )
    return values.astype(jnp.float32), mask, adjacency, logret


@partial(jax.jit, static_argnames=("cfg",))
def _build_core(
    market: MarketArrays, cfg: FeatureConfig, macro_cols: Array, fund_cols: Array
) -> FeatureSet:
    stock, stock_mask, ret20, ret20_ok = _stock_features(market, cfg, fund_cols)
    sector, sector_mask, adjacency, _ = _sector_features(market, cfg, ret20, ret20_ok)
    rule = regime.regime_rule(market.benchmark_close, market.week_end, cfg.regime_threshold)
    label = regime.regime_label(
        market.benchmark_close,
        market.week_end,
        market.latent_regime.astype(jnp.int32),
        cfg.regime_threshold,
        cfg.regime_source,
    )
    n_ok = ret20_ok.sum(axis=1)
    up = (ret20_ok & (ret20 > 0)).sum(axis=1)
    breadth_ok = n_ok > 0
    breadth = jnp.where(breadth_ok, up / jnp.maximum(n_ok, 1), 0.0).astype(jnp.float32)
    macro, macro_mask = macro_features(
        market.macro,
        market.macro_mask,
        macro_cols,
        market.benchmark_close,
        (breadth, breadth_ok),
        rule,
        cfg.norm_window,
        cfg.norm_min_periods,
        cfg.macro_levels,
        cfg.regime_hmm,
    )
    return FeatureSet(
        stock=stock,
        stock_mask=stock_mask,
        macro=macro,
        macro_mask=macro_mask,
        sector=sector,
        sector_mask=sector_mask,
        adjacency=adjacency,
        regime_label=label,
        regime_rule=rule,
    )


def check_feature_config(cfg: FeatureConfig) -> None:
    """Raise ConfigError naming the ``features.*`` key that is out of range."""
    problems = []
    if cfg.norm_window < 2:
        problems.append(f"features.norm_window={cfg.norm_window} must be >= 2")
    if not 2 <= cfg.norm_min_periods <= cfg.norm_window:
        problems.append(
            f"features.norm_min_periods={cfg.norm_min_periods} must be in "
            f"[2, norm_window={cfg.norm_window}]"
        )
    if not cfg.clip > 0:
        problems.append(f"features.clip={cfg.clip} must be > 0")
    if not cfg.regime_threshold >= 0:
        problems.append(f"features.regime_threshold={cfg.regime_threshold} must be >= 0")
    if cfg.regime_source not in regime.REGIME_SOURCES:
        sources = ", ".join(regime.REGIME_SOURCES)
        problems.append(f"features.regime_source={cfg.regime_source!r} must be one of {sources}")
    if cfg.corr_window < 3:
        problems.append(f"features.corr_window={cfg.corr_window} must be >= 3")
    if not 0 <= cfg.corr_threshold <= 1:
        problems.append(f"features.corr_threshold={cfg.corr_threshold} must be in [0, 1]")
    if problems:
        raise ConfigError("; ".join(problems))


def column_index(names: Sequence[str], width: int, known: Sequence[str], what: str) -> np.ndarray:
    """int32 [len(known)]: the column of each ``known`` name in ``names``, -1 where absent."""
    names = tuple(names)
    if len(names) != width:
        raise DataError(
            f"{what}: the market has {width} columns but {len(names)} names were given "
            f"({', '.join(names) or 'none'}); pass the names from MarketMeta"
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{what}: column name '{dup[0]}' appears twice; names must be unique")
    return np.array([names.index(n) if n in names else -1 for n in known], np.int32)


def build_features(
    market: MarketArrays,
    cfg: FeatureConfig,
    macro_names: Sequence[str] = schema.MACRO_SERIES,
    fundamental_names: Sequence[str] = schema.FUNDAMENTAL_FIELDS,
) -> FeatureSet:
    """All causal model inputs and labels for ``market`` (definitions in this module's docstring).

    ``macro_names`` / ``fundamental_names`` name the columns of ``market.macro`` [T, M] and
    ``market.fundamentals`` [T, N, K] (``MarketMeta.macro_names`` / ``fundamental_names``);
    series the features need but the market lacks become 0 with mask False.
    One compile per (shapes, cfg); the column layout is a traced argument.
    """
    macro_cols, fund_cols = _columns(market, cfg, macro_names, fundamental_names)
    return _build_core(market, cfg, macro_cols, fund_cols)


@partial(jax.jit, static_argnames=("cfg",))
def _build_core_batch(markets: MarketArrays, cfg: FeatureConfig, macro_cols: Array,
                      fund_cols: Array) -> FeatureSet:
    return jax.vmap(lambda m: _build_core(m, cfg, macro_cols, fund_cols))(markets)


def build_features_batch(
    markets: MarketArrays,
    cfg: FeatureConfig,
    macro_names: Sequence[str] = schema.MACRO_SERIES,
    fundamental_names: Sequence[str] = schema.FUNDAMENTAL_FIELDS,
) -> FeatureSet:
    """``build_features`` of C markets of one shape stacked on a leading axis (every leaf
    [C, ...], the same column names), as one vmapped program -> FeatureSet with [C, ...]
    leaves. Equal to ``build_features`` per market within float32 rounding."""
    one = jax.tree.map(lambda x: x[0], markets)
    macro_cols, fund_cols = _columns(one, cfg, macro_names, fundamental_names)
    return _build_core_batch(markets, cfg, macro_cols, fund_cols)


def _columns(market: MarketArrays, cfg: FeatureConfig, macro_names: Sequence[str],
             fundamental_names: Sequence[str]) -> tuple[Array, Array]:
    """Checked config and the traced column layout (macro, fundamentals) of one market."""
    check_feature_config(cfg)
    macro_cols = column_index(macro_names, market.macro.shape[1], schema.MACRO_SERIES, "macro")
    fund_cols = column_index(
        fundamental_names, market.fundamentals.shape[2], schema.FUNDAMENTAL_FIELDS, "fundamentals"
    )
    if cfg.regime_source == "latent" and not bool(np.any(np.asarray(market.latent_regime) >= 0)):
        raise ConfigError(
            "features.regime_source='latent' but the market has no latent regime (real data); "
            "use features.regime_source=auto or rule"
        )
    return jnp.asarray(macro_cols), jnp.asarray(fund_cols)


def feature_summary(market: MarketArrays, meta: MarketMeta, feats: FeatureSet) -> str:
    """A short human-readable table: sizes, dates, per-feature availability and moments."""
    num_t, num_n, num_s = market.num_days, market.num_stocks, market.num_sectors
    stock_valid = np.asarray(market.stock_valid)
    sector_valid = np.asarray(market.sector_valid)
    dates = np.asarray(meta.dates)
    span = f"{dates[0]} .. {dates[-1]}" if len(dates) else "no dates"
    lines = [
        f"features: T={num_t} days ({span}), N={int(stock_valid.sum())}/{num_n} stocks, "
        f"S={int(sector_valid.sum())}/{num_s} sectors",
    ]

    def table(
        title: str, names: Sequence[str], values: np.ndarray, masks: np.ndarray, denom: np.ndarray
    ):
        lines.append(f"{title:<22s} {'avail%':>7s} {'mean':>9s} {'std':>9s}")
        for i, name in enumerate(names):
            v, mk = values[..., i], masks[..., i]
            sel = v[mk]
            avail = 100.0 * mk.sum() / max(int(denom.sum()), 1)
            mean = f"{sel.mean():9.3f}" if sel.size else f"{'-':>9s}"
            std = f"{sel.std():9.3f}" if sel.size else f"{'-':>9s}"
            lines.append(f"  {name:<20s} {avail:7.1f} {mean} {std}")

    stock_denom = np.broadcast_to(stock_valid[None, :], (num_t, num_n))
    table(
        "stock feature",
        STOCK_FEATURES,
        np.asarray(feats.stock),
        np.asarray(feats.stock_mask),
        stock_denom,
    )
    table(
        "macro feature",
        macro_names_for_width(np.shape(feats.macro)[-1]),
        np.asarray(feats.macro),
        np.asarray(feats.macro_mask),
        np.ones(num_t),
    )
    sector_mask = np.asarray(feats.sector_mask)
    table(
        "sector feature",
        SECTOR_FEATURES,
        np.asarray(feats.sector),
        np.broadcast_to(sector_mask[..., None], np.asarray(feats.sector).shape),
        np.broadcast_to(sector_valid[None, :], (num_t, num_s)),
    )
    for title, lab in (("regime_rule", feats.regime_rule), ("regime_label", feats.regime_label)):
        lab = np.asarray(lab)
        parts = [
            f"{n} {100.0 * np.mean(lab == i):.1f}%"
            for i, n in enumerate(("bull", "bear", "sideways"))
        ]
        lines.append(f"{title}: {', '.join(parts)}, unknown {100.0 * np.mean(lab < 0):.1f}%")
    adj = np.asarray(feats.adjacency)
    s_real = int(sector_valid.sum())
    if s_real > 1:
        real = sector_valid[:, None] & sector_valid[None, :] & ~np.eye(num_s, dtype=bool)
        density = (adj[:, real] > 0).mean()
        lines.append(
            f"adjacency: mean off-diagonal edge density {density:.3f} (|corr| >= threshold)"
        )
    return "\n".join(lines)
