"""FlatEnv: the flat single-level RL baseline's environment, one step = one calendar week.

No hierarchy and no goal: the action is a target over the N stocks directly. Everything else is
the hierarchy's: the same ``EnvParams`` (market arrays, costs, constraints, risk manager), the
same stock-level accounting (``common.trade_day`` once per trading day) and the same weekly
decision calendar as ``MacroEnv`` (decide at a week end d, hold until the next week end).

Step from week end d to the next week end d' (gymnax 1.0 API, ``common.ObserveOnce``):
  1. exposure = risk manager at d (drawdown gate, CVaR over the recent daily net returns,
     event days), exactly as MacroEnv; the manager steps on every day of the week (its gate,
     clock and return buffer as in the backtest of a weekly strategy), applied at the next
     decision;
  2. target = ``common.project_stocks(action, d, exposure)``: action [N] is any nonnegative
     scores (a Dirichlet sample or mean in training), projected onto the stock cap, sector cap,
     min cash and max positions over the stocks tradable at d;
  3. day d: trade from the drifted book to the target (circuit locks, itemised costs, impact),
     earn returns[d + 1]; days d+1 .. d'-1: hold the drifted book (no trade, no cost), as
     MacroEnv without an allocator.
Reward = the week's net log-return log(V_{d'} / V_d) = sum over the days of log1p(net_d),
costs included; nothing else (no shaping). Truncated after ``max_steps_in_episode`` weeks or
when the next full week does not fit in the split (bootstrapped by the learner); terminated on
ruin / drawdown stop (``common.is_ruined``).

Why not MacroEnv with one "sector" per stock: its action is projected as *sector* weights
(max_sector_weight would act as the stock cap and the real sector cap would be lost), its
observation is sector-level (sector features, a GNN graph over S x S) and its reward is the
Macro decomposition. A flat baseline must face the hierarchy's constraints and costs with a
plain return objective, so it gets its own (small) env over the shared accounting.

Observation [D_f] at the close of d (``FlatObsLayout``), rows <= d only:
  stock [N*22] | stock_mask [N] (tradable at d) | weights [N] (current, drifted) |
  macro [F_m] (18 or 24; portfolio_drawdown slot filled by the env) |
  portfolio [2] = (cash, drawdown)
Shapes: N stocks, S sectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.macro import week_window
from hrl_sarp_jax.envs.micro import initial_parts
from hrl_sarp_jax.envs.obs import field_slices
from hrl_sarp_jax.envs.params import EnvParams, make_env_params
from hrl_sarp_jax.envs.rewards import buffer_mask, push_return, sector_weights
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES, NUM_STOCK_FEATURES
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.risk.manager import RiskState

_F32 = jnp.float32
_I32 = jnp.int32
LOG_FLOOR = 1e-6
"""1 + net return is floored here before the log (a wiped-out book would give -inf)."""


@dataclass(frozen=True)
class FlatObsLayout:
    num_stocks: int
    stock_features: int = NUM_STOCK_FEATURES
    macro_features: int = NUM_MACRO_FEATURES

    @property
    def slices(self) -> dict[str, slice]:
        n = self.num_stocks
        return field_slices([("stock", n * self.stock_features), ("stock_mask", n),
                             ("weights", n), ("macro", self.macro_features), ("portfolio", 2)])

    @property
    def size(self) -> int:
        return self.slices["portfolio"].stop

    def unflatten(self, obs: jax.Array) -> dict[str, jax.Array]:
        """Named views: stock [..,N,22], stock_mask [..,N] (0/1), weights [..,N],
        macro [..,F_m], portfolio [..,2] (cash, drawdown). Leading axes are kept."""
        sl, lead = self.slices, obs.shape[:-1]
        v = {k: obs[..., sl[k]] for k in sl}
        v["stock"] = v["stock"].reshape(*lead, self.num_stocks, self.stock_features)
        return v

    def flatten(self, stock, stock_mask, weights, macro, portfolio) -> jax.Array:
        """Inverse of ``unflatten`` for one observation."""
        parts = [stock, stock_mask, weights, macro, portfolio]
        return jnp.concatenate([jnp.asarray(p, _F32).reshape(-1) for p in parts])

    def policy_inputs(self, obs: jax.Array) -> tuple[jax.Array, ...]:
        """``networks.flat`` inputs of one observation [D_f]: (stock [N,22], mask [N] bool,
        weights [N], context [20] = macro ⊕ cash ⊕ drawdown). A day without any tradable
        stock gets an all-True mask (a finite Dirichlet; the projection holds nothing there)."""
        v = self.unflatten(obs)
        mask = v["stock_mask"] > 0
        mask = mask | ~jnp.any(mask)
        return v["stock"], mask, v["weights"], jnp.concatenate([v["macro"], v["portfolio"]])


def flat_obs(port: PortfolioState, t: jax.Array, params: EnvParams) -> jax.Array:
    """Flat observation [D_f] at the close of t (layout above); also used by the backtest
    policy (``evaluation.flat_policy``), so training and evaluation see the same inputs."""
    dd = common.drawdown(port)
    macro = params.macro_features[t].at[common.DRAWDOWN_INDEX].set(dd)
    return jnp.concatenate([
        params.stock_features[t].reshape(-1), params.tradable[t].astype(_F32), port.weights,
        macro, jnp.stack([common.cash(port), dd]),
    ]).astype(_F32)


@struct.dataclass
class FlatState(environment.EnvState):
    t: jax.Array            # int32 decision day (a week end)
    week: jax.Array         # int32 index into params.week_end_idx
    start: jax.Array        # int32 episode start day
    port: PortfolioState
    risk: RiskState
    ret_buf: jax.Array      # [R] recent daily net returns, newest last (risk manager's CVaR)
    ret_count: jax.Array    # int32


class FlatEnv(common.ObserveOnce, environment.Environment[FlatState, EnvParams]):
    def __init__(self, num_stocks: int, num_sectors: int, *, return_window: int = 20,
                 macro_features: int = NUM_MACRO_FEATURES):
        super().__init__()
        self.num_stocks, self.num_sectors, self.window = num_stocks, num_sectors, return_window
        self.layout = FlatObsLayout(num_stocks, macro_features=macro_features)

    # HOST ONLY
    @staticmethod
    def make_params(market, feats, cfg: EnvConfig, **kw) -> EnvParams:
        """Weekly EnvParams (episodes of cfg.macro_episode_weeks weeks), as MacroEnv's."""
        return make_env_params(market, feats, cfg, weekly=True, **kw)

    def reset_env(self, key, params: EnvParams):
        lo, hi = week_window(params)
        week = jax.random.randint(key, (), lo, hi + 1, _I32)
        t = params.week_end_idx[week]
        port, risk, buf, cnt = initial_parts(params, self.window)
        state = FlatState(time=jnp.zeros((), _I32), t=t, week=week, start=t, port=port,
                          risk=risk, ret_buf=buf, ret_count=cnt)
        return flat_obs(port, t, params), state

    @staticmethod
    def _day(carry, k, *, d, length, target, params: EnvParams):
        port, risk, log_growth, cost, turnover, executed, buf, cnt = carry
        active = k < length
        risk2, _ = common.risk_exposure(risk, port, buf, buffer_mask(buf, cnt), d + k, params)
        port2, info, _ = common.trade_day(port, jnp.where(k == 0, target, port.weights),
                                          d + k, params)
        net = common.net_return(info)
        buf2, cnt2 = push_return(buf, cnt, net)
        sel = lambda a, b: jnp.where(active, a, b)  # noqa: E731
        new = (jax.tree.map(sel, port2, port), jax.tree.map(sel, risk2, risk),
               sel(log_growth + jnp.log(jnp.maximum(1.0 + net, LOG_FLOOR)), log_growth),
               sel(cost + info.costs.total, cost), sel(turnover + info.turnover, turnover),
               jnp.where(k == 0, info.executed_weights, executed), sel(buf2, buf),
               sel(cnt2, cnt))
        return new, None

    def step_env(self, key, state: FlatState, action, params: EnvParams):
        d = state.t
        d_next = params.week_end_idx[state.week + 1]
        mask = buffer_mask(state.ret_buf, state.ret_count)
        _, expo = common.risk_exposure(state.risk, state.port, state.ret_buf, mask, d, params)
        target = common.project_stocks(jnp.asarray(action, _F32), d, expo, params,
                                       state.port.weights)
        zero = jnp.zeros((), _F32)
        carry0 = (state.port, state.risk, zero, zero, zero, jnp.zeros((self.num_stocks,), _F32),
                  state.ret_buf, state.ret_count)
        day = lambda c, k: self._day(c, k, d=d, length=d_next - d, target=target,  # noqa: E731
                                     params=params)
        (port, risk, log_growth, cost, turnover, executed, buf, cnt), _ = jax.lax.scan(
            day, carry0, jnp.arange(params.max_week_days, dtype=_I32))
        week_ret = jnp.expm1(log_growth)  # V_end / V_0 - 1 without float32 cancellation
        new = FlatState(time=state.time + 1, t=d_next, week=state.week + 1, start=state.start,
                        port=port, risk=risk, ret_buf=buf, ret_count=cnt)
        v0 = jnp.where(state.port.value > 0, state.port.value, 1.0)
        info = {
            "value": port.value, "drawdown": common.drawdown(port), "net_return": week_ret,
            "log_return": log_growth, "cost": cost, "cost_frac": cost / v0,
            "turnover": turnover, "exposure": expo, "executed_weights": executed,
            "sector_weights": sector_weights(executed, params.stock_sector, self.num_sectors),
            "day": d, "next_day": d_next, "end_of_data": self._end_of_data(new, params),
        }
        obs = flat_obs(port, d_next, params)
        return obs, new, log_growth.astype(_F32), common.is_ruined(port, params), info

    @staticmethod
    def _end_of_data(state: FlatState, params: EnvParams) -> jax.Array:
        return params.week_end_idx[state.week + 1] > params.t_hi

    def is_terminated(self, state: FlatState, params: EnvParams) -> jax.Array:
        return common.is_ruined(state.port, params)

    def is_truncated(self, state: FlatState, params: EnvParams) -> jax.Array:
        return (state.time >= params.max_steps_in_episode) | self._end_of_data(state, params)

    def get_obs(self, state: FlatState, params=None, key=None):
        return flat_obs(state.port, state.t, params)

    @property
    def name(self) -> str:
        return "HrlSarpFlat"

    @property
    def num_actions(self) -> int:
        return self.num_stocks

    def action_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.num_stocks,), _F32)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.layout.size,), _F32)
