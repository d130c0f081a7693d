"""A regime-switching generator fitted to a real market's training window (issue 13).

# HOST ONLY (NumPy; not jittable)
``hrl-sarp data calibrate REAL_DIR --out FILE.yaml`` writes a calibration file; ``synth.preset:
FILE.yaml`` (or ``--preset FILE.yaml``) then generates markets with the real market's universe
(its sectors and tickers) and the fitted parameters, wherever a preset is named: ``data
synth``, ``train.pool`` (``source: calibration``) and the many-market instrument (``evaluate
--markets K --preset FILE.yaml``): many markets with the real market's universe, betas,
volatilities and regime persistence. Their regime -> sector drift table is the one
history's estimate (``diagnostics.sector_alpha_se``): a policy that learned it scores on
them for that (docs/evaluation.md), so they judge execution, cost and risk settings better
than sector-rotation skill.

What is fitted, on the days ``[start, end)`` only (by default every day before
``data.val_start``: the training window; nothing after it is read):
  regimes         a 3-state hidden Markov model of the market's daily log return m_t (the mean
                  of the sector log returns) with Student-t emissions of the generator's
                  degrees of freedom, fitted by EM (Rabiner 1989, "A tutorial on hidden Markov
                  models", Proc. IEEE 77(2), §III.C, scaled forward-backward; the t M-step of
                  Peel & McLachlan 2000); the states ordered by mean: Bull (highest), Bear
                  (lowest), Sideways. Gives the transition matrix and each regime's drift and
                  volatility (the latter net of the sectors' own noise, which the generator
                  adds again). The generated market factor has no GARCH of its own: its
                  volatility clustering is the regimes' (sectors and stocks keep theirs).
  sectors         y_s,t = alpha_r,s + beta_s M_t + e_s,t: the betas and noise variances from
                  the one-factor model of the sectors' covariance once each regime's means are
                  removed (the smoothed regime probabilities as weights; mean beta 1), each
                  sector's excess drift per regime (with its standard error) from the regime
                  means. At least 3 sectors.
  stocks          each stock's log return on its sector's without it (leave-one-out, weights as
                  the loader forms the sector): the spread (10th .. 90th percentile) of the
                  idiosyncratic volatilities, their ratio per regime, and the members' noise
                  in each sector's return (taken out of the sector's own).
  fundamentals    each sector's median pe, pb, ev_ebitda, roe, roce, debt_to_equity (the
                  built-in presets' mean where the market has none).
  price bands     the NSE's circuit bands when no stock ever moved more than 20% in a day, else
                  none (a band of 50% that never binds).
Not fitted, kept at the generator's values (``synthetic_presets``): the sectors' and stocks'
GARCH, the Student-t tails, the value premium, the macro series' model, the event calendar,
stock loads (0.8 .. 1.2).
Crashes are off: the fitted Bear regime's volatility already holds the window's crashes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml

from hrl_sarp_jax.config import DataConfig, SynthConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.data.synthetic import synthetic_markets
from hrl_sarp_jax.data.synthetic_presets import BAND_LEVELS, BAND_PROBS, GARCH, SECTORS, T_DOF
from hrl_sarp_jax.errors import ConfigError

CALIBRATION_VERSION = 1
TRADING_DAYS = 252
MIN_DAYS = 500
"""Fewest window days a fit accepts (about two years: a 3-state model needs regime spells)."""
FUND_FIELDS = ("pe", "pb", "ev_ebitda", "roe", "roce", "debt_to_equity")
NSE_BAND_MAX = 0.20
NO_BAND = 0.5
_VAR_FLOOR = 1e-10


# --------------------------------------------------------------------------- the HMM


@dataclasses.dataclass(frozen=True)
class HMMFit:
    """A Student-t HMM with ``dof`` degrees of freedom: each state's mean and standard
    deviation [K] (of its unit-variance t shocks), transition [K, K], init [K]; the smoothed
    state probabilities gamma [T, K] of the data it was fitted to, its log likelihood and the
    EM iterations run."""

    means: np.ndarray
    sds: np.ndarray
    transition: np.ndarray
    init: np.ndarray
    gamma: np.ndarray
    loglik: float
    iterations: int
    dof: float


def _t_logpdf(x: np.ndarray, means: np.ndarray, scales: np.ndarray, dof: float) -> np.ndarray:
    """log density [T, K] of x [T] under Student-t(dof) with locations and scales [K]."""
    d = (x[:, None] - means[None, :]) / scales[None, :]
    const = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return const - np.log(scales)[None, :] - 0.5 * (dof + 1) * np.log1p(d**2 / dof)


def forward_backward(logp: np.ndarray, transition: np.ndarray, init: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, float]:
    """Smoothed state probabilities gamma [T, K], expected transition counts [K, K] and the
    log likelihood of an HMM with emission log densities logp [T, K] (scaled recursions,
    Rabiner 1989 §V.A)."""
    top = logp.max(axis=1)
    b = np.exp(logp - top[:, None])
    t, k = b.shape
    alpha = np.empty((t, k))
    scale = np.empty(t)
    a = init * b[0]
    for i in range(t):
        if i:
            a = (alpha[i - 1] @ transition) * b[i]
        scale[i] = a.sum()
        alpha[i] = a / scale[i]
    beta = np.empty((t, k))
    beta[-1] = 1.0
    for i in range(t - 2, -1, -1):
        beta[i] = transition @ (b[i + 1] * beta[i + 1]) / scale[i + 1]
    gamma = alpha * beta
    gamma /= gamma.sum(axis=1, keepdims=True)
    xi = (alpha[:-1].T @ (b[1:] * beta[1:] / scale[1:, None])) * transition
    return gamma, xi, float(np.log(scale).sum() + top.sum())


def _em(x: np.ndarray, means: np.ndarray, scales: np.ndarray, transition: np.ndarray,
        dof: float, max_iter: int, tol: float) -> HMMFit:
    """Baum-Welch with the Student-t M-step of Peel & McLachlan 2000 ("Robust mixture
    modelling using the t distribution", Stat. Comput. 10) at a fixed ``dof``: each day's
    weight u = (dof + 1) / (dof + d^2) downweights outliers in the location and scale."""
    init = np.full(len(means), 1.0 / len(means))
    prev, iterations = -np.inf, 0
    while iterations < max_iter:
        iterations += 1
        gamma, xi, loglik = forward_backward(_t_logpdf(x, means, scales, dof), transition, init)
        u = (dof + 1) / (dof + ((x[:, None] - means) / scales) ** 2)
        gu = gamma * u
        means = gu.T @ x / gu.sum(axis=0)
        scales = np.sqrt(np.maximum((gu * (x[:, None] - means) ** 2).sum(axis=0)
                                    / gamma.sum(axis=0), _VAR_FLOOR))
        transition = xi / xi.sum(axis=1, keepdims=True)
        init = gamma[0]
        if loglik - prev < tol * abs(loglik):
            break
        prev = loglik
    gamma, _, loglik = forward_backward(_t_logpdf(x, means, scales, dof), transition, init)
    return HMMFit(means, scales * math.sqrt(dof / (dof - 2)), transition, init, gamma, loglik,
                  iterations, dof)


def fit_t_hmm(x: np.ndarray, states: int = 3, dof: float = 5.0, restarts: int = 4,
              seed: int = 0, max_iter: int = 300, tol: float = 1e-8) -> HMMFit:
    """The best (highest likelihood) of ``restarts`` EM fits of a Student-t HMM to x [T].

    The first start splits the days by their 20-day volatility into equal groups; the others
    draw each state's mean and sd around the sample's from ``default_rng(seed)``. Every start
    begins persistent (stay probability 0.98). Deterministic for a given ``seed``.
    """
    if dof <= 2:
        raise ConfigError(f"the regime model's degrees of freedom must be > 2, got {dof}")
    x = np.asarray(x, np.float64)
    rng = np.random.default_rng(int(seed))
    stay = 0.98
    transition = np.full((states, states), (1.0 - stay) / (states - 1))
    np.fill_diagonal(transition, stay)
    vol = np.sqrt(np.convolve(x**2, np.ones(20) / 20.0, mode="same"))
    groups = np.array_split(np.argsort(vol, kind="stable"), states)
    starts = [(np.array([x[g].mean() for g in groups]), np.array([x[g].std() for g in groups]))]
    for _ in range(restarts - 1):
        starts.append((x.mean() + x.std() * 0.1 * rng.standard_normal(states),
                       x.std() * np.exp(0.5 * rng.standard_normal(states))))
    to_scale = math.sqrt((dof - 2) / dof)
    fits = [_em(x, m, np.maximum(sd, 1e-6) * to_scale, transition.copy(), dof, max_iter, tol)
            for m, sd in starts]
    return max(fits, key=lambda f: f.loglik)


# --------------------------------------------------------------------------- the fit


def one_factor(cov: np.ndarray, iters: int = 500, tol: float = 1e-12
               ) -> tuple[np.ndarray, np.ndarray]:
    """The one-factor model cov [S, S] = l l^T + diag(psi) by iterated principal axes
    (Harman 1976, "Modern factor analysis", §8.3): (loadings l [S], uniquenesses psi [S]),
    l's sum positive. Exact for a covariance of that form with S >= 3."""
    diag = np.diag(cov).copy()
    psi = 0.5 * diag
    for _ in range(iters):
        w, v = np.linalg.eigh(cov - np.diag(psi))
        loadings = v[:, -1] * np.sqrt(max(w[-1], 0.0))
        new = np.maximum(diag - loadings**2, 1e-4 * diag)
        if np.max(np.abs(new - psi)) <= tol * np.max(diag):
            psi = new
            break
        psi = new
    return loadings * np.sign(loadings.sum() or 1.0), psi


def _sector_fit(y: np.ndarray, ok: np.ndarray, gamma: np.ndarray, m: np.ndarray):
    """Sector returns y [T, S] (valid where ok) as y_s = alpha_r,s + beta_s M + e_s with the
    regimes' probabilities gamma [T, 3] and the market's mean return m [T]: beta from the
    one-factor model of the regime-demeaned covariance (mean beta 1, so that m = M plus the
    sectors' mean noise), alpha_r,s = E_r[y_s] - beta_s E_r[m] with its standard error, and
    each sector's noise variance psi. Returns (alpha [3, S], alpha_se [3, S], beta [S],
    psi [S])."""
    both = ok.all(axis=1)
    if both.sum() < MIN_DAYS // 2:
        raise ConfigError(f"data calibrate: only {int(both.sum())} days of the window list "
                          f"every sector; the sector model needs {MIN_DAYS // 2}")
    g = gamma[both]
    means = (g.T @ y[both]) / g.sum(axis=0)[:, None]  # [3, S] regime means
    resid = y[both] - g @ means
    loadings, psi = one_factor(np.cov(resid, rowvar=False))
    beta = loadings / loadings.mean()
    alpha, alpha_se = np.zeros((3, y.shape[1])), np.zeros((3, y.shape[1]))
    for j in range(y.shape[1]):
        w = gamma[ok[:, j]]
        mu = w.T @ m[ok[:, j]] / w.sum(axis=0)
        alpha[:, j] = w.T @ y[ok[:, j], j] / w.sum(axis=0) - beta[j] * mu
        e = y[ok[:, j], j] - beta[j] * m[ok[:, j]] - w @ alpha[:, j]
        var_r = (w * (e**2)[:, None]).sum(axis=0) / w.sum(axis=0)
        alpha_se[:, j] = np.sqrt(var_r * (w**2).sum(axis=0)) / w.sum(axis=0)
    return alpha, alpha_se, beta, psi


def _window(meta: MarketMeta, start: str | None, end: str) -> tuple[int, int]:
    dates = meta.dates
    lo = 1 if start is None else int(np.searchsorted(dates, np.datetime64(start)))
    hi = int(np.searchsorted(dates, np.datetime64(end)))
    lo = max(lo, 1)  # day 0 has no return
    if hi - lo < MIN_DAYS:
        raise ConfigError(
            f"data calibrate: the window {dates[min(lo, len(dates) - 1)]} .. {end} holds "
            f"{max(hi - lo, 0)} trading days; a regime fit needs at least {MIN_DAYS} (give an "
            f"earlier --start or a later --end, or a longer history)")
    return lo, hi


def _fund_bases(market: MarketArrays, meta: MarketMeta, lo: int, hi: int,
                sectors: list[int], fallback: np.ndarray) -> np.ndarray:
    """[S, 6] each sector's median of FUND_FIELDS over the window (``fallback`` where none)."""
    out = np.tile(fallback, (len(sectors), 1))
    names = list(meta.fundamental_names)
    fund = np.asarray(market.fundamentals[lo:hi])
    mask = np.asarray(market.fundamentals_mask[lo:hi])
    sid = np.asarray(market.stock_sector)
    valid = np.asarray(market.stock_valid)
    for j, field in enumerate(FUND_FIELDS):
        if field not in names:
            continue
        f = names.index(field)
        for row, s in enumerate(sectors):
            members = valid & (sid == s)
            vals = fund[:, members, f][mask[:, members, f]]
            if vals.size:
                out[row, j] = float(np.median(vals))
    return out


def member_weights(market: MarketArrays, lo: int, hi: int, use_cap: bool) -> np.ndarray:
    """[T, N] each stock's weight in its sector's return on days lo .. hi-1, as the loader
    forms ``sector_returns``: the previous day's caps of the members listed on both days when
    all of those caps are known, else equal weights."""
    both = np.asarray(market.stock_mask[lo:hi]) & np.asarray(market.stock_mask[lo - 1:hi - 1])
    onehot = (np.asarray(market.stock_sector)[:, None] == np.arange(market.num_sectors)
              ) & np.asarray(market.stock_valid)[:, None]
    onehot = onehot.astype(np.float64)
    eq = both.astype(np.float64)
    w = eq / (np.maximum(eq @ onehot, 1.0) @ onehot.T)
    if not use_cap:
        return w
    cap = np.where(both & np.asarray(market.market_cap_mask[lo - 1:hi - 1]),
                   np.asarray(market.market_cap[lo - 1:hi - 1], np.float64), 0.0)
    unknown = ((both & ~np.asarray(market.market_cap_mask[lo - 1:hi - 1])).astype(np.float64)
               @ onehot)
    den = cap @ onehot
    by_cap = np.divide(cap, den @ onehot.T, out=np.zeros_like(cap), where=den @ onehot.T > 0)
    cap_days = ((unknown == 0) & (den > 0)) @ onehot.T > 0
    return np.where(cap_days, by_cap, w)


def _stock_fit(market: MarketArrays, lo: int, hi: int, gamma: np.ndarray, use_cap: bool):
    """Each stock's log return on its sector's without it (leave-one-out, so a large member's
    own noise does not hide in its sector): (idiosyncratic sds of the stocks with 60 days
    [n], their variance per regime relative to their mean [3], and each sector's share of its
    members' noise in its return, sum_i w_i^2 var_i averaged over days [S]).

    A residual e_i also holds the other members' noise through the leave-one-out return
    (coefficient c_i, weights w_j / (1 - w_i)): var e_i = v_i + c_i^2 sum_j q_ij v_j with
    q_ij the mean squared weight, solved for the members' own variances v per sector."""
    r = np.asarray(market.returns[lo:hi], np.float64)
    ok = np.asarray(market.stock_mask[lo:hi]) & np.asarray(market.stock_mask[lo - 1:hi - 1])
    w = member_weights(market, lo, hi, use_cap)
    sid = np.asarray(market.stock_sector)
    sector_r = np.asarray(market.sector_returns[lo:hi], np.float64)
    sds, in_regime, weight, overall = [], np.zeros(3), np.zeros(3), []
    own = np.zeros(market.num_sectors)
    valid = np.asarray(market.stock_valid)
    for s in range(market.num_sectors):
        fits = {}
        for i in np.flatnonzero(valid & (sid == s)):
            rest = 1.0 - w[:, i]
            use = ok[:, i] & (rest > 1e-6)
            if use.sum() < 60:
                continue
            others = np.log1p((sector_r[use, s] - w[use, i] * r[use, i]) / rest[use])
            x = np.column_stack([np.ones(use.sum()), others])
            y = np.log1p(r[use, i])
            coef = np.linalg.lstsq(x, y, rcond=None)[0]
            fits[i] = (use, coef[1], y - x @ coef)
        if not fits:
            continue
        members = list(fits)
        a = np.eye(len(members))
        for row, i in enumerate(members):
            use, c, _ = fits[i]
            for col, j in enumerate(members):
                if j != i:
                    a[row, col] = c**2 * np.mean((w[use, j] / (1.0 - w[use, i])) ** 2)
        var = np.linalg.solve(a, np.array([fits[i][2].var() for i in members]))
        var = np.maximum(var, 0.25 * np.array([fits[i][2].var() for i in members]))
        for k, i in enumerate(members):
            use, _, e = fits[i]
            sds.append(np.sqrt(var[k]))
            in_regime += gamma[use].T @ e**2
            weight += gamma[use].sum(axis=0)
            overall.append(float(np.mean(e**2)))
            own[s] += float(np.mean(w[use, i] ** 2)) * var[k]
    if not sds:
        raise ConfigError("data calibrate: no stock has 60 listed days in the window with "
                          "another member in its sector")
    return np.asarray(sds), np.sqrt(in_regime / weight / np.mean(overall)), own


def _regimes(m: np.ndarray, days: np.ndarray, seed: int) -> tuple[HMMFit, np.ndarray]:
    """The regime model of the market's mean return m [T] on ``days`` [T] bool, its states
    reordered Bull (highest mean), Bear (lowest), Sideways; and gamma [T, 3] (0 off days)."""
    hmm = fit_t_hmm(m[days], dof=T_DOF, seed=seed)
    order = np.argsort(-hmm.means)
    k = np.array([order[0], order[-1], order[1]])
    hmm = dataclasses.replace(hmm, means=hmm.means[k], sds=hmm.sds[k], init=hmm.init[k],
                              transition=hmm.transition[np.ix_(k, k)], gamma=hmm.gamma[:, k])
    gamma = np.zeros((len(m), 3))
    gamma[days] = hmm.gamma
    return hmm, gamma


def _banded(market: MarketArrays, lo: int, hi: int) -> bool:
    """Whether no listed stock moved more than the NSE's widest band in a day of the window."""
    listed = np.asarray(market.stock_mask[lo:hi]) & np.asarray(market.stock_mask[lo - 1:hi - 1])
    moves = np.abs(np.asarray(market.returns[lo:hi]))[listed]
    return moves.size > 0 and float(moves.max()) <= NSE_BAND_MAX + 1e-6


def calibrate_market(market: MarketArrays, meta: MarketMeta, end: str, start: str | None = None,
                     seed: int = 0, sector_weighting: str = "cap") -> dict:
    """The calibration (a YAML-ready dict, annual units) of ``market`` on the days in
    [start, end); see the module docstring. Sectors without fundamentals get the built-in
    presets' mean; the price bands are the generator's NSE bands when the data shows them.
    ``sector_weighting``: how the market's sector returns were formed (``data``)."""
    lo, hi = _window(meta, start, end)
    sectors = [s for s in range(market.num_sectors) if bool(market.sector_valid[s])]
    if len(sectors) < 3:
        raise ConfigError(f"data calibrate: the market has {len(sectors)} sector(s); the sector "
                          f"model (one market factor beside each sector's noise) needs 3 or more")
    sec_r = np.log1p(np.asarray(market.sector_returns[lo:hi], np.float64))[:, sectors]
    sec_ok = (np.asarray(market.sector_mask[lo:hi])
              & np.asarray(market.sector_mask[lo - 1:hi - 1]))[:, sectors]
    days = sec_ok.any(axis=1)
    m = np.where(days, (sec_r * sec_ok).sum(axis=1) / np.maximum(sec_ok.sum(axis=1), 1), 0.0)
    hmm, gamma = _regimes(m, days, seed)
    alpha, alpha_se, beta, psi = _sector_fit(sec_r, sec_ok, gamma, m)
    idio_sd, idio_mult, own = _stock_fit(market, lo, hi, gamma, sector_weighting == "cap")
    # a sector's measured return carries its members' noise, which the generator adds again
    # to its sector factor: the factor keeps the rest; the market's the sectors' mean noise
    sigma = np.sqrt(np.maximum(psi - own[sectors], 0.25 * psi))
    market_var = np.maximum(hmm.sds**2 - float(np.sum(psi)) / len(sectors) ** 2,
                            0.25 * hmm.sds**2)
    fallback = np.mean([spec.fund for spec in SECTORS.values()], axis=0)
    funds = _fund_bases(market, meta, lo, hi, sectors, fallback)
    banded = _banded(market, lo, hi)
    names = [meta.sectors[s] for s in sectors]
    valid = np.flatnonzero(np.asarray(market.stock_valid))
    d = float(TRADING_DAYS)
    per_sector = lambda x: {n: np.round(x[j], 8).tolist() for j, n in enumerate(names)}  # noqa: E731
    return {
        "calibration_version": CALIBRATION_VERSION,
        "source": {"market": meta.market, "folder": meta.source, "currency": meta.currency,
                   "first_day": str(meta.dates[lo]), "last_day": str(meta.dates[hi - 1]),
                   "days": int(days.sum())},
        "sectors": names,
        "tickers": {n: sorted(meta.tickers[i] for i in valid
                              if meta.sectors[int(market.stock_sector[i])] == n) for n in names},
        "transition": hmm.transition.round(8).tolist(),
        "market_mu": (hmm.means * d).round(8).tolist(),
        "market_sigma": np.sqrt(market_var * d).round(8).tolist(),
        "sector_alpha": per_sector(alpha.T * d),
        "sector_beta": per_sector(beta),
        "sector_sigma": per_sector(sigma * np.sqrt(d)),
        "sector_fundamentals": per_sector(funds),
        "idio_sigma": (np.percentile(idio_sd, [10, 90]) * np.sqrt(d)).round(8).tolist(),
        "idio_regime_mult": idio_mult.round(8).tolist(),
        "crash_per_year": [0.0, 0.0, 0.0],
        "garch": [[0.0, 0.0], list(GARCH[1]), list(GARCH[2])],
        "band_levels": list(BAND_LEVELS) if banded else [NO_BAND] * 3,
        "band_probs": list(BAND_PROBS),
        "diagnostics": {
            "hmm_loglik": round(hmm.loglik, 4), "hmm_iterations": hmm.iterations,
            "regime_days": gamma[days].sum(axis=0).round(2).tolist(),
            "regime_mean_duration_days": (1.0 / np.maximum(1.0 - np.diag(hmm.transition), 1e-12)
                                          ).round(2).tolist(),
            "sector_alpha_se": per_sector(alpha_se.T * d),
            "price_bands": "nse" if banded else "none",
        },
    }


def write_calibration(path: Path, calibration: dict) -> Path:
    """Write ``calibration`` as YAML atomically (a temporary file renamed over ``path``)."""
    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise ConfigError(f"data calibrate --out {path}: the file must end in .yaml or .yml "
                          f"(that is how synth.preset tells a calibration from a preset name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# hrl-sarp data calibrate: a regime-switching generator fitted to a real market "
            "(annual units).\n# Use it as synth.preset (a path) or --preset; see "
            "hrl_sarp_jax/data/calibrate.py.\n"
            + yaml.safe_dump(calibration, sort_keys=False, default_flow_style=None, width=100))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path




# --------------------------------------------------------------------------- the fit check


FACTS = ("market_vol", "market_sharpe", "sector_vol", "cross_sector_corr", "within_sector_corr",
         "stock_vol", "stock_kurtosis", "abs_return_autocorr_lag1", "abs_return_autocorr_lag5")
"""What ``market_facts`` measures (annualised volatilities and Sharpe, daily shapes)."""


def _lag_corr(x: np.ndarray, ok: np.ndarray, lag: int) -> np.ndarray:
    """[N] correlation of x[t] and x[t - lag] per column over the days both are valid."""
    a, b = x[lag:], x[:-lag]
    both = ok[lag:] & ok[:-lag]
    n = np.maximum(both.sum(axis=0), 1)
    ma, mb = (a * both).sum(axis=0) / n, (b * both).sum(axis=0) / n
    cov = (((a - ma) * (b - mb)) * both).sum(axis=0) / n
    va = (((a - ma) ** 2) * both).sum(axis=0) / n
    vb = (((b - mb) ** 2) * both).sum(axis=0) / n
    return cov / np.sqrt(np.maximum(va * vb, 1e-30))


def market_facts(market: MarketArrays, lo: int, hi: int) -> dict[str, float]:
    """The stylized facts ``FACTS`` of a market's days [lo, hi) from its arrays (any market,
    real or generated; stocks listed on both days only): the equal-weighted market's and the
    sectors' volatility, the market's Sharpe, the mean correlation between sectors and between
    stocks of one sector, the stocks' volatility and raw kurtosis (normal 3), and the
    autocorrelation of |r| (volatility clustering), each a mean over sectors or stocks."""
    ok = np.asarray(market.stock_mask[lo:hi]) & np.asarray(market.stock_mask[lo - 1:hi - 1])
    ok &= np.asarray(market.stock_valid)[None, :]
    r = np.where(ok, np.asarray(market.returns[lo:hi], np.float64), 0.0)
    n = np.maximum(ok.sum(axis=0), 1)
    mean = r.sum(axis=0) / n
    dev = np.where(ok, r - mean, 0.0)
    var = (dev**2).sum(axis=0) / n
    listed = ok.sum(axis=0) >= 60
    sid = np.asarray(market.stock_sector)
    sectors = [s for s in range(market.num_sectors) if bool(market.sector_valid[s])]
    sec = np.stack([(r * (sid == s)).sum(axis=1) / np.maximum((ok * (sid == s)).sum(axis=1), 1)
                    for s in sectors], axis=1)  # [T, S] equal-weighted sector returns
    ew = sec.mean(axis=1)
    full = ok[:, listed].all(axis=1)  # days every stock with history is listed
    corr = np.corrcoef(r[full][:, listed].T)
    same = sid[listed][:, None] == sid[listed][None, :]
    off = ~np.eye(len(corr), dtype=bool)
    d = math.sqrt(TRADING_DAYS)
    sec_corr = np.corrcoef(sec.T)
    return {
        "market_vol": float(ew.std() * d),
        "market_sharpe": float(ew.mean() / ew.std() * d),
        "sector_vol": float(sec.std(axis=0).mean() * d),
        "cross_sector_corr": float(sec_corr[~np.eye(len(sectors), dtype=bool)].mean()),
        "within_sector_corr": float(corr[same & off].mean()) if (same & off).any() else math.nan,
        "stock_vol": float(np.sqrt(var[listed]).mean() * d),
        "stock_kurtosis": float(((dev**4).sum(axis=0) / n / var**2)[listed].mean()),
        "abs_return_autocorr_lag1": float(_lag_corr(np.abs(r), ok, 1)[listed].mean()),
        "abs_return_autocorr_lag5": float(_lag_corr(np.abs(r), ok, 5)[listed].mean()),
    }


def fit_check(path: Path, market: MarketArrays, meta: MarketMeta, calibration: dict,
              data_cfg: DataConfig, markets: int = 4, first_seed: int = 0
              ) -> dict[str, list[float]]:
    """``market_facts`` of the calibrated market's window beside those of ``markets`` markets
    generated from the calibration file ``path`` over the same dates (seeds ``first_seed``
    up): {fact: [the market's, the generated markets' mean, their standard deviation]}."""
    src = calibration["source"]
    lo = int(np.searchsorted(meta.dates, np.datetime64(src["first_day"])))
    hi = int(np.searchsorted(meta.dates, np.datetime64(src["last_day"]))) + 1
    own = market_facts(market, lo, hi)
    synth = SynthConfig(preset=str(path), start=src["first_day"], end=src["last_day"])
    seeds = list(range(int(first_seed), int(first_seed) + int(markets)))
    generated = [market_facts(m, 1, m.num_days) for _, m, _ in
                 synthetic_markets(synth, data_cfg, seeds)]
    return {k: [round(own[k], 4), round(float(np.mean([g[k] for g in generated])), 4),
                round(float(np.std([g[k] for g in generated])), 4)] for k in FACTS}
