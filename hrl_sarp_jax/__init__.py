"""hrl_sarp_jax: a JAX hierarchical-RL portfolio manager (sector rotation + stock selection)."""

__version__ = "0.1.0"
