"""``hrl-sarp bench data``: time to generate the default market, load it and build all features.

# HOST ONLY (not jittable)
Each record has ``name`` and ``seconds`` (median over ``repeats``) plus context. The first
call of each stage (which includes XLA compilation) is reported separately as ``first_call``.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax

from hrl_sarp_jax.config import Config


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    if out is not None:
        jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def machine_context() -> dict[str, Any]:
    """The machine a benchmark ran on (architecture, CPUs, JAX backend, devices)."""
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "backend": jax.default_backend(),
        "jax": jax.__version__,
    }


def bench_data(repeats: int = 3, cfg: Config | None = None) -> Iterator[dict[str, Any]]:
    """Yield one record per stage: synth (write), load, features (device), total."""
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from hrl_sarp_jax.features.build import build_features

    cfg = cfg or Config()
    ctx = machine_context()
    with tempfile.TemporaryDirectory(prefix="hrl_sarp_bench_") as tmp:
        out = Path(tmp) / "market"
        synth_times, load_times, feat_times = [], [], []
        first: dict[str, float] = {}
        market = feats = None
        for i in range(max(1, repeats) + 1):
            s, _ = _timed(lambda: write_synthetic_market(out, cfg.synth) and None)
            lt, (market, _meta) = _timed(lambda: load_market(out, cfg.data))
            ft, feats = _timed(lambda: build_features(market, cfg.features))
            if i == 0:
                first = {"synth": s, "load": lt, "features": ft}
            else:
                synth_times.append(s)
                load_times.append(lt)
                feat_times.append(ft)
        shape = {
            "days": market.num_days,
            "stocks": market.num_stocks,
            "sectors": market.num_sectors,
            "stock_features": int(feats.stock.shape[-1]),
        }
        stages = (
            ("synth_default_market", "synth", synth_times),
            ("load_market", "load", load_times),
            ("build_features", "features", feat_times),
        )
        for name, key, times in stages:
            yield {
                "name": name,
                "seconds": round(statistics.median(times), 4),
                "first_call": round(first[key], 4),
                "repeats": len(times),
                **shape,
                **ctx,
            }
        total = [a + b + c for a, b, c in zip(synth_times, load_times, feat_times, strict=True)]
        yield {
            "name": "synth_load_features_total",
            "seconds": round(statistics.median(total), 4),
            "first_call": round(sum(first.values()), 4),
            "repeats": len(total),
            **shape,
            **ctx,
        }
