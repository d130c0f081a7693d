"""Many-market evaluation (DESIGN §10): strategies backtested on the same window of C markets
at once, and the statistics over markets that tell skill from luck.

# Batched backtests
Markets of one shape are stacked on a leading [C] axis (``stack_params``); every strategy runs
as ONE program vmapped over markets (``backtest_markets``), and over its seeds inside each
market when it has them (the random baseline's keys, the agent's K seeds). EnvParams leaves
that are equal across the stacked markets (the calendar, the sector map, every cost,
constraint and risk knob) stay unbatched: control flow that depends only on them (the
Macro's weekly decision, a rebalance schedule) remains a branch instead of both branches
under vmap. Each market's book, accounting, costs, risk manager and no-trade band are those of
``evaluation.backtest`` — the single-market evaluation's code, traced once more.

# Records
``window_metrics`` turns per-day results [B, L] into the per-market numbers every record
holds: sharpe, cagr, max_drawdown (``finance.metrics``, as single-market metrics),
turnover (mean one-way daily turnover x 252), cost_drag (mean daily cost / value x 252) and
gross_sharpe (the Sharpe of the returns before costs).

# Statistics over markets (``paired_table``)
For strategies A and X: d_k = Sharpe_A(k) - Sharpe_X(k) over markets k = 1..K; mean, sd, a
Student-t 95% interval over markets and the number of markets where A is ahead
(``evaluation.stats.paired_over_markets``). ``oracle_share`` = mean_k(A - EW) / mean_k(oracle -
EW), a ratio of means with a bootstrap interval over markets
(``evaluation.stats.ratio_of_means_bootstrap``).

Shapes: C markets in a chunk, K seeds, T days, N stocks, S sectors, L window length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.evaluation import stats as st
from hrl_sarp_jax.evaluation.backtest import (
    BacktestResult,
    ReplayTargets,
    backtest_scan,
    is_open_loop,
    targets_scan,
)
from hrl_sarp_jax.finance import metrics as fm

PERIODS = 252
RECORD_METRICS = ("sharpe", "cagr", "max_drawdown", "turnover", "cost_drag", "gross_sharpe")
SUMMARY_METRICS = ("sharpe", "gross_sharpe", "turnover", "cost_drag", "max_drawdown")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class MarketStrategy:
    """One strategy of a many-market evaluation.

    weights_fn: a hashable backtest weight function (``evaluation.backtest``).
    carry: its first carry, the same for every market (with a leading [K] axis when
      ``seeded``), or None when ``carry_of`` builds one per market.
    carry_of: market index in the chunk -> that market's carry (e.g. the oracle's latent
      regime path); the carries are stacked on the market axis.
    schedule: rebalance schedule ('daily', 'weekly', 'monthly', int k).
    seeded: the carry has a leading seed axis, vmapped inside each market.
    kind: 'classical', 'seeded', 'oracle', 'agent', 'ensemble' or 'trained'.
    """

    name: str
    weights_fn: Any
    schedule: str | int
    kind: str
    carry: Any = None
    carry_of: Callable[[int], Any] | None = None
    seeded: bool = False
    description: str = ""


# --------------------------------------------------------------------------- batching


def stack_params(params: Sequence[EnvParams]) -> tuple[EnvParams, tuple[int | None, ...]]:
    """C markets' EnvParams -> (stacked EnvParams, per-leaf vmap axes).

    A leaf equal in every market is kept once (axis None); any other leaf is stacked on a
    leading [C] axis (axis 0). ``returns`` is always stacked, so one market is a batch of 1.
    """
    leaves = [jax.tree.leaves(p) for p in params]
    treedef = jax.tree.structure(params[0])
    first_returns = next(j for j, x in enumerate(leaves[0]) if x is params[0].returns)
    out, axes = [], []
    for j in range(len(leaves[0])):
        col = [np.asarray(x[j]) for x in leaves]
        same = j != first_returns and all(np.array_equal(col[0], c) for c in col[1:])
        out.append(jnp.asarray(col[0]) if same else jnp.asarray(np.stack(col)))
        axes.append(None if same else 0)
    return jax.tree.unflatten(treedef, out), tuple(axes)


def stack_trees(trees: Sequence[Any]) -> Any:
    """Pytrees of one structure -> one pytree with a leading [len(trees)] axis (host)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _per_market(run_one: Callable[[Any, EnvParams], Any], carry: Any, params: EnvParams,
                axes: tuple[int | None, ...], seeded: bool, carry_axis: int | None) -> Any:
    """``run_one(carry, market params)`` vmapped over the C stacked markets (and over the seed
    axis K of the carry when ``seeded``)."""
    in_params = jax.tree.unflatten(jax.tree.structure(params), list(axes))

    def one_market(p: EnvParams, c: Any) -> Any:
        return jax.vmap(lambda cc: run_one(cc, p))(c) if seeded else run_one(c, p)

    return jax.vmap(one_market, in_axes=(in_params, carry_axis))(params, carry)


@partial(jax.jit, static_argnames=("weights_fn", "axes", "seeded", "carry_axis",
                                   "risk_manager", "return_window"))
def backtest_markets(weights_fn: Any, carry: Any, params: EnvParams, t0: jax.Array,
                     rebalance: jax.Array, *, axes: tuple[int | None, ...], seeded: bool,
                     carry_axis: int | None, risk_manager: bool, return_window: int
                     ) -> tuple[Any, BacktestResult]:
    """One strategy on C stacked markets (``stack_params``) over decision days t0 .. t0+L-1.

    carry: shared by every market (``carry_axis`` None) or stacked [C] (0); with ``seeded``
    it has a seed axis [K] (after the market axis when stacked), vmapped inside each market.
    rebalance [L] bool is the same for every market (one calendar).
    Returns (final carries, BacktestResult) with leaves [C, L] ([C, K, L] when seeded).
    """
    return _per_market(lambda c, p: backtest_scan(weights_fn, c, p, t0, rebalance,
                                                  risk_manager, return_window),
                       carry, params, axes, seeded, carry_axis)


@partial(jax.jit, static_argnames=("weights_fn", "axes", "seeded", "carry_axis"))
def targets_markets(weights_fn: Any, carry: Any, params: EnvParams, t0: jax.Array,
                    rebalance: jax.Array, *, axes: tuple[int | None, ...], seeded: bool,
                    carry_axis: int | None) -> tuple[Any, jax.Array]:
    """An open-loop strategy's targets on C stacked markets (``backtest.targets_scan``,
    arguments as ``backtest_markets``): (final carries, targets [C, (K,) L, N])."""
    return _per_market(lambda c, p: targets_scan(weights_fn, c, p, t0, rebalance),
                       carry, params, axes, seeded, carry_axis)


@jax.jit
def window_metrics(net: jax.Array, gross: jax.Array, turnover: jax.Array,
                   cost_frac: jax.Array) -> dict[str, jax.Array]:
    """Per-window numbers of RECORD_METRICS from per-day series [B, L] -> {name: [B]}."""
    def one(n: jax.Array, g: jax.Array, tu: jax.Array, c: jax.Array) -> dict[str, jax.Array]:
        return {"sharpe": fm.sharpe(n, PERIODS), "cagr": fm.annualised_return(n, PERIODS),
                "max_drawdown": fm.max_drawdown(n), "turnover": jnp.mean(tu) * PERIODS,
                "cost_drag": jnp.mean(c) * PERIODS, "gross_sharpe": fm.sharpe(g, PERIODS)}
    return jax.vmap(one)(net, gross, turnover, cost_frac)


def result_metrics(res: BacktestResult) -> dict[str, np.ndarray]:
    """RECORD_METRICS of a backtest result with leaves [..., L] -> {name: float64 [...]}."""
    lead = np.shape(res.net_return)[:-1]
    flat = [jnp.reshape(jnp.asarray(x), (-1, x.shape[-1])) for x in
            (res.net_return, res.gross_return, res.turnover, res.cost_frac)]
    out = jax.device_get(window_metrics(*flat))
    return {k: np.asarray(v, np.float64).reshape(lead) for k, v in out.items()}


# --------------------------------------------------------------------------- statistics


def per_market_sharpe(records: Sequence[Mapping], name: str, key: str = "sharpe") -> np.ndarray:
    """float64 [K]: strategy ``name``'s ``key`` in each market record."""
    return np.asarray([r["strategies"][name][key] for r in records], np.float64)


def paired_table(records: Sequence[Mapping], agent: str, others: Sequence[str], *,
                 equal_weight: str | None = "equal_weight", oracle: str | None = "oracle",
                 seed: int = 0, num_boot: int = 2000) -> dict[str, Any]:
    """Paired statistics of ``agent`` against each of ``others`` over the market records
    (module docstring): {X: paired_over_markets(agent, X)} plus ``oracle_share``."""
    a = per_market_sharpe(records, agent)
    out: dict[str, Any] = {"pairs": {x: st.paired_over_markets(a, per_market_sharpe(records, x))
                                     for x in others if x != agent}}
    have = set(records[0]["strategies"]) if records else set()
    if equal_weight in have and oracle in have:
        ew = per_market_sharpe(records, equal_weight)
        share = st.ratio_of_means_bootstrap(a - ew, per_market_sharpe(records, oracle) - ew,
                                            num_boot=num_boot, seed=seed)
        out["oracle_share"] = {**share, "definition": f"mean({agent} - {equal_weight}) / "
                                                      f"mean({oracle} - {equal_weight})"}
    else:
        out["oracle_share"] = None
    return out


def summary_table(records: Sequence[Mapping]) -> dict[str, dict[str, Any]]:
    """Per strategy: mean and QUANTILES over markets of SUMMARY_METRICS."""
    if not records:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name in records[0]["strategies"]:
        row = {}
        for m in SUMMARY_METRICS:
            v = per_market_sharpe(records, name, m)
            row[m] = {"mean": float(v.mean()),
                      "quantiles": {f"q{round(q * 100):02d}": float(np.quantile(v, q))
                                    for q in QUANTILES}}
        out[name] = row
    return out


def verdicts(pairs: Mapping[str, Mapping], agent: str, *, level: str = "95%") -> dict[str, str]:
    """One sentence per baseline: does the agent beat it with 95% confidence over markets?"""
    out = {}
    for x, p in pairs.items():
        lo, hi = p["ci95"]
        mean = p["mean"]
        if lo is None or hi is None:
            out[x] = (f"{agent} vs {x}: {p['n']} market(s) cannot give a confidence interval; "
                      f"evaluate more markets")
        elif lo > 0:
            out[x] = (f"{agent} beats {x} with {level} confidence: mean Sharpe difference "
                      f"{mean:+.2f}, interval [{lo:+.2f}, {hi:+.2f}], ahead in {p['wins']} of "
                      f"{p['n']} markets")
        elif hi < 0:
            out[x] = (f"{agent} loses to {x} with {level} confidence: mean Sharpe difference "
                      f"{mean:+.2f}, interval [{lo:+.2f}, {hi:+.2f}], ahead in {p['wins']} of "
                      f"{p['n']} markets")
        else:
            out[x] = (f"{agent} does not beat {x} with {level} confidence: mean Sharpe "
                      f"difference {mean:+.2f}, interval [{lo:+.2f}, {hi:+.2f}] holds 0, ahead "
                      f"in {p['wins']} of {p['n']} markets")
    return out


# --------------------------------------------------------------------------- one chunk


def run_chunk(strategies: Sequence[MarketStrategy], stacked: EnvParams,
              axes: tuple[int | None, ...], t0: int,
              rebalance: Callable[[str | int], np.ndarray], *,
              risk_manager: bool, return_window: int
              ) -> dict[str, tuple[Any, BacktestResult]]:
    """Every strategy on the C stacked markets of one chunk (``stack_params``): name ->
    (final carries, host BacktestResult [C, (K,) L]). ``rebalance(schedule)`` gives the [L]
    mask."""
    markets = int(stacked.returns.shape[0])
    out = {}
    for s in strategies:
        if s.carry_of is not None:
            carry, axis = stack_trees([s.carry_of(c) for c in range(markets)]), 0
        else:
            carry, axis = s.carry, None
        fn, first, reb = s.weights_fn, jnp.asarray(t0, jnp.int32), jnp.asarray(
            rebalance(s.schedule), bool)
        carry_end = None
        if is_open_loop(fn):  # its targets alone, then the accounting every such one shares
            carry_end, carry = targets_markets(fn, carry, stacked, first, reb, axes=axes,
                                               seeded=s.seeded, carry_axis=axis)
            fn, axis = ReplayTargets(), 0
        res = backtest_markets(fn, carry, stacked, first, reb, axes=axes, seeded=s.seeded,
                               carry_axis=axis, risk_manager=risk_manager,
                               return_window=return_window)
        out[s.name] = jax.device_get(res if carry_end is None else (carry_end, res[1]))
    return out
