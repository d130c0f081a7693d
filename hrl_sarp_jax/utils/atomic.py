"""Crash-safe file writes shared by every layer (host side, standard library only).

A file is written beside its target under a hidden temporary name, flushed and fsynced, then
renamed over the target with ``os.replace`` (atomic on POSIX and Windows), and the folder is
fsynced so the rename itself survives a power cut. A reader therefore sees either the old file
or the new one, never half of one. ``append_line`` is the append-only counterpart for logs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "append_line",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "to_json_safe",
]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual file mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_json_safe(value: Any) -> Any:
    """``value`` as strict-JSON data: arrays and NumPy/JAX scalars become Python numbers or
    lists, NaN becomes ``None`` and ±inf the strings ``"inf"``/``"-inf"``; tuples become
    lists; anything else unknown becomes its ``str``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    # NumPy / JAX arrays and scalars without importing either here: both offer ``tolist``.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        try:
            return to_json_safe(tolist())
        except Exception:  # e.g. typed PRNG keys refuse tolist()
            return str(value)
    return str(value)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` (made strict-JSON by :func:`to_json_safe`) atomically, sorted and indented."""
    text = json.dumps(to_json_safe(obj), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(path, text + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line to ``path`` and fsync it, so a crash loses at most the line being written.

    The line is written with a single ``write`` call on a file opened in append mode, so
    concurrent appenders on a local file system do not interleave inside a line.
    """
    if "\n" in line:
        raise ValueError("append_line: the line must not contain a newline")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write((line + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
