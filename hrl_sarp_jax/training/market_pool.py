"""A pool of more markets the supervised phases learn from besides the run's own.

# HOST ONLY (not jittable)
Issue 13 ("train on many markets"): one market's training window holds a handful of regime
episodes, so a policy fitted to it learns that history rather than rules that carry over to
another market. With ``train.pool.markets = K`` Phases 1 and 2 (``train.pool.phases``) also
learn from K more markets, from one of two sources (``train.pool.source``; 'auto' picks the
first for a generated market and no pool for a real one, where the second measured no gain):

- ``generator``: markets of the run's own generator (run.json ``market``: preset, stocks per
  sector, dates) with seeds ``first_seed, first_seed + 1, ...`` (the run's own seed skipped),
  each built exactly as ``hrl-sarp data synth --seed s`` and loading would
  (``data.synthetic.synthetic_markets``), with the same causal features and the same date
  splits: a sample's inputs and targets come from one market, and no target crosses its
  market's ``data.val_start`` / ``data.test_start``. Validation pools the markets' validation
  windows too, so early stopping and the best epoch are chosen for markets in general. Each
  starts where the run's market does (a rolling walk-forward fold's market starts at the
  fold's training start: its pool is cut there too, so every fold learns from windows of one
  length, and Phase 1 runs one compiled program for the folds).
- ``bootstrap``: K resampled histories of the run's own market (``data.resample``: the
  stationary block bootstrap of its training days ``[1, val_start)``, mean block
  ``block_days``, seeds as above), each as long as the market and on its calendar, with
  features built on the resampled history. They add *training* samples only: their later
  "validation" days are training days again, so validation stays the run's own window, and
  nothing on or after ``data.val_start`` is read (a test perturbs those days). Phase 3 cannot
  pool them (its validation walks every pool market's validation window).
- ``calibration``: markets of ``synth.preset``, a calibration file fitted to the run's market
  (``hrl-sarp data calibrate``, ``data/calibrate.py``: its universe, regimes and sector
  parameters from its training window), seeds as above, each spanning the run market's first
  to last date on the generator's calendar, pooled like the generator's (training and
  validation samples) in Phases 1 and 2. Phase 3 cannot pool them (their calendar is the
  generator's, not the run market's).

Seeds must stay below 1000: 1000-8999 are the many-market instrument's tuning range and
9000-9999 its judgement range (docs/evaluation.md), which training must never see.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hrl_sarp_jax.config import Config, DataConfig, FeatureConfig, PoolConfig, SynthConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.data.resample import bootstrap_market
from hrl_sarp_jax.data.synthetic import generator_of, synth_dates, synthetic_markets
from hrl_sarp_jax.data.synthetic_presets import calibration, is_calibration
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.build import build_features
from hrl_sarp_jax.features.days import slice_days
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.training.datasets import split_days

FIRST_INSTRUMENT_SEED = 1000
"""The many-market instrument's tuning range starts here; pool seeds stay below it."""
POOL_PHASES = (1, 2, 3)
POOL_SOURCES = ("auto", "generator", "bootstrap", "calibration")
_SPLITS = DataConfig()
"""Fixed split dates for the generated pool's cache key (loading and features ignore them)."""


@dataclass(frozen=True)
class PoolMarket:
    """One market of the pool with its causal features; ``source`` 'generator' or
    'bootstrap' (a resampled history of the run's training days: training samples only)."""

    seed: int
    market: MarketArrays
    meta: MarketMeta
    feats: FeatureSet
    source: str = "generator"
    block_days: float | None = None
    """The bootstrap's mean block length (None for a generated market)."""
    calibration_sha256: str | None = None
    """The calibration file's content hash for a 'calibration' market."""

    @property
    def train_only(self) -> bool:
        """Whether only its training samples may be used (its later days resample training days)."""
        return self.source == "bootstrap"


# HOST ONLY
def check_pool_config(pool: PoolConfig, ppo_envs: int | None = None) -> None:
    """ConfigError naming the ``train.pool`` key that breaks a rule beyond its range
    (``config_ranges``: the instrument's seeds, the source, the phases; with ``ppo_envs``,
    ``train.ppo.num_envs``: Phase 3 needs one env per market at least, a whole number each)."""
    if int(pool.markets) and int(pool.first_seed) + int(pool.markets) + 1 > FIRST_INSTRUMENT_SEED:
        raise ConfigError(
            f"train.pool: seeds {pool.first_seed} .. {pool.first_seed + pool.markets} reach the "
            f"many-market instrument's seeds (>= {FIRST_INSTRUMENT_SEED}); lower "
            f"train.pool.first_seed or train.pool.markets")
    if pool.source not in POOL_SOURCES:
        raise ConfigError(f"train.pool.source = {pool.source!r} is not one of "
                          f"{', '.join(POOL_SOURCES)}")
    if pool.source == "bootstrap" and pool.markets and 3 in pool.phases:
        raise ConfigError(_NO_BOOTSTRAP_PHASE3)
    if pool.source == "calibration" and pool.markets and 3 in pool.phases:
        raise ConfigError("train.pool: Phase 3 runs the pool markets day by day beside the run's "
                          "own, and a calibration's markets keep the generator's calendar; take "
                          "3 out of train.pool.phases")
    bad = [p for p in pool.phases if p not in POOL_PHASES]
    if bad:
        raise ConfigError(f"train.pool.phases = {list(pool.phases)}: only phases "
                          f"{list(POOL_PHASES)} can pool markets (got {bad})")
    n3 = phase3_count(pool)
    if pool.phase3_markets is not None and not 1 <= n3 <= int(pool.markets):
        raise ConfigError(f"train.pool.phase3_markets = {pool.phase3_markets} must be between 1 "
                          f"and train.pool.markets ({pool.markets}), or null for all of them")
    m = n3 + 1
    if ppo_envs is not None and pool.markets and 3 in pool.phases and int(ppo_envs) % m:
        raise ConfigError(f"train.pool: Phase 3 runs env i on market i mod {m} (the run's and "
                          f"{n3} pool markets), so train.ppo.num_envs ({ppo_envs}) "
                          f"must be a multiple of {m}; change train.pool.phase3_markets or "
                          f"train.ppo.num_envs")


AUTO_REAL_MARKET = (
    "train.pool.source auto on a real market: no pool (a stationary bootstrap of the market's "
    "own training days measured no better than no pool on 40 generated markets, docs/status.md; "
    "set train.pool.source: bootstrap to use it anyway)")
"""Why ``auto`` pools nothing for a real market (recorded in the phase summary)."""


def skipped_pool(cfg: Config, run_market: object, phase: int) -> dict:
    """``{"pool": {"source": None, "skipped": why}}`` when ``train.pool`` asks for markets in
    ``phase`` but 'auto' pools none for this (real) market, else ``{}``."""
    pool = cfg.train.pool
    if pool.markets and phase in pool.phases and pool.source == "auto" \
            and pool_source(cfg, run_market) is None:
        return {"pool": {"source": None, "skipped": AUTO_REAL_MARKET}}
    return {}


_NO_BOOTSTRAP_PHASE3 = (
    "train.pool: Phase 3 validates on every pool market's validation window, which in a "
    "bootstrap pool resamples training days; take 3 out of train.pool.phases (or pool a "
    "generated market with train.pool.source: generator)")


def phase3_count(pool: PoolConfig) -> int:
    """How many pool markets Phase 3 uses (``phase3_markets``, else all ``markets``)."""
    return int(pool.markets if pool.phase3_markets is None else pool.phase3_markets)


def pool_seeds(pool: PoolConfig, own_seed: int | None) -> list[int]:
    """The pool's ``pool.markets`` seeds from ``pool.first_seed`` upward, skipping ``own_seed``."""
    out, s = [], int(pool.first_seed)
    while len(out) < int(pool.markets):
        if s != own_seed:
            out.append(s)
        s += 1
    return out


@lru_cache(maxsize=2)
def _generated(synth: SynthConfig, data: DataConfig, features: FeatureConfig,
               seeds: tuple[int, ...], source: str = "generator",
               calibration_sha256: str | None = None) -> tuple[PoolMarket, ...]:
    """The generated pool (cached; ``calibration_sha256`` keys a calibration file's content)."""
    out = []
    for seed, market, meta in synthetic_markets(synth, data, list(seeds)):
        feats = build_features(market, features, meta.macro_names, meta.fundamental_names)
        out.append(PoolMarket(seed, market, meta, feats, source=source,
                              calibration_sha256=calibration_sha256))
    return tuple(out)


_BOOTSTRAPPED: dict[tuple, tuple[PoolMarket, ...]] = {}


def _content_key(market: MarketArrays) -> str:
    """A hash of the market's returns, macro and masks (the cache key of its resampled pool)."""
    h = hashlib.blake2b(digest_size=16)
    for x in (market.returns, market.macro, market.stock_mask, market.benchmark_returns):
        h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
    return h.hexdigest()


def _bootstrapped(market: MarketArrays, meta: MarketMeta, data: DataConfig,
                  features: FeatureConfig, seeds: tuple[int, ...], block_days: float
                  ) -> tuple[PoolMarket, ...]:
    key = (_content_key(market), data, features, seeds, float(block_days))
    if key not in _BOOTSTRAPPED:
        window = (1, split_days(np.asarray(meta.dates), data).val_start)
        if window[1] - window[0] < 2:
            raise ConfigError(f"train.pool: the bootstrap needs training days before "
                              f"data.val_start={data.val_start} (found {window[1] - 1})")
        out = []
        for seed in seeds:
            m, mm, _ = bootstrap_market(market, meta, window, float(block_days), seed)
            feats = build_features(m, features, mm.macro_names, mm.fundamental_names)
            out.append(PoolMarket(seed, m, mm, feats, source="bootstrap",
                                  block_days=float(block_days)))
        _BOOTSTRAPPED.clear()  # one market's pool at a time (the phases of one job share it)
        _BOOTSTRAPPED[key] = tuple(out)
    return _BOOTSTRAPPED[key]


# HOST ONLY
def pool_source(cfg: Config, run_market: object) -> str | None:
    """'generator', 'bootstrap' or 'calibration', the source of this run's pool (None without a
    pool, and for 'auto' on a real market: ``AUTO_REAL_MARKET``); ConfigError when it cannot
    serve the run (checked before Phase 1 by the main job, ``train`` and the walk-forward): a
    generator pool on a real market, Phase 3 on a bootstrap pool, a calibration pool without a
    calibration file as ``synth.preset``."""
    pool = cfg.train.pool
    check_pool_config(pool)
    if not pool.markets:
        return None
    generated = generator_of(run_market, cfg.synth) is not None
    if pool.source == "auto" and not generated:
        return None  # AUTO_REAL_MARKET: no pool
    source = "generator" if pool.source == "auto" else pool.source
    if source == "generator" and not generated:
        raise ConfigError("train.pool.source = generator needs a run on a generated market (a "
                          "real market has no generator to draw more of it); use "
                          "train.pool.source=bootstrap (or auto), or train.pool.markets=0")
    if source == "bootstrap" and 3 in pool.phases:
        raise ConfigError(_NO_BOOTSTRAP_PHASE3)
    if source == "calibration" and not is_calibration(cfg.synth.preset):
        raise ConfigError(f"train.pool.source = calibration draws markets of synth.preset, "
                          f"which is {cfg.synth.preset!r}, not a calibration file; write one "
                          f"with `hrl-sarp data calibrate MARKET --out FILE.yaml` and set "
                          f"synth.preset=FILE.yaml")
    if source == "calibration":
        calibration(cfg.synth.preset)  # the file exists and reads
    return source


# HOST ONLY
def market_pool(cfg: Config, run_market: object, phase: int, like: MarketArrays,
                like_meta: MarketMeta | None = None) -> tuple[PoolMarket, ...]:
    """The pool Phase ``phase`` learns from besides the run's market (``()`` when
    ``train.pool.markets`` is 0 or the phase is not in ``train.pool.phases``; Phase 3: the first
    ``phase3_markets`` of them).

    ``run_market``: the run's market record (run.json ``market``); ``like`` / ``like_meta``:
    the run's market, whose stock and sector axes every pool market must share and which a
    bootstrap pool resamples (``like_meta`` is needed then). Built once per process for a
    given config (Phases 1 and 2 of one job share it).
    """
    pool = cfg.train.pool
    source = pool_source(cfg, run_market)
    if source is None or phase not in pool.phases:
        return ()
    own = run_market.get("seed") if isinstance(run_market, dict) else None
    seeds = pool_seeds(pool, own if source == "generator" else None)
    if phase == 3:
        seeds = seeds[:phase3_count(pool)]
    if source == "bootstrap":
        if like_meta is None:
            raise ValueError("market_pool: a bootstrap pool needs the run market's meta")
        return _bootstrapped(like, like_meta, cfg.data, cfg.features, tuple(seeds),
                             pool.block_days)
    # the split dates do not change a market's arrays: walk-forward folds share one pool
    same_arrays = dataclasses.replace(cfg.data, val_start=_SPLITS.val_start,
                                      test_start=_SPLITS.test_start)
    if source == "calibration":  # as long as the run's market, on the generator's calendar
        span = like_meta.dates if like_meta is not None else synth_dates(cfg.synth)
        synth = dataclasses.replace(cfg.synth, start=str(span[0]), end=str(span[-1]))
        markets = _generated(synth, same_arrays, cfg.features, tuple(seeds), source,
                             calibration(synth.preset).sha256)
    else:
        markets = _generated(generator_of(run_market, cfg.synth), same_arrays, cfg.features,
                             tuple(seeds))
    if like_meta is not None:
        markets = tuple(from_day(m, like_meta.dates[0]) for m in markets)
    for m in markets:
        if (m.market.num_stocks, m.market.num_sectors) != (like.num_stocks, like.num_sectors):
            raise ConfigError(
                f"train.pool: market seed {m.seed} has {m.market.num_stocks} stocks and "
                f"{m.market.num_sectors} sectors, the run's market {like.num_stocks} and "
                f"{like.num_sectors}; the pool needs the run's own generator settings (or, "
                f"for a calibration, the data.max_stocks / max_sectors the run loaded with)")
    return markets


def from_day(m: PoolMarket, first: object) -> PoolMarket:
    """``m`` from its first trading day on or after ``first`` (the run market's first day);
    ``m`` itself when it starts there. Its features keep their causal history (built on the
    whole market, as a walk-forward fold's own)."""
    dates = np.asarray(m.meta.dates).astype("datetime64[D]")
    lo = int(np.searchsorted(dates, np.datetime64(first, "D")))
    if lo == 0:
        return m
    market, meta, feats = slice_days(m.market, m.meta, m.feats, lo)
    return dataclasses.replace(m, market=market, meta=meta, feats=feats)


def pool_record(markets: tuple[PoolMarket, ...], counts: dict[str, list[int]]) -> dict:
    """What a phase summary records about its pool: the source, the seeds and samples per
    market (and the bootstrap's mean block length)."""
    out: dict = {"source": markets[0].source if markets else None,
                 "seeds": [m.seed for m in markets], **counts}
    if markets and markets[0].block_days is not None:
        out["block_days"] = markets[0].block_days
    if markets and markets[0].calibration_sha256 is not None:
        out["calibration_sha256"] = markets[0].calibration_sha256
    return out
