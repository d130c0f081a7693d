"""Sector GNN over the weekly sector graph (original §4.7), with weighted GCN and GAT layers.

One example is one graph of S sectors: node features [S, F], weighted adjacency [S, S] with
``adjacency[r, s]`` the weight of the edge s -> r (self loops included by the graph builder;
the correlation graph is symmetric) and a node mask [S] (False = padding). Two
implementations share the same parameters:

- ``impl='dense'``: adjacency matmuls and a masked softmax over [S, S] (fast for small S);
- ``impl='segment'``: a ``jraph.GraphsTuple`` (``edges`` = weights [E]) and
  ``jax.ops.segment_sum`` message passing with ``num_segments = S`` static.

Edges of weight 0 contribute nothing. Padded nodes are isolated and output exactly 0.
Unlike ``jraph.GraphConvolution``, both layers honour edge weights.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from hrl_sarp_jax.config import GNNConfig
from hrl_sarp_jax.networks.common import dense, masked_softmax
from hrl_sarp_jax.types import Array

Graph = Array | jraph.GraphsTuple
"""A dense adjacency [S, S] or a GraphsTuple with ``edges`` [E] weights."""

_glorot = nn.initializers.xavier_uniform(dtype=jnp.float32)


def dense_to_graphs_tuple(adjacency: Array, node_features: Array) -> jraph.GraphsTuple:
    """All S*S pairs as edges (static shapes, jittable); edge k = (s, r) has weight A[r, s].

    Args:
      adjacency: [S, S] float, ``adjacency[r, s]`` = weight of edge s -> r.
      node_features: [S, F].
    Returns:
      GraphsTuple with nodes [S, F], edges [S*S], senders/receivers [S*S] int32 (sorted by
      receiver), n_node [1], n_edge [1], globals None.
    """
    s = adjacency.shape[-1]
    idx = jnp.arange(s, dtype=jnp.int32)
    return jraph.GraphsTuple(
        nodes=node_features,
        edges=adjacency.reshape(s * s),
        senders=jnp.tile(idx, s),
        receivers=jnp.repeat(idx, s),
        n_node=jnp.array([s], jnp.int32),
        n_edge=jnp.array([s * s], jnp.int32),
        globals=None,
    )


def _masked_weights(graph: Graph, node_mask: Array) -> Array:
    """Edge weights with every edge touching a padded node zeroed: [S, S] or [E]."""
    if isinstance(graph, jraph.GraphsTuple):
        keep = node_mask[graph.senders] & node_mask[graph.receivers]
        return jnp.where(keep, graph.edges.reshape(-1), 0.0)
    return jnp.where(node_mask[:, None] & node_mask[None, :], graph, 0.0)


def _safe_rsqrt(deg: Array) -> Array:
    return jnp.where(deg > 0, jax.lax.rsqrt(jnp.where(deg > 0, deg, 1.0)), 0.0)


def _safe_log(w: Array) -> Array:
    # The inner where keeps d/dw log finite at w = 0 (those entries are masked anyway).
    return jnp.log(jnp.where(w > 0, w, 1.0))


def _segment_masked_softmax(logits: Array, valid: Array, segment_ids: Array, n: int) -> Array:
    """Softmax of logits [E, H] within each receiver segment over ``valid`` [E] edges."""
    valid = valid[:, None]
    peak = jax.ops.segment_max(jnp.where(valid, logits, -jnp.inf), segment_ids, num_segments=n)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
    e = jnp.exp(jnp.where(valid, logits - peak[segment_ids], -jnp.inf))
    total = jax.ops.segment_sum(e, segment_ids, num_segments=n)
    return e / jnp.where(total > 0, total, 1.0)[segment_ids]


class GCNConv(nn.Module):
    """H' = D^-1/2 A D^-1/2 H W + b, with A the (masked) weighted adjacency incl. self loops.

    [S, F] -> [S, features]. Degrees are weighted in-degrees (row sums of A).
    """

    features: int

    @nn.compact
    def __call__(self, h: Array, graph: Graph, node_mask: Array) -> Array:
        hw = nn.Dense(self.features, use_bias=False, kernel_init=_glorot, name="linear")(h)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        n = h.shape[0]
        w = _masked_weights(graph, node_mask)
        if isinstance(graph, jraph.GraphsTuple):
            snd, rcv = graph.senders, graph.receivers
            inv = _safe_rsqrt(jax.ops.segment_sum(w, rcv, num_segments=n))
            coef = w * inv[snd] * inv[rcv]
            out = jax.ops.segment_sum(hw[snd] * coef[:, None], rcv, num_segments=n)
        else:
            inv = _safe_rsqrt(jnp.sum(w, axis=1))
            out = (inv[:, None] * w * inv[None, :]) @ hw
        return out + bias


class GATConv(nn.Module):
    """Multi-head graph attention that honours edge weights.

    e_ij = leaky_relu_0.2(a_recv · h_i + a_send · h_j) + log w_ij for receiver i, neighbour j;
    softmax over j with w_ij > 0 (the original's a_src / a_dst are a_recv / a_send here).
    [S, F] -> [S, heads * features] if ``concat`` else [S, features] (mean over heads).
    """

    features: int
    heads: int
    concat: bool
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, graph: Graph, node_mask: Array, deterministic: bool) -> Array:
        n, k, f = x.shape[0], self.heads, self.features
        h = nn.Dense(k * f, use_bias=False, kernel_init=_glorot, name="linear")(x)
        h = h.reshape(n, k, f)  # [S, heads, F']
        a_recv = self.param("att_receiver", _glorot, (k, f), jnp.float32)
        a_send = self.param("att_sender", _glorot, (k, f), jnp.float32)
        out_dim = k * f if self.concat else f
        bias = self.param("bias", nn.initializers.zeros, (out_dim,), jnp.float32)
        score_r = jnp.einsum("shf,hf->sh", h, a_recv)  # [S, heads]
        score_s = jnp.einsum("shf,hf->sh", h, a_send)
        w = _masked_weights(graph, node_mask)
        drop = nn.Dropout(self.dropout)
        if isinstance(graph, jraph.GraphsTuple):
            snd, rcv = graph.senders, graph.receivers
            logits = nn.leaky_relu(score_r[rcv] + score_s[snd], 0.2) + _safe_log(w)[:, None]
            att = _segment_masked_softmax(logits, w > 0, rcv, n)  # [E, heads]
            att = drop(att, deterministic=deterministic)
            out = jax.ops.segment_sum(att[:, :, None] * h[snd], rcv, num_segments=n)
        else:
            logits = nn.leaky_relu(score_r.T[:, :, None] + score_s.T[:, None, :], 0.2)
            logits = logits + _safe_log(w)[None]  # [heads, S_recv, S_send]
            att = masked_softmax(logits, (w > 0)[None])
            att = drop(att, deterministic=deterministic)
            out = jnp.einsum("hij,jhf->ihf", att, h)
        out = out.reshape(n, k * f) if self.concat else jnp.mean(out, axis=1)
        return out + bias


class SectorGNN(nn.Module):
    """Stack per original §4.7: (layers - 1) hidden layers of width ``hidden`` and a final layer
    of width ``embedding``; each layer -> LayerNorm (-> ReLU -> dropout if hidden), plus a
    residual where widths match; then a per-node readout Dense -> ReLU -> Dense.

    Args (call):
      node_features: [S, F].
      graph: adjacency [S, S] (impl 'dense' or 'segment') or a GraphsTuple over the same S
        nodes (impl 'segment'; its ``nodes`` are ignored, ``edges`` are weights [E]).
      node_mask: [S] bool or None (all real).
    Returns:
      [S, embedding] node embeddings, exactly 0 on padded nodes.
    """

    config: GNNConfig
    dropout: float = 0.0

    @nn.compact
    def __call__(
        self,
        node_features: Array,
        graph: Graph,
        node_mask: Array | None = None,
        deterministic: bool = True,
    ) -> Array:
        cfg = self.config
        if cfg.kind not in ("gcn", "gat"):
            raise ValueError(f"GNNConfig.kind must be 'gcn' or 'gat', got {cfg.kind!r}")
        if cfg.layers < 1:
            raise ValueError(f"GNNConfig.layers must be >= 1, got {cfg.layers}")
        if cfg.kind == "gat" and cfg.hidden % cfg.heads:
            raise ValueError(f"GAT needs hidden ({cfg.hidden}) divisible by heads ({cfg.heads})")
        n = node_features.shape[0]
        mask = jnp.ones((n,), bool) if node_mask is None else node_mask.astype(bool)
        graph = self._prepare(graph, node_features)
        keep = mask[:, None]
        h = jnp.where(keep, node_features.astype(jnp.float32), 0.0)
        for i in range(cfg.layers):
            last = i == cfg.layers - 1
            width = cfg.embedding if last else cfg.hidden
            if cfg.kind == "gcn":
                out = GCNConv(width, name=f"conv_{i}")(h, graph, mask)
            else:
                per_head = width if last else width // cfg.heads
                conv = GATConv(per_head, cfg.heads, not last, self.dropout, name=f"conv_{i}")
                out = conv(h, graph, mask, deterministic)
            out = nn.LayerNorm(param_dtype=jnp.float32, name=f"norm_{i}")(out)
            if not last:
                out = nn.Dropout(self.dropout)(nn.relu(out), deterministic=deterministic)
            if out.shape[-1] == h.shape[-1]:
                out = out + h
            h = jnp.where(keep, out, 0.0)
        h = nn.relu(dense(cfg.embedding, name="readout_0")(h))
        h = dense(cfg.embedding, name="readout_1")(h)
        return jnp.where(keep, h, 0.0)

    def _prepare(self, graph: Graph, node_features: Array) -> Graph:
        n = node_features.shape[0]
        if not isinstance(graph, jraph.GraphsTuple) and graph.shape != (n, n):
            raise ValueError(f"adjacency shape {graph.shape} != ({n}, {n}) for {n} nodes")
        if self.config.impl == "dense":
            if isinstance(graph, jraph.GraphsTuple):
                raise TypeError(
                    "impl='dense' takes an adjacency [S, S]; use impl='segment' for a GraphsTuple"
                )
            return graph.astype(jnp.float32)
        if self.config.impl == "segment":
            if not isinstance(graph, jraph.GraphsTuple):
                graph = dense_to_graphs_tuple(graph, node_features)
            return graph._replace(edges=graph.edges.reshape(-1).astype(jnp.float32))
        raise ValueError(f"GNNConfig.impl must be 'dense' or 'segment', got {self.config.impl!r}")
