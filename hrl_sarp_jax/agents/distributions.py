"""Action distributions as pytrees: a masked Dirichlet over a simplex and a Categorical.

Both are ``flax.struct`` dataclasses, so a policy network can return a pytree of them (e.g.
``{"weights": Dirichlet, "regime": Categorical}``) through jit/vmap; ``joint_*`` treat such a
pytree as one product distribution: log π = Σ log π_i, H = Σ H_i, one key per component.
Masked (padded) Dirichlet components are not part of the distribution: they get weight 0 and
contribute nothing to log-probabilities or entropies.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import digamma, gammaln

from hrl_sarp_jax.networks.common import nan_safe_max
from hrl_sarp_jax.types import Array, PRNGKey, PyTree

SAMPLE_FLOOR = 1e-6
"""Dirichlet samples are floored here on valid components and renormalised, so that the action
handed to the environment has a finite log-density; the stored log-prob is that of this exact
(floored) action, never of a different, pre-clamp sample (the original's bug, spec §11.12)."""


def masked_softmax(logits: Array, mask: Array) -> Array:
    """Softmax over the last axis restricted to ``mask``; masked entries are exactly 0.

    logits, mask: [..., N] -> [..., N] (float32).
    """
    logits = jnp.where(mask, jnp.asarray(logits, jnp.float32), -jnp.inf)
    # nan_safe_max: the max's derivative (zero in sum, softmax is shift-invariant) must not
    # divide by a count of 0 maxima (see networks.common.max_tangent)
    shifted = logits - jnp.expand_dims(nan_safe_max(logits, -1), -1)
    e = jnp.where(mask, jnp.exp(shifted), 0.0)
    return e / jnp.sum(e, axis=-1, keepdims=True)


@struct.dataclass
class Dirichlet:
    """Dirichlet over the valid components of the last axis.

    concentration: [..., S] positive (values on masked slots are ignored).
    mask: [..., S] bool, True for real components (at least one per row).
    """

    concentration: Array
    mask: Array

    def _alpha(self) -> Array:
        # Masked slots get α = 1 so that gammaln/digamma stay finite; they are excluded below.
        return jnp.where(self.mask, jnp.asarray(self.concentration, jnp.float32), 1.0)

    def log_prob(self, x: Array) -> Array:
        """log density at x [..., S] (a point on the valid sub-simplex) -> [...]."""
        a, m = self._alpha(), self.mask
        a0 = jnp.sum(jnp.where(m, a, 0.0), axis=-1)
        log_norm = gammaln(a0) - jnp.sum(jnp.where(m, gammaln(a), 0.0), axis=-1)
        log_x = jnp.log(jnp.where(m, jnp.maximum(x, jnp.finfo(jnp.float32).tiny), 1.0))
        return log_norm + jnp.sum(jnp.where(m, (a - 1.0) * log_x, 0.0), axis=-1)

    def entropy(self) -> Array:
        """Differential entropy [...] (may be negative)."""
        a, m = self._alpha(), self.mask
        k = jnp.sum(m, axis=-1).astype(jnp.float32)
        a0 = jnp.sum(jnp.where(m, a, 0.0), axis=-1)
        log_beta = jnp.sum(jnp.where(m, gammaln(a), 0.0), axis=-1) - gammaln(a0)
        return (
            log_beta
            + (a0 - k) * digamma(a0)
            - jnp.sum(jnp.where(m, (a - 1.0) * digamma(a), 0.0), axis=-1)
        )

    def sample(self, key: PRNGKey) -> Array:
        """One draw [..., S]; masked slots are 0, valid ones ≥ SAMPLE_FLOOR / (1 + S·floor)."""
        # The valid sub-vector of a Dirichlet draw, renormalised, is Dirichlet(α_valid).
        x = jax.random.dirichlet(key, self._alpha(), dtype=jnp.float32)
        x = jnp.where(self.mask, jnp.maximum(x, SAMPLE_FLOOR), 0.0)
        return x / jnp.sum(x, axis=-1, keepdims=True)

    def mean(self) -> Array:
        """α / α0 on valid components, 0 elsewhere: [..., S]."""
        a = jnp.where(self.mask, self._alpha(), 0.0)
        return a / jnp.sum(a, axis=-1, keepdims=True)

    def mode(self) -> Array:
        """(α - 1) / (α0 - K) when every valid α > 1, else the mean (the mode is a vertex or
        undefined there): [..., S]."""
        a, m = self._alpha(), self.mask
        interior = jnp.all(jnp.where(m, a > 1.0, True), axis=-1, keepdims=True)
        am1 = jnp.where(m, a - 1.0, 0.0)
        mode = am1 / jnp.maximum(jnp.sum(am1, axis=-1, keepdims=True), 1e-12)
        return jnp.where(interior, mode, self.mean())

    def kl(self, other: Dirichlet) -> Array:
        """KL(self ‖ other) [...] over the valid components (the same ``mask`` in both):
        lnΓ(α0) − Σ lnΓ(αi) − lnΓ(β0) + Σ lnΓ(βi) + Σ (αi − βi)(ψ(αi) − ψ(α0))."""
        a, b, m = self._alpha(), other._alpha(), self.mask
        a0 = jnp.sum(jnp.where(m, a, 0.0), axis=-1)
        b0 = jnp.sum(jnp.where(m, b, 0.0), axis=-1)
        terms = -gammaln(a) + gammaln(b) + (a - b) * (digamma(a) - digamma(a0)[..., None])
        return gammaln(a0) - gammaln(b0) + jnp.sum(jnp.where(m, terms, 0.0), axis=-1)


@struct.dataclass
class Categorical:
    """Categorical with unnormalised ``logits`` [..., C]; actions are int32 [...]."""

    logits: Array

    def _log_p(self) -> Array:
        return jax.nn.log_softmax(jnp.asarray(self.logits, jnp.float32), axis=-1)

    def log_prob(self, a: Array) -> Array:
        """log P(a) for integer a [...] -> [...]."""
        idx = jnp.asarray(a, jnp.int32)[..., None]
        return jnp.take_along_axis(self._log_p(), idx, axis=-1)[..., 0]

    def entropy(self) -> Array:
        log_p = self._log_p()
        return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    def sample(self, key: PRNGKey) -> Array:
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def mode(self) -> Array:
        return jnp.argmax(self.logits, axis=-1).astype(jnp.int32)

    def kl(self, other: Categorical) -> Array:
        """KL(self ‖ other) = Σ p (log p − log q) [...]."""
        log_p = self._log_p()
        return jnp.sum(jnp.exp(log_p) * (log_p - other._log_p()), axis=-1)


def _is_dist(x: object) -> bool:
    return isinstance(x, Dirichlet | Categorical)


def joint_log_prob(dists: PyTree, actions: PyTree) -> Array:
    """Σ_i log π_i(a_i) over a pytree of distributions and a matching pytree of actions -> [...]."""
    parts = jax.tree.map(lambda d, a: d.log_prob(a), dists, actions, is_leaf=_is_dist)
    return sum(jax.tree.leaves(parts))


def joint_entropy(dists: PyTree) -> Array:
    """Σ_i H(π_i) -> [...]."""
    return sum(jax.tree.leaves(jax.tree.map(lambda d: d.entropy(), dists, is_leaf=_is_dist)))


def joint_kl(p: PyTree, q: PyTree) -> Array:
    """Σ_i KL(p_i ‖ q_i) over two pytrees of distributions of one structure -> [...]."""
    parts = jax.tree.map(lambda a, b: a.kl(b), p, q, is_leaf=_is_dist)
    return sum(jax.tree.leaves(parts))


def joint_sample(key: PRNGKey, dists: PyTree) -> PyTree:
    """One action per component (a pytree shaped like ``dists``), one key per component."""
    leaves, treedef = jax.tree.flatten(dists, is_leaf=_is_dist)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [d.sample(k) for d, k in zip(leaves, keys, strict=True)])


def joint_mode(dists: PyTree) -> PyTree:
    """The deterministic action of each component (Dirichlet: ``mode``; Categorical: argmax)."""
    return jax.tree.map(lambda d: d.mode(), dists, is_leaf=_is_dist)
