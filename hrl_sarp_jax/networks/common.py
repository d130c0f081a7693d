"""Shared building blocks: initialisers, masked reductions, the LayerNorm-GELU MLP.

Modules in this package take ONE example (no batch axis); callers add batch axes with
``jax.vmap(model.apply, in_axes=(None, 0, ...))``. Masks are bool, True = real entry.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from hrl_sarp_jax.types import Array

SQRT2 = 1.4142135623730951


def orthonormal_columns(z: Array) -> Array:
    """Q of the thin QR of ``z`` [M, N] (M >= N) with a positive diagonal of R: Gram-Schmidt,
    each column orthogonalised twice ("twice is enough"), in plain array ops.

    Why not ``jnp.linalg.qr``: under ``vmap`` (K seeds, K critics) it becomes a batched LAPACK
    call that jaxlib 0.10.2 parallelises over the CPU's intra-op thread pool from inside that
    same pool; two such calls running at once on a 2-thread pool wait on each other forever
    (observed: every worker parked, ``jax::ParallelBatchMap`` in ``BlockingCounter::Wait``).
    """
    return jax.lax.fori_loop(0, z.shape[1], _orthogonalise_column, z)


def _orthogonalise_column(j: Array, q: Array) -> Array:
    """Column j of q [M, N] made orthonormal to columns 0..j-1 (two passes). A module-level
    function, so the loop body's trace is cached across every layer an init builds (a closure
    per call was traced again for each of them: 173 traces in one evaluation)."""
    v = q[:, j]
    earlier = (jnp.arange(q.shape[1]) < j).astype(q.dtype)
    for _ in range(2):
        v = v - q @ ((q.T @ v) * earlier)
    return q.at[:, j].set(v / jnp.linalg.norm(v))


def orthogonal(gain: float) -> nn.initializers.Initializer:
    """Orthogonal kernel initialiser scaled by ``gain`` (PPO convention: √2 hidden, 0.01 policy).

    Same draw and same matrix as ``nn.initializers.orthogonal(scale=gain)`` (Q of the QR of a
    normal matrix, signs fixed by R's diagonal; a test compares them) but LAPACK-free, see
    ``orthonormal_columns``.
    """

    def init(key: Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> Array:
        if len(shape) < 2:
            raise ValueError(f"orthogonal initialiser needs a 2D+ shape, got {tuple(shape)}")
        n_cols = int(shape[-1])
        n_rows = int(math.prod(shape)) // n_cols
        big, small = max(n_rows, n_cols), min(n_rows, n_cols)
        z = jax.random.normal(key, (big, small), jnp.float32)
        q = orthonormal_columns(z)
        q = q.T if n_rows < n_cols else q
        return (jnp.float32(gain) * q.reshape(shape)).astype(dtype)

    return init


def dense(features: int, gain: float = SQRT2, name: str | None = None) -> nn.Dense:
    """``nn.Dense`` with orthogonal(gain) kernel, zero bias, float32 params."""
    return nn.Dense(
        features,
        kernel_init=orthogonal(gain),
        bias_init=nn.initializers.zeros,
        param_dtype=jnp.float32,
        name=name,
    )


def masked_softmax(logits: Array, mask: Array, axis: int = -1) -> Array:
    """Softmax over ``axis`` restricted to ``mask``; masked entries get exactly 0.

    An all-masked slice returns all zeros (never NaN), also in the gradient.
    """
    neg = jnp.where(mask, logits, -jnp.inf)
    peak = jnp.max(neg, axis=axis, keepdims=True)
    peak = jax.lax.stop_gradient(jnp.where(jnp.isfinite(peak), peak, 0.0))
    # exp(-inf) = 0 with a zero derivative, so masked slots cannot leak NaN into gradients.
    e = jnp.exp(jnp.where(mask, logits - peak, -jnp.inf))
    total = jnp.sum(e, axis=axis, keepdims=True)
    return e / jnp.where(total > 0, total, 1.0)


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of ``x`` [L, H] over rows where ``mask`` [L] is True -> [H]; zeros if none."""
    m = mask.astype(x.dtype)[:, None]
    return jnp.sum(jnp.where(mask[:, None], x, 0.0), axis=0) / jnp.maximum(jnp.sum(m), 1.0)


def max_tangent(x: Array, peak: Array, tangent: Array, axis: int) -> Array:
    """Tangent of ``max(x, axis)`` whose value ``peak`` has ``axis`` kept (size 1): JAX's rule,
    the tangent averaged over the entries equal to the max, with that count floored at 1.

    An XLA program may recompute ``x`` in several fusions that round differently (seen with
    the CPU backend at optimisation level 0), so that no entry compares equal to the max in
    the fusion that counts them; JAX's rule then divides by a count of 0 and the gradient is
    NaN. With the floor such an entry gets a zero or an undivided tangent, never NaN.
    """
    hit = (x == peak).astype(tangent.dtype)
    count = jnp.sum(hit, axis=axis)
    return jnp.sum(tangent * hit, axis=axis) / jnp.maximum(count, 1.0)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def nan_safe_max(x: Array, axis: int) -> Array:
    """``jnp.max(x, axis)``, same value; its derivative is ``max_tangent`` (no NaN from a
    division by a count of 0 maxima; equal to JAX's derivative whenever that count is > 0)."""
    return jnp.max(x, axis=axis)


@nan_safe_max.defjvp
def _nan_safe_max_jvp(axis: int, primals: tuple[Array], tangents: tuple[Array]
                      ) -> tuple[Array, Array]:
    (x,), (t,) = primals, tangents
    peak = jnp.max(x, axis=axis)
    return peak, max_tangent(x, jnp.expand_dims(peak, axis), t, axis)


def masked_max(x: Array, mask: Array) -> Array:
    """Max of ``x`` [L, H] over rows where ``mask`` [L] is True -> [H]; zeros if none.

    Differentiated with ``nan_safe_max`` (jnp.max's derivative divides by the number of rows
    equal to the max, which a compiled program can find to be 0: NaN critic gradients).
    """
    peak = nan_safe_max(jnp.where(mask[:, None], x, -jnp.inf), 0)
    return jnp.where(jnp.any(mask), peak, 0.0)


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": functools.partial(nn.gelu, approximate=False),  # the original's (exact erf form)
    "relu": nn.relu,
}
"""Activation name (``networks.stock_activation``) -> function."""


class MLP(nn.Module):
    """The original's ``build_mlp``: (Dense -> LayerNorm -> GELU) per hidden width, then an
    optional final linear layer of width ``out`` (no norm, no activation). ``norm=False`` drops
    the LayerNorms; ``activation`` names an ``ACTIVATIONS`` entry.

    [..., F] -> [..., out or hidden[-1]]
    """

    hidden: Sequence[int]
    out: int | None = None
    out_gain: float = SQRT2
    norm: bool = True
    activation: str = "gelu"

    @nn.compact
    def __call__(self, x: Array) -> Array:
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = dense(width)(x)
            x = act(nn.LayerNorm(param_dtype=jnp.float32)(x) if self.norm else x)
        if self.out is not None:
            x = dense(self.out, self.out_gain)(x)
        return x


def param_count(params) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))
