"""TD3 (Fujimoto et al., 2018, https://arxiv.org/abs/1802.09477) for the goal-conditioned Micro
agent, whose actions are stock weights on a masked simplex.

Outline:
  a' = masked_softmax(logits_π'(s') + clip(σ_t·ε, ±c))                 # smoothing in LOGIT space
  y  = r + γ·(1 - terminated)·min_k Q'_k(s', a')                        # truncation bootstraps
  critics ← minimise Σ_k mean (Q_k(s, a) - y)²                          # clip_by_global_norm, Adam
  every `policy_delay` updates: actor ← maximise Q_1(s, π(s)); targets ← polyak(τ)
    (anchored: minimise −Q_1(s, π(s)) / mean|Q_1| + c·KL(π_anchor(s) ‖ π(s)), the weights read
    as probabilities: a trust region around a starting actor, as TD3+BC's normalised Q plus a
    behaviour term, Fujimoto & Gu, 2021, https://arxiv.org/abs/2106.06860)
  act: masked_softmax(logits_π(s) + σ_explore(update count)·ε)          # noise decays per update
``actor_apply(params, obs) -> (logits [B, N], mask [B, N])`` and
``critic_apply(params, obs, action [B, N]) -> q [B]``; the K critics are one set of params
stacked on a leading [K] axis (``critic_init`` vmapped over K keys).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from hrl_sarp_jax.agents.buffers import Transition
from hrl_sarp_jax.agents.distributions import Categorical, masked_softmax
from hrl_sarp_jax.agents.optim import set_injected
from hrl_sarp_jax.config import TD3Config
from hrl_sarp_jax.types import Array, Params, PRNGKey, PyTree

ActorApply = Callable[[Params, PyTree], tuple[Array, Array]]
CriticApply = Callable[[Params, PyTree, Array], Array]
Metrics = dict[str, Array]


@struct.dataclass
class TD3HParams:
    """Dynamic TD3 hyperparameters: float32 scalar leaves, vmappable over a sweep."""

    actor_lr: Array
    critic_lr: Array
    gamma: Array
    tau: Array
    target_noise: Array       # std of the target-smoothing noise, in logit units
    noise_clip: Array         # that noise is clipped to ±noise_clip (logit units)
    explore_noise: Array      # exploration std in logit units at update 0 ...
    explore_noise_end: Array  # ... decaying linearly to this over `explore_decay_updates`
    anchor_kl_coef: Array | float = 0.0  # weight c of the anchor term (anchored agents only)

    # HOST ONLY
    @classmethod
    def from_config(cls, cfg: TD3Config) -> TD3HParams:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(
            actor_lr=f(cfg.actor_lr), critic_lr=f(cfg.critic_lr), gamma=f(cfg.gamma),
            tau=f(cfg.tau), target_noise=f(cfg.target_noise), noise_clip=f(cfg.noise_clip),
            explore_noise=f(cfg.explore_noise_start), explore_noise_end=f(cfg.explore_noise_end),
            anchor_kl_coef=f(cfg.anchor_kl_coef),
        )


@struct.dataclass
class TD3State:
    actor_params: Params
    critic_params: Params        # leaves [K, ...]
    actor_target: Params
    critic_target: Params        # leaves [K, ...]
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    step: Array                  # int32, number of updates done
    anchor: Params | None = None  # the actor params the anchor term holds to (None: no anchor)


class TD3Batch(NamedTuple):
    """Replay samples, leaves [B, ...]. Truncated transitions are NOT terminated."""

    obs: PyTree
    action: Array        # [B, N] weights
    reward: Array        # [B]
    next_obs: PyTree
    terminated: Array    # [B] bool


def batch_from_transition(tr: Transition) -> TD3Batch:
    """A (possibly HER-relabelled) replay sample as a TD3 batch; reward = both parts summed."""
    return TD3Batch(tr.obs, tr.action, tr.total_reward, tr.next_obs, tr.terminated)


class TD3(NamedTuple):
    init: Callable[[PRNGKey, PyTree, Array], TD3State]
    act: Callable[..., Array]
    update: Callable[[TD3State, TD3Batch, PRNGKey, TD3HParams], tuple[TD3State, Metrics]]


def td3_targets(q_next: Array, reward: Array, terminated: Array, gamma: Array | float) -> Array:
    """Clipped K-critic target y = r + γ·(1 - terminated)·min_k q_next[k].

    q_next: [K, B]; reward, terminated: [B] -> [B].
    """
    not_term = 1.0 - jnp.asarray(terminated, jnp.float32)
    return jnp.asarray(reward, jnp.float32) + gamma * not_term * jnp.min(q_next, axis=0)


def smoothed_target_action(
    logits: Array, mask: Array, key: PRNGKey, noise: Array, noise_clip: Array
) -> Array:
    """masked_softmax(logits + clip(noise·ε, ±noise_clip)) with ε ~ N(0, 1) on valid slots.

    logits, mask: [B, N] -> weights [B, N]; padded slots stay exactly 0.
    """
    eps = noise * jax.random.normal(key, logits.shape, jnp.float32)
    eps = jnp.clip(eps, -noise_clip, noise_clip)
    return masked_softmax(logits + jnp.where(mask, eps, 0.0), mask)


def masked_kl(anchor_logits: Array, logits: Array, mask: Array) -> Array:
    """KL(p_anchor ‖ p) [B] of the masked softmaxes of two logit sets [B, N] (weights read as
    probabilities over the valid slots); the anchor side carries no gradient."""
    def dist(x: Array) -> Categorical:  # masked slots: probability 0, finite log-probability
        return Categorical(jnp.where(mask, jnp.asarray(x, jnp.float32), -1e30))
    return dist(jax.lax.stop_gradient(anchor_logits)).kl(dist(logits))


def explore_noise(step: Array, hp: TD3HParams, decay_updates: int) -> Array:
    """Exploration std after ``step`` updates: linear from explore_noise to explore_noise_end."""
    frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(decay_updates, 1), 0.0, 1.0)
    return hp.explore_noise + frac * (hp.explore_noise_end - hp.explore_noise)


def _adam_clipped(max_grad_norm: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),  # lr set from hp per update
    )


def make_td3(
    actor_apply: ActorApply,
    critic_apply: CriticApply,
    *,
    actor_init: Callable[[PRNGKey, PyTree], Params],
    critic_init: Callable[[PRNGKey, PyTree, Array], Params],
    num_critics: int = 2,
    policy_delay: int = 2,
    max_grad_norm: float = 1.0,
    explore_decay_updates: int = 100_000,
    actor_warmup_updates: int = 0,
    anchored: bool = False,
) -> TD3:
    """Build TD3's pure ``init``, ``act`` and ``update`` around the given networks.

    init(key, obs [B, ...], action [B, N]) -> TD3State (K independent critic inits).
    act(state, obs, key, hp, explore) -> weights [B, N]; ``explore`` is a static bool.
    update(state, batch, key, hp, step=None) -> (state, metrics); ``step`` (int32 [], equal to
      ``state.step``) may be passed unbatched when vmapped copies update in lock-step: under
      vmap a ``lax.cond`` on a batched predicate executes both branches.
    ``actor_warmup_updates``: the actor (and its target) stays frozen for the first that many
    updates while the critics learn (the critic target still follows every ``policy_delay``
    updates) -- a pre-trained actor is not pushed around by a random critic.
    ``anchored``: the state keeps an ``anchor`` (the initial actor until the caller replaces
    both, e.g. with a pre-trained actor) and the actor loss is the anchored one above, with
    weight ``hp.anchor_kl_coef``; its KL is logged as ``anchor_kl``.
    """
    if num_critics < 1:
        raise ValueError("num_critics must be ≥ 1")
    actor_tx = _adam_clipped(max_grad_norm)
    critic_tx = _adam_clipped(max_grad_norm)
    critics_apply = jax.vmap(critic_apply, in_axes=(0, None, None))  # -> [K, B]

    def init(key: PRNGKey, obs: PyTree, action: Array) -> TD3State:
        actor_key, critic_key = jax.random.split(key)
        actor_params = actor_init(actor_key, obs)
        critic_params = jax.vmap(critic_init, in_axes=(0, None, None))(
            jax.random.split(critic_key, num_critics), obs, action
        )
        return TD3State(
            actor_params=actor_params, critic_params=critic_params,
            actor_target=actor_params, critic_target=critic_params,
            actor_opt_state=actor_tx.init(actor_params),
            critic_opt_state=critic_tx.init(critic_params),
            step=jnp.array(0, jnp.int32),
            anchor=actor_params if anchored else None,
        )

    def act(state: TD3State, obs: PyTree, key: PRNGKey, hp: TD3HParams, explore: bool) -> Array:
        logits, mask = actor_apply(state.actor_params, obs)
        if explore:
            sigma = explore_noise(state.step, hp, explore_decay_updates)
            logits = logits + jnp.where(mask, sigma * jax.random.normal(key, logits.shape), 0.0)
        return masked_softmax(logits, mask)

    def actor_loss(actor_params: Params, critic_params: Params, obs: PyTree,
                   anchor: Params | None, coef: Array | float) -> tuple[Array, Array]:
        logits, mask = actor_apply(actor_params, obs)
        q1_params = jax.tree.map(lambda x: x[0], critic_params)
        q = critic_apply(q1_params, obs, masked_softmax(logits, mask))
        if anchor is None:  # static: the original loss
            return -jnp.mean(q), jnp.zeros((), jnp.float32)
        kl = jnp.mean(masked_kl(actor_apply(anchor, obs)[0], logits, mask))
        scale = jax.lax.stop_gradient(jnp.mean(jnp.abs(q))) + 1e-8
        return -jnp.mean(q) / scale + coef * kl, kl

    def actor_and_target(state: TD3State, obs: PyTree, hp: TD3HParams
                         ) -> tuple[TD3State, Array, Array]:
        (loss, kl), grads = jax.value_and_grad(actor_loss, has_aux=True)(
            state.actor_params, state.critic_params, obs, state.anchor, hp.anchor_kl_coef)
        opt_state = set_injected(state.actor_opt_state, learning_rate=hp.actor_lr)
        updates, opt_state = actor_tx.update(grads, opt_state, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, updates)
        state = state.replace(
            actor_params=actor_params, actor_opt_state=opt_state,
            actor_target=optax.incremental_update(actor_params, state.actor_target, hp.tau),
        )
        return state, loss, kl

    def critic_target_step(state: TD3State, hp: TD3HParams) -> TD3State:
        return state.replace(critic_target=optax.incremental_update(
            state.critic_params, state.critic_target, hp.tau))

    def update(
        state: TD3State, batch: TD3Batch, key: PRNGKey, hp: TD3HParams,
        step: Array | None = None,
    ) -> tuple[TD3State, Metrics]:
        next_logits, next_mask = actor_apply(state.actor_target, batch.next_obs)
        next_action = smoothed_target_action(
            next_logits, next_mask, key, hp.target_noise, hp.noise_clip
        )
        q_next = critics_apply(state.critic_target, batch.next_obs, next_action)
        y = jax.lax.stop_gradient(td3_targets(q_next, batch.reward, batch.terminated, hp.gamma))

        def critic_loss(critic_params: Params) -> tuple[Array, Array]:
            q = critics_apply(critic_params, batch.obs, batch.action)  # [K, B]
            return jnp.sum(jnp.mean(jnp.square(q - y[None]), axis=1)), q

        (c_loss, q), grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic_params)
        opt_state = set_injected(state.critic_opt_state, learning_rate=hp.critic_lr)
        updates, opt_state = critic_tx.update(grads, opt_state, state.critic_params)
        # ``step``: the update count when every vmapped copy shares it (an unbatched value),
        # so the conds below run one branch instead of both; it must equal ``state.step``.
        step = (state.step if step is None else step) + 1
        state = state.replace(
            critic_params=optax.apply_updates(state.critic_params, updates),
            critic_opt_state=opt_state, step=state.step + 1,
        )
        delayed = (step % policy_delay) == 0
        do_actor = delayed & (step > actor_warmup_updates)
        state, a_loss, a_kl = jax.lax.cond(
            do_actor,
            lambda s: actor_and_target(s, batch.obs, hp),
            lambda s: (s, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)),
            state,
        )
        state = jax.lax.cond(delayed, lambda s: critic_target_step(s, hp), lambda s: s, state)
        metrics = {
            "critic_loss": c_loss,
            "actor_loss": a_loss,
            "actor_updated": do_actor.astype(jnp.float32),
            "q_mean": jnp.mean(q),
            "target_mean": jnp.mean(y),
            "critic_grad_norm": optax.tree.norm(grads),
            "explore_noise": explore_noise(step, hp, explore_decay_updates),
        }
        if anchored:
            metrics["anchor_kl"] = a_kl  # 0 on updates without an actor step
        return state, metrics

    return TD3(init=init, act=act, update=update)
