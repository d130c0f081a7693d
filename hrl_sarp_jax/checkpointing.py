"""Run folders, metrics logs and Orbax checkpoints (DESIGN.md §7).

Layout of one run::

    checkpoints/<run>/
        run.json              format version, run name, data fingerprint, creation time
        config.yaml           the resolved config (``config.to_dict``), written atomically
        metrics.jsonl         one strict-JSON line per ``Run.log_metrics`` call, fsynced
        tb/                   TensorBoard event files (tensorboardX): means over seeds;
        tb/seed<k>/           the same tags per seed (TensorBoard overlays them as runs)
        mlflow.json           tracking URI -> MLflow run id, when logged with ``--mlflow``
        phase<k>/ckpt/<step>/ one Orbax CheckpointManager per phase:
                              Composite(state=StandardSave, meta=JsonSave) (+ orbax's metrics)
        phase<k>/checkpointer.json   best metric and its direction (read by later phases)
        phase<k>/summary.json        ``write_phase_summary``
        phase<k>/damaged/     steps moved aside after they failed to restore

Everything here is generic over pytrees: callers hand in the state to save and an *abstract*
target (``jax.eval_shape`` output or ``ShapeDtypeStruct`` leaves, possibly with shardings) to
restore into. Orbax is only imported here (host side), never by jitted code.

Integrity: orbax has no checksums (zeroed bytes inside a zstd chunk restore "successfully"
with wrong values, ``reference/dependencies.md`` §4.1), so every checkpoint's metadata carries
a content hash of the state, verified on restore. A step that fails to restore or verify is
reported with a warning and the previous step is tried; only when none is left does
``CheckpointError`` say what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import gc
import hashlib
import json
import logging
import math
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
import yaml
from orbax.checkpoint import checkpoint_managers as ocm

from hrl_sarp_jax.config import (
    Config,
    config_from_dict,
    dotted_items,
    to_dict,
    upgrade_saved_config,
)
from hrl_sarp_jax.errors import CheckpointError, ConfigError, DataError, HrlSarpError
from hrl_sarp_jax.types import PyTree
from hrl_sarp_jax.utils.atomic import (
    append_line,
    atomic_write_json,
    atomic_write_text,
    to_json_safe,
)
from hrl_sarp_jax.utils.processes import (
    as_global_arrays,
    gather_processes,
    wait_for_processes,
)

__all__ = [
    "FORMAT_VERSION",
    "PhaseCheckpointer",
    "Run",
    "branch_run",
    "configure_tracking",
    "content_hash",
    "create_run",
    "data_fingerprint",
    "derived_run",
    "describe_origin",
    "find_best",
    "inspect_run",
    "open_run",
    "read_phase_summary",
    "restore_best",
    "write_phase_summary",
]

FORMAT_VERSION = 1
HASH_ALGORITHM = "sha256-leaves-v1"

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_RULES = ("best", "latest")
"""Which checkpoint of an RL phase the next phase and evaluation use (``train.checkpoint``)."""
SUMMARY_FILE = "summary.json"
CHECKPOINTER_FILE = "checkpointer.json"
MLFLOW_FILE = "mlflow.json"
TB_DIR = "tb"
PER_SEED_KEY = "per_seed"
"""Metric key of a ``{name: [value per seed]}`` mapping: logged per seed to TensorBoard/MLflow."""
TB_MAX_SEEDS = 64
"""Seeds (sweep members) beyond this get no TensorBoard folder of their own (one writer thread
each); their values stay in metrics.jsonl and MLflow."""
_RESERVED_METRIC_KEYS = ("phase", "step", "time")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TMP_MARK = ".orbax-checkpoint-tmp"

ADDED_LEAVES = (("risk", "base"), ("risk", "since"), ("daily_buf",), ("daily_count",))
"""Leaves (path suffixes) a later version added to a saved state, with their initial value 0.
A checkpoint written before them restores with them set to 0 (``risk.manager.RiskState``'s
timed re-risk: a gate that never re-armed; MacroEnv's daily return buffer for the risk
manager's CVaR: empty); any other difference stays a mismatch error."""

COPIED_SUBTREES = (("ema_params", "params"),)
"""(new key, source key): a subtree a later version added as a copy of another at the time of
saving. A checkpoint written before it restores the new subtree from the source's stored
leaves (the pre-training state's weight average, ``ema_params``: equal to ``params`` under the
only rule that existed then, ``ema_decay`` 0)."""

REBUILT_SUBTREES = ("buffer",)
"""Subtrees (by a key on their path) a later version laid out anew: the replay buffer (episode
slots until 2026-12-04, a ring of vector steps since). A step saved with the old layout
restores with that subtree empty (the target's init value, zeros) when the caller reads only
the policies (``restore(..., for_policy=True)``); training cannot resume from it."""

# Orbax errors that mean "the abstract target does not fit the checkpoint" (a caller's
# mistake, the same for every step) rather than "this step is damaged".
_MISMATCH_MARKERS = (
    "is not compatible with the stored shape",
    "tree structures do not match",
    "Structure mismatch",
)


# --------------------------------------------------------------------------- hashing


def _path_parts(path: tuple) -> tuple[str, ...]:
    """A key path as plain strings, the same whatever container held the leaf.

    ``DictKey('mu')``, ``GetAttrKey('mu')`` (a NamedTuple or dataclass field) and a dict that
    orbax restored in its place all give ``'mu'``; sequence indices give their number. So the
    hash of a state does not depend on whether it was restored with or without a target.
    """
    out = []
    for k in path:
        if isinstance(k, jax.tree_util.DictKey):
            out.append(str(k.key))
        elif isinstance(k, jax.tree_util.GetAttrKey):
            out.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(str(k.idx))
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            out.append(str(k.key))
        else:
            out.append(str(k))
    return tuple(out)


def _canonical_leaf(leaf: Any) -> np.ndarray:
    """A leaf as a host NumPy array in the dtype JAX would give it (typed keys as key data)."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    arr = np.asarray(leaf)
    canon = jax.dtypes.canonicalize_dtype(arr.dtype)
    if arr.dtype != canon:
        arr = arr.astype(canon)
    return np.ascontiguousarray(arr)


def _sorted_leaves(tree: PyTree) -> list[tuple[tuple[str, ...], Any]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return sorted(((_path_parts(p), x) for p, x in leaves), key=lambda item: item[0])


def _digests(tree: PyTree) -> tuple[str, str]:
    """(content hash, layout signature) of ``tree`` in one pass over its leaves.

    The content hash is sha256 over every leaf's path, dtype, shape and bytes; the signature
    covers only paths, dtypes and shapes (it tells whether a restored state *can* match).
    """
    content = hashlib.sha256(HASH_ALGORITHM.encode())
    layout = hashlib.sha256(HASH_ALGORITHM.encode())
    for parts, leaf in _sorted_leaves(tree):
        arr = _canonical_leaf(leaf)
        head = json.dumps(["/".join(parts), str(arr.dtype), list(arr.shape)]).encode()
        layout.update(head)
        content.update(head)
        content.update(arr.tobytes(order="C"))
    return "sha256:" + content.hexdigest(), "sha256:" + layout.hexdigest()


def content_hash(tree: PyTree) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes, in a canonical (sorted-path) order.

    Typed PRNG keys are hashed through ``jax.random.key_data``; Python and 64-bit scalars in
    the dtype JAX canonicalises them to; paths compare dict keys, attribute names and indices
    alike. So a state hashes the same before saving and after restoring, with or without an
    abstract target, on any device layout. Needs every leaf to be fully addressable from this
    process (true on one host).
    """
    return _digests(tree)[0]


def _hashable(tree: PyTree) -> PyTree:
    """``tree``, with leaves spanning processes all-gathered (keys as their data), so every
    process of a multi-process run hashes the same whole state. A collective: every process
    must call it, as they all save."""
    return gather_processes(tree, "checkpoint hash", key_data=True)


# --------------------------------------------------------------------------- data fingerprint


def data_fingerprint(*sources: str | Path | bytes) -> str:
    """sha256 fingerprint of a dataset: folders (every non-hidden file below, by sorted relative
    path), single files (by name) and raw ``bytes``, names and contents included.

    Two markets get the same fingerprint only if they hold the same files with the same bytes,
    so a run folder can tell that its data changed.
    """
    if not sources:
        raise DataError("data_fingerprint: give at least one market folder, file or bytes")
    h = hashlib.sha256(b"hrl-sarp-data-v1")
    for src in sources:
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
            h.update(b"bytes\0" + str(len(data)).encode() + b"\0" + data)
            continue
        path = Path(src)
        if path.is_dir():
            files = sorted(
                (p for p in path.rglob("*") if p.is_file()
                 and not any(part.startswith(".") for part in p.relative_to(path).parts)),
                key=lambda p: p.relative_to(path).as_posix(),
            )
            if not files:
                raise DataError(f"{path}: market folder is empty; nothing to fingerprint")
            entries = [(p.relative_to(path).as_posix(), p) for p in files]
        elif path.is_file():
            entries = [(path.name, path)]
        else:
            raise DataError(f"{path}: no such market folder or file to fingerprint")
        for name, p in entries:
            h.update(b"file\0" + name.encode() + b"\0" + str(p.stat().st_size).encode() + b"\0")
            with open(p, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                    h.update(chunk)
    return "sha256:" + h.hexdigest()


# --------------------------------------------------------------------------- run folders


def _phase_name(phase: int | str) -> str:
    text = str(phase)
    if text.startswith("phase"):
        text = text[len("phase"):]
    if not _NAME_RE.match(text):
        raise CheckpointError(
            f"phase {phase!r} is not a valid phase name (use 1..5 or a plain word)")
    return text


def _config_dict(cfg: Config | Mapping) -> dict:
    return to_dict(cfg) if dataclasses.is_dataclass(cfg) else json.loads(json.dumps(dict(cfg)))


def _normalised(data: dict) -> dict:
    """A stored config dict passed through the Config schema (YAML quirks, tuples vs lists)."""
    try:
        return to_dict(config_from_dict(data))
    except ConfigError:
        return data


def _differing_keys(saved: dict, now: dict) -> list[tuple[str, Any, Any]]:
    """``(dotted key, saved value, now value)`` for every key whose values differ, sorted."""
    a, b = dotted_items(_normalised(saved)), dotted_items(_normalised(now))
    keys = sorted(set(a) | set(b))
    pairs = ((key, a.get(key, "<absent>"), b.get(key, "<absent>")) for key in keys)
    return [(key, va, vb) for key, va, vb in pairs if va != vb]


def _config_diff(saved: dict, now: dict) -> list[str]:
    return [f"{key}: {va!r} (saved) != {vb!r} (now)"
            for key, va, vb in _differing_keys(saved, now)]


def _repair_jsonl(path: Path) -> None:
    """Drop a torn last line left by a crash mid-append, so the next line starts clean."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, 2)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)
    warnings.warn(f"{path}: dropped a torn last line ({len(data) - cut} bytes) left by an "
                  f"interrupted write", stacklevel=3)


# --------------------------------------------------------------------------- tracking

_TRACKING: dict[str, Any] = {"mlflow": None, "experiment": "hrl-sarp"}


def _mlflow_client_class() -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise HrlSarpError("--mlflow needs the optional mlflow package: pip install "
                           "'hrl-sarp-jax[mlflow]' (TensorBoard files are written without "
                           "it)") from None
    return MlflowClient


def configure_tracking(*, mlflow: str | None = None, experiment: str = "hrl-sarp") -> None:
    """Process-wide tracking for the runs ``create_run`` opens from now on (the CLI's
    ``--mlflow URI``): each also logs to an MLflow run in ``experiment`` at ``mlflow``.
    Fails at once (one line) when mlflow is not installed."""
    if mlflow is not None:
        _mlflow_client_class()
    _TRACKING.update(mlflow=mlflow, experiment=experiment)


def _scalar(v: Any) -> float | None:
    v = to_json_safe(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


def _tracked(phase: int | str, metrics: Mapping[str, Any]
             ) -> tuple[dict[str, float], dict[int, dict[str, float]]]:
    """(tag -> mean value, seed -> tag -> value) of one metrics record; tags are
    ``phase<k>/<name>``. Per-seed values come from the ``per_seed`` mapping and from lists
    under keys ending in ``_per_seed``; non-numeric and non-finite values are left out."""
    means: dict[str, float] = {}
    seeds: dict[int, dict[str, float]] = {}
    lists: dict[str, Any] = {}
    for k, v in metrics.items():
        if k == PER_SEED_KEY and isinstance(v, Mapping):
            lists.update({str(n): vals for n, vals in v.items()})
        elif k.endswith("_per_seed") and isinstance(v, (list, tuple)):
            lists.setdefault(k[:-len("_per_seed")], v)
        elif (x := _scalar(v)) is not None:
            means[f"phase{phase}/{k}"] = x
    for name, vals in lists.items():
        for i, v in enumerate(to_json_safe(vals) or ()):
            if (x := _scalar(v)) is not None:
                seeds.setdefault(i, {})[f"phase{phase}/{name}"] = x
    return means, seeds


class _MlflowSink:
    """One MLflow run per run folder and tracking URI (kept in ``mlflow.json``, so a resumed
    run continues the same MLflow run): params = the resolved config flattened, metrics = what
    ``log_metrics`` logs, artifacts (on close) = config, run.json, metrics, summaries, reports."""

    def __init__(self, run: Run, uri: str, experiment: str):
        client_cls = _mlflow_client_class()
        try:
            self.client = client_cls(tracking_uri=uri)
            ids_path = run.root / MLFLOW_FILE
            ids = json.loads(ids_path.read_text()) if ids_path.is_file() else {}
            self.run_id = ids.get(uri)
            if self.run_id is not None:
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                exp = self.client.get_experiment_by_name(experiment)
                exp_id = exp.experiment_id if exp is not None else \
                    self.client.create_experiment(experiment)
                made = self.client.create_run(exp_id, run_name=run.name,
                                              tags={"hrl_sarp.run_dir": str(run.root.resolve())})
                self.run_id = made.info.run_id
                self._params(run.config_dict)
                atomic_write_json(ids_path, {**ids, uri: self.run_id})
        except HrlSarpError:
            raise
        except Exception as exc:
            raise HrlSarpError(f"--mlflow {uri}: cannot start an MLflow run ({_short(exc)}); "
                               f"check the tracking URI") from exc
        self.uri, self.failed = uri, False

    def _params(self, config: Mapping) -> None:
        from mlflow.entities import Param

        flat = [Param(k, str(to_json_safe(v))[:6000])
                for k, v in sorted(dotted_items(config).items())]
        for i in range(0, len(flat), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=flat[i:i + 100])

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        if self.failed or not scalars:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, v, now, step) for k, v in scalars.items()]
        try:
            for i in range(0, len(items), 1000):
                self.client.log_batch(self.run_id, metrics=items[i:i + 1000])
        except Exception as exc:  # tracking must not stop training
            self.failed = True
            warnings.warn(f"MLflow logging to {self.uri} failed and is off for this run "
                          f"({_short(exc)}); metrics.jsonl and TensorBoard files continue",
                          stacklevel=3)

    def close(self, root: Path) -> None:
        try:
            for name in (CONFIG_FILE, RUN_FILE, METRICS_FILE):
                if (root / name).is_file():
                    self.client.log_artifact(self.run_id, str(root / name))
            for summary in sorted(root.glob(f"phase*/{SUMMARY_FILE}")):
                self.client.log_artifact(self.run_id, str(summary), summary.parent.name)
            for folder in ("report", "report-markets"):
                if (root / folder).is_dir():
                    self.client.log_artifacts(self.run_id, str(root / folder), folder)
            self.client.set_terminated(self.run_id)
        except Exception as exc:
            warnings.warn(f"MLflow artifacts of {root} were not logged to {self.uri} "
                          f"({_short(exc)})", stacklevel=3)


class Run:
    """An open run folder ``checkpoints/<run>/``: config, fingerprint, metrics log.

    Made by :func:`create_run` (training) or :func:`open_run` (evaluation, inspection).
    Usable as a context manager; ``close()`` flushes the TensorBoard files and finishes the
    MLflow run (logging its artifacts).
    """

    def __init__(self, root: Path, info: dict, config: dict, *, tensorboard: bool | None = None):
        self.root = Path(root)
        self.name = str(info.get("run_name", self.root.name))
        self.info = info
        self.config_dict = config
        self.data_fingerprint = str(info.get("data_fingerprint", ""))
        self._tb_wanted = tensorboard is not False
        self._tb: dict[int | None, Any] = {}
        self._mlflow: _MlflowSink | None = None
        self._env_mark: dict[str, tuple[float, float]] = {}

    def __repr__(self) -> str:
        return f"Run({str(self.root)!r})"

    # -- paths
    @property
    def metrics_path(self) -> Path:
        return self.root / METRICS_FILE

    def phase_dir(self, phase: int | str) -> Path:
        return self.root / f"phase{_phase_name(phase)}"

    def phases(self) -> list[str]:
        """Names of the phases that have a folder, in natural order (1, 2, ..., 10, other)."""
        names = [p.name[len("phase"):] for p in self.root.glob("phase*") if p.is_dir()]
        return sorted(names, key=lambda n: (0, int(n), "") if n.isdigit() else (1, 0, n))

    @property
    def config(self) -> Config:
        """The run's resolved config rebuilt as a :class:`Config`."""
        try:
            return config_from_dict(self.config_dict)
        except ConfigError as exc:
            raise CheckpointError(f"{self.root / CONFIG_FILE}: does not fit this version's config "
                                  f"schema ({exc}); use a matching hrl_sarp_jax version") from exc

    # -- metrics
    def log_metrics(self, phase: int | str, step: int, metrics: Mapping[str, Any]) -> dict:
        """Append one line ``{"phase", "step", "time", **metrics}`` to ``metrics.jsonl``, and
        the numeric values to TensorBoard (``tb/``) and MLflow when enabled.

        JAX/NumPy values become Python numbers; NaN becomes ``null`` and ±inf ``"inf"``/``"-inf"``
        so every line is strict JSON. The line is fsynced before returning. Returns the record.

        Per-seed values go under ``per_seed`` (``{name: [value per seed]}``) or in lists under
        ``<name>_per_seed``; they are written per seed (``tb/seed<i>/``, MLflow
        ``phase<k>/seed<i>/<name>``). ``env_steps`` (cumulative, all seeds) adds
        ``env_steps_per_s``: the wall-clock rate since the phase's previous ``env_steps``.
        """
        clash = [k for k in metrics if k in _RESERVED_METRIC_KEYS]
        if clash:
            raise ValueError(f"log_metrics: metric names {clash} are reserved; rename them")
        name = _phase_name(phase)
        phase_key: int | str = int(name) if name.isdigit() else name
        now = time.time()
        record = {"phase": phase_key, "step": int(step), "time": now}
        record.update({str(k): to_json_safe(v) for k, v in metrics.items()})
        env = _scalar(record.get("env_steps"))
        if env is not None and "env_steps_per_s" not in record:
            mark = self._env_mark.get(name)
            if mark is not None and env > mark[1] and now > mark[0]:
                record["env_steps_per_s"] = (env - mark[1]) / (now - mark[0])
            self._env_mark[name] = (now, env)
        if jax.process_index() == 0:
            append_line(self.metrics_path, json.dumps(record, allow_nan=False, sort_keys=False))
            self._track(phase_key, int(step), record)
        return record

    def read_metrics(self) -> list[dict]:
        """Every record of ``metrics.jsonl`` (a torn last line is skipped)."""
        if not self.metrics_path.is_file():
            return []
        out = []
        for line in self.metrics_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def _writer(self, seed: int | None) -> Any:
        if seed not in self._tb:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise CheckpointError("tensorboardX is missing (a dependency of hrl-sarp-jax); "
                                      "pip install tensorboardX") from None
            folder = self.root / TB_DIR / ("" if seed is None else f"seed{seed}")
            self._tb[seed] = SummaryWriter(str(folder), flush_secs=10)
        return self._tb[seed]

    def _track(self, phase: int | str, step: int, record: Mapping[str, Any]) -> None:
        """The record's numbers to TensorBoard (means in tb/, seeds in tb/seed<k>/) and
        MLflow; the reserved keys phase/step/time are not metrics."""
        metrics = {k: v for k, v in record.items() if k not in _RESERVED_METRIC_KEYS}
        means, seeds = _tracked(phase, metrics)
        if self._tb_wanted:
            for seed, values in ((None, means), *sorted(seeds.items())[:TB_MAX_SEEDS]):
                writer = self._writer(seed)
                for tag, v in values.items():
                    writer.add_scalar(tag, v, step)
        if self._mlflow is not None:
            flat = dict(means)
            for seed, values in seeds.items():
                # phase<k>/seed<i>/<name>: a key may not nest under another (MLflow file store)
                flat.update({tag.replace("/", f"/seed{seed}/", 1): v
                             for tag, v in values.items()})
            self._mlflow.log(step, flat)

    def start_mlflow(self, uri: str, experiment: str = "hrl-sarp") -> None:
        """Also log to an MLflow run at tracking ``uri`` (one per run folder and URI)."""
        if jax.process_index() == 0:
            self._mlflow = _MlflowSink(self, uri, experiment)

    def flush(self) -> None:
        """Write buffered TensorBoard events to disk now."""
        for writer in self._tb.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._tb.values():
            writer.close()
        self._tb = {}
        if self._mlflow is not None:
            self._mlflow.close(self.root)
            self._mlflow = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _read_run_files(run_dir: Path) -> tuple[dict, dict]:
    info_path, cfg_path = run_dir / RUN_FILE, run_dir / CONFIG_FILE
    try:
        info = json.loads(info_path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{run_dir}: not a run folder (no {RUN_FILE}); check the --run name "
                              f"or start the run with `hrl-sarp train`") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{info_path}: damaged ({exc}); restore it from a backup or start "
                              f"a new run with another --run name") from exc
    if int(info.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{run_dir}: written by a newer hrl_sarp_jax (run format "
                              f"{info.get('format_version')} > {FORMAT_VERSION}); "
                              f"upgrade the package")
    try:
        config = yaml.safe_load(cfg_path.read_text()) or {}
    except FileNotFoundError as exc:
        raise CheckpointError(f"{run_dir}: {CONFIG_FILE} is missing; the run cannot be resumed "
                              f"safely, start a new run with another --run name") from exc
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{cfg_path}: damaged ({exc}); start a new run with another "
                              f"--run name") from exc
    # keys added since the run was saved mean what the run trained with
    return info, upgrade_saved_config(config) if isinstance(config, dict) else config


def open_run(run_dir: str | Path, *, tensorboard: bool | None = False) -> Run:
    """Open an existing run folder read-mostly (for evaluation or inspection)."""
    run_dir = Path(run_dir)
    info, config = _read_run_files(run_dir)
    return Run(run_dir, info, config, tensorboard=tensorboard)


def _check_run_name(name: Any) -> None:
    """CheckpointError unless ``name`` is a valid run folder name (no paths)."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CheckpointError(f"run name {name!r} is not valid: use letters, digits, '.', '_' "
                              f"or '-', starting with a letter or digit")


def create_run(
    root: str | Path,
    run_name: str,
    cfg: Config | Mapping,
    data_fingerprint: str,
    *,
    resume: bool,
    tensorboard: bool | None = None,
    market: Mapping | None = None,
    mlflow: str | None = None,
) -> Run:
    """Create ``root/run_name`` for a new run, or reopen it when ``resume`` is set.

    ``market``: what the run trains on (``data.io.market_identity``), kept in run.json as
    ``market`` so that evaluation can tell in-sample markets apart (added on resume when the
    run has none yet).

    - New folder: writes ``run.json`` and ``config.yaml`` atomically.
    - Existing folder without ``resume``: refused (its checkpoints would be mixed with the new
      run's), naming any config keys or data fingerprint that differ.
    - Existing folder with ``resume``: the saved config and fingerprint must equal ``cfg`` and
      ``data_fingerprint``; otherwise refused, naming the keys that differ.
    - ``resume`` on a folder that does not exist starts the run (so a restart command can
      always pass ``--resume``).

    ``tensorboard``: False writes no TensorBoard files (None or True: ``tb/``). ``mlflow``: a
    tracking URI to log to as well (default: the one given to ``configure_tracking``).
    """
    _check_run_name(run_name)
    run_dir = Path(root) / run_name
    now_cfg = _config_dict(cfg)
    if (run_dir / RUN_FILE).exists():
        info, saved_cfg = _read_run_files(run_dir)
        diffs = _config_diff(saved_cfg, now_cfg)
        saved_fp = str(info.get("data_fingerprint", ""))
        if saved_fp != data_fingerprint:
            diffs.append(f"data fingerprint: {saved_fp[:19]}... (saved) != "
                         f"{data_fingerprint[:19]}... (now)")
        if diffs:
            shown = "; ".join(diffs[:5]) + (f"; +{len(diffs) - 5} more" if len(diffs) > 5 else "")
            raise CheckpointError(
                f"run folder {run_dir} already exists with a different setup: {shown}. "
                f"Choose a new --run name, or rerun with the saved config "
                f"({run_dir / CONFIG_FILE}) and data to --resume it")
        if not resume:
            raise CheckpointError(f"run folder {run_dir} already exists; pass --resume to continue "
                                  f"it, or choose a new --run name")
        _repair_jsonl(run_dir / METRICS_FILE)
        info = {**info, "resumed_at": _now()}
        if market is not None and "market" not in info:
            info["market"] = dict(market)
        if jax.process_index() == 0:
            atomic_write_json(run_dir / RUN_FILE, info)
        return _tracked_run(Run(run_dir, info, saved_cfg, tensorboard=tensorboard), mlflow)

    info = _new_run_info(run_name, data_fingerprint, market)
    if jax.process_index() == 0:
        _write_run_files(run_dir, info, now_cfg)
    return _tracked_run(Run(run_dir, info, now_cfg, tensorboard=tensorboard), mlflow)


def _new_run_info(run_name: str, data_fingerprint: str, market: Mapping | None) -> dict:
    info = {
        "format_version": FORMAT_VERSION,
        "run_name": run_name,
        "data_fingerprint": data_fingerprint,
        "created_at": _now(),
    }
    if market is not None:
        info["market"] = dict(market)
    return info


def _write_run_files(run_dir: Path, info: dict, config: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    # config first: a folder with run.json always has its config.
    atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    atomic_write_json(run_dir / RUN_FILE, info)


def branch_run(
    root: str | Path,
    source: str,
    run_name: str,
    cfg: Config | Mapping,
    data_fingerprint: str,
    *,
    keep: int,
    free_sections: Iterable[str],
    market: Mapping | None = None,
) -> Path:
    """Start the new run ``root/run_name`` from run ``root/source``'s finished Phases 1..keep.

    Their folders (checkpoints and summaries) and metrics lines are copied, so a run continued in
    the new folder (``pipeline.main_job``) keeps them and trains only the later phases: variants
    of the later phases against the same earlier ones, with every earlier rung identical.
    ``free_sections``: the dotted config sections no kept phase reads (``training.phases.
    sections_free_after``); any other key differing from ``source``'s saved config is refused,
    as are another data fingerprint, an unfinished kept phase and an existing ``run_name``
    (each a CheckpointError naming the key, phase or folder). The folder is assembled under
    ``<run_name>.branching`` and renamed into place, so an interruption leaves no half run.
    ``run.json`` records ``branched_from``. Returns the new run folder."""
    for name in (run_name, source):
        _check_run_name(name)
    if jax.process_count() > 1:
        raise CheckpointError("--branch runs in one process: branch the run without "
                              "--distributed, then continue it with --distributed")
    root = Path(root)
    src_dir, run_dir = root / source, root / run_name
    if run_dir.exists():
        raise CheckpointError(f"run folder {run_dir} already exists; a branch starts a new run: "
                              f"choose another --run name")
    if not (src_dir / RUN_FILE).is_file():
        raise CheckpointError(f"--branch: no run {source!r} under {root} (no "
                              f"{src_dir / RUN_FILE}); check the run name and --checkpoints")
    src_info, src_cfg = _read_run_files(src_dir)
    if str(src_info.get("data_fingerprint", "")) != data_fingerprint:
        raise CheckpointError(f"run {src_dir} was trained on other data (fingerprint "
                              f"{str(src_info.get('data_fingerprint', ''))[:19]}...): branch it "
                              f"with its own --data")
    src = Run(src_dir, src_info, src_cfg, tensorboard=False)
    for k in range(1, keep + 1):
        if read_phase_summary(src, k) is None:
            earlier = f", or branch after phase {k - 1}" if k > 1 else ""
            raise CheckpointError(f"phase {k} of run {src_dir} is not finished (no "
                                  f"phase{k}/{SUMMARY_FILE}): finish it{earlier}")
    free = tuple(free_sections)
    now_cfg = _config_dict(cfg)
    fixed = [(key, va, vb) for key, va, vb in _differing_keys(src_cfg, now_cfg)
             if not any(key == f or key.startswith(f + ".") for f in free)]
    if fixed:
        key, va, vb = fixed[0]
        more = f" (+{len(fixed) - 1} more)" if len(fixed) > 1 else ""
        raise CheckpointError(
            f"{key}: {vb!r} differs from run {source}'s {va!r}{more}, and phases 1-{keep} of that "
            f"run were trained with it; after phase {keep} only "
            f"{', '.join(free) or 'nothing'} may change: branch after an earlier phase, or keep "
            f"the value")
    info = _new_run_info(run_name, data_fingerprint, market)
    info["branched_from"] = {"run": source, "phases": keep,
                             "created_at": src_info.get("created_at")}
    _assemble_run(src, range(1, keep + 1), run_dir, info, now_cfg, ".branching")
    return run_dir


def derived_run(src: Run, root: str | Path, run_name: str, cfg: Config | Mapping,
                phases: Iterable[int], *, selected_from: Mapping[str, Any]) -> Run:
    """A fresh run folder ``root/run_name`` under ``cfg`` (an earlier one replaced) holding
    ``src``'s ``phases`` that it has: their folders (checkpoints, summaries) and metrics lines,
    so the next phase and ``evaluate`` continue from the same agents and count the same
    validation evaluations (``pipeline.selection_trials``). ``selected_from`` goes into
    run.json (a sweep's ``best/``: {"run", "trials": the settings it was chosen among}). Same
    data fingerprint and market as ``src``. Assembled under ``<run_name>.staging`` and swapped
    in, so an interruption leaves the earlier folder or the new one, never half of either."""
    _check_run_name(run_name)
    run_dir = Path(root) / run_name
    info = _new_run_info(run_name, src.data_fingerprint, src.info.get("market"))
    info["selected_from"] = dict(selected_from)
    now_cfg = _config_dict(cfg)
    if jax.process_index() == 0:  # one writer; the others wait until the folder is in place
        _assemble_run(src, phases, run_dir, info, now_cfg, ".staging")
    wait_for_processes(f"derived_run/{run_name}")
    return Run(run_dir, info, now_cfg, tensorboard=False)


def _assemble_run(src: Run, phases: Iterable[int], run_dir: Path, info: dict, config: dict,
                  suffix: str) -> None:
    """Build ``run_dir`` under ``run_dir + suffix`` (a leftover of an interrupted build removed
    first): ``src``'s phase folders among ``phases`` (those it has) and their metrics lines,
    run.json and config.yaml; then rename it into place, an existing ``run_dir`` moved aside
    first and removed after."""
    stage = run_dir.with_name(run_dir.name + suffix)
    if stage.exists():  # our own leftover of an interrupted build
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    kept = tuple(int(k) for k in phases)
    for k in kept:
        if src.phase_dir(k).is_dir():
            shutil.copytree(src.phase_dir(k), stage / src.phase_dir(k).name, symlinks=True)
    if src.metrics_path.is_file():
        lines = [line for line in src.metrics_path.read_text().splitlines(keepends=True)
                 if _metrics_phase(line) in kept]
        atomic_write_text(stage / METRICS_FILE, "".join(lines))
    _write_run_files(stage, info, config)
    old = run_dir.with_name(run_dir.name + ".replaced")
    if old.exists():
        shutil.rmtree(old)
    if run_dir.exists():
        run_dir.rename(old)
    stage.rename(run_dir)
    if old.exists():
        shutil.rmtree(old)


def branched_from(run_dir: str | Path, branch: tuple[str, int]) -> bool:
    """Whether ``run_dir`` is a run already branched from ``branch`` = (source, keep): the same
    ``--branch`` command then continues it instead of refusing the existing folder."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return False
    info, _ = _read_run_files(Path(run_dir))
    origin = info.get("branched_from") or {}
    return (origin.get("run"), origin.get("phases")) == tuple(branch)


def describe_origin(info: Mapping[str, Any]) -> str | None:
    """Where a run's earlier phases came from, from its run.json ``info``, in one line (None
    for a run trained from scratch): a ``--branch`` (``branched_from``) or a sweep's ``best/``
    or ``setting<i>/`` folder (``selected_from``)."""
    branch, chosen = info.get("branched_from"), info.get("selected_from")
    if isinstance(branch, dict):
        k = branch.get("phases")
        return (f"branched from run {branch.get('run')} after phase {k} (phases 1-{k} copied "
                f"from it; only the later ones trained here)")
    if isinstance(chosen, dict):
        trials = int(chosen.get("trials", 1))
        if trials > 1:
            return (f"chosen by the sweep of run {chosen.get('run')} among {trials} settings; "
                    f"its deflated Sharpe counts them as trials")
        return f"one setting of the sweep of run {chosen.get('run')} (not a selection)"
    return None


def _metrics_phase(line: str) -> Any:
    """The ``phase`` of one metrics.jsonl line (None for a torn or foreign line)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record.get("phase") if isinstance(record, dict) else None


def _tracked_run(run: Run, mlflow: str | None) -> Run:
    uri = mlflow if mlflow is not None else _TRACKING["mlflow"]
    if uri is not None and run._tb_wanted:  # tensorboard=False runs (sweep members) stay quiet
        run.start_mlflow(uri, _TRACKING["experiment"])
    return run


def _now() -> str:
    return _dt.datetime.now(tz=_dt.timezone.utc).isoformat(timespec="seconds")


def _as_run(run: Run | str | Path) -> Run:
    return run if isinstance(run, Run) else open_run(run)


def write_phase_summary(run: Run | str | Path, phase: int | str,
                        summary: Mapping[str, Any]) -> Path:
    """Write ``phase<k>/summary.json`` atomically (strict JSON; ``format_version`` and ``phase``
    are added unless given). Returns the path."""
    run = _as_run(run)
    path = run.phase_dir(phase) / SUMMARY_FILE
    body = {"format_version": FORMAT_VERSION, "phase": _phase_name(phase), "written_at": _now()}
    body.update(dict(summary))
    if jax.process_index() == 0:
        atomic_write_json(path, body)
    return path


def read_phase_summary(run: Run | str | Path, phase: int | str) -> dict | None:
    path = _as_run(run).phase_dir(phase) / SUMMARY_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: damaged ({exc}); rerun the phase to rewrite it") from exc


# --------------------------------------------------------------------------- orbax quieting


_ORBAX_UNRAISABLE = ("Encountered error while reading array index", "_read_array_index",
                     "TensorStore(")


def _is_orbax_read_leftover(unraisable: Any) -> bool:
    """Is this one of the leftovers of a failed orbax read?

    When a read fails, orbax's event loop closes while sibling TensorStore reads are still
    pending; they later die as "Exception ignored in" reports (a coroutine whose error dumps a
    whole TensorStore spec, or ``RuntimeError('Event loop is closed')`` from
    ``call_soon_threadsafe``), at garbage collection or from a TensorStore thread.
    """
    exc = unraisable.exc_value
    obj = getattr(unraisable, "object", None)
    text = f"{exc!r} {getattr(obj, '__qualname__', '')}"
    if any(s in text for s in _ORBAX_UNRAISABLE):
        return True
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        tb = exc.__traceback__
        frames = []
        while tb is not None:
            frames.append(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        return "call_soon_threadsafe" in frames or "_check_closed" in frames
    return False


def _install_unraisable_filter() -> None:
    """Wrap ``sys.unraisablehook`` (once) so orbax read leftovers are dropped; every other
    report goes to the hook that was installed before."""
    current = sys.unraisablehook
    if getattr(current, "_hrl_sarp_filter", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_orbax_read_leftover(unraisable):
            current(unraisable)

    hook._hrl_sarp_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Trim orbax's noise while we try (and maybe fail) to read checkpoints: its absl log
    lines and the "Exception ignored in ..." TensorStore dumps of failed reads (our own
    warnings say what happened)."""
    _install_unraisable_filter()
    loggers = [logging.getLogger(n) for n in ("absl", "orbax")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    except BaseException:
        gc.collect()  # let a failed read's coroutines die now rather than at a random later time
        raise
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text.split(" [tensorstore_spec=")[0].split(" See full TensorStore")[0]
    return f"{type(exc).__name__}: {text[:200]}"


# --------------------------------------------------------------------------- checkpoints


class _Damaged(Exception):
    """A step's content does not match the hash stored with it."""


def _metric_fn(name: str, higher_is_better: bool):
    worst = -math.inf if higher_is_better else math.inf

    def fn(metrics: Any) -> float:
        try:
            v = float(metrics[name])
        except (KeyError, TypeError, ValueError):
            return worst
        return worst if math.isnan(v) else v

    return fn


class PhaseCheckpointer:
    """One Orbax ``CheckpointManager`` for one phase of a run: ``<run>/phase<k>/ckpt/``.

    Keeps the newest ``keep_latest`` steps plus the best one by ``metrics[best_metric]``
    (``AnyPreservationPolicy([LatestN, BestN])``; never ``max_to_keep`` + ``best_fn``, which
    deletes the newest). Saves are asynchronous; ``close()`` (or leaving the ``with`` block)
    waits for them. ``read_only=True`` opens a phase of another process's run for restoring.
    """

    def __init__(
        self,
        run: Run | str | Path,
        phase: int | str,
        *,
        keep_latest: int = 3,
        best_metric: str = "val_sharpe",
        higher_is_better: bool = True,
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.run = _as_run(run)
        self.phase = _phase_name(phase)
        self.phase_dir = self.run.phase_dir(self.phase)
        self.directory = self.phase_dir / "ckpt"
        self.read_only = read_only
        if keep_latest < 1:
            raise ValueError(f"keep_latest must be >= 1, got {keep_latest}")
        settings_path = self.phase_dir / CHECKPOINTER_FILE
        if read_only and settings_path.is_file():  # the writer's choice wins when reading
            with contextlib.suppress(json.JSONDecodeError, KeyError):
                saved = json.loads(settings_path.read_text())
                best_metric = saved["best_metric"]
                higher_is_better = bool(saved["higher_is_better"])
                keep_latest = int(saved.get("keep_latest", keep_latest))
        self.keep_latest = keep_latest
        self.best_metric = best_metric
        self.higher_is_better = higher_is_better
        self._damaged: set[int] = set()

        if read_only:
            if not self.directory.is_dir():
                raise CheckpointError(
                    f"{self.directory}: phase {self.phase} of run {self.run.name} has no "
                    f"checkpoints; run phase {self.phase} first (hrl-sarp train --phase "
                    f"{self.phase} --run {self.run.name})")
        elif jax.process_index() == 0:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._clean_tmp()
            atomic_write_json(settings_path, {
                "format_version": FORMAT_VERSION, "best_metric": best_metric,
                "higher_is_better": higher_is_better, "keep_latest": keep_latest})

        fn = _metric_fn(best_metric, higher_is_better)
        policy = ocm.AnyPreservationPolicy([
            ocm.LatestN(keep_latest),
            ocm.BestN(get_metric_fn=fn, reverse=not higher_is_better, n=1),
        ])
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            # best_fn only makes orbax write each step's metrics to disk and rank best_step();
            # retention is the preservation policy above.
            best_fn=fn,
            best_mode="max" if higher_is_better else "min",
            enable_async_checkpointing=async_save,
            read_only=read_only,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            # orbax names its save barriers by step only: two phases' checkpointers saving
            # the same step at once (the flat baseline's state and policy) would share them
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                barrier_sync_key_prefix=f"phase{self.phase}"),
        )
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        with _quiet_orbax():
            self._mgr = ocp.CheckpointManager(self.directory.resolve(), item_handlers=handlers,
                                              options=options)

    # -- housekeeping
    def _clean_tmp(self) -> None:
        """Remove ``*.orbax-checkpoint-tmp*`` leftovers of saves killed mid-write."""
        for p in self.directory.glob(f"*{_TMP_MARK}*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)

    def _where(self, step: int | None = None) -> str:
        at = f" step {step}" if step is not None else ""
        return f"run {self.run.name} phase {self.phase}{at} ({self.directory})"

    def wait_until_finished(self) -> None:
        self._mgr.wait_until_finished()

    def close(self) -> None:
        """Wait for in-flight saves, then release the manager."""
        try:
            self._mgr.wait_until_finished()
        finally:
            self._mgr.close()

    def __enter__(self) -> PhaseCheckpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- queries
    def all_steps(self) -> list[int]:
        return sorted(self._mgr.all_steps())

    def latest_step(self) -> int | None:
        """The newest step on disk (it may turn out damaged: ``restore`` then falls back)."""
        return self._mgr.latest_step()

    def best_step(self) -> int | None:
        """The step with the best ``best_metric`` (None when there are no steps)."""
        if not self.read_only:
            self._mgr.wait_until_finished()  # metrics of in-flight saves are not on disk yet
        steps = self.all_steps()
        if not steps:
            return None
        return self._ranked(steps)[0]

    def metrics(self, step: int) -> dict | None:
        return self._mgr.metrics(step)

    def _ranked(self, steps: Iterable[int]) -> list[int]:
        """Steps best first; ties and steps without the metric go to the newest."""
        fn = _metric_fn(self.best_metric, self.higher_is_better)
        sign = -1.0 if self.higher_is_better else 1.0
        return sorted(steps, key=lambda s: (sign * fn(self._mgr.metrics(s) or {}), -s))

    # -- save
    def save(self, step: int, state: PyTree, *, metrics: Mapping[str, Any] | None = None,
             meta: Mapping[str, Any] | None = None) -> None:
        """Save ``state`` at ``step`` (asynchronously) with its metrics and JSON metadata.

        ``meta`` must be JSON-like (arrays become lists); a content hash of ``state`` and the
        format version, phase, step and metrics are added. Raises CheckpointError if ``step``
        is not newer than every kept step (orbax would silently skip it).
        """
        if self.read_only:
            raise CheckpointError(f"{self._where()} was opened read-only; cannot save")
        step = int(step)
        self._make_room(step)
        digest, signature = _digests(_hashable(state))
        clean_metrics = {str(k): to_json_safe(v) for k, v in (metrics or {}).items()}
        orbax_metrics = {k: v for k, v in clean_metrics.items()
                         if isinstance(v, (int, float)) and not isinstance(v, bool)}
        record = {
            "format_version": FORMAT_VERSION,
            "hash_algorithm": HASH_ALGORITHM,
            "content_hash": digest,
            "signature": signature,
            "phase": self.phase,
            "step": step,
            "metrics": clean_metrics,
            "best_metric": self.best_metric,
            "higher_is_better": self.higher_is_better,
            "saved_at": _now(),
            "run_name": self.run.name,
            "user": to_json_safe(dict(meta or {})),
        }
        args = ocp.args.Composite(state=ocp.args.StandardSave(as_global_arrays(state)),
                                  meta=ocp.args.JsonSave(record))
        ok = self._mgr.save(step, args=args, metrics=orbax_metrics)
        if not ok:
            raise CheckpointError(f"{self._where(step)}: orbax declined to save step {step} "
                                  f"(latest is {self.latest_step()}); save a newer step")

    def _make_room(self, step: int) -> None:
        """Refuse a step that is not newer than the kept ones, except over damaged steps that
        an earlier restore fell back from: those are moved to ``phase<k>/damaged/``."""
        blocking = [s for s in self.all_steps() if s >= step]
        if not blocking:
            return
        if not set(blocking) <= self._damaged:
            raise CheckpointError(
                f"{self._where(step)}: cannot save step {step}, the phase already holds steps "
                f"{blocking}; resume from the latest step (--resume) or use a new --run name")
        self._mgr.wait_until_finished()
        quarantine = self.phase_dir / "damaged"
        quarantine.mkdir(exist_ok=True)
        for s in blocking:
            src = self.directory / str(s)
            if src.exists():
                dest = quarantine / f"{s}-{time.strftime('%Y%m%dT%H%M%S')}"
                shutil.move(str(src), str(dest))
                warnings.warn(f"{self._where(s)}: moved damaged step {s} to {dest}", stacklevel=3)
            self._damaged.discard(s)
        self._mgr.reload()

    # -- restore
    def _candidates(self, step: None | str | int) -> list[int]:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"{self._where()}: no checkpoints; run phase {self.phase} "
                                  f"first (hrl-sarp train --phase {self.phase} "
                                  f"--run {self.run.name})")
        if step is None or step == "latest":
            return sorted(steps, reverse=True)
        if step == "best":
            return self._ranked(steps)  # then the next best, ...
        if isinstance(step, (int, np.integer)) and not isinstance(step, bool):
            if int(step) not in steps:
                raise CheckpointError(f"{self._where(int(step))}: no such step; kept steps are "
                                      f"{steps}")
            return [s for s in sorted(steps, reverse=True) if s <= int(step)]
        raise ValueError(f"restore: step must be None, 'latest', 'best' or an int, got {step!r}")

    def _restore_one(self, step: int, abstract_state: PyTree | None) -> tuple[PyTree, dict]:
        target = ocp.args.StandardRestore(abstract_state) if abstract_state is not None \
            else ocp.args.StandardRestore()
        with _quiet_orbax():
            out = self._mgr.restore(step, args=ocp.args.Composite(
                state=target, meta=ocp.args.JsonRestore()))
        state, meta = out.state, dict(out.meta or {})
        fv = int(meta.get("format_version", 0))
        if fv > FORMAT_VERSION:
            raise CheckpointError(f"{self._where(step)}: written by a newer hrl_sarp_jax "
                                  f"(format {fv} > {FORMAT_VERSION}); upgrade the package")
        stored = meta.get("content_hash")
        if stored is None:
            raise _Damaged("its metadata holds no content hash")
        got, signature = _digests(_hashable(state))
        if meta.get("signature") not in (None, signature):
            # The caller asked for other dtypes (e.g. f32 -> bf16): the bytes cannot match.
            meta["hash_verified"] = False
        else:
            if got != stored:
                raise _Damaged(f"content hash mismatch (stored {stored[:19]}..., restored "
                               f"{got[:19]}...)")
            meta["hash_verified"] = True
        return state, meta

    def restore(self, abstract_state: PyTree, step: None | str | int = None, *,
                for_policy: bool = False) -> tuple[PyTree, dict, int]:
        """Restore into ``abstract_state`` (``jax.eval_shape`` output / ShapeDtypeStructs,
        shardings honoured). ``step``: None or ``'latest'``, ``'best'`` or an int.
        ``for_policy``: the caller reads the policies only, so a ``REBUILT_SUBTREES`` subtree
        saved in an older layout may come back empty (listed in ``meta['emptied']``).

        A step that cannot be read or fails its content hash is reported with a warning and
        the next candidate is tried (older steps; for ``'best'`` the next best). Returns
        ``(state, meta, step)`` where ``meta`` is the stored JSON metadata (the caller's own
        under ``meta['user']``). Raises CheckpointError if no candidate restores, or at once
        if the target does not fit the checkpoint.
        """
        if abstract_state is None:
            raise CheckpointError("restore needs an abstract target (jax.eval_shape of the init "
                                  "function); restoring without one loses container types")
        self._mgr.wait_until_finished()
        candidates = self._candidates(step)
        failures: list[str] = []
        for s in candidates:
            try:
                state, meta = self._restore_one(s, abstract_state)
            except CheckpointError:
                raise
            except Exception as exc:
                text = str(exc)
                if any(m in text for m in _MISMATCH_MARKERS):
                    migrated = self._restore_migrated(s, abstract_state)
                    if migrated is not None:
                        emptied = migrated[1].get("emptied")
                        if emptied and not for_policy:
                            raise CheckpointError(
                                f"{self._where(s)}: saved with an earlier version's "
                                f"{', '.join(emptied)} layout; its policies still load for "
                                f"evaluation, but training cannot resume from it: move "
                                f"{self.directory} aside and rerun phase {self.phase} "
                                f"(hrl-sarp train --phase {self.phase} --run {self.run.name})"
                            ) from exc
                        return (*migrated, s)
                    raise CheckpointError(
                        f"{self._where(s)}: the restore target does not fit the checkpoint "
                        f"({_short(exc)}); build the target from the run's config.yaml "
                        f"({self.run.root / CONFIG_FILE}) with jax.eval_shape") from exc
                self._damaged.add(s)
                failures.append(f"step {s}: {_short(exc)}")
                warnings.warn(f"{self._where(s)} is damaged and was skipped ({_short(exc)}); "
                              f"trying an older checkpoint", stacklevel=2)
                continue
            return state, meta, s
        raise CheckpointError(
            f"{self._where()}: no checkpoint could be restored ({'; '.join(failures)}). "
            f"Move the damaged step folders out of {self.directory} and rerun phase {self.phase}, "
            f"or start a new run with another --run name")


    def _restore_migrated(self, step: int, abstract_state: PyTree
                          ) -> tuple[PyTree, dict] | None:
        """Restore a step saved before a known layout change into ``abstract_state``: the
        stored leaves (content hash verified) by path, ``ADDED_LEAVES`` as zeros, and a
        ``REBUILT_SUBTREES`` subtree whose stored leaves differ from the target's as the
        target's zeros (``meta['emptied']``). None when the difference is anything else (the
        caller then reports the mismatch)."""
        try:
            stored, meta = self._restore_one(step, _metadata_target(self, step))
        except Exception:
            return None
        by_path = dict(_sorted_leaves(stored))
        stored_paths = dict(by_path)  # COPIED_SUBTREES read sources that restore themselves too
        flat, treedef = jax.tree_util.tree_flatten_with_path(abstract_state)
        emptied = _rebuilt_mismatches(by_path, flat)
        for prefix in emptied:
            for parts in [p for p in by_path if p[:len(prefix)] == prefix]:
                del by_path[parts]
        leaves, added, copied = [], False, False
        for path, want in flat:
            parts = _path_parts(path)
            if any(parts[:len(p)] == p for p in emptied):
                value = np.zeros(want.shape, want.dtype)
            elif parts in by_path:
                value = by_path.pop(parts)
                if tuple(np.shape(value)) != tuple(want.shape):
                    return None
            elif any(parts[-len(a):] == a for a in ADDED_LEAVES):
                value, added = np.zeros(want.shape, want.dtype), True
            elif _copied_source(parts) in stored_paths:
                value = stored_paths[_copied_source(parts)]
                copied = True
                if tuple(np.shape(value)) != tuple(want.shape):
                    return None
            else:
                return None
            sharding = getattr(want, "sharding", None)
            is_key = jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key)
            if is_key != jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
                return None   # typed keys restore as typed keys; anything else is a mismatch
            if not is_key:
                value = jax.numpy.asarray(value, want.dtype)
            leaves.append(jax.device_put(value, sharding) if sharding is not None else value)
        if by_path:   # stored leaves the target does not have: not a known migration
            return None
        if added:
            meta["migrated_leaves"] = [list(a) for a in ADDED_LEAVES]
        if copied:
            meta["copied_subtrees"] = [list(c) for c in COPIED_SUBTREES]
        if emptied:
            meta["emptied"] = sorted({"/".join(p) for p in emptied})
        return jax.tree_util.tree_unflatten(treedef, leaves), meta


def _copied_source(parts: tuple[str, ...]) -> tuple[str, ...] | None:
    """The stored path a ``COPIED_SUBTREES`` leaf is restored from (None: not such a leaf)."""
    for key, source in COPIED_SUBTREES:
        if key in parts:
            i = parts.index(key)
            return (*parts[:i], source, *parts[i + 1:])
    return None


def _rebuilt_mismatches(stored: dict[tuple[str, ...], Any], target: list
                        ) -> list[tuple[str, ...]]:
    """Path prefixes (ending in a ``REBUILT_SUBTREES`` key) under which the stored leaves'
    paths or shapes differ from the target's."""
    def prefix(parts: tuple[str, ...]) -> tuple[str, ...] | None:
        for i, part in enumerate(parts):
            if part in REBUILT_SUBTREES:
                return parts[:i + 1]
        return None

    want: dict[tuple[str, ...], dict] = {}
    for path, leaf in target:
        parts = _path_parts(path)
        if (p := prefix(parts)) is not None:
            want.setdefault(p, {})[parts] = tuple(leaf.shape)
    have: dict[tuple[str, ...], dict] = {}
    for parts, value in stored.items():
        if (p := prefix(parts)) is not None:
            have.setdefault(p, {})[parts] = tuple(np.shape(value))
    return sorted(p for p in want if have.get(p) != want[p])


# --------------------------------------------------------------------------- cross-phase helpers


def find_best(run: Run | str | Path, phase: int | str) -> int | None:
    """The best step of an earlier phase (by the metric that phase was saved with), or None if
    the phase has no checkpoints."""
    run = _as_run(run)
    ck_dir = run.phase_dir(phase) / "ckpt"
    if not ck_dir.is_dir():
        return None
    with PhaseCheckpointer(run, phase, read_only=True) as ck:
        return ck.best_step()


def restore_best(run: Run | str | Path, phase: int | str, abstract_state: PyTree
                 ) -> tuple[PyTree, dict, int]:
    """Restore an earlier phase's best checkpoint (falling back to the next best if damaged)."""
    return restore_chosen(run, phase, abstract_state, "best")


def restore_chosen(run: Run | str | Path, phase: int | str, abstract_state: PyTree,
                   which: str, *, for_policy: bool = False) -> tuple[PyTree, dict, int]:
    """Restore an earlier phase's ``which`` ('best' or 'latest', ``train.checkpoint``)
    checkpoint, falling back past damaged steps (``for_policy``: see
    ``PhaseCheckpointer.restore``)."""
    if which not in CHECKPOINT_RULES:
        raise CheckpointError(f"train.checkpoint = {which!r} is not one of "
                              f"{', '.join(CHECKPOINT_RULES)}")
    with PhaseCheckpointer(run, phase, read_only=True) as ck:
        return ck.restore(abstract_state, which, for_policy=for_policy)


def _metadata_target(ck: PhaseCheckpointer, step: int) -> PyTree:
    """ShapeDtypeStructs on this process's first device, built from a step's stored metadata:
    enough to restore for hashing on any device count (container types are not needed)."""
    with _quiet_orbax():
        md = ck._mgr.item_metadata(step)["state"]
    tree = getattr(md, "tree", md)
    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev), tree)


def _check_step(ck: PhaseCheckpointer, step: int, verify: bool) -> dict:
    out: dict[str, Any] = {"step": step, "metrics": ck.metrics(step)}
    try:
        if not verify:
            with _quiet_orbax():
                meta = ck._mgr.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            out.update(content_hash=meta.get("content_hash"), verified=None)
            return out
        state, meta = ck._restore_one(step, _metadata_target(ck, step))
        out.update(content_hash=meta.get("content_hash"), verified=bool(meta.get("hash_verified")))
        del state
    except Exception as exc:
        out.update(content_hash=None, verified=False, error=_short(exc))
    return out


def inspect_run(run_root: str | Path, *, verify: bool = True) -> dict:
    """A JSON-able description of a run folder, for ``hrl-sarp inspect --run NAME --json``.

    Per phase: all steps, latest and best step, the best metric, each step's metrics, and for
    the latest and best step the stored content hash; with ``verify`` the step is restored (into
    a target built from its own metadata) and its hash recomputed, ``verified`` telling whether
    they match, and ``error`` saying why a step could not be read.
    """
    run = open_run(run_root)
    phases: dict[str, Any] = {}
    for name in run.phases():
        entry: dict[str, Any] = {"summary": None}
        with contextlib.suppress(CheckpointError):
            entry["summary"] = read_phase_summary(run, name)
        if (run.phase_dir(name) / "ckpt").is_dir():
            with PhaseCheckpointer(run, name, read_only=True) as ck:
                steps = ck.all_steps()
                latest, best = ck.latest_step(), ck.best_step()
                entry.update(
                    steps=steps, latest_step=latest, best_step=best,
                    best_metric=ck.best_metric, higher_is_better=ck.higher_is_better,
                    latest=_check_step(ck, latest, verify) if latest is not None else None,
                    best=_check_step(ck, best, verify) if best is not None else None,
                )
        else:
            entry.update(steps=[], latest_step=None, best_step=None)
        damaged = run.phase_dir(name) / "damaged"
        entry["quarantined"] = sorted(p.name for p in damaged.iterdir()) if damaged.is_dir() else []
        phases[name] = entry
    metrics_lines = len(run.read_metrics())
    return to_json_safe({
        "run": run.name, "path": str(run.root), "format_version": run.info.get("format_version"),
        "data_fingerprint": run.data_fingerprint, "created_at": run.info.get("created_at"),
        "metrics_records": metrics_lines, "origin": describe_origin(run.info),
        "branched_from": run.info.get("branched_from"),
        "selected_from": run.info.get("selected_from"), "phases": phases,
    })
