"""Flat float32 observation layouts, with named views for the networks and HER.

Macro obs [D_M] (decision at the close of a week end t), in order:
  macro [F_m] (18, or 24 with features.macro_levels; portfolio_drawdown filled by the env) |
  sector [S*F_s] | sector_mask [S] |
  adjacency [S*S] | sector_weights [S] (current, drifted) | portfolio [2] = (cash, drawdown)
Micro obs [D_m] (decision at the close of day t), in order:
  stock [N*22] | stock_mask [N] (tradable at t) | weights [N] (current, drifted) |
  portfolio [2] = (cash, drawdown) | goal [S+3] = sector weights ⊕ regime one-hot
Every view works on batched observations (leading axes are kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from hrl_sarp_jax.features.featureset import NUM_MACRO_FEATURES, NUM_STOCK_FEATURES


def field_slices(sizes: list[tuple[str, int]]) -> dict[str, slice]:
    """Consecutive slices of a flat observation, one per (name, size) in order."""
    out, at = {}, 0
    for name, size in sizes:
        out[name] = slice(at, at + size)
        at += size
    return out


@dataclass(frozen=True)
class MacroObsLayout:
    num_sectors: int
    sector_features: int
    macro_features: int = NUM_MACRO_FEATURES

    @property
    def slices(self) -> dict[str, slice]:
        s = self.num_sectors
        return field_slices([("macro", self.macro_features),
                             ("sector", s * self.sector_features), ("sector_mask", s),
                             ("adjacency", s * s), ("sector_weights", s), ("portfolio", 2)])

    @property
    def size(self) -> int:
        return self.slices["portfolio"].stop

    def unflatten(self, obs: jax.Array) -> dict[str, jax.Array]:
        """Named views: macro [..,F_m], sector [..,S,F_s], sector_mask [..,S] (0/1),
        adjacency [..,S,S], sector_weights [..,S], portfolio [..,2]."""
        sl, s, lead = self.slices, self.num_sectors, obs.shape[:-1]
        v = {k: obs[..., sl[k]] for k in sl}
        v["sector"] = v["sector"].reshape(*lead, s, self.sector_features)
        v["adjacency"] = v["adjacency"].reshape(*lead, s, s)
        return v

    def flatten(self, macro, sector, sector_mask, adjacency, sector_weights,
                portfolio) -> jax.Array:
        """Inverse of ``unflatten`` for one observation."""
        parts = [macro, sector.reshape(-1), sector_mask, adjacency.reshape(-1), sector_weights,
                 portfolio]
        return jnp.concatenate([jnp.asarray(p, jnp.float32).reshape(-1) for p in parts])


@dataclass(frozen=True)
class MicroObsLayout:
    num_stocks: int
    num_sectors: int
    stock_features: int = NUM_STOCK_FEATURES

    @property
    def goal_size(self) -> int:
        return self.num_sectors + 3

    @property
    def slices(self) -> dict[str, slice]:
        n = self.num_stocks
        return field_slices([("stock", n * self.stock_features), ("stock_mask", n),
                             ("weights", n), ("portfolio", 2), ("goal", self.goal_size)])

    @property
    def size(self) -> int:
        return self.slices["goal"].stop

    def unflatten(self, obs: jax.Array) -> dict[str, jax.Array]:
        """Named views: stock [..,N,22], stock_mask [..,N] (0/1), weights [..,N],
        portfolio [..,2], goal [..,S+3]."""
        sl, lead = self.slices, obs.shape[:-1]
        v = {k: obs[..., sl[k]] for k in sl}
        v["stock"] = v["stock"].reshape(*lead, self.num_stocks, self.stock_features)
        return v

    def flatten(self, stock, stock_mask, weights, portfolio, goal) -> jax.Array:
        parts = [stock, stock_mask, weights, portfolio, goal]
        return jnp.concatenate([jnp.asarray(p, jnp.float32).reshape(-1) for p in parts])

    def set_goal(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """obs [.., D_m] with its goal replaced by goal [.., S+3] (HER relabelling)."""
        return obs.at[..., self.slices["goal"]].set(jnp.asarray(goal, obs.dtype))


def set_goal(layout: MicroObsLayout, obs: jax.Array, goal: jax.Array) -> jax.Array:
    """Functional alias of ``MicroObsLayout.set_goal``."""
    return layout.set_goal(obs, goal)
