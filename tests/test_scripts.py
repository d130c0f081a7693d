"""scripts/*.sh: thin wrappers pass every argument through unchanged, run the right hrl-sarp
command, and turn the HRL_SARP_* knobs into the variables JAX reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
KNOBS = ("XLA_PYTHON_CLIENT_PREALLOCATE", "XLA_PYTHON_CLIENT_MEM_FRACTION",
         "CUDA_VISIBLE_DEVICES", "JAX_PLATFORMS")

# Stands in for python: prints its argv and the JAX variables as one JSON line.
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys
print(json.dumps({{"argv": sys.argv[1:],
                  "env": {{k: os.environ.get(k) for k in {KNOBS!r}}}}}))
"""


def run_script(name: str, args: list[str], tmp_path: Path, **env: str) -> dict:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if k not in KNOBS and not k.startswith(
        "HRL_SARP_")}
    proc = subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                          env={**base, "HRL_SARP_PYTHON": str(fake), **env}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize(("script", "head"), [
    ("train_gpu.sh", ["-m", "hrl_sarp_jax", "train"]),
    ("sweep_gpu.sh", ["-m", "hrl_sarp_jax", "sweep"]),
    ("multihost.sh", ["-m", "hrl_sarp_jax", "--distributed"]),
])
def test_arguments_pass_through_unchanged(script, head, tmp_path):
    args = ["--run", "a b", "--set", "synth.seed=3", ""]
    out = run_script(script, args, tmp_path)
    assert out["argv"] == [*head, *args]
    # defaults: no preallocation, nothing else forced
    assert out["env"] == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                          "XLA_PYTHON_CLIENT_MEM_FRACTION": None,
                          "CUDA_VISIBLE_DEVICES": None, "JAX_PLATFORMS": None}


def test_knobs_become_jax_variables(tmp_path):
    out = run_script("train_gpu.sh", ["--phase", "3"], tmp_path, HRL_SARP_MEM_FRACTION="0.45",
                     HRL_SARP_DEVICES="0,1", HRL_SARP_PLATFORM="cuda")
    assert out["env"] == {"XLA_PYTHON_CLIENT_PREALLOCATE": None,
                          "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.45",
                          "CUDA_VISIBLE_DEVICES": "0,1", "JAX_PLATFORMS": "cuda"}


def test_scripts_are_strict_and_document_their_usage():
    for name in ("train_gpu.sh", "sweep_gpu.sh", "multihost.sh"):
        text = (SCRIPTS / name).read_text()
        assert text.startswith("#!/usr/bin/env bash\n")
        assert "# Usage:" in text and "set -euo pipefail" in text and '"$@"' in text
        assert os.access(SCRIPTS / name, os.X_OK)
    text = (SCRIPTS / "multihost.sh").read_text()
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
                "JAX_LOCAL_DEVICE_IDS"):
        assert var in text


def test_train_gpu_reaches_the_real_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HRL_SARP_")}
    proc = subprocess.run(["bash", str(SCRIPTS / "train_gpu.sh"), "--help"],
                          capture_output=True, text=True, timeout=60,
                          env={**env, "HRL_SARP_PYTHON": sys.executable})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: hrl-sarp train") and "--phase" in proc.stdout
