"""Host-side edits of stacked pytrees (leading member axis [K]) as one compiled program each.

Done op by op (``jax.tree.map(lambda x: x[0], tree)`` outside ``jit``), an edit compiles one
eager program per leaf shape and op: hundreds of small compiles per run. Each helper here
compiles once per tree signature; the values are exactly the op-by-op ones (indexing and
broadcasting only). Inside a traced function they inline like any jitted call.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


@jax.jit
def first_member(tree: PyTree) -> PyTree:
    """Member 0 of every leaf ([K, ...] -> [...])."""
    return jax.tree.map(lambda x: x[0], tree)


@jax.jit
def take_members(tree: PyTree, index: jax.Array) -> PyTree:
    """Members ``index`` [M] int of every leaf ([K, ...] -> [M, ...])."""
    return jax.tree.map(lambda x: jnp.asarray(x)[index], tree)


@partial(jax.jit, static_argnums=1)
def repeat_members(tree: PyTree, count: int) -> PyTree:
    """Every leaf repeated on a new leading axis ([...] -> [count, ...])."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *jnp.shape(x))), tree)

