"""train.pool: the supervised phases learn from more generated markets of the run's generator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import create_run, read_phase_summary
from hrl_sarp_jax.config import PoolConfig
from hrl_sarp_jax.data.io import market_identity
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.synthetic import write_synthetic_market
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.training import datasets as ds
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training.market_pool import check_pool_config, market_pool, pool_seeds
from hrl_sarp_jax.training.runner import prepare_macro, prepare_micro, run_pretrain_phase


def with_pool(cfg, **kw):
    return dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, pool=dataclasses.replace(cfg.train.pool, **kw)))


@pytest.mark.parametrize("kw, words", [
    ({"markets": -1}, "train.pool.markets"),
    ({"markets": 4, "first_seed": -2}, "train.pool.first_seed"),
    ({"markets": 16, "first_seed": 990}, "instrument"),
    ({"markets": 2, "phases": (1, 3)}, "train.pool.phases"),
])
def test_pool_config_errors_name_the_key(kw, words):
    with pytest.raises(ConfigError, match=words):
        check_pool_config(PoolConfig(**kw))
    check_pool_config(PoolConfig(markets=998, first_seed=1))  # seeds 1..999 (one skipped)


def test_pool_seeds_skip_the_runs_own_market():
    assert pool_seeds(PoolConfig(markets=3, first_seed=0), own_seed=1) == [0, 2, 3]
    assert pool_seeds(PoolConfig(markets=3, first_seed=0), own_seed=None) == [0, 1, 2]
    assert pool_seeds(PoolConfig(markets=0), own_seed=0) == []


def test_pool_needs_a_generated_market(smoke_market):
    _, market, _, _, cfg = smoke_market
    on = with_pool(cfg, markets=1, phases=(1,))
    with pytest.raises(ConfigError, match="real market"):
        market_pool(on, {"path": "x", "synthetic": False}, 1, market)
    with pytest.raises(ConfigError, match="real market"):
        market_pool(on, None, 1, market)
    assert market_pool(on, {"synthetic": False}, 2, market) == ()   # phase 2 does not pool
    assert market_pool(cfg, None, 1, market) == ()                  # no pool asked


@pytest.fixture(scope="module")
def pooled(smoke_market, tmp_path_factory):
    """The smoke run's record, a config with a 1-market pool (seed 7) and that pool."""
    market_dir, market, _, _, cfg = smoke_market
    record = market_identity(market_dir)
    on = with_pool(cfg, markets=1, first_seed=7)
    return record, on, market_pool(on, record, 1, market)


def test_pool_market_is_the_data_synth_market(pooled, tmp_path):
    record, cfg, pool = pooled
    assert [m.seed for m in pool] == [7]
    out = write_synthetic_market(tmp_path / "m7", dataclasses.replace(cfg.synth, seed=7))
    market, meta = load_market(out, cfg.data)
    np.testing.assert_allclose(np.asarray(pool[0].market.returns),
                               np.asarray(market.returns), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(pool[0].market.macro), np.asarray(market.macro),
                               rtol=0, atol=1e-12)
    assert list(pool[0].meta.dates) == list(meta.dates)
    # another market, not the run's own
    assert record["seed"] != 7


def test_phase1_and_2_samples_pool_each_markets_own_samples(smoke_market, pooled):
    _, market, meta, feats, _ = smoke_market
    _, cfg, pool = pooled
    own_tr, own_va = ds.macro_datasets(market, meta, feats, cfg)
    p_tr, p_va = ds.macro_datasets(pool[0].market, pool[0].meta, pool[0].feats, cfg)
    prep = prepare_macro(cfg, market, meta, feats, pool)
    assert prep.train.size == own_tr.size + p_tr.size and prep.val.size == own_va.size + p_va.size
    np.testing.assert_array_equal(np.asarray(prep.train.regime),
                                  np.r_[np.asarray(own_tr.regime), np.asarray(p_tr.regime)])
    np.testing.assert_allclose(np.asarray(prep.train.next_returns)[own_tr.size:],
                               np.asarray(p_tr.next_returns), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(prep.val.inputs.macro)[own_va.size:],
                               np.asarray(p_va.inputs.macro), rtol=0, atol=0)
    labels = np.r_[np.asarray(own_tr.regime), np.asarray(p_tr.regime)]
    np.testing.assert_allclose(np.asarray(prep.hp.class_weights),
                               pt.class_weights(labels, cfg.train.macro_pretrain.class_weights),
                               rtol=1e-6)
    assert prep.info["pool"] == {"seeds": [7],
                                 "train_samples_per_market": [own_tr.size, p_tr.size],
                                 "val_samples_per_market": [own_va.size, p_va.size]}
    # the pool market's samples differ from the run's (another market, not a copy)
    assert not np.allclose(np.asarray(p_tr.next_returns)[:10],
                           np.asarray(own_tr.next_returns)[:10])

    m_tr, _ = ds.micro_datasets(market, meta, feats, cfg)
    q_tr, _ = ds.micro_datasets(pool[0].market, pool[0].meta, pool[0].feats, cfg)
    micro = prepare_micro(cfg, market, meta, feats, pool)
    assert micro.train_size == m_tr.size + q_tr.size
    np.testing.assert_allclose(np.asarray(micro.train.samples.within)[m_tr.size:],
                               np.asarray(q_tr.within), rtol=0, atol=0)


def test_phase1_run_records_its_pool(smoke_market, pooled, tmp_path):
    market_dir, market, meta, feats, _ = smoke_market
    record, cfg, _ = pooled
    one = with_pool(cfg, markets=1, first_seed=7, phases=(1,))
    run = create_run(tmp_path, "p", one, "fp", resume=False, market=record)
    run_pretrain_phase(1, one, market, meta, feats, run, epoch_limit=1, progress=False)
    s = read_phase_summary(run, 1)
    assert s["pool"]["seeds"] == [7]
    assert s["train_samples"] == sum(s["pool"]["train_samples_per_market"])
    assert s["train_span"][0] >= str(np.asarray(meta.dates)[0])
