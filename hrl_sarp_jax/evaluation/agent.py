"""The trained hierarchical policy as a backtest weight function (``HierarchicalStrategy``).

At the close of each decision day t of the window (``evaluation.backtest``; run it with a
*daily* rebalance mask, the Micro agent acts every day, see ``run_agent``):
1. on a calendar week end (``params.week_end[t]``), and on the window's first day (the book
   starts in cash and needs a goal), the Macro agent decides: the flat Macro observation is
   ``envs.common.macro_obs(port, t, params)``, exactly what ``HierarchicalEnv`` builds at that
   point (the drifted book before trading), read through ``envs.obs.MacroObsLayout`` and
   ``networks.inputs.macro_inputs_from_views``; the deterministic action is the Dirichlet mean
   sector weights ⊕ the regime probabilities, and the goal is
   ``envs.common.macro_action_to_goal`` of it (projected sector weights ⊕ one-hot argmax
   regime), as in Phases 4-5 (``training.rl_micro.macro_goal_fn``);
2. every day the Micro actor maps ``envs.common.micro_obs(port, goal, t, params)`` (read
   through ``MicroObsLayout`` and ``networks.inputs.micro_inputs_from_views``, as Phase 3's
   frozen allocator does) to stock weights (its masked softmax, deterministic); the backtest
   projects them with the env's constraints (and the risk manager's exposure when asked).

The carry (``AgentCarry``, batched over K seeds by ``backtest.run_backtest(batched=True)``)
holds the seed's Macro and Micro actor params, the goal in force, and per-day logs of the goal,
the regime probabilities and whether the Macro decided that day, so that the caller gets
``regime_calls`` [K, L] and a decision log (``decision_records``). The Macro observation is a
function of (port, t, params) only, so no other state is needed.

Shapes: T days, N stocks, S sectors, G = S + 3 goal, L window length, K seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrl_sarp_jax.agents.policies import macro_action, micro_weights
from hrl_sarp_jax.config import REGIME_NAMES, EnvConfig, NetworkConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.envs.params import MICRO_FREQUENCIES, EnvParams
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation.backtest import (
    BacktestResult,
    BookState,
    DayView,
    rebalance_mask,
    run_backtest,
)
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.types import NUM_REGIMES, Array, Params
from hrl_sarp_jax.utils.trees import first_member, repeat_members

_F32 = jnp.float32
_I32 = jnp.int32


@struct.dataclass
class AgentCarry:
    """One seed's carry (leading axis K when batched). Day i of the logs is decision day
    t0 + i."""

    macro_params: Params     # MacroActor params ({"params": ...})
    micro_params: Params     # MicroActor params ({"params": ...})
    t0: Array                # int32 first decision day of the window
    goal: Array              # [G] the goal in force (sector weights ⊕ regime one-hot)
    goals: Array             # [L, G] goal in force at each decision day
    regime_probs: Array      # [L, 3] the Macro's regime probabilities (0 on non-decision days)
    macro_step: Array        # [L] bool: the Macro decided that day
    last_goal: Array         # [G] the goal of the last re-allocation (``goal_change``)
    last_exposure: Array     # [] the risk manager's exposure at the last re-allocation
    hold: Array              # [] bool: this day the book is held (``goal_change``)


@dataclass(frozen=True)
class HierarchicalStrategy:
    """Deterministic hierarchical policy: ``__call__(carry, t, view) -> (carry, weights [N])``
    (module docstring). Frozen and hashable: equal network configs share one compile.
    Each level can be switched off to measure what it adds: ``macro=False`` holds a goal that
    never moves (equal weight over the valid sectors ⊕ Sideways, ``params.fixed_goal``; the
    logs record no Macro decision), ``micro=False`` splits the goal equally over each sector's
    tradable stocks instead of the Micro actor's weights (``envs.common.
    equal_weight_in_sectors``); the agent minus either is what that level adds.
    ``goal_change`` (``env.micro_frequency: on_goal_change``, run on the weekly schedule):
    on a Macro day the book is held (``holds``) unless the goal's sector weights moved by at
    least this one-way share since the last re-allocation or the risk manager's exposure
    changed since then (the window's first day always re-allocates); None: never held."""

    networks: NetworkConfig
    macro: bool = True
    micro: bool = True
    goal_change: float | None = None
    value_names: int = 0
    """With ``micro=False``: each sector's goal weight goes to its ``value_names`` cheapest
    tradable names by ``pe_z`` (``envs.common.value_weight_in_sectors``: a value screen in the
    Micro's place); 0: to all of them equally."""

    # -- the two levels (pure, one example)
    def macro_action_at(self, macro_params: Params, port: PortfolioState, t: Array,
                        params: EnvParams) -> Array:
        """The Macro agent's deterministic action [S+3] at the close of t (sector weights ⊕
        regime probabilities, ``agents.policies.macro_action``)."""
        layout = MacroObsLayout(params.num_sectors, params.sector_feature_dim,
                                params.macro_feature_dim)
        return macro_action(self.networks, layout, macro_params,
                            common.macro_obs(port, t, params))

    def macro_decision(self, macro_params: Params, port: PortfolioState, t: Array,
                       params: EnvParams) -> tuple[Array, Array]:
        """(goal [G], regime probabilities [3]) of the Macro agent at the close of t."""
        action = self.macro_action_at(macro_params, port, t, params)
        probs = action[params.num_sectors:]
        return common.macro_action_to_goal(action, params, port.weights), probs

    def micro_weights(self, micro_params: Params, port: PortfolioState, goal: Array, t: Array,
                      params: EnvParams) -> Array:
        """Stock weights [N] of the Micro actor for ``goal`` at the close of t, with
        ``env.goal_lock`` of its sector mix set to the goal's (as in every env)."""
        layout = MicroObsLayout(params.num_stocks, params.num_sectors)
        w = micro_weights(self.networks, layout, micro_params, params.stock_sector,
                          common.micro_obs(port, goal, t, params))
        return common.lock_to_goal(w, goal, t, params)

    def goal_in_force(self, carry: AgentCarry, t: Array, i: Array, view: DayView
                      ) -> tuple[Array, Array, Array]:
        """(goal [G], regime probabilities [3] (0 where the Macro does not decide), [] bool the
        Macro decided) at the close of t, window day i: a decision on a week end and on the
        window's first day, else the goal in the carry; without the Macro, the fixed goal."""
        params, port = view.params, view.port
        decide = params.week_end[t] | (i == 0)

        def macro(c: AgentCarry) -> tuple[Array, Array]:
            return self.macro_decision(c.macro_params, port, t, params)

        def keep(c: AgentCarry) -> tuple[Array, Array]:
            return c.goal, jnp.zeros((NUM_REGIMES,), _F32)

        if not self.macro:
            return (jnp.asarray(params.fixed_goal, _F32), jnp.zeros((NUM_REGIMES,), _F32),
                    jnp.zeros((), bool))
        goal, probs = jax.lax.cond(decide, macro, keep, carry)
        return goal, probs, decide

    # -- the weight function
    def __call__(self, carry: AgentCarry, t: Array, view: DayView) -> tuple[AgentCarry, Array]:
        params, port = view.params, view.port
        # the window's day from the backtest (never batched over seeds or markets), so the
        # Macro's cond stays a branch under vmap instead of running every day
        i = jnp.asarray(view.i, _I32)
        goal, probs, decide = self.goal_in_force(carry, t, i, view)
        if self.micro:
            weights = self.micro_weights(carry.micro_params, port, goal, t, params)
        elif self.value_names > 0:
            weights = common.value_weight_in_sectors(goal[:params.num_sectors], t, params,
                                                     self.value_names)
        else:
            weights = common.equal_weight_in_sectors(goal[:params.num_sectors], t, params)
        carry = carry.replace(goal=goal, goals=carry.goals.at[i].set(goal),
                              regime_probs=carry.regime_probs.at[i].set(probs),
                              macro_step=carry.macro_step.at[i].set(decide))
        if self.goal_change is not None:
            s = params.num_sectors
            moved = 0.5 * jnp.sum(jnp.abs(goal[:s] - carry.last_goal[:s]))
            expo = jnp.asarray(1.0 if view.exposure is None else view.exposure, _F32)
            act = (i == 0) | (moved >= self.goal_change) | (expo != carry.last_exposure)
            carry = carry.replace(hold=~act, last_goal=jnp.where(act, goal, carry.last_goal),
                                  last_exposure=jnp.where(act, expo, carry.last_exposure))
        return carry, weights

    def holds(self, carry: AgentCarry) -> Array | None:
        """[] bool: keep the drifted book this day (None: the strategy never holds)."""
        return None if self.goal_change is None else carry.hold

    def init_carry(self, macro_params: Params, micro_params: Params, params: EnvParams,
                   t0: int, length: int) -> AgentCarry:
        """One seed's carry for decision days t0 .. t0 + length - 1."""
        g = params.num_sectors + NUM_REGIMES
        return AgentCarry(
            macro_params=macro_params, micro_params=micro_params,
            t0=jnp.asarray(t0, _I32), goal=jnp.asarray(params.fixed_goal, _F32),
            goals=jnp.zeros((length, g), _F32),
            regime_probs=jnp.zeros((length, NUM_REGIMES), _F32),
            macro_step=jnp.zeros((length,), bool),
            last_goal=jnp.asarray(params.fixed_goal, _F32),
            last_exposure=jnp.ones((), _F32), hold=jnp.zeros((), bool))

    def init_carries(self, macro_params: Params, micro_params: Params, params: EnvParams,
                     t0: int, length: int) -> AgentCarry:
        """K seeds' carries from params stacked on a leading [K] axis (both the same K)."""
        km = _leading(macro_params, "macro_params")
        kn = _leading(micro_params, "micro_params")
        if km != kn:
            raise ConfigError(f"HierarchicalStrategy: {km} Macro seeds but {kn} Micro seeds; "
                              "pair them first (training.policy.pair_seeds)")
        one = self.init_carry(first_member(macro_params), first_member(micro_params), params,
                              t0, length)
        rest = repeat_members(one.replace(macro_params=None, micro_params=None), int(km))
        return rest.replace(macro_params=macro_params, micro_params=micro_params)


@dataclass(frozen=True)
class EnsembleStrategy:
    """The seed ensemble as one strategy: every seed's Macro and Micro act on the ensemble's
    own book (each seed keeps its goal), and the target is the mean of the seeds' Micro
    weights [N]; the backtest then applies the same projection, support rule and no-trade
    band as to any strategy. Carry: ``HierarchicalStrategy.init_carries`` (leading [K]).
    ``goal_change``: as the seeds'; the ensemble holds its book when every seed would."""

    networks: NetworkConfig
    goal_change: float | None = None

    def __call__(self, carry: AgentCarry, t: Array, view: DayView) -> tuple[AgentCarry, Array]:
        seed = HierarchicalStrategy(self.networks, goal_change=self.goal_change)
        carry, weights = jax.vmap(seed, in_axes=(0, None, None))(carry, t, view)
        return carry, weights.mean(0)

    def holds(self, carry: AgentCarry) -> Array | None:
        """[] bool: every seed holds (None: the ensemble never holds)."""
        return None if self.goal_change is None else jnp.all(carry.hold)


def _leading(tree: Params, name: str) -> int:
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(tree) if np.ndim(x) > 0}
    if len(sizes) != 1:
        raise ConfigError(f"{name}: expected every leaf stacked on one leading seed axis, got "
                          f"leading sizes {sorted(sizes)}")
    return sizes.pop()


# --------------------------------------------------------------------------- host helpers


def agent_schedule(frequency: str) -> str:
    """The backtest schedule of ``env.micro_frequency``: ``on_goal_change`` runs on the
    weekly one (its strategy holds on the weeks the goal did not move)."""
    if frequency not in MICRO_FREQUENCIES:  # envs.params: checked with the other env keys
        raise ConfigError(f"env.micro_frequency = {frequency!r} is not one of "
                          f"{', '.join(MICRO_FREQUENCIES)}")
    return "weekly" if frequency == "on_goal_change" else frequency


def agent_goal_change(env: EnvConfig) -> float | None:
    """``HierarchicalStrategy.goal_change`` of an env config: ``env.goal_change`` under
    ``micro_frequency: on_goal_change``, else None (never held)."""
    return float(env.goal_change) if env.micro_frequency == "on_goal_change" else None


# HOST ONLY
def agent_rebalance(frequency: str, params: EnvParams, t0: int, length: int) -> np.ndarray:
    """bool [length]: the days the hierarchy may re-allocate (``env.micro_frequency``): every
    day, or the calendar week ends where the Macro decides (and the window's first day)."""
    return rebalance_mask(agent_schedule(frequency), t0, length,
                          np.asarray(params.week_end, bool))


# HOST ONLY
def run_agent(networks: NetworkConfig, macro_params: Params, micro_params: Params,
              params: EnvParams, t0: int, length: int, *, risk_manager: bool = True,
              return_window: int = 20, book0: BookState | None = None,
              return_book: bool = False, frequency: str = "daily",
              goal_change: float | None = None) -> tuple:
    """Backtest the policy of K seeds (params stacked [K]) over decision days
    t0 .. t0 + length - 1, re-allocating on ``agent_rebalance(frequency)`` days (default
    every day, the Micro agent's schedule), holding the book where ``goal_change``
    (``agent_goal_change``) says the goal did not move. ``risk_manager``
    scales each day's budget by the envs' risk manager (the HierarchicalEnv always does).
    ``book0``: each seed's starting book (leading [K]; None: cash), e.g. the book its seed
    ended the previous walk-forward fold with; the Macro decides on day 0 either way.
    Returns host arrays: (carry with [K, L] logs, BacktestResult with [K, L] leaves), plus
    the end books [K] with ``return_book``."""
    if (goal_change is not None) != (frequency == "on_goal_change"):
        raise ConfigError(f"run_agent: goal_change {goal_change} goes with frequency "
                          f"'on_goal_change' only, got {frequency!r} (agent_goal_change(env) "
                          f"gives the pair's value)")
    strategy = HierarchicalStrategy(networks, goal_change=goal_change)
    carries = strategy.init_carries(macro_params, micro_params, params, t0, length)
    return run_backtest(strategy, carries, params, t0,
                        agent_rebalance(frequency, params, t0, length), batched=True,
                        risk_manager=risk_manager, return_window=return_window, book0=book0,
                        return_book=return_book)


def regime_calls(carry: AgentCarry) -> np.ndarray:
    """int [.., L] regime call in force each day (argmax of the goal's one-hot; 0 Bull,
    1 Bear, 2 Sideways)."""
    goals = np.asarray(carry.goals)
    return np.argmax(goals[..., goals.shape[-1] - NUM_REGIMES:], axis=-1)


def regime_call_scores(carry: AgentCarry, regime_label: np.ndarray) -> dict:
    """The Macro's regime calls on its decision days against the realised regime after each
    (``regime_label[t]``, the label Phase 1 learns), per seed of a batched carry
    (``evaluation.attribution.regime_scores``: accuracy, balanced accuracy, Brier), and their
    mean over seeds."""
    from hrl_sarp_jax.evaluation.attribution import regime_scores

    steps = np.asarray(carry.macro_step, bool)
    probs = np.asarray(carry.regime_probs, np.float64)
    t0 = np.asarray(carry.t0).reshape(-1)
    per_seed = []
    for k in range(steps.shape[0]):
        days = int(t0[k]) + np.flatnonzero(steps[k])
        p = probs[k][steps[k]]
        p = p / p.sum(-1, keepdims=True)
        per_seed.append(regime_scores(np.argmax(p, -1), np.asarray(regime_label)[days], p))
    mean = {m: (float(np.mean([x[m] for x in per_seed])) if all(
        x[m] is not None for x in per_seed) else None)
            for m in ("accuracy", "balanced_accuracy", "brier")}
    return {**mean, "calls": int(steps[0].sum()), "per_seed": per_seed,
            "labels": "realised regime after each decision (features.regime_label)"}


# HOST ONLY
def decision_records(carry: AgentCarry, result: BacktestResult, dates: np.ndarray,
                     tickers: tuple[str, ...] | list[str], sectors: tuple[str, ...] | list[str],
                     *, seeds: list[int] | None = None, top: int = 5) -> list[dict[str, Any]]:
    """The decision log of a batched ``run_agent``: per seed, one record per Macro decision
    ({"kind": "macro", "date", "seed", "sector_weights": {sector: w}, "regime",
    "regime_probs": {regime: p}}) and one per day ({"kind": "micro", "date", "seed",
    "top_weights": {ticker: w} (the ``top`` largest executed weights, after constraints and
    circuit locks), "cash"}); ordered by date, then seed, macro before micro. ``dates`` are
    the market's dates (decision day t is dates[t]); sectors / tickers named "" (padding) are
    skipped."""
    days = np.asarray(result.t)
    weights = np.asarray(result.weights, np.float64)
    goals = np.asarray(carry.goals, np.float64)
    probs = np.asarray(carry.regime_probs, np.float64)
    steps = np.asarray(carry.macro_step, bool)
    calls = regime_calls(carry)
    k_num, length = days.shape[:2]
    seeds = list(range(k_num)) if seeds is None else list(seeds)
    s = goals.shape[-1] - NUM_REGIMES
    named_s = [j for j in range(s) if j < len(sectors) and sectors[j]]
    named_n = np.asarray([j for j in range(weights.shape[-1]) if j < len(tickers) and tickers[j]],
                         int)
    out: list[dict[str, Any]] = []
    for i in range(length):
        for k in range(k_num):
            date = str(np.asarray(dates)[int(days[k, i])].astype("datetime64[D]"))
            if steps[k, i]:
                out.append({
                    "kind": "macro", "date": date, "seed": seeds[k],
                    "sector_weights": {sectors[j]: round(float(goals[k, i, j]), 6)
                                       for j in named_s},
                    "regime": REGIME_NAMES[int(calls[k, i])],
                    "regime_probs": {REGIME_NAMES[r]: round(float(probs[k, i, r]), 6)
                                     for r in range(NUM_REGIMES)},
                })
            w = weights[k, i]
            order = named_n[np.argsort(-w[named_n], kind="stable")][:top]
            out.append({
                "kind": "micro", "date": date, "seed": seeds[k],
                "top_weights": {tickers[j]: round(float(w[j]), 6) for j in order if w[j] > 0},
                "cash": round(float(1.0 - w.sum()), 6),
            })
    return out
