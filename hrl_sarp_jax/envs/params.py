"""EnvParams: a market, its features and every env knob as pytree leaves (one compile per shape).

Built on the host by ``make_env_params``. Market and feature arrays are leaves, so the same
compiled step serves any market of the same shapes (and vmaps over markets). The curriculum
moves ``start_lo``/``start_hi`` (int32 leaves) without recompiling; the split end ``t_hi`` is a
leaf too. Only ``max_steps_in_episode`` and ``max_week_days`` are static.

Shapes: T days, N stocks, S sectors, F_s sector features, G = S + 3 goal size.
Calendar weeks: ``week_end_idx[w]`` is the day index of the w-th week end, padded to T + 1
entries with ``NO_WEEK``; week w spans days ``week_end_idx[w] + 1 .. week_end_idx[w + 1]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment

from hrl_sarp_jax.config import EnvConfig, RewardConfig
from hrl_sarp_jax.data.market import MarketArrays
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.featureset import MACRO_WIDTHS, NUM_STOCK_FEATURES, FeatureSet
from hrl_sarp_jax.finance.costs import CostParams, cost_params
from hrl_sarp_jax.risk.constraints import ConstraintParams, constraint_params
from hrl_sarp_jax.risk.manager import RiskParams, risk_params

_F32 = jnp.float32
_I32 = jnp.int32
NO_WEEK = 2**30  # padding day index of week_end_idx: beyond any data, so weeks there never fit


@struct.dataclass
class RewardParams:
    """RewardConfig as float32 scalar leaves (sweepable under vmap); see envs/rewards.py."""

    macro_w_macro: jax.Array
    macro_w_portfolio: jax.Array
    macro_w_regime: jax.Array
    macro_w_value: jax.Array
    micro_w_micro: jax.Array
    micro_w_portfolio: jax.Array
    micro_w_value: jax.Array
    concentration_penalty: jax.Array
    turnover_penalty: jax.Array
    regime_correct: jax.Array
    regime_wrong: jax.Array
    sharpe_w: jax.Array
    goal_w: jax.Array
    drawdown_w: jax.Array
    drawdown_free: jax.Array
    macro_vol_floor: jax.Array
    micro_vol_floor: jax.Array
    excess_turnover_cost: jax.Array
    micro_turnover_cost: jax.Array
    cvar_alpha: jax.Array
    kind: str = struct.field(pytree_node=False, default="original")  # envs.rewards.REWARD_KINDS


REWARD_KINDS = ("original", "excess", "macro_excess")
"""Which levels earn the ``excess`` reward (``envs.rewards``): none, both, or the Macro only
(the Micro keeps the original composite)."""
MACRO_EXCESS_KINDS = ("excess", "macro_excess")
MICRO_FREQUENCIES = ("daily", "weekly", "on_goal_change")


# HOST ONLY
def check_env_config(cfg: EnvConfig) -> None:
    """Every range check of ``env.*`` that needs no data (ConfigError naming the key): the
    constraints, risk manager, rewards, goal step and re-allocation frequency. Training calls
    it before Phase 1, so a bad key fails at start, not after hours."""
    constraint_params(cfg.constraints)
    risk_params(cfg.risk)
    reward_params(cfg.reward, cfg.risk.cvar_alpha)
    if not 0.0 < cfg.goal_step <= 1.0:
        raise ConfigError(f"env.goal_step = {cfg.goal_step} must be in (0, 1] (1: the Macro's "
                          "call is the goal)")
    if not 0.0 <= cfg.goal_lock <= 1.0:
        raise ConfigError(f"env.goal_lock = {cfg.goal_lock} must be in [0, 1] (0: the Micro "
                          "sets its own sector mix, 1: the goal's)")
    if cfg.micro_frequency not in MICRO_FREQUENCIES:
        raise ConfigError(f"env.micro_frequency = {cfg.micro_frequency!r} is not one of "
                          f"{', '.join(MICRO_FREQUENCIES)}")


# HOST ONLY
def reward_params(cfg: RewardConfig, cvar_alpha: float = 0.95) -> RewardParams:
    if cfg.kind not in REWARD_KINDS:
        raise ConfigError(f"env.reward.kind = {cfg.kind!r} is not one of "
                          f"{', '.join(REWARD_KINDS)}")
    for name in ("macro_vol_floor", "micro_vol_floor"):
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"env.reward.{name} = {getattr(cfg, name)} must be > 0")
    for name in ("excess_turnover_cost", "micro_turnover_cost"):
        if not getattr(cfg, name) >= 0:
            raise ConfigError(f"env.reward.{name} = {getattr(cfg, name)} must be >= 0 "
                              f"(0: no charge)")
    f = lambda x: jnp.asarray(x, _F32)  # noqa: E731
    names = [n for n in RewardParams.__dataclass_fields__ if n not in ("cvar_alpha", "kind")]
    return RewardParams(**{n: f(getattr(cfg, n)) for n in names}, cvar_alpha=f(cvar_alpha),
                        kind=cfg.kind)


@struct.dataclass(kw_only=True)
class EnvParams(environment.EnvParams):
    # market (decision at the close of t earns returns[t + 1])
    returns: jax.Array           # [T, N] float32
    circuit_lock: jax.Array      # [T, N] int8
    tradable: jax.Array          # [T, N] bool: stock_mask & stock_valid
    adv_value: jax.Array         # [T, N] float32: trailing mean close*volume over days <= t
    stock_sector: jax.Array      # [N] int32
    sector_valid: jax.Array      # [S] bool
    sector_returns: jax.Array    # [T, S] float32
    benchmark_returns: jax.Array  # [T] float32
    # features (row t uses data <= t; regime_label[t] is the target: regime after t)
    stock_features: jax.Array    # [T, N, 22] float32
    macro_features: jax.Array    # [T, F_m] float32, F_m 18 or 24 (column 17 filled by the env)
    sector_features: jax.Array   # [T, S, F_s] float32
    sector_mask: jax.Array       # [T, S] bool
    adjacency: jax.Array         # [T, S, S] float32
    regime_label: jax.Array      # [T] int32, -1 unknown
    # calendar
    week_end: jax.Array          # [T] bool
    week_end_idx: jax.Array      # [T + 1] int32, padded with NO_WEEK
    weeks_before: jax.Array      # [T + 1] int32: number of week ends with day index < t
    # knobs
    cost: CostParams
    constraints: ConstraintParams
    risk: RiskParams
    reward: RewardParams
    initial_value: jax.Array     # float32
    ruin_value: jax.Array        # float32 fraction of initial_value
    drawdown_stop: jax.Array     # float32, 0 disables
    goal_step: jax.Array         # float32 in (0, 1]: partial adjustment of the Macro's goal
    t_hi: jax.Array              # int32: last usable day of the split (inclusive)
    start_lo: jax.Array          # int32 day index: episodes start in [start_lo, start_hi]
    start_hi: jax.Array          # int32
    fixed_goal: jax.Array        # [S + 3] float32: goal of the 'fixed' goal source
    policy_params: Any = None    # frozen allocator / goal policy params (any pytree)
    max_steps_in_episode: int = struct.field(pytree_node=False, default=126)
    max_week_days: int = struct.field(pytree_node=False, default=5)
    # static: at 0 (the original) the lock is not in the program at all, so the default's
    # compiled programs and results stay bit for bit those without it
    goal_lock: float = struct.field(pytree_node=False, default=0.0)  # [0, 1]: share of the
    # Micro's sector mix set to the goal's (envs.common.lock_to_goal)

    @property
    def num_stocks(self) -> int:
        return int(self.returns.shape[-1])

    @property
    def num_sectors(self) -> int:
        return int(self.sector_returns.shape[-1])

    @property
    def sector_feature_dim(self) -> int:
        return int(self.sector_features.shape[-1])

    @property
    def macro_feature_dim(self) -> int:
        """F_m: 18, + 6 with ``features.macro_levels``, + 3 with ``features.regime_hmm``."""
        return int(self.macro_features.shape[-1])


# --------------------------------------------------------------------------- host helpers


# HOST ONLY
def with_policy(params: EnvParams, policy_params: Any) -> EnvParams:
    """``params`` with another frozen policy (e.g. one per seed, stacked [K])."""
    return params.replace(policy_params=policy_params)


def seed_axes(params: EnvParams) -> EnvParams:
    """``in_axes`` for EnvParams whose ``policy_params`` carry a leading seed axis [K] (the
    market arrays are shared, not copied K times)."""
    axes = jax.tree.map(lambda _: None, params)
    return axes.replace(policy_params=jax.tree.map(lambda _: 0, params.policy_params))


def is_pooled(params: EnvParams) -> bool:
    """True when ``params`` hold several markets on a leading axis (``stack_markets``)."""
    return jnp.ndim(params.start_lo) == 1


def stack_markets(params: list[EnvParams], copies: int = 1) -> EnvParams:
    """Several markets' EnvParams as one, every market leaf on a leading axis of
    E = len(params) x copies (entry i is market i mod len(params)); the frozen policy of
    ``params[0]`` stays shared (unstacked). The markets must share shapes and static fields
    (one generator, one calendar): ValueError otherwise."""
    first = params[0]
    static = (first.max_steps_in_episode, first.max_week_days)
    for p in params[1:]:
        if (p.max_steps_in_episode, p.max_week_days) != static:
            raise ValueError("stack_markets: the markets' episode lengths differ")
    bare = [with_policy(p, None) for p in params]
    try:
        stacked = jax.tree.map(lambda *x: jnp.stack(x), *bare)
    except ValueError as exc:
        raise ValueError(f"stack_markets: the markets' shapes differ ({exc})") from None
    if copies > 1:
        stacked = jax.tree.map(lambda x: jnp.concatenate([x] * int(copies)), stacked)
    return with_policy(stacked, first.policy_params)


def market_axes(params: EnvParams) -> EnvParams:
    """``in_axes`` of pooled EnvParams for a vmap over their markets (or envs): 0 for every
    market leaf, None for the shared frozen policy."""
    axes = jax.tree.map(lambda _: 0, with_policy(params, None))
    return axes.replace(policy_params=jax.tree.map(lambda _: None, params.policy_params))


def trailing_adv(close: np.ndarray, volume: np.ndarray, valid: np.ndarray,
                 window: int) -> np.ndarray:
    """[T, N] mean of close*volume over the valid days among t-window+1..t (0 if none)."""
    tv = np.where(valid, np.asarray(close, np.float64) * np.asarray(volume, np.float64), 0.0)
    cnt = valid.astype(np.float64)
    pad = lambda x: np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, 0)])  # noqa: E731
    cs, cc = pad(tv), pad(cnt)
    hi = np.arange(1, tv.shape[0] + 1)
    lo = np.maximum(hi - window, 0)
    s, c = cs[hi] - cs[lo], cc[hi] - cc[lo]
    return np.where(c > 0, s / np.maximum(c, 1.0), 0.0).astype(np.float32)


# HOST ONLY
def week_arrays(week_end: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(week_end_idx [T+1] padded with NO_WEEK, weeks_before [T+1], max_week_days)."""
    we = np.asarray(week_end, bool)
    t = we.shape[0]
    ends = np.flatnonzero(we).astype(np.int32)
    idx = np.full(t + 1, NO_WEEK, np.int32)
    idx[: ends.size] = ends
    before = np.concatenate([[0], np.cumsum(we)]).astype(np.int32)
    longest = int(np.max(np.diff(ends))) if ends.size > 1 else 1
    return idx, before, max(longest, 1)


# HOST ONLY
def default_goal(sector_valid: np.ndarray, cfg: EnvConfig) -> np.ndarray:
    """Equal weight over valid sectors (capped, budget 1 - min_cash) ⊕ Sideways one-hot."""
    sv = np.asarray(sector_valid, bool)
    budget = 1.0 - cfg.constraints.min_cash
    w = np.where(sv, min(budget / max(int(sv.sum()), 1), cfg.constraints.max_sector_weight), 0.0)
    return np.concatenate([w, [0.0, 0.0, 1.0]]).astype(np.float32)


# HOST ONLY
def make_env_params(
    market: MarketArrays,
    feats: FeatureSet,
    cfg: EnvConfig,
    *,
    split: tuple[int, int] | None = None,
    weekly: bool = False,
    steps: int | None = None,
    start: tuple[int, int] | None = None,
    policy_params: Any = None,
) -> EnvParams:
    """EnvParams over days ``split = (t_lo, t_hi)`` (inclusive; default the whole market).

    weekly: episode length counts calendar weeks (MacroEnv, default cfg.macro_episode_weeks)
    rather than days (MicroEnv / HierarchicalEnv, default cfg.micro_episode_days).
    start: the episode start window (days); default [first usable day >= t_lo (a valid sector
    and a tradable stock), the last start leaving a full episode before t_hi] (clamped to the
    first usable day when the split is shorter than one episode).
    """
    t_total = market.num_days
    t_lo, t_hi = split if split is not None else (0, t_total - 1)
    if not 0 <= t_lo < t_hi <= t_total - 1:
        raise ConfigError(f"env split ({t_lo}, {t_hi}) must satisfy "
                          f"0 <= t_lo < t_hi <= {t_total - 1}")
    n, s = market.num_stocks, market.num_sectors
    if feats.stock.shape != (t_total, n, NUM_STOCK_FEATURES):
        raise ConfigError(f"FeatureSet.stock has shape {feats.stock.shape}, "
                          f"expected {(t_total, n, NUM_STOCK_FEATURES)}")
    macro_ok = feats.macro.shape[0] == t_total and feats.macro.shape[1:] in {
        (w,) for w in MACRO_WIDTHS}
    if not macro_ok or feats.sector.shape[:2] != (t_total, s):
        raise ConfigError("FeatureSet macro/sector shapes do not match the market")
    steps = int(steps if steps is not None else
                (cfg.macro_episode_weeks if weekly else cfg.micro_episode_days))
    if steps < 1:
        raise ConfigError(f"episode length must be >= 1, got {steps}")
    check_env_config(cfg)
    week_end = np.asarray(market.week_end, bool)
    w_idx, w_before, max_week = week_arrays(week_end)
    tradable = np.asarray(market.stock_mask, bool) & np.asarray(market.stock_valid, bool)[None]
    if start is None:
        # Never start inside the features' warm-up: with no valid sector the Macro's Dirichlet
        # has zero components (0/0 weights) and with no tradable stock there is nothing to hold.
        usable = np.flatnonzero(np.asarray(feats.sector_mask, bool).any(1) & tradable.any(1))
        usable = usable[(usable >= t_lo) & (usable <= t_hi)]
        if usable.size == 0:
            raise ConfigError(f"split ({t_lo}, {t_hi}) has no day with a valid sector and a "
                              "tradable stock (the feature warm-up covers it); use a longer split")
        lo = int(usable[0])
        if weekly:
            ends = np.flatnonzero(week_end[: t_hi + 1])
            ends = ends[ends >= lo]
            last = ends.size - 1 - steps
            start = (lo, int(ends[last]) if last >= 0 else lo)
        else:
            start = (lo, max(lo, t_hi - steps))
    if weekly and not week_end[t_lo: t_hi].any():
        raise ConfigError(f"split ({t_lo}, {t_hi}) holds no week end before its last day")
    adv = trailing_adv(np.asarray(market.close), np.asarray(market.volume), tradable,
                       cfg.cost.adv_window)
    f32 = lambda x: jnp.asarray(x, _F32)  # noqa: E731
    i32 = lambda x: jnp.asarray(x, _I32)  # noqa: E731
    return EnvParams(
        returns=f32(market.returns), circuit_lock=jnp.asarray(market.circuit_lock, jnp.int8),
        tradable=jnp.asarray(tradable), adv_value=f32(adv),
        stock_sector=i32(market.stock_sector), sector_valid=jnp.asarray(market.sector_valid, bool),
        sector_returns=f32(market.sector_returns), benchmark_returns=f32(market.benchmark_returns),
        stock_features=f32(feats.stock), macro_features=f32(feats.macro),
        sector_features=f32(feats.sector), sector_mask=jnp.asarray(feats.sector_mask, bool),
        adjacency=f32(feats.adjacency), regime_label=i32(feats.regime_label),
        week_end=jnp.asarray(week_end), week_end_idx=i32(w_idx), weeks_before=i32(w_before),
        cost=cost_params(cfg.cost), constraints=constraint_params(cfg.constraints),
        risk=risk_params(cfg.risk), reward=reward_params(cfg.reward, cfg.risk.cvar_alpha),
        initial_value=f32(cfg.initial_value), ruin_value=f32(cfg.ruin_value),
        drawdown_stop=f32(cfg.drawdown_stop), goal_step=f32(cfg.goal_step), t_hi=i32(t_hi),
        start_lo=i32(start[0]), start_hi=i32(start[1]),
        fixed_goal=f32(default_goal(np.asarray(market.sector_valid), cfg)),
        policy_params=policy_params, max_steps_in_episode=steps, max_week_days=max_week,
        goal_lock=float(cfg.goal_lock),
    )
