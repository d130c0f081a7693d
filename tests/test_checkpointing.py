"""Run folders, metrics log, Orbax checkpoints: retention, damage fallback, content hash."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import yaml

from hrl_sarp_jax import checkpointing as ck
from hrl_sarp_jax.config import Config, config_from_dict
from hrl_sarp_jax.errors import CheckpointError, DataError
from hrl_sarp_jax.utils import atomic

sys.path.insert(0, str(Path(__file__).parent))
from ckpt_sharded_restore import make_state  # noqa: E402

FP = "sha256:" + "ab" * 32

# Failed orbax reads leave TensorStore coroutines that die as "Exception ignored in" reports;
# checkpointing filters exactly those, so any that still surface here fail the test.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def _strict_json(line: str):
    def bad(const):
        raise ValueError(f"non-strict JSON constant {const}")

    return json.loads(line, parse_constant=bad)


def _leaves_equal(a, b) -> bool:
    def raw(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        return np.asarray(x)

    return all(jax.tree.leaves(jax.tree.map(lambda x, y: np.array_equal(raw(x), raw(y)), a, b)))


@pytest.fixture
def run(tmp_path):
    r = ck.create_run(tmp_path / "checkpoints", "r1", Config(), FP, resume=False)
    yield r
    r.close()


def _data_files(step_dir: Path) -> list[Path]:
    """The chunk files of a step's ``state`` item, largest last."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return sorted(files, key=lambda p: p.stat().st_size)


# --------------------------------------------------------------------------- hashing


def test_content_hash_ignores_container_types_but_not_content():
    s = make_state(0)
    h = ck.content_hash(s)
    assert h.startswith("sha256:") and h == ck.content_hash(make_state(0))
    # The same leaves held in plain dicts/lists (as a target-less restore returns them).
    adam = s["opt"][0]
    plain = {**s, "opt": [{"count": adam.count, "mu": adam.mu, "nu": adam.nu}, None]}
    assert ck.content_hash(plain) == h
    # The typed key is hashed by its data: a different key changes the hash.
    assert ck.content_hash({**s, "rng": jax.random.key(123)}) != h
    flipped = {**s, "params": {**s["params"], "w": s["params"]["w"].at[3, 1].add(1e-3)}}
    assert ck.content_hash(flipped) != h
    # dtype is part of the hash, even when the values are equal.
    as_f32 = {**s, "params": {**s["params"], "b": s["params"]["b"].astype(jnp.float32)}}
    assert ck.content_hash(as_f32) != h
    # Python / 64-bit scalars hash as the canonical JAX dtype they restore as.
    assert ck.content_hash({"x": 5}) == ck.content_hash({"x": jnp.int32(5)})


# --------------------------------------------------------------------------- round trip


def test_save_restore_round_trip_preserves_types_key_and_meta(run):
    state = make_state(3)
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        ckpt.save(3, state, metrics={"val_sharpe": jnp.float32(0.5)},
                  meta={"note": "hi", "arr": np.arange(2)})
    step_dir = run.root / "phase1" / "ckpt" / "3"
    assert (step_dir / "commit_success.txt").is_file()  # close() waited for the async save
    assert not list((run.root / "phase1" / "ckpt").glob("*orbax-checkpoint-tmp*"))

    abstract = jax.eval_shape(lambda: make_state(0))
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        restored, meta, step = ckpt.restore(abstract)
    assert step == 3
    assert _leaves_equal(restored, state)
    assert type(restored["opt"]) is tuple
    assert type(restored["opt"][0]) is optax.ScaleByAdamState
    assert type(restored["opt"][1]) is optax.EmptyState
    assert jax.dtypes.issubdtype(restored["rng"].dtype, jax.dtypes.prng_key)
    assert restored["params"]["b"].dtype == jnp.int32
    assert restored["params"]["w"].dtype == jnp.float32
    assert meta["format_version"] == ck.FORMAT_VERSION
    assert meta["phase"] == "1" and meta["step"] == 3
    assert meta["metrics"] == {"val_sharpe": 0.5}
    assert meta["user"] == {"note": "hi", "arr": [0, 1]}
    assert meta["content_hash"] == ck.content_hash(state)
    assert meta["hash_verified"] is True


def test_restore_without_target_is_refused(run):
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        ckpt.save(0, make_state(0), metrics={"val_sharpe": 0.0})
        with pytest.raises(CheckpointError, match="abstract target"):
            ckpt.restore(None)


def test_wrong_target_is_a_clear_error_not_a_fallback(run):
    with ck.PhaseCheckpointer(run, 2) as ckpt:
        for s in (1, 2):
            ckpt.save(s, make_state(s), metrics={"val_sharpe": float(s)})
        bad = jax.eval_shape(lambda: make_state(0))
        bad["params"]["w"] = jax.ShapeDtypeStruct((9, 4), jnp.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "damaged" warnings: a bad target is not damage
            with pytest.raises(CheckpointError,
                               match=r"phase 2 step 2 .*does not fit.*config\.yaml"):
                ckpt.restore(bad)


def test_macro_state_saved_before_the_daily_buffer_restores_it_empty(run):
    """A MacroEnv state saved before its daily return buffer (the risk manager's CVaR input)
    restores with ``daily_buf`` / ``daily_count`` as 0 (an empty buffer), the weekly buffer
    and the book as saved."""
    old = {"env": {"ret_buf": jnp.arange(8.0).reshape(2, 4), "ret_count": jnp.array([4, 2]),
                   "t": jnp.array([10, 15])}}
    with ck.PhaseCheckpointer(run, 3) as ckpt:
        ckpt.save(0, old, metrics={"val_sharpe": 0.0})
        new = {"env": {"ret_buf": jnp.zeros((2, 4)), "ret_count": jnp.zeros(2, jnp.int32),
                       "t": jnp.zeros(2, jnp.int32), "daily_buf": jnp.ones((2, 4)),
                       "daily_count": jnp.ones(2, jnp.int32)}}
        state, meta, _ = ckpt.restore(jax.eval_shape(lambda: new))
    assert meta["migrated_leaves"]
    np.testing.assert_array_equal(state["env"]["ret_buf"], np.arange(8.0).reshape(2, 4))
    np.testing.assert_array_equal(state["env"]["daily_buf"], np.zeros((2, 4)))
    np.testing.assert_array_equal(state["env"]["daily_count"], [0, 0])


def test_state_saved_before_the_timed_rerisk_restores_with_zero_gate_fields(run):
    """A RiskState saved with only ``derisked`` (before risk.rerisk_days) restores into today's
    RiskState: stored leaves verified by their hash, base and since added as 0; any other
    missing leaf stays a mismatch error."""
    from hrl_sarp_jax.risk.manager import RiskState

    old = {"params": {"w": jnp.arange(6.0).reshape(2, 3)}, "key": jax.random.key(3),
           "env": {"risk": {"derisked": jnp.array([True, False])}}}
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        ckpt.save(0, old, metrics={"val_sharpe": 0.0})
        new = {"params": {"w": jnp.zeros((2, 3))}, "key": jax.random.key(0),
               "env": {"risk": RiskState(derisked=jnp.zeros(2, bool),
                                         base=jnp.ones(2, jnp.float32),
                                         since=jnp.ones(2, jnp.int32))}}
        state, meta, step = ckpt.restore(jax.eval_shape(lambda: new))
        assert step == 0 and meta["hash_verified"] and meta["migrated_leaves"]
        assert isinstance(state["env"]["risk"], RiskState)
        np.testing.assert_array_equal(state["env"]["risk"].derisked, [True, False])
        np.testing.assert_array_equal(state["env"]["risk"].base, [0.0, 0.0])
        assert state["env"]["risk"].since.dtype == jnp.int32
        np.testing.assert_array_equal(state["params"]["w"], np.arange(6.0).reshape(2, 3))
        np.testing.assert_array_equal(jax.random.key_data(state["key"]),
                                      jax.random.key_data(jax.random.key(3)))
        other = dict(new, extra=jnp.zeros(3))   # not a known addition
        with pytest.raises(CheckpointError, match="does not fit"):
            ckpt.restore(jax.eval_shape(lambda: other))


def test_a_replay_buffer_saved_in_an_older_layout_loads_policies_but_refuses_training(run):
    """A state whose ``buffer`` subtree was saved in another layout (the episode-slot buffer
    before the ring) restores for reading policies with that subtree empty (zeros, listed in
    meta['emptied']) and every other leaf as stored; resuming training from it is a clear
    error; a difference outside the buffer stays a mismatch error."""
    old = {"agent": {"w": jnp.arange(6.0).reshape(2, 3)},
           "buffer": {"data": jnp.ones((4, 5, 2)), "length": jnp.arange(4),
                      "head_pos": jnp.zeros(2, jnp.int32)}}
    with ck.PhaseCheckpointer(run, 4) as ckpt:
        ckpt.save(3, old, metrics={"val_sharpe": 0.0})
        new = {"agent": {"w": jnp.zeros((2, 3))},
               "buffer": {"data": jnp.ones((10, 2, 2)), "episode": jnp.ones((10, 2), jnp.int32),
                          "steps": jnp.ones((), jnp.int32)}}
        target = jax.eval_shape(lambda: new)
        state, meta, step = ckpt.restore(target, for_policy=True)
        assert step == 3 and meta["hash_verified"] and meta["emptied"] == ["buffer"]
        np.testing.assert_array_equal(state["agent"]["w"], np.arange(6.0).reshape(2, 3))
        for leaf in jax.tree.leaves(state["buffer"]):
            assert not np.any(np.asarray(leaf))
        assert state["buffer"]["episode"].dtype == jnp.int32
        with pytest.raises(CheckpointError, match=r"phase 4 step 3 .*: saved with an earlier "
                           r"version's buffer layout.*move .*phase4/ckpt aside and rerun "
                           r"phase 4 \(hrl-sarp train --phase 4"):
            ckpt.restore(target)
        other = dict(new, agent={"w": jnp.zeros((3, 3))})   # outside the buffer: no migration
        with pytest.raises(CheckpointError, match="does not fit"):
            ckpt.restore(jax.eval_shape(lambda: other), for_policy=True)
    # the same layout restores as it is, nothing emptied
    with ck.PhaseCheckpointer(run, 5) as ckpt:
        ckpt.save(1, new, metrics={"val_sharpe": 0.0})
        state, meta, _ = ckpt.restore(jax.eval_shape(lambda: new))
        assert "emptied" not in meta
        np.testing.assert_array_equal(state["buffer"]["episode"], np.ones((10, 2)))


def test_float_target_dtype_change_restores_unverified(run):
    state = {"w": jnp.linspace(0.0, 1.0, 16, dtype=jnp.float32)}
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        ckpt.save(0, state, metrics={"val_sharpe": 0.0})
        target = {"w": jax.ShapeDtypeStruct((16,), jnp.bfloat16)}
        restored, meta, _ = ckpt.restore(target)
    assert restored["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(restored["w"], np.float32), np.asarray(state["w"]),
                               atol=1e-2)
    assert meta["hash_verified"] is False


# --------------------------------------------------------------------------- retention


def test_retention_keeps_latest_n_plus_best_and_survives_reopen(run):
    """dependencies.md §4.1: max_to_keep + best_fn would keep [2, 4, 8] and lose step 12."""
    losses = {0: 5.0, 2: 0.1, 4: 3.0, 6: 4.0, 8: 0.5, 10: 6.0, 12: 7.0}
    kw = {"keep_latest": 3, "best_metric": "val_loss", "higher_is_better": False}
    state = {"x": jnp.zeros((2,), jnp.float32)}
    with ck.PhaseCheckpointer(run, 1, **kw) as ckpt:
        for s, v in losses.items():
            ckpt.save(s, state, metrics={"val_loss": v, "other": 1.0})
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [2, 8, 10, 12]
        assert ckpt.latest_step() == 12
        assert ckpt.best_step() == 2

    # A new manager (as after a restart) must still know step 2's metric: orbax only writes
    # metrics to disk when best_fn is set, so this guards that setting.
    with ck.PhaseCheckpointer(run, 1, **kw) as ckpt:
        assert ckpt.best_step() == 2
        ckpt.save(14, state, metrics={"val_loss": 8.0})
        ckpt.save(16, state, metrics={"val_loss": float("nan")})  # NaN ranks worst
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [2, 12, 14, 16]
        assert ckpt.latest_step() == 16
        assert ckpt.best_step() == 2
        with pytest.raises(CheckpointError, match=r"cannot save step 14.*--resume"):
            ckpt.save(14, state, metrics={"val_loss": 0.0})

    # A later phase finds it by itself, with the direction phase 1 was saved with.
    assert ck.find_best(run, 1) == 2
    assert ck.find_best(run, 3) is None
    _, meta, step = ck.restore_best(run.root, 1, jax.eval_shape(lambda: state))
    assert step == 2 and meta["metrics"]["val_loss"] == 0.1


def test_higher_is_better_keeps_highest(run):
    state = {"x": jnp.ones((2,), jnp.float32)}
    with ck.PhaseCheckpointer(run, "3", keep_latest=2) as ckpt:  # default: val_sharpe, higher
        for s, v in enumerate([0.1, 2.0, 0.3, 0.2, 0.4]):
            ckpt.save(s, state, metrics={"val_sharpe": v})
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [1, 3, 4]
        assert ckpt.best_step() == 1


# --------------------------------------------------------------------------- damage


def _three_steps(run, phase=1, big=False):
    def mk(s):
        st = make_state(s)
        if big:  # a compressible chunk large enough to damage in the middle
            st["big"] = jnp.arange(4096, dtype=jnp.float32).reshape(64, 64) + s
        return st

    with ck.PhaseCheckpointer(run, phase) as ckpt:
        for s in (1, 2, 3):
            ckpt.save(s, mk(s), metrics={"val_sharpe": float(s)})
    return mk, jax.eval_shape(lambda: mk(0)), run.root / f"phase{phase}" / "ckpt"


def test_damaged_newest_step_falls_back_with_warning(run):
    mk, abstract, ck_dir = _three_steps(run)
    # Damage every data file of a step: TensorStore caches OCDBT B-tree nodes per process
    # (orbax's 100 MB cache pool), so damage to one file or the manifest alone can be served
    # from that cache in a long test session; a new process would see it.
    for f in _data_files(ck_dir / "3"):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated data
    (ck_dir / "2" / "state" / "manifest.ocdbt").unlink()  # missing files
    for f in _data_files(ck_dir / "2"):
        f.unlink()

    with ck.PhaseCheckpointer(run, 1) as ckpt:
        assert ckpt.latest_step() == 3  # orbax still names the damaged step
        with pytest.warns(UserWarning) as rec:
            state, _, step = ckpt.restore(abstract)
        assert step == 1
        assert _leaves_equal(state, mk(1))
        msgs = [str(w.message) for w in rec if "damaged" in str(w.message)]
        assert any("phase 1 step 3" in m for m in msgs) and any("phase 1 step 2" in m for m in msgs)
        assert all("TensorStore(" not in m for m in msgs)  # trimmed, not a spec dump

        # Training resumes from step 1: saving step 2 again moves the damaged steps aside.
        with pytest.warns(UserWarning, match="moved damaged step"):
            ckpt.save(2, mk(2), metrics={"val_sharpe": 9.0})
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [1, 2]
        state, _, step = ckpt.restore(abstract)
        assert step == 2 and _leaves_equal(state, mk(2))
    assert len(list((run.root / "phase1" / "damaged").iterdir())) == 2


def test_unraisable_filter_drops_only_orbax_read_leftovers():
    class U:  # the fields of sys.UnraisableHookArgs that the filter reads
        def __init__(self, exc, obj=None):
            self.exc_value, self.object = exc, obj

    tensorstore = Exception("Encountered error while reading array index: (slice(0, 3, 1),). "
                            "See full TensorStore details: ...")
    assert ck._is_orbax_read_leftover(U(tensorstore))
    assert not ck._is_orbax_read_leftover(U(ValueError("something else")))
    assert not ck._is_orbax_read_leftover(U(RuntimeError("Event loop is closed")))  # no asyncio tb
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed") as info:
        loop.call_soon_threadsafe(print)
    assert ck._is_orbax_read_leftover(U(info.value))


def test_every_step_damaged_raises_naming_folder_and_fix(run):
    _, abstract, ck_dir = _three_steps(run)
    for s in (1, 2, 3):
        (ck_dir / str(s) / "state" / "manifest.ocdbt").unlink()
    with ck.PhaseCheckpointer(run, 1) as ckpt, pytest.warns(UserWarning, match="damaged"):
        with pytest.raises(CheckpointError) as err:
            ckpt.restore(abstract)
    msg = str(err.value)
    assert str(ck_dir) in msg and "run r1 phase 1" in msg
    assert "step 1" in msg and "step 3" in msg
    assert "rerun phase 1" in msg and "--run" in msg


def test_best_falls_back_to_next_best(run):
    mk, abstract, ck_dir = _three_steps(run)  # val_sharpe = step: best 3, then 2
    import shutil

    shutil.rmtree(ck_dir / "3" / "state")
    with pytest.warns(UserWarning, match="step 3 .*damaged"):
        _, _, step = ck.restore_best(run, 1, abstract)
    assert step == 2


def test_silent_data_corruption_is_caught_by_the_hash(run):
    mk, abstract, ck_dir = _three_steps(run, big=True)
    big = _data_files(ck_dir / "3")[-1]
    data = bytearray(big.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)  # dependencies.md §4.1: orbax restores this "successfully"
    big.write_bytes(bytes(data))

    # What orbax alone makes of it (no checksums): note whether the damage is silent.
    mgr = ocp.CheckpointManager(
        ck_dir.resolve(), item_handlers={"state": ocp.StandardCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(read_only=True, save_interval_steps=0, create=False))
    try:
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        raw = mgr.restore(3, args=args).state
        silent = not _leaves_equal(raw, mk(3))
    except Exception:
        silent = False
    finally:
        mgr.close()

    with ck.PhaseCheckpointer(run, 1) as ckpt, \
            pytest.warns(UserWarning, match="phase 1 step 3 .*damaged") as rec:
        state, meta, step = ckpt.restore(abstract)
    assert step == 2 and _leaves_equal(state, mk(2)) and meta["hash_verified"] is True
    if silent:  # the only thing that can have caught it is the content hash
        assert any("content hash mismatch" in str(w.message) for w in rec)


def test_tampered_stored_hash_is_treated_as_damage(run):
    mk, abstract, ck_dir = _three_steps(run)
    meta_file = ck_dir / "3" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta["content_hash"] = "sha256:" + "0" * 64
    meta_file.write_text(json.dumps(meta))
    with ck.PhaseCheckpointer(run, 1) as ckpt, \
            pytest.warns(UserWarning, match="step 3 .*content hash mismatch"):
        state, _, step = ckpt.restore(abstract, step=3)
    assert step == 2 and _leaves_equal(state, mk(2))


def test_requested_step_and_leftover_tmp_dirs(run):
    mk, abstract, ck_dir = _three_steps(run)
    leftover = ck_dir / "4.orbax-checkpoint-tmp"  # an interrupted save
    (leftover / "state.orbax-checkpoint-tmp").mkdir(parents=True)
    (leftover / "_CHECKPOINT_METADATA").write_text("{}")
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        assert not leftover.exists()
        assert ckpt.all_steps() == [1, 2, 3]
        state, _, step = ckpt.restore(abstract, step=2)
        assert step == 2 and _leaves_equal(state, mk(2))
        with pytest.raises(CheckpointError,
                           match=r"step 7 .*no such step; kept steps are \[1, 2, 3\]"):
            ckpt.restore(abstract, step=7)
    with ck.PhaseCheckpointer(run, 4) as empty, \
            pytest.raises(CheckpointError, match="no checkpoints; run phase 4"):
        empty.restore(abstract)


# --------------------------------------------------------------------------- multi-device


def test_restore_onto_four_devices_in_subprocess(run):
    """Saved on 1 device; restored sharded/replicated on 4 fake CPU devices (a fresh process,
    since this one already initialised jax with one device)."""
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        ckpt.save(5, make_state(5), metrics={"val_sharpe": 1.0})
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    script = Path(__file__).parent / "ckpt_sharded_restore.py"
    proc = subprocess.run([sys.executable, str(script), str(run.root), "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {
        "devices": 4, "step": 5, "all_equal": True,
        "w_spec_ok": True, "w_shards": 4, "w_shard_shape": [2, 4],
        "b_replicated": True, "opt_type": "ScaleByAdamState", "opt_is_adam": True,
        "rng_dtype": "key<fry>", "hash_verified": True, "hash_equal": True,
    }


# --------------------------------------------------------------------------- run folders


def test_create_run_writes_config_and_guards_reuse(tmp_path):
    root = tmp_path / "checkpoints"
    cfg = Config()
    r = ck.create_run(root, "exp", cfg, FP, resume=False)
    assert config_from_dict(yaml.safe_load((root / "exp" / "config.yaml").read_text())) == cfg
    assert json.loads((root / "exp" / "run.json").read_text())["data_fingerprint"] == FP
    assert r.config == cfg

    again = ck.create_run(root, "exp", cfg, FP, resume=True)  # same setup: resumes
    assert again.root == r.root and again.config == cfg

    with pytest.raises(CheckpointError, match=r"already exists; pass --resume .* new --run name"):
        ck.create_run(root, "exp", cfg, FP, resume=False)

    changed = dataclasses.replace(cfg, seed=7, train=dataclasses.replace(cfg.train, keep_latest=5))
    for resume in (False, True):
        with pytest.raises(CheckpointError) as err:
            ck.create_run(root, "exp", changed, FP, resume=resume)
        msg = str(err.value)
        assert "seed: 0 (saved) != 7 (now)" in msg and "train.keep_latest" in msg
        assert str(root / "exp") in msg and "new --run name" in msg and "--resume" in msg

    with pytest.raises(CheckpointError, match="data fingerprint"):
        ck.create_run(root, "exp", cfg, "sha256:" + "cd" * 32, resume=True)
    with pytest.raises(CheckpointError, match="not valid"):
        ck.create_run(root, "../escape", cfg, FP, resume=False)
    # --resume of a run that does not exist yet starts it.
    assert (ck.create_run(root, "fresh", cfg, FP, resume=True).root / "run.json").is_file()
    with pytest.raises(CheckpointError, match="not a run folder"):
        ck.open_run(root / "nope")


def _source_run(root: Path, cfg: Config, finished: int) -> ck.Run:
    """A run with phases 1..finished done (a checkpoint file and a summary each), phase
    finished+1 started but not done, and metrics lines of every phase and the flat baseline."""
    r = ck.create_run(root, "src", cfg, FP, resume=False)
    for k in range(1, finished + 2):
        (r.phase_dir(k) / "ckpt" / "8").mkdir(parents=True)
        (r.phase_dir(k) / "ckpt" / "8" / "state.bin").write_bytes(bytes([k]) * (100 + k))
        if k <= finished:
            ck.write_phase_summary(r, k, {"best_step": 8, "wall_s": float(k)})
        r.log_metrics(k, 8, {"loss": 1.0 / k})
    r.log_metrics("flat", 8, {"loss": 0.5})
    return r


def test_branch_run_copies_the_kept_phases_and_refuses_keys_they_read(tmp_path):
    from hrl_sarp_jax.training.phases import sections_free_after

    root, cfg = tmp_path / "checkpoints", Config()
    src = _source_run(root, cfg, finished=3)
    td3 = dataclasses.replace(cfg.train.td3, total_env_steps=cfg.train.td3.total_env_steps * 2)
    variant = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, td3=td3))
    (root / "b.branching" / "phase9").mkdir(parents=True)  # an interrupted branch's leftover

    out = ck.branch_run(root, "src", "b", variant, FP, keep=3, free_sections=sections_free_after(3))
    assert out == root / "b" and not (root / "b.branching").exists()
    for k in (1, 2, 3):  # byte-identical copies of the finished phases
        copied = out / f"phase{k}" / "ckpt" / "8" / "state.bin"
        assert copied.read_bytes() == bytes([k]) * (100 + k)
        assert ck.read_phase_summary(out, k) == ck.read_phase_summary(src, k)
    assert not (out / "phase4").exists() and not (out / "phase9").exists()
    src_lines = src.metrics_path.read_text().splitlines()
    assert (out / "metrics.jsonl").read_text().splitlines() == src_lines[:3]  # phases 1-3 only
    info = json.loads((out / "run.json").read_text())
    assert info["run_name"] == "b" and info["data_fingerprint"] == FP
    assert info["branched_from"]["run"] == "src" and info["branched_from"]["phases"] == 3
    assert ck.describe_origin(info) == ("branched from run src after phase 3 (phases 1-3 copied "
                                        "from it; only the later ones trained here)")
    assert ck.describe_origin(json.loads((root / "src" / "run.json").read_text())) is None
    assert ck.branched_from(out, ("src", 3)) and not ck.branched_from(out, ("src", 2))
    assert not ck.branched_from(root / "src", ("src", 3))
    # the branch is an ordinary run of the new config: it resumes, the old config is refused
    assert ck.create_run(root, "b", variant, FP, resume=True).config == variant
    with pytest.raises(CheckpointError, match=r"train\.td3\.total_env_steps"):
        ck.create_run(root, "b", cfg, FP, resume=True)

    ppo = dataclasses.replace(cfg.train.ppo, lr=cfg.train.ppo.lr / 2)
    ppo_variant = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, ppo=ppo))
    with pytest.raises(CheckpointError) as err:  # Phase 3 (kept) reads train.ppo
        ck.branch_run(root, "src", "c", ppo_variant, FP, keep=3,
                      free_sections=sections_free_after(3))
    msg = str(err.value)
    assert msg.startswith("train.ppo.lr: ") and "run src's" in msg
    assert "only train.td3, train.joint may change" in msg
    assert not (root / "c").exists() and not (root / "c.branching").exists()
    # after Phase 2 the same change is free; the seed never is
    assert ck.branch_run(root, "src", "c", ppo_variant, FP, keep=2,
                         free_sections=sections_free_after(2)).is_dir()
    with pytest.raises(CheckpointError, match=r"^seed: 7 differs"):
        ck.branch_run(root, "src", "d", dataclasses.replace(cfg, seed=7), FP, keep=1,
                      free_sections=sections_free_after(1))
    with pytest.raises(CheckpointError, match=r"phase 4 of run .* not finished .* after phase 3"):
        ck.branch_run(root, "src", "d", cfg, FP, keep=4, free_sections=sections_free_after(4))
    with pytest.raises(CheckpointError, match="already exists; a branch starts a new run"):
        ck.branch_run(root, "src", "b", variant, FP, keep=3, free_sections=sections_free_after(3))
    with pytest.raises(CheckpointError, match="other data"):
        ck.branch_run(root, "src", "d", cfg, "sha256:" + "cd" * 32, keep=1,
                      free_sections=sections_free_after(1))
    with pytest.raises(CheckpointError, match="no run 'nope'"):
        ck.branch_run(root, "nope", "d", cfg, FP, keep=1, free_sections=sections_free_after(1))
    with pytest.raises(CheckpointError, match="'../src' is not valid"):
        ck.branch_run(root, "../src", "d", cfg, FP, keep=1, free_sections=sections_free_after(1))
    assert sorted(p.name for p in root.iterdir()) == ["b", "c", "src"]
    assert sections_free_after(1) == ("train.micro_pretrain", "train.ppo", "train.td3",
                                      "train.joint")
    assert sections_free_after(5) == ()


def test_metrics_jsonl_is_strict_json_and_survives_a_torn_line(tmp_path):
    root = tmp_path / "checkpoints"
    r = ck.create_run(root, "m", Config(), FP, resume=False)
    r.log_metrics(1, 0, {"loss": jnp.float32(0.25), "n": np.int64(3), "nan": float("nan"),
                         "up": jnp.inf, "down": -np.inf, "vec": jnp.array([1.0, jnp.nan]),
                         "tag": "x"})
    r.log_metrics("phase2", 5, {"loss": 1.5})
    with pytest.raises(ValueError, match="reserved"):
        r.log_metrics(1, 1, {"step": 3})
    lines = r.metrics_path.read_text().splitlines()
    assert len(lines) == 2
    first, second = (_strict_json(line) for line in lines)
    assert first["phase"] == 1 and first["step"] == 0 and isinstance(first["time"], float)
    assert first["loss"] == 0.25 and first["n"] == 3 and first["nan"] is None
    assert first["up"] == "inf" and first["down"] == "-inf" and first["vec"] == [1.0, None]
    assert second["phase"] == 2 and second["step"] == 5

    with open(r.metrics_path, "ab") as fh:  # a crash in the middle of an append
        fh.write(b'{"phase": 2, "st')
    with pytest.warns(UserWarning, match="torn last line"):
        r2 = ck.create_run(root, "m", Config(), FP, resume=True)
    r2.log_metrics(2, 6, {"loss": 1.0})
    assert [_strict_json(x)["step"] for x in r2.metrics_path.read_text().splitlines()] == [0, 5, 6]
    assert [m["step"] for m in r2.read_metrics()] == [0, 5, 6]
    if importlib.util.find_spec("tensorboardX") is None:  # optional: no event files without it
        assert not (root / "m" / "tb").exists()


def test_data_fingerprint(tmp_path):
    market = tmp_path / "market"
    market.mkdir()
    (market / "prices.parquet").write_bytes(b"prices-v1")
    (market / "macro.parquet").write_bytes(b"macro")
    fp = ck.data_fingerprint(market)
    assert fp.startswith("sha256:") and len(fp) == 7 + 64
    (market / ".prices.parquet.123.tmp").write_bytes(b"half-written")  # hidden: ignored
    assert ck.data_fingerprint(market) == fp
    (market / "prices.parquet").write_bytes(b"prices-v2")
    assert ck.data_fingerprint(market) != fp
    (market / "prices.parquet").write_bytes(b"prices-v1")
    assert ck.data_fingerprint(market) == fp
    (market / "macro.parquet").rename(market / "macro2.parquet")  # names count too
    assert ck.data_fingerprint(market) != fp
    assert ck.data_fingerprint(b"abc") == ck.data_fingerprint(b"abc") != ck.data_fingerprint(b"abd")
    assert ck.data_fingerprint(b"ab", b"c") != ck.data_fingerprint(b"a", b"bc")
    with pytest.raises(DataError, match="no such market"):
        ck.data_fingerprint(tmp_path / "missing")


def test_phase_summary_is_written_atomically(run, monkeypatch):
    summary = {"best_step": 4, "val_sharpe": np.float32(1.25), "x": float("nan")}
    path = ck.write_phase_summary(run, 2, summary)
    assert path == run.root / "phase2" / "summary.json"
    body = _strict_json(path.read_text())
    assert body["best_step"] == 4 and body["val_sharpe"] == 1.25 and body["x"] is None
    assert body["phase"] == "2" and body["format_version"] == ck.FORMAT_VERSION
    assert ck.read_phase_summary(run, 2) == body

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ck.write_phase_summary(run, 2, {"best_step": 99})
    monkeypatch.undo()
    assert _strict_json(path.read_text())["best_step"] == 4  # the old summary is intact
    assert sorted(p.name for p in path.parent.iterdir()) == ["summary.json"]  # no temp files left


def test_inspect_run_reports_and_verifies(run):
    mk, abstract, ck_dir = _three_steps(run)
    ck.write_phase_summary(run, 1, {"done": True})
    run.log_metrics(1, 3, {"val_sharpe": 3.0})
    info = ck.inspect_run(run.root)
    json.dumps(info, allow_nan=False)
    p1 = info["phases"]["1"]
    assert info["run"] == "r1" and info["data_fingerprint"] == FP and info["metrics_records"] == 1
    assert info["origin"] is None and info["branched_from"] is None  # trained from scratch
    assert p1["steps"] == [1, 2, 3] and p1["latest_step"] == 3 and p1["best_step"] == 3
    assert p1["latest"]["content_hash"] == ck.content_hash(mk(3))
    assert p1["latest"]["verified"] is True
    assert p1["summary"]["done"] is True

    (ck_dir / "3" / "state" / "manifest.ocdbt").unlink()
    p1 = ck.inspect_run(run.root)["phases"]["1"]
    assert p1["latest"]["verified"] is False and "NOT_FOUND" in p1["latest"]["error"]
    fast = ck.inspect_run(run.root, verify=False)["phases"]["1"]
    assert fast["latest"]["content_hash"] == ck.content_hash(mk(3))
    assert fast["latest"]["verified"] is None


def test_restore_chosen_follows_the_checkpoint_rule(run):
    """train.checkpoint: 'best' is the step with the highest validation metric, 'latest' the
    last one saved; anything else is one line naming the key."""
    with ck.PhaseCheckpointer(run, 3) as ckpt:
        for s, v in ((1, 0.2), (2, 0.9), (3, 0.4)):
            ckpt.save(s, make_state(s), metrics={"val_sharpe": v})
    target = jax.eval_shape(lambda: make_state(0))
    _, _, best = ck.restore_chosen(run, 3, target, "best")
    state, _, latest = ck.restore_chosen(run, 3, target, "latest")
    assert (best, latest) == (2, 3)
    np.testing.assert_array_equal(state["params"]["w"], make_state(3)["params"]["w"])
    with pytest.raises(CheckpointError, match=r"train\.checkpoint = 'last'"):
        ck.restore_chosen(run, 3, target, "last")


def test_pretrain_state_saved_before_the_weight_average_restores_it_as_the_weights(run):
    """A pre-training state saved before ``ema_params`` (the weight average of
    ``train.*_pretrain.ema_decay``) restores with the average equal to the saved weights (what
    the only rule then, decay 0, kept), every stored leaf as saved; a target that wants
    anything else stays a mismatch error."""
    from hrl_sarp_jax.training import pretrain as pt

    tx = pt.make_optimizer()
    params = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}}
    fields = dict(params=params, opt_state=tx.init(params),
                  best_params=jax.tree.map(lambda x: x * 2.0, params),
                  best_val=jnp.float32(0.5), last_val=jnp.float32(0.6),
                  best_epoch=jnp.int32(3), bad_epochs=jnp.int32(1), stopped=jnp.asarray(False),
                  epoch=jnp.int32(4), key=jnp.zeros(2, jnp.uint32))
    with ck.PhaseCheckpointer(run, 1) as ckpt:
        ckpt.save(4, {**fields}, metrics={"val_loss": 0.5})
        target = jax.eval_shape(lambda: pt.PretrainState(
            **fields, ema_params=jax.tree.map(jnp.zeros_like, params)))
        state, meta, step = ckpt.restore(target)
        assert step == 4 and meta["hash_verified"] and meta["copied_subtrees"]
        assert isinstance(state, pt.PretrainState)
        np.testing.assert_array_equal(state.ema_params["dense"]["kernel"],
                                      np.arange(6.0).reshape(2, 3))
        np.testing.assert_array_equal(state.params["dense"]["bias"], np.ones(3))
        np.testing.assert_array_equal(state.best_params["dense"]["kernel"],
                                      2.0 * np.arange(6.0).reshape(2, 3))
        assert int(state.epoch) == 4
        wider = jax.eval_shape(lambda: pt.PretrainState(
            **fields, ema_params={"dense": {"kernel": jnp.zeros((2, 4)), "bias": jnp.ones(3)}}))
        with pytest.raises(CheckpointError, match="does not fit"):
            ckpt.restore(wider)
