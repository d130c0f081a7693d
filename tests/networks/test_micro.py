"""Micro actor and twin critics: simplex weights, masking, permutation symmetry, K critics."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from hrl_sarp_jax.networks.micro import MicroActor, MicroCritic, MicroCritics

N, F, G = 6, 5, 6  # 6 stock slots, 5 features, goal = 3 sectors + 3 regimes
MASK = np.array([True, True, False, True, True, False])


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(N, F)).astype(np.float32)
    goal = np.concatenate([rng.dirichlet(np.ones(3)), np.eye(3)[seed % 3]]).astype(np.float32)
    w = np.where(MASK, rng.dirichlet(np.ones(N)), 0.0).astype(np.float32)
    return feats, goal, w / w.sum()


@pytest.fixture(scope="module", params=["original", "lean"])
def net_config(request, tiny_config):
    """The original per-stock layers, and the lean ones (ReLU, no per-stock LayerNorm,
    DeepSets mixer): every symmetry test below holds for both."""
    if request.param == "original":
        return dataclasses.replace(tiny_config, stock_activation="gelu", stock_norm=True,
                                   stock_mixer="attention")
    return dataclasses.replace(tiny_config, stock_activation="relu", stock_norm=False,
                               stock_mixer="deepsets")


@pytest.fixture(scope="module")
def actor(net_config):
    net = MicroActor(net_config)
    feats, goal, _ = _inputs(0)
    params = jax.jit(net.init)(jax.random.key(0, impl="rbg"), feats, goal, MASK)
    head = params["params"]["logit_head"]  # gain 0.01 -> 1: spread the logits apart
    params["params"]["logit_head"] = jax.tree.map(lambda p: p * 100.0, head)
    return jax.jit(net.apply), params


@pytest.fixture(scope="module")
def critics(net_config):
    net = MicroCritics(net_config, num_critics=3)
    feats, goal, w = _inputs(0)
    # rbg keys compile far faster than threefry for these inits (test speed only)
    params = jax.jit(net.init)(jax.random.key(1, impl="rbg"), feats, goal, w, MASK)
    return jax.jit(net.apply), params


def test_actor_weights_are_a_masked_softmax(actor):
    apply, params = actor
    pol = apply(params, *_inputs(1)[:2], MASK)
    w, z = np.asarray(pol.weights), np.asarray(pol.logits)
    np.testing.assert_array_equal(w[~MASK], 0.0)
    np.testing.assert_array_equal(z[~MASK], 0.0)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)
    e = np.exp(z[MASK] - z[MASK].max())
    np.testing.assert_allclose(w[MASK], e / e.sum(), rtol=1e-5)
    assert w[MASK].max() - w[MASK].min() > 1e-3  # not trivially uniform


def test_actor_permutation_equivariance(actor):
    apply, params = actor
    feats, goal, _ = _inputs(2)
    perm = np.array([4, 2, 0, 5, 1, 3])
    pol = apply(params, feats, goal, MASK)
    pol_p = apply(params, feats[perm], goal, MASK[perm])
    np.testing.assert_allclose(pol_p.weights, np.asarray(pol.weights)[perm], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(pol_p.logits, np.asarray(pol.logits)[perm], rtol=1e-5, atol=1e-6)


def test_padded_stocks_are_inert_and_match_the_unpadded_universe(actor, net_config):
    apply, params = actor
    feats, goal, _ = _inputs(3)
    feats2 = feats.copy()
    feats2[~MASK] = 1e3
    pol, pol2 = apply(params, feats, goal, MASK), apply(params, feats2, goal, MASK)
    np.testing.assert_allclose(pol2.weights, pol.weights, rtol=1e-6, atol=1e-7)
    small = MicroActor(net_config).apply(params, feats[MASK], goal, np.ones(4, bool))
    np.testing.assert_allclose(small.weights, np.asarray(pol.weights)[MASK], rtol=1e-5, atol=1e-7)


def test_actor_all_masked_is_zero_not_nan(actor):
    apply, params = actor
    pol = apply(params, *_inputs(4)[:2], np.zeros(N, bool))
    np.testing.assert_array_equal(pol.weights, 0.0)


def test_critic_permutation_invariance_and_masking(critics):
    apply, params = critics
    feats, goal, w = _inputs(5)
    perm = np.array([3, 5, 1, 0, 2, 4])
    q = np.asarray(apply(params, feats, goal, w, MASK))
    np.testing.assert_allclose(apply(params, feats[perm], goal, w[perm], MASK[perm]), q, rtol=1e-5)
    feats2, w2 = feats.copy(), w.copy()
    feats2[~MASK], w2[~MASK] = -7.0, 0.9
    np.testing.assert_allclose(apply(params, feats2, goal, w2, MASK), q, rtol=1e-6)
    # the action matters: moving weight between two valid stocks changes Q
    w3 = w.copy()
    w3[[0, 1]] = w[[0, 1]].sum() * np.array([0.9, 0.1])
    assert np.abs(np.asarray(apply(params, feats, goal, w3, MASK)) - q).min() > 1e-6


def test_three_critics_are_independent(critics, net_config):
    apply, params = critics
    ins = (*_inputs(6), MASK)
    q = np.asarray(apply(params, *ins))
    assert q.shape == (3,) and len(np.unique(np.round(q, 6))) == 3
    stacked = params["params"]["critics"]
    kernels = np.asarray(stacked["head"]["Dense_0"]["kernel"])  # [3, 16, 16]
    assert kernels.shape[0] == 3 and not np.allclose(kernels[0], kernels[1])
    single = jax.jit(MicroCritic(net_config).apply)
    for k in range(3):
        p_k = jax.tree.map(lambda p, k=k: p[k], stacked)
        np.testing.assert_allclose(single({"params": p_k}, *ins), q[k], rtol=1e-5)


def test_default_is_twin_critics(tiny_config):
    feats, goal, w = _inputs(7)
    shapes = jax.eval_shape(MicroCritics(tiny_config).init, jax.random.key(0), feats, goal, w, MASK)
    assert shapes["params"]["critics"]["head"]["Dense_2"]["kernel"].shape == (2, 8, 1)
