# Sourced by scripts/train_gpu.sh, sweep_gpu.sh and multihost.sh (not run on its own): turns the
# HRL_SARP_* knobs below into the variables JAX reads. Every knob is optional.
#
#   HRL_SARP_MEM_FRACTION  share of each GPU's memory JAX reserves up front, e.g. 0.45
#                          (XLA_PYTHON_CLIENT_MEM_FRACTION). Unset: no preallocation
#                          (XLA_PYTHON_CLIENT_PREALLOCATE=false), memory is taken as needed, so
#                          several runs can share one GPU (a little slower to allocate).
#   HRL_SARP_DEVICES       GPU ids this run may use, e.g. "0,1" (CUDA_VISIBLE_DEVICES). Seeds
#                          are split over the visible devices, so --seeds must be a multiple of
#                          their count.
#   HRL_SARP_PLATFORM      cuda | rocm | tpu | cpu (JAX_PLATFORMS). Unset: JAX's choice (the
#                          accelerator when its jax plugin is installed, else CPU).
#   HRL_SARP_JAX_CACHE     persistent XLA compilation cache folder (read by hrl-sarp itself;
#                          default ~/.cache/hrl_sarp_jax/jax_cache, empty string disables).
#   HRL_SARP_PYTHON        the Python that has hrl_sarp_jax installed (default: python).

if [[ -n "${HRL_SARP_MEM_FRACTION:-}" ]]; then
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${HRL_SARP_MEM_FRACTION}"
else
  export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
fi
if [[ -n "${HRL_SARP_DEVICES:-}" ]]; then
  export CUDA_VISIBLE_DEVICES="${HRL_SARP_DEVICES}"
fi
if [[ -n "${HRL_SARP_PLATFORM:-}" ]]; then
  export JAX_PLATFORMS="${HRL_SARP_PLATFORM}"
fi
HRL_SARP_PYTHON="${HRL_SARP_PYTHON:-python}"
