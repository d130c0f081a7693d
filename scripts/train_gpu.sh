#!/usr/bin/env bash
# Train one curriculum phase on a GPU (or TPU) host.
#
# Usage: scripts/train_gpu.sh --phase 1|2|3|4|5|all --run NAME [any `hrl-sarp train` option]
#   e.g. HRL_SARP_MEM_FRACTION=0.5 HRL_SARP_DEVICES=0,1 \
#          scripts/train_gpu.sh --phase 3 --run gpu1 --seeds 16
#
# Runs `python -m hrl_sarp_jax train "$@"`. Environment knobs (all optional; see
# scripts/_gpu_env.sh): HRL_SARP_MEM_FRACTION, HRL_SARP_DEVICES, HRL_SARP_PLATFORM,
# HRL_SARP_JAX_CACHE, HRL_SARP_PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_gpu_env.sh"
exec "${HRL_SARP_PYTHON}" -m hrl_sarp_jax train "$@"
