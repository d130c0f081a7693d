"""utils.trees: stacked-pytree edits equal NumPy's, one compiled program per tree signature."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.utils.trees import first_member, repeat_members, take_members


def _tree(k: int):
    rng = np.random.default_rng(k)
    return {"w": rng.normal(size=(k, 3, 2)).astype(np.float32),
            "b": (rng.normal(size=(k, 5)) * 100).astype(np.int32),
            "nested": (rng.normal(size=(k,)).astype(np.float32), jnp.arange(k) > 1)}


def test_edits_equal_numpy_and_keep_dtypes():
    tree = _tree(4)
    got = first_member(tree)
    jax.tree.map(lambda g, x: np.testing.assert_array_equal(g, np.asarray(x)[0]), got, tree)
    idx = np.array([3, 0, 3], np.int32)
    got = take_members(tree, idx)
    jax.tree.map(lambda g, x: np.testing.assert_array_equal(g, np.asarray(x)[idx]), got, tree)
    got = repeat_members(first_member(tree), 5)
    for g, x in zip(jax.tree.leaves(got), jax.tree.leaves(tree), strict=True):
        assert g.shape == (5, *np.shape(x)[1:]) and g.dtype == np.asarray(x).dtype
        np.testing.assert_array_equal(g, np.repeat(np.asarray(x)[:1], 5, axis=0))


def test_one_program_per_tree_signature_not_per_leaf():
    before = repeat_members._cache_size()
    repeat_members(_tree(6), 7)            # 4 leaves of 4 shapes and 3 dtypes: one program
    repeat_members(_tree(6), 7)            # same signature: no new program
    assert repeat_members._cache_size() == before + 1
    repeat_members(_tree(6), 2)            # another count is another program
    assert repeat_members._cache_size() == before + 2


def test_compile_counter_sees_one_program_per_new_signature():
    """scripts/count_compiles.py counts what JAX compiles: a tree edit of a new signature is
    one program (op by op it would be one per leaf and op), a repeat is none."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "count_compiles.py"
    spec = importlib.util.spec_from_file_location("count_compiles", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tree = _tree(9)
    with mod.counting() as counts:
        first_member(tree)
        first_member(tree)
    assert sum(counts.values()) == 1
    with mod.counting() as counts:
        jax.tree.map(lambda x: jnp.asarray(x)[1], {"w": tree["w"], "b": tree["b"]})  # op by op
    assert sum(counts.values()) >= 2
    assert mod.summary(counts)["total"] == sum(counts.values())
