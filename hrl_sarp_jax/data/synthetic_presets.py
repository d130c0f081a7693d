"""Presets of the embedded synthetic market: sectors, tickers and the model's calibration.

# HOST ONLY (builds parameter arrays with NumPy)
All rates are annual log-return figures here and converted to daily in ``make_params``.
Sector order is the original's canonical order (IT, Financials, Auto, ...), see
``reference/original_hrl_sarp.md`` §2.5.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import yaml

from hrl_sarp_jax.data.synthetic_core import SynthParams
from hrl_sarp_jax.errors import ConfigError

TRADING_DAYS = 252

# §2.5 universe; invalid symbols replaced by their current names (LT, STLTECH, PVRINOX).
# fmt: off
TICKERS: dict[str, tuple[str, ...]] = {
    "IT": ("TCS", "INFY", "WIPRO", "HCLTECH", "TECHM", "LTIM", "MPHASIS", "COFORGE", "PERSISTENT",
        "LTTS"),
    "Financials": ("HDFCBANK", "ICICIBANK", "KOTAKBANK", "SBIN", "AXISBANK", "BAJFINANCE",
        "BAJAJFINSV", "HDFCLIFE", "SBILIFE", "ICICIGI"),
    "Auto": ("MARUTI", "TATAMOTORS", "M&M", "BAJAJ-AUTO", "HEROMOTOCO", "EICHERMOT", "ASHOKLEY",
        "BHARATFORG", "MOTHERSON", "BALKRISIND"),
    "Pharma": ("SUNPHARMA", "DRREDDY", "CIPLA", "DIVISLAB", "APOLLOHOSP", "BIOCON", "TORNTPHARM",
        "LUPIN", "ALKEM", "AUROPHARMA"),
    "FMCG": ("HINDUNILVR", "ITC", "NESTLEIND", "BRITANNIA", "DABUR", "MARICO", "COLPAL",
        "GODREJCP", "TATACONSUM", "UBL"),
    "Energy": ("RELIANCE", "ONGC", "BPCL", "IOC", "NTPC", "POWERGRID", "ADANIGREEN", "TATAPOWER",
        "GAIL", "PETRONET"),
    "Metals": ("TATASTEEL", "HINDALCO", "JSWSTEEL", "VEDL", "COALINDIA", "NMDC", "SAIL",
        "NATIONALUM", "HINDZINC", "MOIL"),
    "Realty": ("DLF", "GODREJPROP", "OBEROIRLTY", "PHOENIXLTD", "PRESTIGE", "BRIGADE", "SOBHA",
        "SUNTECK", "LODHA", "MAHLIFE"),
    "Media": ("ZEEL", "SUNTV", "PVRINOX", "NETWORK18", "TV18BRDCST", "NAZARA", "SAREGAMA", "TIPS",
        "TVTODAY", "NDTV"),
    "Telecom": ("BHARTIARTL", "IDEA", "TATACOMM", "RAILTEL", "HFCL", "STLTECH", "TEJAS", "ROUTE",
        "GTPL", "DEN"),
    "Infra": ("LT", "ADANIPORTS", "ULTRACEMCO", "AMBUJACEM", "SHREECEM", "IRCON", "NBCC", "NCC",
        "KNR", "PNC"),
}
# fmt: on


@dataclass(frozen=True)
class SectorSpec:
    """One sector's calibration (annual figures; fundamentals are typical levels)."""

    beta: float  # loading on the market factor
    sigma: float  # sector-specific annual volatility
    alpha: tuple[float, float, float]  # annual excess drift in (bull, bear, sideways)
    crash: float  # relative crash severity (1 = average sector)
    fund: tuple[float, float, float, float, float, float]  # pe, pb, ev_ebitda, roe, roce, d/e


# Cyclicals (Auto, Metals, Realty, Financials, Infra, Energy) lead in bulls, defensives
# (FMCG, Pharma, IT, Telecom) in bears. Crash severities follow the original's covid shock.
SECTORS: dict[str, SectorSpec] = {
    "IT": SectorSpec(0.75, 0.14, (-0.07, 0.14, 0.10), 18 / 28.9, (25, 7.0, 17, 26, 32, 0.1)),
    "Financials": SectorSpec(1.15, 0.12, (0.07, -0.12, 0.03), 35 / 28.9, (18, 2.8, 12, 15, 9, 6.0)),
    "Auto": SectorSpec(1.10, 0.13, (0.09, -0.10, -0.02), 30 / 28.9, (22, 4.0, 13, 17, 20, 0.6)),
    "Pharma": SectorSpec(0.60, 0.13, (-0.10, 0.22, 0.08), 10 / 28.9, (28, 4.5, 18, 16, 19, 0.3)),
    "FMCG": SectorSpec(0.55, 0.10, (-0.10, 0.24, 0.06), 15 / 28.9, (45, 12.0, 30, 30, 38, 0.2)),
    "Energy": SectorSpec(1.00, 0.13, (0.03, -0.04, 0.00), 40 / 28.9, (12, 1.8, 7, 13, 12, 0.8)),
    "Metals": SectorSpec(1.35, 0.18, (0.12, -0.16, -0.07), 35 / 28.9, (9, 1.5, 6, 14, 15, 0.9)),
    "Realty": SectorSpec(1.45, 0.20, (0.12, -0.18, -0.09), 45 / 28.9, (30, 2.5, 20, 9, 11, 0.7)),
    "Media": SectorSpec(1.10, 0.18, (-0.05, -0.10, -0.06), 40 / 28.9, (25, 3.0, 14, 11, 13, 0.4)),
    "Telecom": SectorSpec(0.70, 0.15, (-0.07, 0.10, 0.00), 12 / 28.9, (35, 4.0, 10, 8, 9, 1.8)),
    "Infra": SectorSpec(1.20, 0.13, (0.09, -0.10, -0.03), 38 / 28.9, (20, 3.2, 13, 13, 14, 1.0)),
}

PRESET_SECTORS: dict[str, tuple[str, ...]] = {
    "nse": (
        "IT",
        "Financials",
        "Auto",
        "Pharma",
        "FMCG",
        "Energy",
        "Metals",
        "Realty",
        "Media",
        "Telecom",
        "Infra",
    ),
    "small": ("IT", "FMCG", "Metals"),
}

# Regime dynamics (0 Bull, 1 Bear, 2 Sideways): mean durations in trading days and where a
# regime goes when it ends.
MEAN_DURATION = (90.0, 40.0, 50.0)
EXIT_SPLIT = ((0.0, 0.35, 0.65), (0.30, 0.0, 0.70), (0.60, 0.40, 0.0))
MARKET_MU = (0.20, -0.30, 0.04)  # annual log drift of the market factor per regime
MARKET_SIGMA = (0.12, 0.26, 0.15)  # annual volatility of the market factor per regime
CRASH_PER_YEAR = (0.025, 1.0, 0.12)  # crash starts per year spent in each regime
CRASH_TOTAL_DROP = (0.10, 0.25)  # total log drop of an average sector over one crash
CRASH_DAYS = 5
IDIO_SIGMA = (0.18, 0.32)  # annual idiosyncratic volatility range across stocks
IDIO_REGIME_MULT = (1.0, 1.3, 1.05)
GARCH = ((0.08, 0.90), (0.07, 0.91), (0.07, 0.91))  # (alpha, beta): market, sector, idio
T_DOF = 5
VALUE_PREMIUM = 0.025  # extra annual drift per 1 sd of cheapness
VALUATION_HALF_LIFE_YEARS = 2.0
BAND_LEVELS = (0.05, 0.10, 0.20)  # NSE price bands
BAND_PROBS = (0.10, 0.30, 0.60)
EVENT_VOL_MULT = 1.5


def transition_matrix() -> np.ndarray:
    """[3, 3] daily regime transition matrix with the configured mean durations."""
    p = np.zeros((3, 3))
    for i in range(3):
        stay = 1.0 - 1.0 / MEAN_DURATION[i]
        p[i] = (1.0 - stay) * np.asarray(EXIT_SPLIT[i])
        p[i, i] = stay
    return p


def stationary(p: np.ndarray) -> np.ndarray:
    """[3] stationary distribution of a transition matrix."""
    w, v = np.linalg.eig(p.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1.0))])
    return pi / pi.sum()


def preset_sectors(preset: str) -> tuple[str, ...]:
    if is_calibration(preset):
        return calibration(preset).sectors
    if preset not in PRESET_SECTORS:
        raise ConfigError(
            f"synth.preset '{preset}' is unknown (choose one of: {', '.join(PRESET_SECTORS)}, "
            f"or a calibration file FILE.yaml from `hrl-sarp data calibrate`)"
        )
    return PRESET_SECTORS[preset]


def preset_tickers(preset: str, stocks_per_sector: int) -> tuple[tuple[str, str], ...]:
    """((ticker, sector), ...) sector-major. Beyond the 10 real names: ``SYN<SECTOR><k>``. A
    calibration's universe is its market's own (``stocks_per_sector`` is not used)."""
    if is_calibration(preset):
        return calibration(preset).tickers
    if stocks_per_sector < 1:
        raise ConfigError(f"synth.stocks_per_sector must be >= 1, got {stocks_per_sector}")
    out = []
    for sector in preset_sectors(preset):
        names = TICKERS[sector]
        for k in range(stocks_per_sector):
            ticker = names[k] if k < len(names) else f"SYN{sector.upper()}{k + 1:03d}"
            out.append((ticker, sector))
    return tuple(out)


ALPHA_JITTER_STREAM = 0xA1FA
"""NumPy seed stream of the per-market sector drift draw: ``default_rng([stream, seed])``."""


def sector_alpha_annual(preset: str, seed: int = 0, jitter: float = 0.0) -> np.ndarray:
    """[3, S] annual excess drift of each sector per regime: the preset's ``SectorSpec.alpha``,
    plus, when ``jitter`` > 0, a per-market draw ``jitter * N(0, 1)`` for every (regime,
    sector) from ``default_rng([ALPHA_JITTER_STREAM, seed])``. With ``jitter`` 0 every market
    of a preset shares one table (the seed changes only the shocks)."""
    if is_calibration(preset):
        alpha = calibration(preset).sector_alpha.copy()
    else:
        alpha = np.array([SECTORS[s].alpha for s in preset_sectors(preset)]).T  # [3, S]
    if jitter < 0 or not np.isfinite(jitter):
        raise ConfigError(f"synth.alpha_jitter = {jitter} must be a standard deviation >= 0")
    if jitter > 0:
        rng = np.random.default_rng([ALPHA_JITTER_STREAM, int(seed)])
        alpha = alpha + float(jitter) * rng.standard_normal(alpha.shape)
    return alpha


def sector_drift_annual(preset: str, seed: int = 0, jitter: float = 0.0) -> np.ndarray:
    """[3, S] configured expected annual log return of each sector per regime.

    alpha[r, s] + beta[s] * market_mu[r] (``sector_alpha_annual``): what the regime oracle
    ranks sectors by.
    """
    alpha = sector_alpha_annual(preset, seed, jitter)
    if is_calibration(preset):
        cal = calibration(preset)
        return alpha + cal.market_mu[:, None] * cal.sector_beta[None, :]
    beta = np.array([SECTORS[s].beta for s in preset_sectors(preset)])
    return alpha + np.asarray(MARKET_MU)[:, None] * beta[None, :]


def make_params(preset: str, stocks_per_sector: int, seed: int = 0,
                alpha_jitter: float = 0.0) -> SynthParams:
    """SynthParams for a preset (float32 leaves; the sector of each stock as int32); with
    ``alpha_jitter`` > 0 the sector drifts are market ``seed``'s (``sector_alpha_annual``).
    A calibration file's parameters replace the built-in ones it fits (``data.calibrate``)."""
    sectors = preset_sectors(preset)
    alpha = sector_alpha_annual(preset, seed, alpha_jitter)
    if is_calibration(preset):
        cal = calibration(preset)
        sector_of = {name: i for i, name in enumerate(sectors)}
        stock_sector = np.array([sector_of[sec] for _, sec in cal.tickers], np.int32)
        return _params(cal.transition, cal.market_mu, cal.market_sigma, alpha, cal.sector_beta,
                       cal.sector_sigma, cal.sector_fund, np.ones(len(sectors)),
                       cal.crash_per_year, cal.idio_sigma, cal.idio_regime_mult,
                       cal.band_levels, cal.band_probs, stock_sector, cal.garch)
    specs = [SECTORS[s] for s in sectors]
    stock_sector = np.repeat(np.arange(len(sectors)), stocks_per_sector).astype(np.int32)
    return _params(transition_matrix(), np.asarray(MARKET_MU), np.asarray(MARKET_SIGMA), alpha,
                   [sp.beta for sp in specs], np.array([sp.sigma for sp in specs]),
                   [sp.fund for sp in specs], [sp.crash for sp in specs],
                   np.asarray(CRASH_PER_YEAR), np.asarray(IDIO_SIGMA), IDIO_REGIME_MULT,
                   BAND_LEVELS, BAND_PROBS, stock_sector, GARCH)


def _params(p, market_mu, market_sigma, alpha, beta, sigma, fund, crash_profile, crash_per_year,
            idio_sigma, idio_mult, band_levels, band_probs, stock_sector, garch) -> SynthParams:
    """SynthParams from annual figures (rates and volatilities converted to daily here)."""
    d = float(TRADING_DAYS)
    f32 = lambda x: jnp.asarray(np.asarray(x, np.float64), jnp.float32)  # noqa: E731
    return SynthParams(
        transition=f32(p),
        init_probs=f32(stationary(p)),
        market_mu=f32(market_mu / d),
        market_sigma=f32(market_sigma / np.sqrt(d)),
        sector_alpha=f32(alpha / d),
        sector_beta=f32(beta),
        sector_sigma=f32(sigma / np.sqrt(d)),
        sector_fund_base=f32(fund),
        crash_profile=f32(crash_profile),
        crash_intensity=f32(crash_per_year / d),
        crash_size=f32(CRASH_TOTAL_DROP),
        crash_days=jnp.asarray(CRASH_DAYS, jnp.int32),
        garch=f32(garch),
        t_dof=T_DOF,
        idio_sigma=f32(idio_sigma / np.sqrt(d)),
        idio_regime_mult=f32(idio_mult),
        value_premium=f32(VALUE_PREMIUM / d),
        valuation_rho=f32(0.5 ** (1.0 / (VALUATION_HALF_LIFE_YEARS * d))),
        band_levels=f32(band_levels),
        band_probs=f32(band_probs),
        event_vol_mult=f32(EVENT_VOL_MULT),
        stock_sector=jnp.asarray(stock_sector),
    )


# --------------------------------------------------------------------------- calibrations


@dataclass(frozen=True)
class Calibration:
    """A calibration file's generator (``data.calibrate``; annual units, S = its sectors)."""

    path: str
    sha256: str
    sectors: tuple[str, ...]
    tickers: tuple[tuple[str, str], ...]  # (ticker, sector), sector-major, sorted within
    currency: str
    transition: np.ndarray  # [3, 3]
    market_mu: np.ndarray  # [3]
    market_sigma: np.ndarray  # [3]
    sector_alpha: np.ndarray  # [3, S]
    sector_beta: np.ndarray  # [S]
    sector_sigma: np.ndarray  # [S]
    sector_fund: np.ndarray  # [S, 6]
    idio_sigma: np.ndarray  # [2]
    idio_regime_mult: np.ndarray  # [3]
    crash_per_year: np.ndarray  # [3]
    garch: np.ndarray  # [3, 2] (alpha, beta): market, sector, idiosyncratic
    band_levels: np.ndarray  # [3]
    band_probs: np.ndarray  # [3]

    def mean_durations(self) -> tuple[float, ...]:
        """Each regime's mean spell in trading days, 1 / (1 - stay probability)."""
        return tuple(float(1.0 / max(1.0 - self.transition[i, i], 1e-12)) for i in range(3))


def is_calibration(preset: str) -> bool:
    """A ``synth.preset`` naming a calibration file (it ends in .yaml or .yml)."""
    return str(preset).endswith((".yaml", ".yml"))


def calibration(preset: str) -> Calibration:
    """The calibration file ``preset`` names, read and checked (cached while it is unchanged)."""
    path = Path(preset)
    if not path.is_file():
        raise ConfigError(f"synth.preset '{preset}': calibration file not found (looked at "
                          f"{path.resolve()}; write one with `hrl-sarp data calibrate REAL_DIR "
                          f"--out FILE.yaml`)")
    stat = path.stat()
    return _read_calibration(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


def _non_negative(path: str, key: str, value: np.ndarray) -> np.ndarray:
    if np.any(value < 0):
        raise ConfigError(f"calibration {path}: '{key}' must be >= 0, got {value.tolist()}")
    return value


def _garch(path: str, value: np.ndarray) -> np.ndarray:
    if np.any(value < 0) or np.any(value.sum(axis=1) >= 1):
        raise ConfigError(f"calibration {path}: 'garch' rows (alpha, beta) must be >= 0 with "
                          f"alpha + beta < 1, got {value.tolist()}")
    return value


@functools.lru_cache(maxsize=8)
def _read_calibration(path: str, _mtime_ns: int, _size: int) -> Calibration:
    raw = Path(path).read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"calibration {path}: not valid YAML ({str(exc).splitlines()[0]})"
                          ) from None

    def field(key, shape=None, positive=False):
        if not isinstance(doc, dict) or key not in doc:
            raise ConfigError(f"calibration {path}: key '{key}' is missing (rewrite the file "
                              f"with `hrl-sarp data calibrate`)")
        if shape is None:
            return doc[key]
        try:
            value = np.asarray(doc[key], np.float64)
        except (TypeError, ValueError):
            value = np.asarray([np.nan])
        if value.shape != shape or not np.all(np.isfinite(value)) or (
                positive and not np.all(value > 0)):
            need = "positive numbers" if positive else "finite numbers"
            raise ConfigError(f"calibration {path}: '{key}' must be {need} of shape {shape}, "
                              f"got {doc[key]!r}")
        return value

    sectors = tuple(str(s) for s in field("sectors"))
    tickers_by = field("tickers")
    if not sectors or not isinstance(tickers_by, dict) or set(tickers_by) != set(sectors) or \
            any(not tickers_by[s] for s in sectors):
        raise ConfigError(f"calibration {path}: 'tickers' must list at least one ticker for "
                          f"each of the sectors {list(sectors)}")
    per_sector = {key: field(key) for key in ("sector_alpha", "sector_beta", "sector_sigma",
                                              "sector_fundamentals")}
    for key, table in per_sector.items():
        if not isinstance(table, dict) or set(table) != set(sectors):
            raise ConfigError(f"calibration {path}: '{key}' must give a value for each of the "
                              f"sectors {list(sectors)}")
    doc = {**doc, **{key: [table[s] for s in sectors] for key, table in per_sector.items()}}
    n = len(sectors)
    transition = field("transition", (3, 3))
    if np.any(transition < 0) or not np.allclose(transition.sum(axis=1), 1.0, atol=1e-6):
        raise ConfigError(f"calibration {path}: 'transition' rows must be probabilities that "
                          f"sum to 1, got {transition.tolist()}")
    band_levels = field("band_levels", (3,), positive=True)
    band_probs = field("band_probs", (3,))
    if np.any(band_levels >= 1) or np.any(band_probs < 0) or abs(band_probs.sum() - 1) > 1e-6:
        raise ConfigError(f"calibration {path}: 'band_levels' must lie in (0, 1) and "
                          f"'band_probs' be probabilities summing to 1")
    return Calibration(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        sectors=sectors,
        tickers=tuple((str(t), s) for s in sectors for t in sorted(map(str, tickers_by[s]))),
        currency=str((doc.get("source") or {}).get("currency", "INR")),
        transition=transition / transition.sum(axis=1, keepdims=True),
        market_mu=field("market_mu", (3,)),
        market_sigma=field("market_sigma", (3,), positive=True),
        sector_alpha=field("sector_alpha", (n, 3)).T.copy(),
        sector_beta=field("sector_beta", (n,)),
        sector_sigma=field("sector_sigma", (n,), positive=True),
        sector_fund=field("sector_fundamentals", (n, 6)),
        idio_sigma=field("idio_sigma", (2,), positive=True),
        idio_regime_mult=field("idio_regime_mult", (3,), positive=True),
        crash_per_year=_non_negative(path, "crash_per_year", field("crash_per_year", (3,))),
        garch=_garch(path, field("garch", (3, 2))),
        band_levels=band_levels,
        band_probs=band_probs,
    )
