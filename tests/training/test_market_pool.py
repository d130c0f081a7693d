"""train.pool: Phases 1-3 learn from more generated markets of the run's generator."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import create_run, read_phase_summary
from hrl_sarp_jax.config import PoolConfig
from hrl_sarp_jax.data.io import market_identity
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.resample import bootstrap_market
from hrl_sarp_jax.data.synthetic import write_synthetic_market
from hrl_sarp_jax.envs.macro import MacroEnv
from hrl_sarp_jax.envs.params import is_pooled, market_axes, stack_markets
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import datasets as ds
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training.market_pool import (
    AUTO_REAL_MARKET,
    check_pool_config,
    market_pool,
    pool_seeds,
    pool_source,
    skipped_pool,
)
from hrl_sarp_jax.training.ppo_engine import step_envs
from hrl_sarp_jax.training.runner import prepare_macro, prepare_micro, run_pretrain_phase


def _real(padded):
    """A padded sample set's real rows (``pt.Padded``: the first ``count``)."""
    return jax.tree.map(lambda x: x[: int(padded.count)], padded.data)


def with_pool(cfg, **kw):
    return dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, pool=dataclasses.replace(cfg.train.pool, **kw)))


@pytest.mark.parametrize("kw, words", [
    ({"markets": 16, "first_seed": 990}, "instrument"),
    ({"markets": 2, "phases": (1, 4)}, "train.pool.phases"),
])
def test_pool_config_errors_name_the_key(kw, words):
    with pytest.raises(ConfigError, match=words):
        check_pool_config(PoolConfig(**kw))
    check_pool_config(PoolConfig(markets=998, first_seed=1))  # seeds 1..999 (one skipped)


def test_pool_seeds_skip_the_runs_own_market():
    assert pool_seeds(PoolConfig(markets=3, first_seed=0), own_seed=1) == [0, 2, 3]
    assert pool_seeds(PoolConfig(markets=3, first_seed=0), own_seed=None) == [0, 1, 2]
    assert pool_seeds(PoolConfig(markets=0), own_seed=0) == []


REAL = {"path": "x", "synthetic": False}
GENERATED = {"synthetic": True, "preset": "small", "stocks_per_sector": 2,
             "start": "2019-01-01", "end": "2020-12-31", "seed": 3}


def test_pool_source_fits_the_market(smoke_market):
    _, market, _, _, cfg = smoke_market
    on = with_pool(cfg, markets=1, phases=(1,))
    assert pool_source(cfg, None) is None                               # no pool asked
    assert pool_source(on, GENERATED) == "generator"                    # auto, generated
    # auto, real market: no pool (the bootstrap measured no gain), and the summary says so
    assert pool_source(on, REAL) is None and pool_source(on, None) is None
    assert market_pool(on, REAL, 1, market) == ()
    assert skipped_pool(on, REAL, 1) == {"pool": {"source": None, "skipped": AUTO_REAL_MARKET}}
    assert skipped_pool(on, REAL, 2) == {} and skipped_pool(on, GENERATED, 1) == {}
    assert skipped_pool(cfg, REAL, 1) == {}                             # no pool asked
    boot = with_pool(on, source="bootstrap")
    assert pool_source(boot, REAL) == pool_source(boot, GENERATED) == "bootstrap"
    gen = with_pool(on, source="generator")
    with pytest.raises(ConfigError, match=r"train\.pool\.source=bootstrap"):
        pool_source(gen, REAL)          # the check the main job, `train` and walk-forward run
    with pytest.raises(ConfigError, match="Phase 3"):
        pool_source(with_pool(boot, phases=(1, 3)), REAL)
    assert pool_source(with_pool(on, phases=(1, 3)), GENERATED) == "generator"
    with pytest.raises(ConfigError, match="Phase 3"):
        check_pool_config(PoolConfig(markets=2, phases=(3,), source="bootstrap"))
    with pytest.raises(ConfigError, match=r"train\.pool\.source = 'hmm'"):
        check_pool_config(PoolConfig(markets=2, source="hmm"))
    with pytest.raises(ConfigError, match=r"'train\.pool\.block_days' = 0\.5 must be >= 1"):
        with_pool(cfg, markets=2, block_days=0.5)   # a range: refused when the Config is built
    assert market_pool(boot, REAL, 2, market) == ()                     # phase 2 does not pool
    assert market_pool(cfg, None, 1, market) == ()
    with pytest.raises(ValueError, match="meta"):
        market_pool(boot, REAL, 1, market)                              # resampling needs meta


def test_bootstrap_pool_adds_training_samples_only(smoke_market):
    """On a real market the pool resamples the run's training days: more training samples,
    the validation set the run's own, each pool market's features built on its history."""
    _, market, meta, feats, cfg = smoke_market
    on = with_pool(cfg, markets=2, first_seed=5, phases=(1, 2), block_days=21.0,
                   source="bootstrap")
    pool = market_pool(on, REAL, 1, market, meta)
    assert [(m.seed, m.source, m.train_only, m.block_days) for m in pool] == [
        (5, "bootstrap", True, 21.0), (6, "bootstrap", True, 21.0)]
    assert market_pool(on, REAL, 2, market, meta) is pool               # built once per job
    hi = ds.split_days(np.asarray(meta.dates), cfg.data).val_start
    want, _, days = bootstrap_market(market, meta, (1, hi), 21.0, 5)
    assert days.max() < hi
    np.testing.assert_array_equal(np.asarray(pool[0].market.returns), np.asarray(want.returns))
    own_tr, own_va = ds.macro_datasets(market, meta, feats, on)
    p_tr = [ds.macro_datasets(m.market, m.meta, m.feats, on)[0] for m in pool]
    prep = prepare_macro(on, market, meta, feats, pool)
    assert int(prep.train.count) == own_tr.size + sum(x.size for x in p_tr)
    assert int(prep.val.count) == own_va.size
    np.testing.assert_allclose(np.asarray(_real(prep.val).inputs.macro),
                               np.asarray(own_va.inputs.macro), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(_real(prep.train).next_returns)[own_tr.size:][:p_tr[0].size],
                               np.asarray(p_tr[0].next_returns), rtol=0, atol=0)
    assert prep.info["pool"] == {
        "source": "bootstrap", "seeds": [5, 6], "block_days": 21.0,
        "train_samples_per_market": [own_tr.size] + [x.size for x in p_tr],
        "val_samples_per_market": [own_va.size, 0, 0]}
    # a resampled week's sample: its next-week returns are the source's, re-ordered
    assert not np.allclose(np.asarray(p_tr[0].next_returns)[:10],
                           np.asarray(own_tr.next_returns)[:10])
    _, m_va = ds.micro_datasets(market, meta, feats, on)
    assert int(prepare_micro(on, market, meta, feats, pool).val.count) == m_va.size


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


def test_a_folds_pool_starts_where_its_market_does(smoke_market, pooled):
    """A rolling walk-forward fold's market starts at its training start (``slice_days``);
    its pool markets are cut there too, day for day, so every fold of one length learns from
    pool windows of one length. Starting on the market's own first day changes nothing."""
    from hrl_sarp_jax.features.days import slice_days

    _, market, meta, feats, _ = smoke_market
    record, cfg, pool = pooled
    whole = pool[0]
    tr_whole, _ = ds.macro_datasets(whole.market, whole.meta, whole.feats, cfg)
    lo = int(np.asarray(tr_whole.day)[10])  # the fold starts after 10 of its training weeks
    fold = slice_days(market, meta, feats, lo)
    cut = market_pool(cfg, record, 1, fold[0], fold[1])
    assert market_pool(cfg, record, 1, market, meta)[0] is pool[0]
    assert cut[0].meta.dates[0] == meta.dates[lo] and len(cut[0].meta.dates) == len(
        whole.meta.dates) - lo
    np.testing.assert_array_equal(np.asarray(cut[0].market.returns),
                                  np.asarray(whole.market.returns)[lo:])
    np.testing.assert_array_equal(np.asarray(cut[0].feats.macro),
                                  np.asarray(whole.feats.macro)[lo:])
    tr_cut, _ = ds.macro_datasets(cut[0].market, cut[0].meta, cut[0].feats, cfg)
    assert tr_cut.size == tr_whole.size - 10  # the weeks before the fold's start are gone
    np.testing.assert_array_equal(np.asarray(tr_cut.regime), np.asarray(tr_whole.regime)[10:])


def test_phase1_and_2_samples_pool_each_markets_own_samples(smoke_market, pooled):
    _, market, meta, feats, _ = smoke_market
    _, cfg, pool = pooled
    own_tr, own_va = ds.macro_datasets(market, meta, feats, cfg)
    p_tr, p_va = ds.macro_datasets(pool[0].market, pool[0].meta, pool[0].feats, cfg)
    prep = prepare_macro(cfg, market, meta, feats, pool)
    train, val = _real(prep.train), _real(prep.val)
    assert train.size == own_tr.size + p_tr.size and val.size == own_va.size + p_va.size
    np.testing.assert_array_equal(np.asarray(train.regime),
                                  np.r_[np.asarray(own_tr.regime), np.asarray(p_tr.regime)])
    np.testing.assert_allclose(np.asarray(train.next_returns)[own_tr.size:],
                               np.asarray(p_tr.next_returns), rtol=0, atol=0)
    np.testing.assert_allclose(np.asarray(val.inputs.macro)[own_va.size:],
                               np.asarray(p_va.inputs.macro), rtol=0, atol=0)
    labels = np.r_[np.asarray(own_tr.regime), np.asarray(p_tr.regime)]
    np.testing.assert_allclose(np.asarray(prep.hp.class_weights),
                               pt.class_weights(labels, cfg.train.macro_pretrain.class_weights),
                               rtol=1e-6)
    assert prep.info["pool"] == {"source": "generator", "seeds": [7],
                                 "train_samples_per_market": [own_tr.size, p_tr.size],
                                 "val_samples_per_market": [own_va.size, p_va.size]}
    # the pool market's samples differ from the run's (another market, not a copy)
    assert not np.allclose(np.asarray(p_tr.next_returns)[:10],
                           np.asarray(own_tr.next_returns)[:10])

    m_tr, _ = ds.micro_datasets(market, meta, feats, cfg)
    q_tr, _ = ds.micro_datasets(pool[0].market, pool[0].meta, pool[0].feats, cfg)
    micro = prepare_micro(cfg, market, meta, feats, pool)
    assert int(micro.train.count) == m_tr.size + q_tr.size
    np.testing.assert_allclose(np.asarray(micro.train.data.samples.within)[m_tr.size:int(micro.train.count)],
                               np.asarray(q_tr.within), rtol=0, atol=0)


def test_phase1_run_records_its_pool(smoke_market, pooled, tmp_path):
    _, market, meta, feats, _ = smoke_market
    record, cfg, _ = pooled
    one = with_pool(cfg, markets=1, first_seed=7, phases=(1,))
    run = create_run(tmp_path, "p", one, "fp", resume=False, market=record)
    run_pretrain_phase(1, one, market, meta, feats, run, epoch_limit=1, progress=False)
    s = read_phase_summary(run, 1)
    assert s["pool"]["seeds"] == [7]
    assert s["train_samples"] == sum(s["pool"]["train_samples_per_market"])
    assert s["train_span"][0] >= str(np.asarray(meta.dates)[0])
    # the same config on a real market: 'auto' pools nothing, and the summary says why
    real = create_run(tmp_path, "r", one, "fp", resume=False, market=REAL)
    run_pretrain_phase(1, one, market, meta, feats, real, epoch_limit=1, progress=False)
    r = read_phase_summary(real, 1)
    assert r["pool"] == {"source": None, "skipped": AUTO_REAL_MARKET}
    assert r["train_samples"] == s["pool"]["train_samples_per_market"][0]


# --------------------------------------------------------------------------- Phase 3


def test_phase3_pool_needs_a_whole_number_of_envs_per_market():
    with pytest.raises(ConfigError, match=r"train\.ppo\.num_envs"):
        check_pool_config(PoolConfig(markets=2, phases=(3,)), ppo_envs=4)   # 3 markets, 4 envs
    check_pool_config(PoolConfig(markets=2, phases=(1, 2)), ppo_envs=4)     # Phase 3 unpooled
    check_pool_config(PoolConfig(markets=3, phases=(3,)), ppo_envs=8)       # 2 envs a market
    # Phase 3 on the first 1 of 16 markets: 2 markets, 4 envs (Phase 1 keeps all 16)
    check_pool_config(PoolConfig(markets=16, phases=(1, 3), phase3_markets=1), ppo_envs=4)
    with pytest.raises(ConfigError, match=r"phase3_markets"):
        check_pool_config(PoolConfig(markets=16, phases=(1, 3), phase3_markets=2), ppo_envs=4)
    for bad in (0, 17):
        with pytest.raises(ConfigError, match=r"train\.pool\.phase3_markets = "):
            check_pool_config(PoolConfig(markets=16, phases=(3,), phase3_markets=bad))


def test_walk_forward_folds_share_one_generated_pool(smoke_market, pooled):
    """Loading and features ignore the split dates, so a fold with other dates gets the same
    pool (built once), while a bootstrap pool, which resamples the training days, does not."""
    _, market, meta, _, _ = smoke_market
    record, on, pool = pooled
    fold = dataclasses.replace(on, data=dataclasses.replace(on.data, val_start="2019-10-01"))
    assert market_pool(fold, record, 1, market) is pool
    boot = with_pool(on, source="bootstrap")
    boot_fold = dataclasses.replace(boot, data=fold.data)
    a = market_pool(boot, REAL, 1, market, meta)
    b = market_pool(boot_fold, REAL, 1, market, meta)
    assert not np.array_equal(np.asarray(a[0].market.returns), np.asarray(b[0].market.returns))


def test_phase3_uses_the_first_phase3_markets_of_the_pool(smoke_market):
    market_dir, market, _, _, cfg = smoke_market
    record = market_identity(market_dir)
    on = with_pool(cfg, markets=2, first_seed=7, phases=(1, 3), phase3_markets=1)
    assert [m.seed for m in market_pool(on, record, 1, market)] == [7, 8]
    assert [m.seed for m in market_pool(on, record, 3, market)] == [7]


def test_stack_markets_puts_market_i_mod_m_on_env_i(smoke_market, pooled):
    _, market, _, feats, _ = smoke_market
    _, cfg, pool = pooled
    policy = {"w": jnp.arange(3.0)}
    own = MacroEnv.make_params(market, feats, cfg.env, policy_params=policy)
    other = MacroEnv.make_params(pool[0].market, pool[0].feats, cfg.env, policy_params=policy)
    both = stack_markets([own, other], copies=2)
    assert is_pooled(both) and not is_pooled(own)
    assert both.returns.shape == (4, *own.returns.shape)
    for i, src in enumerate([own, other, own, other]):
        np.testing.assert_allclose(np.asarray(both.returns[i]), np.asarray(src.returns),
                                   rtol=0, atol=0)
        np.testing.assert_allclose(np.asarray(both.stock_features[i]),
                                   np.asarray(src.stock_features), rtol=0, atol=0)
    assert both.policy_params is policy                      # shared, not copied per env
    axes = market_axes(both)
    assert axes.returns == 0 and axes.policy_params == {"w": None}
    short = MacroEnv.make_params(market, feats, cfg.env, split=(0, 100))
    assert short.returns.shape == own.returns.shape          # a split keeps the arrays
    with pytest.raises(ValueError, match="shapes differ"):
        stack_markets([own, own.replace(returns=own.returns[:-1])])


def test_pooled_step_is_each_markets_own_step(smoke_market, pooled):
    _, market, _, feats, _ = smoke_market
    _, cfg, pool = pooled
    env = MacroEnv(market.num_stocks, market.num_sectors, int(feats.sector.shape[-1]))
    params = [MacroEnv.make_params(market, feats, cfg.env),
              MacroEnv.make_params(pool[0].market, pool[0].feats, cfg.env)]
    keys = jax.random.split(jax.random.key(3), 2)
    resets = [env.reset(k, p) for k, p in zip(keys, params, strict=True)]
    states = jax.tree.map(lambda *x: jnp.stack(x), *[s for _, s in resets])
    s = market.num_sectors
    actions = jnp.stack([jnp.r_[jnp.full(s, 1.0 / s), 0.0, 0.0, 1.0],
                         jnp.r_[jnp.eye(s)[0], 1.0, 0.0, 0.0]])
    step_keys = jax.random.split(jax.random.key(4), 2)
    obs, _, reward, _, _, info = step_envs(env, stack_markets(params), step_keys, states,
                                           actions)
    for i in range(2):
        one = jax.tree.map(lambda x, i=i: x[i], states)
        o, _, r, _, _, inf = env.step(step_keys[i], one, actions[i], params[i])
        np.testing.assert_allclose(np.asarray(obs[i]), np.asarray(o), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(float(reward[i]), float(r), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(float(info["net_return"][i]), float(inf["net_return"]),
                                   rtol=1e-6, atol=1e-9)
    assert float(info["net_return"][0]) != float(info["net_return"][1])


def test_per_env_start_sets_draw_from_their_own_row():
    starts = cur.StartSet(days=jnp.asarray([[10, 11, 12], [50, 51, 50]], jnp.int32),
                          count=jnp.asarray([3, 2], jnp.int32))
    draws = np.stack([np.asarray(cur.sample_start_days(jax.random.key(i), starts, (2,)))
                      for i in range(200)])
    assert set(draws[:, 0]) == {10, 11, 12} and set(draws[:, 1]) == {50, 51}
    a = cur.StageWindows(days=jnp.asarray([[1, 2], [3, 3]]), count=jnp.asarray([2, 1]),
                         lo=jnp.asarray([1, 3]), hi=jnp.asarray([2, 3]))
    b = cur.StageWindows(days=jnp.asarray([[7, 8, 9], [9, 9, 9]]), count=jnp.asarray([3, 1]),
                         lo=jnp.asarray([7, 9]), hi=jnp.asarray([9, 9]))
    w = cur.stack_windows([a, b], copies=2)
    np.testing.assert_array_equal(np.asarray(w.days[0]),
                                  [[1, 2, 1], [7, 8, 9], [1, 2, 1], [7, 8, 9]])
    np.testing.assert_array_equal(np.asarray(w.count), [[2, 3, 2, 3], [1, 1, 1, 1]])
    got = cur.stage_starts(1, w)
    assert got.days.shape == (4, 3) and np.asarray(got.count).tolist() == [1, 1, 1, 1]


def test_pooled_validation_is_every_markets_validation(smoke_market, pooled):
    _, market, meta, feats, _ = smoke_market
    _, cfg, pool = pooled
    on = with_pool(cfg, markets=1, first_seed=7, phases=(3,))
    setup = rm.setup_phase3(on, market, meta, feats, pool=pool)
    assert setup.info["pool"] == {"seeds": [7], "envs_per_market": cfg.train.ppo.num_envs // 2,
                                  "val_episodes_per_market": int(setup.eval_days.shape[1])}
    single = rm.setup_phase3(on, market, meta, feats)
    np.testing.assert_array_equal(np.asarray(setup.eval_days[0]), np.asarray(single.eval_days))
    np.testing.assert_allclose(np.asarray(setup.train_params.returns[0]),
                               np.asarray(single.train_params.returns), rtol=0, atol=0)
    prog = setup.program
    params = prog.init(jax.random.key(0), setup.hp, single.train_params,
                       cur.stage_starts(1, single.windows)).train.params
    ev = jax.jit(prog.evaluate)
    both = ev(params, setup.val_params, jnp.asarray(setup.eval_days), jax.random.key(1))
    per = [ev(params, jax.tree.map(lambda x, i=i: x[i], setup.val_params),
              jnp.asarray(setup.eval_days[i]), jax.random.key(1)) for i in range(2)]
    want = np.r_[np.asarray(per[0]["episode_sharpe"]), np.asarray(per[1]["episode_sharpe"])]
    np.testing.assert_allclose(np.asarray(both["episode_sharpe"]), want, rtol=1e-5, atol=1e-6)
    # continuous validation (the default): one walk per market, the validation Sharpe the
    # mean of the markets' walks, their blocks the per-episode Sharpes
    assert on.train.validation == "continuous" and setup.eval_days.shape[1] == 1
    np.testing.assert_allclose(float(both["val_sharpe"]),
                               np.mean([float(p["val_sharpe"]) for p in per]), rtol=1e-5)
    assert int(both["val_episodes"]) == 2 and want.size == 2 * per[0]["episode_sharpe"].size


@pytest.mark.slow  # two pooled Phase-3 runs at smoke shapes (~2 min on 2 cores)
def test_pooled_phase3_resumes_exactly_and_records_its_pool(smoke_market, pooled, tmp_path):
    from hrl_sarp_jax.checkpointing import PhaseCheckpointer

    _, market, meta, feats, _ = smoke_market
    record, cfg, _ = pooled
    on = with_pool(cfg, markets=1, first_seed=7, phases=(3,))
    full = create_run(tmp_path, "full", on, "fp", resume=False, market=record)
    summary = rm.run_phase3(full, on, market, meta, feats)
    assert summary["pool"]["seeds"] == [7] and summary["pool"]["envs_per_market"] == 2
    k = summary["pool"]["val_episodes_per_market"]
    assert summary["per_seed"]["val_episodes"] == [2 * k]
    part = create_run(tmp_path, "part", on, "fp", resume=False, market=record)
    rm.run_phase3(part, on, market, meta, feats, update_limit=4)
    resumed = rm.run_phase3(part, on, market, meta, feats, resume=True)
    assert resumed["resumed_from_step"] == 4 and resumed["updates"] == summary["updates"]
    abstract = rm.abstract_state(on, market, meta, feats, 1)
    states = []
    for run in (full, part):
        with PhaseCheckpointer(run, 3, read_only=True) as ck:
            states.append(ck.restore(abstract, "latest")[0])
    for x, y in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert resumed["val_sharpe"] == summary["val_sharpe"]


def test_regime_table_target_is_fitted_on_the_pooled_training_samples(smoke_market, pooled):
    _, market, meta, feats, _ = smoke_market
    _, cfg, pool = pooled
    table_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, macro_pretrain=dataclasses.replace(
            cfg.train.macro_pretrain, alloc_target="regime_table", alloc_temperature=100.0)))
    plain = prepare_macro(cfg, market, meta, feats, pool)
    prep = prepare_macro(table_cfg, market, meta, feats, pool)
    table = ds.regime_table(_real(plain.train))   # both markets' training samples
    np.testing.assert_allclose(prep.info["regime_table"], np.round(table, 6), atol=1e-9)
    want = ds.with_table_target(_real(plain.val), table, 100.0).alloc_target
    np.testing.assert_allclose(np.asarray(_real(prep.val).alloc_target), np.asarray(want),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(prep.hp.class_weights),
                               np.asarray(plain.hp.class_weights), rtol=0)
    assert prep.info["alloc_target"] == "regime_table" and plain.info["alloc_target"] == "returns"


def test_fitted_micro_target_is_fitted_on_the_pooled_training_samples(smoke_market, pooled):
    from hrl_sarp_jax.training.runner import check_pretrain_config
    from hrl_sarp_jax.training.runner import pooled as pool_sets

    _, market, meta, feats, _ = smoke_market
    _, cfg, pool = pooled
    fitted_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, micro_pretrain=dataclasses.replace(
            cfg.train.micro_pretrain, alloc_target="fitted", alloc_temperature=1.5,
            target_horizon=3)))
    prep = prepare_micro(fitted_cfg, market, meta, feats, pool)
    _, train, val, _ = pool_sets(ds.micro_datasets, market, meta, feats, fitted_cfg, pool)
    fit = ds.fit_within_forecast(train, market.num_sectors)   # both markets' training samples
    assert prep.info["forecast"]["score_sd"] == pytest.approx(float(fit.score_sd))
    assert prep.info["alloc_target"] == "fitted" and prep.info["forecast"]["horizon_days"] == 3
    want = ds.with_forecast_target(val, fit, 1.5, market.num_sectors).within
    np.testing.assert_allclose(np.asarray(_real(prep.val).samples.within), np.asarray(want),
                               rtol=1e-6)
    # the default target is unchanged and the forward returns never reach the trainer
    plain = prepare_micro(cfg, market, meta, feats, pool)
    assert plain.info["alloc_target"] == "returns" and "forecast" not in plain.info
    assert _real(plain.val).samples.forward is None and _real(prep.val).samples.forward is None
    assert plain.train.data.samples.forward is None  # the trainer's programs see no new leaf
    _, _, val_plain, _ = pool_sets(ds.micro_datasets, market, meta, feats, cfg, pool)
    np.testing.assert_array_equal(np.asarray(_real(plain.val).samples.within),
                                  np.asarray(val_plain.within))
    cases = [("micro_pretrain", {"alloc_target": "regime_table"}, "alloc_target"),
             ("macro_pretrain", {"alloc_target": "fitted"}, "alloc_target"),
             ("micro_pretrain", {"alloc_target": "fitted", "forecast_features": ("pe",)},
              "forecast_features"),
             ("micro_pretrain", {"forecast_features": ("pe_z",)}, "forecast_features")]
    for where, kw, key in cases:
        p = dataclasses.replace(getattr(cfg.train, where), **kw)
        with pytest.raises(ConfigError, match=f"train.{where}.{key}") as e:
            check_pretrain_config(p, where)
        assert "\n" not in str(e.value)
