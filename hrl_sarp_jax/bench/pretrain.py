"""``hrl-sarp bench pretrain``: seconds per epoch of Phases 1 and 2, 1 seed vs K seeds vmapped.

# HOST ONLY (not jittable)
On the default market (generated into a temporary folder), for each phase and seed count it
compiles the phase's epoch program for a chunk of ``epochs`` epochs (early stopping disabled),
runs it ``repeats`` times and reports the median: ``epoch_s`` = chunk time / epochs,
``compile_s`` = lowering + XLA compile, ``wall_s`` = compile + every timed call. One extra
Phase-1 line reproduces the original's workload (2,349 samples, batch 64; the default
market's training weeks tiled to that size) next to its 0.21 s/epoch.

Roofline fields: ``step_mflop`` = XLA's flop count of one minibatch step (forward, backward,
optimizer) for one seed, ``achieved_gflops`` = step_mflop x minibatches x seeds / epoch_s,
``matmul_peak_gflops`` = a large float32 matmul on the same machine in the same run, and
``epoch_s_at_peak`` = the epoch time if every step ran at that peak: no implementation of these
networks can beat it on this machine.
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
import optax

from hrl_sarp_jax.bench.data import machine_context
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training import runner
from hrl_sarp_jax.training.programs import compiled_flops

ORIGINAL_PHASE1_SAMPLES = 2349
ORIGINAL_PHASE1_EPOCH_S = 0.21  # PyTorch, original_hrl_sarp.md §12


def _tile(tree: Any, size: int) -> Any:
    """Leading axis repeated cyclically to ``size`` rows."""
    return jax.tree.map(lambda x: x[jnp.arange(size) % x.shape[0]], tree)


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a float32 [size, size] @ [size, size] matmul (median of ``repeats``)."""
    a = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(f(a))
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        jax.block_until_ready(f(a))
        times.append(time.perf_counter() - t)
    return 2.0 * size**3 / statistics.median(times) / 1e9


def step_mflop(prep: runner.Prepared) -> float:
    """XLA's flop count (millions) of one training minibatch step of one seed."""
    tx = pt.make_optimizer()
    state = pt.init_state(prep.task, tx, runner.seed_keys(0, 1)[0])
    spec = pt.EngineSpec(train_size=prep.train.rows, batch_size=prep.pcfg.batch_size,
                         chunk_epochs=1, total_epochs=1, patience=1)
    data = prep.task.epoch_data(jax.random.key(0), prep.train.data)
    batch = jax.tree.map(lambda x: x[: spec.minibatch], data)

    def step(params, opt, batch, key):
        grads = jax.grad(lambda p: prep.task.loss(p, prep.hp, batch, key)[0])(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    return compiled_flops(jax.jit(step).lower(state.params, state.opt_state, batch,
                                              jax.random.key(1)).compile()) / 1e6


def time_phase(prep: runner.Prepared, seeds: int, epochs: int, repeats: int, seed: int = 0
               ) -> dict[str, Any]:
    """Compile and time ``epochs`` epochs of ``prep`` for ``seeds`` vmapped seeds."""
    tx = pt.make_optimizer()
    spec = pt.EngineSpec(train_size=prep.train.rows, batch_size=prep.pcfg.batch_size,
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
        "epoch_s": round(chunk_s / epochs, 6), "train_samples": int(prep.train.count),
        "batch_size": prep.pcfg.batch_size,
        # the minibatches that run (a padded set's filler minibatches are skipped)
        "minibatches_per_epoch": max(1, int(prep.train.count) // spec.minibatch),
    }


def bench_pretrain(repeats: int = 3, cfg: Config | None = None,
                   seed_counts: tuple[int, ...] = (1, 8), epochs: int = 5
                   ) -> Iterator[dict[str, Any]]:
    """Yield one record per (phase, seeds) plus the original-workload line."""
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from hrl_sarp_jax.features.build import build_features

    cfg = cfg or Config()
    ctx = machine_context()
    peak = round(matmul_peak_gflops(), 1)
    with tempfile.TemporaryDirectory(prefix="hrl_sarp_bench_") as tmp:
        out = write_synthetic_market(Path(tmp) / "market", cfg.synth)
        market, meta = load_market(out, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    preps = {k: runner.PREPARE[k](cfg, market, meta, feats) for k in (1, 2)}

    mflops = {k: step_mflop(p) for k, p in preps.items()}  # one compile per phase

    def roofline(rec: dict[str, Any], mflop: float) -> dict[str, Any]:
        work = mflop * 1e6 * rec["minibatches_per_epoch"] * rec["seeds"]
        return {"step_mflop": round(mflop, 2),
                "achieved_gflops": round(work / max(rec["epoch_s"], 1e-12) / 1e9, 1),
                "matmul_peak_gflops": peak, "epoch_s_at_peak": round(work / (peak * 1e9), 6)}

    for phase in (1, 2):
        for seeds in seed_counts:
            rec = time_phase(preps[phase], seeds, epochs, repeats)
            yield {**rec, **roofline(rec, mflops[phase]), **ctx}
    p1 = preps[1]
    real = jax.tree.map(lambda x: x[: int(p1.train.count)], p1.train.data)
    big = dataclasses.replace(p1, train=pt.pad_set(_tile(real, ORIGINAL_PHASE1_SAMPLES), 64),
                              pcfg=dataclasses.replace(p1.pcfg, batch_size=64))
    rec = time_phase(big, 1, epochs, repeats)
    same_batch = big.pcfg.batch_size == p1.pcfg.batch_size  # tiling alone changes no shape
    rec.update(roofline(rec, mflops[1] if same_batch else step_mflop(big)))
    yield {**rec, "workload": "original phase 1 (2,349 samples, batch 64)",
           "original_epoch_s": ORIGINAL_PHASE1_EPOCH_S,
           "speedup": round(ORIGINAL_PHASE1_EPOCH_S / max(rec["epoch_s"], 1e-9), 2),
           "max_speedup_at_peak": round(ORIGINAL_PHASE1_EPOCH_S / rec["epoch_s_at_peak"], 1),
           **ctx}
