"""MicroEnv: one step = one trading day over N stocks, goal-conditioned (gymnax 1.0 API).

Action [N]: target stock weights (any reals; projected onto the constraints, never softmaxed).
Goal [S+3] (part of the state and the observation) comes from the goal source, refreshed at
reset and whenever the new day is a calendar week end:
  'fixed'   params.fixed_goal;
  'sampled' Dirichlet(1) sector weights over valid sectors ⊕ uniform regime, from the step key;
  'policy'  a frozen Macro policy: goal_fn(params.policy_params, macro_obs [D_M]) -> action [S+3].
Truncated at max_steps_in_episode or when no next day remains in the split (t >= t_hi);
terminated on ruin / drawdown stop.
For HER, info carries "goal" (the goal the step was rewarded against) and "achieved_goal" [S+3]
= executed sector weights ⊕ one-hot(regime_label[t]); relabel with
r' = r - goal_reward(ach[:S], goal, rp) + goal_reward(ach[:S], g', rp) and layout.set_goal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.obs import MicroObsLayout
from hrl_sarp_jax.envs.params import EnvParams, make_env_params
from hrl_sarp_jax.envs.rewards import (
    achieved_goal,
    buffer_mask,
    micro_reward,
    push_return,
    sector_weights,
)
from hrl_sarp_jax.finance.portfolio import PortfolioState, init_portfolio
from hrl_sarp_jax.risk.manager import RiskState, init_risk_state

_F32 = jnp.float32
_I32 = jnp.int32
GOAL_SOURCES = ("fixed", "sampled", "policy")


@struct.dataclass
class MicroState(environment.EnvState):
    t: jax.Array            # int32 current decision day
    start: jax.Array        # int32 episode start day
    port: PortfolioState
    risk: RiskState
    ret_buf: jax.Array      # [R] recent daily net returns, newest last
    ret_count: jax.Array    # int32
    goal: jax.Array         # [S+3]


def initial_parts(params: EnvParams, window: int):
    """(all-cash portfolio, risk state, empty buffer, count) with strong dtypes."""
    return (init_portfolio(params.num_stocks, params.initial_value), init_risk_state(),
            jnp.zeros((window,), _F32), jnp.zeros((), _I32))


class MicroEnv(common.ObserveOnce, environment.Environment[MicroState, EnvParams]):
    def __init__(self, num_stocks: int, num_sectors: int, *, return_window: int = 20,
                 goal_source: str = "fixed", goal_fn: common.PolicyFn | None = None):
        super().__init__()
        if goal_source not in GOAL_SOURCES:
            raise ValueError(f"goal_source must be one of {GOAL_SOURCES}, got {goal_source!r}")
        if (goal_source == "policy") != (goal_fn is not None):
            raise ValueError("goal_fn is required for goal_source='policy' and only for it")
        self.num_stocks, self.num_sectors = num_stocks, num_sectors
        self.window, self.goal_source, self.goal_fn = return_window, goal_source, goal_fn
        self.layout = MicroObsLayout(num_stocks, num_sectors)

    # HOST ONLY
    @staticmethod
    def make_params(market, feats, cfg: EnvConfig, **kw) -> EnvParams:
        return make_env_params(market, feats, cfg, weekly=False, **kw)

    def _goal(self, key, port, t, params: EnvParams) -> jax.Array:
        if self.goal_source == "fixed":
            return params.fixed_goal
        if self.goal_source == "sampled":
            return common.sampled_goal(key, params)
        action = self.goal_fn(params.policy_params, common.macro_obs(port, t, params))
        return common.macro_action_to_goal(action, params, port.weights)

    def reset_env(self, key, params: EnvParams):
        k_t, k_g = jax.random.split(key)
        t = jax.random.randint(k_t, (), params.start_lo, params.start_hi + 1, _I32)
        port, risk, buf, cnt = initial_parts(params, self.window)
        goal = self._goal(k_g, port, t, params)
        state = MicroState(time=jnp.zeros((), _I32), t=t, start=t, port=port, risk=risk,
                           ret_buf=buf, ret_count=cnt, goal=goal)
        return common.micro_obs(port, goal, t, params), state

    def step_env(self, key, state: MicroState, action, params: EnvParams):
        t = state.t
        risk, expo = common.risk_exposure(state.risk, state.port, state.ret_buf,
                                          buffer_mask(state.ret_buf, state.ret_count), t, params)
        raw = common.lock_to_goal(jnp.asarray(action, _F32), state.goal, t, params)
        target = common.project_stocks(raw, t, expo, params, state.port.weights)
        port, info, value_ret = common.trade_day(state.port, target, t, params)
        net = common.net_return(info)
        buf, cnt = push_return(state.ret_buf, state.ret_count, net)
        achieved = sector_weights(info.executed_weights, params.stock_sector, params.num_sectors)
        reward, comps = micro_reward(buf, cnt, achieved, state.goal, info.drawdown,
                                     info.cost_frac, value_ret, params.reward, info.gross_return,
                                     common.sector_ew_return(achieved, t, params), info.turnover)
        t1 = t + 1
        if self.goal_source == "fixed":
            goal = state.goal
        else:
            goal = jax.lax.cond(params.week_end[t1], lambda: self._goal(key, port, t1, params),
                                lambda: state.goal)
        new = MicroState(time=state.time + 1, t=t1, start=state.start, port=port, risk=risk,
                         ret_buf=buf, ret_count=cnt, goal=goal)
        info_out = {
            "reward_components": comps, "value": port.value, "drawdown": info.drawdown,
            "net_return": net, "gross_return": info.gross_return,
            "cost": info.costs.total, "cost_frac": info.cost_frac, "turnover": info.turnover,
            "exposure": expo, "executed_weights": info.executed_weights,
            "achieved_sector_weights": achieved, "goal": state.goal,
            "achieved_goal": achieved_goal(info.executed_weights, params.stock_sector,
                                           params.num_sectors, params.regime_label[t]),
            "day": t, "end_of_data": t1 >= params.t_hi,
        }
        obs = common.micro_obs(port, goal, t1, params)
        return obs, new, reward, common.is_ruined(port, params), info_out

    def is_terminated(self, state: MicroState, params: EnvParams) -> jax.Array:
        return common.is_ruined(state.port, params)

    def is_truncated(self, state: MicroState, params: EnvParams) -> jax.Array:
        return (state.time >= params.max_steps_in_episode) | (state.t >= params.t_hi)

    def get_obs(self, state: MicroState, params=None, key=None):
        return common.micro_obs(state.port, state.goal, state.t, params)

    @property
    def name(self) -> str:
        return "HrlSarpMicro"

    @property
    def num_actions(self) -> int:
        return self.num_stocks

    def action_space(self, params=None):
        return spaces.Box(0.0, 1.0, (self.num_stocks,), _F32)

    def observation_space(self, params=None):
        return spaces.Box(-jnp.inf, jnp.inf, (self.layout.size,), _F32)
