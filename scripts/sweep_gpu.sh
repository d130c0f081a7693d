#!/usr/bin/env bash
# Hyperparameter sweep (Phase 3: hparams x seeds as one vmapped program) on a GPU host.
#
# Usage: scripts/sweep_gpu.sh --run NAME [--config default] [--set k=v ...]
#                             [any other `hrl-sarp sweep` option]
#   e.g. HRL_SARP_DEVICES=0 scripts/sweep_gpu.sh --run sweep1 --set synth.seed=3
#
# Runs `python -m hrl_sarp_jax sweep "$@"`. Environment knobs (all optional; see
# scripts/_gpu_env.sh): HRL_SARP_MEM_FRACTION, HRL_SARP_DEVICES, HRL_SARP_PLATFORM,
# HRL_SARP_JAX_CACHE, HRL_SARP_PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_gpu_env.sh"
exec "${HRL_SARP_PYTHON}" -m hrl_sarp_jax sweep "$@"
