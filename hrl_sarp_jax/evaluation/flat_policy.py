"""The trained flat RL baseline as a backtest strategy (``flat_rl`` in the report).

``FlatPolicyFn`` is a ``backtest`` weight function: at the close of a rebalance day t it builds
the flat env's observation from the market rows <= t and the drifted book
(``envs.flat.flat_obs``, the very function the env uses in training) and returns the actor's
Dirichlet mean; ``backtest`` projects it onto the constraints and trades it with the envs'
accounting. Rebalancing is weekly (the last trading day of each calendar week, plus the first
day of the window), the env's decision calendar, holding the drifted book in between. Its
carry is one seed's ``FlatActorCritic`` params; ``flat_backtest`` vmaps over K seeds.

``flat_daily_returns`` restores the policy parameters that ``training.flat.run_flat`` saved as
phase ``"flat_policy"`` of a run (this module must not import ``training``: the two are sibling
layers, so the policy has its own small checkpoint) and backtests them over a window, giving
what ``evaluation.evaluate.add_strategy(payload, "flat_rl", ...)`` takes.

Difference from the env, by construction of the shared backtest: with ``risk_manager=True`` the
risk manager's state is updated daily over daily returns (the env updates it at week ends over
weekly returns); with the defaults (no CVaR budget) only the drawdown gate and event days act.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.checkpointing import PhaseCheckpointer, Run
from hrl_sarp_jax.config import Config, NetworkConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.flat import FlatObsLayout, flat_obs
from hrl_sarp_jax.envs.params import EnvParams, make_env_params
from hrl_sarp_jax.errors import CheckpointError
from hrl_sarp_jax.evaluation.backtest import (
    BookState,
    DayView,
    rebalance_mask,
    run_backtest,
)
from hrl_sarp_jax.features.featureset import NUM_STOCK_FEATURES, FeatureSet, macro_width
from hrl_sarp_jax.networks.flat import FlatActor, FlatActorCritic
from hrl_sarp_jax.types import Array, Params

POLICY_PHASE = "flat_policy"
"""Checkpointer name of the policy parameters (written by ``training.flat.run_flat``)."""
SCHEDULE = "weekly"


@dataclass(frozen=True)
class FlatPolicyFn:
    """weights_fn(carry = FlatActorCritic params of one seed, t, view) -> (carry, target [N])."""

    networks: NetworkConfig
    num_stocks: int

    def __call__(self, carry: Params, t: Array, view: DayView) -> tuple[Params, Array]:
        obs = flat_obs(view.port, t, view.params)
        x = FlatObsLayout(self.num_stocks, macro_features=view.params.macro_feature_dim
                          ).policy_inputs(obs)
        policy = FlatActor(self.networks).apply({"params": carry["params"]["actor"]}, *x)
        return carry, policy.mean_weights


def flat_backtest(params: Params, networks: NetworkConfig, env_params: EnvParams, t0: int,
                  rebalance: np.ndarray, *, risk_manager: bool = False,
                  return_window: int = 20, book0: BookState | None = None,
                  return_book: bool = False) -> Any:
    """``run_backtest`` of the flat policy for K seeds' params (leading axis K) -> [K, L]
    results, from each seed's ``book0`` (leading [K]; None: cash); with ``return_book``
    (results, end books [K])."""
    fn = FlatPolicyFn(networks, env_params.num_stocks)
    out = run_backtest(fn, params, env_params, t0, rebalance, batched=True,
                       risk_manager=risk_manager, return_window=return_window, book0=book0,
                       return_book=return_book)
    return (out[1], out[2]) if return_book else out[1]


# HOST ONLY
def load_flat_policy(run: Run, cfg: Config, step: int | str = "best") -> tuple[Params, int]:
    """(FlatActorCritic params stacked [K, ...], checkpoint step) of a run's flat baseline;
    ``step``: 'best' (by validation Sharpe, the default), 'latest' or an update count."""
    if not (run.phase_dir(POLICY_PHASE) / "ckpt").is_dir():
        raise CheckpointError(f"run {run.name} has no trained flat baseline "
                              f"({run.phase_dir(POLICY_PHASE)} is missing); train it first "
                              "(training.flat.run_flat)")
    with PhaseCheckpointer(run, POLICY_PHASE, read_only=True) as ck:
        pick = {"best": ck.best_step, "latest": ck.latest_step}
        at = pick[step]() if isinstance(step, str) and step in pick else step
        saved = ck.metrics(int(at)) if at is not None and int(at) in ck.all_steps() else None
        seeds = int((saved or {}).get("seeds", cfg.train.seeds))
        net = FlatActorCritic(cfg.networks)
        dummy = (jnp.zeros((1, NUM_STOCK_FEATURES)), jnp.ones((1,), bool), jnp.zeros((1,)),
                 jnp.zeros((macro_width(cfg.features.macro_levels, cfg.features.regime_hmm) + 2,)))
        keys = jax.random.split(jax.random.key(0), seeds)  # shapes only: never evaluated
        abstract = jax.eval_shape(jax.vmap(lambda k: {"policy": net.init(k, *dummy)}), keys)
        state, _meta, got = ck.restore(abstract, step)
    return state["policy"], int(got)


# HOST ONLY
def flat_daily_returns(run: Run, cfg: Config, market: MarketArrays, meta: MarketMeta,
                       feats: FeatureSet, t0: int, length: int, *, step: int | str = "best",
                       risk_manager: bool = False, book0: BookState | None = None,
                       return_book: bool = False) -> dict[str, Any]:
    """Per-seed daily results of the trained flat baseline over decisions t0 .. t0 + L - 1
    (returns earned on days t0 + 1 .. t0 + L), weekly rebalancing, the whole market's
    EnvParams (as ``evaluate_baselines``). Returns host arrays:
    daily_returns / turnover / cost_frac [K, L], costs {item: [K, L]}, sector_weights
    [K, L, S], weights [K, L, N] (executed), rebalanced [L] bool, dates [L] (return dates),
    step (the checkpoint used) and seeds K; feed them to ``add_strategy(payload, "flat_rl",
    daily_returns, sector_weights=..., turnover=..., cost_frac=..., costs=...)``.
    ``book0``: each seed's starting book (leading [K]; None: cash); with ``return_book`` the
    result also holds ``book``, the seeds' end books (the next walk-forward fold's start)."""
    params, got = load_flat_policy(run, cfg, step)
    env_params = make_env_params(market, feats, cfg.env)
    reb = rebalance_mask(SCHEDULE, int(t0), int(length), np.asarray(market.week_end, bool))
    out = flat_backtest(params, cfg.networks, env_params, int(t0), reb,
                        risk_manager=risk_manager, return_window=cfg.env.return_window,
                        book0=book0, return_book=return_book)
    res, book = out if return_book else (out, None)
    f64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    return {
        "daily_returns": f64(res.net_return), "turnover": f64(res.turnover),
        "cost_frac": f64(res.cost_frac), "costs": {k: f64(v) for k, v in res.costs.items()},
        "sector_weights": f64(res.sector_weights), "weights": f64(res.weights),
        "rebalanced": np.asarray(res.rebalanced)[0], "dates": dates[t0 + 1: t0 + 1 + length],
        "step": got, "seeds": int(f64(res.net_return).shape[0]), "schedule": SCHEDULE,
        **({"book": book} if return_book else {}),
    }
