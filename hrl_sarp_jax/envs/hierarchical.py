"""HierarchicalEnv: daily steps; the Macro acts at each calendar week end. One accounting.

Protocol (gymnax 1.0 API, observation and action are dicts):
  obs    = {"macro": [D_M], "micro": [D_m], "is_macro_step": bool}
  action = {"macro": [S+3], "micro": [N]}
Episodes start at a week end, so the first step is a macro step. On a macro step the macro
action becomes the goal (projected sector weights ⊕ regime one-hot) *before* the Micro trades
that day. ``obs["micro"]`` still carries the previous goal, so the caller must act in order:
    a_macro = macro_policy(obs["macro"])
    obs_micro = env.micro_obs_for(obs, a_macro, params)   # goal replaced on macro steps
    a_micro = micro_policy(obs_micro)
On other days action["macro"] is ignored. The returned reward is the Micro reward. A macro
decision's reward is known once its week (or the episode) ends: it is reported on that closing
step in info["macro_reward"] with info["macro_reward_ready"] = True (0 / False otherwise); the
macro transition is (obs["macro"] at the macro step, a_macro, macro_reward, next obs["macro"]
after the closing step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from hrl_sarp_jax.config import EnvConfig
from hrl_sarp_jax.envs import common
from hrl_sarp_jax.envs.macro import week_window
from hrl_sarp_jax.envs.micro import initial_parts
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout
from hrl_sarp_jax.envs.params import EnvParams, make_env_params
from hrl_sarp_jax.envs.rewards import (
    buffer_mask,
    macro_reward,
    micro_reward,
    push_return,
    sector_weights,
)
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.risk.manager import RiskState

_F32 = jnp.float32
_I32 = jnp.int32


@struct.dataclass
class MacroTrack:
    """The open macro decision and its week-to-date outcome."""

    call: jax.Array          # [S] projected sector weights of the decision
    regime: jax.Array        # int32 regime call
    label: jax.Array         # int32 regime_label at the decision day
    prev_sw: jax.Array       # [S] drifted sector weights before the decision
    start_value: jax.Array   # value at the decision, before trading
    cost: jax.Array          # costs paid since the decision
    value_ret: jax.Array     # value-stock return contributions since the decision
    growth: jax.Array        # [S] sector growth since the decision
    bench: jax.Array         # benchmark growth since the decision
    wealth: jax.Array        # prod(1 + daily net return) since the decision
    ret_buf: jax.Array       # [R] weekly net returns, newest last
    ret_count: jax.Array


@struct.dataclass
class HierState(environment.EnvState):
    t: jax.Array
    start: jax.Array
    port: PortfolioState
    risk: RiskState
    ret_buf: jax.Array       # [R] daily net returns, newest last
    ret_count: jax.Array
    goal: jax.Array          # [S+3]
    macro: MacroTrack


class HierarchicalEnv(common.ObserveOnce, environment.Environment[HierState, EnvParams]):
    def __init__(self, num_stocks: int, num_sectors: int, sector_features: int, *,
                 return_window: int = 20, macro_features: int = NUM_MACRO_FEATURES):
        super().__init__()
        self.num_stocks, self.num_sectors, self.window = num_stocks, num_sectors, return_window
        self.micro_layout = MicroObsLayout(num_stocks, num_sectors)
        self.macro_layout = MacroObsLayout(num_sectors, sector_features, macro_features)

    # HOST ONLY
    @staticmethod
    def make_params(market, feats, cfg: EnvConfig, **kw) -> EnvParams:
        """Daily episode length; episodes start at a week end inside the start window."""
        p = make_env_params(market, feats, cfg, weekly=False, **kw)
        lo, hi = int(p.start_lo), int(p.start_hi)
        if not np.asarray(p.week_end)[lo: hi + 1].any():
            raise ConfigError(f"no week end in the start window [{lo}, {hi}]: the Macro could "
                              "never act first")
        return p

    def micro_obs_for(self, obs: dict, macro_action: jax.Array, params: EnvParams) -> jax.Array:
        """obs["micro"] with the goal the macro action sets, on macro steps (single env)."""
        book = self.micro_layout.unflatten(obs["micro"])["weights"]
        goal = common.macro_action_to_goal(jnp.asarray(macro_action, _F32), params, book)
        new = self.micro_layout.set_goal(obs["micro"], goal)
        return jnp.where(obs["is_macro_step"], new, obs["micro"])

    def _obs(self, state: HierState, params: EnvParams) -> dict:
        return {"macro": common.macro_obs(state.port, state.t, params),
                "micro": common.micro_obs(state.port, state.goal, state.t, params),
                "is_macro_step": params.week_end[state.t]}

    def reset_env(self, key, params: EnvParams):
        lo, hi = week_window(params)
        week = jax.random.randint(key, (), lo, hi + 1, _I32)
        t = params.week_end_idx[week]
        port, risk, buf, cnt = initial_parts(params, self.window)
        s = self.num_sectors
        track = MacroTrack(
            call=jnp.zeros((s,), _F32), regime=jnp.zeros((), _I32), label=jnp.zeros((), _I32),
            prev_sw=jnp.zeros((s,), _F32), start_value=port.value, cost=jnp.zeros((), _F32),
            value_ret=jnp.zeros((), _F32), growth=jnp.ones((s,), _F32), bench=jnp.ones((), _F32),
            wealth=jnp.ones((), _F32), ret_buf=jnp.zeros((self.window,), _F32),
            ret_count=jnp.zeros((), _I32))
        state = HierState(time=jnp.zeros((), _I32), t=t, start=t, port=port, risk=risk,
                          ret_buf=buf, ret_count=cnt, goal=params.fixed_goal, macro=track)
        return self._obs(state, params), state

    def step_env(self, key, state: HierState, action, params: EnvParams):
        t, s = state.t, self.num_sectors
        is_macro = params.week_end[t]
        a_macro = jnp.asarray(action["macro"], _F32)
        new_goal = common.macro_action_to_goal(a_macro, params, state.port.weights)
        goal = jnp.where(is_macro, new_goal, state.goal)
        m = state.macro
        opened = MacroTrack(
            call=new_goal[:s], regime=common.regime_call(a_macro, s), label=params.regime_label[t],
            prev_sw=sector_weights(state.port.weights, params.stock_sector, s),
            start_value=state.port.value, cost=jnp.zeros((), _F32), value_ret=jnp.zeros((), _F32),
            growth=jnp.ones((s,), _F32), bench=jnp.ones((), _F32), wealth=jnp.ones((), _F32),
            ret_buf=m.ret_buf,
            ret_count=m.ret_count)
        m = jax.tree.map(lambda a, b: jnp.where(is_macro, a, b), opened, m)

        # the Micro's day (same as MicroEnv.step_env)
        risk, expo = common.risk_exposure(state.risk, state.port, state.ret_buf,
                                          buffer_mask(state.ret_buf, state.ret_count), t, params)
        raw = common.lock_to_goal(jnp.asarray(action["micro"], _F32), goal, t, params)
        target = common.project_stocks(raw, t, expo, params, state.port.weights)
        port, info, value_ret = common.trade_day(state.port, target, t, params)
        net = common.net_return(info)
        buf, cnt = push_return(state.ret_buf, state.ret_count, net)
        achieved = sector_weights(info.executed_weights, params.stock_sector, s)
        r_micro, c_micro = micro_reward(buf, cnt, achieved, goal, info.drawdown, info.cost_frac,
                                        value_ret, params.reward, info.gross_return,
                                        common.sector_ew_return(achieved, t, params), info.turnover)

        # the open week, closed at the next week end or at the end of the episode
        m = m.replace(cost=m.cost + info.costs.total, value_ret=m.value_ret + value_ret,
                      growth=m.growth * (1.0 + params.sector_returns[t + 1]),
                      bench=m.bench * (1.0 + params.benchmark_returns[t + 1]),
                      wealth=m.wealth * (1.0 + net))
        t1, time1 = t + 1, state.time + 1
        terminated = common.is_ruined(port, params)
        done = terminated | (time1 >= params.max_steps_in_episode) | (t1 >= params.t_hi)
        ready = params.week_end[t1] | done
        week_ret = m.wealth - 1.0
        mbuf, mcnt = push_return(m.ret_buf, m.ret_count, week_ret)
        r_macro, c_macro = macro_reward(mbuf, mcnt, m.call, m.prev_sw, m.growth, m.bench,
                                        m.regime, m.label, m.cost / m.start_value, m.value_ret,
                                        params.reward)
        m = m.replace(ret_buf=jnp.where(ready, mbuf, m.ret_buf),
                      ret_count=jnp.where(ready, mcnt, m.ret_count))
        new = HierState(time=time1, t=t1, start=state.start, port=port, risk=risk, ret_buf=buf,
                        ret_count=cnt, goal=goal, macro=m)
        info_out = {
            "is_macro_step": is_macro, "macro_reward_ready": ready,
            "micro_reward": r_micro, "macro_reward": jnp.where(ready, r_macro, 0.0),
            "reward_components": {"micro": c_micro, "macro": c_macro},
            "value": port.value, "drawdown": info.drawdown, "net_return": net,
            "cost": info.costs.total, "cost_frac": info.cost_frac, "exposure": expo,
            "executed_weights": info.executed_weights, "achieved_sector_weights": achieved,
            "goal": goal, "day": t, "end_of_data": t1 >= params.t_hi,
        }
        return self._obs(new, params), new, r_micro, terminated, info_out

    def is_terminated(self, state: HierState, params: EnvParams) -> jax.Array:
        return common.is_ruined(state.port, params)

    def is_truncated(self, state: HierState, params: EnvParams) -> jax.Array:
        return (state.time >= params.max_steps_in_episode) | (state.t >= params.t_hi)

    def get_obs(self, state: HierState, params=None, key=None):
        return self._obs(state, params)

    @property
    def name(self) -> str:
        return "HrlSarpHierarchical"

    @property
    def num_actions(self) -> int:
        return self.num_stocks

    def action_space(self, params=None):
        return spaces.Dict({"macro": spaces.Box(0.0, 1.0, (self.num_sectors + 3,), _F32),
                            "micro": spaces.Box(0.0, 1.0, (self.num_stocks,), _F32)})

    def observation_space(self, params=None):
        return spaces.Dict({
            "macro": spaces.Box(-jnp.inf, jnp.inf, (self.macro_layout.size,), _F32),
            "micro": spaces.Box(-jnp.inf, jnp.inf, (self.micro_layout.size,), _F32),
            "is_macro_step": spaces.Discrete(2)})
