"""Macro actor-critic: Dirichlet concentration, masking, equivariance, init gains, dropout."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import GNNConfig
from hrl_sarp_jax.networks.macro import MacroActorCritic

S, F_S, M, P = 5, 3, 4, 2
MASK = np.array([True, True, True, True, False])


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.3, 1.0, (S, S)) * (rng.uniform(size=(S, S)) > 0.3)
    adj = np.triu(w, 1)
    adj = (adj + adj.T + np.eye(S)).astype(np.float32)
    f = np.float32
    return (
        rng.normal(size=M).astype(f),
        rng.normal(size=(S, F_S)).astype(f),
        adj,
        MASK,
        rng.normal(size=P).astype(f),
    )


@pytest.fixture(scope="module")
def model(tiny_config):
    net = MacroActorCritic(tiny_config)
    # rbg keys compile far faster than threefry for an init this size (test speed only)
    params = jax.jit(net.init)(jax.random.key(0, impl="rbg"), *_inputs(0))
    return jax.jit(net.apply, static_argnums=6), params


def test_policy_at_init_matches_the_original_concentration(model):
    apply, params = model
    pol, value = apply(params, *_inputs(1))
    alpha = np.asarray(pol.concentration)
    # sum(alpha) = c + floor * S_valid = 10 + 0.1 * 4
    np.testing.assert_allclose(alpha.sum(), 10.4, rtol=1e-5)
    np.testing.assert_allclose(pol.total_concentration, 10.0, rtol=1e-5)
    assert alpha[4] == 0.0 and pol.mean_weights[4] == 0.0
    np.testing.assert_allclose(pol.mean_weights.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pol.mean_weights[:4], 0.25, atol=0.02)  # gain 0.01 -> near uniform
    assert pol.regime_logits.shape == (3,) and value.shape == ()


def test_concentration_formula_and_learnable_total(model):
    apply, params = model
    pol, _ = apply(params, *_inputs(2))
    z = np.asarray(pol.sector_logits)[:4]
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(pol.concentration[:4], 10.0 * p + 0.1, rtol=1e-5)
    np.testing.assert_allclose(pol.mean_weights[:4], (10.0 * p + 0.1) / 10.4, rtol=1e-5)

    # the total concentration is a parameter: raw = softplus^-1(20) = 20 + log(1 - e^-20)
    raw = np.float32(20.0 + np.log1p(-np.exp(-20.0)))
    p20 = jax.tree_util.tree_map_with_path(
        lambda path, v: raw if "concentration_raw" in jax.tree_util.keystr(path) else v, params
    )
    pol20, _ = apply(p20, *_inputs(2))
    np.testing.assert_allclose(pol20.concentration.sum(), 20.4, rtol=1e-5)
    np.testing.assert_allclose(pol20.mean_weights[:4], (20.0 * p + 0.1) / 20.4, rtol=1e-5)


def _permute_sector_embeddings(params, perm):
    """Rows of every learnable sector-embedding table reordered like the sectors."""
    return jax.tree_util.tree_map_with_path(
        lambda path, v: v[perm] if "sector_embedding" in jax.tree_util.keystr(path) else v, params
    )


def test_sector_permutation(model):
    # Equivariant once the sector-identity embeddings travel with their sectors.
    apply, params = model
    macro, x, adj, mask, port = _inputs(3)
    perm = np.array([2, 4, 0, 3, 1])
    pol, value = apply(params, macro, x, adj, mask, port)
    params_p = _permute_sector_embeddings(params, perm)
    pol_p, value_p = apply(params_p, macro, x[perm], adj[np.ix_(perm, perm)], mask[perm], port)
    for name in ("concentration", "mean_weights", "sector_logits"):
        np.testing.assert_allclose(
            getattr(pol_p, name), np.asarray(getattr(pol, name))[perm], rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(pol_p.regime_logits, pol.regime_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(value_p, value, rtol=1e-5, atol=1e-6)


def test_sector_embedding_lets_the_policy_tell_identical_sectors_apart(model, tiny_config):
    apply, params = model
    macro, x, adj, mask, port = _inputs(5)
    x_same = np.repeat(x[:1], S, axis=0)  # every sector shows the same features
    adj_full = np.ones((S, S), np.float32)
    logits = np.asarray(apply(params, macro, x_same, adj_full, mask, port)[0].sector_logits)[:4]
    assert np.ptp(logits) > 1e-4  # identity is visible through the embedding

    flat = MacroActorCritic(dataclasses.replace(tiny_config, sector_embedding=0))
    p0 = jax.jit(flat.init)(jax.random.key(0, impl="rbg"), *_inputs(0))
    assert "sector_embedding" not in jax.tree_util.keystr(p0)
    logits0 = np.asarray(flat.apply(p0, macro, x_same, adj_full, mask, port)[0].sector_logits)
    np.testing.assert_allclose(logits0[:4], logits0[0], rtol=1e-5, atol=1e-7)  # equivariant


def test_padded_sector_is_inert(model):
    apply, params = model
    macro, x, adj, mask, port = _inputs(4)
    x2, adj2 = x.copy(), adj.copy()
    x2[4] = 50.0
    adj2[4, :] = adj2[:, 4] = 1.0
    out, out2 = apply(params, macro, x, adj, mask, port), apply(params, macro, x2, adj2, mask, port)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(out2), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_segment_impl_same_params_same_outputs(model, tiny_config):
    apply, params = model
    seg_cfg = dataclasses.replace(
        tiny_config, gnn=dataclasses.replace(tiny_config.gnn, impl="segment")
    )
    ins = _inputs(5)
    want = apply(params, *ins)
    got = jax.jit(MacroActorCritic(seg_cfg).apply)(params, *ins)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_vmap_over_batch_equals_single(model):
    apply, params = model
    batch = [_inputs(10), _inputs(11)]
    stacked = [np.stack(xs) for xs in zip(*batch, strict=True)]
    out = jax.vmap(apply, (None, 0, 0, 0, 0, 0, None))(params, *stacked, True)
    for b in range(2):
        single = apply(params, *batch[b])
        for a, c in zip(jax.tree.leaves(single), jax.tree.leaves(out), strict=True):
            np.testing.assert_allclose(c[b], a, rtol=1e-5, atol=1e-6)


def test_orthogonal_init_gains(model):
    _, params = model
    p = params["params"]
    regime = np.asarray(p["actor"]["regime_head"]["kernel"])  # [8, 3]: orthonormal columns x 0.01
    np.testing.assert_allclose(regime.T @ regime, 1e-4 * np.eye(3), atol=1e-9)
    value = np.asarray(p["critic"]["value_head"]["kernel"])  # [8, 1], gain 1
    np.testing.assert_allclose(np.linalg.norm(value), 1.0, rtol=1e-5)
    hidden = np.asarray(p["actor"]["trunk"]["mlp"]["Dense_1"]["kernel"])  # [16, 8], gain sqrt 2
    np.testing.assert_allclose(hidden.T @ hidden, 2.0 * np.eye(8), atol=1e-5)
    assert not np.any(np.asarray(p["actor"]["trunk"]["mlp"]["Dense_0"]["bias"]))


def test_dropout_off_when_deterministic(model, tiny_config):
    apply, params = model
    cfg = dataclasses.replace(
        tiny_config,
        dropout=0.5,
        gnn=GNNConfig(kind="gat", hidden=8, embedding=8, layers=2, heads=2),
    )
    net = MacroActorCritic(cfg)
    ins = _inputs(6)
    want = apply(params, *ins)
    det = net.apply(params, *ins, True)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(det), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    noisy = net.apply(params, *ins, False, rngs={"dropout": jax.random.key(1)})
    assert abs(float(noisy[1]) - float(want[1])) > 1e-6
    assert jnp.isfinite(noisy[0].concentration).all()


# ----------------------------------------------------- networks.macro_allocation: regime_table


def test_regime_table_allocation_is_the_regime_mix_of_the_frozen_rows(tiny_config):
    """The Dirichlet's sector shares are sum_r p_r softmax_valid(L_r) (NumPy by hand), p the
    regime head's softmax; the table gets no gradient, the regime head gets the allocation's;
    the weight-decay mask leaves out the table only."""
    from hrl_sarp_jax.networks.macro import FROZEN_PARAM, MacroActor, decayable

    actor = MacroActor(dataclasses.replace(tiny_config, macro_allocation="regime_table"))
    x = _inputs(3)
    params = actor.init(jax.random.key(1), *x)
    assert np.all(np.asarray(params["params"][FROZEN_PARAM]) == 0.0)  # until Phase 1 writes it
    table = np.array([[2.0, 0.0, -1.0, 0.5, 9.0], [0.0, 3.0, 0.0, 0.0, 9.0],
                      [-1.0, -1.0, 1.0, 2.0, 9.0]], np.float32)  # column 4: a padded sector
    inner = dict(params["params"])
    inner[FROZEN_PARAM] = jnp.asarray(table)
    kernel = dict(inner["regime_head"])
    kernel["bias"] = jnp.array([1.5, -0.5, 0.2], jnp.float32)
    inner["regime_head"] = kernel
    params = {"params": inner}
    pol = actor.apply(params, *x)
    z = np.asarray(pol.regime_logits, np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    rows = np.exp(table[:, :4].astype(np.float64))
    rows /= rows.sum(1, keepdims=True)
    share = p @ rows
    c = float(pol.total_concentration)
    alpha = c * share + 0.1
    np.testing.assert_allclose(pol.concentration[:4], alpha, rtol=1e-5)
    np.testing.assert_allclose(pol.mean_weights[:4], alpha / alpha.sum(), rtol=1e-5)
    assert pol.concentration[4] == 0.0 and pol.mean_weights[4] == 0.0
    assert np.argmax(pol.mean_weights) == 0  # p favours regime 0, whose row favours sector 0

    def first_weight(prm):
        return actor.apply(prm, *x).mean_weights[0]

    grads = jax.grad(first_weight)(params)["params"]
    assert np.all(np.asarray(grads[FROZEN_PARAM]) == 0.0)
    assert np.abs(np.asarray(grads["regime_head"]["bias"])).max() > 1e-3
    mask = decayable(params)["params"]
    assert mask[FROZEN_PARAM] is False and mask["regime_head"]["bias"] is True
    assert "sector_query" not in params["params"]  # the sector head is not built
