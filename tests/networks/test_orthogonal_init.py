"""The LAPACK-free orthogonal initialiser equals flax's and stays LAPACK-free under vmap."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.networks.common import orthogonal, orthonormal_columns


@pytest.mark.parametrize("shape", [(24, 64), (64, 24), (32, 32), (8, 1), (1, 8), (3, 4, 5)])
def test_same_matrix_as_flax_orthogonal(shape):
    key = jax.random.key(11)
    ours = orthogonal(1.4)(key, shape)
    ref = nn.initializers.orthogonal(scale=1.4, dtype=jnp.float32)(key, shape)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)  # float32 round-off of two QR algorithms


def test_columns_are_orthonormal_with_positive_r_diagonal():
    z = jax.random.normal(jax.random.key(0), (50, 20))
    q = np.asarray(orthonormal_columns(z), np.float64)
    np.testing.assert_allclose(q.T @ q, np.eye(20), atol=1e-5)
    r = q.T @ np.asarray(z, np.float64)         # z = q r with r upper triangular
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-4)
    assert np.all(np.diag(r) > 0)


def test_vmapped_init_has_no_lapack_call():
    f = jax.vmap(lambda k: orthogonal(1.0)(k, (16, 8)))
    text = str(jax.make_jaxpr(f)(jax.random.split(jax.random.key(0), 3)))
    assert not re.search(r"\bqr\b|householder|geqrf", text)


def test_the_loop_body_is_traced_once_for_layers_of_one_shape(monkeypatch):
    """Restore templates trace every layer's init (under eval_shape): the Gram-Schmidt loop
    body is one module-level function, so layers of one shape share its trace (a closure
    defined per call was traced again for each layer)."""
    from hrl_sarp_jax.networks import common

    traced = []
    body = common._orthogonalise_column

    def counting(j, q):
        traced.append(q.shape)
        return body(j, q)

    monkeypatch.setattr(common, "_orthogonalise_column", counting)
    init = orthogonal(1.0)
    for seed in range(3):
        jax.eval_shape(lambda k: init(k, (16, 8)), jax.random.key(seed))
    jax.eval_shape(lambda k: init(k, (12, 8)), jax.random.key(0))
    assert traced == [(16, 8), (12, 8)]
