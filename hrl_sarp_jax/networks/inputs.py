"""Glue from features + portfolio state to the actors' named inputs (pure jnp, one example).

Shared by the supervised phases, the RL phases (through the envs' flat observations, see
``*_from_views``) and evaluation, so every consumer feeds the networks the same way.

Macro (``macro_inputs``), at the close of a week end t:
  macro [18]           feature row t with the ``portfolio_drawdown`` slot set to the drawdown
  sector_features      [S, F_s + 1]: sector features ⊕ the current sector weight as an extra node
                       column, expressed as a multiple of the equal share (w_s · S_valid, 1 at
                       equal weight) so it sits on the features' scale. A per-node column keeps
                       the actor permutation-equivariant over sectors.
  adjacency [S, S]     feature row t (the GNN graph)
  sector_mask [S]      bool, sectors the actor may allocate to
  portfolio [2]        (cash, drawdown)
``MacroInputs`` is a NamedTuple in ``MacroActor``'s positional order:
``actor.apply(params, *inputs)``.

Micro (``micro_inputs``), at the close of day t: stock features [N, 22] ⊕ two per-stock
columns -> [N, 24]:
  goal_share   the goal's weight of the stock's *own* sector, as a multiple of the equal
               sector share (g_{s(i)} · S_active, S_active = sectors with a valid stock)
  weight       the stock's current weight as a multiple of the equal share (w_i · N_valid)
Without ``goal_share`` the Micro actor cannot tell which sector a stock is in, so it could
not meet a sector goal (the original's gap); the goal [S+3] itself still goes to the goal
encoder. Masked (padding / untradable) stocks get all-zero rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import jax.numpy as jnp

from hrl_sarp_jax.features.featureset import (
    MACRO_FEATURES,
    NUM_SECTOR_FEATURES,
    NUM_STOCK_FEATURES,
)
from hrl_sarp_jax.types import Array

DRAWDOWN_SLOT = MACRO_FEATURES.index("portfolio_drawdown")  # 17
MACRO_NODE_FEATURES = NUM_SECTOR_FEATURES + 1  # sector features ⊕ current weight
MICRO_STOCK_FEATURES = NUM_STOCK_FEATURES + 2  # stock features ⊕ goal share ⊕ current weight

_F32 = jnp.float32


class MacroInputs(NamedTuple):
    """MacroActor / MacroCritic inputs for one example (leading batch axes when stacked)."""

    macro: Array            # [F_m] (18, or 24 with features.macro_levels)
    sector_features: Array  # [S, F_s + 1]
    adjacency: Array        # [S, S]
    sector_mask: Array      # [S] bool
    portfolio: Array        # [2] (cash, drawdown)


def macro_inputs(
    macro: Array,
    sector_features: Array,
    adjacency: Array,
    sector_mask: Array,
    sector_weights: Array,
    cash: Array | float,
    drawdown: Array | float,
) -> MacroInputs:
    """Named MacroActor inputs at one decision time.

    Args:
      macro: [F_m] macro feature row (its drawdown slot is overwritten).
      sector_features: [S, F_s] sector feature row.
      adjacency: [S, S] sector graph row.
      sector_mask: [S] bool (or 0/1) sectors available to the actor.
      sector_weights: [S] current portfolio weight per sector (fractions of value).
      cash: [] cash weight. drawdown: [] current drawdown (fraction, >= 0).
    """
    mask = jnp.asarray(sector_mask) > 0
    n_valid = jnp.maximum(jnp.sum(mask), 1).astype(_F32)
    dd = jnp.asarray(drawdown, _F32)
    weight_col = jnp.where(mask, jnp.asarray(sector_weights, _F32) * n_valid, 0.0)
    nodes = jnp.concatenate([jnp.asarray(sector_features, _F32), weight_col[:, None]], axis=-1)
    return MacroInputs(
        macro=jnp.asarray(macro, _F32).at[DRAWDOWN_SLOT].set(dd),
        sector_features=jnp.where(mask[:, None], nodes, 0.0),
        adjacency=jnp.asarray(adjacency, _F32),
        sector_mask=mask,
        portfolio=jnp.stack([jnp.asarray(cash, _F32), dd]),
    )


def macro_inputs_from_views(views: Mapping[str, Array]) -> MacroInputs:
    """``macro_inputs`` from the named views of a flat macro observation (one example), i.e.
    ``envs.obs.MacroObsLayout.unflatten(obs)``: keys macro, sector, adjacency, sector_mask,
    sector_weights, portfolio (= cash, drawdown). Use ``jax.vmap`` for batches."""
    portfolio = views["portfolio"]
    return macro_inputs(
        views["macro"], views["sector"], views["adjacency"], views["sector_mask"],
        views["sector_weights"], portfolio[0], portfolio[1],
    )


def micro_inputs(
    stock_features: Array,
    stock_mask: Array,
    stock_sector: Array,
    goal: Array,
    current_weights: Array,
) -> Array:
    """[N, 24] MicroActor stock inputs: features ⊕ own-sector goal share ⊕ current weight.

    Args:
      stock_features: [N, 22]. stock_mask: [N] bool (or 0/1), stocks the actor may hold.
      stock_sector: [N] int32 sector id of each stock. goal: [S+3] sector weights ⊕ regime.
      current_weights: [N] current stock weights (fractions of value).
    """
    mask = jnp.asarray(stock_mask) > 0
    num_sectors = goal.shape[-1] - 3
    sector = jnp.clip(jnp.asarray(stock_sector, jnp.int32), 0, num_sectors - 1)
    active = jnp.zeros(num_sectors, bool).at[sector].max(mask)  # sectors with a valid stock
    s_active = jnp.maximum(jnp.sum(active), 1).astype(_F32)
    n_valid = jnp.maximum(jnp.sum(mask), 1).astype(_F32)
    goal_share = jnp.asarray(goal, _F32)[sector] * s_active
    weight = jnp.asarray(current_weights, _F32) * n_valid
    x = jnp.concatenate(
        [jnp.asarray(stock_features, _F32), goal_share[:, None], weight[:, None]], axis=-1
    )
    return jnp.where(mask[:, None], x, 0.0)


def micro_inputs_from_views(views: Mapping[str, Array], stock_sector: Array) -> Array:
    """``micro_inputs`` from ``envs.obs.MicroObsLayout.unflatten(obs)`` (one example): keys
    stock, stock_mask, weights, goal. The sector map is not part of the observation; pass the
    market's ``stock_sector`` [N]."""
    return micro_inputs(
        views["stock"], views["stock_mask"], stock_sector, views["goal"], views["weights"]
    )
