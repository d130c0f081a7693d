"""``hrl-sarp bench rl``: env steps per second of the RL phases (3: Macro PPO, 4: Micro TD3+HER)
for 1 seed and K seeds vmapped, learning included.

# HOST ONLY (not jittable)
On the default market (``cfg.synth``, generated into a temporary folder), each phase's own
benchmark runs (``rl_macro.bench_phase3``, ``rl_micro.bench_phase4``) and every (phase, seeds)
becomes one record with ``RECORD_KEYS``:

* ``env_steps``: env steps of the timed run, summed over seeds. Phase 3: K x the per-seed
  budget rounded up to whole chunks (``Phase3Spec.from_config``: updates =
  ceil(max(budget // rollout_steps, 1) / eval_interval) * eval_interval, each of rollout_steps
  env steps). Phase 4: K x chunks x num_envs x steps_per_chunk (after one warm-up chunk that
  fills the replay buffer, so every timed step also learns).
* ``run_s``: seconds of that timed run; ``env_steps_per_s`` = env_steps / run_s (steady state,
  compilation excluded).
* ``compile_s``: AOT compile of the phase's chunk program; ``wall_s``: everything for this
  seed count (setup, init, compile, warm-up, run).

Phase 3 runs without its per-chunk evaluation by default (``phase3_eval``), so both phases
time training only, and with a frozen MicroActor allocating inside each sector every day
(``phase3_allocator``, as the main job runs it; ``allocator`` in its records). Phase-3 records
add ``replay_ratio`` (gradient samples per env step: ``train.ppo.epochs``, each epoch passes
every collected step once), ``gradient_samples_per_s`` (env_steps x epochs / run_s),
``gradient_steps`` (seeds x updates x epochs x minibatches), ``step_gflop`` (XLA's count for
one gradient step of one seed; the rollout not counted) and ``gflops_per_s`` (step_gflop x
gradient_steps / run_s). Phase-4 records
add ``gradient_samples_per_s`` (updates/s x batch), ``replay_ratio`` (gradient samples per env
step), ``updates_per_env_step``, ``update_gflop`` (XLA's count for one TD3 update, both
branches of the policy-delay conditional included) and ``gflops_per_s`` (update_gflop x
updates/s), beside ``matmul_peak_gflops``: a float32 2048² matmul timed in the same run, and
the replay buffer's size: ``buffer_transitions`` (``train.td3.buffer_episodes`` x episode
length, rounded up to whole vector steps of the envs: it does not grow with the env count) and
``buffer_mib_per_seed`` (its device bytes).

Extension point: Phase 5 (joint fine-tuning) gets a ``_phase5_records(cfg, market, meta,
feats, sizes)`` generator over its own ``bench_phase5`` that yields ``_record(...)`` dicts,
registered in ``PHASES`` under 5; ``bench_rl`` and ``hrl-sarp bench rl`` then include it.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hrl_sarp_jax.bench.data import machine_context
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.errors import ConfigError, HrlSarpError

RECORD_KEYS = ("phase", "seeds", "env_steps", "wall_s", "compile_s", "env_steps_per_s")


@dataclass(frozen=True)
class RLBenchSizes:
    """How much each phase runs. The defaults take 4-5 minutes on a 2-core CPU with a cold
    compilation cache (most of it compiling 2 programs per phase), 2-3 with a warm one."""

    seed_counts: tuple[int, ...] = (1, 4)
    phase3_env_steps: int = 1_280
    """Per-seed Phase-3 budget (10 PPO updates of 128 env steps with the default config)."""
    phase3_eval: bool = False
    """Run Phase 3's validation after every chunk inside the timed run."""
    phase3_allocator: str = "micro"
    """'micro': a frozen MicroActor allocates inside each sector every day (as the main job
    runs Phase 3); 'equal_weight': the env's own allocator."""
    phase4_chunks: int = 2
    """Timed Phase-4 chunks (after one warm-up chunk)."""
    phase4_steps_per_chunk: int | None = 4
    """Vector env steps per Phase-4 chunk (None: Phase4Spec's default, 64). With the default
    networks one vector step (8 envs) with its 256-sample TD3 update takes about 0.45 s per
    seed on a 2-core CPU, so 64 would make the 4-seed run alone several minutes."""

    def check(self) -> None:
        if not self.seed_counts or any(int(k) < 1 for k in self.seed_counts):
            raise ConfigError(f"bench rl: seed_counts {self.seed_counts} must be positive "
                              f"seed counts, e.g. (1, 4)")
        if self.phase3_env_steps < 1:
            raise ConfigError(f"bench rl: phase3_env_steps {self.phase3_env_steps} must be "
                              f">= 1 (env steps per seed)")
        if self.phase4_chunks < 1:
            raise ConfigError(f"bench rl: phase4_chunks {self.phase4_chunks} must be >= 1")
        if self.phase4_steps_per_chunk is not None and self.phase4_steps_per_chunk < 1:
            raise ConfigError(f"bench rl: phase4_steps_per_chunk "
                              f"{self.phase4_steps_per_chunk} must be >= 1 (or None)")


def _record(phase: int, seeds: int, env_steps: int, wall_s: float, compile_s: float,
            run_s: float, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, "seeds": int(seeds), "env_steps": int(env_steps),
            "wall_s": round(float(wall_s), 3), "compile_s": round(float(compile_s), 3),
            "env_steps_per_s": round(env_steps / run_s, 1) if run_s > 0 else None,
            "run_s": round(float(run_s), 6), **extra}


def _need(run: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if k not in run]
    if missing:
        raise HrlSarpError(f"bench rl: {where} returned no {missing} (got {sorted(run)}); "
                           f"update hrl_sarp_jax/bench/rl.py to its new result format")


def phase3_records(result: dict[str, Any]) -> list[dict[str, Any]]:
    """``rl_macro.bench_phase3``'s result as records (one per seed count)."""
    out = []
    for run in result.get("runs", []):
        _need(run, ("seeds", "env_steps", "wall_s", "compile_s", "run_s"), "bench_phase3")
        _need(result, ("epochs", "step_gflop"), "bench_phase3")
        _need(run, ("gradient_steps",), "bench_phase3")
        epochs, flop, steps = result["epochs"], result["step_gflop"], run["gradient_steps"]
        out.append(_record(3, run["seeds"], run["env_steps"], run["wall_s"], run["compile_s"],
                           run["run_s"], updates=result.get("updates"),
                           allocator=result.get("allocator"),
                           env_steps_per_s_incl_compile=run.get("env_steps_per_s"),
                           original_env_steps_per_s=result.get("original_env_steps_per_s"),
                           # each epoch passes every collected env step once
                           replay_ratio=float(epochs), gradient_samples_per_s=round(
                               run["env_steps"] * epochs / run["run_s"], 1),
                           step_gflop=flop, gradient_steps=steps,
                           gflops_per_s=round(flop * steps / run["run_s"], 3)))
    return out


def phase4_records(result: dict[str, Any], wall_s: float, chunks: int) -> list[dict[str, Any]]:
    """``rl_micro.bench_phase4``'s result for one seed count as records; ``wall_s`` is the
    caller's wall time of that call and ``chunks`` its timed chunks (the env-step count is
    K x chunks x num_envs x steps_per_chunk, and run_s follows from the reported rate)."""
    _need(result, ("num_envs", "steps_per_chunk", "runs"), "bench_phase4")
    out = []
    for run in result["runs"]:
        _need(run, ("seeds", "compile_s", "env_steps_per_s"), "bench_phase4")
        steps = int(run["seeds"]) * chunks * int(result["num_envs"]) * int(
            result["steps_per_chunk"])
        rate = float(run["env_steps_per_s"])
        out.append(_record(4, run["seeds"], steps, wall_s, run["compile_s"],
                           steps / rate if rate > 0 else 0.0,
                           updates_per_s=run.get("updates_per_s"),
                           gradient_samples_per_s=(
                               None if run.get("updates_per_s") is None
                               or result.get("batch_size") is None
                               else round(float(run["updates_per_s"])
                                          * int(result["batch_size"]), 1)),
                           replay_ratio=result.get("replay_ratio"),
                           buffer_transitions=result.get("buffer_transitions"),
                           buffer_mib_per_seed=result.get("buffer_mib_per_seed"),
                           updates_per_env_step=result.get("updates_per_env_step"),
                           update_gflop=run.get("update_gflop"),
                           gflops_per_s=run.get("gflops_per_s"),
                           batch_size=result.get("batch_size")))
    return out


def _phase3_records(cfg: Config, market: Any, meta: Any, feats: Any, sizes: RLBenchSizes
                    ) -> Iterator[dict[str, Any]]:
    from hrl_sarp_jax.training import rl_macro

    for k in sizes.seed_counts:  # one call per K: a record is printed as soon as it is ready
        result = rl_macro.bench_phase3(cfg, market, meta, feats, seed_counts=(int(k),),
                                       total_env_steps=int(sizes.phase3_env_steps),
                                       with_eval=sizes.phase3_eval,
                                       allocator=sizes.phase3_allocator)
        yield from phase3_records(result)


def _phase4_records(cfg: Config, market: Any, meta: Any, feats: Any, sizes: RLBenchSizes
                    ) -> Iterator[dict[str, Any]]:
    import dataclasses

    from hrl_sarp_jax.training import rl_micro

    spec = rl_micro.Phase4Spec.from_config(cfg.train.td3)
    if sizes.phase4_steps_per_chunk is not None:
        spec = dataclasses.replace(spec, steps_per_chunk=int(sizes.phase4_steps_per_chunk))
    for k in sizes.seed_counts:
        t0 = time.perf_counter()
        result = rl_micro.bench_phase4(cfg, market, meta, feats, seeds=(int(k),), spec=spec,
                                       chunks=int(sizes.phase4_chunks))
        yield from phase4_records(result, time.perf_counter() - t0, int(sizes.phase4_chunks))


PHASES: dict[int, Callable[..., Iterator[dict[str, Any]]]] = {
    3: _phase3_records,
    4: _phase4_records,
}
"""Phase number -> record generator (cfg, market, meta, feats, sizes). Phase 5: see the module
docstring."""


def phase3_env_steps(cfg: Config, seeds: int, budget: int) -> int:
    """Env steps (all seeds) a Phase-3 run of ``budget`` env steps per seed performs."""
    ppo = cfg.train.ppo
    upc = max(int(cfg.train.eval_interval), 1)
    updates = math.ceil(max(budget // ppo.rollout_steps, 1) / upc) * upc
    return int(seeds) * updates * int(ppo.rollout_steps)


def bench_rl(repeats: int = 1, cfg: Config | None = None, *,
             sizes: RLBenchSizes | None = None, phases: tuple[int, ...] = (3, 4),
             market_dir: Path | str | None = None,
             variants: Sequence[tuple[str, Config]] = ()) -> Iterator[dict[str, Any]]:
    """Yield one record per (phase, seeds[, variant]) (``RECORD_KEYS`` plus phase-specific
    figures and machine context). ``repeats`` is accepted for ``hrl-sarp bench``'s uniform call
    and unused: each seed count is one timed run (its length is set by ``sizes``).
    ``market_dir``: an existing market folder instead of generating ``cfg.synth``.
    ``variants``: (name, config) pairs benchmarked side by side in this one process (each
    record gets ``variant``; runs alternate per phase and seed count, so machine noise hits
    them alike; compare ratios). Their ``data``, ``synth`` and ``features`` must equal
    ``cfg``'s (one market serves all)."""
    del repeats
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from hrl_sarp_jax.features.build import build_features

    cfg = cfg or Config()
    sizes = sizes or RLBenchSizes()
    sizes.check()
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        raise ConfigError(f"bench rl: no benchmark for phase(s) {unknown}; choose from "
                          f"{sorted(PHASES)}")
    runs = list(variants) or [("", cfg)]
    for name, vcfg in runs:
        for section in ("data", "synth", "features"):
            if getattr(vcfg, section) != getattr(cfg, section):
                raise ConfigError(f"bench rl: variant '{name}' changes '{section}'; variants "
                                  f"share one market, so only other sections may differ")
    if market_dir is not None:
        market, meta = load_market(Path(market_dir), cfg.data)
    else:
        with tempfile.TemporaryDirectory(prefix="hrl_sarp_bench_") as tmp:
            out = write_synthetic_market(Path(tmp) / "market", cfg.synth)
            market, meta = load_market(out, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    from hrl_sarp_jax.bench.pretrain import matmul_peak_gflops

    ctx = {**machine_context(), "num_stocks": int(market.num_stocks),
           "num_sectors": int(market.num_sectors),
           "matmul_peak_gflops": round(matmul_peak_gflops(), 1)}  # this run's reference
    for phase in phases:
        for k in sizes.seed_counts:
            one = dataclasses.replace(sizes, seed_counts=(int(k),))
            for name, vcfg in runs:
                for rec in PHASES[phase](vcfg, market, meta, feats, one):
                    yield {**rec, **ctx, **({"variant": name} if variants else {})}
