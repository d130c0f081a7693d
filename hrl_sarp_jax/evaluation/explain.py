"""Integrated-gradient attributions of the trained agents' decisions (``hrl-sarp explain``).

Integrated gradients (Sundararajan et al., 2017) of a differentiable f at x against a
baseline b: ``IG_i = (x_i - b_i) * ∫_0^1 ∂f/∂x_i(b + α (x - b)) dα``, the integral taken by a
quadrature rule over ``steps`` intervals (``integrated_gradients``): 'trapezoid' (steps + 1
uniform nodes), 'midpoint', 'left' or 'right' Riemann sums, or 'graded' (the trapezoid rule on
a non-uniform mesh: 0, ceil(steps/2) nodes log-spaced over GRADED_DECADES decades up to
α = GRADED_SPLIT, then steps uniform nodes up to 1). Completeness: ``Σ_i IG_i = f(x) - f(b)``
up to the quadrature error; every explanation reports both sides (``completeness``).

Why 'graded' (the default of the agent wrappers) and refinement: the actors' LayerNorms are
scale invariant, so from a zero baseline a layer whose input scales with α (and whose bias is
small, as after little training) jumps from its bias to its normalised output while α is still
tiny (≈ 1e-5 .. 1e-2 on the smoke run): a uniform grid puts this jump inside its first
interval and leaves errors of many times f(x) - f(0). Their ReLUs and small LayerNorms also
make the path wiggle (a tiny Macro actor's path moves several times its net change), so
``explain_decision`` doubles the steps, one compiled program for every count (the steps are
traced), until every output is complete within a tolerance (``hrl-sarp explain --tolerance``,
default 1% of the change, or of one percentage point for smaller changes:
``completeness_error``) or a step cap is reached, and reports the steps used.

What is explained at the close of day t (one seed; pure and jittable, shapes static):
- Macro (``explain_macro``): the deterministic decision of ``evaluation.agent``'s
  ``HierarchicalStrategy.macro_decision``, i.e. f = (the Dirichlet-mean sector weights [S]
  (``MacroPolicy.mean_weights``, before the goal's constraint projection) ⊕ the probability of
  the *called* regime (the argmax at x) [1]), attributed jointly to
  (a) the 18 macro features (``features.featureset.MACRO_FEATURES``; 24 with the level features) and
  (b) the sector node inputs [S, F_s] (``SECTOR_FEATURES`` per sector) — the GNN's *input*
  node features rather than its learned sector embeddings: an attribution to "IT.ret_4w" is
  readable, one to embedding unit 5 is not, and the embeddings are a function of these inputs.
  One path moves both groups together, so their attributions add up to f(x) - f(b).
- Micro (``explain_micro``): the Micro actor's weights (its masked softmax, before the
  backtest's constraint projection) of the ``stocks`` stocks it weights most, attributed to the
  stock feature matrix [N, 22] (``STOCK_FEATURES``): a stock's weight depends on its own
  features and, through the softmax and the attention, on the other stocks'; both are reported.
Baseline: zeros (the features are normalised z-scores, so 0 is the "typical" reading).
Everything that is not a market input is held fixed at its observed value along the path: the
book (current sector / stock weights, cash, drawdown — the macro row's ``portfolio_drawdown``
slot is overwritten from the book by ``networks.inputs.macro_inputs``, so its attribution is
exactly 0), the sector graph (adjacency), the availability masks and, for the Micro agent, the
goal. The inputs are built exactly as the agent builds them (``envs.common.macro_obs`` /
``micro_obs`` through the obs layouts and ``networks.inputs``).

The book at t (host helpers): ``flat_book`` (all cash, drawdown 0: the book the agent holds on
the first day of any backtest window), or ``backtest_book``: the drifted book the agent itself
holds at the close of t, before trading, from its own backtest (``agent.run_agent``, daily,
with the risk manager) over decision days t0 .. t - 1, t0 the start of the evaluation window
holding t (``window_start``); it reads returns <= t only.

Host side: ``resolve_date`` (a non-trading day inside the data is moved to the previous trading
day, with a note; a date outside the data is a ConfigError), ``explanation_record`` (the
machine-readable dict with names) and ``format_explanation`` (the text report).
Shapes: N stocks, S sectors, F_s sector features, k explained stocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrl_sarp_jax.config import REGIME_NAMES, NetworkConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.envs.params import EnvParams
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation.agent import run_agent
from hrl_sarp_jax.evaluation.backtest import BacktestResult
from hrl_sarp_jax.features.featureset import (
    SECTOR_FEATURES,
    STOCK_FEATURES,
    macro_names_for_width,
)
from hrl_sarp_jax.finance.portfolio import PortfolioState, init_portfolio
from hrl_sarp_jax.networks.inputs import macro_inputs_from_views, micro_inputs
from hrl_sarp_jax.networks.macro import MacroActor
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.types import NUM_REGIMES, Array, Params

_F32 = jnp.float32
METHODS = ("trapezoid", "graded", "midpoint", "left", "right")
GRADED_SPLIT = 0.01   # 'graded': log-spaced nodes up to this alpha ...
GRADED_DECADES = 8    # ... over this many decades, then uniform nodes
DEFAULT_STEPS = 64
DEFAULT_MAX_STEPS = 4096
RELATIVE_FLOOR = 0.01


# --------------------------------------------------------------------------- generic IG


def path_points(steps: int, method: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """(alphas, quadrature weights) of ∫_0^1 g(α) dα ≈ Σ_j w_j g(α_j) over ``steps``
    intervals; the weights sum to 1."""
    if int(steps) < 1:
        raise ConfigError(f"integrated gradients: steps={steps}; give at least 1 step")
    _check_method(method)
    j = np.arange(_num_nodes(int(steps), method))
    alphas, weights = _nodes(j, int(steps), method, np)
    return alphas.astype(np.float32), weights.astype(np.float32)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(f"integrated gradients: method {method!r}; choose one of "
                          f"{', '.join(METHODS)}")


def _num_nodes(m: Any, method: str) -> Any:
    if method == "graded":
        return _graded_low(m) + m + 1
    return m + 1 if method == "trapezoid" else m


def _graded_low(m: Any) -> Any:
    return (m + 1) // 2


def _graded_alpha(j: Any, m: Any, xp: Any) -> Any:
    """Nodes of the 'graded' rule over m steps: 0; then ceil(m/2) nodes log-spaced over
    GRADED_DECADES decades up to GRADED_SPLIT; then m uniform nodes up to 1."""
    low = _graded_low(m)
    jf, lf = xp.asarray(j, xp.float32), xp.asarray(low, xp.float32)
    mf = xp.asarray(m, xp.float32)
    geo = GRADED_SPLIT * xp.power(xp.float32(10.0), -GRADED_DECADES * (lf - jf) / lf)
    lin = GRADED_SPLIT + (1.0 - GRADED_SPLIT) * (jf - lf) / mf
    return xp.where(jf <= 0, 0.0, xp.where(jf <= lf, geo, xp.minimum(lin, 1.0)))


def _nodes(j: Any, m: Any, method: str, xp: Any = jnp) -> tuple[Any, Any]:
    """Node j of the rule over m intervals: (alpha_j, weight_j); weight 0 past the last node.
    Works on NumPy (static m) and traced (dynamic m) integers alike."""
    mf = xp.asarray(m, xp.float32)
    jf = xp.asarray(j, xp.float32)
    if method == "trapezoid":
        alpha = jf / mf
        weight = xp.where((j == 0) | (j == m), 0.5, 1.0) / mf
    elif method == "graded":  # the trapezoid rule on the non-uniform mesh
        last = _num_nodes(m, method) - 1
        alpha = _graded_alpha(j, m, xp)
        right = _graded_alpha(xp.minimum(j + 1, last), m, xp)
        left = _graded_alpha(xp.maximum(j - 1, 0), m, xp)
        weight = (right - left) / 2.0
    else:
        alpha = (jf + {"midpoint": 0.5, "left": 0.0, "right": 1.0}[method]) / mf
        weight = xp.ones_like(jf) / mf
    weight = xp.where(j < _num_nodes(m, method), weight, 0.0)
    return xp.asarray(alpha, xp.float32), xp.asarray(weight, xp.float32)


def _weighted_grads(f: Callable[[Any], Array], baseline: Any, diff: Any, alphas: Array,
                    weights: Array) -> Any:
    """Σ_j w_j ∂f/∂x (baseline + α_j diff): leaves [*O, *leaf]."""
    def grad_at(alpha: Array) -> Any:
        point = jax.tree.map(lambda b, d: b + alpha * d, baseline, diff)
        return jax.jacrev(f)(point)

    grads = jax.vmap(grad_at)(alphas)                       # leaves [M, *O, *leaf]
    return jax.tree.map(lambda g: jnp.tensordot(weights, g, axes=1), grads)


def integrated_gradients(f: Callable[[Any], Array], x: Any, baseline: Any,
                         steps: int | Array = DEFAULT_STEPS, method: str = "trapezoid", *,
                         chunk: int = 16) -> Any:
    """Integrated gradients of f at x against ``baseline`` (module docstring). Pure, jittable.

    Args:
      f: differentiable map from a pytree shaped like x to an array of shape O (``()`` for a
        scalar output).
      x, baseline: pytrees of float arrays of the same structure and shapes.
      steps: quadrature intervals along the straight path baseline -> x. A Python int: every
        node in one vectorised batch. A traced int32: nodes in batches of ``chunk`` in a loop
        with a dynamic trip count, so one compiled program serves every step count (the
        refinement of ``explain_decision``); values < 1 count as 1.
      method: 'trapezoid' | 'graded' | 'midpoint' | 'left' | 'right' (static; module
        docstring).
    Returns:
      a pytree like x whose leaves have shape O + leaf shape: attribution of output o to input
      i. For every output, the sum over all inputs ≈ f(x) - f(baseline).
    """
    _check_method(method)
    baseline = jax.tree.map(lambda b: jnp.asarray(b, _F32), baseline)
    diff = jax.tree.map(lambda a, b: jnp.asarray(a, _F32) - b, x, baseline)
    if isinstance(steps, int | np.integer):
        alphas, weights = path_points(int(steps), method)
        mean = _weighted_grads(f, baseline, diff, jnp.asarray(alphas), jnp.asarray(weights))
    else:
        m = jnp.maximum(jnp.asarray(steps, jnp.int32), 1)
        trips = (_num_nodes(m, method) + chunk - 1) // chunk
        shapes = jax.eval_shape(jax.jacrev(f), x)
        zero = jax.tree.map(lambda sd: jnp.zeros(sd.shape, _F32), shapes)

        def body(c: Array, acc: Any) -> Any:
            alphas, weights = _nodes(c * chunk + jnp.arange(chunk, dtype=jnp.int32), m, method)
            part = _weighted_grads(f, baseline, diff, alphas, weights)
            return jax.tree.map(jnp.add, acc, part)

        mean = jax.lax.fori_loop(0, trips, body, zero)
    return jax.tree.map(lambda g, d: g * d, mean, diff)        # broadcast over O


# --------------------------------------------------------------------------- the agents


@struct.dataclass
class MacroExplanation:
    """IG of the Macro decision at the close of t (one seed). Output o < S is the
    Dirichlet-mean weight of sector o; output S is the probability of the called regime."""

    outputs: Array            # [S+1] f(x)
    baseline_outputs: Array   # [S+1] f(0)
    macro: Array              # [S+1, 18] attributions to the macro features
    sector: Array             # [S+1, S, F_s] attributions to the sector node features
    macro_inputs: Array       # [18] x (drawdown slot = the book's drawdown, held fixed)
    sector_inputs: Array      # [S, F_s] x
    sector_mask: Array        # [S] bool sectors the Macro may allocate to at t
    regime: Array             # [] int32 the called regime (0 Bull, 1 Bear, 2 Sideways)
    regime_probs: Array       # [3]
    goal: Array               # [S+3] the goal (projected sector weights ⊕ regime one-hot)


@struct.dataclass
class MicroExplanation:
    """IG of the Micro actor's weights of its k most weighted stocks at the close of t."""

    stocks: Array             # [k] int32 stock index, by decreasing weight
    outputs: Array            # [k] f(x): their weights
    baseline_outputs: Array   # [k] f(0)
    stock: Array              # [k, N, 22] attributions to the stock feature matrix
    inputs: Array             # [N, 22] x
    weights: Array            # [N] the actor's weights at x
    tradable: Array           # [N] bool stocks the actor may hold at t
    goal: Array               # [S+3] the goal it acts on (held fixed)


def macro_views(port: PortfolioState, t: Array, params: EnvParams) -> dict[str, Array]:
    """The named views of the Macro observation at the close of t (as the agent builds it)."""
    layout = MacroObsLayout(params.num_sectors, params.sector_feature_dim, params.macro_feature_dim)
    return layout.unflatten(common.macro_obs(port, t, params))


def macro_output_fn(networks: NetworkConfig, macro_params: Params, views: dict[str, Array],
                    regime: Array) -> Callable[[dict[str, Array]], Array]:
    """f({"macro": [18], "sector": [S, F_s]}) -> [S+1] Dirichlet-mean weights ⊕ p(regime),
    every other input held at ``views``."""
    actor = MacroActor(networks)

    def f(market: dict[str, Array]) -> Array:
        pol = actor.apply(macro_params, *macro_inputs_from_views(
            {**views, "macro": market["macro"], "sector": market["sector"]}))
        probs = jax.nn.softmax(pol.regime_logits.astype(_F32))
        return jnp.concatenate([pol.mean_weights.astype(_F32), probs[regime][None]])

    return f


@partial(jax.jit, static_argnames=("networks", "method"))
def explain_macro(networks: NetworkConfig, macro_params: Params, port: PortfolioState,
                  t: Array, params: EnvParams, *, steps: int | Array = DEFAULT_STEPS,
                  method: str = "graded") -> MacroExplanation:
    """IG of the Macro decision at the close of t for book ``port`` (module docstring).
    ``steps`` is traced: one compile serves every step count."""
    views = macro_views(port, t, params)
    pol = MacroActor(networks).apply(macro_params, *macro_inputs_from_views(views))
    probs = jax.nn.softmax(pol.regime_logits).astype(_F32)
    regime = jnp.argmax(probs).astype(jnp.int32)
    goal = common.macro_action_to_goal(jnp.concatenate([pol.mean_weights, probs]), params,
                                       port.weights)
    f = macro_output_fn(networks, macro_params, views, regime)
    x = {"macro": views["macro"], "sector": views["sector"]}
    base = jax.tree.map(jnp.zeros_like, x)
    attr = integrated_gradients(f, x, base, steps, method)
    return MacroExplanation(
        outputs=f(x), baseline_outputs=f(base), macro=attr["macro"], sector=attr["sector"],
        macro_inputs=x["macro"], sector_inputs=x["sector"],
        sector_mask=views["sector_mask"] > 0, regime=regime, regime_probs=probs, goal=goal)


@partial(jax.jit, static_argnames=("networks", "stocks", "method"))
def explain_micro(networks: NetworkConfig, micro_params: Params, port: PortfolioState,
                  goal: Array, t: Array, params: EnvParams, *, stocks: int = 5,
                  steps: int | Array = DEFAULT_STEPS,
                  method: str = "graded") -> MicroExplanation:
    """IG of the Micro actor's weights of its ``stocks`` most weighted stocks at the close of
    t for book ``port`` and ``goal`` (module docstring); k = min(stocks, N)."""
    layout = MicroObsLayout(params.num_stocks, params.num_sectors)
    views = layout.unflatten(common.micro_obs(port, goal, t, params))
    mask = views["stock_mask"] > 0
    actor = MicroActor(networks)

    def weights_of(stock: Array) -> Array:
        x = micro_inputs(stock, views["stock_mask"], params.stock_sector, views["goal"],
                         views["weights"])
        return actor.apply(micro_params, x, views["goal"], mask).weights.astype(_F32)

    x = views["stock"]
    w = weights_of(x)
    _, top = jax.lax.top_k(w, min(int(stocks), params.num_stocks))
    f = lambda stock: weights_of(stock)[top]  # noqa: E731
    base = jnp.zeros_like(x)
    attr = integrated_gradients(f, x, base, steps, method)
    return MicroExplanation(stocks=top.astype(jnp.int32), outputs=f(x), baseline_outputs=f(base),
                            stock=attr, inputs=x, weights=w, tradable=mask, goal=views["goal"])


# --------------------------------------------------------------------------- host helpers


# HOST ONLY
def resolve_date(date: str, dates: np.ndarray) -> tuple[int, str | None]:
    """(t, note) of ``--date``: the trading day itself, or the previous trading day when
    ``date`` falls between two (with a note saying so). ConfigError when it is not an ISO date
    or lies outside the market's dates."""
    d = np.asarray(dates).astype("datetime64[D]")
    try:
        day = np.datetime64(str(date).strip(), "D")
    except ValueError:
        raise ConfigError(f"--date {date!r}: not an ISO date; give YYYY-MM-DD (a trading day "
                          f"in {d[0]} .. {d[-1]})") from None
    if day < d[0] or day > d[-1]:
        raise ConfigError(f"--date {day}: outside the market's dates ({d[0]} .. {d[-1]}); "
                          f"pick a trading day in that range")
    t = int(np.searchsorted(d, day, side="right")) - 1
    if d[t] == day:
        return t, None
    return t, f"{day} is not a trading day; explaining the previous trading day {d[t]}"


# HOST ONLY
def window_start(dates: np.ndarray, t: int, val_start: str, test_start: str) -> int:
    """First day of the evaluation window holding day t: test (>= data.test_start), val
    (>= data.val_start) or, before both, the first day of the data."""
    d = np.asarray(dates).astype("datetime64[D]")
    for start in (test_start, val_start):
        s = np.datetime64(start, "D")
        if d[t] >= s:
            return int(np.searchsorted(d, s, side="left"))
    return 0


def flat_book(params: EnvParams) -> PortfolioState:
    """All cash, value = peak = the initial value (drawdown 0)."""
    return init_portfolio(params.num_stocks, params.initial_value)


# HOST ONLY
def book_from_result(res: BacktestResult, params: EnvParams, i: int) -> PortfolioState:
    """The drifted book at the close of decision day i of a single-seed backtest result
    ([L] leaves, or [1, L]), before trading at it: day i - 1's executed weights grown by
    returns[t_i] (exactly ``finance.portfolio_step``'s drift); i = 0 is the starting cash."""
    days = np.asarray(res.t).reshape(-1)
    values = np.asarray(res.value, np.float32).reshape(-1)
    if i == 0:
        return flat_book(params)
    if not 0 < i <= days.shape[0]:
        raise ConfigError(f"book_from_result: day {i} is outside the backtest's "
                          f"{days.shape[0]} days")
    initial = np.float32(np.asarray(params.initial_value))
    executed = np.asarray(res.weights, np.float32).reshape(-1, params.num_stocks)[i - 1]
    v0 = values[i - 2] if i >= 2 else initial
    v2 = values[i - 1]
    r = np.asarray(params.returns[int(days[i - 1]) + 1], np.float32)
    grown = v0 * executed * (np.float32(1.0) + r)
    weights = grown / v2 if v2 > 0 else np.zeros_like(grown)
    peak = np.maximum(initial, values[:i].max())
    return PortfolioState(weights=jnp.asarray(weights, _F32), value=jnp.asarray(v2, _F32),
                          peak=jnp.asarray(peak, _F32))


# HOST ONLY
def backtest_book(networks: NetworkConfig, macro_params: Params, micro_params: Params,
                  params: EnvParams, t0: int, t: int, *, risk_manager: bool = True,
                  return_window: int = 20, frequency: str = "daily",
                  goal_change: float | None = None) -> tuple[PortfolioState, Array | None]:
    """(book, goal in force) of one seed's agent at the close of t before trading, from its
    backtest over decision days t0 .. t - 1 (params unstacked, one seed; re-allocating as
    ``env.micro_frequency`` / ``agent_goal_change`` say, like every backtest). At t == t0 the
    book is cash and no goal is in force yet (the Macro decides on a window's first day)."""
    if t == t0:
        return flat_book(params), None
    stack = lambda tree: jax.tree.map(lambda a: np.asarray(a)[None], tree)  # noqa: E731
    carry, res = run_agent(networks, stack(macro_params), stack(micro_params), params, t0,
                           t - t0, risk_manager=risk_manager, return_window=return_window,
                           frequency=frequency, goal_change=goal_change)
    return book_from_result(res, params, t - t0), jnp.asarray(np.asarray(carry.goal)[0])


def completeness_error(outputs: Array, baseline_outputs: Array, sums: Array) -> np.ndarray:
    """|Σ attributions - (f(x) - f(0))| / max(|f(x) - f(0)|, RELATIVE_FLOOR) per output: relative
    to the change, or to one percentage point for smaller changes (the outputs are weights and
    probabilities: a 1% tolerance on a 0.1 pp change would ask for float32-noise accuracy)."""
    delta = np.asarray(outputs, np.float64) - np.asarray(baseline_outputs, np.float64)
    return np.abs(np.asarray(sums, np.float64) - delta) / np.maximum(np.abs(delta),
                                                                     RELATIVE_FLOOR)


def macro_sums(mac: MacroExplanation) -> np.ndarray:
    """[S+1] Σ of each Macro output's attributions (macro features + sector node inputs)."""
    return np.asarray(mac.macro, np.float64).sum(1) + np.asarray(mac.sector,
                                                                 np.float64).sum((1, 2))


def micro_sums(mic: MicroExplanation) -> np.ndarray:
    """[k] Σ of each explained stock weight's attributions."""
    return np.asarray(mic.stock, np.float64).sum((1, 2))


def _refine(run: Callable[[int], Any], sums: Callable[[Any], np.ndarray], steps: int,
            tolerance: float, max_steps: int) -> tuple[Any, int]:
    """Double the steps (one compiled program: steps are traced) until every output's
    completeness error is within ``tolerance`` or ``max_steps`` is reached."""
    while True:
        out = jax.device_get(run(steps))
        err = completeness_error(out.outputs, out.baseline_outputs, sums(out))
        if tolerance <= 0 or err.max(initial=0.0) <= tolerance or steps * 2 > max_steps:
            return out, steps
        steps *= 2


# HOST ONLY
def explain_decision(networks: NetworkConfig, macro_params: Params, micro_params: Params,
                     params: EnvParams, t: int, *, port: PortfolioState | None = None,
                     goal_in_force: Array | None = None, macro_decides: bool = True,
                     stocks: int = 5, steps: int = DEFAULT_STEPS, tolerance: float = 0.0,
                     max_steps: int = DEFAULT_MAX_STEPS, method: str = "graded",
                     ) -> tuple[MacroExplanation, MicroExplanation, dict[str, int]]:
    """Both levels at the close of t for one seed (host arrays), plus the steps each used.
    ``port`` defaults to the flat book. The Micro agent acts on the Macro's goal at t when
    ``macro_decides`` (or no goal is in force), else on ``goal_in_force``. With
    ``tolerance`` > 0 each level's steps double from ``steps`` (up to ``max_steps``) until
    its completeness error (``completeness_error``) is within it: the actors' LayerNorms and
    ReLUs can make the path integrand steep, where a fixed grid under-resolves it."""
    if int(steps) < 1 or int(max_steps) < int(steps):
        raise ConfigError(f"integrated gradients: steps={steps}, max_steps={max_steps}; give "
                          f"1 <= steps <= max_steps")
    _check_method(method)
    port = flat_book(params) if port is None else port
    tt = jnp.asarray(t, jnp.int32)
    mac, m_steps = _refine(
        lambda m: explain_macro(networks, macro_params, port, tt, params, steps=m,
                                method=method), macro_sums, int(steps), tolerance,
        int(max_steps))
    goal = mac.goal if (macro_decides or goal_in_force is None) else goal_in_force
    goal = jnp.asarray(goal, _F32)
    mic, n_steps = _refine(
        lambda m: explain_micro(networks, micro_params, port, goal, tt, params, stocks=stocks,
                                steps=m, method=method), micro_sums, int(steps), tolerance,
        int(max_steps))
    return mac, mic, {"macro": m_steps, "micro": n_steps}


def _drivers(attr: np.ndarray, values: np.ndarray, names: Sequence[str], groups: Sequence[str],
             top: int) -> list[dict[str, Any]]:
    order = np.argsort(-np.abs(attr), kind="stable")[:top]
    return [{"input": names[j], "group": groups[j], "attribution": float(attr[j]),
             "value": float(values[j])} for j in order]


def _check(value: float, base: float, total: float) -> dict[str, float]:
    delta = value - base
    err = abs(total - delta)
    return {"value": value, "baseline_value": base, "delta": delta, "attribution_sum": total,
            "completeness_error": err, "relative_error": err / max(abs(delta), RELATIVE_FLOOR)}


# HOST ONLY
def explanation_record(mac: MacroExplanation, mic: MicroExplanation, *,
                       tickers: Sequence[str], sectors: Sequence[str], top: int = 10,
                       stock_sector: Sequence[int] | None = None,
                       macro_names: Sequence[str] | None = None,
                       sector_feature_names: Sequence[str] = SECTOR_FEATURES,
                       stock_feature_names: Sequence[str] = STOCK_FEATURES) -> dict[str, Any]:
    """Machine-readable explanation: {"macro": {"regime", "regime_probs", "sector_weights"
    (Dirichlet mean), "goal_sector_weights" (projected), "explained": [one per valid named
    sector's weight, then the called regime's probability]}, "micro": {"goal", "explained":
    [one per explained stock]}, "completeness"}. Each explained output holds value,
    baseline_value, delta, attribution_sum, completeness_error, relative_error, ``by_group``
    (attribution totals per input group) and ``drivers``: the ``top`` inputs by |attribution|
    (input name, group, attribution, input value). Inputs: macro features by name (group
    'macro'), sector node features as 'SECTOR.feature' (group 'sector'), stock features as
    'TICKER.feature' (group 'own' for the explained stock's, 'other' for other stocks')."""
    s = int(np.shape(mac.sector_mask)[0])
    f_s = int(np.shape(mac.sector_inputs)[-1])
    if macro_names is None:  # MACRO_FEATURES, and the level features when the run has them
        macro_names = macro_names_for_width(np.shape(mac.macro_inputs)[-1])
    named = [j for j in range(s) if j < len(sectors) and sectors[j]]
    valid = [j for j in named if bool(mac.sector_mask[j])]
    sec_names = [f"{sectors[j]}.{sector_feature_names[c]}" for j in named for c in range(f_s)]
    names = [*macro_names, *sec_names]
    groups = ["macro"] * len(macro_names) + ["sector"] * len(sec_names)
    x_sec = np.asarray(mac.sector_inputs)[named].reshape(-1)
    values = np.concatenate([np.asarray(mac.macro_inputs, np.float64), x_sec])
    regime = int(mac.regime)
    checks: list[tuple[str, dict]] = []

    def macro_output(o: int, label: str, **extra: Any) -> dict[str, Any]:
        a_mac = np.asarray(mac.macro[o], np.float64)
        a_sec = np.asarray(mac.sector[o], np.float64)
        attr = np.concatenate([a_mac, a_sec[named].reshape(-1)])
        c = _check(float(mac.outputs[o]), float(mac.baseline_outputs[o]),
                   float(a_mac.sum() + a_sec.sum()))
        checks.append((label, c))
        return {"output": label, **extra, **c,
                "by_group": {"macro": float(a_mac.sum()), "sector": float(a_sec.sum())},
                "drivers": _drivers(attr, values, names, groups, top)}

    explained = [macro_output(j, f"weight[{sectors[j]}]", kind="sector_weight",
                              sector=sectors[j]) for j in valid]
    explained.append(macro_output(s, f"p({REGIME_NAMES[regime]})", kind="regime_prob",
                                  regime=REGIME_NAMES[regime]))
    goal = np.asarray(mac.goal, np.float64)
    macro_doc = {
        "regime": REGIME_NAMES[regime],
        "regime_probs": {REGIME_NAMES[r]: float(mac.regime_probs[r]) for r in range(NUM_REGIMES)},
        "sector_weights": {sectors[j]: float(mac.outputs[j]) for j in valid},
        "goal_sector_weights": {sectors[j]: float(goal[j]) for j in named},
        "explained": explained,
    }

    n, f_n = np.shape(mic.inputs)
    named_n = [i for i in range(n) if i < len(tickers) and tickers[i]]
    stock_names = [f"{tickers[i]}.{stock_feature_names[c]}" for i in named_n for c in range(f_n)]
    x_stock = np.asarray(mic.inputs, np.float64)[named_n].reshape(-1)
    micro_explained = []
    for k, i in enumerate(np.asarray(mic.stocks).tolist()):
        if i not in named_n or not bool(mic.tradable[i]) or float(mic.outputs[k]) <= 0:
            continue
        a = np.asarray(mic.stock[k], np.float64)
        own = float(a[i].sum())
        g = ["own" if j == i else "other" for j in named_n for _ in range(f_n)]
        c = _check(float(mic.outputs[k]), float(mic.baseline_outputs[k]), float(a.sum()))
        checks.append((f"weight[{tickers[i]}]", c))
        micro_explained.append({
            "output": f"weight[{tickers[i]}]", "kind": "stock_weight", "ticker": tickers[i],
            "sector": (sectors[int(stock_sector[i])] if stock_sector is not None else None),
            **c,
            "by_group": {"own": own, "other": float(a.sum()) - own},
            "drivers": _drivers(a[named_n].reshape(-1), x_stock, stock_names, g, top)})
    micro_goal = np.asarray(mic.goal, np.float64)
    micro_doc = {
        "goal": {"sector_weights": {sectors[j]: float(micro_goal[j]) for j in named},
                 "regime": REGIME_NAMES[int(np.argmax(micro_goal[s:s + NUM_REGIMES]))]},
        "explained": micro_explained,
    }
    worst = max(checks, key=lambda kv: kv[1]["completeness_error"])
    completeness = {
        "max_abs_error": worst[1]["completeness_error"], "worst_output": worst[0],
        "max_relative_error": max(c["relative_error"] for _, c in checks),
    }
    return {"macro": macro_doc, "micro": micro_doc, "completeness": completeness}


def _fmt_drivers(drivers: list[dict], indent: str) -> list[str]:
    width = max((len(d["input"]) for d in drivers), default=0)
    return [f"{indent}{d['attribution']:+.5f}  {d['input']:<{width}}  (x = {d['value']:+.3f})"
            for d in drivers]


# HOST ONLY
def format_explanation(doc: dict[str, Any]) -> str:
    """Text report of ``pipeline.explain_run``'s dict."""
    m, book = doc["method"], doc["book"]
    lines = [f"explain run {doc['run']} at {doc['date']} (seed {doc['seed']} of "
             f"{doc['seeds']}): integrated gradients from a zero baseline, {m['path']} rule, "
             f"Macro {m['steps']['macro']} steps, Micro {m['steps']['micro']} steps"]
    if doc.get("note"):
        lines.append(f"note: {doc['note']}")
    lines.append(f"book: {book['description']} (cash {book['cash']:.1%}, drawdown "
                 f"{book['drawdown']:.1%})")
    mac = doc["macro"]
    probs = ", ".join(f"{k} {v:.3f}" for k, v in mac["regime_probs"].items())
    sw = ", ".join(f"{k} {v:.3f}" for k, v in mac["sector_weights"].items())
    lines += [f"Macro ({doc['macro_when']}): regime call {mac['regime']} ({probs})",
              f"  Dirichlet-mean sector weights: {sw}"]
    for e in mac["explained"]:
        lines.append(f"  {e['output']} = {e['value']:.4f} (baseline {e['baseline_value']:.4f},"
                     f" delta {e['delta']:+.5f}; attributions sum {e['attribution_sum']:+.5f}:"
                     f" macro {e['by_group']['macro']:+.5f}, sectors "
                     f"{e['by_group']['sector']:+.5f})")
        lines += _fmt_drivers(e["drivers"], "    ")
    mic = doc["micro"]
    goal = ", ".join(f"{k} {v:.3f}" for k, v in mic["goal"]["sector_weights"].items())
    lines.append(f"Micro ({doc['micro_goal_source']}; goal: {goal}, regime "
                 f"{mic['goal']['regime']}): the actor's {len(mic['explained'])} most weighted "
                 f"stock(s)")
    for e in mic["explained"]:
        lines.append(f"  {e['output']} = {e['value']:.4f} (baseline {e['baseline_value']:.4f},"
                     f" delta {e['delta']:+.5f}; attributions sum {e['attribution_sum']:+.5f}:"
                     f" own features {e['by_group']['own']:+.5f}, other stocks "
                     f"{e['by_group']['other']:+.5f})")
        lines += _fmt_drivers(e["drivers"], "    ")
    c = doc["completeness"]
    lines.append(f"completeness (sum of attributions vs f(x) - f(0)): max |error| "
                 f"{c['max_abs_error']:.2e} ({c['worst_output']}), max relative error "
                 f"{c['max_relative_error']:.2%}")
    if c.get("within_tolerance") is False:
        lines.append(f"warning: above the {m['tolerance']:.1%} tolerance at "
                     f"{m['max_steps']} steps; rerun with a larger --max-steps for complete "
                     f"attributions")
    return "\n".join(lines)
