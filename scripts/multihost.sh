#!/usr/bin/env bash
# Run one hrl-sarp command as one process of a multi-host (multi-process) JAX job.
#
# Usage: on EVERY host (same code, config, market and command; only the process id differs)
#   JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \
#     scripts/multihost.sh train --phase 3 --run big --seeds 16        # on host 0
#   JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=1 \
#     scripts/multihost.sh train --phase 3 --run big --seeds 16        # on host 1
#
# Runs `python -m hrl_sarp_jax --distributed "$@"`, which calls jax.distributed.initialize
# before the command. What jax.distributed reads, per host:
#   JAX_COORDINATOR_ADDRESS  HOST:PORT of process 0 (its coordinator service listens there;
#                            every host must reach it). Same value on every host.
#   JAX_NUM_PROCESSES        number of processes in the job. Same value on every host.
#   JAX_PROCESS_ID           this process's index, 0 .. JAX_NUM_PROCESSES-1 (0 on the
#                            coordinator's host).
#   JAX_LOCAL_DEVICE_IDS     optional, e.g. "0,1": the local GPUs this process drives (one
#                            process per GPU, or one per host with all its GPUs).
# Under Slurm, Open MPI (mpirun) or on a TPU pod the first three can be left unset: jax
# detects them. The global device count is the sum over processes; seeds are split over all
# of them, so --seeds must be a multiple of it. Checkpoints go to --checkpoints, which must be
# a folder every host shares. The GPU knobs of scripts/_gpu_env.sh apply on each host.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_gpu_env.sh"
exec "${HRL_SARP_PYTHON}" -m hrl_sarp_jax --distributed "$@"
