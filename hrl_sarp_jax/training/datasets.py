"""Supervised samples for Phases 1 and 2, split by date, targets from the FOLLOWING period.

# HOST ONLY (not jittable): index selection has data-dependent sizes; the arrays it returns
# are device arrays consumed by the jitted training programs.

Splits (``cfg.data``): train = days < ``val_start``, validation = ``val_start`` <= days <
``test_start``, test = the rest (never read here). A sample at decision day t belongs to a
split only if its whole target horizon lies inside the split too (an embargo): the last
training sample's target does not peek into the validation period, and no validation target
reads the test period.

Phase 1 (Macro), one sample per calendar week end t with a known next-period regime:
  inputs   ``networks.inputs.macro_inputs`` at t with a fixed, honest "current portfolio":
           equal weight over the valid sectors scaled by 1 - min_cash, cash = min_cash,
           drawdown 0 (the pre-training policy has no portfolio of its own yet).
  targets  regime_label[t] (the regime of (t, next week end]); next-week sector returns
           R_s = prod_{d in (t, w']} (1 + r_{d,s}) - 1 with w' the next week end; the oracle
           allocation softmax(tau * R) over the sectors valid at t.
Phase 2 (Micro), one sample per trading day t (goals are drawn per epoch by the trainer):
  inputs   stock features at t, tradable mask at t, the sector map, current weights = equal
           weight over tradable stocks scaled by 1 - min_cash (same convention as Phase 1).
  targets  stock returns over the next H = ``target_horizon`` days, R_i = prod_{k=1..H}
           (1 + r_{t+k,i}) - 1 (H = 1: next day); ``within``: inside each sector, softmax(tau *
           R) over the sector's tradable stocks at t (sums to 1 per sector). A goal g turns it
           into the goal-consistent target g_{s(i)} * within_i (sums to g_s over sector s).
           ``next_returns`` (the reported realised return) stays r_{t+1}.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrl_sarp_jax.config import Config, DataConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.networks.common import masked_softmax
from hrl_sarp_jax.networks.inputs import MacroInputs, macro_inputs
from hrl_sarp_jax.types import NUM_REGIMES, Array


@dataclass(frozen=True)
class Split:
    """Day-index bounds: train [0, val_start), validation [val_start, test_start)."""

    val_start: int
    test_start: int


def split_days(dates: np.ndarray, cfg: DataConfig) -> Split:
    """Split day indices by ``cfg.val_start`` / ``cfg.test_start`` (ConfigError if unusable)."""
    try:
        val = np.datetime64(cfg.val_start, "D")
        test = np.datetime64(cfg.test_start, "D")
    except ValueError as exc:
        raise ConfigError(f"data.val_start / data.test_start must be YYYY-MM-DD dates ({exc})") \
            from None
    if not val < test:
        raise ConfigError(f"data.val_start={cfg.val_start} must be before data.test_start="
                          f"{cfg.test_start}")
    d = np.asarray(dates).astype("datetime64[D]")
    split = Split(int(np.searchsorted(d, val)), int(np.searchsorted(d, test)))
    if split.val_start == 0:
        raise ConfigError(f"data.val_start={cfg.val_start} leaves no training days (the market "
                          f"starts {d[0]}); set it later")
    if split.test_start == split.val_start:
        raise ConfigError(f"no trading days between data.val_start={cfg.val_start} and "
                          f"data.test_start={cfg.test_start}; widen the validation split")
    return split


def next_week_end_np(week_end: np.ndarray) -> np.ndarray:
    """int [T]: index of the first week end strictly after t, -1 if none."""
    we = np.asarray(week_end, bool)
    num = we.shape[0]
    idx = np.where(we, np.arange(num), num)
    first_at_or_after = np.minimum.accumulate(idx[::-1])[::-1]
    nxt = np.r_[first_at_or_after[1:], num]
    return np.where(nxt < num, nxt, -1)


def compound_returns(returns: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[B, X] simple returns compounded over days (start, end] of ``returns`` [T, X] (float64)."""
    logr = np.log1p(np.asarray(returns, np.float64))
    cum = np.concatenate([np.zeros((1, logr.shape[1])), np.cumsum(logr, axis=0)], axis=0)
    # cum[k] = sum of logr[0..k-1]; days start+1..end -> cum[end + 1] - cum[start + 1]
    return np.expm1(cum[np.asarray(end) + 1] - cum[np.asarray(start) + 1])


def _in_split(t: np.ndarray, horizon_end: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (t >= lo) & (horizon_end >= 0) & (horizon_end < hi)


# --------------------------------------------------------------------------- Phase 1


@struct.dataclass
class MacroSamples:
    """Phase-1 samples, leading axis B (weeks)."""

    inputs: MacroInputs      # leaves [B, ...]
    regime: Array            # [B] int32 target regime of (t, next week end]
    alloc_target: Array      # [B, S] oracle allocation softmax(tau * R) over valid sectors
    next_returns: Array      # [B, S] next-week compound sector returns R (0 where invalid)
    persistence: Array       # [B] int32 regime_rule[t] (the week just ended), -1 unknown
    day: Array               # [B] int32 decision day t

    @property
    def size(self) -> int:
        return int(self.regime.shape[0])


def macro_samples(
    market: MarketArrays, feats: FeatureSet, days: np.ndarray, alloc_temperature: float,
    min_cash: float,
) -> MacroSamples:
    """Phase-1 samples at decision days ``days`` (week ends with a next week end)."""
    days = np.asarray(days, np.int64)
    nxt = next_week_end_np(np.asarray(market.week_end))[days]
    if np.any(nxt < 0):
        raise DataError("macro_samples: every decision day needs a following week end")
    mask = np.asarray(feats.sector_mask)[days] & np.asarray(market.sector_valid)[None, :]
    nxt_ret = compound_returns(np.asarray(market.sector_returns), days, nxt)
    nxt_ret = np.where(mask, nxt_ret, 0.0).astype(np.float32)
    n_valid = np.maximum(mask.sum(1, keepdims=True), 1)
    current = np.where(mask, (1.0 - min_cash) / n_valid, 0.0).astype(np.float32)
    # the softmax runs op by op as it always has: compiled into one program its exp rounds
    # differently (1e-7), which would move every later phase's floats
    target = jax.vmap(masked_softmax)(alloc_temperature * jnp.asarray(nxt_ret), jnp.asarray(mask))
    return _macro_sample_arrays(
        feats.macro, feats.sector, feats.adjacency, feats.regime_label, feats.regime_rule,
        np.asarray(days, np.int32), nxt_ret, mask, current, min_cash=float(min_cash)
    ).replace(alloc_target=target.astype(jnp.float32))


@partial(jax.jit, static_argnames="min_cash")
def _macro_sample_arrays(macro: Array, sector: Array, adjacency: Array, regime_label: Array,
                         regime_rule: Array, idx: Array, nxt_ret: Array, mask: Array,
                         current: Array, *, min_cash: float) -> MacroSamples:
    """The gathers of ``macro_samples`` as one program (B = len(idx); the allocation target is
    left 0): compiled once per sample count, where op by op it compiled each op."""
    inputs = jax.vmap(macro_inputs)(
        macro[idx], sector[idx], adjacency[idx], mask, current,
        jnp.full(idx.shape[0], min_cash, jnp.float32), jnp.zeros(idx.shape[0], jnp.float32),
    )
    return MacroSamples(
        inputs=inputs,
        regime=regime_label[idx].astype(jnp.int32),
        alloc_target=jnp.zeros_like(nxt_ret),
        next_returns=nxt_ret,
        persistence=regime_rule[idx].astype(jnp.int32),
        day=idx.astype(jnp.int32),
    )


ALLOC_TARGETS = ("returns", "regime_table")
"""``train.macro_pretrain.alloc_target`` choices (``config.PretrainConfig``)."""


# HOST ONLY
def regime_table(samples: MacroSamples) -> np.ndarray:
    """[3, S] float64 mean next-week compound return of each sector over the samples labelled
    with each regime (over the samples where the sector is valid; the all-label mean for a
    regime or sector without any)."""
    r = np.asarray(samples.next_returns, np.float64)
    mask = np.asarray(samples.inputs.sector_mask, bool)
    lab = np.asarray(samples.regime)
    overall = np.where(mask, r, 0).sum(0) / np.maximum(mask.sum(0), 1)
    out = np.tile(overall, (NUM_REGIMES, 1))
    for k in range(NUM_REGIMES):
        rows = lab == k
        n = mask[rows].sum(0)
        out[k] = np.where(n > 0, np.where(mask[rows], r[rows], 0).sum(0) / np.maximum(n, 1),
                          overall)
    return out


def with_table_target(samples: MacroSamples, table: np.ndarray, temperature: float
                      ) -> MacroSamples:
    """``samples`` whose allocation target is softmax(temperature · table[label]) over the
    sectors valid at t (``train.macro_pretrain.alloc_target: regime_table``)."""
    rows = jnp.asarray(table, jnp.float32)[jnp.clip(samples.regime, 0, NUM_REGIMES - 1)]
    target = jax.vmap(masked_softmax)(float(temperature) * rows, samples.inputs.sector_mask)
    return samples.replace(alloc_target=target.astype(jnp.float32))


def macro_split_days(market: MarketArrays, feats: FeatureSet, split: Split
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train days, val days): week ends t with a known label, a valid sector and the whole
    target week inside the split."""
    we = np.asarray(market.week_end)
    t = np.arange(we.shape[0])
    nxt = next_week_end_np(we)
    ok = we & (np.asarray(feats.regime_label) >= 0) & (nxt >= 0)
    ok &= (np.asarray(feats.sector_mask) & np.asarray(market.sector_valid)[None, :]).any(1)
    train = ok & _in_split(t, nxt, 0, split.val_start)
    val = ok & _in_split(t, nxt, split.val_start, split.test_start)
    return np.flatnonzero(train), np.flatnonzero(val)


def macro_datasets(market: MarketArrays, meta: MarketMeta, feats: FeatureSet, cfg: Config
                   ) -> tuple[MacroSamples, MacroSamples]:
    """(train, val) Phase-1 samples for ``cfg`` (DataError naming the split if one is empty)."""
    split = split_days(meta.dates, cfg.data)
    train_days, val_days = macro_split_days(market, feats, split)
    _require(train_days, "training", "weeks", cfg, meta)
    _require(val_days, "validation", "weeks", cfg, meta)
    p = cfg.train.macro_pretrain
    mc = cfg.env.constraints.min_cash
    return (macro_samples(market, feats, train_days, p.alloc_temperature, mc),
            macro_samples(market, feats, val_days, p.alloc_temperature, mc))


def _require(days: np.ndarray, what: str, unit: str, cfg: Config, meta: MarketMeta) -> None:
    if len(days) == 0:
        d = np.asarray(meta.dates)
        raise DataError(
            f"no {what} {unit} with labels and a full target period (market {d[0]}..{d[-1]}, "
            f"data.val_start={cfg.data.val_start}, data.test_start={cfg.data.test_start}); "
            f"move the split dates so each split holds several weeks")


# --------------------------------------------------------------------------- Phase 2


@struct.dataclass
class MicroSamples:
    """Phase-2 samples, leading axis B (days). Goals are drawn by the trainer."""

    stock: Array             # [B, N, 22] stock features at t
    stock_mask: Array        # [B, N] bool tradable at t
    stock_sector: Array      # [B, N] int32 (the sector map, repeated per sample)
    current_weights: Array   # [B, N] equal weight over tradable stocks * (1 - min_cash)
    within: Array            # [B, N] softmax(tau * R_{t,H}) inside each sector (1 per sector)
    next_returns: Array      # [B, N] r_{t+1} (0 where not tradable at t)
    sector_active: Array     # [B, S] bool: the sector has a tradable stock at t
    day: Array               # [B] int32
    forward: Array | None = None
    """[B, N] R_{t,H} (0 where not tradable at t), for a target fitted over the pooled
    samples (``fit_within_forecast``); the trainer drops it (None: no leaf)."""

    @property
    def size(self) -> int:
        return int(self.day.shape[0])


def within_sector_softmax(scores: Array, mask: Array, stock_sector: Array, num_sectors: int
                          ) -> Array:
    """[N]: softmax of ``scores`` [N] inside each sector over ``mask``-ed stocks (0 elsewhere)."""
    onehot = (stock_sector[:, None] == jnp.arange(num_sectors)[None, :]) & mask[:, None]  # [N, S]
    peak = jnp.max(jnp.where(onehot, scores[:, None], -jnp.inf), axis=0)  # [S]
    peak = jnp.where(jnp.isfinite(peak), peak, 0.0)
    e = jnp.where(mask, jnp.exp(scores - peak[stock_sector]), 0.0)
    total = jnp.sum(jnp.where(onehot, e[:, None], 0.0), axis=0)  # [S]
    return jnp.where(mask, e / jnp.where(total > 0, total, 1.0)[stock_sector], 0.0)


def micro_samples(market: MarketArrays, feats: FeatureSet, days: np.ndarray,
                  alloc_temperature: float, min_cash: float, horizon: int = 1) -> MicroSamples:
    """Phase-2 samples at decision days ``days`` (each needs day t + horizon in the data)."""
    days = np.asarray(days, np.int64)
    if horizon < 1:
        raise DataError(f"micro_samples: target horizon must be >= 1 day, got {horizon}")
    if np.any(days + horizon >= market.num_days):
        raise DataError(f"micro_samples: every decision day needs {horizon} following trading "
                        "day(s)")
    samples = _micro_sample_arrays(
        market.stock_mask, market.stock_valid, market.returns, market.stock_sector, feats.stock,
        np.asarray(days, np.int32), num_sectors=int(market.num_sectors), min_cash=float(min_cash))
    # the targets op by op, as always (see macro_samples)
    idx = jnp.asarray(days)
    ahead = idx[:, None] + jnp.arange(1, horizon + 1)[None, :]  # [B, H]
    compound = jnp.prod(1.0 + market.returns[ahead], axis=1) - 1.0  # [B, N]
    score = jnp.where(samples.stock_mask, compound, 0.0).astype(jnp.float32)
    within = jax.vmap(within_sector_softmax, in_axes=(0, 0, None, None))(
        alloc_temperature * score, samples.stock_mask,
        jnp.asarray(market.stock_sector, jnp.int32), market.num_sectors)
    return samples.replace(within=within.astype(jnp.float32), forward=score)


MICRO_TARGETS = ("returns", "fitted")
"""``train.micro_pretrain.alloc_target`` choices (``config.PretrainConfig``)."""


@struct.dataclass
class ForecastFit:
    """A pooled linear forecast of a stock's H-day return in excess of its sector's
    (``fit_within_forecast``): score = ((x - mean) / scale) @ coef, x the [F] stock features."""

    mean: Array   # [F]
    scale: Array  # [F]
    coef: Array   # [F]
    score_sd: Array  # [] SD of the training scores around their (day, sector) means


# HOST ONLY
def _within_demeaned(x: np.ndarray, mask: np.ndarray, sector: np.ndarray, num_sectors: int
                     ) -> np.ndarray:
    """x [B, N, ...] minus the mean over the masked stocks of the same day and sector (0 where
    masked out)."""
    onehot = (sector[None, :, None] == np.arange(num_sectors)[None, None, :]) & mask[..., None]
    w = onehot.astype(np.float64)  # [B, N, S]
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    means = np.einsum("bns,bnf->bsf", w, flat) / np.maximum(w.sum(1), 1.0)[..., None]
    out = flat - np.einsum("bns,bsf->bnf", w, means)
    return np.where(mask[..., None], out, 0.0).reshape(x.shape)


# HOST ONLY
def fit_within_forecast(samples: MicroSamples, num_sectors: int, ridge: float = 1e-3,
                        columns: tuple[int, ...] | None = None) -> ForecastFit:
    """Ridge regression (float64) of each tradable stock's H-day return in excess of its
    sector's mean (``samples.forward``), on its features in excess of the sector's mean,
    standardised by their pooled SD, over every (day, stock) of ``samples``; ``ridge`` times
    the number of rows is added to the normal equations' diagonal. Demeaning within each day
    and sector leaves only what tells names of one sector apart, which is all the Micro's
    within-sector target uses. ``columns``: the feature indices the forecast may use (None:
    all; the others get coefficient 0)."""
    if samples.forward is None:
        raise ValueError("fit_within_forecast: samples carry no forward returns")
    mask = np.asarray(samples.stock_mask, bool)
    sector = np.asarray(samples.stock_sector[0], np.int64)
    x = _within_demeaned(np.asarray(samples.stock, np.float64), mask, sector, num_sectors)
    y = _within_demeaned(np.asarray(samples.forward, np.float64), mask, sector, num_sectors)
    rows = x[mask]                                   # [M, F]
    raw = np.asarray(samples.stock, np.float64)[mask]
    mean, scale = raw.mean(0), rows.std(0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = rows / scale
    use = np.arange(z.shape[1]) if columns is None else np.asarray(columns, np.int64)
    zu = z[:, use]
    gram = zu.T @ zu + ridge * zu.shape[0] * np.eye(use.size)
    coef = np.zeros(z.shape[1])
    coef[use] = np.linalg.solve(gram, zu.T @ y[mask])
    fitted = z @ coef
    return ForecastFit(mean=jnp.asarray(mean, jnp.float32), scale=jnp.asarray(scale, jnp.float32),
                       coef=jnp.asarray(coef, jnp.float32),
                       score_sd=jnp.asarray(max(float(fitted.std()), 1e-12), jnp.float32))


def with_forecast_target(samples: MicroSamples, fit: ForecastFit, temperature: float,
                         num_sectors: int) -> MicroSamples:
    """``samples`` whose ``within`` target is softmax(τ · score / score_sd) inside each sector
    (``train.micro_pretrain.alloc_target: fitted``; τ = ``alloc_temperature``, logits per SD
    of the forecast), without the forward returns."""
    score = ((samples.stock - fit.mean) / fit.scale) @ fit.coef / fit.score_sd  # [B, N]
    within = jax.vmap(within_sector_softmax, in_axes=(0, 0, 0, None))(
        float(temperature) * score, samples.stock_mask, samples.stock_sector, num_sectors)
    return samples.replace(within=within.astype(jnp.float32), forward=None)


@partial(jax.jit, static_argnames=("num_sectors", "min_cash"))
def _micro_sample_arrays(stock_mask: Array, stock_valid: Array, returns: Array,
                         stock_sector: Array, stock_features: Array, idx: Array, *,
                         num_sectors: int, min_cash: float) -> MicroSamples:
    """The gathers of ``micro_samples`` as one program (B = len(idx); ``within`` left 0)."""
    sector = stock_sector.astype(jnp.int32)
    mask = (stock_mask[idx] & stock_valid[None, :])
    nxt = jnp.where(mask, returns[idx + 1], 0.0).astype(jnp.float32)
    active = jax.vmap(lambda m: jnp.zeros(num_sectors, bool).at[sector].max(m))(mask)
    n_valid = jnp.maximum(mask.sum(1, keepdims=True), 1)
    current = jnp.where(mask, (1.0 - min_cash) / n_valid, 0.0).astype(jnp.float32)
    return MicroSamples(
        stock=stock_features[idx], stock_mask=mask,
        stock_sector=jnp.broadcast_to(sector, mask.shape), current_weights=current,
        within=jnp.zeros_like(nxt), next_returns=nxt, sector_active=active,
        day=idx.astype(jnp.int32),
    )


def micro_split_days(market: MarketArrays, split: Split, horizon: int = 1
                     ) -> tuple[np.ndarray, np.ndarray]:
    """(train days, val days): days t with a tradable stock and day t + horizon inside the
    split."""
    t = np.arange(market.num_days)
    ok = (np.asarray(market.stock_mask) & np.asarray(market.stock_valid)[None, :]).any(1)
    nxt = np.where(t + horizon < market.num_days, t + horizon, -1)
    train = ok & _in_split(t, nxt, 0, split.val_start)
    val = ok & _in_split(t, nxt, split.val_start, split.test_start)
    return np.flatnonzero(train), np.flatnonzero(val)


def micro_datasets(market: MarketArrays, meta: MarketMeta, feats: FeatureSet, cfg: Config
                   ) -> tuple[MicroSamples, MicroSamples]:
    p = cfg.train.micro_pretrain
    split = split_days(meta.dates, cfg.data)
    train_days, val_days = micro_split_days(market, split, p.target_horizon)
    _require(train_days, "training", "days", cfg, meta)
    _require(val_days, "validation", "days", cfg, meta)
    mc = cfg.env.constraints.min_cash
    return (micro_samples(market, feats, train_days, p.alloc_temperature, mc, p.target_horizon),
            micro_samples(market, feats, val_days, p.alloc_temperature, mc, p.target_horizon))


def regime_frequencies(labels: Array) -> np.ndarray:
    """[3] float64 share of each regime among known labels (uniform if none are known)."""
    lab = np.asarray(labels)
    lab = lab[lab >= 0]
    if lab.size == 0:
        return np.full(NUM_REGIMES, 1.0 / NUM_REGIMES)
    return np.bincount(lab, minlength=NUM_REGIMES)[:NUM_REGIMES] / lab.size


def train_regime_labels(market: MarketArrays, meta: MarketMeta, feats: FeatureSet, cfg: Config
                        ) -> np.ndarray:
    """Known regime labels at the training split's week ends (for goal regimes, class weights)."""
    split = split_days(meta.dates, cfg.data)
    train_days, _ = macro_split_days(market, feats, split)
    return np.asarray(feats.regime_label)[train_days]


def concat_samples(parts: list) -> Any:
    """Samples of several markets (``MacroSamples`` or ``MicroSamples`` of one shape but the
    leading axis) on one leading axis, in the order given."""
    if len(parts) == 1:
        return parts[0]
    return jax.tree.map(lambda *x: jnp.concatenate(x), *parts)
