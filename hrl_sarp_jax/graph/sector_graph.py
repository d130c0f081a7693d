"""Sector graph as a jraph ``GraphsTuple`` with a static topology.

The weighted adjacency itself ([T, S, S], trailing |corr| >= threshold, self loops 1, padding
sectors isolated) is built with the features (``FeatureSet.adjacency``, see features/build.py).
Here one day's adjacency becomes a graph whose edge set is *all* S×S ordered pairs, self edges
included, in a fixed order; absent edges carry weight 0. Shapes therefore never depend on the
data, so the conversion jits once and vmaps over days. jraph's ``GraphConvolution`` ignores
edge weights: message passing must multiply messages by ``edges[:, 0]`` itself.
"""

from __future__ import annotations

import jax.numpy as jnp
import jraph
import numpy as np

from hrl_sarp_jax.errors import HrlSarpError
from hrl_sarp_jax.types import Array


def dense_topology(num_sectors: int) -> tuple[np.ndarray, np.ndarray]:
    """Host-side int32 ``(senders, receivers)`` [S*S]: edge e = s*S + r goes from s to r."""
    if num_sectors < 1:
        raise HrlSarpError(f"a sector graph needs at least one sector, got {num_sectors}")
    senders = np.repeat(np.arange(num_sectors, dtype=np.int32), num_sectors)
    receivers = np.tile(np.arange(num_sectors, dtype=np.int32), num_sectors)
    return senders, receivers


def to_graphs_tuple(adjacency: Array, node_features: Array) -> jraph.GraphsTuple:
    """One day's graph: adjacency [S, S], node_features [S, F] -> GraphsTuple.

    nodes [S, F]; edges [S*S, 1] = ``adjacency[senders, receivers]`` (0 for absent edges);
    n_node [1] = S, n_edge [1] = S*S; no globals. jit- and vmap-friendly (static shapes).
    """
    num_s = adjacency.shape[-1]
    if (
        adjacency.shape != (num_s, num_s)
        or node_features.ndim != 2
        or node_features.shape[0] != num_s
    ):
        raise HrlSarpError(
            f"to_graphs_tuple expects adjacency [S, S] and node_features [S, F]; got "
            f"{tuple(adjacency.shape)} and {tuple(node_features.shape)} (index one day first)"
        )
    senders, receivers = dense_topology(num_s)
    return jraph.GraphsTuple(
        nodes=node_features,
        edges=adjacency.reshape(num_s * num_s, 1).astype(jnp.float32),
        senders=jnp.asarray(senders),
        receivers=jnp.asarray(receivers),
        n_node=jnp.array([num_s], jnp.int32),
        n_edge=jnp.array([num_s * num_s], jnp.int32),
        globals=None,
    )


def edge_list(adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Host-side COO export of the nonzero edges of one [S, S] adjacency (reports, plots).

    Returns int32 senders, int32 receivers and float32 weights, in row-major order.
    """
    adj = np.asarray(adjacency)
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise HrlSarpError(f"edge_list expects one [S, S] adjacency, got shape {adj.shape}")
    senders, receivers = np.nonzero(adj)
    return (
        senders.astype(np.int32),
        receivers.astype(np.int32),
        adj[senders, receivers].astype(np.float32),
    )
