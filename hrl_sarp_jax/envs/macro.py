"""MacroEnv: one step = one calendar week (week end to next week end), gymnax 1.0 API.

Action [S+3]: sector scores ⊕ regime scores. The sector part is projected onto the sector
constraints (any reals are accepted: it is a Euclidean projection, not a softmax); the regime
call is argmax(action[S:]) (probabilities or logits alike). Inside the week the book is traded
at the stock level, one ``portfolio_step`` per trading day:
  allocator None (default): at the week end the sector weights (scaled by the risk exposure) are
    split equally among each sector's tradable stocks and projected onto the stock constraints;
    on the following days of the week the drifted holdings are kept (no daily churn);
  allocator fn: a frozen Micro policy, fn(params.policy_params, micro_obs [D_m]) -> [N], called
    every trading day with goal = this week's macro goal; its output is projected.
The risk manager steps every trading day, as in the backtest and HierarchicalEnv: with an
allocator each day's target gets that day's exposure (the same daily book as the backtest of
the same policies: ``test_macro_with_allocator_trades_the_hierarchical_envs_days``); without
one the week-end trade gets the decision day's and the days between hold (as a weekly
strategy in the backtest). The CVaR rule (``env.risk.cvar_budget`` > 0) reads the book's
daily net returns (``daily_buf``), as there; the weekly ones (``ret_buf``) feed the reward.
Truncated
after max_steps_in_episode weeks or when the next full week does not fit in the split.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.micro import initial_parts
from hrl_sarp_jax.envs.obs import MacroObsLayout
from hrl_sarp_jax.envs.params import EnvParams, make_env_params
from hrl_sarp_jax.envs.rewards import buffer_mask, macro_reward, push_return, sector_weights
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.risk.manager import RiskState

_F32 = jnp.float32
_I32 = jnp.int32


@struct.dataclass
class MacroState(environment.EnvState):
    t: jax.Array            # int32 decision day (a week end)
    week: jax.Array         # int32 index into params.week_end_idx
    start: jax.Array        # int32 episode start day
    port: PortfolioState
    risk: RiskState
    ret_buf: jax.Array      # [R] recent weekly net returns, newest last (the reward's)
    ret_count: jax.Array    # int32
    daily_buf: jax.Array    # [R] recent daily net returns, newest last (the risk manager's)
    daily_count: jax.Array  # int32


def week_window(params: EnvParams) -> tuple[jax.Array, jax.Array]:
    """(first, last) week index whose end lies in [start_lo, start_hi] (last >= first)."""
    lo = params.weeks_before[params.start_lo]
    hi = params.weeks_before[params.start_hi + 1] - 1
    return lo, jnp.maximum(hi, lo)


class MacroEnv(common.ObserveOnce, environment.Environment[MacroState, EnvParams]):
    def __init__(self, num_stocks: int, num_sectors: int, sector_features: int, *,
                 return_window: int = 20, allocator: common.PolicyFn | None = None,
                 macro_features: int = NUM_MACRO_FEATURES):
        super().__init__()
        self.num_stocks, self.num_sectors = num_stocks, num_sectors
        self.window, self.allocator = return_window, allocator
        self.layout = MacroObsLayout(num_sectors, sector_features, macro_features)

    # HOST ONLY
    @staticmethod
    def make_params(market, feats, cfg: EnvConfig, **kw) -> EnvParams:
        return make_env_params(market, feats, cfg, weekly=True, **kw)

    def reset_env(self, key, params: EnvParams):
        lo, hi = week_window(params)
        week = jax.random.randint(key, (), lo, hi + 1, _I32)
        t = params.week_end_idx[week]
        port, risk, buf, cnt = initial_parts(params, self.window)
        state = MacroState(time=jnp.zeros((), _I32), t=t, week=week, start=t, port=port,
                           risk=risk, ret_buf=buf, ret_count=cnt, daily_buf=buf,
                           daily_count=cnt)
        return common.macro_obs(port, t, params), state

    def _day(self, carry, k, *, d, length, goal, stock_target, params: EnvParams):
        port, risk, cost, value_ret, growth, bench, wealth, buf, cnt = carry
        day = d + k
        active = k < length
        risk2, expo = common.risk_exposure(risk, port, buf, buffer_mask(buf, cnt), day, params)
        if self.allocator is None:
            target = jnp.where(k == 0, stock_target, port.weights)
        else:
            obs = common.micro_obs(port, goal, day, params)
            raw = common.lock_to_goal(self.allocator(params.policy_params, obs), goal, day,
                                      params)
            target = common.project_stocks(raw, day, expo, params, port.weights)
        port2, info, v = common.trade_day(port, target, day, params)
        net = common.net_return(info)
        buf2, cnt2 = push_return(buf, cnt, net)
        sel = lambda a, b: jnp.where(active, a, b)  # noqa: E731
        new = (jax.tree.map(sel, port2, port), jax.tree.map(sel, risk2, risk),
               sel(cost + info.costs.total, cost),
               sel(value_ret + v, value_ret),
               sel(growth * (1.0 + params.sector_returns[day + 1]), growth),
               sel(bench * (1.0 + params.benchmark_returns[day + 1]), bench),
               sel(wealth * (1.0 + net), wealth), sel(buf2, buf), sel(cnt2, cnt))
        return new, None

    def step_env(self, key, state: MacroState, action, params: EnvParams):
        action = jnp.asarray(action, _F32)
        d, s = state.t, self.num_sectors
        d_next = params.week_end_idx[state.week + 1]
        goal = common.macro_action_to_goal(action, params, state.port.weights)
        call = goal[:s]
        prev_sw = sector_weights(state.port.weights, params.stock_sector, s)
        _, expo = common.risk_exposure(state.risk, state.port, state.daily_buf,
                                       buffer_mask(state.daily_buf, state.daily_count), d, params)
        stock_target = common.project_stocks(
            common.equal_weight_in_sectors(call * expo, d, params), d, expo, params,
            state.port.weights)
        one = jnp.ones((), _F32)
        carry0 = (state.port, state.risk, jnp.zeros((), _F32), jnp.zeros((), _F32),
                  jnp.ones((s,), _F32), one, one, state.daily_buf, state.daily_count)
        day = lambda c, k: self._day(c, k, d=d, length=d_next - d, goal=goal,  # noqa: E731
                                     stock_target=stock_target, params=params)
        (port, risk, cost, value_ret, growth, bench, wealth, dbuf, dcnt), _ = jax.lax.scan(
            day, carry0, jnp.arange(params.max_week_days, dtype=_I32))
        v0 = state.port.value
        week_ret = wealth - 1.0  # = V_end / V_0 - 1 without float32 cancellation
        buf, cnt = push_return(state.ret_buf, state.ret_count, week_ret)
        reward, comps = macro_reward(buf, cnt, call, prev_sw, growth, bench,
                                     common.regime_call(action, s), params.regime_label[d],
                                     cost / v0, value_ret, params.reward)
        new = MacroState(time=state.time + 1, t=d_next, week=state.week + 1, start=state.start,
                         port=port, risk=risk, ret_buf=buf, ret_count=cnt, daily_buf=dbuf,
                         daily_count=dcnt)
        info = {
            "reward_components": comps, "value": port.value, "drawdown": common.drawdown(port),
            "net_return": week_ret, "cost": cost, "cost_frac": cost / v0, "exposure": expo,
            "sector_weights": call, "regime_call": common.regime_call(action, s),
            "regime_label": params.regime_label[d], "goal": goal, "day": d, "next_day": d_next,
            "end_of_data": self._end_of_data(new, params),
        }
        obs = common.macro_obs(port, d_next, params)
        return obs, new, reward, common.is_ruined(port, params), info

    @staticmethod
    def _end_of_data(state: MacroState, params: EnvParams) -> jax.Array:
        return params.week_end_idx[state.week + 1] > params.t_hi

    def is_terminated(self, state: MacroState, params: EnvParams) -> jax.Array:
        return common.is_ruined(state.port, params)

    def is_truncated(self, state: MacroState, params: EnvParams) -> jax.Array:
        return (state.time >= params.max_steps_in_episode) | self._end_of_data(state, params)

    def get_obs(self, state: MacroState, params=None, key=None):
        return common.macro_obs(state.port, state.t, params)

    @property
    def name(self) -> str:
        return "HrlSarpMacro"

    @property
    def num_actions(self) -> int:
        return self.num_sectors + 3

    def action_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.num_sectors + 3,), _F32)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.layout.size,), _F32)
