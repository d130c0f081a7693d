"""Supervised samples: targets from the following period, hand-computed oracle, goal-consistent
micro targets, the date split with its embargo, and causality by perturbation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import DataConfig, FeatureConfig
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.features.build import build_features
from hrl_sarp_jax.features.regime import next_week_end
from hrl_sarp_jax.training import datasets as ds
from hrl_sarp_jax.training.pretrain import goal_target, sample_goals


def test_compound_returns_hand_values():
    r = np.array([[0.0, 0.0], [0.1, -0.5], [0.2, 1.0], [0.5, 0.0]])
    got = ds.compound_returns(r, np.array([0, 1, 0]), np.array([2, 3, 3]))
    # (0, 2]: 1.1*1.2-1 = 0.32, 0.5*2-1 = 0;  (1, 3]: 1.2*1.5-1 = 0.8, 2*1-1 = 1
    # (0, 3]: 1.1*1.2*1.5-1 = 0.98, 0.5*2*1-1 = 0
    np.testing.assert_allclose(got, [[0.32, 0.0], [0.8, 1.0], [0.98, 0.0]], atol=1e-12)


def test_next_week_end_matches_the_features_helper():
    rng = np.random.default_rng(0)
    we = rng.random(50) < 0.25
    want = np.asarray(next_week_end(jnp.asarray(we)))
    np.testing.assert_array_equal(ds.next_week_end_np(we), want)


def test_oracle_allocation_hand_computed(small_built):
    built, feats = small_built
    m = built.market
    we = np.asarray(m.week_end)
    t = int(np.flatnonzero(we)[30])  # a week end with every sector's features available
    nxt = int(ds.next_week_end_np(we)[t])
    assert np.asarray(feats.sector_mask)[t, :3].all() and not np.asarray(feats.sector_mask)[t, 3]
    sr = np.asarray(m.sector_returns).copy()
    sr[t + 1: nxt + 1] = 0.0
    sr[t + 1, 0] = 0.10   # sector 0 gains 10% over the next week, sector 1 loses 5%
    sr[nxt, 1] = -0.05
    market = m.replace(sector_returns=jnp.asarray(sr, jnp.float32))
    s = ds.macro_samples(market, feats, np.array([t]), alloc_temperature=10.0, min_cash=0.02)
    # R = [0.10, -0.05, 0, (padding)]; target = softmax(10 R) over the 3 valid sectors
    e = np.exp([1.0, -0.5, 0.0])
    np.testing.assert_allclose(s.alloc_target[0], [*(e / e.sum()), 0.0], rtol=1e-5)
    np.testing.assert_allclose(s.next_returns[0], [0.10, -0.05, 0.0, 0.0], rtol=1e-6)
    assert int(s.regime[0]) == int(feats.regime_label[t])
    # the honest "current portfolio": equal weight * (1 - min_cash), cash = min_cash, dd = 0
    np.testing.assert_allclose(s.inputs.sector_features[0, :3, -1], 0.98, rtol=1e-6)
    np.testing.assert_allclose(s.inputs.portfolio[0], [0.02, 0.0])


def test_micro_target_is_goal_consistent(small_built):
    built, feats = small_built
    days = np.arange(60, 200, 7)
    s = ds.micro_samples(built.market, feats, days, alloc_temperature=20.0, min_cash=0.02)
    goals = sample_goals(jax.random.key(3), s.sector_active, jnp.array([0.5, 0.2, 0.3]))
    target = np.asarray(goal_target(s, goals))
    sector = np.asarray(s.stock_sector)
    mask = np.asarray(s.stock_mask)
    num_s = goals.shape[1] - 3
    g = np.asarray(goals)
    for b in range(len(days)):
        for sec in range(num_s):
            members = (sector[b] == sec) & mask[b]
            np.testing.assert_allclose(target[b, members].sum(), g[b, sec] * members.any(),
                                       atol=1e-6)
            if members.any():  # inside the sector, softmax(20 r_{t+1})
                r = np.asarray(built.market.returns)[days[b] + 1, members]
                e = np.exp(20.0 * (r - r.max()))
                np.testing.assert_allclose(np.asarray(s.within)[b, members], e / e.sum(),
                                           rtol=2e-5)
    np.testing.assert_allclose(target.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(g[:, num_s:].sum(1), 1.0)  # a regime one-hot
    assert set(np.unique(g[:, num_s:])) <= {0.0, 1.0}
    assert np.all(target[~mask] == 0)


def test_split_embargo_keeps_every_target_inside_its_split(small_built):
    built, feats = small_built
    dates = np.asarray(built.meta.dates)
    split = ds.split_days(dates, DataConfig(val_start="2021-07-01", test_start="2021-10-01"))
    tr, va = ds.macro_split_days(built.market, feats, split)
    nxt = ds.next_week_end_np(np.asarray(built.market.week_end))
    assert tr.size > 5 and va.size > 5
    assert nxt[tr].max() < split.val_start <= va.min()
    assert nxt[va].max() < split.test_start
    mtr, mva = ds.micro_split_days(built.market, split)
    assert mtr.max() + 1 < split.val_start <= mva.min() and mva.max() + 1 < split.test_start
    htr, hva = ds.micro_split_days(built.market, split, horizon=5)
    assert htr.max() + 5 < split.val_start <= hva.min() and hva.max() + 5 < split.test_start
    assert htr.max() == mtr.max() - 4


def test_micro_target_over_a_horizon_compounds_the_next_days(small_built):
    built, feats = small_built
    days = np.array([60, 97, 150])
    s = ds.micro_samples(built.market, feats, days, 20.0, 0.02, horizon=5)
    ret, sector = np.asarray(built.market.returns, np.float64), np.asarray(s.stock_sector)[0]
    for b, t in enumerate(days):
        compound = np.prod(1.0 + ret[t + 1: t + 6], axis=0) - 1.0
        members = (sector == 0) & np.asarray(s.stock_mask)[b]
        e = np.exp(20.0 * (compound[members] - compound[members].max()))
        np.testing.assert_allclose(np.asarray(s.within)[b, members], e / e.sum(), rtol=5e-5)
        np.testing.assert_allclose(s.next_returns[b], np.where(s.stock_mask[b], ret[t + 1], 0),
                                   rtol=1e-6)  # the reported return stays next-day
    with pytest.raises(DataError, match="5 following"):
        ds.micro_samples(built.market, feats, np.array([built.market.num_days - 3]), 20.0, 0.02,
                         horizon=5)


def test_split_errors_name_the_key(small_built):
    dates = np.asarray(small_built[0].meta.dates)
    with pytest.raises(ConfigError, match=r"data\.val_start"):
        ds.split_days(dates, DataConfig(val_start="2020-01-01", test_start="2021-06-01"))
    with pytest.raises(ConfigError, match=r"before data\.test_start"):
        ds.split_days(dates, DataConfig(val_start="2021-06-01", test_start="2021-03-01"))


def _perturb_after(market, t: int, seed: int = 5):
    """Every price, return and regime after day t redrawn; day <= t untouched."""
    rng = np.random.default_rng(seed)
    T = market.num_days

    def redo_close(close, returns, valid):
        r = np.asarray(returns).copy()
        r[t + 1:] = np.where(np.asarray(valid)[t + 1:], rng.normal(0, 0.03, r[t + 1:].shape), 0.0)
        c = np.asarray(close, np.float64).copy()
        for d in range(t + 1, T):
            c[d] = np.where(c[d - 1] > 0, c[d - 1] * (1 + r[d]), c[d])
        return jnp.asarray(c, jnp.float32), jnp.asarray(r, jnp.float32)

    close, ret = redo_close(market.close, market.returns, market.stock_mask)
    sclose, sret = redo_close(market.sector_close, market.sector_returns, market.sector_mask)
    bench = np.asarray(market.benchmark_close).copy()
    bench[t + 1:] *= np.exp(np.cumsum(rng.normal(0, 0.03, T - t - 1)))
    lat = np.asarray(market.latent_regime).copy()
    lat[t + 1:] = (lat[t + 1:] + 1) % 3
    return market.replace(close=close, returns=ret, sector_close=sclose, sector_returns=sret,
                          benchmark_close=jnp.asarray(bench, jnp.float32),
                          latent_regime=jnp.asarray(lat))


def test_causality_inputs_at_t_unchanged_targets_change(small_built):
    built, feats = small_built
    m = built.market
    t = int(np.flatnonzero(np.asarray(m.week_end))[30])
    m2 = _perturb_after(m, t)
    feats2 = build_features(m2, FeatureConfig(), built.meta.macro_names,
                            built.meta.fundamental_names)
    a = ds.macro_samples(m, feats, np.array([t]), 10.0, 0.02)
    b = ds.macro_samples(m2, feats2, np.array([t]), 10.0, 0.02)
    for x, y in zip(a.inputs, b.inputs, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.next_returns, b.next_returns)
    assert not np.allclose(a.alloc_target, b.alloc_target)
    assert int(a.regime[0]) != int(b.regime[0])  # latent regime after t shifted by one
    np.testing.assert_array_equal(a.persistence, b.persistence)  # the week just ended

    ma = ds.micro_samples(m, feats, np.array([t]), 20.0, 0.02)
    mb = ds.micro_samples(m2, feats2, np.array([t]), 20.0, 0.02)
    for name in ("stock", "stock_mask", "stock_sector", "current_weights", "sector_active"):
        np.testing.assert_array_equal(getattr(ma, name), getattr(mb, name))
    assert not np.allclose(ma.next_returns, mb.next_returns)
    assert not np.allclose(ma.within, mb.within)


def test_target_horizon_below_one_names_the_key():
    import dataclasses

    from hrl_sarp_jax.config import Config

    cfg = Config()
    with pytest.raises(ConfigError, match=r"'train\.micro_pretrain\.target_horizon' = 0 must "
                                          r"be >= 1 \(trading days\)"):
        dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, micro_pretrain=dataclasses.replace(cfg.train.micro_pretrain,
                                                          target_horizon=0)))


def test_regime_table_target_hand_computed(small_built):
    built, feats = small_built
    m = built.market
    we = np.asarray(m.week_end)
    days = np.flatnonzero(we)[30:34]   # four week ends with the 3 real sectors valid
    s = ds.macro_samples(m, feats, days, alloc_temperature=10.0, min_cash=0.02)
    # give the four samples labels 0, 0, 1, 2 and known next-week returns
    r = np.array([[0.02, 0.00, -0.01, 0.0], [0.04, 0.02, 0.01, 0.0],
                  [-0.03, 0.01, 0.02, 0.0], [0.00, 0.01, 0.00, 0.0]])
    s = s.replace(regime=jnp.asarray([0, 0, 1, 2], jnp.int32),
                  next_returns=jnp.asarray(r, jnp.float32))
    table = ds.regime_table(s)
    np.testing.assert_allclose(table[:, :3], [[0.03, 0.01, 0.0], [-0.03, 0.01, 0.02],
                                              [0.00, 0.01, 0.00]], atol=1e-8)
    assert np.all(table[:, 3] == 0.0)  # the padding sector is never valid: its all-label mean
    out = ds.with_table_target(s, table, temperature=100.0)
    e = np.exp(100.0 * np.array([0.03, 0.01, 0.0]))
    np.testing.assert_allclose(np.asarray(out.alloc_target[1]), [*(e / e.sum()), 0.0],
                               rtol=1e-5)
    e = np.exp(100.0 * np.array([-0.03, 0.01, 0.02]))
    np.testing.assert_allclose(np.asarray(out.alloc_target[2]), [*(e / e.sum()), 0.0],
                               rtol=1e-5)
    # inputs, labels and realised returns untouched: only the target changes
    np.testing.assert_allclose(np.asarray(out.next_returns), r, atol=1e-7)


def test_sample_gathers_are_numpys_and_targets_the_op_by_op_softmax(small_built):
    """The builders' gathers run as one jitted program per sample count: pure data movement,
    so equal to NumPy's indexing exactly; the softmax targets stay the op-by-op computation
    (compiled into one program their exp rounds differently, which would move every later
    phase), so equal to it exactly as well."""
    from hrl_sarp_jax.networks.common import masked_softmax

    built, feats = small_built
    m = built.market
    days = np.flatnonzero(np.asarray(m.week_end))[20:40]
    s = ds.macro_samples(m, feats, days, alloc_temperature=10.0, min_cash=0.02)
    np.testing.assert_array_equal(s.inputs.adjacency, np.asarray(feats.adjacency)[days])
    np.testing.assert_array_equal(s.inputs.sector_features[..., :-1],
                                  np.asarray(feats.sector)[days])
    np.testing.assert_array_equal(s.regime, np.asarray(feats.regime_label)[days])
    np.testing.assert_array_equal(s.persistence, np.asarray(feats.regime_rule)[days])
    np.testing.assert_array_equal(s.day, days)
    want = jax.vmap(masked_softmax)(10.0 * jnp.asarray(s.next_returns), s.inputs.sector_mask)
    np.testing.assert_array_equal(s.alloc_target, want)
    d = np.arange(60, 90)
    mi = ds.micro_samples(m, feats, d, alloc_temperature=20.0, min_cash=0.02)
    mask = np.asarray(m.stock_mask)[d] & np.asarray(m.stock_valid)[None, :]
    np.testing.assert_array_equal(mi.stock, np.asarray(feats.stock)[d])
    np.testing.assert_array_equal(mi.stock_mask, mask)
    np.testing.assert_array_equal(mi.next_returns,
                                  np.where(mask, np.asarray(m.returns)[d + 1], 0.0))
    score = jnp.where(mask, jnp.prod(1.0 + m.returns[jnp.asarray(d)[:, None] + 1], axis=1) - 1.0,
                      0.0).astype(jnp.float32)
    within = jax.vmap(ds.within_sector_softmax, in_axes=(0, 0, None, None))(
        20.0 * score, mask, jnp.asarray(m.stock_sector, jnp.int32), m.num_sectors)
    np.testing.assert_array_equal(mi.within, within)


def _planted_samples(days: int = 400, seed: int = 0) -> ds.MicroSamples:
    """Two sectors of 3 names, 4 features; the 3-day forward return in excess of the sector's
    is 0.02 * feature 1 (within the sector) plus noise, and every sector and day has its own
    level in both the features and the returns (which the within-sector fit must ignore)."""
    rng = np.random.default_rng(seed)
    n, f = 6, 4
    sector = np.array([0, 0, 0, 1, 1, 1])
    x = rng.standard_normal((days, n, f)) + 5.0 * rng.standard_normal((days, 1, 1))
    level = rng.standard_normal((days, 2))[:, sector]                # per day and sector
    fwd = 0.02 * x[..., 1] + level + 0.005 * rng.standard_normal((days, n))
    mask = np.ones((days, n), bool)
    mask[::7, 2] = False                                             # a name not tradable
    fwd = np.where(mask, fwd, 0.0)
    z = np.zeros((days, n), np.float32)
    return ds.MicroSamples(
        stock=jnp.asarray(x, jnp.float32), stock_mask=jnp.asarray(mask),
        stock_sector=jnp.asarray(np.broadcast_to(sector, (days, n)), jnp.int32),
        current_weights=jnp.asarray(z), within=jnp.asarray(z), next_returns=jnp.asarray(z),
        sector_active=jnp.ones((days, 2), bool), day=jnp.arange(days, dtype=jnp.int32),
        forward=jnp.asarray(fwd, jnp.float32))


def test_within_forecast_recovers_a_planted_edge_and_matches_numpy():
    s = _planted_samples()
    fit = ds.fit_within_forecast(s, num_sectors=2, ridge=0.0)
    per_unit = np.asarray(fit.coef) / np.asarray(fit.scale)         # per unit of each feature
    np.testing.assert_allclose(per_unit, [0.0, 0.02, 0.0, 0.0], atol=1e-3)
    # the same regression by NumPy: both sides minus their (day, sector) mean, lstsq
    x, y = np.asarray(s.stock, np.float64), np.asarray(s.forward, np.float64)
    m, sec = np.asarray(s.stock_mask), np.asarray(s.stock_sector[0])
    rows_x, rows_y = [], []
    for b in range(x.shape[0]):
        for k in range(2):
            on = m[b] & (sec == k)
            rows_x.append(x[b, on] - x[b, on].mean(0))
            rows_y.append(y[b, on] - y[b, on].mean())
    want, *_ = np.linalg.lstsq(np.concatenate(rows_x), np.concatenate(rows_y), rcond=None)
    np.testing.assert_allclose(per_unit, want, rtol=1e-4, atol=1e-7)
    # restricted to some columns: 0 elsewhere, and on one column the univariate slope
    only = ds.fit_within_forecast(s, num_sectors=2, ridge=0.0, columns=(1,))
    assert np.count_nonzero(np.asarray(only.coef)) == 1
    xs = np.concatenate(rows_x)[:, 1]
    np.testing.assert_allclose(float(only.coef[1]) / float(only.scale[1]),
                               xs @ np.concatenate(rows_y) / (xs @ xs), rtol=1e-4)
    # ridge shrinks towards 0
    shrunk = ds.fit_within_forecast(s, num_sectors=2, ridge=1.0)
    assert abs(float(shrunk.coef[1])) < 0.6 * abs(float(fit.coef[1]))


def test_forecast_target_is_a_within_sector_softmax_of_the_scaled_score():
    s = _planted_samples(days=50)
    fit = ds.fit_within_forecast(s, num_sectors=2)
    out = ds.with_forecast_target(s, fit, temperature=2.0, num_sectors=2)
    assert out.forward is None
    score = ((np.asarray(s.stock, np.float64) - np.asarray(fit.mean)) / np.asarray(fit.scale)
             ) @ np.asarray(fit.coef, np.float64) / float(fit.score_sd)
    b = 7  # day 7: name 2 is not tradable
    assert not bool(s.stock_mask[b, 2])
    for names in ([0, 1], [3, 4, 5]):
        e = np.exp(2.0 * score[b, names])
        np.testing.assert_allclose(np.asarray(out.within)[b, names], e / e.sum(), rtol=1e-4)
    assert float(out.within[b, 2]) == 0.0
    # the name with the higher feature 1 gets more of its sector, by the hand softmax above
    np.testing.assert_allclose(np.asarray(out.within).sum(1), 2.0, rtol=1e-5)
    with pytest.raises(ValueError, match="no forward returns"):
        ds.fit_within_forecast(out, num_sectors=2)


def test_micro_samples_carry_the_forward_return(small_built):
    built, feats = small_built
    days = np.arange(60, 70)
    s = ds.micro_samples(built.market, feats, days, 20.0, 0.02, horizon=3)
    r = np.asarray(built.market.returns, np.float64)
    want = np.prod(1.0 + r[days[:, None] + np.arange(1, 4)], axis=1) - 1.0
    np.testing.assert_allclose(np.asarray(s.forward), np.where(s.stock_mask, want, 0.0),
                               rtol=1e-5, atol=1e-6)
