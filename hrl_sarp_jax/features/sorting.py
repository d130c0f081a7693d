"""A bitonic sorting network along axis 0, from elementwise min/max.

XLA's CPU sort calls a comparator per element pair and is several times slower than this on
many short rows (tens of thousands of 60-day windows). A fixed network of
log2(n)·(log2(n)+1)/2 compare-exchange stages over contiguous [n, ...] slabs vectorises.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.types import Array


def sort_axis0(values: Array) -> Array:
    """Sort ascending along axis 0 (no NaNs): ``[n, ...] -> [n_pow2, ...]``.

    Axis 0 comes back padded to the next power of two with +inf, so index i < n holds the
    i-th smallest value.
    """
    n = values.shape[0]
    size = 1 << max(n - 1, 0).bit_length()
    rest = values.shape[1:]
    if size > n:
        values = jnp.concatenate([values, jnp.full((size - n, *rest), jnp.inf, values.dtype)])
    k = 2
    while k <= size:
        j = k // 2
        while j >= 1:
            blocks = values.reshape((size // (2 * j), 2, j, *rest))  # pairs (i, i ^ j)
            lo, hi = blocks[:, 0], blocks[:, 1]
            small, large = jnp.minimum(lo, hi), jnp.maximum(lo, hi)
            ascending = ((np.arange(size // (2 * j)) * 2 * j) & k) == 0
            asc = jnp.asarray(ascending).reshape((-1,) + (1,) * (1 + len(rest)))
            values = jnp.stack(
                [jnp.where(asc, small, large), jnp.where(asc, large, small)], axis=1
            ).reshape((size, *rest))
            j //= 2
        k *= 2
    return values
