"""A pool of generated markets the supervised phases learn from besides the run's own.

# HOST ONLY (not jittable)
Issue 13 ("train on many markets"): one market's training window holds a handful of regime
episodes, so a policy fitted to it learns that history rather than rules that carry over to
another market. With ``train.pool.markets = K`` Phases 1 and 2 (``train.pool.phases``) also
learn from K more markets of the run's own generator (run.json ``market``: preset, stocks per
sector, dates) with seeds ``first_seed, first_seed + 1, ...`` (the run's own seed skipped),
each built exactly as ``hrl-sarp data synth --seed s`` and loading would
(``data.synthetic.synthetic_markets``), with the same causal features and the same date
splits: a sample's inputs and targets come from one market, and no target crosses its
market's ``data.val_start`` / ``data.test_start``. Validation pools the markets' validation
windows too, so early stopping and the best epoch are chosen for markets in general.

Seeds must stay below 1000: 1000-8999 are the many-market instrument's tuning range and
9000-9999 its judgement range (docs/evaluation.md), which training must never see. A run on a
real market has no generator to draw from: a pool there (a block bootstrap of its days, or a
calibrated generator) is not built, and asking for one is a ConfigError.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hrl_sarp_jax.config import Config, DataConfig, FeatureConfig, PoolConfig, SynthConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.data.synthetic import generator_of, synthetic_markets
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.build import build_features
from hrl_sarp_jax.features.featureset import FeatureSet

FIRST_INSTRUMENT_SEED = 1000
"""The many-market instrument's tuning range starts here; pool seeds stay below it."""
POOL_PHASES = (1, 2, 3)


@dataclass(frozen=True)
class PoolMarket:
    """One generated market of the pool with its causal features."""

    seed: int
    market: MarketArrays
    meta: MarketMeta
    feats: FeatureSet


# HOST ONLY
def check_pool_config(pool: PoolConfig, ppo_envs: int | None = None) -> None:
    """ConfigError naming the ``train.pool`` key that is out of range (with ``ppo_envs``,
    ``train.ppo.num_envs``: Phase 3 needs one env per market at least, a whole number each)."""
    if int(pool.markets) < 0:
        raise ConfigError(f"train.pool.markets = {pool.markets} must be >= 0 (0: no pool)")
    if int(pool.first_seed) < 0:
        raise ConfigError(f"train.pool.first_seed = {pool.first_seed} must be >= 0")
    if int(pool.markets) and int(pool.first_seed) + int(pool.markets) + 1 > FIRST_INSTRUMENT_SEED:
        raise ConfigError(
            f"train.pool: seeds {pool.first_seed} .. {pool.first_seed + pool.markets} reach the "
            f"many-market instrument's seeds (>= {FIRST_INSTRUMENT_SEED}); lower "
            f"train.pool.first_seed or train.pool.markets")
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
def _build(synth: SynthConfig, data: DataConfig, features: FeatureConfig,
           seeds: tuple[int, ...]) -> tuple[PoolMarket, ...]:
    out = []
    for seed, market, meta in synthetic_markets(synth, data, list(seeds)):
        feats = build_features(market, features, meta.macro_names, meta.fundamental_names)
        out.append(PoolMarket(seed, market, meta, feats))
    return tuple(out)


# HOST ONLY
def pool_generator(cfg: Config, run_market: object) -> SynthConfig | None:
    """The generator the pool draws from (None without a pool); ConfigError when the run's
    market was not generated (checked before Phase 1 by the main job and ``train``)."""
    if not cfg.train.pool.markets:
        return None
    synth = generator_of(run_market, cfg.synth)
    if synth is None:
        raise ConfigError("train.pool.markets > 0 needs a run on a generated market (a real "
                          "market has no generator to draw more of it, and its resampled pool "
                          "is not built); add --set train.pool.markets=0")
    return synth


# HOST ONLY
def market_pool(cfg: Config, run_market: object, phase: int, like: MarketArrays
                ) -> tuple[PoolMarket, ...]:
    """The pool Phase ``phase`` learns from besides the run's market (``()`` when
    ``train.pool.markets`` is 0 or the phase is not in ``train.pool.phases``; Phase 3: the first
    ``phase3_markets`` of them).

    ``run_market``: the run's market record (run.json ``market``); ``like``: the run's market,
    whose stock and sector axes every pool market must share. Built once per process for a
    given config (Phases 1 and 2 of one job share it).
    """
    pool = cfg.train.pool
    check_pool_config(pool)
    if not pool.markets or phase not in pool.phases:
        return ()
    synth = pool_generator(cfg, run_market)
    own = run_market.get("seed") if isinstance(run_market, dict) else None
    seeds = pool_seeds(pool, own)
    if phase == 3:
        seeds = seeds[:phase3_count(pool)]
    markets = _build(synth, cfg.data, cfg.features, tuple(seeds))
    for m in markets:
        if (m.market.num_stocks, m.market.num_sectors) != (like.num_stocks, like.num_sectors):
            raise ConfigError(
                f"train.pool: market seed {m.seed} has {m.market.num_stocks} stocks and "
                f"{m.market.num_sectors} sectors, the run's market {like.num_stocks} and "
                f"{like.num_sectors}; the pool needs the run's own generator settings")
    return markets


def pool_record(markets: tuple[PoolMarket, ...], counts: dict[str, list[int]]) -> dict:
    """What a phase summary records about its pool: the seeds and samples per market."""
    return {"seeds": [m.seed for m in markets], **counts}
