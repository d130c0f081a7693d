"""networks layer (see DESIGN.md §2): Flax linen modules for one example; vmap for batches."""

from hrl_sarp_jax.networks.attention import MaskedSelfAttention, SetAttentionPool
from hrl_sarp_jax.networks.common import MLP, masked_mean, masked_softmax, param_count
from hrl_sarp_jax.networks.gnn import GATConv, GCNConv, SectorGNN, dense_to_graphs_tuple
from hrl_sarp_jax.networks.macro import (
    MacroActor,
    MacroActorCritic,
    MacroCritic,
    MacroPolicy,
    MacroTrunk,
)
from hrl_sarp_jax.networks.micro import (
    GoalEncoder,
    MicroActor,
    MicroCritic,
    MicroCritics,
    MicroPolicy,
)

__all__ = [
    "MLP",
    "GATConv",
    "GCNConv",
    "GoalEncoder",
    "MacroActor",
    "MacroActorCritic",
    "MacroCritic",
    "MacroPolicy",
    "MacroTrunk",
    "MaskedSelfAttention",
    "MicroActor",
    "MicroCritic",
    "MicroCritics",
    "MicroPolicy",
    "SectorGNN",
    "SetAttentionPool",
    "dense_to_graphs_tuple",
    "masked_mean",
    "masked_softmax",
    "param_count",
]
