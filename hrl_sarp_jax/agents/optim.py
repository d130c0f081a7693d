"""Optimiser helpers shared by the agents: learning-rate schedules and dynamic hyperparameters.

Learning rates and clip norms that are swept live in ``optax.inject_hyperparams`` state, so a
vmapped sweep carries one value per member; ``set_injected`` writes the current ``HParams``
values into that state before each update, so the hparams passed to ``update`` always win.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from hrl_sarp_jax.types import Array, PyTree

_INJECT_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def warmup_cosine_scale(
    warmup_steps: int, decay_steps: int, min_scale: float = 0.0
) -> Callable[[Array], Array]:
    """Multiplier schedule in (0, 1]: linear warmup, then a cosine decay to ``min_scale``.

    scale(c) = (c + 1) / warmup_steps                       for c < warmup_steps
             = min + (1 - min)·½·(1 + cos(π·min(1, (c - warmup_steps) / decay_steps)))  after,
    where c counts optimiser steps from 0 (so the first step already moves: 1/warmup_steps).
    """
    warmup, decay = max(int(warmup_steps), 0), max(int(decay_steps), 1)

    def scale(count: Array) -> Array:
        return traced_warmup_cosine(count, warmup, decay, min_scale)

    return scale


def traced_warmup_cosine(count: Array, warmup_steps: Array, decay_steps: Array,
                         min_scale: Array) -> Array:
    """``warmup_cosine_scale(warmup_steps, decay_steps, min_scale)(count)`` with the lengths as
    traced values (float32 scalars), so one compiled program serves every schedule length."""
    c = jnp.asarray(count, jnp.float32)
    warmup = jnp.maximum(jnp.asarray(warmup_steps, jnp.float32), 0.0)
    decay = jnp.maximum(jnp.asarray(decay_steps, jnp.float32), 1.0)
    ramp = (c + 1.0) / jnp.maximum(warmup, 1.0)
    progress = jnp.clip((c - warmup) / decay, 0.0, 1.0)
    cosine = min_scale + (1.0 - min_scale) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(c < warmup, ramp, cosine).astype(jnp.float32)


def inject_count(opt_state: PyTree, name: str) -> Array:
    """The step count of the injected-hyperparameter state holding ``name`` (the count its
    schedules are evaluated at in the next update)."""
    return _inject_state(opt_state, name).count


def scheduled_adam(
    peak_lr: float, lr_scale: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
    """Adam with learning rate ``peak_lr · lr_scale`` (both injectable hyperparameters)."""
    return optax.adam(peak_lr * lr_scale, b1=b1, b2=b2, eps=eps)


def set_injected(opt_state: PyTree, **values: Array | float) -> PyTree:
    """Overwrite numeric injected hyperparameters (by name) everywhere in ``opt_state``.

    Raises KeyError at trace time if a name is not an injected hyperparameter of the state.
    """
    found: set[str] = set()

    def fix(s: object) -> object:
        if not isinstance(s, _INJECT_STATES):
            return s
        hps = dict(s.hyperparams)
        for name, v in values.items():
            if name in hps:
                hps[name] = jnp.asarray(v, hps[name].dtype)
                found.add(name)
        return s._replace(hyperparams=hps)

    out = jax.tree.map(fix, opt_state, is_leaf=lambda s: isinstance(s, _INJECT_STATES))
    missing = set(values) - found
    if missing:
        raise KeyError(f"not injected hyperparameters of this optimiser: {sorted(missing)}")
    return out


def injected(opt_state: PyTree, name: str) -> Array:
    """The current value of injected hyperparameter ``name`` (the first one found)."""
    return _inject_state(opt_state, name).hyperparams[name]


def _inject_state(opt_state: PyTree, name: str) -> Any:
    """The first injected-hyperparameter state of ``opt_state`` holding ``name``."""
    states = jax.tree.leaves(opt_state, is_leaf=lambda s: isinstance(s, _INJECT_STATES))
    for s in states:
        if isinstance(s, _INJECT_STATES) and name in s.hyperparams:
            return s
    raise KeyError(f"no injected hyperparameter {name!r}")


def copy_injected(src: PyTree, dst: PyTree) -> PyTree:
    """``dst`` (a fresh state of the same optimiser) with the injected hyperparameters of
    ``src`` (e.g. per-seed lr and clip norm kept when the moments are reset)."""
    is_inj = lambda s: isinstance(s, _INJECT_STATES)  # noqa: E731
    src_l = jax.tree.leaves(src, is_leaf=is_inj)
    dst_l, treedef = jax.tree.flatten(dst, is_leaf=is_inj)
    out = [d._replace(hyperparams=s.hyperparams) if is_inj(d) else d
           for s, d in zip(src_l, dst_l, strict=True)]
    return jax.tree.unflatten(treedef, out)
