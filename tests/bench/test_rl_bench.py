"""``hrl-sarp bench rl``: result mapping from the phases' own benchmarks, size checks, the CLI
wiring, and (slow) a real run on the smoke market with tiny networks whose env-step counts
follow from the budgets."""

from __future__ import annotations

import json

import pytest

from hrl_sarp_jax.bench import rl as brl
from hrl_sarp_jax.config import Config, PPOConfig, TrainConfig
from hrl_sarp_jax.errors import ConfigError, HrlSarpError

# rl_macro.bench_phase3's result for seed_counts=(1, 4) (values as it computes them)
PHASE3 = {"phase": 3, "total_env_steps_per_seed": 1280, "updates": 10, "spec": {},
          "original_env_steps_per_s": 190.0, "original_wall_s": [335.0, 376.0],
          "epochs": 4, "num_minibatches": 2, "step_gflop": 0.05,
          "runs": [{"seeds": 1, "compile_s": 20.0, "eval_first_call_s": 0.0, "run_s": 4.0,
                    "wall_s": 25.0, "env_steps": 1280, "env_steps_per_s": 51.2,
                    "env_steps_per_s_excl_compile": 320.0, "speedup_vs_original": 0.3,
                    "gradient_steps": 80},
                   {"seeds": 4, "compile_s": 30.0, "eval_first_call_s": 0.0, "run_s": 8.0,
                    "wall_s": 40.0, "env_steps": 5120, "env_steps_per_s": 128.0,
                    "env_steps_per_s_excl_compile": 640.0, "speedup_vs_original": 0.7,
                    "gradient_steps": 320}]}
# rl_micro.bench_phase4's result for seeds=(2,), chunks=3
PHASE4 = {"device": "cpu", "num_stocks": 55, "num_sectors": 11, "num_envs": 8,
          "steps_per_chunk": 64, "updates_per_step": 1, "batch_size": 256,
          "replay_ratio": 32.0, "buffer_transitions": 64512, "buffer_mib_per_seed": 52.4,
          "runs": [{"seeds": 2, "compile_s": 12.5, "env_steps_per_s": 1536.0,
                    "updates_per_s": 96.0, "updating": 1.0}]}


def test_phase3_records_map_the_phase_benchmark():
    recs = brl.phase3_records(PHASE3)
    assert [tuple(r[k] for k in brl.RECORD_KEYS) for r in recs] == [
        (3, 1, 1280, 25.0, 20.0, 320.0),      # env_steps_per_s = 1280 / 4.0 s (excl. compile)
        (3, 4, 5120, 40.0, 30.0, 640.0),
    ]
    assert recs[1]["env_steps_per_s_incl_compile"] == 128.0 and recs[1]["updates"] == 10
    assert recs[0]["run_s"] == 4.0 and recs[0]["original_env_steps_per_s"] == 190.0
    # 4 epochs over every collected step: 5120 x 4 samples in 8 s; 320 steps x 0.05 GFLOP / 8 s
    assert (recs[1]["replay_ratio"], recs[1]["gradient_samples_per_s"]) == (4.0, 2560.0)
    assert (recs[1]["gradient_steps"], recs[1]["gflops_per_s"]) == (320, 2.0)
    with pytest.raises(HrlSarpError, match=r"bench_phase3 returned no \['epochs'\]"):
        brl.phase3_records({k: v for k, v in PHASE3.items() if k != "epochs"})


def test_phase4_records_count_the_timed_env_steps():
    (rec,) = brl.phase4_records(PHASE4, wall_s=31.25, chunks=3)
    # 2 seeds x 3 chunks x 8 envs x 64 steps = 3072 env steps, at 1536/s = 2 s
    assert tuple(rec[k] for k in brl.RECORD_KEYS) == (4, 2, 3072, 31.25, 12.5, 1536.0)
    assert rec["run_s"] == 2.0 and rec["replay_ratio"] == 32.0
    assert (rec["buffer_transitions"], rec["buffer_mib_per_seed"]) == (64512, 52.4)


def test_missing_result_keys_name_the_benchmark():
    with pytest.raises(HrlSarpError, match=r"bench_phase3 returned no \['run_s'\]"):
        brl.phase3_records({"runs": [{"seeds": 1, "env_steps": 1, "wall_s": 1.0,
                                      "compile_s": 1.0}]})
    with pytest.raises(HrlSarpError, match=r"bench_phase4 returned no \['runs'\]"):
        brl.phase4_records({"num_envs": 1, "steps_per_chunk": 1}, 1.0, 1)


def test_phase3_budget_rounds_up_to_whole_chunks():
    cfg = Config(train=TrainConfig(ppo=PPOConfig(rollout_steps=8, num_envs=2, minibatch_size=4),
                                   eval_interval=3))
    assert brl.phase3_env_steps(cfg, 2, 40) == 2 * 6 * 8    # 5 updates -> 2 chunks of 3
    assert brl.phase3_env_steps(cfg, 1, 3) == 3 * 8         # at least one update (one chunk)
    assert brl.phase3_env_steps(Config(), 4, 1280) == 4 * 1280


def test_bad_sizes_and_phases_are_clear_errors():
    with pytest.raises(ConfigError, match=r"seed_counts \(0,\) must be positive"):
        list(brl.bench_rl(sizes=brl.RLBenchSizes(seed_counts=(0,))))
    with pytest.raises(ConfigError, match="phase4_chunks 0 must be >= 1"):
        list(brl.bench_rl(sizes=brl.RLBenchSizes(phase4_chunks=0)))
    with pytest.raises(ConfigError, match=r"no benchmark for phase\(s\) \[5\]; choose from "
                                          r"\[3, 4\]"):
        list(brl.bench_rl(phases=(3, 5)))


def test_cli_bench_rl_prints_json_lines(monkeypatch, capsys):
    from hrl_sarp_jax.cli import main

    calls = []

    def fake(repeats=1, **_kw):
        calls.append(repeats)
        yield from brl.phase3_records(PHASE3)

    monkeypatch.setattr(brl, "bench_rl", fake)
    assert main(["bench", "rl", "--json", "--repeats", "1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert calls == [1]
    assert [(r["phase"], r["seeds"], r["env_steps"]) for r in lines] == [(3, 1, 1280),
                                                                         (3, 4, 5120)]


@pytest.mark.slow
def test_bench_rl_on_the_smoke_market(tmp_path):
    # Real Phase-3 and Phase-4 benchmarks with tiny networks on the smoke market: the records
    # carry every key and the env-step counts the budgets imply (3-5 min on 2 busy cores,
    # nearly all of it compiling 2 programs per phase and seed count).
    from hrl_sarp_jax.data.synthetic import write_synthetic_market
    from tests.training.conftest import smoke_cfg

    cfg = smoke_cfg("train.ppo.num_envs=2", "train.ppo.rollout_steps=8",
                    "train.ppo.minibatch_size=4", "train.ppo.epochs=1",
                    "train.ppo.warmup_updates=1", "train.eval_interval=2",
                    "train.td3.num_envs=2", "train.td3.batch_size=8",
                    "train.td3.buffer_episodes=4", "env.macro_episode_weeks=4")
    market_dir = write_synthetic_market(tmp_path / "market", cfg.synth)
    sizes = brl.RLBenchSizes(seed_counts=(1, 2), phase3_env_steps=24, phase4_chunks=2,
                             phase4_steps_per_chunk=4)
    recs = list(brl.bench_rl(cfg=cfg, sizes=sizes, market_dir=market_dir))
    assert [(r["phase"], r["seeds"]) for r in recs] == [(3, 1), (3, 2), (4, 1), (4, 2)]
    for r in recs:
        assert set(brl.RECORD_KEYS) <= set(r)
        assert r["wall_s"] >= r["compile_s"] > 0 and r["env_steps_per_s"] > 0
        assert r["env_steps_per_s"] == pytest.approx(r["env_steps"] / r["run_s"], rel=0.01)
        assert r["num_sectors"] == 3
    # Phase 3: 24 // 8 = 3 updates, rounded up to 2 chunks of 2 = 4 updates of 8 env steps
    assert [r["env_steps"] for r in recs[:2]] == [1 * 4 * 8, 2 * 4 * 8]
    assert recs[0]["env_steps"] == brl.phase3_env_steps(cfg, 1, 24)
    # Phase 4: K x 2 timed chunks x 2 envs x 4 steps
    assert [r["env_steps"] for r in recs[2:]] == [1 * 2 * 2 * 4, 2 * 2 * 2 * 4]
    # Phase 3 runs the frozen Micro allocator, as the main job does
    assert {r["allocator"] for r in recs[:2]} == {"phase2_micro"}
    for r in recs[2:]:
        assert r["update_gflop"] > 0 and r["matmul_peak_gflops"] > 0
        assert r["gflops_per_s"] == pytest.approx(r["update_gflop"] * r["updates_per_s"],
                                                  rel=0.02)
        assert r["updates_per_env_step"] == pytest.approx(1 / 2)  # one update per 2-env step
        # 4 episode slots (2 heads x 2) of micro_episode_days steps each
        assert r["buffer_transitions"] == 4 * cfg.env.micro_episode_days
        assert r["buffer_mib_per_seed"] > 0


def test_cli_bench_rl_options_reach_the_benchmark(monkeypatch, capsys):
    from hrl_sarp_jax.cli import main

    seen = {}

    def fake(**kw):
        seen.update(kw)
        yield {"phase": 4, "seeds": 1, "variant": "lean"}

    monkeypatch.setattr(brl, "bench_rl", fake)
    assert main(["bench", "rl", "--json", "--config", "quick", "--seeds", "1,2", "--envs", "4",
                 "--phases", "4", "--chunks", "5", "--steps-per-chunk", "16",
                 "--phase3-env-steps", "256",
                 "--set", "train.td3.batch_size=32", "--variant", "base:",
                 "--variant", "lean:networks.stock_norm=false,networks.stock_mixer=deepsets"]
                ) == 0
    assert json.loads(capsys.readouterr().out) == {"phase": 4, "seeds": 1, "variant": "lean"}
    assert seen["sizes"].seed_counts == (1, 2) and seen["phases"] == (4,)
    assert (seen["sizes"].phase4_chunks, seen["sizes"].phase4_steps_per_chunk,
            seen["sizes"].phase3_env_steps) == (5, 16, 256)
    assert seen["cfg"].train.td3.num_envs == 4 and seen["cfg"].train.ppo.num_envs == 4
    (n0, base), (n1, lean) = seen["variants"]
    assert (n0, n1) == ("base", "lean")
    assert base.networks == seen["cfg"].networks and base.train.td3.batch_size == 32
    assert (lean.networks.stock_norm, lean.networks.stock_mixer) == (False, "deepsets")
    assert lean.train.td3.batch_size == 32 and lean.train.td3.num_envs == 4


@pytest.mark.parametrize(("argv", "needle"), [
    (["--variant", "lean"], "--variant 'lean': expected NAME:key=value"),
    (["--seeds", "one"], "--seeds 'one': expected comma-separated integers"),
    (["--variant", "x:synth.seed=5"], "variant 'x' changes 'synth'; variants share one market"),
    (["--chunks", "0"], "phase4_chunks 0 must be >= 1"),
])
def test_cli_bench_rl_bad_options_are_one_line(capsys, argv, needle):
    from hrl_sarp_jax.cli import main

    assert main(["bench", "rl", *argv]) != 0
    assert needle in capsys.readouterr().err
