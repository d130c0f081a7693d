"""finance layer (see DESIGN.md §2): costs, portfolio accounting and metrics, pure jnp."""

from hrl_sarp_jax.finance.costs import (
    CostBreakdown,
    CostParams,
    cost_params,
    effective_rates,
    trade_costs,
)
from hrl_sarp_jax.finance.portfolio import (
    PortfolioState,
    StepInfo,
    execute_trades,
    init_portfolio,
    portfolio_step,
)

__all__ = [
    "CostBreakdown", "CostParams", "PortfolioState", "StepInfo", "cost_params",
    "effective_rates", "execute_trades", "init_portfolio", "portfolio_step", "trade_costs",
]
