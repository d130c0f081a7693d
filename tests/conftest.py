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
