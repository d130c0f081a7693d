"""``hrl-sarp decide`` and ``hrl-sarp paper``: orders for the next trading day, a paper ledger.

# HOST ONLY (not jittable)
``decide_run`` (the decision at the close of day D, from data <= D):
1. the run's policy (``training.policy.load_policy``), as the seed ensemble
   (``evaluation.agent.EnsembleStrategy``: every seed acts on one book, the target is the mean
   of the seeds' Micro weights), or one seed (``seed``: the ensemble of that seed alone);
2. the market and features cut at D and padded with one day of zero returns
   (``decision_params``): day D becomes a decision day of the backtest even when it is the
   last day of the data, and nothing after D can reach the decision;
3. the project's backtest (``evaluation.backtest.run_backtest``, daily, risk manager on) of
   that strategy from the start of the evaluation window holding D (data.test_start,
   data.val_start or the first usable day) to D - 1: its book (drifted weights, value, peak,
   risk gate, return buffer) and each seed's goal in force;
4. day D as a one-day backtest resumed from there (``Resume``: the window's day index
   continues, so the Macro decides at D only on a week end, as in the uninterrupted
   backtest), from the backtest's own book, or from ``holdings`` (the same book with the
   user's positions and value, the backtest's drawdown, risk gate and goal). Its
   ``BacktestResult`` row is the decision: ``target`` (the strategy's raw weights) and
   ``weights`` (after the constraints, the risk manager's exposure, the no-trade band and
   circuit locks);
5. integer shares (``integer_targets``): the executed weights x the book's value / D's close,
   floored, then cut one buy at a time until cash after the estimated costs
   (``finance.costs.trade_costs`` with the run's ``env.cost``) is >= 0; positions the
   backtest holds (band, locks) keep their shares exactly.
``paper``: the ledger's decisions replayed on realised prices (``evaluation.ledger``).

Shapes: T days, N stocks, S sectors, K seeds, G = S + 3 goal.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.checkpointing import Run
from hrl_sarp_jax.config import REGIME_NAMES, Config, config_from_dict, to_dict
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.params import EnvParams, make_env_params, trailing_adv
from hrl_sarp_jax.errors import ConfigError, DataError
from hrl_sarp_jax.evaluation import ledger as lg
from hrl_sarp_jax.evaluation.agent import (
    AgentCarry,
    EnsembleStrategy,
    HierarchicalStrategy,
    agent_goal_change,
    agent_rebalance,
)
from hrl_sarp_jax.evaluation.backtest import DayView, cash_book, run_backtest
from hrl_sarp_jax.evaluation.explain import resolve_date, window_start
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.finance.costs import cost_params, trade_costs
from hrl_sarp_jax.training.policy import load_policy
from hrl_sarp_jax.types import NUM_REGIMES

_F32 = np.float32
COST_ITEMS = ("stt", "stamp", "exchange", "sebi", "gst", "brokerage", "slippage", "impact")
CASH_NAMES = ("cash", "CASH", "Cash")


# --------------------------------------------------------------------------- market at D


def _cut_pad(tree: Any, t_total: int, t: int, zero: tuple[str, ...] = (),
             unknown: tuple[str, ...] = ()) -> Any:
    """Every leaf with a leading [T] axis cut to rows 0..t, plus one copy of row t (fields in
    ``zero`` get 0 there, those in ``unknown`` -1); other leaves as they are."""
    def cut(name: str, x: Any) -> Any:
        a = np.asarray(x)
        if a.ndim == 0 or a.shape[0] != t_total:
            return x
        a = a[: t + 1]
        pad = a[-1:].copy()
        if name in zero:
            pad[...] = 0
        elif name in unknown:
            pad[...] = -1
        return np.concatenate([a, pad], 0)

    return tree.replace(**{f: cut(f, getattr(tree, f)) for f in tree.__dataclass_fields__})


# HOST ONLY
def decision_params(market: MarketArrays, feats: FeatureSet, cfg: Config, t: int) -> EnvParams:
    """EnvParams of the market and features cut at day t and padded with one day (T' = t + 2)
    whose returns are 0: day t is then a backtest decision day even when it is the last day of
    the data, and rows after t cannot reach any decision (the features are causal, so rows
    <= t are those of the whole market's)."""
    t_total = market.num_days
    m = _cut_pad(market, t_total, t, zero=("returns", "sector_returns", "benchmark_returns"),
                 unknown=("latent_regime",))
    f = _cut_pad(feats, t_total, t, unknown=("regime_label", "regime_rule"))
    return make_env_params(m, f, cfg.env)


@dataclass(frozen=True)
class Resume:
    """A weight function continuing an earlier backtest: carry = (offset int32, inner carry);
    calls ``inner`` with the window's day index + offset, so a strategy that acts on its
    window's first day (the Macro's ``i == 0``) or logs by day index sees the days of the
    uninterrupted window."""

    inner: Any

    def __call__(self, carry: tuple[Any, Any], t: jax.Array, view: DayView
                 ) -> tuple[tuple[Any, Any], jax.Array]:
        offset, inner = carry
        i = jnp.asarray(view.i, jnp.int32) + offset
        inner, w = self.inner(inner, t, view.replace(i=i))
        return (offset, inner), w

    def holds(self, carry: tuple[Any, Any]) -> jax.Array | None:
        """The inner strategy's hold flag (``evaluation.backtest``), if it has one."""
        return self.inner.holds(carry[1]) if hasattr(self.inner, "holds") else None


# --------------------------------------------------------------------------- holdings


def read_holdings(path: str | Path, tickers: tuple[str, ...] | list[str]
                  ) -> tuple[dict[str, int], float | None]:
    """({ticker: shares}, cash or None) of a holdings CSV with columns ``ticker,shares``; a
    row named cash holds the cash amount. ConfigError naming the problem (missing file or
    columns, unknown tickers, negative or fractional shares, duplicates)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            fields = [str(c).strip().lower() for c in (reader.fieldnames or [])]
    except FileNotFoundError:
        raise ConfigError(f"--holdings {path}: no such file; give a CSV with columns "
                          f"ticker,shares (a row 'cash' for the cash)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"--holdings {path}: unreadable ({exc}); give a CSV with columns "
                          f"ticker,shares") from None
    if not {"ticker", "shares"} <= set(fields):
        raise ConfigError(f"--holdings {path}: needs the columns ticker,shares (found "
                          f"{','.join(fields) or 'none'})")
    known = {t for t in tickers if t}
    out: dict[str, int] = {}
    cash = None
    unknown = []
    for k, row in enumerate(rows, start=2):
        row = {str(a).strip().lower(): (b or "").strip() for a, b in row.items() if a}
        name, text = row.get("ticker", ""), row.get("shares", "")
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(f"--holdings {path} row {k}: shares {text!r} is not a number"
                              ) from None
        if not math.isfinite(value):
            raise ConfigError(f"--holdings {path} row {k}: shares {text!r} is not a number")
        if name.lower() == "cash":
            if cash is not None:
                raise ConfigError(f"--holdings {path} row {k}: a second cash row; give one")
            if value < 0:
                raise ConfigError(f"--holdings {path} row {k}: cash {value:g} is negative; "
                                  f"borrowing is not modelled")
            cash = value
            continue
        if name not in known:
            unknown.append(name)
            continue
        if value < 0 or value != int(value):
            raise ConfigError(f"--holdings {path} row {k}: {name} holds {text} shares; give a "
                              f"whole number >= 0 (no short positions)")
        if name in out:
            raise ConfigError(f"--holdings {path} row {k}: {name} is listed twice; list each "
                              f"ticker once")
        out[name] = int(value)
    if unknown:
        example = ", ".join(sorted(known)[:5])
        raise ConfigError(f"--holdings {path}: tickers {sorted(unknown)} are not in the market "
                          f"(it has {len(known)}, e.g. {example}); fix the names or pass the "
                          f"market the run trained on with --data")
    return out, cash


# --------------------------------------------------------------------------- shares


def cost_model(cfg_cost: Any) -> Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]]:
    """(buy_value [N], sell_value [N], adv_value [N]) -> {"total", item: currency} of the
    project's cost model (``finance.costs.trade_costs``) with ``cfg_cost`` (a CostConfig)."""
    params = cost_params(cfg_cost)

    def fn(buy: np.ndarray, sell: np.ndarray, adv: np.ndarray) -> dict[str, float]:
        c = jax.device_get(trade_costs(jnp.asarray(buy, jnp.float32),
                                       jnp.asarray(sell, jnp.float32),
                                       jnp.asarray(adv, jnp.float32), params))
        return {"total": float(c.total), **{k: float(getattr(c, k)) for k in COST_ITEMS}}

    return fn


def integer_targets(desired: np.ndarray, current: np.ndarray, price: np.ndarray,
                    cash: float, keep: np.ndarray,
                    costs: Callable[[np.ndarray, np.ndarray], dict[str, float]]
                    ) -> tuple[np.ndarray, dict[str, float], float]:
    """(target shares int64 [N], estimated costs, cash after) for ``desired`` fractional
    shares [N] from ``current`` shares [N] at ``price`` [N] with ``cash``.

    Targets are the desired shares floored (within 1e-6 of a whole number counts as that
    number); ``keep`` [N] bool positions and untradable prices (<= 0 or NaN) keep their
    current shares. While cash after the trades and their ``costs(buy_value, sell_value)``
    is negative, the largest buy shrinks by the shares that cover the shortfall (at least
    one). ConfigError when no buy is left to cut."""
    desired = np.asarray(desired, np.float64)
    current = np.asarray(current, np.int64)
    price = np.asarray(price, np.float64)
    ok = np.isfinite(price) & (price > 0) & ~np.asarray(keep, bool) & np.isfinite(desired)
    near = np.rint(desired)
    snapped = np.where(np.abs(desired - near) <= 1e-6 * np.maximum(1.0, np.abs(desired)), near,
                       desired)
    target = np.where(ok, np.floor(np.maximum(snapped, 0.0)), current).astype(np.int64)
    px = np.where(ok, price, 0.0)
    for _ in range(100_000):
        delta = target - current
        buy, sell = np.maximum(delta, 0) * px, np.maximum(-delta, 0) * px
        est = costs(buy, sell)
        after = float(cash + sell.sum() - buy.sum() - est["total"])
        if after >= 0:
            return target, est, after
        buys = np.flatnonzero(delta > 0)
        if buys.size == 0:
            raise ConfigError(f"the book cannot pay for its trades: cash after the sells and "
                              f"costs is {after:,.2f}; add cash")
        j = buys[np.argmax(buy[buys])]
        target[j] -= min(int(delta[j]), max(1, math.ceil(-after / px[j])))
    raise ConfigError("integer_targets: no funded book found")  # pragma: no cover


# --------------------------------------------------------------------------- decide


def _pick_seed(tree: Any, seed: int) -> Any:
    return jax.tree.map(lambda x: np.asarray(x)[seed: seed + 1], tree)


def _last_macro(carry: AgentCarry, i: int) -> tuple[np.ndarray, np.ndarray]:
    """(day index [K] of each seed's last Macro decision <= i, its regime probs [K, 3])."""
    steps = np.asarray(carry.macro_step, bool)[:, : i + 1]
    last = steps.shape[1] - 1 - np.argmax(steps[:, ::-1], axis=1)
    probs = np.asarray(carry.regime_probs, np.float64)[np.arange(steps.shape[0]), last]
    return last, probs / np.maximum(probs.sum(-1, keepdims=True), 1e-12)


# HOST ONLY
def decide_run(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
               feats: FeatureSet, *, date: str | None = None, capital: float | None = None,
               holdings: Mapping[str, int] | None = None, cash: float | None = None,
               seed: int | None = None, risk_manager: bool = True,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The run's decision at the close of ``date`` (default: the last day of the data) and
    the orders that reach it (module docstring).

    Args:
      capital: the book's value when it is the backtest's (no ``holdings``); with
        ``holdings`` and no ``cash``, the cash is capital - their value.
      holdings: {ticker: shares} of the current book (None: the backtest's book at D).
      cash: cash beside ``holdings`` (neither cash nor capital: no cash).
      seed: one policy seed (None: the ensemble of every seed).
    Returns a dict: run, date, requested_date, note, seeds, seed, policy, window_start,
    book_source, value, cash_before, cash_after, holdings_before, holdings_after, target
    (the strategy's raw weights by ticker), weights (executed), exposure_target (currency),
    exposure_after (the whole shares' value), orders [{ticker, side, shares, price, value,
    current, target, weight}], estimated_costs, risk, regime, goal, turnover, band_held,
    arrays (host arrays for tests: target, weights, drifted, shares_current, shares_target,
    price [N]).
    """
    say = log or (lambda _msg: None)
    if capital is not None and not (math.isfinite(capital) and capital > 0):
        raise ConfigError(f"--capital {capital:g}: give a positive amount of money")
    if cash is not None and not (math.isfinite(cash) and cash >= 0):
        raise ConfigError(f"--cash {cash:g}: give an amount >= 0 (borrowing is not modelled)")
    if holdings is None and cash is not None:
        raise ConfigError("--cash applies to --holdings FILE; without it give --capital")
    if holdings is None and capital is None:
        raise ConfigError("--capital: give the book's value (or --holdings FILE with its cash)")
    if holdings is not None and capital is not None and cash is not None:
        raise ConfigError("--capital with --holdings and a cash amount: the book's value is "
                          "the holdings plus the cash; leave out --capital")
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    if date is None:
        t, note = len(dates) - 1, None
    else:
        t, note = resolve_date(date, dates)
        if note:
            note = f"{date} is not a trading day; deciding at the previous trading day {dates[t]}"
    tickers = tuple(meta.tickers)
    col = {name: j for j, name in enumerate(tickers) if name}
    if holdings is not None:
        unknown = sorted(set(holdings) - set(col))
        if unknown:
            raise ConfigError(f"holdings: tickers {unknown} are not in the market; fix the names")
    tradable = np.asarray(market.stock_mask, bool) & np.asarray(market.stock_valid, bool)[None]
    usable = np.flatnonzero(np.asarray(feats.sector_mask, bool).any(1) & tradable.any(1))
    if usable.size == 0 or t < usable[0]:
        first = dates[usable[0]] if usable.size else "none"
        raise ConfigError(f"--date {dates[t]}: before the first day the features allow a "
                          f"decision ({first}, after their warm-up); pick a later date")
    policy = load_policy(run, cfg, market, meta, feats)
    macro, micro = policy.macro_actor, policy.micro_actor
    if seed is not None:
        if not 0 <= int(seed) < policy.seeds:
            raise ConfigError(f"--seed {seed}: run {run.name}'s policy has {policy.seeds} "
                              f"seed(s); give a seed in 0..{policy.seeds - 1} (or leave it out "
                              f"for the ensemble)")
        macro, micro = _pick_seed(macro, int(seed)), _pick_seed(micro, int(seed))
    t0 = max(window_start(dates, t, cfg.data.val_start, cfg.data.test_start), int(usable[0]))
    params = decision_params(market, feats, cfg, t)
    rw = int(cfg.env.return_window)
    carries = HierarchicalStrategy(cfg.networks).init_carries(macro, micro, params, t0,
                                                              t - t0 + 1)
    strategy = EnsembleStrategy(cfg.networks, agent_goal_change(cfg.env))
    n_days = t - t0
    schedule = agent_rebalance(cfg.env.micro_frequency, params, t0, n_days + 1)
    if not schedule[-1]:
        later = np.flatnonzero(np.asarray(market.week_end, bool)[t + 1:])
        nxt = str(dates[t + 1 + later[0]]) if later.size else "after the data"
        raise ConfigError(f"--date {dates[t]}: env.micro_frequency is "
                          f"{cfg.env.micro_frequency!r}, so the hierarchy re-allocates on week "
                          f"ends only and holds its book on {dates[t]} (next decision: {nxt}); "
                          f"pass a week-end date")
    if n_days > 0:
        say(f"backtest of the {'ensemble' if seed is None else f'seed {seed}'} from {dates[t0]} "
            f"to {dates[t - 1]} ...")
        carries, _res, book = run_backtest(strategy, carries, params, t0, schedule[:-1],
                                           risk_manager=risk_manager, return_window=rw,
                                           return_book=True)
    else:
        book = jax.device_get(cash_book(params.num_stocks, params.initial_value, rw))
    price = np.asarray(market.close, np.float64)[t]
    bt_value, bt_peak = float(np.asarray(book.port.value)), float(np.asarray(book.port.peak))
    drawdown = 1.0 - bt_value / bt_peak if bt_peak > 0 else 0.0
    if holdings is None:
        value = float(capital)
        w_now = np.asarray(book.port.weights, np.float64)
        ok = np.isfinite(price) & (price > 0)
        current = np.where(ok, np.floor(w_now * value / np.where(ok, price, 1.0) + 1e-6),
                           0).astype(np.int64)
        cash_before = value - float(np.sum(current * np.where(ok, price, 0.0)))
        book_d = book
        source = (f"the backtest's book at the close of {dates[t]} (since {dates[t0]}), scaled "
                  f"to the capital in whole shares")
    else:
        current = np.zeros(len(tickers), np.int64)
        for name, q in holdings.items():
            current[col[name]] = int(q)
        held = current > 0
        bad = [tickers[j] for j in np.flatnonzero(held & ~(np.isfinite(price) & (price > 0)))]
        if bad:
            raise ConfigError(f"holdings: {bad} have no price on {dates[t]}; sell them outside "
                              f"this tool or pick another --date")
        worth = float(np.sum(current[held] * price[held]))
        cash_before = (float(cash) if cash is not None else
                       float(capital) - worth if capital is not None else 0.0)
        if cash_before < 0:
            raise ConfigError(f"--capital {capital:,.2f} is less than the holdings' value "
                              f"{worth:,.2f} on {dates[t]}; give the cash with --cash instead")
        value = worth + cash_before
        if value <= 0:
            raise ConfigError("holdings: the book is worth nothing (no shares, no cash); give "
                              "--cash or --capital")
        w_user = np.where(held, current * np.where(held, price, 0.0) / value, 0.0)
        book_d = book.replace(port=book.port.replace(
            weights=np.asarray(w_user, _F32), value=np.asarray(value, _F32),
            peak=np.asarray(value / max(1.0 - drawdown, 1e-6), _F32)))
        source = "the holdings given (with the backtest's drawdown, risk gate and goals)"
    say(f"decision at the close of {dates[t]} ...")
    (_, carry), res, book_end = run_backtest(
        Resume(strategy), (jnp.asarray(n_days, jnp.int32), carries), params, t, np.ones(1, bool),
        risk_manager=risk_manager, return_window=rw, book0=book_d, return_book=True)
    target = np.asarray(res.target, np.float64)[0]
    weights = np.asarray(res.weights, np.float64)[0]
    keep = np.asarray(res.weights)[0] == np.asarray(res.drifted)[0]  # band, locks: no trade
    adv = np.asarray(params.adv_value, np.float64)[t]
    fn = cost_model(cfg.env.cost)
    shares, est, cash_after = integer_targets(
        weights * value / np.where(price > 0, price, 1.0), current, price, cash_before, keep,
        lambda b, s: fn(b, s, adv))
    s_num = params.num_sectors
    last, probs = _last_macro(carry, n_days)
    goals = np.asarray(carry.goals, np.float64)[:, n_days]
    sectors = [(j, name) for j, name in enumerate(meta.sectors) if name and j < s_num]
    mean_probs = probs.mean(0)
    orders = []
    for j in np.flatnonzero(shares != current):
        q = int(shares[j] - current[j])
        orders.append({"ticker": tickers[j], "side": "buy" if q > 0 else "sell", "shares": q,
                       "price": float(price[j]), "value": float(q * price[j]),
                       "current": int(current[j]), "target": int(shares[j]),
                       "weight": float(weights[j])})
    named = [j for j, name in enumerate(tickers) if name]
    return {
        "run": run.name, "date": str(dates[t]), "requested_date": date, "note": note,
        "seeds": int(policy.seeds), "seed": None if seed is None else int(seed),
        "policy": {k: str(v) for k, v in policy.source.items()},
        "window_start": str(dates[t0]), "book_source": source, "value": value,
        "cash_before": cash_before, "cash_after": cash_after,
        "holdings_before": {tickers[j]: int(current[j]) for j in named if current[j]},
        "holdings_after": {tickers[j]: int(shares[j]) for j in named if shares[j]},
        "target": {tickers[j]: float(target[j]) for j in named},
        "weights": {tickers[j]: float(weights[j]) for j in named},
        "exposure_target": float(weights.sum() * value),
        "exposure_after": float(np.sum(shares * np.where(price > 0, price, 0.0))),
        "orders": orders, "estimated_costs": est,
        "turnover": float(np.asarray(res.turnover)[0]),
        "band_held": bool(np.all(keep)),
        "risk": {"risk_manager": bool(risk_manager),
                 "derisked": bool(np.asarray(book_end.risk.derisked)),
                 "derisked_before": bool(np.asarray(book_d.risk.derisked)),
                 "exposure": float(np.asarray(res.exposure)[0]), "drawdown": drawdown},
        "regime": {"call": REGIME_NAMES[int(np.argmax(mean_probs))],
                   "probs": {REGIME_NAMES[r]: float(mean_probs[r]) for r in range(NUM_REGIMES)},
                   "decided": [str(dates[t0 + int(i)]) for i in last],
                   "per_seed": [REGIME_NAMES[int(np.argmax(p))] for p in probs]},
        "goal": {"sector_weights": {name: float(goals[:, j].mean()) for j, name in sectors},
                 "regime": REGIME_NAMES[int(np.argmax(goals[:, s_num:].mean(0)))],
                 "macro_decides_today": bool(np.asarray(carry.macro_step)[:, n_days].any())},
        "cost_config": to_dict(cfg.env.cost),
        "arrays": {"target": target, "weights": weights, "price": price,
                   "drifted": np.asarray(res.drifted, np.float64)[0],
                   "shares_current": current, "shares_target": shares},
    }


def decision_record(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The ledger record of a ``decide_run`` result (``evaluation.ledger``)."""
    keep = ("run", "date", "seed", "seeds", "value", "cash_after", "exposure_target",
            "estimated_costs", "risk", "regime", "goal", "cost_config", "book_source")
    return {"kind": "decision",
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **{k: doc[k] for k in keep},
            "book": {"cash": doc["cash_before"], "holdings": doc["holdings_before"]},
            "orders": [{"ticker": o["ticker"], "shares": o["shares"], "price": o["price"]}
                       for o in doc["orders"]],
            "target_shares": doc["holdings_after"]}


# --------------------------------------------------------------------------- paper


# HOST ONLY
def paper(ledger_path: str | Path, market: MarketArrays, meta: MarketMeta) -> dict[str, Any]:
    """Mark the ledger at ``ledger_path`` to market on ``market`` (``evaluation.ledger.
    mark_to_market``): fills at each decision day's close, costs from the project's cost model
    with each record's ``cost_config``, impact on the trailing ADV (its ``adv_window``)."""
    records = lg.read_ledger(ledger_path)
    close = np.asarray(market.close, np.float64)
    tradable = np.asarray(market.stock_mask, bool) & np.asarray(market.stock_valid, bool)[None]
    open_valid = tradable & np.asarray(market.has_ohlc, bool)[None]
    models: dict[str, Any] = {}
    advs: dict[int, np.ndarray] = {}

    def costs(buy: np.ndarray, sell: np.ndarray, adv: np.ndarray,
              cost_config: Mapping[str, Any]) -> dict[str, float]:
        key = repr(sorted(cost_config.items()))
        if key not in models:
            try:
                models[key] = cost_model(config_from_dict({"env": {"cost": dict(cost_config)}}
                                                          ).env.cost)
            except ConfigError as exc:
                raise DataError(f"ledger {ledger_path}: a record's cost_config is not a cost "
                                f"config ({exc})") from None
        return models[key](buy, sell, adv)

    def adv_of(window: int) -> np.ndarray:
        if window not in advs:
            advs[window] = trailing_adv(close, np.asarray(market.volume), tradable, window)
        return advs[window]

    window = int((records[0].get("cost_config") or {}).get("adv_window", 20)) if records else 20
    out = lg.mark_to_market(records, meta.dates, meta.tickers, close,
                            np.asarray(market.open, np.float64), open_valid, adv_of(window),
                            costs, path=str(ledger_path))
    return {"ledger": str(ledger_path), **out}


# --------------------------------------------------------------------------- text


def format_decision(doc: Mapping[str, Any]) -> str:
    """The decision as text (``hrl-sarp decide``)."""
    who = f"ensemble of {doc['seeds']} seed(s)" if doc["seed"] is None else f"seed {doc['seed']}"
    risk, regime, goal = doc["risk"], doc["regime"], doc["goal"]
    lines = [f"run {doc['run']} ({who}): orders at the close of {doc['date']} for the next "
             f"trading day (data <= {doc['date']})"]
    if doc.get("note"):
        lines.append(f"note: {doc['note']}")
    lines += [
        f"book: {doc['book_source']}; value {doc['value']:,.2f}, cash {doc['cash_before']:,.2f}",
        "regime call: " + regime["call"] + " (" + ", ".join(
            f"{k} {v:.2f}" for k, v in regime["probs"].items()) + ")"
        + ("; the Macro decides today" if goal["macro_decides_today"] else ""),
        "goal in force: " + ", ".join(f"{k} {v:.2f}" for k, v in goal["sector_weights"].items())
        + f" ({goal['regime']})",
        f"risk manager: {'DE-RISKED' if risk['derisked'] else 'not de-risked'}, exposure "
        f"{risk['exposure']:.2f}, drawdown {risk['drawdown']:.1%}"
        + ("" if risk["risk_manager"] else " (off)"),
        f"target exposure {doc['exposure_target']:,.2f} "
        f"({doc['exposure_target'] / doc['value']:.1%}); in whole shares "
        f"{doc['exposure_after']:,.2f}; cash after costs {doc['cash_after']:,.2f}",
    ]
    if not doc["orders"]:
        lines.append("no orders (the book already holds the target, or the no-trade band "
                     "holds it)")
    else:
        width = max(6, *(len(o["ticker"]) for o in doc["orders"]))
        lines.append(f"  {'ticker':<{width}}  side  {'shares':>8}  {'price':>10}  {'value':>13}  "
                     f"{'holding':>8}  {'weight':>6}")
        for o in doc["orders"]:
            lines.append(f"  {o['ticker']:<{width}}  {o['side']:<4}  {o['shares']:>+8d}  "
                         f"{o['price']:>10,.2f}  {o['value']:>+13,.2f}  {o['target']:>8d}  "
                         f"{o['weight']:>6.1%}")
    c = doc["estimated_costs"]
    items = ", ".join(f"{k} {c[k]:,.2f}" for k in COST_ITEMS if c.get(k))
    lines.append(f"estimated costs {c['total']:,.2f}" + (f" ({items})" if items else ""))
    return "\n".join(lines)


def format_paper(doc: Mapping[str, Any]) -> str:
    """The ledger marked to market as text (``hrl-sarp paper``)."""
    lines = [f"ledger {doc['ledger']}: {doc['decisions']} decision(s) {doc['start_date']} .. "
             f"marked at the close of {doc['mark_date']}; fills at each decision day's close",
             f"value {doc['value']:,.2f} (start {doc['start_value']:,.2f}), P&L "
             f"{doc['pnl']:+,.2f} ({doc['return']:+.2%}), costs paid {doc['costs_paid']:,.2f}, "
             f"cash {doc['cash']:,.2f}",
             f"  {'date':<10}  {'bought':>12}  {'sold':>12}  {'costs':>9}  {'est.':>9}  "
             f"{'P&L to next':>12}  {'gap to open':>11}"]
    for r in doc["rows"]:
        est = "-" if r["costs_estimated"] is None else f"{r['costs_estimated']:,.2f}"
        gap = "-" if r["gap_to_next_open"] is None else f"{r['gap_to_next_open']:+,.2f}"
        flag = "" if r["book_matches"] else "  (its book differs from the ledger's)"
        lines.append(f"  {r['date']:<10}  {r['traded']['buy']:>12,.2f}  "
                     f"{r['traded']['sell']:>12,.2f}  {r['costs']['total']:>9,.2f}  {est:>9}  "
                     f"{r['pnl']:>+12,.2f}  {gap:>11}{flag}")
    return "\n".join(lines)
