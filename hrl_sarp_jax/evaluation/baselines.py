"""Baseline strategies: causal weight functions for ``evaluation.backtest``.

Each baseline is a frozen dataclass (hashable: equal instances share one compile) with
``__call__(carry, t, view) -> (carry, target [N])`` and ``init_carry(...)``. At the close of t
it reads rows <= t of the market only (the oracle excepted, by design) and its weights earn
returns[t + 1]; ``tests/evaluation/test_baselines.py`` proves it for each by perturbing every
row after t. Targets are nonnegative scores over the stocks tradable at t; the backtest
projects them onto the training constraints (``risk.constraints.project_weights``: stock cap,
sector cap, min cash, max positions) with budget ``1 - min_cash``.

Because the projection's budget is an equality, a strategy cannot hold cash voluntarily, and
when ``max_positions`` binds it keeps the largest targets (ties by lower index). Baselines
whose own rule would tie or be infeasible therefore size their support to fit: the 1/N rules
keep the most liquid names (trailing 20-day ADV) when there are more than ``max_positions``,
and top-k stock momentum widens to ``ceil(budget / max_stock_weight)`` names (the 10% cap
cannot hold 5 names fully invested).

Trailing windows end at t inclusive (a window's rows are days t-W+1..t; days before the data
start or on which a stock was not tradable on both ends of the day are excluded).

| name                | rule (default schedule)                                                |
|---------------------|------------------------------------------------------------------------|
| equal_weight        | 1/N over tradable stocks (weekly)                                      |
| sector_equal_weight | equal over sectors with a tradable stock, equal within (weekly)        |
| index_buy_hold      | the benchmark itself: ``benchmark_returns``, one initial buy at the     |
|                     | effective buy rate, no other cost (``index_buy_hold``; not a weights_fn)|
| inverse_vol         | w ∝ 1 / std of the trailing 60 daily returns, >= 20 valid (weekly)     |
| min_variance        | long-only minimum variance under the constraints, Ledoit-Wolf shrunk   |
|                     | trailing 120-day covariance, FISTA projected gradient (weekly)         |
| risk_parity         | equal risk contribution on the same covariance, fixed point (weekly)   |
| sector_momentum     | top-3 sectors by 12-1 month return (days t-251..t-21), equal-weighted  |
|                     | stocks within (monthly)                                                |
| momentum_60_5       | original: top 5 stocks by 60-day return, every 21 days (support widened |
|                     | to stay fully invested under the stock cap, see above)                 |
| sector_value        | opt-in value screen: equal over sectors, each sector's 2 cheapest names |
|                     | by pe_z, equal within (weekly)                                         |
| random              | Dirichlet(1) over tradable stocks, redrawn each rebalance, one key per |
|                     | seed, vmapped (weekly)                                                 |
| oracle              | UPPER BOUND, looks ahead: top-k sectors by the synthetic generator's   |
|                     | drift in the *next* day's latent regime (daily)                        |
| flat_rl             | requires a trained run (added by the caller)                           |

Shapes: T days, N stocks, S sectors, W window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.config import REGIME_NAMES
from hrl_sarp_jax.envs.common import rank_in_sector, value_weight_in_sectors
from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation.backtest import COST_ITEMS, DayView
from hrl_sarp_jax.finance.costs import effective_rates
from hrl_sarp_jax.risk.constraints import ConstraintParams, project_weights

_F32 = jnp.float32
_I32 = jnp.int32


# --------------------------------------------------------------------------- helpers


def trailing_returns(params: EnvParams, t: jax.Array, window: int) -> tuple[jax.Array, jax.Array]:
    """Stock returns of days t-W+1..t: (rows [W, N], valid [W, N]).

    A row is valid for a stock when the day is >= 1 and the stock was tradable on that day and
    the day before (so the return is real); invalid entries are 0.
    """
    idx = t - window + 1 + jnp.arange(window, dtype=_I32)
    ok = idx >= 1
    i = jnp.clip(idx, 0, None)
    ip = jnp.clip(idx - 1, 0, None)
    valid = ok[:, None] & params.tradable[i] & params.tradable[ip]
    return jnp.where(valid, params.returns[i], 0.0), valid


def _equal_on(mask: jax.Array) -> jax.Array:
    m = mask.astype(_F32)
    return m / jnp.maximum(jnp.sum(m), 1.0)


def _rank_desc(score: jax.Array, eligible: jax.Array) -> jax.Array:
    """int32 [N] rank (0 = best) of score among eligible (ties by lower index); others N."""
    n = score.shape[0]
    s = jnp.where(eligible, score, -jnp.inf)
    order = jnp.argsort(-s, stable=True)
    rank = jnp.zeros((n,), _I32).at[order].set(jnp.arange(n, dtype=_I32))
    return jnp.where(eligible, rank, n)


def _liquid_support(t: jax.Array, params: EnvParams) -> jax.Array:
    """bool [N]: tradable stocks at t, cut to the max_positions most liquid (20-day ADV)."""
    tradable = params.tradable[t]
    k = params.constraints.max_positions
    if k <= 0 or k >= params.num_stocks:
        return tradable
    return tradable & (_rank_desc(params.adv_value[t], tradable) < k)


def _sector_counts(mask: jax.Array, params: EnvParams) -> jax.Array:
    return jax.ops.segment_sum(mask.astype(_F32), params.stock_sector,
                               num_segments=params.num_sectors)


def _equal_in_sectors(sector_w: jax.Array, members: jax.Array, params: EnvParams) -> jax.Array:
    """[N] sector weight split equally among ``members`` (bool [N]) of each sector."""
    counts = _sector_counts(members, params)
    per = jnp.where(counts > 0, sector_w / jnp.maximum(counts, 1.0), 0.0)
    return per[params.stock_sector] * members.astype(_F32)


def ledoit_wolf(x: jax.Array, valid: jax.Array, active: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Ledoit-Wolf (2004) shrinkage of the sample covariance towards mu * I, closed form.

    Args:
      x: [W, N] returns; valid: [W, N] bool; active: [N] bool, the stocks in the problem.
    Each active column is centred on the mean of its valid rows; invalid entries count as a 0
    deviation; n = number of window rows with any valid entry. Inactive stocks get zero rows
    and columns. With every entry valid this is exactly ``sklearn.covariance.ledoit_wolf``
    (1/n sample covariance, mu = trace / p, shrinkage = min(beta, delta) / delta).
    Returns (shrunk covariance [N, N], shrinkage in [0, 1]).
    """
    v = valid & active[None, :]
    cnt = jnp.sum(v, axis=0).astype(_F32)
    mean = jnp.sum(jnp.where(v, x, 0.0), axis=0) / jnp.maximum(cnt, 1.0)
    xc = jnp.where(v, x - mean[None, :], 0.0)
    n = jnp.maximum(jnp.sum(jnp.any(v, axis=1)).astype(_F32), 1.0)
    p = jnp.maximum(jnp.sum(active).astype(_F32), 1.0)
    emp = xc.T @ xc / n
    trace = jnp.trace(emp)
    mu = trace / p
    x2 = xc * xc
    beta_ = jnp.sum(x2.T @ x2)
    delta_ = jnp.sum(emp * emp)  # = sum((X'X)^2) / n^2
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace + p * mu * mu) / p
    beta = jnp.minimum(beta, delta)
    shrink = jnp.where(delta > 0, beta / jnp.where(delta > 0, delta, 1.0), 0.0)
    eye = jnp.diag(active.astype(_F32))
    return ((1.0 - shrink) * emp + shrink * mu * eye).astype(_F32), shrink.astype(_F32)


def min_variance_weights(cov: jax.Array, active: jax.Array, sector: jax.Array, num_sectors: int,
                         cons: ConstraintParams, iters: int = 300) -> jax.Array:
    """Long-only minimum variance: argmin w' cov w over the projection's feasible set.

    Feasible set = ``project_weights``'s (stock cap, sector cap, budget 1 - min_cash) over the
    ``active`` stocks, without the max-positions restriction (not convex; the backtest's final
    projection applies it). Solved by FISTA (accelerated projected gradient) with step 1/L,
    L = the largest eigenvalue of 2 cov (``eigvalsh``), ``iters`` iterations from equal weights.
    """
    convex = cons.replace(max_positions=0)
    proj = lambda w: project_weights(w, sector, active, num_sectors, convex)  # noqa: E731
    lip = 2.0 * jnp.max(jnp.linalg.eigvalsh(cov))
    step = 1.0 / jnp.maximum(lip, 1e-12)
    w0 = proj(_equal_on(active))

    def body(_, c):
        w, y, tk = c
        w2 = proj(y - step * 2.0 * (cov @ y))
        tk2 = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * tk * tk))
        y2 = w2 + ((tk - 1.0) / tk2) * (w2 - w)
        return w2, y2, tk2

    w, _, _ = jax.lax.fori_loop(0, iters, body, (w0, w0, jnp.ones((), _F32)))
    return w


def risk_parity_weights(cov: jax.Array, active: jax.Array, iters: int = 200) -> jax.Array:
    """Equal risk contribution (long only, sum 1): w_i (cov w)_i equal for all active i.

    Fixed point w <- sqrt(w * b / (cov w)), renormalised, b = 1/p (the damped form of
    w_i = b_i / (cov w)_i; converges for the positive-definite covariances used here).
    """
    a = active.astype(_F32)
    w0 = _equal_on(active)

    def body(_, w):
        mrc = cov @ w
        w2 = jnp.sqrt(jnp.where(active, w * a / jnp.maximum(mrc, 1e-30), 0.0))
        return w2 / jnp.maximum(jnp.sum(w2), 1e-30)

    return jax.lax.fori_loop(0, iters, body, w0)


# --------------------------------------------------------------------------- weight functions


@dataclass(frozen=True)
class EqualWeight:
    """1/N over tradable stocks (the max_positions most liquid when N is larger)."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        return carry, _equal_on(_liquid_support(t, view.params))


@dataclass(frozen=True)
class SectorEqualWeight:
    """Equal weight across sectors with a tradable stock, equal within each sector. When the
    universe exceeds max_positions, each sector keeps its max(1, k // S_active) most liquid."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        tradable = p.tradable[t]
        members = tradable
        k = p.constraints.max_positions
        if 0 < k < p.num_stocks:
            n_sec = jnp.sum(_sector_counts(tradable, p) > 0)
            per = jnp.maximum(k // jnp.maximum(n_sec, 1), 1)
            keep = rank_in_sector(p.adv_value[t], tradable, p.stock_sector) < per
            members = jnp.where(jnp.sum(tradable) > k, tradable & keep, tradable)
        active = (_sector_counts(members, p) > 0) & p.sector_valid
        sw = _equal_on(active)
        return carry, _equal_in_sectors(sw, members, p)


@dataclass(frozen=True)
class SectorValue:
    """A value screen: equal weight across sectors with a tradable stock, each sector's weight
    split equally over its ``per_sector`` cheapest tradable names by the ``pe_z`` stock feature
    (ties by lower index; fewer where a sector has fewer; at most max(1, max_positions // S)
    each when ``max_positions`` binds). Not in the issue's classical set, so opt-in
    (``--baselines``)."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    per_sector: int = 2

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        has = _sector_counts(p.tradable[t], p) > 0
        k = jnp.asarray(self.per_sector, _I32)
        cap = p.constraints.max_positions
        if 0 < cap < p.num_stocks:
            k = jnp.minimum(k, jnp.maximum(cap // jnp.maximum(jnp.sum(has), 1), 1))
        return carry, value_weight_in_sectors(_equal_on(has & p.sector_valid), t, p, k)


@dataclass(frozen=True)
class InverseVol:
    """w ∝ 1 / std(trailing ``window`` daily returns, ddof 1) over stocks with >= min_periods
    valid returns (1/N over tradable stocks if none qualifies)."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    window: int = 60
    min_periods: int = 20

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        x, v = trailing_returns(p, t, self.window)
        n = jnp.sum(v, axis=0).astype(_F32)
        mean = jnp.sum(x, axis=0) / jnp.maximum(n, 1.0)
        var = jnp.sum(jnp.where(v, (x - mean) ** 2, 0.0), axis=0) / jnp.maximum(n - 1.0, 1.0)
        sd = jnp.sqrt(var)
        ok = p.tradable[t] & (n >= self.min_periods) & (sd > 0)
        w = jnp.where(ok, 1.0 / jnp.where(ok, sd, 1.0), 0.0)
        w = w / jnp.maximum(jnp.sum(w), 1e-30)
        return carry, jnp.where(jnp.any(ok), w, _equal_on(p.tradable[t]))


def _cov_problem(p: EnvParams, t, window: int, min_periods: int):
    x, v = trailing_returns(p, t, window)
    active = p.tradable[t] & (jnp.sum(v, axis=0) >= min_periods)
    cov, _ = ledoit_wolf(x, v, active)
    return cov, active


@dataclass(frozen=True)
class MinVariance:
    """Long-only minimum variance on the Ledoit-Wolf covariance of the trailing ``window``
    days (stocks with >= min_periods valid returns), solved inside the constraint set."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    window: int = 120
    min_periods: int = 60
    iters: int = 300

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        cov, active = _cov_problem(p, t, self.window, self.min_periods)
        w = min_variance_weights(cov, active, p.stock_sector, p.num_sectors, p.constraints,
                                 self.iters)
        return carry, jnp.where(jnp.any(active), w, _equal_on(p.tradable[t]))


@dataclass(frozen=True)
class RiskParity:
    """Equal risk contribution on the same Ledoit-Wolf covariance as MinVariance."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    window: int = 120
    min_periods: int = 60
    iters: int = 200

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        cov, active = _cov_problem(p, t, self.window, self.min_periods)
        w = risk_parity_weights(cov, active, self.iters)
        return carry, jnp.where(jnp.any(active), w, _equal_on(p.tradable[t]))


@dataclass(frozen=True)
class SectorMomentum:
    """Top-k sectors by compounded sector return over days t-lookback+1 .. t-skip (12-1
    months), equal-weighted tradable stocks within. Sectors need a tradable stock at t and at
    least half of those days valid (``sector_mask``); with none eligible: equal sectors."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    lookback: int = 252
    skip: int = 21
    top_k: int = 3

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        span = self.lookback - self.skip
        idx = t - self.lookback + 1 + jnp.arange(span, dtype=_I32)
        ok = idx >= 1
        i = jnp.clip(idx, 0, None)
        valid = ok[:, None] & p.sector_mask[i]
        logr = jnp.where(valid, jnp.log1p(p.sector_returns[i]), 0.0)
        score = jnp.sum(logr, axis=0)
        tradable = p.tradable[t]
        has = (_sector_counts(tradable, p) > 0) & p.sector_valid
        eligible = has & (jnp.sum(valid, axis=0) >= span / 2)
        top = _rank_desc(score, eligible) < self.top_k
        sw = jnp.where(jnp.any(eligible), _equal_on(top & eligible), _equal_on(has))
        return carry, _equal_in_sectors(sw, tradable, p)


@dataclass(frozen=True)
class StockMomentum:
    """The original's Momentum_60_5: top ``top_k`` stocks by compounded return over the last
    ``lookback`` days (all of them valid), equal weight; the support is widened to
    ceil((1 - min_cash) / max_stock_weight) names when the stock cap cannot hold top_k fully
    invested. 1/N over tradable stocks while no stock has ``lookback`` days of history."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    lookback: int = 60
    top_k: int = 5

    def init_carry(self) -> Any:
        return ()

    def __call__(self, carry, t, view: DayView):
        p = view.params
        x, v = trailing_returns(p, t, self.lookback)
        score = jnp.sum(jnp.log1p(x), axis=0)
        eligible = p.tradable[t] & jnp.all(v, axis=0)
        c = p.constraints
        need = jnp.ceil((1.0 - c.min_cash) / jnp.maximum(c.max_stock_weight, 1e-6) - 1e-4)
        k = jnp.maximum(jnp.asarray(self.top_k, _F32), need)
        top = eligible & (_rank_desc(score, eligible) < k)
        return carry, jnp.where(jnp.any(eligible), _equal_on(top), _equal_on(p.tradable[t]))


@dataclass(frozen=True)
class RandomDirichlet:
    """Dirichlet(alpha) weights over tradable stocks, redrawn at every rebalance. The carry is
    the PRNG key (split once per draw); a batch of keys runs vmapped (one per seed)."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    alpha: float = 1.0

    def init_carry(self, key: jax.Array) -> Any:
        return key

    def __call__(self, key, t, view: DayView):
        p = view.params
        key, sub = jax.random.split(key)
        g = jax.random.gamma(sub, self.alpha, (p.num_stocks,), _F32)
        g = jnp.where(p.tradable[t], g, 0.0)
        return key, g / jnp.maximum(jnp.sum(g), 1e-30)


@dataclass(frozen=True)
class RegimeOracle:
    """UPPER BOUND, not a strategy: knows the synthetic market's latent regime of day t + 1
    and holds the ``top_k`` sectors by that regime's configured annual drift
    (meta.json ``sector_drift_annual``), equal-weighted tradable stocks within. Carry: the
    drift table [3, S] and the latent regime path [T] (equal sectors where it is -1).

    ``lag`` > 0: the same rule told the regime ``lag`` trading days late (it reads the latent
    regime of day t + 1 - lag): a regime allocator whose only error is a detection delay,
    the yardstick of ``oracle_lag_name`` (``hrl-sarp evaluate --oracle-lags``)."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    top_k: int = 3
    lag: int = 0

    def init_carry(self, drift: np.ndarray, latent_regime: np.ndarray) -> Any:
        return (jnp.asarray(drift, _F32), jnp.asarray(latent_regime, _I32))

    def __call__(self, carry, t, view: DayView):
        p = view.params
        drift, regime = carry
        r = regime[jnp.clip(t + 1 - self.lag, 0, regime.shape[0] - 1)]
        tradable = p.tradable[t]
        has = (_sector_counts(tradable, p) > 0) & p.sector_valid
        score = drift[jnp.clip(r, 0, 2)]
        top = _rank_desc(score, has) < self.top_k
        sw = jnp.where(r >= 0, _equal_on(top & has), _equal_on(has))
        return carry, _equal_in_sectors(sw, tradable, p)


@dataclass(frozen=True)
class RegimeRule:
    """Causal regime rule (``evaluation.regime_rule``): at t, the regime a logistic model on the
    raw macro series and their trailing means (fitted on the training window) predicts, and
    the ``top_k`` sectors that earned most in that regime in training, equal-weighted tradable
    stocks within. Carry: (inputs [T, F], coef [F + 1, 3], sector score [3, S])."""

    open_loop: ClassVar[bool] = True  # never reads view.port (backtest.is_open_loop)

    top_k: int = 3

    def init_carry(self, fit: Any) -> Any:
        return (jnp.asarray(fit.inputs, _F32), jnp.asarray(fit.coef, _F32),
                jnp.asarray(fit.sector_score, _F32))

    def __call__(self, carry, t, view: DayView):
        p = view.params
        inputs, coef, score = carry
        logits = inputs[t] @ coef[:-1] + coef[-1]
        r = jnp.argmax(logits)
        tradable = p.tradable[t]
        has = (_sector_counts(tradable, p) > 0) & p.sector_valid
        top = _rank_desc(score[r], has) < self.top_k
        return carry, _equal_in_sectors(_equal_on(top & has), tradable, p)


# --------------------------------------------------------------------------- index


# HOST ONLY
def index_buy_hold(params: EnvParams, t0: int, length: int) -> dict[str, np.ndarray]:
    """The benchmark itself over decision days t0 .. t0 + length - 1, in the backtest layout.

    Returns are ``benchmark_returns[t0 + 1 ..]``; the only cost is the initial buy of the
    whole value at the effective buy rate (``finance.costs.effective_rates``; no impact, no
    min cash: an index fund), charged on day 0 with its itemised components.
    """
    b = np.asarray(params.benchmark_returns, np.float64)[t0 + 1: t0 + 1 + length]
    buy_rate, _ = (float(x) for x in effective_rates(params.cost))
    c = params.cost
    items = {k: np.zeros(length) for k in COST_ITEMS}
    items["stt"][0] = float(c.stt_buy)
    items["stamp"][0] = float(c.stamp_buy)
    items["exchange"][0] = float(c.exchange)
    items["sebi"][0] = float(c.sebi)
    items["brokerage"][0] = float(c.brokerage_pct)
    items["gst"][0] = float(c.gst) * (float(c.brokerage_pct) + float(c.exchange)
                                      + float(c.gst_on_sebi) * float(c.sebi))
    items["slippage"][0] = float(c.slippage_bps) * 1e-4
    cost = np.zeros(length)
    cost[0] = buy_rate
    net = b.copy()
    net[0] = (1.0 - buy_rate) * (1.0 + b[0]) - 1.0
    turnover = np.zeros(length)
    turnover[0] = 1.0
    value = float(params.initial_value) * np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(np.r_[float(params.initial_value), value])[1:]
    return {"net_return": net, "gross_return": b, "cost_frac": cost, "costs": items,
            "turnover": turnover, "value": value, "drawdown": 1.0 - value / peak,
            "t": np.arange(t0, t0 + length)}


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BaselineSpec:
    """A registered baseline: how to build its weight function and first carry."""

    name: str
    description: str
    make: Callable[..., Any] | None   # () -> weight function; None: not a weight function
    schedule: str | int | None        # default rebalance schedule; None: the caller's
    kind: str = "weights"             # 'weights', 'seeded' (vmapped over seeds), 'index',
                                      # 'oracle', 'fitted' (carry fitted per market on its
                                      # training window), 'requires_training'
    upper_bound: bool = False
    default: bool = True              # run when no --baselines are given
    classical: bool = True            # one of the classical set (its median turnover)


BASELINES: dict[str, BaselineSpec] = {
    s.name: s for s in (
        BaselineSpec("equal_weight", "1/N over tradable stocks (most liquid max_positions)",
                     EqualWeight, None),
        BaselineSpec("sector_equal_weight", "equal across sectors, equal within",
                     SectorEqualWeight, None),
        BaselineSpec("index_buy_hold", "the benchmark index, bought once", None, None,
                     kind="index"),
        BaselineSpec("inverse_vol", "w ∝ 1/σ, trailing 60 days", InverseVol, None),
        BaselineSpec("min_variance", "long-only min variance, Ledoit-Wolf 120-day covariance",
                     MinVariance, None),
        BaselineSpec("risk_parity", "equal risk contribution, Ledoit-Wolf 120-day covariance",
                     RiskParity, None),
        BaselineSpec("sector_momentum", "top-3 sectors by 12-1 month return", SectorMomentum,
                     "monthly"),
        BaselineSpec("momentum_60_5", "original: top 5 stocks by 60-day return, every 21 days",
                     StockMomentum, 21),
        BaselineSpec("regime_rule", "causal regime rule: logistic regime model on raw macro "
                     "+ moving averages, fitted on the training window; top-3 sectors of the "
                     "predicted regime", RegimeRule, "weekly", kind="fitted"),
        BaselineSpec("sector_value", "value screen: equal across sectors, each sector's 2 "
                     "cheapest names by pe_z (opt-in: --baselines)", SectorValue, None,
                     default=False, classical=False),
        BaselineSpec("random", "Dirichlet(1) portfolios, one per seed", RandomDirichlet, None,
                     kind="seeded"),
        BaselineSpec("oracle", "UPPER BOUND: knows the next day's latent regime (synthetic)",
                     RegimeOracle, "daily", kind="oracle", upper_bound=True),
        BaselineSpec("flat_rl", "flat single-level RL agent: requires a trained run", None, None,
                     kind="requires_training"),
    )
}


def default_baselines() -> list[str]:
    """The baselines run when none are named: every default one that needs no training."""
    return [n for n, s in BASELINES.items() if s.default and s.kind != "requires_training"]


def get_baseline(name: str) -> BaselineSpec:
    """The registered baseline ``name``; a clear error for unknown or untrained ones."""
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
    spec = BASELINES[name]
    if spec.kind == "requires_training":
        raise NotImplementedError(
            f"baseline {name!r} requires a trained run: train it, then pass its daily returns "
            "to the report as an extra strategy (evaluation.report.add_strategy)")
    return spec


# HOST ONLY
def sector_drift_matrix(meta_json: dict, sectors: tuple[str, ...] | list[str]) -> np.ndarray:
    """[3, S] annual sector drift per regime (0 Bull, 1 Bear, 2 Sideways) from a synthetic
    market's meta.json ``sector_drift_annual`` (name -> sector -> drift), in ``sectors`` order;
    padding sectors ('') get -inf so an oracle never picks them."""
    table = meta_json.get("sector_drift_annual")
    if not table:
        raise ConfigError("the oracle needs a synthetic market's meta.json "
                          "'sector_drift_annual' (write one with `hrl-sarp data synth`)")
    out = np.full((3, len(sectors)), -np.inf, np.float64)
    for r, name in enumerate(REGIME_NAMES):
        for s, sec in enumerate(sectors):
            if sec:
                if sec not in table[name]:
                    raise ConfigError(f"meta.json sector_drift_annual[{name!r}] lacks sector "
                                      f"{sec!r}")
                out[r, s] = float(table[name][sec])
    return np.where(np.isfinite(out), out, -1e9).astype(np.float32)


def oracle_lag_name(lag: int) -> str:
    """The many-market strategy name of the regime oracle told the regime ``lag`` days late
    ('oracle' at 0)."""
    return "oracle" if int(lag) == 0 else f"oracle_late_{int(lag)}d"


def oracle_top_k(num_sectors: int) -> int:
    """k = min(3, max(1, S // 3)), as ``data.synthetic.stylized_facts``'s oracle."""
    return min(3, max(1, num_sectors // 3))


__all__ = [
    "BASELINES", "BaselineSpec", "EqualWeight", "InverseVol", "MinVariance", "RandomDirichlet",
    "RegimeOracle", "RegimeRule", "RiskParity", "SectorEqualWeight", "SectorMomentum",
    "SectorValue", "StockMomentum",
    "default_baselines", "get_baseline", "index_buy_hold", "ledoit_wolf",
    "min_variance_weights", "oracle_lag_name", "oracle_top_k",
    "risk_parity_weights", "sector_drift_matrix", "trailing_returns",
]
