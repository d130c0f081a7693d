"""Generic jit-compiled backtest: one ``lax.scan`` over a date window, the envs' accounting.

A strategy is a *weight function* ``weights_fn(carry, t, view) -> (carry, target [N])``:
called at the close of each rebalance day t, it returns stock-level target weights (any
nonnegative scores; they are projected) and may update its own ``carry`` (any pytree: a PRNG
key, a drift table, an agent's params and goal...). ``view`` is a :class:`DayView` holding the
market/env arrays (``EnvParams``) and the portfolio *before* trading at t (drifted weights,
value, peak). A weight function must read rows <= t only (each baseline has a perturbation
test proving it). Strategies with hyperparameters are frozen dataclasses, so two equal
instances share one compile (``weights_fn`` is a static argument of the jitted scan).

Per day t = t0 .. t0 + L - 1 of the window (decision at the close of t, earning returns[t+1],
exactly as the environments; ``envs.common.trade_day``):
1. on a rebalance day: ``target = weights_fn(...)``, projected with
   ``risk.constraints.project_weights`` onto the constraints of ``EnvParams.constraints``
   (stock cap, sector cap, min cash, max positions) over the stocks tradable at t, at the
   exposure allowed by the risk manager when ``risk_manager=True`` (else exposure 1);
   otherwise the target is the drifted book itself (no trade, no cost). A weight function
   with a ``holds(carry) -> [] bool | None`` method may keep the drifted book on a
   rebalance day too (True after its call; None: it never holds);
2. ``finance.portfolio_step``: trades against the drifted weights, blocked by
   ``circuit_lock[t]``, itemised costs with square-root impact on the trailing 20-day ADV
   (``EnvParams.adv_value[t]``, mean close x volume over days <= t), earn returns[t+1], drift.
The first day of every window is a rebalance day (the portfolio starts in cash, so day 0
carries the initial buy). Every strategy therefore runs on the same dates, universe,
constraints and costs. ``run_backtest`` vmaps over a batch of carries (e.g. seeds).

The book (``BookState``: the drifted weights, value and peak, the risk manager's state and
its buffer of recent net returns) starts by default in cash (``cash_book``: zero weights,
value = peak = ``initial_value``, not de-risked, an empty buffer). A caller may pass another
starting book ``book0`` and ask for the book at the end of the window (``return_book``): a
walk-forward backtest carries each strategy's book from one fold into the next
(``walk_forward``), so day 0 of the next window trades from the carried book to the new
target (the switch) instead of buying in from cash. The default start builds the cash book
inside the trace exactly as before, so a window started from cash is the same program.

An *open-loop* weight function (class attribute ``open_loop = True``: every baseline) never
reads ``view.port``, so its targets do not depend on the book: ``run_backtest`` computes them
in a small program of its own (``open_loop_targets``: the weight function alone, on the same
rebalance days, its carry threaded the same way) and trades them in one accounting program
shared by every such strategy (``ReplayTargets``), instead of compiling the accounting once
per strategy; the results are the same (a test compares both paths). In that pass
``view.port`` is None, so a weight function marked open-loop that reads the book fails at
trace time instead of trading on a wrong book.

Shapes: T days, N stocks, S sectors, L window length (static), B batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrl_sarp_jax.envs.common import net_return, project_stocks, risk_exposure, trade_day
from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.envs.rewards import buffer_mask, push_return, sector_weights
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.risk.manager import RiskState, init_risk_state

_F32 = jnp.float32
_I32 = jnp.int32

COST_ITEMS = ("stt", "stamp", "exchange", "sebi", "gst", "brokerage", "slippage", "impact")


@struct.dataclass
class DayView:
    """What a weight function may look at on day t (rows <= t only, by contract)."""

    params: EnvParams
    port: PortfolioState     # drifted book at the close of t, before trading
    i: Any = 0               # int32 day of the window (0 = its first day); never batched
    exposure: Any = None     # float32 budget share the risk manager allows at t (1 without it)


WeightsFn = Callable[[Any, jax.Array, DayView], tuple[Any, jax.Array]]


@struct.dataclass
class BookState:
    """What the backtest's scan carries besides the strategy's carry: the book at the close
    before trading (leading axis B when batched)."""

    port: PortfolioState     # weights [N] drifted, value, peak
    risk: RiskState          # the risk manager's state (de-risked flag)
    returns: jax.Array       # [R] float32 recent daily net returns, newest last
    count: jax.Array         # int32 valid entries of ``returns`` (<= R)


def cash_book(num_stocks: int, initial_value: Any, return_window: int) -> BookState:
    """All cash: zero weights [num_stocks], value = peak = ``initial_value``, not de-risked,
    an empty return buffer [return_window] (the default start of every backtest)."""
    v0 = jnp.asarray(initial_value, _F32)
    return BookState(port=PortfolioState(weights=jnp.zeros((num_stocks,), _F32), value=v0,
                                         peak=v0),
                     risk=init_risk_state(), returns=jnp.zeros((return_window,), _F32),
                     count=jnp.zeros((), _I32))


@struct.dataclass
class BacktestResult:
    """Per-day outputs [L] (or [B, L] batched). Day i is the decision at the close of
    ``t[i]`` and its outcome on day ``t[i] + 1``."""

    t: jax.Array               # [L] int32 decision day
    rebalanced: jax.Array      # [L] bool
    net_return: jax.Array      # [L] gross - costs (fraction of the value before trading)
    gross_return: jax.Array    # [L] sum(executed weights * returns[t+1])
    cost_frac: jax.Array       # [L] total cost / value before trading
    costs: dict                # name -> [L] itemised cost / value before trading (COST_ITEMS)
    turnover: jax.Array        # [L] one-way 0.5 * sum |executed - drifted|
    weights: jax.Array         # [L, N] executed weights (after trading at t)
    sector_weights: jax.Array  # [L, S] executed weights per sector
    value: jax.Array           # [L] value at the close of t + 1
    drawdown: jax.Array        # [L] drawdown at the close of t + 1
    exposure: jax.Array        # [L] allowed exposure (1 without the risk manager)
    drifted: jax.Array         # [L, N] the drifted book at the close of t, before trading
    target: jax.Array          # [L, N] the strategy's own target (nonnegative, before the
                               # projection) on rebalance days, 0 on the others


def backtest_scan(weights_fn: WeightsFn, carry0: Any, params: EnvParams, t0: jax.Array,
                  rebalance: jax.Array, risk_manager: bool, return_window: int,
                  book0: BookState | None = None) -> tuple[Any, BacktestResult]:
    """The traced body of ``backtest`` (one strategy, one market, one carry), for callers that
    vmap it over other axes (``backtest_batch``: carries; ``evaluation.markets``: markets).
    ``book0``: the starting book (None: ``cash_book``)."""
    carry_end, res, _ = backtest_scan_book(weights_fn, carry0, params, t0, rebalance,
                                           risk_manager, return_window, book0)
    return carry_end, res


def backtest_scan_book(weights_fn: WeightsFn, carry0: Any, params: EnvParams, t0: jax.Array,
                       rebalance: jax.Array, risk_manager: bool, return_window: int,
                       book0: BookState | None = None
                       ) -> tuple[Any, BacktestResult, BookState]:
    """``backtest_scan`` that also returns the book at the end of the window (after the last
    day's trade and drift: what the next window starts from)."""
    n, s = params.num_stocks, params.num_sectors
    if book0 is None:
        book0 = cash_book(n, params.initial_value, return_window)
    state0 = (carry0, book0.port, book0.risk, book0.returns, book0.count)

    def day(state, x):
        carry, port, risk, buf, cnt = state
        i, reb = x
        t = (t0 + i).astype(_I32)
        if risk_manager:
            risk2, expo = risk_exposure(risk, port, buf, buffer_mask(buf, cnt), t, params)
        else:
            risk2, expo = risk, jnp.ones((), _F32)

        def rebalance_branch(c):
            c2, raw = weights_fn(c, t, DayView(params=params, port=port, i=i, exposure=expo))
            raw = jnp.maximum(jnp.asarray(raw, _F32), 0.0)
            proj = project_stocks(raw, t, expo, params, port.weights)
            hold = weights_fn.holds(c2) if hasattr(weights_fn, "holds") else None
            if hold is not None:  # the strategy keeps its drifted book today
                proj = jnp.where(hold, port.weights, proj)
                raw = jnp.where(hold, port.weights, raw)
            return c2, proj, raw

        def hold_branch(c):
            return c, port.weights, jnp.zeros_like(port.weights)

        carry2, target, raw = jax.lax.cond(reb, rebalance_branch, hold_branch, carry)
        port2, info, _ = trade_day(port, target, t, params)
        net = net_return(info)
        buf2, cnt2 = push_return(buf, cnt, net)
        v0 = jnp.where(port.value > 0, port.value, 1.0)
        out = {
            "t": t, "rebalanced": reb, "net_return": net,
            "gross_return": info.gross_return.astype(_F32),
            "cost_frac": info.cost_frac.astype(_F32),
            "costs": {k: (getattr(info.costs, k) / v0).astype(_F32) for k in COST_ITEMS},
            "turnover": info.turnover.astype(_F32), "weights": info.executed_weights,
            "sector_weights": sector_weights(info.executed_weights, params.stock_sector, s),
            "value": port2.value.astype(_F32), "drawdown": info.drawdown.astype(_F32),
            "exposure": expo.astype(_F32), "target": raw,
            "drifted": port.weights.astype(_F32),
        }
        return (carry2, port2, risk2, buf2, cnt2), out

    length = rebalance.shape[0]
    xs = (jnp.arange(length, dtype=_I32), jnp.asarray(rebalance, bool).at[0].set(True))
    (carry_end, port_end, risk_end, buf_end, cnt_end), out = jax.lax.scan(day, state0, xs)
    return carry_end, BacktestResult(**out), BookState(port=port_end, risk=risk_end,
                                                       returns=buf_end, count=cnt_end)


@partial(jax.jit, static_argnames=("weights_fn", "risk_manager", "return_window",
                                   "return_book"))
def backtest(weights_fn: WeightsFn, carry0: Any, params: EnvParams, t0: jax.Array,
             rebalance: jax.Array, *, risk_manager: bool = False,
             return_window: int = 20, book0: BookState | None = None,
             return_book: bool = False) -> tuple:
    """Run one strategy over days t0 .. t0 + L - 1 (L = len(rebalance), static).

    Args:
      weights_fn: static, hashable weight function (module docstring).
      carry0: its initial carry (pytree).
      params: EnvParams of the market (``envs.params.make_env_params``).
      t0: first decision day (int32, traced: one compile serves every window of length L).
      rebalance: [L] bool rebalance days (day 0 is always forced True); see ``rebalance_mask``.
      risk_manager: scale the projection budget by ``risk.manager.exposure`` like the envs
        (drawdown gate, CVaR budget over the last ``return_window`` returns, event days).
      book0: the starting book (None: all cash, ``cash_book``).
      return_book: also return the book at the end of the window.
    Requires t0 + L <= T - 1 (the last decision needs returns[t + 1]); checked by
    ``run_backtest``.
    Returns: (final carry, BacktestResult with [L] leaves) (+ the end BookState).
    """
    out = backtest_scan_book(weights_fn, carry0, params, jnp.asarray(t0, _I32), rebalance,
                             risk_manager, return_window, book0)
    return out if return_book else out[:2]


@partial(jax.jit, static_argnames=("weights_fn", "risk_manager", "return_window",
                                   "return_book"))
def backtest_batch(weights_fn: WeightsFn, carries: Any, params: EnvParams, t0: jax.Array,
                   rebalance: jax.Array, *, risk_manager: bool = False,
                   return_window: int = 20, book0: BookState | None = None,
                   return_book: bool = False) -> tuple:
    """``backtest`` vmapped over the leading axis B of ``carries`` (e.g. seeds' keys) and of
    ``book0`` (each path its own starting book; None: every path from cash)."""
    f = lambda c, b: backtest_scan_book(  # noqa: E731
        weights_fn, c, params, jnp.asarray(t0, _I32), rebalance, risk_manager, return_window, b)
    out = jax.vmap(f)(carries, book0)
    return out if return_book else out[:2]


def is_open_loop(weights_fn: Any) -> bool:
    """True when ``weights_fn`` declares ``open_loop = True`` (it never reads ``view.port``)."""
    return bool(getattr(weights_fn, "open_loop", False))


def targets_scan(weights_fn: WeightsFn, carry0: Any, params: EnvParams, t0: jax.Array,
                 rebalance: jax.Array) -> tuple[Any, jax.Array]:
    """An open-loop weight function alone over days t0 .. t0 + L - 1: (final carry, targets
    [L, N]), its nonnegative raw target on rebalance days (day 0 forced) and 0 on the others,
    the carry updated on rebalance days only: what ``backtest_scan`` records as
    ``BacktestResult.target`` and threads through its carry. ``view.port`` is None here."""
    n = params.num_stocks

    def day(carry, x):
        i, reb = x
        t = (t0 + i).astype(_I32)

        def rebalance_branch(c):
            c2, raw = weights_fn(c, t, DayView(params=params, port=None, i=i))
            return c2, jnp.maximum(jnp.asarray(raw, _F32), 0.0)

        return jax.lax.cond(reb, rebalance_branch,
                            lambda c: (c, jnp.zeros((n,), _F32)), carry)

    length = rebalance.shape[0]
    xs = (jnp.arange(length, dtype=_I32), jnp.asarray(rebalance, bool).at[0].set(True))
    return jax.lax.scan(day, carry0, xs)


@partial(jax.jit, static_argnames=("weights_fn", "batched"))
def open_loop_targets(weights_fn: WeightsFn, carry0: Any, params: EnvParams, t0: jax.Array,
                      rebalance: jax.Array, *, batched: bool = False) -> tuple[Any, jax.Array]:
    """``targets_scan`` jitted (``batched``: vmapped over the leading axis B of ``carry0``,
    targets [B, L, N])."""
    f = lambda c: targets_scan(weights_fn, c, params, jnp.asarray(t0, _I32), rebalance)  # noqa: E731
    return jax.vmap(f)(carry0) if batched else f(carry0)


# --------------------------------------------------------------------------- host helpers


# HOST ONLY
def rebalance_mask(schedule: str | int, t0: int, length: int, week_end: np.ndarray,
                   dates: np.ndarray | None = None) -> np.ndarray:
    """bool [length]: the rebalance days of decision days t0 .. t0 + length - 1.

    schedule: 'daily'; 'weekly' (the last trading day of each calendar week,
    ``MarketArrays.week_end``); 'monthly' (the last trading day of each calendar month, needs
    ``dates``); an int k or 'every:k' (every k-th trading day counted from t0).
    Day 0 is always a rebalance day (the initial buy).
    """
    idx = np.arange(t0, t0 + length)
    if isinstance(schedule, int | np.integer) or (isinstance(schedule, str)
                                                  and schedule.startswith("every:")):
        try:
            k = int(schedule if not isinstance(schedule, str) else schedule.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"rebalance schedule {schedule!r}: 'every:k' needs an integer k"
                              ) from None
        if k < 1:
            raise ConfigError(f"rebalance schedule {schedule!r}: k must be >= 1")
        mask = (np.arange(length) % k) == 0
    elif schedule == "daily":
        mask = np.ones(length, bool)
    elif schedule == "weekly":
        mask = np.asarray(week_end, bool)[idx]
    elif schedule == "monthly":
        if dates is None:
            raise ConfigError("rebalance schedule 'monthly' needs the market's dates")
        months = np.asarray(dates).astype("datetime64[M]")
        last = np.r_[months[1:] != months[:-1], True]
        mask = last[idx]
    else:
        raise ConfigError(f"rebalance schedule {schedule!r} is not one of 'daily', 'weekly', "
                          "'monthly', 'every:k' or an integer k")
    mask = mask.copy()
    mask[0] = True
    return mask


# HOST ONLY
def date_window(dates: np.ndarray, start: str | np.datetime64,
                end: str | np.datetime64) -> tuple[int, int]:
    """(t0, length): decisions on trading days t0 .. t0 + length - 1 so that the returns
    earned fall on days t0 + 1 .. t_end, with t0 the first trading day >= start and t_end the
    last trading day <= end. ConfigError if fewer than 2 trading days fall in [start, end]."""
    d = np.asarray(dates).astype("datetime64[D]")
    s, e = np.datetime64(start, "D"), np.datetime64(end, "D")
    t0 = int(np.searchsorted(d, s, side="left"))
    t_end = int(np.searchsorted(d, e, side="right")) - 1
    if t0 >= len(d) or t_end - t0 < 1:
        raise ConfigError(f"window {s}..{e} holds fewer than 2 trading days of the market "
                          f"({d[0]}..{d[-1]})")
    return t0, t_end - t0


# HOST ONLY
def check_book(book: BookState, num_stocks: int, return_window: int, batch: int | None,
               what: str = "book0") -> None:
    """ConfigError (one line, naming ``what``) unless ``book`` is a book of ``num_stocks``
    stocks and a [return_window] buffer, with a leading axis of ``batch`` paths when batched
    (None: unbatched)."""
    lead = () if batch is None else (int(batch),)
    want = {"weights": (*lead, int(num_stocks)), "value": lead, "peak": lead,
            "returns": (*lead, int(return_window)), "count": lead}
    got = {"weights": np.shape(book.port.weights), "value": np.shape(book.port.value),
           "peak": np.shape(book.port.peak), "returns": np.shape(book.returns),
           "count": np.shape(book.count)}
    bad = [f"{k} {got[k]} (expected {want[k]})" for k in want if tuple(got[k]) != want[k]]
    if bad:
        paths = "unbatched" if batch is None else f"{batch} path(s)"
        raise ConfigError(f"{what}: the starting book does not fit this backtest ({num_stocks} "
                          f"stocks, {paths}): {', '.join(bad)}; carry a book from a backtest "
                          f"of the same market, strategy and seeds")


# HOST ONLY
def run_backtest(weights_fn: WeightsFn, carry0: Any, params: EnvParams, t0: int,
                 rebalance: np.ndarray, *, batched: bool = False, risk_manager: bool = False,
                 return_window: int = 20, book0: BookState | None = None,
                 return_book: bool = False) -> tuple:
    """Checked host entry point: validates the window (and ``book0``), runs (batched) and
    returns host arrays: (carry, result), plus the end book with ``return_book``."""
    length = int(np.asarray(rebalance).shape[0])
    t_total = int(params.returns.shape[0])
    if not (t0 >= 0 and length >= 1 and t0 + length <= t_total - 1):
        raise ConfigError(f"backtest window t0={t0}, length={length} must satisfy "
                          f"0 <= t0 and t0 + length <= T - 1 = {t_total - 1}")
    if book0 is not None:
        lead = jax.tree.leaves(carry0)
        batch = int(np.shape(lead[0])[0]) if batched and lead else None
        check_book(book0, params.num_stocks, return_window, batch)
    fn = backtest_batch if batched else backtest
    t0_, reb = jnp.asarray(t0, _I32), jnp.asarray(rebalance, bool)
    carry_end = None
    if is_open_loop(weights_fn):  # the targets alone, then the shared accounting program
        carry_end, targets = open_loop_targets(weights_fn, carry0, params, t0_, reb,
                                               batched=batched)
        weights_fn, carry0 = ReplayTargets(), targets
    out = fn(weights_fn, carry0, params, t0_, reb, risk_manager=risk_manager,
             return_window=return_window, book0=book0, return_book=return_book)
    if carry_end is not None:
        out = (carry_end, *out[1:])
    return tuple(jax.device_get(x) for x in out)


@dataclass(frozen=True)
class ReplayTargets:
    """Open-loop replay of recorded targets: carry = [L, N] targets (``BacktestResult.target``
    of an earlier run on the same window and rebalance days); returns row ``view.i``."""

    def __call__(self, targets: jax.Array, t: jax.Array, view: DayView
                 ) -> tuple[jax.Array, jax.Array]:
        return targets, targets[jnp.asarray(view.i, _I32)]
