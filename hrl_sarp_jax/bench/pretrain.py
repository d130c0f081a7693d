"""``hrl-sarp bench pretrain``: seconds per epoch of Phases 1 and 2, 1 seed vs K seeds vmapped.

# HOST ONLY (not jittable)
On the default market (generated into a temporary folder), for each phase and seed count it
compiles the phase's epoch program for a chunk of ``epochs`` epochs (early stopping disabled),
runs it ``repeats`` times and reports the median: ``epoch_s`` = chunk time / epochs,
``compile_s`` = lowering + XLA compile, ``wall_s`` = compile + every timed call. One extra
Phase-1 line reproduces the original's workload (2,349 samples, batch 64; the default
market's training weeks tiled to that size) next to its 0.21 s/epoch.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from hrl_sarp_jax.bench.data import _machine
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training import runner

ORIGINAL_PHASE1_SAMPLES = 2349
ORIGINAL_PHASE1_EPOCH_S = 0.21  # PyTorch, original_hrl_sarp.md §12


def _tile(tree: Any, size: int) -> Any:
    """Leading axis repeated cyclically to ``size`` rows."""
    return jax.tree.map(lambda x: x[jnp.arange(size) % x.shape[0]], tree)


def time_phase(prep: runner.Prepared, seeds: int, epochs: int, repeats: int, seed: int = 0
               ) -> dict[str, Any]:
    """Compile and time ``epochs`` epochs of ``prep`` for ``seeds`` vmapped seeds."""
    tx = pt.make_optimizer()
    spec = pt.EngineSpec(train_size=prep.train_size, batch_size=prep.pcfg.batch_size,
                         chunk_epochs=epochs, total_epochs=epochs, patience=10**6)
    init = jax.jit(jax.vmap(lambda k: pt.init_state(prep.task, tx, k)))
    state0 = jax.block_until_ready(init(runner.seed_keys(seed, seeds)))
    limit = jnp.asarray(epochs, jnp.int32)
    t0 = time.perf_counter()
    compiled = pt.make_run_chunk(prep.task, tx, spec).lower(
        state0, prep.hp, prep.train, prep.val, limit).compile()
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        jax.block_until_ready(compiled(state0, prep.hp, prep.train, prep.val, limit))
        times.append(time.perf_counter() - t)
    chunk_s = statistics.median(times)
    return {
        "phase": prep.phase, "seeds": seeds, "epochs": epochs,
        "wall_s": round(compile_s + sum(times), 4), "compile_s": round(compile_s, 4),
        "epoch_s": round(chunk_s / epochs, 6), "train_samples": prep.train_size,
        "batch_size": prep.pcfg.batch_size, "minibatches_per_epoch": spec.num_minibatches,
    }


def bench_pretrain(repeats: int = 3, cfg: Config | None = None,
                   seed_counts: tuple[int, ...] = (1, 8), epochs: int = 5
                   ) -> Iterator[dict[str, Any]]:
    """Yield one record per (phase, seeds) plus the original-workload line."""
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from hrl_sarp_jax.features.build import build_features

    cfg = cfg or Config()
    ctx = _machine()
    with tempfile.TemporaryDirectory(prefix="hrl_sarp_bench_") as tmp:
        out = write_synthetic_market(Path(tmp) / "market", cfg.synth)
        market, meta = load_market(out, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    preps = {k: runner.PREPARE[k](cfg, market, meta, feats) for k in (1, 2)}
    for phase in (1, 2):
        for seeds in seed_counts:
            yield {**time_phase(preps[phase], seeds, epochs, repeats), **ctx}
    p1 = preps[1]
    big = dataclasses.replace(p1, train=_tile(p1.train, ORIGINAL_PHASE1_SAMPLES),
                              train_size=ORIGINAL_PHASE1_SAMPLES,
                              pcfg=dataclasses.replace(p1.pcfg, batch_size=64))
    rec = time_phase(big, 1, epochs, repeats)
    yield {**rec, "workload": "original phase 1 (2,349 samples, batch 64)",
           "original_epoch_s": ORIGINAL_PHASE1_EPOCH_S,
           "speedup": round(ORIGINAL_PHASE1_EPOCH_S / max(rec["epoch_s"], 1e-9), 1), **ctx}
