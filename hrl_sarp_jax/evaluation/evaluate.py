"""``evaluate_baselines``: every baseline over one window -> the report payload (host side).

The payload is a plain dict (NumPy arrays inside ``series``) that ``evaluation.report`` turns
into metrics.json / report.md / report.html; ``add_strategy`` plugs in the trained agent
(``hrl_sarp``, per-seed daily returns) or the flat RL baseline later. Layout:

- ``window``: first decision day, last return day, number of return days L; ``dates`` [L]:
  the return dates (decision at the close of the previous trading day).
- ``strategies``: name -> {description, kind, schedule, metrics, series, [seeds]}. ``series``
  holds per-day arrays: net, gross, cost_frac, costs (itemised), turnover, value, drawdown,
  sector_weights [L, S] (None for the index). Seeded strategies (``random``) report the
  *mean over seeds of each metric* in ``metrics``, their dispersion in ``seeds``, and the
  seed-averaged daily returns (an equal-weight blend of the seed portfolios) in ``series``.
- ``oracle``: the regime oracle (an upper bound, synthetic markets only) or None + reason.
- ``tests``: each strategy vs the benchmark (bootstrap CI, JK/Memmel, sign test; per-seed
  tests for seeded strategies), Holm-adjusted across the family; ``vs_<agent>`` sections are
  added by ``add_strategy(..., compare=True)``.
- ``stress``: sector-shock scenarios on each strategy's mean sector allocation, and historical
  window replays (each window run from cash).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace as dc_replace
from typing import Any

import jax
import numpy as np

from hrl_sarp_jax.config import Config, to_dict
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation import attribution as ea
from hrl_sarp_jax.evaluation import backtest as bt
from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation import metrics as em
from hrl_sarp_jax.evaluation import stats as st
from hrl_sarp_jax.evaluation import stress as sx
from hrl_sarp_jax.evaluation.backtest import (
    ReplayTargets,
    date_window,
    rebalance_mask,
    run_backtest,
)
from hrl_sarp_jax.evaluation.regime_rule import fit_market
from hrl_sarp_jax.features.featureset import FeatureSet

BENCHMARK = "index_buy_hold"
SEEDED_METRICS = ("sharpe", "cagr", "ann_return", "ann_vol", "sortino", "calmar",
                  "max_drawdown", "cvar_95", "turnover", "cost_drag", "alpha", "beta",
                  "information_ratio", "hit_rate")


def _series(res: Any, seed_axis: bool = False) -> dict:
    g = (lambda x: np.asarray(x, np.float64).mean(0)) if seed_axis else (
        lambda x: np.asarray(x, np.float64))
    out = {"net": g(res.net_return), "gross": g(res.gross_return),
           "cost_frac": g(res.cost_frac), "costs": {k: g(v) for k, v in res.costs.items()},
           "turnover": g(res.turnover), "value": g(res.value), "drawdown": g(res.drawdown),
           "sector_weights": g(res.sector_weights)}
    if seed_axis:  # the blend's own wealth path
        w = np.cumprod(1.0 + out["net"])
        out["drawdown"] = 1.0 - w / np.maximum.accumulate(np.r_[1.0, w])[1:]
        out["value"] = w * np.asarray(res.value)[0, 0] / (1.0 + np.asarray(res.net_return)[0, 0])
    return out


def _metrics_of(series: Mapping, bench: np.ndarray | None, regimes: np.ndarray | None,
                rf: float) -> dict:
    return em.strategy_metrics(series["net"], benchmark=bench, turnover=series["turnover"],
                               costs=series["costs"], cost_frac=series["cost_frac"],
                               regimes=regimes, rf_annual=rf)


def _index_carried(s: Mapping, book: Any) -> dict:
    """``baselines.index_buy_hold``'s series over a window the index position is carried
    into (``book.port``: value and peak at its start): no entry buy, so net = gross, no cost,
    no turnover; value and drawdown continue the carried path."""
    net = np.asarray(s["gross_return"], np.float64)
    zero = np.zeros_like(net)
    value = float(np.asarray(book.port.value)) * np.cumprod(1.0 + net)
    peak = np.maximum.accumulate(np.r_[float(np.asarray(book.port.peak)), value])[1:]
    return {**s, "net_return": net, "cost_frac": zero, "turnover": zero.copy(),
            "costs": {k: zero.copy() for k in s["costs"]}, "value": value,
            "drawdown": 1.0 - value / peak}


def _index_end_book(s: Mapping, return_window: int) -> Any:
    """The index position at the end of the window: a ``backtest.BookState`` of one asset
    (weights [1] = 1, all in the index) with the path's last value and its peak."""
    value, dd = float(s["value"][-1]), float(s["drawdown"][-1])
    book = bt.cash_book(1, value, return_window)
    return jax.device_get(book.replace(port=book.port.replace(
        weights=np.ones(1, np.float32), peak=np.float32(value / (1.0 - dd)))))


def baseline_strategy(name: str, market: MarketArrays, params: Any, dates: np.ndarray,
                      cfg: Config, *, schedule: str | int = "weekly",
                      seeds: Sequence[int] = (0,), drift: np.ndarray | None = None
                      ) -> tuple[Any, Any, bool, str | int]:
    """(weights_fn, first carry, batched over seeds, rebalance schedule) of the weights
    baseline ``name`` (``baselines.BASELINES``; ``schedule`` where it has none of its own;
    ``seeds`` for the seeded one, ``drift`` [3, S] for the oracle)."""
    spec = bl.BASELINES[name]
    sched = spec.schedule if spec.schedule is not None else schedule
    if spec.kind == "seeded":
        keys = jax.vmap(jax.random.key)(np.asarray(seeds, np.uint32))
        return spec.make(), keys, True, sched
    if spec.kind == "oracle":
        fn = bl.RegimeOracle(bl.oracle_top_k(int(np.sum(np.asarray(market.sector_valid)))))
        return fn, fn.init_carry(drift, np.asarray(market.latent_regime)), False, sched
    if spec.kind == "fitted":
        fn = spec.make()
        return fn, fn.init_carry(fit_market(market, params, dates, cfg)), False, sched
    fn = spec.make()
    return fn, fn.init_carry(), False, sched


# HOST ONLY
def baseline_returns(market: MarketArrays, meta: MarketMeta, feats: FeatureSet, cfg: Config,
                     names: Sequence[str], t0: int, length: int, *,
                     schedule: str | int = "weekly", risk_manager: bool = True
                     ) -> dict[str, np.ndarray]:
    """name -> float64 [length] daily net returns of each weights baseline (plain or fitted:
    ``equal_weight``, ``sector_momentum``, ``regime_rule``, ...) decided on days t0 ..
    t0 + length - 1 from cash, traded as ``evaluate_baselines`` trades it (same schedule,
    costs and risk manager), e.g. the comparators of a validation walk."""
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    params = make_env_params(market, feats, cfg.env)
    week_end = np.asarray(market.week_end, bool)
    out = {}
    for name in names:
        if bl.get_baseline(name).kind not in ("weights", "fitted"):
            raise ConfigError(f"baseline {name!r} ({bl.BASELINES[name].kind}) has no single "
                              f"daily return series; choose a weights baseline")
        fn, carry, _, sched = baseline_strategy(name, market, params, dates, cfg,
                                                schedule=schedule)
        _, res = run_backtest(fn, carry, params, t0,
                              rebalance_mask(sched, t0, length, week_end, dates),
                              risk_manager=risk_manager, return_window=cfg.env.return_window)
        out[name] = np.asarray(res.net_return, np.float64)
    return out


def evaluate_baselines(
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    cfg: Config,
    *,
    split: tuple[str, str] | None = None,
    seeds: int | Sequence[int] = 5,
    schedule: str | int = "weekly",
    rf_annual: float = 0.0,
    sector_drift: np.ndarray | Mapping | None = None,
    include: Sequence[str] | None = None,
    risk_manager: bool = False,
    stress_limit: float | None = None,
    bootstrap_num: int = 2000,
    bootstrap_block: float = 5.0,
    historical: bool = True,
    start_books: Mapping[str, Any] | None = None,
    return_books: bool = False,
) -> dict:
    """Run every baseline over ``split`` (default: cfg.data.test_start .. the last day) and
    return the report payload (module docstring).

    Args:
      seeds: number of seeds (0..k-1) or explicit seeds for the random baseline.
      schedule: rebalance schedule of the baselines without their own (``BASELINES``).
      sector_drift: the synthetic generator's drift, [3, S] or meta.json's dict (the whole
        meta.json or its ``sector_drift_annual``); the oracle runs only when given and the
        market is synthetic with a latent regime.
      include: baseline names to run (default all except ``flat_rl``).
      risk_manager: apply the envs' risk manager exposure to every strategy.
      stress_limit: drawdown limit of the stress tests (default cfg.env.risk.derisk_drawdown).
      start_books: strategy name -> ``backtest.BookState`` to start from instead of cash (a
        walk-forward fold carries the previous fold's end books; ``random``'s has a leading
        seed axis; the index's is one asset, its value and peak: no entry buy). Names left
        out start from cash; the window is then marked ``window.start_book = 'carried'``.
      return_books: add ``end_books``: strategy name -> its book at the end of the window
        (host arrays), the next window's ``start_books``.
    """
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    start, end = split if split is not None else (cfg.data.test_start, str(dates[-1]))
    t0, length = date_window(dates, start, end)
    if t0 + length > market.num_days - 1:
        raise ConfigError(f"window {start}..{end} runs to the last day of the data")
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    limit = float(cfg.env.risk.derisk_drawdown if stress_limit is None else stress_limit)
    names = list(include) if include is not None else bl.default_baselines()
    for n in names:
        bl.get_baseline(n)
    books0 = dict(start_books or {})
    if sorted(set(books0) - set(names)):
        raise ConfigError(f"start_books: {sorted(set(books0) - set(names))} are not among the "
                          f"strategies evaluated {names}; pass books of those only")
    end_books: dict[str, Any] = {}
    params = make_env_params(market, feats, cfg.env)
    week_end = np.asarray(market.week_end, bool)
    ret_days = np.arange(t0 + 1, t0 + 1 + length)
    regimes, regime_source = em.realised_regimes(
        ret_days, np.asarray(market.latent_regime), np.asarray(feats.regime_rule), week_end)
    bench = np.asarray(market.benchmark_returns, np.float64)[ret_days]
    sectors = tuple(meta.sectors)

    drift = None
    oracle_note = None
    latent = np.asarray(market.latent_regime)
    if "oracle" in names:
        if sector_drift is None:
            oracle_note = "no sector_drift given (pass meta.json of a synthetic market)"
        elif not meta.synthetic or not np.any(latent >= 0):
            oracle_note = "the market is not synthetic / has no latent regime"
        elif isinstance(sector_drift, Mapping):
            table = sector_drift.get("sector_drift_annual", sector_drift)
            drift = bl.sector_drift_matrix({"sector_drift_annual": table}, sectors)
        else:
            drift = np.asarray(sector_drift, np.float32)

    def run_window(name: str, w0: int, wl: int, book0: Any = None, keep: bool = False):
        """(result, batched, schedule); from ``book0`` (None: cash); with ``keep`` the end
        book goes to ``end_books[name]``."""
        fn, carry, batched, sched = baseline_strategy(name, market, params, dates, cfg,
                                                      schedule=schedule, seeds=seeds,
                                                      drift=drift)
        reb = rebalance_mask(sched, w0, wl, week_end, dates)
        out = run_backtest(fn, carry, params, w0, reb, batched=batched,
                           risk_manager=risk_manager, return_window=cfg.env.return_window,
                           book0=book0, return_book=keep)
        if keep:
            end_books[name] = out[2]
        return out[1], batched, sched

    strategies: dict[str, dict] = {}
    oracle = None
    for name in names:
        spec = bl.BASELINES[name]
        if spec.kind == "index":
            s = bl.index_buy_hold(params, t0, length)
            if name in books0:
                s = _index_carried(s, books0[name])
            if return_books:
                end_books[name] = _index_end_book(s, cfg.env.return_window)
            series = {k: s[k] for k in ("costs", "turnover", "value", "drawdown", "cost_frac")}
            series.update(net=s["net_return"], gross=s["gross_return"], sector_weights=None)
            entry = {"description": spec.description, "kind": spec.kind, "schedule": "none",
                     "series": series, "metrics": _metrics_of(series, bench, regimes, rf_annual)}
            strategies[name] = entry
            continue
        if spec.kind == "oracle" and drift is None:
            continue
        res, batched, sched = run_window(name, t0, length, books0.get(name), return_books)
        series = _series(res, seed_axis=batched)
        entry = {"description": spec.description, "kind": spec.kind, "schedule": str(sched),
                 "upper_bound": spec.upper_bound, "series": series,
                 "attribution": strategy_attribution(
                     res, params, t0, rebalance_mask(sched, t0, length, week_end, dates),
                     batched=batched, risk_manager=risk_manager,
                     return_window=cfg.env.return_window, book0=books0.get(name))}
        if batched:
            per_seed = []
            for k in range(len(seeds)):
                one = _series(jax.tree.map(lambda x, k=k: np.asarray(x)[k], res))
                per_seed.append(_metrics_of(one, bench, regimes, rf_annual))
            entry["metrics"] = {m: float(np.mean([p[m] for p in per_seed]))
                                for m in SEEDED_METRICS}
            entry["metrics"]["cost_drag_items"] = {
                c: float(np.mean([p["cost_drag_items"][c] for p in per_seed]))
                for c in per_seed[0]["cost_drag_items"]}
            entry["metrics"]["regimes"] = _metrics_of(series, bench, regimes,
                                                      rf_annual)["regimes"]
            entry["metrics"]["seed_blend_sharpe"] = _metrics_of(series, bench, None,
                                                                rf_annual)["sharpe"]
            entry["seeds"] = {"seeds": seeds, **{m: em.dispersion([p[m] for p in per_seed])
                                                 for m in SEEDED_METRICS}}
            entry["per_seed_net"] = np.asarray(res.net_return, np.float64)
        else:
            entry["metrics"] = _metrics_of(series, bench, regimes, rf_annual)
        if spec.kind == "oracle":
            entry["note"] = ("UPPER BOUND: uses the synthetic market's latent regime of the "
                             "next day (look-ahead by design); not a strategy")
            oracle = entry
        else:
            strategies[name] = entry

    payload: dict[str, Any] = {
        "version": 1,
        "market": {"name": meta.market, "synthetic": bool(meta.synthetic),
                   "sectors": [s for s in sectors if s], "num_stocks": int(
                       np.sum(np.asarray(market.stock_valid)))},
        "window": {"start": str(dates[t0]), "end": str(dates[t0 + length]), "t0": int(t0),
                   "days": int(length), "first_return_date": str(dates[t0 + 1])},
        "dates": dates[ret_days],
        "settings": {"rf_annual": rf_annual, "schedule": str(schedule),
                     "risk_manager": risk_manager, "stress_limit": limit,
                     "bootstrap": {"num": bootstrap_num, "mean_block": bootstrap_block},
                     "constraints": to_dict(cfg.env.constraints), "costs": to_dict(cfg.env.cost)},
        "seeds": {"random": seeds},
        "benchmark": BENCHMARK if BENCHMARK in strategies else None,
        "regimes": {"source": regime_source, "realised": regimes},
        "strategies": strategies,
        "oracle": oracle,
        "oracle_note": oracle_note if oracle is None else None,
        "requires_trained_run": {
            "flat_rl": bl.BASELINES["flat_rl"].description,
            "hrl_sarp": "the hierarchical agent: add with evaluation.evaluate.add_strategy"},
    }
    if books0:
        payload["window"]["start_book"] = "carried"
    if return_books:
        payload["end_books"] = end_books
    payload["tests"] = {"vs_benchmark": benchmark_tests(payload)} if payload["benchmark"] else {}

    # stress: sector shocks on each strategy's mean executed sector allocation
    shocks = {}
    for name, e in [*strategies.items(), *([("oracle", oracle)] if oracle else [])]:
        sw = e["series"]["sector_weights"]
        if sw is not None:
            shocks[name] = sx.sector_shock_stress(np.asarray(sw).mean(0), sectors, limit=limit,
                                                  value=float(cfg.env.initial_value))
    hist = {}
    if historical:
        for name in [*strategies, *(["oracle"] if oracle else [])]:
            if bl.BASELINES[name].kind == "index":
                hist[name] = sx.historical_stress(
                    lambda w0, wl: bl.index_buy_hold(params, w0, wl)["net_return"], dates,
                    limit=limit)
                continue

            def run(w0: int, wl: int, name=name) -> np.ndarray:
                # one compile per strategy: pad to the main window's length when it fits
                pad = length if w0 + length <= market.num_days - 1 else wl
                res, batched, _ = run_window(name, w0, max(pad, wl))
                net = np.asarray(res.net_return, np.float64)
                return (net.mean(0) if batched else net)[:wl]

            hist[name] = sx.historical_stress(run, dates, limit=limit)
    payload["stress"] = {"limit": limit, "sector_shocks": shocks, "historical": hist,
                         "allocation": "mean executed sector weights over the window"}
    return payload


def strategy_attribution(res: Any, params: Any, t0: int, rebalance: np.ndarray, *,
                         batched: bool, risk_manager: bool, return_window: int,
                         book0: Any = None, goal_days: np.ndarray | None = None) -> dict:
    """Attribution by decision level of a strategy's backtest (``evaluation.attribution.
    backtest_attribution``), per path; with the risk manager on, its effect is measured by
    replaying the same raw targets without it (open loop, ``ReplayTargets``), from the same
    starting book ``book0`` as the run (None: cash). Batched results [K, L] give the mean over
    paths plus each path's block under ``per_seed``; ``goal_days`` [(K,) L] are the agent's
    Macro decision days (``backtest_attribution``)."""
    norisk = None
    if risk_manager:
        _, norisk = run_backtest(ReplayTargets(), res.target, params, t0, rebalance,
                                 batched=batched, risk_manager=False,
                                 return_window=return_window, book0=book0)
    paths = range(np.shape(res.net_return)[0]) if batched else [None]
    pick = (lambda tree, k: jax.tree.map(lambda x: np.asarray(x)[k], tree)) if batched else (
        lambda tree, _k: tree)
    blocks = [ea.backtest_attribution(
        pick(res, k), params.returns, params.tradable, np.asarray(params.stock_sector),
        params.num_sectors, res_norisk=None if norisk is None else pick(norisk, k),
        goal_days=None if goal_days is None else pick(goal_days, k))
        for k in paths]
    if not batched:
        return blocks[0]
    return {**ea.mean_attribution(blocks), "per_seed": blocks}


def benchmark_tests(payload: dict, *, seed: int = 0) -> dict:
    """Every strategy vs the benchmark: bootstrap CI, JK/Memmel, sign test, per-seed tests,
    Holm-adjusted across strategies (bootstrap and JK p-values separately)."""
    strategies = payload["strategies"]
    bname = payload["benchmark"]
    b = strategies[bname]["series"]["net"]
    boot = payload["settings"]["bootstrap"]
    out: dict[str, Any] = {"against": bname, "pairs": {}}
    for name, e in strategies.items():
        if name == bname:
            continue
        pair = st.compare(e["series"]["net"], b, seed=seed, num=boot["num"],
                          mean_block=boot["mean_block"])
        if "per_seed_net" in e:
            sh = [em.return_metrics(r)["sharpe"] for r in e["per_seed_net"]]
            pair["per_seed"] = st.paired_seed_tests(sh, em.return_metrics(b)["sharpe"])
        out["pairs"][name] = pair
    if out["pairs"]:
        out["holm_bootstrap"] = st.holm({k: v["bootstrap"]["p_value"]
                                         for k, v in out["pairs"].items()})
        out["holm_jkm"] = st.holm({k: v["jobson_korkie_memmel"]["p_value"]
                                   for k, v in out["pairs"].items()})
    return out


def add_strategy(
    payload: dict,
    name: str,
    daily_returns: np.ndarray,
    *,
    description: str = "",
    sector_weights: np.ndarray | None = None,
    turnover: np.ndarray | None = None,
    cost_frac: np.ndarray | None = None,
    costs: Mapping[str, np.ndarray] | None = None,
    regime_calls: np.ndarray | None = None,
    compare: bool = True,
    seed: int = 0,
) -> dict:
    """Add a trained strategy (e.g. ``hrl_sarp`` or ``flat_rl``) with per-seed daily net
    returns [K, L] (or [L]) on the payload's dates; optional [K, L, S] / [L, S] sector
    weights, [K, L] turnover / cost fractions / itemised costs, and regime calls [K, L] or
    [L] (0 Bull, 1 Bear, 2 Sideways) for the regime plot. With ``compare`` it adds
    ``tests['vs_<name>']``: the seed-blend vs each baseline (bootstrap, JK/Memmel, sign test),
    per-seed t/Wilcoxon tests of Sharpe differences, Holm across baselines. Returns a new
    payload (the input is not modified)."""
    r = np.atleast_2d(np.asarray(daily_returns, np.float64))
    days = payload["window"]["days"]
    if r.shape[1] != days:
        raise ConfigError(f"add_strategy({name!r}): returns cover {r.shape[1]} days, the "
                          f"payload's window has {days}")
    bname = payload.get("benchmark")
    bench = payload["strategies"][bname]["series"]["net"] if bname else None
    regimes = payload["regimes"]["realised"]
    rf = payload["settings"]["rf_annual"]
    k = r.shape[0]

    def seed_mean(x):
        """[K, L] per-seed -> [L] mean over seeds; [L] as is."""
        if x is None:
            return None
        x = np.asarray(x, np.float64)
        return x.mean(0) if x.ndim == 2 else x

    blend = r.mean(0)
    w = np.cumprod(1.0 + blend)
    zeros = np.zeros(days)
    series = {"net": blend, "gross": blend if cost_frac is None else blend + seed_mean(cost_frac),
              "cost_frac": zeros if cost_frac is None else seed_mean(cost_frac),
              "costs": {c: seed_mean(v) for c, v in (costs or {}).items()},
              "turnover": zeros if turnover is None else seed_mean(turnover),
              "value": w, "drawdown": 1.0 - w / np.maximum.accumulate(np.r_[1.0, w])[1:],
              "sector_weights": None if sector_weights is None else (
                  np.asarray(sector_weights).mean(0) if np.ndim(sector_weights) == 3
                  else np.asarray(sector_weights))}
    per_seed = [em.strategy_metrics(ri, benchmark=bench, rf_annual=rf) for ri in r]
    metrics = _metrics_of(series, bench, regimes, rf)
    if turnover is None:
        metrics.pop("turnover", None)
        metrics.pop("turnover_daily", None)
    if cost_frac is None:
        metrics.pop("cost_drag", None)
    entry = {"description": description or name, "kind": "trained", "schedule": "policy",
             "series": series, "metrics": metrics, "per_seed_net": r,
             "seeds": {"n": k, **{m: em.dispersion([p[m] for p in per_seed])
                                  for m in ("sharpe", "cagr", "max_drawdown", "cvar_95")}}}
    if regime_calls is not None:
        entry["regime_calls"] = np.atleast_2d(np.asarray(regime_calls))
    out = dict(payload)
    out["strategies"] = {**payload["strategies"], name: entry}
    out["requires_trained_run"] = {kk: v for kk, v in payload.get("requires_trained_run", {}
                                                                  ).items() if kk != name}
    if compare:
        boot = payload["settings"]["bootstrap"]
        agent_sh = [p["sharpe"] for p in per_seed]
        pairs = {}
        for bn, be in payload["strategies"].items():
            pair = st.compare(blend, be["series"]["net"], seed=seed, num=boot["num"],
                              mean_block=boot["mean_block"])
            if "per_seed_net" in be and len(be["per_seed_net"]) == k:
                other = [em.return_metrics(x)["sharpe"] for x in be["per_seed_net"]]
            else:
                other = em.return_metrics(be["series"]["net"])["sharpe"]
            pair["per_seed"] = st.paired_seed_tests(agent_sh, other)
            pairs[bn] = pair
        tests = dict(payload.get("tests", {}))
        tests[f"vs_{name}"] = {
            "strategy": name, "pairs": pairs,
            "holm_bootstrap": st.holm({b: v["bootstrap"]["p_value"] for b, v in pairs.items()}),
            "holm_jkm": st.holm({b: v["jobson_korkie_memmel"]["p_value"]
                                 for b, v in pairs.items()}),
        }
        out["tests"] = tests
    return out


def with_constraints(cfg: Config, **overrides: Any) -> Config:
    """``cfg`` with env.constraints fields replaced (e.g. ``max_positions=0``)."""
    return dc_replace(cfg, env=dc_replace(cfg.env, constraints=dc_replace(
        cfg.env.constraints, **overrides)))
