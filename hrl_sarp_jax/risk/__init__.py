"""risk layer (see DESIGN.md §2): constraint projections and the exposure manager."""

from hrl_sarp_jax.risk.constraints import (
    ConstraintParams,
    constraint_params,
    project_capped_simplex,
    project_sector_weights,
    project_weights,
    sector_membership,
)
from hrl_sarp_jax.risk.manager import (
    RiskParams,
    RiskState,
    exposure,
    init_risk_state,
    risk_params,
    tail_cvar,
)

__all__ = [
    "ConstraintParams", "RiskParams", "RiskState", "constraint_params", "exposure",
    "init_risk_state", "project_capped_simplex", "project_sector_weights", "project_weights",
    "risk_params", "sector_membership", "tail_cvar",
]
