"""Shared test setup: CPU only, persistent compilation cache, float32, seeded inputs."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's backend at -O0: a cold test run spends most of its time compiling, and -O0 compiles the
# suite's programs in about 2/3 of the time (the default run on an empty cache: 983 s vs
# 1,206 s on machine B, docs/benchmarks.md). Tests compare programs compiled under the same
# flags bit for bit and across programs within float tolerances set from both levels' errors.
# HRL_SARP_JAX_TEST_XLA_OPT=1 keeps XLA's default level (what users run).
if os.environ.get("HRL_SARP_JAX_TEST_XLA_OPT") != "1" \
        and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402

_CACHE = Path(os.environ.get("HRL_SARP_JAX_CACHE", Path.home() / ".cache" / "hrl_sarp_jax" / "jax_cache"))
_CACHE.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


import ast  # noqa: E402
import gc  # noqa: E402

import pytest  # noqa: E402

_HEAVY = Path(__file__).with_name("heavy_tests.txt")


def _heavy_listed() -> set[str]:
    return {line.strip() for line in _HEAVY.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def _defines(path: Path, names: list[str]) -> bool:
    """Whether the test file ``path`` defines ``names`` (a function, or a class then a method)
    at its top level; read with ``ast``, nothing imported."""
    body = ast.parse(path.read_text()).body if path.is_file() else []
    for name in names:
        found = [n for n in body if isinstance(n, ast.FunctionDef | ast.ClassDef)
                 and n.name == name]
        if not found:
            return False
        body = found[0].body
    return True


def pytest_configure(config: pytest.Config) -> None:
    """An entry of heavy_tests.txt that names no test is a usage error, so the list cannot
    silently rot. Checked once, in the main process (xdist workers skip it: an error raised
    there surfaces as an INTERNALERROR without its message)."""
    if hasattr(config, "workerinput"):
        return
    root = Path(str(config.rootpath))
    for entry in sorted(_heavy_listed()):
        path, *names = entry.split("::")
        if not names or not _defines(root / path, names):
            raise pytest.UsageError(f"{_HEAVY}: no such test {entry}; remove or rename the line")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests listed in heavy_tests.txt ``heavy`` (the default run deselects them; CI's
    second call runs ``-m heavy``)."""
    listed = _heavy_listed()
    for item in items:
        if item.nodeid.split("[")[0] in listed:
            item.add_marker(pytest.mark.heavy)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program when a test module ends. Each XLA CPU executable holds
    memory mappings; a whole test session keeping hundreds of them alive passed Linux's
    default limit of 65,530 mappings per process (vm.max_map_count) and XLA crashed
    (SIGSEGV/SIGABRT) inside a later compile. Later modules reload what they share from the
    persistent cache."""
    yield
    jax.clear_caches()
    gc.collect()
