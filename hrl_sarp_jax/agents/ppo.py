"""PPO with clipped surrogate and clipped value loss (Schulman et al., 2017,
https://arxiv.org/abs/1707.06347) for the Macro agent's joint (simplex weights ⊕ regime) action.

Outline:
  A, R ← gae(rollout, γ, λ); A ← normalise(A)             # once per rollout, not per epoch
  repeat `epochs` times: shuffle the T·E samples into `num_minibatches` minibatches
    for each minibatch: ratio = exp(log π(a|s) - log π_old(a|s)), log π = Σ_components log π_i
      L = -min(ratio·A, clip(ratio, 1±ε)·A) + c_v·½·max((V-R)², (V_old+clip(V-V_old, ±ε)-R)²)
          - c_H·H[π] + c_A·KL(π_anchor(·|s) ‖ π(·|s))
      θ ← adam(clip_by_global_norm(∇L)) with a warmup + cosine learning rate
The policy ``apply_fn(params, obs) -> (dists, value)`` returns a pytree of distributions from
``agents.distributions`` (e.g. ``{"weights": Dirichlet, "regime": Categorical}``) and V(s).
The anchor term (only when the rollout carries ``anchor``: the distributions of a reference
policy, e.g. the pre-trained one, at each stored state) is a trust region around that policy,
as the KL penalty to a reference policy in KL-regularised RL (Jaques et al., 2019,
https://arxiv.org/abs/1907.00456).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from hrl_sarp_jax.agents.distributions import (
    joint_entropy,
    joint_kl,
    joint_log_prob,
    joint_sample,
)
from hrl_sarp_jax.agents.optim import (
    inject_count,
    injected,
    scheduled_adam,
    set_injected,
    traced_warmup_cosine,
    warmup_cosine_scale,
)
from hrl_sarp_jax.agents.returns import gae, normalize_advantages
from hrl_sarp_jax.config import PPOConfig
from hrl_sarp_jax.types import Array, Params, PRNGKey, PyTree

ApplyFn = Callable[[Params, PyTree], tuple[PyTree, Array]]
Metrics = dict[str, Array]


@struct.dataclass
class PPOHParams:
    """Dynamic PPO hyperparameters: float32 scalar leaves, vmappable over a sweep."""

    lr: Array               # peak Adam learning rate (scaled by the warmup + cosine schedule)
    clip_eps: Array         # ratio clip and value clip ε
    entropy_coef: Array
    value_coef: Array
    gamma: Array
    gae_lambda: Array
    max_grad_norm: Array    # global-norm clip over actor and critic together
    aux_coef: Array | float = 0.0
    """Weight of the supervised auxiliary loss (used only when the rollout carries
    ``targets``)."""
    anchor_kl_coef: Array | float = 0.0
    """Weight of KL(anchor ‖ π) per sample (used only when the rollout carries ``anchor``)."""
    warmup_steps: Array | None = None
    """With ``decay_steps`` and ``min_lr_scale``: the learning-rate schedule as traced values
    (``optim.traced_warmup_cosine`` of the optimiser's step count scales ``lr``), for an
    optimiser made with ``make_optimizer(..., traced_schedule=True)``; None: ``lr`` as is."""
    decay_steps: Array | None = None
    min_lr_scale: Array | None = None
    critic_warmup_steps: Array | None = None
    """Gradient steps (the optimiser's count) during which only the value loss trains: the
    policy, entropy and auxiliary terms are switched off, so an actor that starts pre-trained
    is not moved by advantages of a critic that starts untrained. None: none (the original)."""

    # HOST ONLY
    @classmethod
    def from_config(cls, cfg: PPOConfig) -> PPOHParams:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(
            lr=f(cfg.lr), clip_eps=f(cfg.clip_eps), entropy_coef=f(cfg.entropy_coef),
            value_coef=f(cfg.value_coef), gamma=f(cfg.gamma), gae_lambda=f(cfg.gae_lambda),
            max_grad_norm=f(cfg.max_grad_norm), aux_coef=f(cfg.regime_aux_coef),
            anchor_kl_coef=f(cfg.anchor_kl_coef),
        )


class PPORollout(NamedTuple):
    """What collection stores, time-major: leaves [T, E, ...]."""

    obs: PyTree
    action: PyTree        # pytree matching the policy's distribution pytree
    log_prob: Array       # [T, E] log π_old of exactly the action stored
    value: Array          # [T, E] V_old(s_t)
    reward: Array         # [T, E]
    next_value: Array     # [T, E] V_old(s_{t+1}), of the final observation on an episode end
    terminated: Array     # [T, E] bool
    truncated: Array      # [T, E] bool
    targets: PyTree = None
    """{head: int32 label [T, E]} supervised targets of categorical heads of the policy's
    distribution pytree (-1: unknown, masked out), or None (no auxiliary loss)."""
    anchor: PyTree = None
    """The reference policy's distributions at each ``obs`` (the policy's distribution pytree,
    leaves [T, E, ...]), or None (no anchor term)."""


class PPOBatch(NamedTuple):
    """Flat training samples: leaves [B, ...]; ``advantage`` already normalised."""

    obs: PyTree
    action: PyTree
    log_prob: Array
    value: Array
    advantage: Array
    ret: Array
    targets: PyTree = None
    anchor: PyTree = None


def supervised_nll(dists: PyTree, targets: PyTree) -> Array:
    """Σ over heads of the mean −log p(label) over samples with a known label (>= 0):
    ``dists[head]`` a categorical distribution [B], ``targets[head]`` int labels [B]."""
    total = jnp.zeros((), jnp.float32)
    for head, label in targets.items():
        known = label >= 0
        lp = dists[head].log_prob(jnp.maximum(label, 0))
        total = total - jnp.sum(jnp.where(known, lp, 0.0)) / jnp.maximum(jnp.sum(known), 1)
    return total


def make_optimizer(
    *,
    lr: float,
    max_grad_norm: float,
    warmup_steps: int = 0,
    decay_steps: int = 1,
    min_lr_scale: float = 0.0,
    traced_schedule: bool = False,
) -> optax.GradientTransformation:
    """clip_by_global_norm → Adam with lr = lr · warmup_cosine_scale(optimiser step).

    ``lr`` and ``max_grad_norm`` are only initial values: ``ppo_update`` overwrites them with
    the ``PPOHParams`` it is given. Steps count gradient (minibatch) steps, i.e.
    updates × epochs × num_minibatches. ``traced_schedule``: the schedule here is 1 and the
    ``PPOHParams``' schedule (traced lengths) scales the injected lr instead; the state has the
    same layout either way (checkpoints of one restore into the other).
    """
    if traced_schedule:
        lr_scale: Callable[[Array], Array] = lambda count: jnp.ones((), jnp.float32)  # noqa: E731
    else:
        lr_scale = warmup_cosine_scale(warmup_steps, decay_steps, min_lr_scale)
    return optax.chain(
        optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=max_grad_norm),
        optax.inject_hyperparams(scheduled_adam)(peak_lr=lr, lr_scale=lr_scale),
    )


def current_lr(opt_state: PyTree) -> Array:
    """Learning rate used by the latest update of a ``make_optimizer`` state."""
    return injected(opt_state, "peak_lr") * injected(opt_state, "lr_scale")


def create_train_state(
    apply_fn: ApplyFn, params: Params, tx: optax.GradientTransformation
) -> TrainState:
    """A flax TrainState with an int32 step counter (no weak types)."""
    return TrainState(
        step=jnp.array(0, jnp.int32), apply_fn=apply_fn, params=params, tx=tx,
        opt_state=tx.init(params),
    )


def policy_step(
    apply_fn: ApplyFn, params: Params, obs: PyTree, key: PRNGKey
) -> tuple[PyTree, Array, Array]:
    """Sample an action for collection: (action pytree, log π(action) [...], V(obs) [...]).

    The log-prob is of exactly the returned action (the one the env will receive).
    """
    dists, value = apply_fn(params, obs)
    action = joint_sample(key, dists)
    return action, joint_log_prob(dists, action), value


def ppo_loss(
    params: Params, apply_fn: ApplyFn, batch: PPOBatch, hp: PPOHParams,
    policy_on: Array | None = None,
) -> tuple[Array, Metrics]:
    """Clipped PPO loss on one minibatch (advantages used as given, never renormalised here).

    ``policy_on``: a bool [] that, when False, leaves the value loss alone (a critic-only
    step: the other terms and their gradients are zero); None: every term.
    Returns (scalar loss, metrics: pg_loss, value_loss, entropy, approx_kl, clip_frac, and
    aux_loss / anchor_kl when the batch has targets / an anchor).
    """
    dists, value = apply_fn(params, batch.obs)
    log_prob = joint_log_prob(dists, batch.action)
    log_ratio = log_prob - batch.log_prob
    ratio = jnp.exp(log_ratio)
    adv = batch.advantage
    clipped_ratio = jnp.clip(ratio, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps)
    pg_loss = -jnp.mean(jnp.minimum(ratio * adv, clipped_ratio * adv))

    value_clipped = batch.value + jnp.clip(value - batch.value, -hp.clip_eps, hp.clip_eps)
    value_loss = 0.5 * jnp.mean(
        jnp.maximum(jnp.square(value - batch.ret), jnp.square(value_clipped - batch.ret))
    )
    entropy = jnp.mean(joint_entropy(dists))

    def policy_term(x: Array) -> Array:  # zero (and no gradient) in a critic-only step
        return x if policy_on is None else jnp.where(policy_on, x, 0.0)
    if policy_on is None:
        loss = pg_loss + hp.value_coef * value_loss - hp.entropy_coef * entropy
    else:
        loss = policy_term(pg_loss - hp.entropy_coef * entropy) + hp.value_coef * value_loss
    metrics = {
        "pg_loss": pg_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),  # the k3 estimator, always ≥ 0
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > hp.clip_eps).astype(jnp.float32)),
    }
    if batch.targets is not None:  # static: the rollout's structure
        aux = supervised_nll(dists, batch.targets)
        loss = loss + policy_term(hp.aux_coef * aux)
        metrics["aux_loss"] = aux
    if batch.anchor is not None:  # static: the rollout's structure
        anchor_kl = jnp.mean(joint_kl(batch.anchor, dists))
        loss = loss + policy_term(hp.anchor_kl_coef * anchor_kl)
        metrics["anchor_kl"] = anchor_kl
    return loss, metrics


def ppo_minibatch_step(
    train_state: TrainState, batch: PPOBatch, hp: PPOHParams
) -> tuple[TrainState, Metrics]:
    """One gradient step on one minibatch with the dynamic lr / clip norm taken from ``hp``."""
    grad_fn = jax.value_and_grad(ppo_loss, has_aux=True)
    policy_on = None
    if hp.critic_warmup_steps is not None:  # static: set only when configured
        policy_on = inject_count(train_state.opt_state, "peak_lr") >= hp.critic_warmup_steps
    (loss, metrics), grads = grad_fn(train_state.params, train_state.apply_fn, batch, hp,
                                     policy_on)
    lr = hp.lr
    if hp.warmup_steps is not None:  # static: the schedule travels in hp
        lr = hp.lr * traced_warmup_cosine(inject_count(train_state.opt_state, "peak_lr"),
                                          hp.warmup_steps, hp.decay_steps, hp.min_lr_scale)
    opt_state = set_injected(train_state.opt_state, peak_lr=lr, max_norm=hp.max_grad_norm)
    train_state = train_state.replace(opt_state=opt_state).apply_gradients(grads=grads)
    metrics = {
        **metrics,
        "loss": loss,
        "grad_norm": optax.tree.norm(grads),  # before clipping
        "lr": current_lr(train_state.opt_state),
    }
    return train_state, metrics


def make_batch(rollout: PPORollout, hp: PPOHParams) -> PPOBatch:
    """GAE on the [T, E] rollout, advantages normalised once, flattened to [T·E, ...]."""
    adv, ret = gae(
        rollout.reward, rollout.value, rollout.next_value, rollout.terminated,
        rollout.truncated, hp.gamma, hp.gae_lambda,
    )
    adv = normalize_advantages(adv)
    flat = lambda x: x.reshape((-1, *x.shape[2:]))  # noqa: E731  [T, E, ...] -> [T·E, ...]
    return PPOBatch(
        obs=jax.tree.map(flat, rollout.obs), action=jax.tree.map(flat, rollout.action),
        log_prob=flat(rollout.log_prob), value=flat(rollout.value), advantage=flat(adv),
        ret=flat(ret), targets=jax.tree.map(flat, rollout.targets),
        anchor=jax.tree.map(flat, rollout.anchor),
    )


def ppo_update(
    train_state: TrainState,
    rollout: PPORollout,
    key: PRNGKey,
    hp: PPOHParams,
    *,
    epochs: int,
    num_minibatches: int,
) -> tuple[TrainState, Metrics]:
    """``epochs`` passes of shuffled minibatch steps over one rollout (all inside lax.scan).

    Args:
      rollout: leaves [T, E, ...]; T·E must be divisible by ``num_minibatches``.
      key: consumed for the per-epoch permutations.
    Returns:
      (train_state, metrics averaged over all epochs × minibatches).
    """
    batch = make_batch(rollout, hp)
    n = batch.advantage.shape[0]
    if n % num_minibatches:
        raise ValueError(f"T·E = {n} is not divisible by num_minibatches = {num_minibatches}")
    size = n // num_minibatches

    def epoch(ts: TrainState, epoch_key: PRNGKey) -> tuple[TrainState, Metrics]:
        perm = jax.random.permutation(epoch_key, n)
        minibatches = jax.tree.map(
            lambda x: x[perm].reshape((num_minibatches, size, *x.shape[1:])), batch
        )
        return jax.lax.scan(lambda s, mb: ppo_minibatch_step(s, mb, hp), ts, minibatches)

    train_state, metrics = jax.lax.scan(epoch, train_state, jax.random.split(key, epochs))
    return train_state, jax.tree.map(jnp.mean, metrics)
