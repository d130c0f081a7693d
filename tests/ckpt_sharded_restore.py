"""Helper for tests/test_checkpointing.py: restore a 1-device checkpoint onto 4 fake CPU devices.

Run as a script (``python tests/ckpt_sharded_restore.py RUN_DIR PHASE``): it sets
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` *before* importing jax, restores the
phase's latest step into a target whose leaves carry ``NamedSharding``s over a 4-device mesh
(``w`` split by rows, everything else replicated) and prints one JSON line describing what
came back. ``make_state`` is shared with the test so both sides build the same pytree.
"""

from __future__ import annotations

import os
import sys


def make_state(seed: int = 0):
    """A small training-state-like pytree: float32/int32 arrays, an adam state, a typed key."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    # w from NumPy, not jax.random.normal: the restoring process compiles with other XLA flags
    # than the saving one, and the check is bit for bit
    _, k_rng = jax.random.split(jax.random.key(seed))
    w = np.random.default_rng(seed).standard_normal((8, 4)).astype(np.float32)
    params = {"w": jnp.asarray(w),
              "b": jnp.arange(4, dtype=jnp.int32) + seed}
    return {"params": params, "opt": optax.adam(1e-3).init(params), "rng": k_rng,
            "count": jnp.int32(seed)}


def main(run_dir: str, phase: str) -> None:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_force_host_platform_device_count=4").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"
    import json

    import jax
    import numpy as np
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from hrl_sarp_jax.checkpointing import PhaseCheckpointer, content_hash

    devices = jax.devices()
    mesh = jax.make_mesh((len(devices),), ("d",), axis_types=(jax.sharding.AxisType.Auto,))
    abstract = jax.eval_shape(make_state)

    def place(path, sds):
        name = jax.tree_util.keystr(path)
        spec = P("d") if name == "['params']['w']" else P()
        return jax.ShapeDtypeStruct(sds.shape, sds.dtype, sharding=NamedSharding(mesh, spec))

    target = jax.tree_util.tree_map_with_path(place, abstract)
    with PhaseCheckpointer(run_dir, phase, read_only=True) as ck:
        state, meta, step = ck.restore(target)
    expected = make_state(int(step))
    def raw(x):
        is_key = jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
        return np.asarray(jax.random.key_data(x) if is_key else x)

    same = jax.tree.map(lambda a, b: bool(np.array_equal(raw(a), raw(b))), state, expected)
    w = state["params"]["w"]
    print(json.dumps({
        "devices": len(devices),
        "step": step,
        "all_equal": all(jax.tree.leaves(same)),
        "w_spec_ok": w.sharding.spec == P("d"),
        "w_shards": len(w.addressable_shards),
        "w_shard_shape": list(w.addressable_shards[0].data.shape),
        "b_replicated": bool(state["params"]["b"].sharding.is_fully_replicated),
        "opt_type": type(state["opt"][0]).__name__,
        "opt_is_adam": isinstance(state["opt"][0], optax.ScaleByAdamState),
        "rng_dtype": str(state["rng"].dtype),
        "hash_verified": meta.get("hash_verified"),
        "hash_equal": content_hash(state) == meta["content_hash"],
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
