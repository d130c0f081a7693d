"""envs layer (see DESIGN.md §5): gymnax 1.0 environments over the one accounting core.

MicroEnv (daily, stocks, goal-conditioned), MacroEnv (calendar weeks, sectors, a within-sector
allocator inside), HierarchicalEnv (daily; the Macro acts at week ends). Market and features are
leaves of EnvParams (``make_env_params``); observations are flat float32 vectors described by
``MacroObsLayout`` / ``MicroObsLayout``; rewards are pure functions in ``envs.rewards``;
``envs.reference`` is an independent NumPy implementation used by the parity tests.
"""

from hrl_sarp_jax.envs.common import macro_action_to_goal, sampled_goal
from hrl_sarp_jax.envs.hierarchical import HierarchicalEnv, HierState, MacroTrack
from hrl_sarp_jax.envs.macro import MacroEnv, MacroState
from hrl_sarp_jax.envs.micro import GOAL_SOURCES, MicroEnv, MicroState
from hrl_sarp_jax.envs.obs import MacroObsLayout, MicroObsLayout, set_goal
from hrl_sarp_jax.envs.params import EnvParams, RewardParams, make_env_params, reward_params
from hrl_sarp_jax.envs.rewards import (
    achieved_goal,
    goal_alignment,
    goal_reward,
    macro_reward,
    micro_reward,
    portfolio_reward,
)

__all__ = [
    "GOAL_SOURCES", "EnvParams", "HierState", "HierarchicalEnv", "MacroEnv", "MacroObsLayout",
    "MacroState", "MacroTrack", "MicroEnv", "MicroObsLayout", "MicroState", "RewardParams",
    "achieved_goal", "goal_alignment", "goal_reward", "macro_action_to_goal", "macro_reward",
    "make_env_params", "micro_reward", "portfolio_reward", "reward_params", "sampled_goal",
    "set_goal",
]
