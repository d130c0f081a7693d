"""Shared test setup: CPU only, persistent compilation cache, float32, seeded inputs."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

_CACHE = Path(os.environ.get("HRL_SARP_JAX_CACHE", Path.home() / ".cache" / "hrl_sarp_jax" / "jax_cache"))
_CACHE.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


import gc  # noqa: E402

import pytest  # noqa: E402


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
