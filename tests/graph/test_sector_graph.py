"""Sector GraphsTuple: static topology, weights from the adjacency, jit/vmap, COO export."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from hrl_sarp_jax.errors import HrlSarpError
from hrl_sarp_jax.graph.sector_graph import dense_topology, edge_list, to_graphs_tuple

ADJ = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.35], [0.0, 0.35, 1.0]], np.float32)
NODES = np.arange(6, dtype=np.float32).reshape(3, 2)


def test_dense_topology_enumerates_all_ordered_pairs():
    s, r = dense_topology(3)
    assert s.dtype == np.int32 and r.dtype == np.int32
    np.testing.assert_array_equal(s, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(r, [0, 1, 2, 0, 1, 2, 0, 1, 2])


def test_edges_carry_adjacency_weights_and_aggregate_like_a_matmul():
    g = to_graphs_tuple(jnp.asarray(ADJ), jnp.asarray(NODES))
    assert isinstance(g, jraph.GraphsTuple)
    assert g.edges.shape == (9, 1) and int(g.n_node[0]) == 3 and int(g.n_edge[0]) == 9
    np.testing.assert_array_equal(np.asarray(g.edges[:, 0]), ADJ.reshape(-1))
    # weighted message passing over the static edge set == dense A^T X
    msgs = g.nodes[g.senders] * g.edges
    agg = jax.ops.segment_sum(msgs, g.receivers, num_segments=3)
    np.testing.assert_allclose(np.asarray(agg), ADJ.T @ NODES, rtol=1e-6)


def test_jit_and_vmap_over_days():
    adj = jnp.stack([jnp.asarray(ADJ), jnp.eye(3)])
    nodes = jnp.stack([jnp.asarray(NODES)] * 2)
    g = jax.jit(jax.vmap(to_graphs_tuple))(adj, nodes)
    assert g.edges.shape == (2, 9, 1)
    np.testing.assert_array_equal(np.asarray(g.edges[1, :, 0]), np.eye(3).reshape(-1))


def test_edge_list_exports_nonzero_edges():
    s, r, w = edge_list(ADJ)
    assert len(s) == 7  # 3 self loops + 4 directed edges
    np.testing.assert_array_equal(w, ADJ[s, r])
    assert w.dtype == np.float32


def test_bad_shapes_are_rejected():
    with pytest.raises(HrlSarpError, match="index one day first"):
        to_graphs_tuple(jnp.zeros((2, 3, 3)), jnp.zeros((3, 2)))
    with pytest.raises(HrlSarpError, match="one \\[S, S\\] adjacency"):
        edge_list(np.zeros((2, 3)))
    with pytest.raises(HrlSarpError, match="at least one sector"):
        dense_topology(0)
