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


import gc  # noqa: E402

import pytest  # noqa: E402

_HEAVY = Path(__file__).with_name("heavy_tests.txt")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests listed in heavy_tests.txt ``heavy`` (the default run deselects them; CI's
    second call runs ``-m heavy``); an entry naming a test function its collected module does
    not define is a usage error, so the list cannot silently rot."""
    listed = {line.strip() for line in _HEAVY.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    modules = {}
    for item in items:
        base = item.nodeid.split("[")[0]
        modules[base.split("::")[0]] = getattr(item, "module", None)
        if base in listed:
            item.add_marker(pytest.mark.heavy)
    stale = sorted(t for t in listed if t.split("::")[0] in modules
                   and not hasattr(modules[t.split("::")[0]], t.split("::")[-1]))
    if stale:
        raise pytest.UsageError(f"{_HEAVY}: no such test {stale[0]}; remove or rename the line")


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
