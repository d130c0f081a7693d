"""The embedded synthetic market: determinism, file contracts, mechanics and stylized facts.

Every generation uses one shape (preset 'nse', 2 stocks per sector, 2012-2019) so the jitted
programs compile once for the module; mechanics are checked on small pure pieces.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from hrl_sarp_jax.config import SynthConfig
from hrl_sarp_jax.data import io, schema
from hrl_sarp_jax.data import synthetic as sy
from hrl_sarp_jax.data import synthetic_core as core
from hrl_sarp_jax.data import synthetic_presets as presets
from hrl_sarp_jax.data.calendar import trading_days
from hrl_sarp_jax.errors import ConfigError, DataError

CFG = SynthConfig(preset="nse", seed=3, start="2012-01-01", end="2019-12-31", stocks_per_sector=2)
FILES = sorted([*schema.SCHEMAS, schema.META_FILE])


@pytest.fixture(scope="module")
def market_dir(tmp_path_factory):
    return sy.write_synthetic_market(tmp_path_factory.mktemp("synth") / "a", CFG)


@pytest.fixture(scope="module")
def tables(market_dir):
    return {name: io.read_table(market_dir / name) for name in schema.SCHEMAS}


@pytest.fixture(scope="module")
def setup():
    """(params, dates, event_day, shocks, arrays) of CFG through the shared jitted programs."""
    params = presets.make_params(CFG.preset, CFG.stocks_per_sector)
    dates = sy.synth_dates(CFG)
    event_day = jnp.asarray(sy.event_schedule(dates))
    shocks = sy.draw_shocks_jit(jax.random.key(CFG.seed), params, len(dates))
    arrays = jax.device_get(sy.simulate_jit(params, shocks, event_day))
    return params, dates, event_day, shocks, arrays


@pytest.fixture(scope="module")
def facts(market_dir):
    return sy.stylized_facts(market_dir)


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(market_dir, tmp_path):
    again = sy.write_synthetic_market(tmp_path / "b", CFG)
    assert sorted(p.name for p in again.iterdir()) == FILES
    for name in FILES:
        assert (market_dir / name).read_bytes() == (again / name).read_bytes(), name


def test_markets_in_memory_are_the_written_folder_loaded(market_dir):
    """synthetic_markets (the many-market instrument's source) = write_synthetic_market then
    load_market, bit for bit: the same generator program and the same host loader code, the
    Parquet bytes (lossless) left out. Seed 4 differs from the folder's seed 3."""
    from hrl_sarp_jax.config import DataConfig
    from hrl_sarp_jax.data.loader import load_market

    data_cfg = DataConfig()
    (s3, a3, m3), (s4, a4, _) = list(sy.synthetic_markets(CFG, data_cfg, [3, 4]))
    disk, meta = load_market(market_dir, data_cfg)
    assert (s3, s4) == (3, 4)
    for name in disk.__dataclass_fields__:
        np.testing.assert_array_equal(np.asarray(getattr(a3, name)),
                                      np.asarray(getattr(disk, name)), err_msg=name)
    assert m3.tickers == meta.tickers and m3.sectors == meta.sectors
    np.testing.assert_array_equal(m3.dates, meta.dates)
    assert not np.array_equal(np.asarray(a4.returns), np.asarray(a3.returns))
    with pytest.raises(ConfigError, match="market seed"):
        next(sy.synthetic_markets(CFG, data_cfg, [-1]))


def test_different_seed_gives_different_market(market_dir, tables, tmp_path):
    other = sy.write_synthetic_market(tmp_path / "c", dataclasses.replace(CFG, seed=CFG.seed + 1))
    prices = io.read_table(other / schema.PRICES_FILE)
    assert not np.allclose(
        prices["close"].to_numpy(), tables[schema.PRICES_FILE]["close"].to_numpy()
    )
    regimes = io.read_table(other / schema.REGIMES_FILE)["regime"].to_numpy()
    assert (regimes != tables[schema.REGIMES_FILE]["regime"].to_numpy()).any()


def test_vmap_over_keys_equals_single_calls(setup):
    params, dates, event_day, _, _ = setup
    keys = jax.random.split(jax.random.key(11), 3)
    batched_generate = jax.jit(
        jax.vmap(core.generate, in_axes=(0, None, None)), compiler_options=sy.FAST_COMPILE
    )
    batched = batched_generate(keys, params, event_day)
    singles = [
        sy.simulate_jit(params, sy.draw_shocks_jit(k, params, len(dates)), event_day) for k in keys
    ]
    for i, one in enumerate(singles):
        np.testing.assert_array_equal(batched.regime[i], one.regime)
        np.testing.assert_allclose(batched.log_return[i], one.log_return, rtol=1e-5, atol=1e-6)
        scale = np.abs(np.asarray(one.macro)).max(0) + 1.0  # flows are in the thousands
        np.testing.assert_allclose(batched.macro[i] / scale, one.macro / scale, atol=1e-5)
        np.testing.assert_allclose(batched.sentiment[i], one.sentiment, rtol=1e-5, atol=1e-6)
    assert not np.allclose(singles[0].log_return, singles[1].log_return)
    assert not np.allclose(singles[1].log_return, singles[2].log_return)


# --------------------------------------------------------------------------- file contracts


def test_files_follow_the_canonical_schema_and_calendar(market_dir, tables, setup):
    dates = setup[1]
    np.testing.assert_array_equal(dates, trading_days(CFG.start, CFG.end, "XBOM"))
    for name, df in tables.items():
        assert list(df.columns) == schema.SCHEMAS[name].names or name == schema.PRICES_FILE, name
    prices = tables[schema.PRICES_FILE]
    expected_cols = [c for c in schema.PRICES_SCHEMA.names if c != "adj_close"]
    assert list(prices.columns) == expected_cols
    assert not prices.duplicated(["date", "ticker"]).any()
    n = 11 * CFG.stocks_per_sector
    assert len(prices) == len(dates) * n
    per_date = prices.groupby("date")["ticker"].count()
    assert (per_date == n).all()
    np.testing.assert_array_equal(
        pd.to_datetime(per_date.index).values.astype("datetime64[D]"), dates
    )
    for name in (schema.MACRO_FILE, schema.INDEX_FILE, schema.REGIMES_FILE):
        got = pd.to_datetime(tables[name]["date"]).values.astype("datetime64[D]")
        np.testing.assert_array_equal(got, dates, err_msg=name)
    assert set(tables[schema.REGIMES_FILE]["regime"].unique()) <= {0, 1, 2}
    assert tables[schema.REGIMES_FILE]["regime"].dtype == np.int8
    score = tables[schema.SENTIMENT_FILE]["score"]
    assert score.between(-1, 1).all() and score.std() > 0.05
    meta = io.read_meta(market_dir)
    assert meta["sectors"] == list(presets.PRESET_SECTORS["nse"])
    assert meta["synthetic"] is True and meta["seed"] == CFG.seed and meta["calendar"] == "XBOM"
    assert meta["market"] == "synthetic-nse" and meta["generator_version"] == 1
    sector_of = prices.drop_duplicates("ticker").set_index("ticker")["sector"]
    assert sector_of["TCS"] == "IT" and sector_of["HDFCBANK"] == "Financials"
    assert not tables[schema.MACRO_FILE].isna().any().any()


def test_prices_are_consistent(tables):
    p = tables[schema.PRICES_FILE]
    o, h, lo, c = (p[k].to_numpy() for k in ("open", "high", "low", "close"))
    assert (lo > 0).all()
    assert (lo <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all()
    assert (h > lo).mean() > 0.99
    assert (p["volume"] > 0).all() and (p["volume"] == np.round(p["volume"])).all()
    assert p["delivery_pct"].between(0, 100).all()
    assert set(np.round(p["circuit_band"], 6).unique()) <= {0.05, 0.1, 0.2}
    wide = p.pivot(index="date", columns="ticker", values="close")
    band = p.drop_duplicates("ticker").set_index("ticker")["circuit_band"][wide.columns].to_numpy()
    ret = wide.pct_change().to_numpy()[1:]
    assert (np.abs(ret) <= band + 1e-12).all()
    opens = p.pivot(index="date", columns="ticker", values="open")[wide.columns].to_numpy()[1:]
    gap = opens / wide.to_numpy()[:-1] - 1
    assert (np.abs(gap) <= band + 1e-6).all()
    # market_cap = shares x close with constant shares
    shares = (p["market_cap"] / p["close"]).groupby(p["ticker"]).agg(["min", "max"])
    np.testing.assert_allclose(shares["min"], shares["max"], rtol=1e-12)


def test_index_is_the_cap_weighted_universe(tables):
    p, idx = tables[schema.PRICES_FILE], tables[schema.INDEX_FILE]
    mcap = p.groupby("date")["market_cap"].sum().to_numpy()
    np.testing.assert_allclose(idx["close"].to_numpy(), 10_000.0 * mcap / mcap[0], rtol=1e-12)
    # Same thing as previous-day cap weights times returns.
    wide_c = p.pivot(index="date", columns="ticker", values="close")
    wide_m = p.pivot(index="date", columns="ticker", values="market_cap")
    w = wide_m.to_numpy()[:-1] / wide_m.to_numpy()[:-1].sum(1, keepdims=True)
    r = wide_c.pct_change().to_numpy()[1:]
    np.testing.assert_allclose(idx["close"].pct_change().to_numpy()[1:], (w * r).sum(1), atol=1e-12)


def test_fundamentals_are_published_45_days_after_quarter_end(tables, setup):
    _, dates, _, _, arrays = setup
    obs, pub = sy.publication_rows(dates)
    assert obs[0] == 0 and pub[0] == 0
    assert (pub[1:] > obs[1:]).all()
    lag = (dates[pub[1:]] - dates[obs[1:]]).astype(int)
    assert (lag >= 45).all() and (lag <= 60).all()
    assert len(obs) == 1 + 4 * 8 - 1  # quarters of 2012..2019 whose +45 d falls in range
    f = tables[schema.FUNDAMENTALS_FILE]
    assert list(f.columns) == ["date", "ticker", *schema.FUNDAMENTAL_FIELDS]
    n = arrays.log_return.shape[1]
    assert len(f) == len(pub) * n
    got = f[list(schema.FUNDAMENTAL_FIELDS)].to_numpy().reshape(len(pub), n, -1)
    np.testing.assert_allclose(got, np.asarray(arrays.fundamentals, np.float64)[obs], rtol=1e-6)
    assert (f["pe"] > 0).all() and f["free_float"].between(10, 95).all()
    # cheap stocks (high cheapness factor) have low P/E within their sector: value premium signal
    cheap = np.asarray(arrays.cheapness)[obs].reshape(-1)
    assert np.corrcoef(cheap, -np.log(f["pe"].to_numpy()))[0, 1] > 0.3


def test_event_schedule_hand_checked():
    dates = trading_days("2019-01-01", "2019-12-31", "XBOM")
    ev = sy.event_schedule(dates)
    day = lambda s: int(np.searchsorted(dates, np.datetime64(s)))  # noqa: E731
    assert ev[day("2019-02-01")] == core.EVENT_BUDGET  # Friday
    assert ev[day("2019-02-06")] == core.EVENT_MPC  # Wednesday
    assert ev[day("2019-04-08")] == core.EVENT_MPC  # 6 Apr is a Saturday
    assert (ev == core.EVENT_MPC).sum() == 6 and (ev == core.EVENT_BUDGET).sum() == 1


# --------------------------------------------------------------------------- mechanics


def test_apply_circuit_matches_numpy_loop():
    rng = np.random.default_rng(0)
    desired = rng.normal(0.0, 0.06, (40, 3)).astype(np.float32)
    desired[5, 0] = -0.3  # a crash that locks stock 0 for several days
    band = np.array([0.05, 0.1, 0.2], np.float32)
    realized, lock = core.apply_circuit(jnp.asarray(desired), jnp.asarray(band))
    lo, hi = np.log1p(-band), np.log1p(band)
    pending = np.zeros(3, np.float32)
    ref_r, ref_l = np.zeros_like(desired), np.zeros(desired.shape, np.int8)
    for t in range(40):
        y = desired[t] + pending
        ref_r[t] = np.clip(y, lo, hi)
        ref_l[t] = (y > hi).astype(np.int8) - (y < lo).astype(np.int8)
        pending = y - ref_r[t]
    np.testing.assert_allclose(realized, ref_r, atol=1e-6)
    np.testing.assert_array_equal(lock, ref_l)
    assert (np.asarray(lock)[5:11, 0] == -1).all()  # -0.3 takes 6+ days at -5.1% a day
    # nothing is lost: realized + what is still pending = desired, in total
    np.testing.assert_allclose(np.asarray(realized).sum(0) + pending, desired.sum(0), atol=1e-5)


def test_regime_durations_match_the_transition_matrix():
    p = presets.transition_matrix()
    u = jax.random.uniform(jax.random.key(5), (60_000,), jnp.float32)
    path = np.asarray(
        jax.jit(core.regime_path)(
            jnp.asarray(p, jnp.float32), jnp.asarray(presets.stationary(p), jnp.float32), u
        )
    )
    values, lengths = sy._run_lengths(path)
    for r in range(3):
        theory = 1.0 / (1.0 - p[r, r])
        assert theory == pytest.approx(presets.MEAN_DURATION[r])
        assert lengths[values == r][:-1].mean() == pytest.approx(theory, rel=0.15), r
    np.testing.assert_allclose(
        np.bincount(path, minlength=3) / len(path), presets.stationary(p), atol=0.04
    )


def test_crashes_start_in_bear_and_drop_sectors_by_their_profile(setup):
    params, _, event_day, shocks, _ = setup
    calm = params.replace(crash_intensity=jnp.zeros(3, jnp.float32))
    bear_only = params.replace(crash_intensity=jnp.array([0.0, 0.05, 0.0], jnp.float32))
    a0 = sy.simulate_jit(calm, shocks, event_day)
    a1 = sy.simulate_jit(bear_only, shocks, event_day)
    assert not np.asarray(a0.crash).any()
    crash, regime = np.asarray(a1.crash), np.asarray(a1.regime)
    starts = np.flatnonzero(crash & ~np.concatenate([[False], crash[:-1]]))
    assert len(starts) >= 3
    assert (regime[starts] == 1).all()
    values, lengths = sy._run_lengths(crash.astype(np.int8))
    assert set(lengths[values == 1][:-1]) <= {5, 10, 15}  # back-to-back crashes merge runs
    t0 = starts[0]
    np.testing.assert_array_equal(a0.sector_factor[:t0], a1.sector_factor[:t0])
    drop = (np.asarray(a0.sector_factor[t0]) - np.asarray(a1.sector_factor[t0])) / np.asarray(
        params.crash_profile
    )
    np.testing.assert_allclose(drop, drop[0], rtol=1e-4)  # one size, scaled by each profile
    lo, hi = np.asarray(params.crash_size) / int(params.crash_days)
    assert lo - 1e-6 <= drop[0] <= hi + 1e-6


def test_value_premium_adds_drift_in_proportion_to_cheapness(setup):
    params, _, event_day, shocks, _ = setup
    a0 = sy.simulate_jit(params.replace(value_premium=jnp.float32(0.0)), shocks, event_day)
    a1 = sy.simulate_jit(params.replace(value_premium=jnp.float32(0.001)), shocks, event_day)
    free = np.asarray(a0.circuit_lock[0] == 0) & np.asarray(a1.circuit_lock[0] == 0)
    diff = np.asarray(a1.log_return[0] - a0.log_return[0])[free]
    np.testing.assert_allclose(diff, 0.001 * np.asarray(a0.cheapness[0])[free], atol=2e-6)


def test_every_series_at_t_is_unchanged_when_later_shocks_change(setup):
    params, dates, event_day, shocks, base = setup
    t0 = 500
    other = sy.draw_shocks_jit(jax.random.key(999), params, len(dates))
    per_day = {"stock_u", "stock_z"}  # per-stock constants, not time-indexed

    def splice(name):
        a, b = getattr(shocks, name), getattr(other, name)
        return a if name in per_day else a.at[t0 + 1 :].set(b[t0 + 1 :])

    edited = shocks.replace(**{f.name: splice(f.name) for f in dataclasses.fields(shocks)})
    moved = jax.device_get(sy.simulate_jit(params, edited, event_day))
    for f in dataclasses.fields(base):
        x, y = np.asarray(getattr(base, f.name)), np.asarray(getattr(moved, f.name))
        if x.ndim == 0 or x.shape[0] != len(dates):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
            continue
        np.testing.assert_array_equal(x[: t0 + 1], y[: t0 + 1], err_msg=f.name)
        if f.name not in ("circuit_lock", "crash"):
            assert not np.array_equal(x[t0 + 1 :], y[t0 + 1 :]), f.name


# --------------------------------------------------------------------------- stylized facts


def test_stylized_facts_of_a_medium_market(facts):
    assert facts["num_days"] == len(trading_days(CFG.start, CFG.end))
    assert facts["num_stocks"] == 22 and facts["num_sectors"] == 11 and facts["oracle_top_k"] == 3
    assert facts["daily_return_kurtosis"] > 3.0
    for lag in range(1, 6):
        assert facts[f"abs_return_autocorr_lag{lag}"] > 0.05
    assert facts["within_sector_corr"] > facts["cross_sector_corr"] + 0.05
    for name in ("bull", "bear", "sideways"):
        assert 10.0 <= facts[f"regime_mean_duration_days_{name}"] <= 200.0
    shares = [facts[f"regime_share_{n}"] for n in ("bull", "bear", "sideways")]
    assert sum(shares) == pytest.approx(1.0) and min(shares) > 0.05
    assert -0.5 < facts["equal_weight_sharpe"] < 1.5
    assert facts["oracle_minus_equal_weight_sharpe"] >= 0.5
    assert 0.001 <= facts["circuit_hit_share"] <= 0.01


def test_stylized_facts_match_a_numpy_reference(facts, setup):
    params, _, _, _, a = setup
    r = np.expm1(np.asarray(a.log_return, np.float64))[1:]
    ew = r.mean(1)
    assert facts["equal_weight_sharpe"] == pytest.approx(
        ew.mean() / ew.std(ddof=1) * np.sqrt(252), abs=1e-6
    )
    drift = presets.sector_drift_annual("nse")
    top = np.argsort(-drift, axis=1)[:, :3]
    sid = np.asarray(params.stock_sector)
    sector = np.stack([r[:, sid == s].mean(1) for s in range(11)], 1)
    oracle = np.take_along_axis(sector, top[np.asarray(a.regime)[1:]], 1).mean(1)
    assert facts["oracle_sharpe"] == pytest.approx(
        oracle.mean() / oracle.std(ddof=1) * np.sqrt(252), abs=1e-6
    )
    assert facts["circuit_hit_share"] == pytest.approx(
        (np.asarray(a.circuit_lock)[1:] != 0).mean(), abs=1e-4
    )
    k = pd.Series(r[:, 0]).kurt() + 3.0  # pandas: bias-corrected excess kurtosis
    assert k > 3.0 and abs(k - ((r[:, 0] - r[:, 0].mean()) ** 4).mean() / r[:, 0].var() ** 2) < 0.1


def test_helpers_against_hand_values():
    values, lengths = sy._run_lengths(np.array([0, 0, 1, 1, 1, 0]))
    np.testing.assert_array_equal(values, [0, 1, 0])
    np.testing.assert_array_equal(lengths, [2, 3, 1])
    x = np.random.default_rng(1).normal(size=(50, 2))
    np.testing.assert_allclose(sy._autocorr(x, 2)[1], pd.Series(x[:, 1]).autocorr(2), atol=1e-12)


# --------------------------------------------------------------------------- errors and presets


def test_presets_and_bad_configs():
    small = presets.preset_tickers("small", 3)
    assert [s for _, s in small] == ["IT"] * 3 + ["FMCG"] * 3 + ["Metals"] * 3
    params = presets.make_params("small", 3)
    assert params.sector_beta.shape == (3,) and params.stock_sector.dtype == jnp.int32
    many = presets.preset_tickers("nse", 12)
    assert len({t for t, _ in many}) == 132 and many[10][0] == "SYNIT011"
    with pytest.raises(ConfigError, match=r"synth\.preset 'tiny'"):
        presets.preset_tickers("tiny", 3)
    with pytest.raises(ConfigError, match="stocks_per_sector"):
        presets.preset_tickers("nse", 0)
    with pytest.raises(ConfigError, match=r"before synth\.start"):
        sy.synth_dates(SynthConfig(start="2020-01-01", end="2019-01-01"))
    with pytest.raises(ConfigError, match="not a date"):
        sy.synth_dates(SynthConfig(start="yesterday"))
    with pytest.raises(ConfigError, match="widen the range"):
        sy.synth_dates(SynthConfig(start="2020-01-01", end="2020-01-10"))
    with pytest.raises(ConfigError, match=r"synth\.seed"):
        sy.write_synthetic_market(Path("/nonexistent"), SynthConfig(seed=2**40))


def test_stylized_facts_refuses_a_non_synthetic_folder(tmp_path):
    (tmp_path / schema.META_FILE).write_text('{"market": "real"}')
    with pytest.raises(DataError, match="needs a synthetic market"):
        sy.stylized_facts(tmp_path)


@pytest.mark.slow
def test_default_market_stylized_facts(tmp_path):
    """The embedded default market itself (preset 'nse', 5 per sector, 2012-2024, seed 0)."""
    out = sy.write_synthetic_market(tmp_path / "default", SynthConfig())
    f = sy.stylized_facts(out)
    assert f["num_stocks"] == 55 and f["num_sectors"] == 11 and f["num_days"] > 3000
    assert f["daily_return_kurtosis"] > 3.0
    assert min(f[f"abs_return_autocorr_lag{k}"] for k in range(1, 6)) > 0.05
    assert f["within_sector_corr"] > f["cross_sector_corr"]
    assert f["oracle_minus_equal_weight_sharpe"] >= 0.5
    assert 0.001 <= f["circuit_hit_share"] <= 0.01


# --------------------------------------------------------------------------- drift jitter


def test_alpha_jitter_draws_each_markets_own_drift_table():
    base = presets.sector_alpha_annual("nse")
    it = presets.preset_sectors("nse").index("IT")
    np.testing.assert_array_equal(base[:, it], [-0.07, 0.14, 0.10])  # SectorSpec by hand
    np.testing.assert_array_equal(presets.sector_alpha_annual("nse", 5, 0.0), base)
    got = presets.sector_alpha_annual("nse", 5, 0.05)
    z = np.random.default_rng([presets.ALPHA_JITTER_STREAM, 5]).standard_normal(base.shape)
    np.testing.assert_allclose(got, base + 0.05 * z, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(got, presets.sector_alpha_annual("nse", 5, 0.05))
    assert not np.allclose(got, presets.sector_alpha_annual("nse", 6, 0.05))
    # the drift table (what the oracle ranks by) moves by the same amounts
    np.testing.assert_allclose(presets.sector_drift_annual("nse", 5, 0.05)
                               - presets.sector_drift_annual("nse"), got - base, atol=1e-12)
    # the generator's daily drift is the jittered table / 252; the rest is the preset's
    a, b = presets.make_params("nse", 2), presets.make_params("nse", 2, 5, 0.05)
    np.testing.assert_allclose(np.asarray(b.sector_alpha), got / 252.0, rtol=1e-6)
    for name in a.__dataclass_fields__:
        if name != "sector_alpha":
            np.testing.assert_array_equal(np.asarray(getattr(a, name)),
                                          np.asarray(getattr(b, name)), err_msg=name)
    # jitter 0: the same parameters for every seed, bit for bit (the instrument's default)
    c = presets.make_params("nse", 2, 9, 0.0)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(ConfigError, match="alpha_jitter"):
        presets.sector_alpha_annual("nse", 0, -0.1)


def test_jittered_market_in_memory_is_its_folder_and_records_its_table(market_dir, tmp_path):
    from hrl_sarp_jax.config import DataConfig
    from hrl_sarp_jax.data.loader import load_market

    jit = dataclasses.replace(CFG, alpha_jitter=0.05)
    out = sy.write_synthetic_market(tmp_path / "j", jit)
    meta = json.loads((out / schema.META_FILE).read_text())
    assert meta["alpha_jitter"] == 0.05
    table = presets.sector_drift_annual(CFG.preset, CFG.seed, 0.05)
    sectors = presets.preset_sectors(CFG.preset)
    assert meta["sector_drift_annual"]["bear"][sectors[1]] == round(float(table[1, 1]), 6)
    assert "alpha_jitter" not in json.loads((market_dir / schema.META_FILE).read_text())
    assert io.market_identity(out)["alpha_jitter"] == 0.05
    assert "alpha_jitter" not in io.market_identity(market_dir)
    data_cfg = DataConfig()
    (_, mem, _), = list(sy.synthetic_markets(jit, data_cfg, [CFG.seed]))
    disk, _ = load_market(out, data_cfg)
    np.testing.assert_array_equal(np.asarray(mem.returns), np.asarray(disk.returns))
    plain, _ = load_market(market_dir, data_cfg)  # same seed, same shocks, other drifts
    assert not np.array_equal(np.asarray(plain.returns), np.asarray(disk.returns))
    np.testing.assert_array_equal(np.asarray(plain.latent_regime), np.asarray(disk.latent_regime))
    assert sy.preset_hash(jit) != sy.preset_hash(CFG)
