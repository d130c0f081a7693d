"""Pure, keyed JAX core of the synthetic NSE-like market (DESIGN §3, "Embedded default market").

Model, per trading day t (all returns are log returns, daily units):
  regime_t       Markov chain over (Bull, Bear, Sideways); crashes start at a regime-dependent rate
                 and last ``crash_days`` days with sector-differentiated drops.
  market_t       = mu[r] + sigma[r] * sqrt(h_m) * z_m                  (GARCH(1,1), Student-t z)
  sector_t[s]    = alpha[r, s] + beta[s] * market_t + sigma_s * sqrt(h_s) * z_s
                   - crash_t * profile[s]
  stock_t[i]     = load_i * sector_t[s(i)] + idio_i * sqrt(h_i) * z_i + premium * cheapness_t[i]
  close          the stock return clipped at its circuit band; the excess carries to the next day.
Macro series, sentiment, volumes and daily fundamentals are causal functions of the above.

Causality: every output at t is a function of the shocks at <= t only (each series is a scan
or a causal filter over time); ``tests/data/test_synthetic.py`` checks it by perturbing the
shocks after t. Keys enter only as arguments; ``generate`` is vmappable over keys.
Shapes: T days, S sectors, N stocks, M = 11 macro series, K = 10 fundamental fields.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.types import BEAR

NUM_MACRO = 11  # schema.MACRO_SERIES order
NUM_FUNDAMENTALS = 10  # schema.FUNDAMENTAL_FIELDS order
_MACRO_NOISE = 10
_STOCK_U = 10
_STOCK_Z = 2
EVENT_NONE, EVENT_MPC, EVENT_BUDGET = 0, 1, 2


@struct.dataclass
class SynthParams:
    """Model parameters in daily units (float32 unless noted). Build with ``make_params``."""

    transition: jax.Array  # [3, 3] P(regime_{t+1} = j | regime_t = i)
    init_probs: jax.Array  # [3] distribution of the first day's regime
    market_mu: jax.Array  # [3] daily log drift of the market factor per regime
    market_sigma: jax.Array  # [3] daily volatility of the market factor per regime
    sector_alpha: jax.Array  # [3, S] daily excess drift per regime
    sector_beta: jax.Array  # [S]
    sector_sigma: jax.Array  # [S] daily sector-specific volatility
    sector_fund_base: jax.Array  # [S, 6] typical pe, pb, ev_ebitda, roe, roce, debt_to_equity
    crash_profile: jax.Array  # [S] relative crash severity
    crash_intensity: jax.Array  # [3] daily probability that a crash starts, per regime
    crash_size: jax.Array  # [2] range of an average sector's total log drop
    crash_days: jax.Array  # [] int32 crash length
    garch: jax.Array  # [3, 2] (alpha, beta) for market, sector, idiosyncratic
    idio_sigma: jax.Array  # [2] range of daily idiosyncratic volatility across stocks
    idio_regime_mult: jax.Array  # [3]
    value_premium: jax.Array  # [] daily drift per 1 sd of cheapness
    valuation_rho: jax.Array  # [] daily AR(1) coefficient of cheapness
    band_levels: jax.Array  # [3] circuit bands
    band_probs: jax.Array  # [3] share of stocks in each band
    event_vol_mult: jax.Array  # [] market volatility multiplier on event days
    stock_sector: jax.Array  # [N] int32 sector id of each stock
    t_dof: int = struct.field(pytree_node=False, default=5)
    """Student-t degrees of freedom (static, >= 3): chi-square from t_dof squared normals."""


@struct.dataclass
class SynthShocks:
    """All randomness of one market. Time-indexed leaves have T first."""

    regime_u: jax.Array  # [T] uniform
    crash_u: jax.Array  # [T] uniform
    crash_size_u: jax.Array  # [T] uniform
    z_market: jax.Array  # [T] unit-variance Student-t
    z_sector: jax.Array  # [T, S]
    z_stock: jax.Array  # [T, N]
    gap_z: jax.Array  # [T, N] normal
    range_z: jax.Array  # [T, N, 2] normal
    volume_z: jax.Array  # [T, N]
    delivery_z: jax.Array  # [T, N]
    news_z: jax.Array  # [T, N]
    valuation_z: jax.Array  # [T, N]
    fund_z: jax.Array  # [T, N, K]
    macro_z: jax.Array  # [T, 10]
    stock_u: jax.Array  # [N, 10] uniform: per-stock attributes (see ``_stock_attributes``)
    stock_z: jax.Array  # [N, 2] normal: quality, leverage


@struct.dataclass
class SynthArrays:
    """One generated market. Prices are relative to the close before day 0 (``price0``)."""

    regime: jax.Array  # [T] int32 latent regime
    crash: jax.Array  # [T] bool: a crash episode is under way
    market_factor: jax.Array  # [T] market factor log return (without crash drops)
    sector_factor: jax.Array  # [T, S] sector factor log return (with crash drops)
    market_vol: jax.Array  # [T] conditional daily volatility of the market factor
    log_return: jax.Array  # [T, N] close-to-close log return after circuit clipping
    circuit_lock: jax.Array  # [T, N] int8: +1 closed at the upper band, -1 at the lower
    gap: jax.Array  # [T, N] log(open / previous close)
    high_rel: jax.Array  # [T, N] log(high / previous close)
    low_rel: jax.Array  # [T, N] log(low / previous close)
    close: jax.Array  # [T, N] float32 close (host rebuilds it in float64)
    volume: jax.Array  # [T, N] shares traded
    delivery_pct: jax.Array  # [T, N] 5..95
    sentiment: jax.Array  # [T, N] in (-1, 1)
    macro: jax.Array  # [T, 11] schema.MACRO_SERIES order
    fundamentals: jax.Array  # [T, N, 10] true daily state, schema.FUNDAMENTAL_FIELDS order
    cheapness: jax.Array  # [T, N] valuation factor (high = cheap = higher drift)
    circuit_band: jax.Array  # [N]
    price0: jax.Array  # [N] close before day 0
    shares: jax.Array  # [N] shares outstanding


# --------------------------------------------------------------------------- shocks


def _split_draws(flat: jax.Array, shapes: dict[str, tuple[int, ...]]) -> dict[str, jax.Array]:
    """Cut one flat vector of draws into named arrays of the given shapes (in order)."""
    out, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out


def _student_t(z: jax.Array, dof: int) -> jax.Array:
    """Unit-variance Student-t from normals z [..., dof + 1] (chi-square = sum of squares)."""
    chi2 = jnp.sum(z[..., 1:] ** 2, axis=-1)
    return z[..., 0] / jnp.sqrt(chi2 / dof) * np.sqrt((dof - 2.0) / dof)


def draw_shocks(key: jax.Array, params: SynthParams, num_days: int) -> SynthShocks:
    """Every random number of one market, from ``key`` ([T] leading axis, T = num_days).

    One normal and one uniform draw, cut into pieces: cheap to compile (each separate
    ``jax.random`` call inlines its own counter-based hash).
    """
    if params.t_dof < 3:
        raise ConfigError(
            f"SynthParams.t_dof must be >= 3 for a finite variance, got {params.t_dof}"
        )
    s = params.sector_beta.shape[0]
    n = params.stock_sector.shape[0]
    t, d = num_days, params.t_dof + 1
    normal_shapes = {
        "z_market": (t, d),
        "z_sector": (t, s, d),
        "z_stock": (t, n, d),
        "gap_z": (t, n),
        "range_z": (t, n, 2),
        "volume_z": (t, n),
        "delivery_z": (t, n),
        "news_z": (t, n),
        "valuation_z": (t, n),
        "fund_z": (t, n, NUM_FUNDAMENTALS),
        "macro_z": (t, _MACRO_NOISE),
        "stock_z": (n, _STOCK_Z),
    }
    uniform_shapes = {
        "regime_u": (t,),
        "crash_u": (t,),
        "crash_size_u": (t,),
        "stock_u": (n, _STOCK_U),
    }
    normal_key, uniform_key = jax.random.split(key)
    total_normal = sum(int(np.prod(v)) for v in normal_shapes.values())
    total_uniform = sum(int(np.prod(v)) for v in uniform_shapes.values())
    z = _split_draws(jax.random.normal(normal_key, (total_normal,), jnp.float32), normal_shapes)
    u = _split_draws(jax.random.uniform(uniform_key, (total_uniform,), jnp.float32), uniform_shapes)
    for name in ("z_market", "z_sector", "z_stock"):
        z[name] = _student_t(z[name], params.t_dof)
    return SynthShocks(**z, **u)


# --------------------------------------------------------------------------- per-day steps


def _sample(probs: jax.Array, u: jax.Array) -> jax.Array:
    """Inverse-CDF draw of a category from ``probs`` [C] with a uniform ``u``; int32."""
    cdf = jnp.cumsum(probs)
    return jnp.minimum(jnp.sum(u >= cdf[:-1]), probs.shape[0] - 1).astype(jnp.int32)


def _regime_step(transition, init_probs, prev, u, first):
    """Regime of today given yesterday's (``first``: draw from ``init_probs`` instead)."""
    return jnp.where(first, _sample(init_probs, u), _sample(transition[prev], u))


def _crash_step(params: SynthParams, left, size, regime, u, size_u):
    """(left', size', active, daily drop of an average sector). A crash starts with probability
    ``crash_intensity[regime]`` when none is under way and spreads its total drop evenly over
    ``crash_days`` days."""
    lo, hi = params.crash_size[0], params.crash_size[1]
    start = (left == 0) & (u < params.crash_intensity[regime])
    left = jnp.where(start, params.crash_days, left)
    size = jnp.where(start, lo + (hi - lo) * size_u, size)
    active = left > 0
    drop = jnp.where(active, size / params.crash_days.astype(jnp.float32), 0.0)
    return jnp.maximum(left - 1, 0), size, active, drop


def _circuit_step(pending, desired, lo, hi):
    """Clip today's wanted log return (plus yesterday's excess) at the band [lo, hi].

    Returns (excess carried to tomorrow, realized log return, lock int8 +1 upper / -1 lower).
    """
    y = desired + pending
    r = jnp.clip(y, lo, hi)
    lock = (y > hi).astype(jnp.int8) - (y < lo).astype(jnp.int8)
    return y - r, r, lock


def _garch(h: jax.Array, e: jax.Array, ab: jax.Array) -> jax.Array:
    """Unit-unconditional-variance GARCH(1,1) update, bounded to [0.05, 30]."""
    a, b = ab[0], ab[1]
    return jnp.clip((1.0 - a - b) + a * e**2 + b * h, 0.05, 30.0)


@struct.dataclass
class DayState:
    """Carry of the daily scan (float32 unless noted)."""

    regime: jax.Array  # [] int32
    crash_left: jax.Array  # [] int32 days of the current crash still to come
    crash_size: jax.Array  # []
    h_market: jax.Array  # [] GARCH variance multipliers
    h_sector: jax.Array  # [S]
    h_stock: jax.Array  # [N]
    pending: jax.Array  # [N] excess log return held back by a circuit
    momentum: jax.Array  # [N] EMA of standardised returns (sentiment)
    trailing: jax.Array  # [N] EMA of log returns, ~quarter (fundamentals)
    macro: dict  # macro state, see ``_macro_init``


def _macro_init() -> dict:
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return {
        "vix": f(16.0),
        "mood": f(0.0),
        "ret5": f(0.0),
        "pcr_dev": f(0.0),
        "log_fx": f(np.log(53.0)),
        "log_crude": f(np.log(105.0)),
        "crude_ema": f(np.log(105.0)),
        "policy": f(7.0),
        "credit_dev": f(0.0),
        "gsec_dev": f(0.0),
        "fno_dev": f(0.0),
    }


_REGIME_SCORE = (1.0, -1.0, 0.0)  # Bull, Bear, Sideways
_CRUDE_DRIFT = (0.0004, -0.0008, 0.0)  # daily log drift of crude per regime


def _macro_step(c: dict, regime, crashing, market_ret, market_vol, event, day, z):
    """One day of the 11 macro series (schema.MACRO_SERIES order) from the state ``c``.

    ``mood`` is a lagged, smoothed view of the regime: the series carry regime information,
    late and noisily, so that regime detection is learnable but imperfect.
    """
    f32 = jnp.float32
    mood = c["mood"] + (jnp.asarray(_REGIME_SCORE, f32)[regime] - c["mood"]) / 15.0
    ret5 = c["ret5"] + (market_ret - c["ret5"]) / 3.0
    vol = 100.0 * np.sqrt(252.0) * market_vol
    vix = c["vix"] + 0.12 * (1.1 * vol + 6.0 * crashing - c["vix"]) + 0.06 * c["vix"] * z[0]
    vix = jnp.clip(vix, 8.0, 90.0)
    fii = 1500.0 * ret5 / 0.01 + 900.0 * mood + 1800.0 * z[1]
    dii = -0.45 * fii + 500.0 + 1000.0 * z[2]
    pcr_dev = 0.9 * c["pcr_dev"] + 0.04 * z[3]
    pcr = jnp.clip(1.0 - 0.15 * mood + 0.004 * (vix - 16.0) + pcr_dev, 0.4, 2.5)
    fx_drift = 1.2e-4 + 6e-4 * jnp.maximum(-mood, 0.0) - 2e-4 * jnp.maximum(mood, 0.0)
    log_fx = c["log_fx"] + fx_drift + 0.004 * z[4]
    log_crude = (
        c["log_crude"]
        + jnp.asarray(_CRUDE_DRIFT, f32)[regime]
        + 0.002 * (np.log(75.0) - c["log_crude"])
        + 0.02 * z[5]
    )
    crude_ema = c["crude_ema"] + (log_crude - c["crude_ema"]) / 63.0
    crude_mom = log_crude - crude_ema
    # MPC: 25 bp steps when growth (mood) and inflation (crude) pressure is strong; [4, 8] %.
    pressure = 0.8 * mood + 3.0 * crude_mom + 0.5 * z[6]
    move = 0.25 * (pressure > 1.0).astype(f32) - 0.25 * (pressure < -0.9).astype(f32)
    policy = jnp.where(event == EVENT_MPC, jnp.clip(c["policy"] + move, 4.0, 8.0), c["policy"])
    credit_dev = 0.98 * c["credit_dev"] + 0.03 * z[7]
    credit = jnp.clip(
        1.0 + 0.6 * jnp.maximum(-mood, 0.0) + 0.02 * (vix - 16.0) + credit_dev, 0.3, 6.0
    )
    gsec_dev = 0.99 * c["gsec_dev"] + 0.03 * z[8]
    gsec = policy + 0.8 + crude_mom + gsec_dev
    fno_dev = 0.95 * c["fno_dev"] + 0.05 * z[9]
    fno = jnp.exp(np.log(2.0e5) + 0.12 * day / 252.0 + 0.1 * mood + fno_dev)
    state = {
        "vix": vix,
        "mood": mood,
        "ret5": ret5,
        "pcr_dev": pcr_dev,
        "log_fx": log_fx,
        "log_crude": log_crude,
        "crude_ema": crude_ema,
        "policy": policy,
        "credit_dev": credit_dev,
        "gsec_dev": gsec_dev,
        "fno_dev": fno_dev,
    }
    row = jnp.stack(
        [
            vix,
            fii,
            dii,
            pcr,
            jnp.exp(log_fx),
            jnp.exp(log_crude),
            policy,
            credit,
            gsec,
            fno,
            (event > 0).astype(f32),
        ]
    )
    return state, row.astype(f32)


def _day(params: SynthParams, attrs: dict, c: DayState, x: dict):
    """One trading day: regime, crash, factor returns, circuit, sentiment and macro."""
    first = x["day"] == 0
    regime = _regime_step(params.transition, params.init_probs, c.regime, x["regime_u"], first)
    left, size, crashing, drop = _crash_step(
        params, c.crash_left, c.crash_size, regime, x["crash_u"], x["crash_size_u"]
    )
    z_m, z_s, z_i = x["z_market"], x["z_sector"], x["z_stock"]
    ev_mult = jnp.where(x["event"] > 0, params.event_vol_mult, 1.0)
    sig_m = params.market_sigma[regime] * jnp.sqrt(c.h_market) * ev_mult
    market = params.market_mu[regime] + sig_m * z_m
    crash_s = -drop * params.crash_profile
    sig_s = params.sector_sigma * jnp.sqrt(c.h_sector)
    sector = params.sector_alpha[regime] + params.sector_beta * market + sig_s * z_s + crash_s
    sid = params.stock_sector
    sig_i = attrs["idio"] * params.idio_regime_mult[regime] * jnp.sqrt(c.h_stock)
    desired = attrs["load"] * sector[sid] + sig_i * z_i + params.value_premium * x["cheapness"]
    sd = attrs["load"] * jnp.sqrt((params.sector_beta * sig_m) ** 2 + sig_s**2)[sid]
    sd = jnp.sqrt(sd**2 + sig_i**2)
    pending, realized, lock = _circuit_step(c.pending, desired, attrs["lo"], attrs["hi"])
    momentum = 0.7 * c.momentum + 0.3 * realized / attrs["typical_sd"]
    trailing = c.trailing + (realized - c.trailing) / 63.0
    macro, macro_row = _macro_step(
        c.macro,
        regime,
        crashing.astype(jnp.float32),
        jnp.mean(sector),
        sig_m,
        x["event"],
        x["day"].astype(jnp.float32),
        x["macro_z"],
    )
    # Crash drops feed the variance recursions: volatility stays high after a crash.
    new = DayState(
        regime=regime,
        crash_left=left,
        crash_size=size,
        h_market=_garch(
            c.h_market,
            jnp.sqrt(c.h_market) * z_m - drop / params.market_sigma[regime],
            params.garch[0],
        ),
        h_sector=_garch(
            c.h_sector, jnp.sqrt(c.h_sector) * z_s + crash_s / params.sector_sigma, params.garch[1]
        ),
        h_stock=_garch(c.h_stock, jnp.sqrt(c.h_stock) * z_i, params.garch[2]),
        pending=pending,
        momentum=momentum,
        trailing=trailing,
        macro=macro,
    )
    out = {
        "regime": regime,
        "crash": crashing,
        "market": market,
        "sector": sector,
        "market_vol": sig_m,
        "realized": realized,
        "lock": lock,
        "stock_sd": sd,
        "momentum": momentum,
        "trailing": trailing,
        "macro": macro_row,
    }
    return new, out


# --------------------------------------------------------------------------- standalone pieces


def regime_path(transition: jax.Array, init_probs: jax.Array, u: jax.Array) -> jax.Array:
    """[T] int32 Markov regime path driven by uniforms ``u`` [T] (the generator's rule)."""

    def step(prev, inp):
        t, u_t = inp
        r = _regime_step(transition, init_probs, prev, u_t, t == 0)
        return r, r

    days = jnp.arange(u.shape[0], dtype=jnp.int32)
    return lax.scan(step, jnp.array(0, jnp.int32), (days, u))[1]


def apply_circuit(desired: jax.Array, band: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Clip log returns at circuit bands, carrying the excess to the next day.

    Args:
      desired: [T, N] log returns the stock "wants".
      band: [N] circuit band as a fraction of the previous close (e.g. 0.05).
    Returns:
      realized [T, N] log returns in [log(1 - band), log(1 + band)] and lock [T, N] int8:
      +1 where the close is held at the upper band, -1 at the lower, 0 otherwise.
    """
    lo, hi = jnp.log1p(-band), jnp.log1p(band)

    def step(pending, x):
        pending, r, lock = _circuit_step(pending, x, lo, hi)
        return pending, (r, lock)

    _, (realized, lock) = lax.scan(step, jnp.zeros_like(desired[0]), desired)
    return realized, lock


def ar1(z: jax.Array, rho: jax.Array) -> jax.Array:
    """Unit-variance stationary AR(1) over axis 0: y_0 = z_0, y_t = rho y_{t-1} + sqrt(1-rho²) z_t.

    z [T, D] normals, rho [D] -> y [T, D].
    """
    scale = jnp.sqrt(1.0 - rho**2)

    def step(y, z_t):
        y = rho * y + scale * z_t
        return y, y

    return jnp.concatenate([z[:1], lax.scan(step, z[0], z[1:])[1]])


def _noise_series(params: SynthParams, shocks: SynthShocks) -> dict[str, jax.Array]:
    """The independent AR(1) noises, filtered in one scan: cheapness, volume, delivery and news
    [T, N], fundamentals [T, N, K]."""
    t, n = shocks.volume_z.shape
    k = shocks.fund_z.shape[-1]
    parts = [shocks.valuation_z, shocks.volume_z, shocks.delivery_z, shocks.news_z]
    z = jnp.concatenate([*parts, shocks.fund_z.reshape(t, n * k)], axis=1)
    one = jnp.ones((n,), jnp.float32)
    rho = jnp.concatenate(
        [
            params.valuation_rho * one,
            0.6 * one,
            0.8 * one,
            0.9 * one,
            jnp.full((n * k,), 0.99, jnp.float32),
        ]
    )
    y = ar1(z, rho)
    names = ("cheapness", "volume", "delivery", "news")
    out = {name: y[:, i * n : (i + 1) * n] for i, name in enumerate(names)}
    out["fund"] = y[:, 4 * n :].reshape(t, n, k)
    return out


def _stock_attributes(params: SynthParams, u: jax.Array) -> dict[str, jax.Array]:
    """Per-stock constants [N] from the uniforms ``u`` [N, 10]."""

    def log_uniform(x, lo, hi):
        return jnp.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * x)

    cdf = jnp.cumsum(params.band_probs)
    band_class = jnp.minimum(jnp.sum(u[:, 4:5] >= cdf[None, :-1], axis=1), 2)
    band = params.band_levels[band_class]
    lo_sig, hi_sig = params.idio_sigma[0], params.idio_sigma[1]
    load = 0.8 + 0.4 * u[:, 3]
    idio = lo_sig + (hi_sig - lo_sig) * u[:, 2]
    price0 = log_uniform(u[:, 0], 80.0, 3000.0)
    mcap0 = log_uniform(u[:, 1], 5.0e10, 1.5e13)  # INR
    # Typical (static) daily vol: standardises |returns| for volume, delivery and sentiment.
    typ = jnp.sqrt(
        (params.sector_beta * jnp.mean(params.market_sigma)) ** 2 + params.sector_sigma**2
    )[params.stock_sector]
    return {
        "price0": price0,
        "shares": jnp.round(mcap0 / price0),
        "idio": idio,
        "load": load,
        "band": band,
        "lo": jnp.log1p(-band),
        "hi": jnp.log1p(band),
        "typical_sd": jnp.sqrt((load * typ) ** 2 + idio**2),
        "turnover": log_uniform(u[:, 5], 5.0e-4, 5.0e-3),
        "delivery": 35.0 + 25.0 * u[:, 6],
        "pledged": u[:, 7] < 0.3,
        "pledge": 3.0 + 27.0 * u[:, 8],
        "free_float": 25.0 + 50.0 * u[:, 9],
    }


def _fundamentals(params, shocks, noise, trailing, attrs) -> jax.Array:
    """[T, N, 10] daily fundamental state (schema.FUNDAMENTAL_FIELDS order)."""
    quality, leverage = shocks.stock_z[:, 0], shocks.stock_z[:, 1]
    base = params.sector_fund_base[params.stock_sector]  # [N, 6]
    v, n = noise["cheapness"], noise["fund"]
    trail = trailing * 252.0  # annualised trailing log return
    cols = [
        base[:, 0] * jnp.exp(-0.35 * v + 0.12 * n[..., 0]),
        base[:, 1] * jnp.exp(-0.35 * v + 0.15 * quality + 0.10 * n[..., 1]),
        base[:, 2] * jnp.exp(-0.30 * v + 0.10 * n[..., 2]),
        base[:, 3] + 4.0 * quality + 1.5 * n[..., 3],
        base[:, 4] + 4.0 * quality + 1.5 * n[..., 4],
        base[:, 5] * jnp.exp(0.3 * leverage + 0.15 * n[..., 5]),
        10.0 + 25.0 * trail + 6.0 * quality + 6.0 * n[..., 6],
        jnp.where(attrs["pledged"], jnp.clip(attrs["pledge"] + 2.0 * n[..., 7], 0.5, 90.0), 0.0),
        jnp.clip(attrs["free_float"] + 1.5 * n[..., 8], 10.0, 95.0),
        1.5 * trail + 0.4 * n[..., 9],
    ]
    return jnp.stack(cols, axis=-1).astype(jnp.float32)


# --------------------------------------------------------------------------- the market


def simulate(params: SynthParams, shocks: SynthShocks, event_day: jax.Array) -> SynthArrays:
    """Deterministic market from its shocks. event_day [T] int32: 0 none, 1 MPC, 2 budget."""
    f32 = jnp.float32
    attrs = _stock_attributes(params, shocks.stock_u)
    noise = _noise_series(params, shocks)
    s, n = params.sector_beta.shape[0], params.stock_sector.shape[0]
    init = DayState(
        regime=jnp.array(0, jnp.int32),
        crash_left=jnp.array(0, jnp.int32),
        crash_size=jnp.array(0.0, f32),
        h_market=jnp.array(1.0, f32),
        h_sector=jnp.ones((s,), f32),
        h_stock=jnp.ones((n,), f32),
        pending=jnp.zeros((n,), f32),
        momentum=jnp.zeros((n,), f32),
        trailing=jnp.zeros((n,), f32),
        macro=_macro_init(),
    )
    xs = {
        "day": jnp.arange(event_day.shape[0], dtype=jnp.int32),
        "event": event_day.astype(jnp.int32),
        "regime_u": shocks.regime_u,
        "crash_u": shocks.crash_u,
        "crash_size_u": shocks.crash_size_u,
        "z_market": shocks.z_market,
        "z_sector": shocks.z_sector,
        "z_stock": shocks.z_stock,
        "cheapness": noise["cheapness"],
        "macro_z": shocks.macro_z,
    }
    _, o = lax.scan(lambda c, x: _day(params, attrs, c, x), init, xs)

    realized, sd, lo, hi = o["realized"], o["stock_sd"], attrs["lo"], attrs["hi"]
    gap = jnp.clip(0.25 * realized + 0.35 * sd * shocks.gap_z, lo, hi)
    high_rel = jnp.minimum(
        jnp.maximum(gap, realized) + 0.6 * sd * jnp.abs(shocks.range_z[..., 0]), hi
    )
    low_rel = jnp.maximum(
        jnp.minimum(gap, realized) - 0.6 * sd * jnp.abs(shocks.range_z[..., 1]), lo
    )
    surprise = jnp.minimum(jnp.abs(realized) / attrs["typical_sd"], 6.0)
    locked = jnp.abs(o["lock"]).astype(f32)
    bear = (o["regime"] == BEAR).astype(f32)[:, None]
    log_volume = (
        jnp.log(attrs["shares"] * attrs["turnover"])
        + 0.35 * (surprise - 0.8)
        + 0.3 * noise["volume"]
        + 0.15 * bear
        - 1.5 * locked
    )
    delivery = jnp.clip(
        attrs["delivery"] + 4.0 * noise["delivery"] - 3.0 * jnp.minimum(surprise, 5.0), 5.0, 95.0
    )
    return SynthArrays(
        regime=o["regime"],
        crash=o["crash"],
        market_factor=o["market"].astype(f32),
        sector_factor=o["sector"].astype(f32),
        market_vol=o["market_vol"].astype(f32),
        log_return=realized.astype(f32),
        circuit_lock=o["lock"],
        gap=gap.astype(f32),
        high_rel=high_rel.astype(f32),
        low_rel=low_rel.astype(f32),
        close=(attrs["price0"] * jnp.exp(jnp.cumsum(realized, axis=0))).astype(f32),
        volume=jnp.exp(log_volume).astype(f32),
        delivery_pct=delivery.astype(f32),
        sentiment=jnp.tanh(0.8 * o["momentum"] + 0.4 * noise["news"]).astype(f32),
        macro=o["macro"],
        fundamentals=_fundamentals(params, shocks, noise, o["trailing"], attrs),
        cheapness=noise["cheapness"].astype(f32),
        circuit_band=attrs["band"].astype(f32),
        price0=attrs["price0"].astype(f32),
        shares=attrs["shares"].astype(f32),
    )


def generate(key: jax.Array, params: SynthParams, event_day: jax.Array) -> SynthArrays:
    """One market from ``key``; T = len(event_day).

    Vmappable over keys: ``jax.vmap(generate, in_axes=(0, None, None))``.
    """
    return simulate(params, draw_shocks(key, params, event_day.shape[0]), event_day)
