"""Supervised pre-training of the Macro (Phase 1) and Micro (Phase 2) actors: pure functions.

Outline (one compiled program per phase, K seeds vmapped, hyperparameters traced):
  state_k = init(fold_in(key(seed), k))                          # per seed: params, Adam, best
  repeat chunk_epochs times (lax.scan over epochs), per seed:
    key_e = fold_in(state.key, epoch)            -> shuffle, per-epoch data (Phase 2 goals)
    lax.scan over minibatches: θ ← adam(L2(clip_by_global_norm(∇L))), lr = lr0·½(1+cos(π e/E))
    val = L(θ; validation split); keep θ_best if val < best - min_delta, else bad += 1
    stop when bad >= patience (the seed's later epochs leave its state unchanged)
The sample sets arrive padded to bucketed sizes (``Padded``, ``pad_set``): the sample count is
a traced value, so sets of nearby sizes (a walk-forward's folds, another market of about the
same length) run one compiled program, and the padding changes no result.

Losses (allocation terms are cross-entropies, reported as KL, i.e. minus the target entropy):
  Phase 1: w_regime · CE_w(regime_logits, regime) + w_alloc · KL(oracle ‖ Dirichlet mean).
    CE_w weights each sample by its class weight and divides by the sum of weights (torch's
    weighted mean), so 'balanced' weights make each regime count equally.
  Phase 2: KL(goal-consistent target ‖ actor weights), with the actor's log-softmax.
Why cross-entropy rather than the original's MSE: it is the proper scoring rule for a
distribution on the simplex, its gradient in the logits is (q - p) whatever the scale, while
MSE through a softmax is damped by q(1 - q) and barely moves small weights; both share the
minimiser q = p.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from hrl_sarp_jax.agents.optim import scheduled_adam, set_injected
from hrl_sarp_jax.config import NetworkConfig, PretrainConfig
from hrl_sarp_jax.networks.inputs import micro_inputs
from hrl_sarp_jax.networks.macro import FROZEN_PARAM, MacroActor
from hrl_sarp_jax.networks.micro import MicroActor
from hrl_sarp_jax.training.datasets import MacroSamples, MicroSamples
from hrl_sarp_jax.types import NUM_REGIMES, Array, Params, PRNGKey, PyTree
from hrl_sarp_jax.utils.trees import take_members

MIN_DELTA = 1e-4
"""An epoch improves on the best validation loss only by more than this (the original's)."""

Metrics = dict[str, Array]


# --------------------------------------------------------------------------- state, hparams


@struct.dataclass
class PretrainHParams:
    """Dynamic hyperparameters: float32 leaves, vmappable over a sweep."""

    lr: Array              # peak learning rate (cosine-annealed over the configured epochs)
    weight_decay: Array    # L2 added to the gradient before Adam (torch Adam(weight_decay))
    max_grad_norm: Array   # global-norm gradient clip
    w_regime: Array        # Phase 1 regime cross-entropy weight
    w_alloc: Array         # allocation KL weight
    class_weights: Array   # [3] regime class weights (ones for 'none')
    ema_decay: Array       # weight average per step (0: the raw weights are validated and kept)

    # HOST ONLY
    @classmethod
    def from_config(cls, p: PretrainConfig, class_weights: np.ndarray | None = None
                    ) -> PretrainHParams:
        f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        cw = np.ones(NUM_REGIMES) if class_weights is None else class_weights
        return cls(lr=f(p.lr), weight_decay=f(p.weight_decay), max_grad_norm=f(p.grad_clip),
                   w_regime=f(p.w_regime), w_alloc=f(p.w_alloc), class_weights=f(cw),
                   ema_decay=f(p.ema_decay))


@struct.dataclass
class PretrainState:
    """One seed's training state (leading axis K when vmapped over seeds)."""

    params: Params
    opt_state: optax.OptState
    ema_params: Params       # the weights' moving average (``hp.ema_decay``; = params at 0)
    best_params: Params      # validated params (ema_params) of the lowest validation loss so far
    best_val: Array          # [] float32 (+inf before the first epoch)
    last_val: Array          # [] float32 validation loss of ``ema_params`` (+inf before training)
    best_epoch: Array        # [] int32, 1-based (0: none yet)
    bad_epochs: Array        # [] int32 epochs since the last improvement
    stopped: Array           # [] bool early-stopped
    epoch: Array             # [] int32 epochs run so far
    key: Array               # [2] uint32 raw key data; epoch e uses fold_in(key, e)


def class_weights(labels: np.ndarray, mode: str) -> np.ndarray:
    """[3] regime class weights from training labels: 'balanced' n / (3 n_c) (0 for an absent
    class, which then never occurs as a target), or 'none' (ones)."""
    if mode == "none":
        return np.ones(NUM_REGIMES)
    if mode != "balanced":
        raise ValueError(f"class weights must be 'balanced' or 'none', got {mode!r}")
    lab = np.asarray(labels)
    lab = lab[lab >= 0]
    counts = np.bincount(lab, minlength=NUM_REGIMES)[:NUM_REGIMES].astype(np.float64)
    return np.where(counts > 0, lab.size / (NUM_REGIMES * np.maximum(counts, 1)), 0.0)


def make_optimizer(decay_mask: Callable[[Params], PyTree] | None = None
                   ) -> optax.GradientTransformation:
    """clip_by_global_norm -> L2 weight decay -> Adam(peak_lr · lr_scale); every knob injected
    (set from PretrainHParams and the epoch's cosine scale before each epoch). ``decay_mask``
    (params -> bools): decay only where True (``networks.macro.decayable`` keeps a frozen
    leaf, whose gradient is 0, exactly where it is)."""
    decay = (optax.inject_hyperparams(optax.add_decayed_weights)(weight_decay=0.0)
             if decay_mask is None else
             optax.inject_hyperparams(optax.add_decayed_weights, static_args=("mask",))(
                 weight_decay=0.0, mask=decay_mask))
    return optax.chain(
        optax.inject_hyperparams(optax.clip_by_global_norm)(max_norm=1.0),
        decay,
        optax.inject_hyperparams(scheduled_adam)(peak_lr=1e-3, lr_scale=1.0),
    )


def cosine_scale(epoch: Array, total_epochs: int) -> Array:
    """½(1 + cos(π e / E)): torch CosineAnnealingLR(T_max=E, eta_min=0) stepped per epoch."""
    progress = jnp.asarray(epoch, jnp.float32) / max(int(total_epochs), 1)
    return (0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(progress, 0.0, 1.0)))).astype(jnp.float32)


# --------------------------------------------------------------------------- tasks


class Task(NamedTuple):
    """What differs between the phases (pure callables; data enters as arguments).

    init(key) -> params
    epoch_data(key, train) -> pytree with leading axis B (the epoch's samples)
    loss(params, hp, batch, key) -> (scalar loss, metrics)
    evaluate(params, hp, val, valid) -> (scalar validation loss, metrics): means over the
        rows where ``valid`` [B] bool is set (the rest is a padded set's filler)
    """

    init: Callable[[PRNGKey], Params]
    epoch_data: Callable[[PRNGKey, PyTree], PyTree]
    loss: Callable[[Params, PretrainHParams, PyTree, PRNGKey], tuple[Array, Metrics]]
    evaluate: Callable[[Params, PretrainHParams, PyTree, Array], tuple[Array, Metrics]]


def _apply_batched(module: nn.Module, params: Params, args: tuple, key: PRNGKey | None,
                   train: bool) -> Any:
    """vmap ``module.apply`` over the leading axis of ``args`` (dropout key per example)."""
    batch = jax.tree.leaves(args)[0].shape[0]
    if train and key is not None:
        keys = jax.random.split(key, batch)
        return jax.vmap(lambda a, k: module.apply(params, *a, deterministic=False,
                                                  rngs={"dropout": k}))(args, keys)
    return jax.vmap(lambda a: module.apply(params, *a, deterministic=True))(args)


def kl_to_target(target: Array, log_q: Array, mask: Array) -> Array:
    """Σ_i p_i (log p_i - log q_i) over ``mask`` (terms with p_i = 0 are 0) -> [...]."""
    p = jnp.where(mask, target, 0.0)
    log_p = jnp.log(jnp.where(p > 0, p, 1.0))
    return jnp.sum(jnp.where(p > 0, p * (log_p - jnp.where(mask, log_q, 0.0)), 0.0), axis=-1)


def masked_mean(x: Array, valid: Array) -> Array:
    """Mean of ``x`` [B] over the rows where ``valid`` [B] bool is set (0 if none)."""
    return jnp.sum(jnp.where(valid, x, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def balanced_accuracy(pred: Array, label: Array, valid: Array | None = None) -> Array:
    """Mean over classes present in ``label`` of the recall of that class."""
    valid = jnp.ones_like(label, bool) if valid is None else valid
    classes = jnp.arange(NUM_REGIMES)
    is_c = (label[:, None] == classes[None, :]) & valid[:, None]
    hit = is_c & (pred[:, None] == label[:, None])
    count = jnp.sum(is_c, axis=0)
    recall = jnp.sum(hit, axis=0) / jnp.maximum(count, 1)
    present = count > 0
    return jnp.sum(jnp.where(present, recall, 0.0)) / jnp.maximum(jnp.sum(present), 1)


# -- Phase 1


def macro_task(net: NetworkConfig, example: MacroSamples,
               allocation_logits: np.ndarray | None = None) -> tuple[Task, MacroActor]:
    """Phase-1 task for MacroActor(net); ``example`` gives the input shapes (not the values).
    ``allocation_logits`` [3, S]: tau x the regime table, written into the frozen
    ``regime_allocation`` parameter (``networks.macro_allocation: regime_table``; None there:
    zeros, a shape to restore a checkpoint into)."""
    actor = MacroActor(net)
    train_dropout = net.dropout > 0
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), example.inputs)
    write_table = net.macro_allocation == "regime_table" and allocation_logits is not None

    def init(key: PRNGKey) -> Params:
        dummy = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        params = actor.init(key, *dummy)
        if write_table:
            table = jnp.asarray(allocation_logits, jnp.float32)
            params = {**params, "params": {**params["params"], FROZEN_PARAM: table}}
        return params

    def losses(params, hp, batch: MacroSamples, key, train: bool, valid: Array):
        policy = _apply_batched(actor, params, tuple(batch.inputs), key, train and train_dropout)
        logp = jax.nn.log_softmax(policy.regime_logits, axis=-1)  # [B, 3]
        y = jnp.clip(batch.regime, 0, NUM_REGIMES - 1)
        ce = -jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
        w = jnp.where(valid, hp.class_weights[y], 0.0)
        regime_loss = jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1e-12)
        mask = batch.inputs.sector_mask
        q = policy.mean_weights
        log_q = jnp.log(jnp.where(mask & (q > 0), q, 1.0))
        alloc = masked_mean(kl_to_target(batch.alloc_target, log_q, mask), valid)
        loss = hp.w_regime * regime_loss + hp.w_alloc * alloc
        return loss, policy, regime_loss, alloc

    def loss(params, hp, batch, key):
        every = jnp.ones(batch.regime.shape, bool)
        total, _, regime_loss, alloc = losses(params, hp, batch, key, True, every)
        return total, {"regime_loss": regime_loss, "alloc_kl": alloc}

    def evaluate(params, hp, val: MacroSamples, valid: Array):
        total, policy, regime_loss, alloc = losses(params, hp, val, None, False, valid)
        pred = jnp.argmax(policy.regime_logits, axis=-1)
        return total, {
            "regime_loss": regime_loss,
            "alloc_kl": alloc,
            "regime_accuracy": masked_mean(pred == val.regime, valid),
            "regime_balanced_accuracy": balanced_accuracy(pred, val.regime, valid),
            "alloc_return": masked_mean(jnp.sum(policy.mean_weights * val.next_returns, -1),
                                        valid),
        }

    return Task(init, lambda _key, train: train, loss, evaluate), actor


# -- Phase 2


@struct.dataclass
class MicroTrainSet:
    samples: MicroSamples
    regime_probs: Array      # [3] regime distribution of the goals (training label shares)


@struct.dataclass
class MicroBatch:
    samples: MicroSamples
    goal: Array              # [B, S+3]


def sample_goals(key: PRNGKey, sector_active: Array, regime_probs: Array) -> Array:
    """[B, S+3] goals: Dirichlet(1) weights over each sample's active sectors ⊕ a regime
    one-hot drawn from ``regime_probs``."""
    weight_key, regime_key = jax.random.split(key)
    e = jax.random.exponential(weight_key, sector_active.shape, jnp.float32)  # Gamma(1)
    e = jnp.where(sector_active, e, 0.0)
    w = e / jnp.maximum(jnp.sum(e, axis=-1, keepdims=True), 1e-12)
    logits = jnp.log(jnp.maximum(regime_probs, 1e-12))
    regime = jax.random.categorical(regime_key, logits, shape=sector_active.shape[:1])
    return jnp.concatenate([w, jax.nn.one_hot(regime, NUM_REGIMES, dtype=jnp.float32)], -1)


def goal_target(samples: MicroSamples, goal: Array) -> Array:
    """[B, N] goal-consistent target g_{s(i)} · within_i (sums to g_s inside sector s)."""
    num_s = goal.shape[-1] - NUM_REGIMES
    g = jnp.take_along_axis(goal[:, :num_s], samples.stock_sector, axis=-1)
    return jnp.where(samples.stock_mask, g * samples.within, 0.0)


def sector_allocation(weights: Array, stock_sector: Array, num_sectors: int) -> Array:
    """[B, S] Σ_{i in s} w_i."""
    onehot = (stock_sector[..., None] == jnp.arange(num_sectors)).astype(weights.dtype)
    return jnp.einsum("bn,bns->bs", weights, onehot)


def goal_alignment(weights: Array, stock_sector: Array, goal: Array) -> Array:
    """[B] cosine between the achieved sector allocation and the goal's sector weights."""
    num_s = goal.shape[-1] - NUM_REGIMES
    a = sector_allocation(weights, stock_sector, num_s)
    g = goal[:, :num_s]
    den = jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(g, axis=-1)
    return jnp.sum(a * g, axis=-1) / jnp.maximum(den, 1e-12)


def micro_task(net: NetworkConfig, example: MicroSamples) -> tuple[Task, MicroActor]:
    """Phase-2 task for MicroActor(net) on inputs ``networks.inputs.micro_inputs``."""
    actor = MicroActor(net)
    train_dropout = net.dropout > 0
    n = example.stock.shape[1]
    num_s = example.sector_active.shape[1]

    def init(key: PRNGKey) -> Params:
        x = jnp.zeros((n, example.stock.shape[2] + 2), jnp.float32)
        return actor.init(key, x, jnp.zeros(num_s + NUM_REGIMES), jnp.ones(n, bool))

    def policy_of(params, batch: MicroBatch, key, train: bool):
        s = batch.samples
        x = jax.vmap(micro_inputs)(s.stock, s.stock_mask, s.stock_sector, batch.goal,
                                   s.current_weights)
        return _apply_batched(actor, params, (x, batch.goal, s.stock_mask), key, train)

    def losses(params, batch: MicroBatch, key, train: bool, valid: Array):
        policy = policy_of(params, batch, key, train and train_dropout)
        mask = batch.samples.stock_mask
        log_q = jax.nn.log_softmax(jnp.where(mask, policy.logits, -jnp.inf), axis=-1)
        kl = kl_to_target(goal_target(batch.samples, batch.goal), log_q, mask)
        return masked_mean(kl, valid), policy

    def epoch_data(key: PRNGKey, train: MicroTrainSet) -> MicroBatch:
        goal = sample_goals(key, train.samples.sector_active, train.regime_probs)
        return MicroBatch(train.samples, goal)

    def loss(params, hp, batch, key):
        del hp
        kl, _ = losses(params, batch, key, True, jnp.ones(batch.goal.shape[:1], bool))
        return kl, {"alloc_kl": kl}

    def evaluate(params, hp, val: MicroBatch, valid: Array):
        del hp
        kl, policy = losses(params, val, None, False, valid)
        s = val.samples
        return kl, {
            "alloc_kl": kl,
            "goal_alignment": masked_mean(
                goal_alignment(policy.weights, s.stock_sector, val.goal), valid),
            "return": masked_mean(jnp.sum(policy.weights * s.next_returns, axis=-1), valid),
        }

    return Task(init, epoch_data, loss, evaluate), actor


# --------------------------------------------------------------------------- padded sets

BUCKETS_PER_OCTAVE = 8
"""Padded sample sets take one of this many sizes per doubling (at most 1/8 of rows filler)."""


def bucket_rows(count: int, unit: int = 1) -> int:
    """The padded size of a ``count``-row set: ``count`` itself up to ``unit`` rows, else
    ``count`` rounded up to a multiple of unit · 2^max(0, ⌊log2(count / unit)⌋ − 3): whole
    minibatches of ``unit`` rows, ``BUCKETS_PER_OCTAVE`` sizes per doubling, so sets of nearby
    sizes (a walk-forward's folds, another window or market) share one compiled program."""
    count, unit = int(count), max(int(unit), 1)
    if count <= unit:
        return count
    octave = int(np.floor(np.log2(count / unit)))
    step = unit * 2 ** max(0, octave - int(np.log2(BUCKETS_PER_OCTAVE)))
    return -(-count // step) * step


@struct.dataclass
class Padded:
    """A sample set padded along axis 0 to a bucketed size (``bucket_rows``). Rows at and
    after ``count`` repeat row 0 and enter no minibatch, loss or metric: training on a padded
    set gives what the unpadded set gives (``train_epoch``'s shuffle is padding-invariant)."""

    data: PyTree          # leaves [rows, ...] (Phase 2's MicroTrainSet: its samples)
    count: Array          # [] int32 real rows
    rows: int = struct.field(pytree_node=False)   # the padded size (static: shapes follow it)

    @property
    def valid(self) -> Array:
        """[rows] bool: the real rows."""
        return jnp.arange(self.rows) < self.count


# HOST ONLY
def pad_set(samples: PyTree, unit: int = 1) -> Padded:
    """``samples`` (leaves [n, ...]) padded to ``bucket_rows(n, unit)`` rows by repeating row
    0 (one compiled gather; no copy when n is already a bucket size)."""
    n = int(jax.tree.leaves(samples)[0].shape[0])
    rows = bucket_rows(n, unit)
    if rows != n:
        index = np.concatenate([np.arange(n), np.zeros(rows - n, np.int64)]).astype(np.int32)
        samples = take_members(samples, jnp.asarray(index))
    return Padded(samples, jnp.asarray(n, jnp.int32), rows)


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class EngineSpec:
    """Static shape of the epoch loop (hashable; changing it recompiles). ``train_size`` is
    the padded training set's rows (``Padded.rows``); the real count is a traced value."""

    train_size: int
    batch_size: int
    chunk_epochs: int
    total_epochs: int
    patience: int

    @property
    def minibatch(self) -> int:
        return max(1, min(self.batch_size, self.train_size))

    @property
    def num_minibatches(self) -> int:
        # Drop the last partial minibatch (a new permutation each epoch uses every sample
        # over time); at least one minibatch even when train_size < batch_size. Of these,
        # the first max(1, count // minibatch) run: those of a padded set's filler are skipped.
        return max(1, self.train_size // self.minibatch)


def init_state(task: Task, tx: optax.GradientTransformation, seed_key: PRNGKey) -> PretrainState:
    """One seed's initial state from its key (split into init and training streams)."""
    init_key, train_key = jax.random.split(seed_key)
    params = task.init(init_key)
    return PretrainState(
        params=params,
        opt_state=tx.init(params),
        ema_params=params,
        best_params=params,
        best_val=jnp.asarray(jnp.inf, jnp.float32),
        last_val=jnp.asarray(jnp.inf, jnp.float32),
        best_epoch=jnp.asarray(0, jnp.int32),
        bad_epochs=jnp.asarray(0, jnp.int32),
        stopped=jnp.asarray(False),
        epoch=jnp.asarray(0, jnp.int32),
        key=jax.random.key_data(train_key),
    )


def train_epoch(task: Task, tx: optax.GradientTransformation, spec: EngineSpec,
                state: PretrainState, hp: PretrainHParams, train: Padded, val: Padded,
                epoch_limit: Array) -> tuple[PretrainState, Metrics]:
    """One epoch for one seed; a no-op (same state) once stopped or at ``epoch_limit``.

    The shuffle sorts the real rows by uniform keys drawn per row index (threefry is
    partitionable: row i's key does not depend on the set's size), so a padded set's real rows
    come in the order the unpadded set's do, and its filler rows last; minibatches past the
    real ones are skipped (a ``cond`` on the shared count, not per seed)."""
    active = (~state.stopped) & (state.epoch < epoch_limit)
    epoch_key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.epoch)
    perm_key, data_key, step_key = jax.random.split(epoch_key, 3)
    data = task.epoch_data(data_key, train.data)
    mb, nmb = spec.minibatch, spec.num_minibatches
    sort_key = jnp.where(train.valid, jax.random.uniform(perm_key, (spec.train_size,)), 2.0)
    order = jnp.argsort(sort_key)[: mb * nmb].reshape(nmb, mb)
    runs = jnp.arange(nmb) < jnp.maximum(train.count // mb, 1)   # [nmb] bool, unbatched
    opt_state = set_injected(
        state.opt_state, max_norm=hp.max_grad_norm, weight_decay=hp.weight_decay,
        peak_lr=hp.lr, lr_scale=cosine_scale(state.epoch, spec.total_epochs))

    def update(carry, idx, key):
        params, opt, ema = carry
        batch = jax.tree.map(lambda x: x[idx], data)
        (loss, aux), grads = jax.value_and_grad(task.loss, has_aux=True)(params, hp, batch, key)
        updates, opt = tx.update(grads, opt, params)
        params = optax.apply_updates(params, updates)
        # at decay 0 exactly the new params (0·ema + 1·params), so the original bit for bit
        ema = jax.tree.map(lambda e, p: hp.ema_decay * e + (1.0 - hp.ema_decay) * p, ema, params)
        return (params, opt, ema), (loss, aux)

    def skip(carry, idx, key):
        out = jax.eval_shape(update, carry, idx, key)[1]
        return carry, jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), out)

    def step(carry, xs):
        idx, key, run = xs
        return jax.lax.cond(run, update, skip, carry, idx, key)

    step_keys = jax.random.split(step_key, nmb)
    (params, opt_state, ema), (losses, aux) = jax.lax.scan(
        step, (state.params, opt_state, state.ema_params), (order, step_keys, runs))
    val_loss, val_metrics = task.evaluate(ema, hp, val.data, val.valid)
    improved = val_loss < state.best_val - MIN_DELTA
    epoch = state.epoch + 1
    bad = jnp.where(improved, 0, state.bad_epochs + 1).astype(jnp.int32)
    new = state.replace(
        params=params,
        opt_state=opt_state,
        ema_params=ema,
        best_params=jax.tree.map(lambda a, b: jnp.where(improved, a, b), ema,
                                 state.best_params),
        best_val=jnp.where(improved, val_loss, state.best_val).astype(jnp.float32),
        last_val=jnp.asarray(val_loss, jnp.float32),
        best_epoch=jnp.where(improved, epoch, state.best_epoch).astype(jnp.int32),
        bad_epochs=bad,
        stopped=bad >= spec.patience,
        epoch=epoch,
    )
    out = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state)
    metrics = {"active": active, "epoch": epoch, "train_loss": masked_mean(losses, runs),
               **{f"train_{k}": masked_mean(v, runs) for k, v in aux.items()},
               "val_loss": val_loss, **{f"val_{k}": v for k, v in val_metrics.items()}}
    return out, metrics


def make_run_chunk(task: Task, tx: optax.GradientTransformation, spec: EngineSpec
                   ) -> Callable[..., tuple[PretrainState, Metrics]]:
    """``run_chunk(states [K], hp, train: Padded, val: Padded, epoch_limit) -> (states,
    metrics [K, chunk])``:
    ``spec.chunk_epochs`` epochs for K seeds (vmapped; hp shared), jitted once."""

    def one_seed(state, hp, train, val, epoch_limit):
        def body(s, _):
            return train_epoch(task, tx, spec, s, hp, train, val, epoch_limit)
        return jax.lax.scan(body, state, None, length=spec.chunk_epochs)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None, None, None)))


def make_evaluate(task: Task) -> Callable[..., tuple[Array, Metrics]]:
    """``evaluate(params [K], hp, val: Padded) -> (loss [K], metrics [K])``, jitted."""
    def one_seed(params, hp, val: Padded):
        return task.evaluate(params, hp, val.data, val.valid)
    return jax.jit(jax.vmap(one_seed, in_axes=(0, None, None)))


def seed_keys(seed: int, count: int) -> PRNGKey:
    """[count] keys: member k is fold_in(key(seed), k), the same whatever ``count`` is, so
    a K-seed run's member k equals a 1-seed run with that key."""
    # HOST ONLY: the one place a root key is made (from the config's seed).
    root = jax.random.key(int(seed))
    return jnp.stack([jax.random.fold_in(root, k) for k in range(int(count))])
