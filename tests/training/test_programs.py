"""training.programs: a run-once program compiled at -O0 gives the default level's values;
XLA's flop count read by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.networks.common import orthogonal
from hrl_sarp_jax.training.programs import RUN_ONCE_OPTIONS, compile_ahead, compiled_flops


def _kernels(key):
    """Three orthogonal kernels (hidden, policy and a wide one), as a network's init draws."""
    shapes, gains = [(64, 128), (128, 55), (22, 64)], [1.0, 0.01, 2**0.5]
    keys = jax.random.split(key, len(shapes))
    return [orthogonal(g)(k, s) for g, k, s in zip(gains, keys, shapes, strict=True)]


def test_run_once_options_give_the_optimised_programs_values_within_float_rounding():
    key = jax.random.key(3)
    fast, _, fp_fast = compile_ahead(jax.jit(_kernels), key, compiler_options=RUN_ONCE_OPTIONS)
    full, _, fp_full = compile_ahead(jax.jit(_kernels), key,
                                     compiler_options={"xla_backend_optimization_level": 2})
    assert fp_fast == fp_full  # one lowered program; only XLA's backend differs
    for a, b in zip(fast(key), full(key), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
        small = min(a.shape)  # orthonormal along the short side, scaled by the gain
        gram = a.T @ a if a.shape[0] >= a.shape[1] else a @ a.T
        np.testing.assert_allclose(gram / gram[0, 0], np.eye(small), atol=1e-5)


def test_compiled_flops_counts_a_matmul_by_hand():
    """[8, 16] @ [16, 4]: 8 x 4 outputs of 16 multiply-adds = 2 x 8 x 16 x 4 flops."""
    a, b = jnp.ones((8, 16), jnp.float32), jnp.ones((16, 4), jnp.float32)
    assert compiled_flops(jax.jit(jnp.matmul).lower(a, b).compile()) == 2 * 8 * 16 * 4
