"""training.programs: a run-once program compiled at -O0 gives the default level's values;
XLA's flop count read by hand; a program asked for again is the same traced program."""

from __future__ import annotations

import dataclasses

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


def test_jit_once_traces_a_program_once_per_owner_and_axes():
    """The same (owner, tag, axes) gives the same jit object, so a second compile_ahead with
    the same shapes neither traces nor compiles again (the traced Python body runs once);
    another owner or other axes get their own program."""
    from hrl_sarp_jax.training.programs import jit_once

    traced, built = [], []

    class Owner:
        pass

    def body(x):
        traced.append(1)  # runs when JAX traces the function, not when the executable runs
        return jnp.sin(x) * 2.0

    def build():
        built.append(1)
        return jax.jit(jax.vmap(body))

    a, b = Owner(), Owner()
    x = jnp.arange(6.0).reshape(3, 2)
    first = jit_once(a, "chunk", (0, None), build)
    exe1, _, fp1 = compile_ahead(first, x)
    again = jit_once(a, "chunk", (0, None), build)
    exe2, _, fp2 = compile_ahead(again, x)
    assert again is first and len(built) == 1 and len(traced) == 1 and fp1 == fp2
    np.testing.assert_array_equal(np.asarray(exe1(x)), np.asarray(exe2(x)))
    np.testing.assert_allclose(np.asarray(exe2(x)), 2.0 * np.sin(np.asarray(x)), rtol=1e-6)
    assert jit_once(b, "chunk", (0, None), build) is not first
    assert jit_once(a, "chunk", (1, None), build) is not first
    assert jit_once(a, "evaluate", (0, None), build) is not first
    assert len(built) == 4


def test_phase5_asks_for_phase4s_own_programs(smoke_market):
    """setup_phase4 twice with the same statics (Phase 4, then Phase 5's Micro block) builds
    one Phase4 and one set of jitted programs: Phase 5 runs Phase 4's traced executables."""
    from hrl_sarp_jax.training import rl_micro

    _, market, meta, feats, cfg = smoke_market
    one = rl_micro.setup_phase4(cfg, market, meta, feats)
    two = rl_micro.setup_phase4(cfg, market, meta, feats)
    assert two.p4 is one.p4
    progs1 = rl_micro.seed_programs(one.p4, one.train_params)
    progs2 = rl_micro.seed_programs(two.p4, two.train_params)
    assert all(progs2[name] is progs1[name] for name in ("init", "chunk", "evaluate"))
    other = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, td3=dataclasses.replace(cfg.train.td3, batch_size=8)))
    assert rl_micro.setup_phase4(other, market, meta, feats).p4 is not one.p4
