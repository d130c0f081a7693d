"""Seeds over devices (training.sharding): placement on 4 fake CPU devices, sharded per-seed
programs equal to one device, the real Phase-3 chunk sharded, two processes on one global
mesh, and the distributed settings / CLI flag.

Multi-device cases run in fresh processes (tests/training/sharding_worker.py): jax reads
``XLA_FLAGS=--xla_force_host_platform_device_count`` only before it is first imported, and
this process already imported it with one device.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.errors import ConfigError, HrlSarpError
from hrl_sarp_jax.training import sharding as sh
from tests.training import sharding_worker as worker

ROOT = Path(__file__).resolve().parents[2]


def _env(devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                        "JAX_PROCESS_ID", sh.ENV_DISTRIBUTED)}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_worker(*args: str, devices: int = 4, timeout: int = 240) -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.training.sharding_worker", *args],
                          cwd=ROOT, env=_env(devices), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference():
    """The per-seed program on this process's single device (the unsharded answer)."""
    params, losses = worker.batched_program(*worker.program_inputs())
    return jax.device_get(params), np.asarray(losses)


# --------------------------------------------------------------------------- 4 devices


def test_shard_seeds_splits_eight_seeds_over_four_devices():
    out = run_worker("place")
    assert out["devices"] == 4
    assert out["mesh_axes"] == ["seeds"] and out["mesh_shape"] == {"seeds": 4}
    assert out["axis_types"] == ["AxisType.Auto"]
    # rows [2i, 2i+2) of the [8, 3] leaf on device i
    assert out["w_spec"] == "P('seeds',)"
    assert out["w_shards"] == [[str(i), str(2 * i), str(2 * i + 2), "(2, 3)"] for i in range(4)]
    assert out["key_dtype"] == "key<fry>" and out["key_spec"] == "P('seeds',)"
    assert out["key_shard_shapes"] == [[2]] * 4
    assert out["values_equal"] is True
    assert out["replicated"] is True and out["replicated_shards"] == 4
    assert out["abstract_specs"] == ["P('seeds',)"] == out["lowered_on_specs"]
    errors = out["errors"]
    assert errors["six_seeds"].startswith("6 seed(s) cannot be split evenly over 4 devices")
    assert "--seeds (train.seeds) to a multiple of 4 (e.g. 8)" in errors["six_seeds"]
    assert "leaf ['n'] is a scalar" in errors["scalar"] and "replicate()" in errors["scalar"]
    assert "(['v'] has 4, ['w'] has 8)" in errors["mixed"]
    # AOT: lowered on plain ShapeDtypeStructs = a one-device executable that refuses shards;
    # lowered on abstract_like(placed) it takes them and keeps the seed sharding.
    assert out["aot_unsharded_error"].startswith(
        "Computation was compiled for input shardings that disagree")
    assert out["aot_sharded_in"] == ["P('seeds',)"]
    assert out["aot_sharded_out_spec"] == "P('seeds',)"
    assert out["aot_sharded_w"] == [2.0 * i for i in range(24)]
    # the host loops' mesh: as many devices as divide K (JSON keys are strings)
    assert out["mesh_for"] == {"1": [0], "2": [0, 1], "6": [0, 1, 2], "8": [0, 1, 2, 3]}


def test_sharded_per_seed_training_equals_one_device(reference):
    out = run_worker("program")
    assert out["devices"] == 4
    assert out["single_devices"] == [0]                 # the unsharded run used one device
    assert out["out_specs"] == ["P('seeds',)"]          # outputs stay split over the seeds
    assert out["out_devices"] == [0, 1, 2, 3]
    assert out["loss_shard_shapes"] == [[2, worker.STEPS]] * 4
    assert out["max_diff"] <= 1e-6                      # sharded == unsharded, same process
    losses = np.asarray(out["losses"])
    _, ref_losses = reference
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-7)
    # each seed trained (loss fell) and seeds differ (own keys and learning rates)
    assert np.all(losses[:, -1] < losses[:, 0])
    assert len({round(float(x), 5) for x in losses[:, 0]}) == worker.SEEDS


@pytest.mark.slow
def test_phase3_chunk_sharded_over_four_devices_equals_one_device():
    # K=4 seeds of the real Phase-3 program (tiny networks, 2 PPO updates), one device vs one
    # seed per device. These are two different XLA programs (the per-device one batches 1 seed
    # instead of 4), so nothing is bit for bit: dots round differently, depending on the CPU's
    # instruction set, and Adam turns noise-level gradient components into lr-sized steps, so
    # params are compared with how far they moved. Rollouts agree to rounding (bit-identical on
    # some CPUs): rewards ~0.1 to 1e-4 (the second rollout runs on the updated params), obs to
    # 1e-3 (features O(1), book weights); a seed mix-up changes both by ~1e-2 or more.
    # 90-130 s on 2 busy cores (cold compilation cache), nearly all of it the two compiles.
    out = run_worker("phase3", timeout=600)
    assert out["devices"] == 4
    assert out["state_specs"] == ["P('seeds',)"] and out["metric_specs"] == ["P('seeds',)"]
    assert out["param_shard_rows"] == [1]
    assert out["env_steps"] == out["single_env_steps"] == [16, 16, 16, 16]
    assert out["reward_diff"] <= 1e-4 and out["obs_diff"] <= 1e-3
    assert out["metrics_diff"] <= 1e-4
    assert out["params_moved"] > 1e-4
    assert out["params_diff"] <= 0.1 * out["params_moved"]
    assert out["rolled_params_diff"] > 10 * out["params_moved"]   # seeds kept in their slots
    assert len({round(r[0], 6) for r in out["reward"]}) == 4


@pytest.mark.slow
def test_phase4_chunk_sharded_with_the_host_loop_recipe_equals_one_device():
    # rl_micro.run_phase4's own steps plus shard_seeds(state) / shard_seeds(hp) before the AOT
    # lower: K=4 seeds (TD3+HER, replay buffer and all) one per device: two different XLA
    # programs (make_inputs' circuit locks included). The first two steps (no update yet)
    # agree to float32 rounding: rewards ~0.03-0.3 to 1e-6 (a few ulps through the actor and
    # the env; the four seeds' step-0 rewards differ by >= 1e-4);
    # after TD3 updates the two runs agree to float noise (Adam moves each weight by about lr
    # per update whatever the gradient's size, so a rounding-level gradient can move a weight
    # by ~2 lr in either run), far from a seed mix-up (rolled). 30-120 s.
    out = run_worker("phase4", timeout=600)
    assert out["devices"] == 4 and out["state_specs"] == ["P('seeds',)"]
    assert out["env_steps"] == [12, 12, 12, 12] and out["updating"] > 0.5
    reward_diffs = np.asarray(out["step_diffs"]["reward"])  # np.all: a NaN fails (max() skips it)
    assert np.all(reward_diffs[:2] <= 1e-6) and np.all(reward_diffs <= 1e-2), reward_diffs
    # step 0 is before the warmup: both runs report the no-update branch's zeros
    assert out["step_diffs"]["critic_loss"][0] == 0.0 and out["step_diffs"]["q_mean"][0] == 0.0
    assert out["value_rel_diff"] <= 1e-3
    assert out["actor_diff"] <= 0.02 and out["rolled_actor_diff"] > 0.5
    assert len({round(r[0], 6) for r in out["rewards"]}) == 4


# --------------------------------------------------------------------------- two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def test_two_processes_train_seeds_on_one_global_mesh(reference):
    # Two CPU processes x 2 fake devices joined by jax.distributed (gloo collectives): the
    # 8-seed program runs on the 4-device global mesh, each process computing its 4 seeds,
    # and both read back the same all-gathered result, equal to the one-device answer.
    port = str(_free_port())
    procs = [subprocess.Popen([sys.executable, "-m", "tests.training.sharding_worker",
                               "multihost", port, str(pid)], cwd=ROOT, env=_env(2),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for pid in (0, 1)]
    outs = []
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=180)
            assert p.returncode == 0, stderr[-3000:]
            outs.append(json.loads(stdout.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    ref_params, ref_losses = reference
    for pid, out in enumerate(outs):
        assert out["joined"] is True
        assert out["process_index"] == pid and out["process_count"] == 2
        assert out["global_devices"] == 4 and out["local_devices"] == 2
        assert out["mesh_processes"] == [0, 1] and out["fully_addressable"] is False
        assert out["local_shard_rows"] == ([0, 2] if pid == 0 else [4, 6])
        np.testing.assert_allclose(out["losses"], ref_losses, rtol=1e-6, atol=1e-7)
        for got, want in zip(out["params"], jax.tree.leaves(ref_params), strict=True):
            np.testing.assert_allclose(got, np.asarray(want).ravel(), rtol=1e-6, atol=1e-7)
        # a global reduction over both processes' shards plus a replicated input (0+1+2+3)
        np.testing.assert_allclose(out["total"], ref_losses[:, -1].sum() + 6.0, rtol=1e-6)
    assert outs[0]["losses"] == outs[1]["losses"] and outs[0]["total"] == outs[1]["total"]


# --------------------------------------------------------------------------- in process


def test_one_device_mesh_and_validation():
    mesh = sh.seed_mesh()
    assert mesh.axis_names == ("seeds",) and mesh.size == len(jax.devices())
    placed = sh.shard_seeds({"a": jnp.arange(6.0).reshape(3, 2)}, mesh)
    np.testing.assert_array_equal(placed["a"], np.arange(6.0).reshape(3, 2))
    assert placed["a"].sharding.spec == jax.sharding.PartitionSpec("seeds")
    abstract = sh.abstract_like(placed)
    assert abstract["a"].shape == (3, 2) and abstract["a"].sharding == placed["a"].sharding
    host = sh.abstract_like({"h": np.zeros((2,), np.int32)})["h"]
    assert host.sharding is None and host.dtype == np.int32
    assert sh.to_host(placed)["a"].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    with pytest.raises(ConfigError, match="no devices given"):
        sh.seed_mesh([])
    with pytest.raises(ConfigError, match="repeats a device"):
        sh.seed_mesh([jax.devices()[0]] * 2)
    with pytest.raises(ConfigError, match="0 seed"):
        sh.check_seed_count(0, mesh)
    with pytest.raises(ConfigError, match="--seeds 0: give at least 1 seed"):
        sh.seed_mesh_for(0)
    assert sh.seed_mesh_for(5).size == 1


def test_distributed_settings_from_arguments_and_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}
    assert sh.distributed_settings(environ=env) == sh.DistributedSettings("10.0.0.1:1234", 4, 3)
    assert sh.distributed_settings("h:9", 2, 0, environ=env) == sh.DistributedSettings(
        "h:9", 2, 0)
    assert sh.distributed_settings(environ={}) == sh.DistributedSettings(None, None, None)
    with pytest.raises(ConfigError, match=r"JAX_NUM_PROCESSES='two' is not an integer"):
        sh.distributed_settings(environ={"JAX_NUM_PROCESSES": "two"})
    with pytest.raises(ConfigError, match=r"--coordinator 'nohost': give HOST:PORT"):
        sh.distributed_settings("nohost", environ={})
    with pytest.raises(ConfigError, match=r"--process-id 2: give an index from 0 to 1"):
        sh.distributed_settings("h:1", 2, 2, environ={})
    with pytest.raises(ConfigError, match=r"--num-processes 0"):
        sh.distributed_settings("h:1", 0, 0, environ={})
    assert sh.distributed_requested({"HRL_SARP_DISTRIBUTED": "1"}) is True
    assert sh.distributed_requested({"HRL_SARP_DISTRIBUTED": "off"}) is False
    assert sh.distributed_requested({}) is False
    with pytest.raises(ConfigError, match="HRL_SARP_DISTRIBUTED='maybe'"):
        sh.distributed_requested({"HRL_SARP_DISTRIBUTED": "maybe"})


def test_initialize_is_skipped_when_off_and_explains_failures():
    assert sh.maybe_initialize_distributed(False) is False
    assert sh.maybe_initialize_distributed(environ={"HRL_SARP_DISTRIBUTED": "0"}) is False
    assert not jax.distributed.is_initialized()
    # This process already started its backend: jax refuses, and the message says what to do.
    with pytest.raises(ConfigError, match=r"jax.distributed.initialize failed \(jax.distri"
                                          r"buted.initialize\(\) must be called before"):
        sh.maybe_initialize_distributed(True, coordinator_address="localhost:1",
                                        num_processes=2, process_id=0, environ={})
    assert not jax.distributed.is_initialized()


def test_cli_distributed_flag(capsys, monkeypatch):
    from hrl_sarp_jax.cli import build_parser, main

    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                 sh.ENV_DISTRIBUTED):
        monkeypatch.delenv(name, raising=False)
    args = build_parser().parse_args(["--distributed", "--coordinator", "h:1",
                                      "--num-processes", "2", "--process-id", "1",
                                      "inspect", "--run", "x"])
    assert (args.distributed, args.coordinator, args.num_processes, args.process_id) == (
        True, "h:1", 2, 1)
    # a bad coordinator fails with one line before the command runs
    assert main(["--distributed", "--coordinator", "nohost", "inspect", "--run", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hrl-sarp: error: --coordinator 'nohost': give HOST:PORT")
    assert err.count("\n") == 1
    assert main(["--process-id", "1", "inspect", "--run", "x"]) == 2
    assert "only apply with --distributed" in capsys.readouterr().err
    monkeypatch.setenv(sh.ENV_DISTRIBUTED, "yes please")
    assert main(["inspect", "--run", "x"]) == 2
    assert "HRL_SARP_DISTRIBUTED='yes please'" in capsys.readouterr().err
    with pytest.raises(HrlSarpError):
        sh.distributed_requested()


def _train_cli(args: list[str], devices: int, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hrl_sarp_jax", *args], cwd=cwd,
                            env={**_env(devices), "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> None:
    try:
        _, stderr = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]


def _summary_values(tree: dict, prefix: str = "") -> dict:
    """Every number of a phase summary by dotted key, timings and program names aside."""
    skip = ("wall", "compile", "programs", "written_at", "path", "_dir")
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name.endswith("_s") or any(t in name for t in skip):
            continue
        if isinstance(value, dict):
            out.update(_summary_values(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
        elif isinstance(value, list) and np.asarray(value).dtype.kind in "iuf":
            out[name] = value  # per-seed figures (dates and names aside)
    return out


def test_two_processes_train_every_phase_as_one_process_does(tmp_path):
    # `hrl-sarp --distributed train --phase all --seeds 4` and then `--phase flat`, in two
    # processes x 2 devices into one shared run folder, against one process with 4 devices:
    # the same metrics line for line (every phase's validations from step 0 on, the
    # pre-training losses) and the same numbers in every phase summary. Phases 1-2 run whole
    # in every process (their checkpoints are saved as replicated global arrays), Phases 3-5
    # and the flat baseline split the seeds, Phase 4/5 load Phase 3/4's sharded checkpoints,
    # and the flat baseline's two checkpointers save the same step at once.
    data = tmp_path / "market"
    _finish(_train_cli(["data", "synth", "--config", "smoke", "--out", str(data)], 1, tmp_path))
    common = ["train", "--config", "smoke", "--seeds", "4", "--data", str(data),
              "--checkpoints", str(tmp_path / "ck")]
    for phase in ("all", "flat"):
        _finish(_train_cli([*common, "--phase", phase, "--run", "one"], 4, tmp_path))
        port = str(_free_port())
        procs = [_train_cli(["--distributed", "--coordinator", f"localhost:{port}",
                             "--num-processes", "2", "--process-id", str(pid), *common,
                             "--phase", phase, "--run", "two"], 2, tmp_path)
                 for pid in (0, 1)]
        for p in procs:
            _finish(p)

    def lines(run: str) -> list[dict]:
        return [json.loads(x) for x in (tmp_path / "ck" / run / "metrics.jsonl")
                .read_text().splitlines()]

    one, two = lines("one"), lines("two")
    assert [x.get("phase") for x in one] == [x.get("phase") for x in two]
    assert {x.get("phase") for x in one} == {1, 2, 3, 4, 5, "flat"}
    for a, b in zip(one, two, strict=True):
        numbers = {k for k, v in a.items() if isinstance(v, (int, float))
                   and not isinstance(v, bool) and not k.endswith("_s") and "time" not in k}
        assert numbers <= b.keys()
        for key in numbers:
            np.testing.assert_allclose(b[key], a[key], rtol=1e-5, atol=1e-6,
                                       err_msg=f"phase {a.get('phase')} {key}")
    for phase in ("1", "2", "3", "4", "5", "flat"):
        a, b = (_summary_values(json.loads((tmp_path / "ck" / run / f"phase{phase}" /
                                            "summary.json").read_text())) for run in ("one", "two"))
        assert a.keys() == b.keys() and len(a) > 5, phase
        for key in a:
            np.testing.assert_allclose(np.asarray(b[key], float), np.asarray(a[key], float),
                                       rtol=1e-5, atol=1e-6, err_msg=f"phase {phase} {key}")
