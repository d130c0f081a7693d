"""``data calibrate``: the Student-t HMM against enumeration and SciPy, recovery of known
parameters, no reads after the window, the calibrated generator's universe and its errors."""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil

import jax
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from hrl_sarp_jax.config import DataConfig, SynthConfig, load_config
from hrl_sarp_jax.data import io
from hrl_sarp_jax.data import synthetic as sy
from hrl_sarp_jax.data.calibrate import (
    FACTS,
    MIN_DAYS,
    _em,
    _t_logpdf,
    calibrate_market,
    fit_t_hmm,
    forward_backward,
    market_facts,
    member_weights,
    one_factor,
    write_calibration,
)
from hrl_sarp_jax.data.loader import load_market
from hrl_sarp_jax.data.synthetic_presets import calibration, make_params
from hrl_sarp_jax.errors import ConfigError
from tests.data.market_fixtures import SECTOR_ORDER, SECTORS, market_tables


def _simulate_t_hmm(rng, means, sds, transition, days, dof=5):
    """[T] observations and [T] states of a Student-t HMM with unit-variance shocks."""
    states = np.empty(days, int)
    states[0] = 0
    for t in range(1, days):
        states[t] = rng.choice(3, p=transition[states[t - 1]])
    z = rng.standard_t(dof, days) * math.sqrt((dof - 2) / dof)
    return means[states] + sds[states] * z, states


def test_forward_backward_is_the_sum_over_every_state_path():
    rng = np.random.default_rng(3)
    t, k = 6, 3
    logp = rng.normal(0.0, 2.0, (t, k))
    transition = rng.dirichlet(np.ones(k), size=k)
    init = rng.dirichlet(np.ones(k))
    total, gamma, xi = 0.0, np.zeros((t, k)), np.zeros((k, k))
    for path in itertools.product(range(k), repeat=t):
        p = init[path[0]] * math.exp(logp[0, path[0]])
        for i in range(1, t):
            p *= transition[path[i - 1], path[i]] * math.exp(logp[i, path[i]])
        total += p
        for i in range(t):
            gamma[i, path[i]] += p
        for i in range(t - 1):
            xi[path[i], path[i + 1]] += p
    g, x, loglik = forward_backward(logp, transition, init)
    np.testing.assert_allclose(loglik, math.log(total), rtol=1e-12)
    np.testing.assert_allclose(g, gamma / total, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(x, xi / total, rtol=1e-10, atol=1e-14)


def test_t_density_is_scipys():
    x = np.linspace(-0.1, 0.1, 11)
    means, scales = np.array([0.0, 0.01, -0.02]), np.array([0.01, 0.02, 0.005])
    want = scipy.stats.t.logpdf(x[:, None], 5.0, loc=means[None, :], scale=scales[None, :])
    np.testing.assert_allclose(_t_logpdf(x, means, scales, 5.0), want, rtol=1e-12)


def test_one_factor_recovers_loadings_and_noise():
    loadings = np.array([0.8, 0.6, 1.6, 1.1, 0.9])
    psi = np.array([0.02, 0.01, 0.03, 0.015, 0.02])
    cov = 0.04 * np.outer(loadings, loadings) + np.diag(psi)
    got, got_psi = one_factor(cov)
    np.testing.assert_allclose(got, 0.2 * loadings, rtol=1e-6)
    np.testing.assert_allclose(got_psi, psi, rtol=1e-5)


def test_member_weights_form_the_loaders_sector_returns(fixture_market):
    _, market, _ = fixture_market
    onehot = np.asarray(market.stock_sector)[:, None] == np.arange(market.num_sectors)
    r = np.asarray(market.returns[1:], np.float64)
    for weighting in ("cap", "equal"):
        again, _ = load_market(fixture_market[0], DataConfig(sector_weighting=weighting))
        w = member_weights(again, 1, again.num_days, weighting == "cap")
        np.testing.assert_allclose((w * r) @ onehot, np.asarray(again.sector_returns[1:]),
                                   atol=1e-6)
        assert np.all(np.abs(w @ onehot - 1.0)[np.asarray(again.sector_mask[1:])] < 1e-9)


TRUE_MEANS = np.array([0.0008, -0.0020, 0.0001])
TRUE_SDS = np.array([0.006, 0.020, 0.011])
TRUE_TRANSITION = np.array([[0.990, 0.002, 0.008], [0.010, 0.975, 0.015],
                            [0.012, 0.008, 0.980]])


def test_em_never_lowers_the_likelihood():
    x, _ = _simulate_t_hmm(np.random.default_rng(0), TRUE_MEANS, TRUE_SDS, TRUE_TRANSITION, 800)
    start = np.full((3, 3), 0.01) + np.eye(3) * 0.97
    logliks = [_em(x, np.array([0.001, -0.001, 0.0]), np.array([0.005, 0.02, 0.01]),
                   start.copy(), 5.0, k, 0.0).loglik for k in range(1, 9)]
    assert np.all(np.diff(logliks) >= -1e-9 * abs(logliks[0])), logliks
    assert logliks[-1] > logliks[0] + 1.0  # it moved


def test_fit_recovers_a_simulated_regime_model():
    x, states = _simulate_t_hmm(np.random.default_rng(1), TRUE_MEANS, TRUE_SDS,
                                TRUE_TRANSITION, 4000)
    fit = fit_t_hmm(x, seed=0)
    order = np.argsort(-fit.means)[[0, 2, 1]]  # Bull, Bear, Sideways like the truth
    np.testing.assert_allclose(fit.sds[order], TRUE_SDS, rtol=0.10)
    np.testing.assert_allclose(np.diag(fit.transition[np.ix_(order, order)]),
                               np.diag(TRUE_TRANSITION), atol=0.012)
    se = TRUE_SDS / np.sqrt(np.bincount(states, minlength=3))
    assert np.all(np.abs(fit.means[order] - TRUE_MEANS) < 4 * se)
    decoded = np.argsort(order)[fit.gamma.argmax(axis=1)]
    assert np.mean(decoded == states) > 0.85
    again = fit_t_hmm(x, seed=0)
    assert again.loglik == fit.loglik and np.array_equal(again.gamma, fit.gamma)


@pytest.fixture(scope="module")
def fixture_market(tmp_path_factory):
    """The test market (3 sectors in a non-alphabetical order, 8 tickers) over 2015-2020."""
    tables, meta = market_tables(seed=5, start="2015-01-01", end="2020-12-31")
    folder = io.write_market(tmp_path_factory.mktemp("real") / "m", tables, meta)
    return folder, *load_market(folder, DataConfig())


def test_calibrate_reads_nothing_on_or_after_its_end(fixture_market):
    _, market, meta = fixture_market
    fit = calibrate_market(market, meta, end="2019-06-01")
    cut = int(np.searchsorted(meta.dates, np.datetime64("2019-06-01")))
    rng = np.random.default_rng(0)
    later = {}
    for name in ("returns", "sector_returns", "fundamentals"):
        a = np.asarray(getattr(market, name)).copy()
        a[cut:] = rng.normal(0.0, 0.05, a[cut:].shape)
        later[name] = a
    for name in ("stock_mask", "sector_mask"):
        a = np.asarray(getattr(market, name)).copy()
        a[cut:] = rng.random(a[cut:].shape) < 0.5
        later[name] = a
    assert calibrate_market(dataclasses.replace(market, **later), meta, end="2019-06-01") == fit
    assert fit["source"]["last_day"] < "2019-06-01"
    assert fit["sectors"] == SECTOR_ORDER
    assert fit["tickers"] == {s: sorted(t) for s, t in SECTORS.items()}
    assert fit["band_levels"] == [0.05, 0.10, 0.20]  # no day beyond 20%: NSE-like bands kept
    alpha = np.array([fit["sector_alpha"][s] for s in SECTOR_ORDER])  # [S, 3]
    beta = np.array([fit["sector_beta"][s] for s in SECTOR_ORDER])
    # least squares on the sectors' mean: drifts and loadings sum to the market's exactly
    np.testing.assert_allclose(alpha.sum(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(beta.sum(), len(SECTOR_ORDER), atol=1e-6)


def test_market_facts_are_pandas_and_scipys(fixture_market):
    _, market, _ = fixture_market
    lo, hi = 1, market.num_days
    assert np.asarray(market.stock_mask).all()  # every stock listed every day: plain frames
    r = pd.DataFrame(np.asarray(market.returns[lo:hi], np.float64))
    sid = np.asarray(market.stock_sector)
    sectors = pd.DataFrame({s: r.loc[:, sid == s].mean(axis=1) for s in range(3)})
    ew = sectors.mean(axis=1)
    c = r.corr().to_numpy()
    same = (sid[:, None] == sid[None, :]) & ~np.eye(len(sid), dtype=bool)
    cs = sectors.corr().to_numpy()[~np.eye(3, dtype=bool)]
    want = {
        "market_vol": ew.std(ddof=0) * np.sqrt(252),
        "market_sharpe": ew.mean() / ew.std(ddof=0) * np.sqrt(252),
        "sector_vol": sectors.std(ddof=0).mean() * np.sqrt(252),
        "cross_sector_corr": cs.mean(),
        "within_sector_corr": c[same].mean(),
        "stock_vol": r.std(ddof=0).mean() * np.sqrt(252),
        "stock_kurtosis": scipy.stats.kurtosis(r.to_numpy(), axis=0, fisher=True).mean() + 3,
        "abs_return_autocorr_lag1": np.mean([r[i].abs().autocorr(1) for i in r]),
        "abs_return_autocorr_lag5": np.mean([r[i].abs().autocorr(5) for i in r]),
    }
    got = market_facts(market, lo, hi)
    for key in FACTS:
        assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-9), key


def test_a_window_too_short_is_refused(fixture_market):
    _, market, meta = fixture_market
    with pytest.raises(ConfigError, match=f"needs at least {MIN_DAYS}"):
        calibrate_market(market, meta, start="2019-01-01", end="2020-01-01")


def test_cli_calibration_generates_the_source_universe(fixture_market, tmp_path, capsys):
    from hrl_sarp_jax.cli import main

    folder, market, meta = fixture_market
    out = tmp_path / "cal" / "test.yaml"
    assert main(["data", "calibrate", str(folder), "--out", str(out), "--end",
                 "2019-06-01", "--check", "2"]) == 0
    assert "fit check" in capsys.readouterr().out
    doc = yaml.safe_load(out.read_text())
    lo, hi = 1, int(np.searchsorted(meta.dates, np.datetime64("2019-06-01")))
    own = market_facts(market, lo, hi)
    assert set(doc["diagnostics"]["check"]) == set(FACTS)
    for key, (mine, mean, sd) in doc["diagnostics"]["check"].items():
        assert mine == pytest.approx(own[key], abs=1e-4) and np.isfinite(mean) and sd >= 0
    cal = calibration(str(out))
    assert cal.sectors == tuple(SECTOR_ORDER)
    params = make_params(str(out), 5)
    assert np.array_equal(np.asarray(params.stock_sector), [0, 0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_allclose(np.asarray(params.crash_intensity), 0.0)
    synth = SynthConfig(preset=str(out), start="2019-01-01", end="2020-06-30")
    ((_, gen, gmeta),) = list(sy.synthetic_markets(synth, DataConfig(), [4]))
    assert gmeta.tickers == meta.tickers and gmeta.sectors == meta.sectors
    assert (gen.num_stocks, gen.num_sectors) == (market.num_stocks, market.num_sectors)
    # the hash follows the file's content, not its path
    copy = tmp_path / "elsewhere.yaml"
    shutil.copy(out, copy)
    assert sy.preset_hash(synth) == sy.preset_hash(dataclasses.replace(synth, preset=str(copy)))
    doc = yaml.safe_load(copy.read_text())
    doc["sector_beta"]["IT"] += 0.1
    write_calibration(copy, doc)
    assert sy.preset_hash(synth) != sy.preset_hash(dataclasses.replace(synth, preset=str(copy)))


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("transition"), "key 'transition' is missing"),
    (lambda d: d.update(transition=[[0.5, 0.5, 0.5]] * 3), "rows must be probabilities"),
    (lambda d: d.update(market_sigma=[0.1, -0.2, 0.1]), "'market_sigma' must be positive"),
    (lambda d: d["tickers"].pop("IT"), "'tickers' must list at least one ticker"),
    (lambda d: d.update(garch=[[0.5, 0.6], [0.0, 0.0], [0.0, 0.0]]), "alpha \\+ beta < 1"),
])
def test_a_bad_calibration_file_is_one_clear_error(tmp_path, edit, message):
    doc = {
        "sectors": ["IT", "FMCG"], "tickers": {"IT": ["A", "B"], "FMCG": ["C"]},
        "transition": np.full((3, 3), 1 / 3).tolist(), "market_mu": [0.1, -0.2, 0.0],
        "market_sigma": [0.1, 0.3, 0.15], "sector_alpha": {"IT": [0, 0, 0], "FMCG": [0, 0, 0]},
        "sector_beta": {"IT": 1.0, "FMCG": 1.0}, "sector_sigma": {"IT": 0.1, "FMCG": 0.1},
        "sector_fundamentals": {"IT": [20, 3, 10, 15, 15, 0.5], "FMCG": [20, 3, 10, 15, 15, 0.5]},
        "idio_sigma": [0.2, 0.3], "idio_regime_mult": [1, 1.3, 1], "crash_per_year": [0, 0, 0],
        "garch": [[0, 0], [0.07, 0.91], [0.07, 0.91]], "band_levels": [0.5, 0.5, 0.5],
        "band_probs": [0.1, 0.3, 0.6],
    }
    path = write_calibration(tmp_path / "ok.yaml", doc)
    assert calibration(str(path)).tickers == (("A", "IT"), ("B", "IT"), ("C", "FMCG"))
    edit(doc)
    bad = write_calibration(tmp_path / "bad.yaml", doc)
    with pytest.raises(ConfigError, match=message) as err:
        make_params(str(bad), 5)
    assert str(bad.resolve()) in str(err.value) and "\n" not in str(err.value)


def test_calibration_paths_and_pools_are_checked(tmp_path):
    from hrl_sarp_jax.training.market_pool import check_pool_config, pool_source

    with pytest.raises(ConfigError, match=r"must end in \.yaml"):
        write_calibration(tmp_path / "x.txt", {})
    with pytest.raises(ConfigError, match="calibration file not found"):
        make_params(str(tmp_path / "missing.yaml"), 5)
    cfg = load_config(None, ["train.pool.markets=2", "train.pool.source=calibration"])
    with pytest.raises(ConfigError, match="not a calibration file"):
        pool_source(cfg, {"synthetic": False})
    phase3 = load_config(None, ["train.pool.markets=2", "train.pool.source=calibration",
                                "train.pool.phases=[1,2,3]"])
    with pytest.raises(ConfigError, match=r"take 3 out of train\.pool\.phases"):
        check_pool_config(phase3.train.pool)


def _known_calibration() -> dict:
    """A hand-written generator: 3 sectors x 6 stocks, persistent regimes, no crashes."""
    names = ["IT", "FMCG", "Metals"]
    return {
        "sectors": names,
        "tickers": {s: [f"{s.upper()}{i}" for i in range(6)] for s in names},
        "transition": TRUE_TRANSITION.tolist(), "market_mu": [0.20, -0.45, 0.03],
        "market_sigma": [0.10, 0.32, 0.17],
        "sector_alpha": {"IT": [-0.05, 0.12, 0.06], "FMCG": [-0.08, 0.16, 0.02],
                         "Metals": [0.13, -0.28, -0.08]},
        "sector_beta": {"IT": 0.8, "FMCG": 0.6, "Metals": 1.6},
        "sector_sigma": {"IT": 0.12, "FMCG": 0.10, "Metals": 0.16},
        "sector_fundamentals": {s: [20, 3, 10, 15, 15, 0.5] for s in names},
        "idio_sigma": [0.15, 0.30], "idio_regime_mult": [1.0, 1.2, 1.0],
        "crash_per_year": [0.0, 0.0, 0.0], "garch": [[0, 0], [0.07, 0.91], [0.07, 0.91]],
        "band_levels": [0.5, 0.5, 0.5], "band_probs": [0.1, 0.3, 0.6],
    }


def test_calibration_recovers_the_generator_it_came_from(tmp_path):
    """Generate 20 years from known parameters, calibrate on them: the regimes, loadings and
    volatilities come back. A sector's return is its members' cap-weighted return, whose
    loads (0.8 .. 1.2) scale its beta: the betas to recover are those of the measured sector
    returns on the generator's latent market factor, relative to their mean."""
    truth = _known_calibration()
    path = write_calibration(tmp_path / "known.yaml", truth)
    synth = SynthConfig(preset=str(path), seed=11, start="2001-01-01", end="2020-12-31")
    folder = sy.write_synthetic_market(tmp_path / "gen", synth)
    market, meta = load_market(folder, DataConfig())
    fit = calibrate_market(market, meta, end="2021-01-01")
    latent = sy.generate_market(jax.random.key(11), make_params(str(path), 5, 11),
                                sy.synth_dates(synth))
    factor = np.asarray(latent.market_factor, np.float64)[1:]
    sectors = np.log1p(np.asarray(market.sector_returns, np.float64))[1:]
    b = np.linalg.lstsq(np.column_stack([np.ones_like(factor), factor]), sectors, rcond=None)[0][1]
    names = truth["sectors"]
    np.testing.assert_allclose([fit["sector_beta"][s] for s in names], b / b.mean(), atol=0.04)
    np.testing.assert_allclose([fit["sector_sigma"][s] for s in names],
                               [truth["sector_sigma"][s] for s in names], rtol=0.15)
    np.testing.assert_allclose(fit["market_sigma"], truth["market_sigma"], rtol=0.15)
    np.testing.assert_allclose(np.diag(fit["transition"]), np.diag(TRUE_TRANSITION), atol=0.015)
    # the P10 and P90 of 18 draws from 0.15 .. 0.30, times the regimes' mean multiplier 1.06
    np.testing.assert_allclose(fit["idio_sigma"], [0.175, 0.30], rtol=0.12)
    assert fit["market_mu"][0] > fit["market_mu"][2] > fit["market_mu"][1]
    alpha = np.array([fit["sector_alpha"][s] for s in names])
    se = np.array([fit["diagnostics"]["sector_alpha_se"][s] for s in names])
    want = np.array([truth["sector_alpha"][s] for s in names])
    assert np.mean(np.abs(alpha - want) < 2.5 * se) >= 7 / 9  # most drifts within 2.5 SE
    assert fit["band_levels"] == [0.5, 0.5, 0.5]  # moves beyond 20% a day: no bands


def test_judging_on_the_calibration_a_run_pooled_from_is_warned(tmp_path):
    from hrl_sarp_jax.checkpointing import Run, write_phase_summary
    from hrl_sarp_jax.many_markets import shared_calibration

    doc = _known_calibration()
    path = str(write_calibration(tmp_path / "known.yaml", doc))
    other = str(write_calibration(tmp_path / "other.yaml", {**doc, "market_mu": [0.1, -0.1, 0]}))
    run = Run(tmp_path / "run", {"run_name": "r"}, {})
    write_phase_summary(run, 1, {"pool": {"source": "calibration", "seeds": [100],
                                          "calibration_sha256": calibration(path).sha256}})
    write_phase_summary(run, 2, {"pool": None})
    (warning,) = shared_calibration(run, SynthConfig(preset=path))
    assert "phase(s) [1]" in warning and path in warning
    assert shared_calibration(run, SynthConfig(preset=other)) == []
    assert shared_calibration(run, SynthConfig(preset="nse")) == []
