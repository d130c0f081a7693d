"""Masked attention: NumPy reference, masked positions are inert, all-masked is finite, dropout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.networks.attention import MaskedSelfAttention, SetAttentionPool

L, D, DIM, HEADS = 6, 4, 8, 2
MASK = np.array([True, False, True, True, False, True])


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(L, D)).astype(np.float32)


@pytest.fixture(scope="module")
def pool(x):
    net = SetAttentionPool(DIM, HEADS)
    params = jax.jit(net.init)(jax.random.key(0, impl="rbg"), x, MASK)
    params = jax.tree.map(lambda p: p + 0.05, params)  # non-trivial biases and LayerNorm
    return jax.jit(net.apply), params


def _np_attention(p, x, mask):
    def proj(name, t):
        return t @ np.asarray(p[name]["kernel"]) + np.asarray(p[name]["bias"])

    xm = np.where(mask[:, None], x, 0.0)
    qkv = xm @ np.asarray(p["qkv"]["kernel"])  # columns: Q | K | V; no key bias
    bias = (np.asarray(p["query_bias"]), np.zeros(DIM), np.asarray(p["value_bias"]))
    q, k, v = ((qkv[:, i * DIM:(i + 1) * DIM] + bias[i]).reshape(L, HEADS, DIM // HEADS)
               for i in range(3))
    out = np.zeros((L, HEADS, DIM // HEADS))
    for h in range(HEADS):
        logits = q[:, h] @ k[:, h].T / np.sqrt(DIM // HEADS)
        logits = np.where(mask[None, :], logits, -np.inf)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        out[:, h] = (w / w.sum(axis=1, keepdims=True)) @ v[:, h]
    return np.where(mask[:, None], proj("out", out.reshape(L, DIM)), 0.0)


def test_pool_matches_numpy(pool, x):
    apply, params = pool
    p = params["params"]
    a = _np_attention(p["attention"], x, MASK)
    y = np.where(MASK[:, None], x, 0.0) + a
    mu, var = y.mean(-1, keepdims=True), y.var(-1, keepdims=True)
    y = (y - mu) / np.sqrt(var + 1e-6) * np.asarray(p["norm"]["scale"]) + np.asarray(
        p["norm"]["bias"]
    )
    np.testing.assert_allclose(apply(params, x, MASK), y[MASK].mean(0), rtol=1e-5, atol=1e-5)


def test_masked_positions_do_not_influence(pool, x):
    apply, params = pool
    attn = MaskedSelfAttention(DIM, HEADS)
    p_attn = {"params": params["params"]["attention"]}
    x2 = x.copy()
    x2[~MASK] = 1e4
    out, out2 = attn.apply(p_attn, x, MASK), attn.apply(p_attn, x2, MASK)
    np.testing.assert_allclose(out2, out, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out)[~MASK], 0.0)
    np.testing.assert_allclose(apply(params, x2, MASK), apply(params, x, MASK), rtol=1e-6)


def test_all_masked_set_is_zero_and_gradients_finite(pool, x):
    apply, params = pool
    none = np.zeros(L, bool)
    np.testing.assert_array_equal(apply(params, x, none), 0.0)
    g = jax.grad(lambda p, v: jnp.sum(apply(p, v, none) ** 2), argnums=(0, 1))(params, x)
    assert all(bool(jnp.all(jnp.isfinite(t))) for t in jax.tree.leaves(g))


def test_dropout_only_when_not_deterministic(pool, x):
    _, params = pool
    net = SetAttentionPool(DIM, HEADS, dropout=0.5)
    plain = SetAttentionPool(DIM, HEADS).apply(params, x, MASK)
    det = net.apply(params, x, MASK, True)
    np.testing.assert_array_equal(det, plain)
    stoch = net.apply(params, x, MASK, False, rngs={"dropout": jax.random.key(3)})
    assert np.abs(np.asarray(stoch) - np.asarray(plain)).max() > 1e-4


def test_fused_qkv_kernel_starts_as_three_orthogonal_blocks():
    net = MaskedSelfAttention(16, 4)
    p = net.init(jax.random.key(3), jnp.ones((5, 16)), jnp.ones(5, bool))["params"]
    kernel = np.asarray(p["qkv"]["kernel"])
    assert kernel.shape == (16, 48)
    blocks = [kernel[:, i * 16:(i + 1) * 16] for i in range(3)]
    for b in blocks:  # each block orthogonal with gain 1, like a separate Dense would be
        np.testing.assert_allclose(b.T @ b, np.eye(16), atol=1e-5)
    assert not np.allclose(blocks[0], blocks[1])  # independent draws
