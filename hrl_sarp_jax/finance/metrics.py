"""Performance metrics of a return series, pure jnp, jit-usable and mask-aware.

Conventions (shared by env rewards and evaluation):
- ``r`` [T] are simple (not log) per-period returns; ``mask`` [T] bool marks valid periods
  (None = all valid). Masked periods are dropped (treated as a 0 return where compounding).
- ``rf`` is a per-period risk-free rate (e.g. 1.07**(1/252) - 1 for 7% a year).
- Standard deviations are sample (ddof=1). Any ratio with a zero or undefined denominator
  (fewer than 2 valid periods, zero variance, no drawdown) is 0, never NaN or inf.
- Drawdowns and tail risks (max_drawdown, var, cvar) are positive loss fractions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_F32 = jnp.float32
_EPS = 1e-12


def _prep(r: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    r = jnp.asarray(r, _F32)
    m = jnp.ones(r.shape, bool) if mask is None else jnp.asarray(mask, bool)
    return jnp.where(m, r, 0.0), m, jnp.sum(m).astype(_F32)


def _safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    ok = jnp.abs(b) > _EPS
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0).astype(_F32)


def _mean_std(x: jax.Array, m: jax.Array, n: jax.Array) -> tuple[jax.Array, jax.Array]:
    mean = jnp.sum(jnp.where(m, x, 0.0)) / jnp.maximum(n, 1.0)
    ss = jnp.sum(jnp.where(m, (x - mean) ** 2, 0.0))
    std = jnp.sqrt(ss / jnp.maximum(n - 1.0, 1.0))
    return mean, jnp.where(n >= 2, std, 0.0)


def annualised_vol(r, periods_per_year: float = 252, mask=None) -> jax.Array:
    """std(r, ddof=1) * sqrt(periods_per_year)."""
    r, m, n = _prep(r, mask)
    return (_mean_std(r, m, n)[1] * jnp.sqrt(_F32(periods_per_year))).astype(_F32)


def sharpe(r, periods_per_year: float = 252, rf: float = 0.0, mask=None) -> jax.Array:
    """mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year); 0 if std is 0."""
    r, m, n = _prep(r, mask)
    mean, std = _mean_std(r - rf, m, n)
    # float32 rounding leaves a constant series with std ~ ulp(mean): treat that as 0.
    std = jnp.where(std > 1e-5 * jnp.abs(mean), std, 0.0)
    return _safe_div(mean, std) * jnp.sqrt(_F32(periods_per_year))


def block_index(length: int, block: int) -> np.ndarray:
    """int [length]: the block of each period when a series of ``length`` periods is cut
    into consecutive blocks of ``block`` periods, a short remainder joining the last block
    (length 5, block 2: [0, 0, 1, 1, 1]). A series shorter than two blocks is cut in two
    halves of at least 2 periods instead (length 7, block 13: [0, 0, 0, 1, 1, 1, 1]), so a
    spread over blocks exists whenever the series has 4 periods. Static (NumPy)."""
    length, block = int(length), max(int(block), 1)
    size = block if length // block >= 2 else max(length // 2, 2)
    count = max(length // size, 1)
    return np.minimum(np.arange(length) // size, count - 1)


def block_sharpes(r, block: int, periods_per_year: float = 252, mask=None) -> jax.Array:
    """[B] the ``sharpe`` of each consecutive block of ``block`` periods of r [T]
    (``block_index``: the last block takes the remainder, a series shorter than two blocks
    is halved); masked periods are dropped within their block."""
    r = jnp.asarray(r, _F32)
    m = jnp.ones(r.shape, bool) if mask is None else jnp.asarray(mask, bool)
    idx = block_index(r.shape[0], block)
    member = jnp.asarray(idx[None, :] == np.arange(int(idx[-1]) + 1)[:, None])  # [B, T]
    return jax.vmap(lambda b: sharpe(r, periods_per_year, mask=m & b))(member)


def sortino(r, periods_per_year: float = 252, rf: float = 0.0, mask=None) -> jax.Array:
    """mean(e) / sqrt(mean(min(e, 0)^2)) * sqrt(periods_per_year), e = r - rf.

    Downside deviation over all valid periods (target semi-deviation, target rf); 0 if there
    is no downside (the original returned +inf).
    """
    r, m, n = _prep(r, mask)
    e = jnp.where(m, r - rf, 0.0)
    mean = jnp.sum(e) / jnp.maximum(n, 1.0)
    dd = jnp.sqrt(jnp.sum(jnp.minimum(e, 0.0) ** 2) / jnp.maximum(n, 1.0))
    return _safe_div(mean, dd) * jnp.sqrt(_F32(periods_per_year))


def drawdown_series(r, mask=None) -> jax.Array:
    """[T] drawdown 1 - W_t / max(1, W_0..W_t) of the compounded wealth W_t = prod(1 + r)."""
    r, _, _ = _prep(r, mask)
    wealth = jnp.cumprod(1.0 + r)
    peak = jnp.maximum(jax.lax.cummax(wealth), 1.0)
    return (1.0 - wealth / peak).astype(_F32)


def max_drawdown(r, mask=None) -> jax.Array:
    """Largest peak-to-trough loss of compounded wealth (starting wealth 1 counts as a peak)."""
    return jnp.max(drawdown_series(r, mask), initial=0.0).astype(_F32)


def max_drawdown_duration(r, mask=None) -> jax.Array:
    """Longest run of consecutive valid periods spent below the running peak (int32).

    Masked periods neither extend nor end a run.
    """
    dd = drawdown_series(r, mask)
    m = jnp.ones(dd.shape, bool) if mask is None else jnp.asarray(mask, bool)
    zero = jnp.zeros((), jnp.int32)
    (_, best), _ = jax.lax.scan(_underwater_step, (zero, zero), (dd > 0, m))
    return best


def _underwater_step(carry: tuple[jax.Array, jax.Array], x: tuple[jax.Array, jax.Array]
                     ) -> tuple[tuple[jax.Array, jax.Array], None]:
    """(current run, longest run) after one period (``max_drawdown_duration``'s scan body; one
    module-level function, so an eager call reuses its compiled scan instead of compiling a
    new closure each time)."""
    run, best = carry
    under, valid = x
    run = jnp.where(valid, jnp.where(under, run + 1, 0), run)
    return (run, jnp.maximum(best, run)), None


def total_return(r, mask=None) -> jax.Array:
    r, _, _ = _prep(r, mask)
    return (jnp.prod(1.0 + r) - 1.0).astype(_F32)


def annualised_return(r, periods_per_year: float = 252, mask=None) -> jax.Array:
    """CAGR: prod(1 + r)^(periods_per_year / n) - 1 over n valid periods (-1 after ruin)."""
    r, _, n = _prep(r, mask)
    wealth = jnp.prod(1.0 + r)
    cagr = jnp.power(jnp.maximum(wealth, _EPS), periods_per_year / jnp.maximum(n, 1.0)) - 1.0
    cagr = jnp.where(wealth > 0, cagr, -1.0)
    return jnp.where(n > 0, cagr, 0.0).astype(_F32)


def calmar(r, periods_per_year: float = 252, mask=None) -> jax.Array:
    """CAGR / max drawdown; 0 when there is no drawdown."""
    return _safe_div(annualised_return(r, periods_per_year, mask), max_drawdown(r, mask))


def _tail(r, alpha, mask) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Ascending sorted valid returns (invalid at the end), k = ceil((1-alpha) n), n."""
    r, m, n = _prep(r, mask)
    srt = jnp.sort(jnp.where(m, r, jnp.inf))
    # 1e-4 absorbs float32 error in (1 - alpha) * n, e.g. (1 - 0.95) * 20 = 1.0000002.
    k = jnp.maximum(jnp.ceil((1.0 - jnp.asarray(alpha, _F32)) * n - 1e-4), 1.0)
    return srt, jnp.minimum(k, n), n


def var(r, alpha: float = 0.95, mask=None) -> jax.Array:
    """Value at risk: minus the k-th smallest return, k = ceil((1 - alpha) n).

    The empirical (inverted-CDF) lower quantile, so var <= cvar always; 0 if n = 0.
    """
    srt, k, n = _tail(r, alpha, mask)
    kth = srt[jnp.clip(k.astype(jnp.int32) - 1, 0, srt.shape[0] - 1)]
    return jnp.where(n > 0, -kth, 0.0).astype(_F32)


def cvar(r, alpha: float = 0.95, mask=None) -> jax.Array:
    """Expected shortfall: minus the mean of the worst k = ceil((1 - alpha) n) returns.

    A positive number is a loss; 0 if there are no valid returns.
    """
    srt, k, n = _tail(r, alpha, mask)
    idx = jnp.arange(srt.shape[0], dtype=_F32)
    tail_sum = jnp.sum(jnp.where(idx < k, srt, 0.0))
    return jnp.where(n > 0, -tail_sum / jnp.maximum(k, 1.0), 0.0).astype(_F32)


def turnover(weights, mask=None) -> jax.Array:
    """Mean one-way turnover 0.5 * sum_a |w_t - w_{t-1}| over transitions t = 1..T-1.

    Args: weights [T, A]; mask [T] bool (a transition counts when both rows are valid).
    """
    w = jnp.asarray(weights, _F32)
    m = jnp.ones(w.shape[:1], bool) if mask is None else jnp.asarray(mask, bool)
    step = 0.5 * jnp.sum(jnp.abs(w[1:] - w[:-1]), axis=-1)
    ok = m[1:] & m[:-1]
    n = jnp.sum(ok).astype(_F32)
    return _safe_div(jnp.sum(jnp.where(ok, step, 0.0)), n)


def hit_rate(r, mask=None) -> jax.Array:
    """Fraction of valid periods with r > 0."""
    r, m, n = _prep(r, mask)
    return _safe_div(jnp.sum(m & (r > 0)).astype(_F32), n)
