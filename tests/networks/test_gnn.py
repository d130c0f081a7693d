"""Sector GNN: NumPy references, dense == segment, equivariance, edge weights, padding, vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from hrl_sarp_jax.config import GNNConfig
from hrl_sarp_jax.networks.gnn import GATConv, GCNConv, SectorGNN, dense_to_graphs_tuple

S, F = 5, 3
KINDS = ("gcn", "gat")
ALL = np.ones(S, bool)


def _cfg(kind: str, impl: str) -> GNNConfig:
    return GNNConfig(kind=kind, hidden=8, embedding=8, layers=2, heads=2, impl=impl)


def _random_graph(rng: np.random.Generator, s: int = S) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric weights in [0.3, 1] with ~40% of pairs absent (0), self loops 1."""
    w = rng.uniform(0.3, 1.0, (s, s)) * (rng.uniform(size=(s, s)) > 0.4)
    a = np.triu(w, 1)
    a = a + a.T + np.eye(s)
    return rng.normal(size=(s, F)).astype(np.float32), a.astype(np.float32)


@pytest.fixture(scope="module")
def graph():
    return _random_graph(np.random.default_rng(0))


@pytest.fixture(scope="module")
def nets(graph):
    """kind -> (jitted dense apply, jitted segment apply, shared params); masks always given."""
    x, a = graph
    out = {}
    for i, kind in enumerate(KINDS):
        dense_net = SectorGNN(_cfg(kind, "dense"))
        params = jax.jit(dense_net.init)(jax.random.key(i, impl="rbg"), x, a, ALL)
        seg_apply = jax.jit(SectorGNN(_cfg(kind, "segment")).apply)
        out[kind] = (jax.jit(dense_net.apply), seg_apply, params)
    return out


def _gt(a: np.ndarray, x: np.ndarray) -> jraph.GraphsTuple:
    return dense_to_graphs_tuple(jnp.asarray(a), jnp.asarray(x))


def test_dense_to_graphs_tuple_edge_layout():
    a = jnp.arange(9, dtype=jnp.float32).reshape(3, 3)
    g = dense_to_graphs_tuple(a, jnp.zeros((3, 2), jnp.float32))
    np.testing.assert_array_equal(g.receivers, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(g.senders, [0, 1, 2, 0, 1, 2, 0, 1, 2])
    # edge (s -> r) carries a[r, s]
    np.testing.assert_array_equal(g.edges, np.asarray(a)[g.receivers, g.senders])
    assert g.senders.dtype == jnp.int32 and g.n_edge[0] == 9 and g.n_node[0] == 3


def test_gcn_conv_matches_numpy(graph):
    x, a = graph
    layer = GCNConv(4)
    mask = jnp.ones(S, bool)
    params = layer.init(jax.random.key(1), x, a, mask)
    out = layer.apply(params, x, a, mask)
    w = np.asarray(params["params"]["linear"]["kernel"])
    b = np.asarray(params["params"]["bias"])
    deg = a.sum(axis=1)
    a_hat = a / np.sqrt(deg[:, None] * deg[None, :])
    np.testing.assert_allclose(out, a_hat @ x @ w + b, rtol=1e-5, atol=1e-5)


def test_gat_conv_matches_numpy(graph):
    x, a = graph
    heads, f = 2, 3
    mask = jnp.ones(S, bool)
    layer = GATConv(f, heads, concat=True)
    params = layer.init(jax.random.key(2), x, a, mask, True)["params"]
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero bias too
    out = np.asarray(layer.apply({"params": params}, x, a, mask, True))
    h = (x @ np.asarray(params["linear"]["kernel"])).reshape(S, heads, f)
    want = np.zeros((S, heads, f))
    for k in range(heads):
        for i in range(S):
            e = np.array(
                [
                    h[i, k] @ params["att_receiver"][k] + h[j, k] @ params["att_sender"][k]
                    for j in range(S)
                ]
            )
            e = np.where(e > 0, e, 0.2 * e)
            nbr = a[i] > 0
            z = np.exp(e[nbr] + np.log(a[i, nbr]) - (e[nbr] + np.log(a[i, nbr])).max())
            want[i, k] = (z / z.sum()) @ h[nbr, k]
    want = want.reshape(S, heads * f) + np.asarray(params["bias"])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_dense_equals_segment(nets, graph, kind):
    dense_net, seg_net, params = nets[kind]
    x, a = graph
    mask = jnp.array([True, True, False, True, True])
    want = dense_net(params, x, a, mask)
    got_all_pairs = seg_net(params, x, _gt(a, x), mask)
    np.testing.assert_allclose(got_all_pairs, want, rtol=1e-5, atol=1e-5)
    # a genuinely sparse GraphsTuple (only the non-zero edges) gives the same result
    r, s = np.nonzero(a)
    sparse = jraph.GraphsTuple(
        nodes=x,
        edges=jnp.asarray(a[r, s]),
        senders=jnp.asarray(s, jnp.int32),
        receivers=jnp.asarray(r, jnp.int32),
        n_node=jnp.array([S]),
        n_edge=jnp.array([len(r)]),
        globals=None,
    )
    np.testing.assert_allclose(seg_net(params, x, sparse, mask), want, rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(want)).sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_permutation_equivariance(nets, graph, kind):
    dense_net, _, params = nets[kind]
    x, a = graph
    perm = np.array([3, 0, 4, 1, 2])
    out = np.asarray(dense_net(params, x, a, ALL))
    out_perm = dense_net(params, x[perm], a[np.ix_(perm, perm)], ALL)
    np.testing.assert_allclose(out_perm, out[perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_edge_weights_matter(nets, graph, kind):
    dense_net, seg_net, params = nets[kind]
    x, a = graph
    i, j = np.argwhere(np.triu(a, 1) > 0)[0]
    b = a.copy()
    b[i, j] = b[j, i] = a[i, j] * 0.3  # same topology, different weight
    outs = [dense_net(params, x, a, ALL), dense_net(params, x, b, ALL)]
    outs += [seg_net(params, x, _gt(a, x), ALL), seg_net(params, x, _gt(b, x), ALL)]
    for before, after in (outs[:2], outs[2:]):
        assert np.abs(np.asarray(before) - np.asarray(after))[[i, j]].max() > 1e-4


@pytest.mark.parametrize("kind", KINDS)
def test_padded_node_is_isolated_and_zero(nets, graph, kind):
    dense_net, seg_net, params = nets[kind]
    x, a = graph
    want = np.asarray(dense_net(params, x[:4], a[:4, :4], ALL[:4]))  # the 4-node graph
    x_pad = x.copy()
    x_pad[4] = 1e3  # garbage features and edges on the padded node
    a_pad = a.copy()
    a_pad[4, :] = a_pad[:, 4] = 0.9
    mask = jnp.array([True] * 4 + [False])
    for got in (dense_net(params, x_pad, a_pad, mask), seg_net(params, x_pad, _gt(a_pad, x), mask)):
        got = np.asarray(got)
        np.testing.assert_allclose(got[:4], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(got[4], 0.0)


def test_gat_gradients_finite_with_padding_and_zero_edges(nets, graph):
    _, seg_net, params = nets["gat"]
    x, a = graph
    mask = jnp.array([True, True, True, True, False])

    @jax.jit
    def grads(p, adj):
        return jax.grad(lambda p, adj: jnp.sum(seg_net(p, x, _gt(adj, x), mask) ** 2), (0, 1))(
            p, adj
        )

    gp, ga = grads(params, jnp.asarray(a))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(gp))
    assert bool(jnp.all(jnp.isfinite(ga)))
    assert float(jnp.abs(ga).sum()) > 0  # the loss depends on the edge weights


def test_vmap_equals_per_graph(nets):
    rng = np.random.default_rng(5)
    xs, adjs = map(np.stack, zip(*[_random_graph(rng) for _ in range(3)], strict=True))
    masks = np.ones((3, S), bool)
    masks[1, 3:] = False
    dense_net, seg_net, params = nets["gat"]  # GAT uses every gather / segment op GCN does
    graphs = jax.vmap(dense_to_graphs_tuple)(jnp.asarray(adjs), jnp.asarray(xs))
    batched_dense = jax.jit(jax.vmap(dense_net, (None, 0, 0, 0)))(params, xs, adjs, masks)
    batched_seg = jax.jit(jax.vmap(seg_net, (None, 0, 0, 0)))(params, xs, graphs, masks)
    for b in range(3):
        want = dense_net(params, xs[b], adjs[b], masks[b])
        np.testing.assert_allclose(batched_dense[b], want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batched_seg[b], want, rtol=1e-5, atol=1e-5)


def test_bad_config_is_a_clear_error(graph):
    x, a = graph
    with pytest.raises(ValueError, match="divisible by heads"):
        SectorGNN(GNNConfig(kind="gat", hidden=6, heads=4)).init(jax.random.key(0), x, a)
    with pytest.raises(ValueError, match="kind"):
        SectorGNN(GNNConfig(kind="gin")).init(jax.random.key(0), x, a)
    with pytest.raises(ValueError, match="impl"):
        SectorGNN(GNNConfig(impl="sparse")).init(jax.random.key(0), x, a)
    with pytest.raises(TypeError, match="segment"):
        SectorGNN(GNNConfig()).init(jax.random.key(0), x, dense_to_graphs_tuple(a, x))
