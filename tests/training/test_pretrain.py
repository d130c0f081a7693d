"""Phase-1/2 engine: hand-computed loss pieces, learning where the answer is known,
early stopping, determinism (same seed bit-identical, seeds differ, vmap == loop)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.agents.optim import set_injected
from hrl_sarp_jax.checkpointing import content_hash
from hrl_sarp_jax.config import PretrainConfig
from hrl_sarp_jax.networks.common import masked_softmax
from hrl_sarp_jax.networks.inputs import MacroInputs
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training.datasets import MacroSamples, MicroSamples, within_sector_softmax
from hrl_sarp_jax.training.runner import macro_baselines, micro_baselines, seed_keys
from tests.networks.conftest import TINY

# ------------------------------------------------------------------ hand-computed pieces


def test_class_weights_balanced_hand_values():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4 + [-1] * 3)
    # n = 12 known: 12 / (3 * 6), 12 / (3 * 2), 12 / (3 * 4)
    np.testing.assert_allclose(pt.class_weights(labels, "balanced"), [2 / 3, 2.0, 1.0])
    np.testing.assert_allclose(pt.class_weights(np.array([0, 0, 2]), "balanced"), [0.5, 0.0, 1.0])
    np.testing.assert_array_equal(pt.class_weights(labels, "none"), [1, 1, 1])


def test_balanced_accuracy_hand_values():
    label = jnp.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = jnp.array([0, 0, 0, 1, 1, 0, 0, 0])
    # recalls: class 0 3/4, class 1 1/2, class 2 0/2 -> mean 5/12
    assert float(pt.balanced_accuracy(pred, label)) == pytest.approx(5 / 12)
    # a class absent from the labels does not count
    assert float(pt.balanced_accuracy(jnp.array([0, 1]), jnp.array([0, 0]))) == pytest.approx(0.5)


def test_kl_to_target_hand_value_and_masking():
    p = jnp.array([0.5, 0.5, 0.0, 0.0])
    q = jnp.array([0.25, 0.25, 0.5, 0.0])
    mask = jnp.array([True, True, True, False])
    # 0.5 log(0.5/0.25) * 2 = log 2
    got = pt.kl_to_target(p, jnp.log(jnp.where(mask, q, 1.0)), mask)
    assert float(got) == pytest.approx(np.log(2.0), rel=1e-6)


def test_cosine_scale_and_minibatching():
    assert float(pt.cosine_scale(0, 10)) == 1.0
    assert float(pt.cosine_scale(5, 10)) == pytest.approx(0.5)
    spec = pt.EngineSpec(train_size=10, batch_size=64, chunk_epochs=1, total_epochs=1, patience=1)
    assert (spec.minibatch, spec.num_minibatches) == (10, 1)  # never zero batches (original bug)
    spec = pt.EngineSpec(train_size=130, batch_size=64, chunk_epochs=1, total_epochs=1, patience=1)
    assert (spec.minibatch, spec.num_minibatches) == (64, 2)


def _torch_adam_reference(params, grads, max_norm, weight_decay, lr, b1=0.9, b2=0.999, eps=1e-8):
    """NumPy float64: clip_grad_norm_(max_norm), then torch Adam(lr, weight_decay) steps
    (the decay added to the clipped gradient, L2 before the moments) -> params after each."""
    p, m, v, out = params.copy(), np.zeros_like(params), np.zeros_like(params), []
    for t, g in enumerate(grads, start=1):
        g = g * min(1.0, max_norm / np.linalg.norm(g))
        g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        out.append(p.copy())
    return out


@pytest.mark.parametrize("weight_decay", [0.0, 1e-3, 0.5])
def test_the_pretraining_optimiser_is_torch_adam_with_l2_weight_decay(weight_decay):
    # Phases 1-2's weight decay acts as the original's torch Adam(weight_decay): an L2 term on
    # the clipped gradient, before Adam's moments (not AdamW's decoupled decay)
    params = np.array([0.8, -1.5, 0.3], np.float64)
    grads = [np.array([3.0, -4.0, 0.0]), np.array([0.1, 0.2, -0.3]), np.array([-0.5, 0.0, 2.0])]
    tx = pt.make_optimizer()
    p = jnp.asarray(params, jnp.float32)
    opt = set_injected(tx.init(p), max_norm=1.0, weight_decay=weight_decay, peak_lr=0.05,
                       lr_scale=0.5)
    ref = _torch_adam_reference(params, grads, 1.0, weight_decay, 0.025)
    for g, want in zip(grads, ref, strict=True):
        upd, opt = tx.update(jnp.asarray(g, jnp.float32), opt, p)
        p = p + upd
        np.testing.assert_allclose(np.asarray(p), want, rtol=1e-5, atol=1e-6)
    if weight_decay:  # the decay moves the params: the reference without it differs
        no_decay = _torch_adam_reference(params, grads, 1.0, 0.0, 0.025)[-1]
        assert np.abs(ref[-1] - no_decay).max() > 1e-4


def test_bucket_rows_hand_values_and_pad_set_repeats_row_zero():
    assert pt.bucket_rows(10, 64) == 10                 # up to one minibatch: never padded
    assert pt.bucket_rows(130, 64) == 192               # whole minibatches below 8 of them
    assert pt.bucket_rows(200, 32) == 224
    assert pt.bucket_rows(7000, 64) == 7168             # 109 minibatches: steps of 512 rows
    assert pt.bucket_rows(1000) == 1024 and pt.bucket_rows(1025) == 1152  # 8 sizes an octave
    assert pt.bucket_rows(104) == 104
    for n in (9, 100, 777, 5000):                       # at most 1/8 of the rows filler
        assert n <= pt.bucket_rows(n) < n + max(1, n / 8)
    x = {"a": jnp.arange(10.0), "b": jnp.arange(20).reshape(10, 2)}
    padded = pt.pad_set(x)                              # 10 rows: octave 3, steps of 1
    assert padded.rows == 10 and padded.data["a"] is x["a"]
    padded = pt.pad_set(x, unit=4)                      # 12 rows: 2 of them filler (row 0)
    assert (padded.rows, int(padded.count)) == (12, 10)
    np.testing.assert_array_equal(np.asarray(padded.data["b"])[10:], [[0, 1], [0, 1]])
    np.testing.assert_array_equal(np.asarray(padded.valid), [True] * 10 + [False] * 2)


# ------------------------------------------------------------------ a market with a known answer

S = 3


def _signal_samples(n: int, seed: int, probs=(0.6, 0.25, 0.15)) -> MacroSamples:
    """Week t's macro features one-hot encode the regime c; the sector whose characteristic
    (node feature 0: -1, 0, +1, like a beta) matches c wins the next week: +3%, others -1%,
    noise 1%. The actor is permutation-equivariant over sectors, so it can only tell sectors
    apart by their features, as on a real market (cyclicals are high-beta)."""
    rng = np.random.default_rng(seed)
    c = rng.choice(3, size=n, p=probs)
    macro = rng.normal(0, 0.3, (n, 18)).astype(np.float32)
    macro[:, :3] = np.eye(3)[c] * 2.0 - 1.0
    sector = rng.normal(0, 0.3, (n, S, 15)).astype(np.float32)
    sector[:, :, 0] = np.array([-1.0, 0.0, 1.0]) + rng.normal(0, 0.1, (n, S))
    r = np.where(np.eye(S)[c] > 0, 0.03, -0.01) + rng.normal(0, 0.01, (n, S))
    mask = np.ones((n, S), bool)
    target = jax.vmap(masked_softmax)(50.0 * jnp.asarray(r, jnp.float32), jnp.asarray(mask))
    inputs = MacroInputs(jnp.asarray(macro), jnp.asarray(sector),
                         jnp.broadcast_to(jnp.eye(S), (n, S, S)), jnp.asarray(mask),
                         jnp.tile(jnp.array([0.02, 0.0]), (n, 1)))
    return MacroSamples(inputs=inputs, regime=jnp.asarray(c, jnp.int32), alloc_target=target,
                        next_returns=jnp.asarray(r, jnp.float32),
                        persistence=jnp.asarray(rng.choice(3, size=n), jnp.int32),
                        day=jnp.arange(n, dtype=jnp.int32))


PCFG = PretrainConfig(epochs=40, batch_size=32, lr=3e-3, patience=40)


@pytest.fixture(scope="module")
def macro_setup():
    train, val = _signal_samples(192, 0), _signal_samples(96, 1)
    task, _ = pt.macro_task(TINY, train)
    tx = pt.make_optimizer()
    hp = pt.PretrainHParams.from_config(PCFG, pt.class_weights(np.asarray(train.regime),
                                                               "balanced"))
    return task, tx, hp, train, val


def _padded(x):
    return x if isinstance(x, pt.Padded) else pt.pad_set(x)


def _run(task, tx, spec, hp, train, val, keys, chunks=1, limit=None):
    train, val = _padded(train), _padded(val)
    init = jax.jit(jax.vmap(lambda k: pt.init_state(task, tx, k)))
    state = init(keys)
    chunk = pt.make_run_chunk(task, tx, spec)
    lim = jnp.asarray(spec.total_epochs if limit is None else limit, jnp.int32)
    history = []
    for _ in range(chunks):
        state, m = chunk(state, hp, train, val, lim)
        history.append(jax.device_get(m))
    return state, history


def test_phase1_learns_the_signalled_sector_and_regime(macro_setup):
    task, tx, hp, train, val = macro_setup
    spec = pt.EngineSpec(train.size, PCFG.batch_size, 20, PCFG.epochs, PCFG.patience)
    state, _ = _run(task, tx, spec, hp, train, val, seed_keys(0, 1), chunks=2)
    _, m = pt.make_evaluate(task)(state.best_params, hp, _padded(val))
    base = macro_baselines(train, val)
    assert base["majority_baseline_balanced_accuracy"] == pytest.approx(1 / 3)
    assert float(m["regime_balanced_accuracy"][0]) > 0.9
    assert float(m["alloc_return"][0]) > base["equal_weight_return"] + 0.01
    assert float(m["alloc_return"][0]) > 0.5 * base["oracle_alloc_return"]


def test_phase1_with_the_allocation_tied_to_the_regime_head_keeps_its_table(macro_setup):
    """``networks.macro_allocation: regime_table``: Phase 1 trains the regime head through the
    tied allocation; the table (tau x the per-regime mean returns, here the signal's rows)
    stays where Phase 1 wrote it under a large weight decay that moves every other weight;
    the executed allocation then earns most of the oracle's."""
    import dataclasses

    from hrl_sarp_jax.networks.macro import FROZEN_PARAM, decayable
    from hrl_sarp_jax.training.datasets import regime_table, with_table_target

    _, _, hp, train, val = macro_setup
    table = regime_table(train)
    np.testing.assert_allclose(np.diag(table), 0.03, atol=0.003)   # the winner's +3%
    train, val = (with_table_target(x, table, 100.0) for x in (train, val))
    net = dataclasses.replace(TINY, macro_allocation="regime_table")
    logits = (100.0 * table).astype(np.float32)
    task, _ = pt.macro_task(net, train, logits)
    tx = pt.make_optimizer(decayable)
    hp = hp.replace(weight_decay=jnp.asarray(0.05, jnp.float32))
    spec = pt.EngineSpec(train.size, PCFG.batch_size, 20, PCFG.epochs, PCFG.patience)
    keys = seed_keys(0, 1)
    state, _ = _run(task, tx, spec, hp, train, val, keys, chunks=2)
    for tree in (state.params, state.best_params):
        np.testing.assert_array_equal(np.asarray(tree["params"][FROZEN_PARAM])[0], logits)
    start = jax.vmap(task.init)(jax.random.split(keys[0])[None, 0])
    moved = np.abs(np.asarray(state.params["params"]["regime_head"]["kernel"])
                   - np.asarray(start["params"]["regime_head"]["kernel"])).max()
    assert moved > 1e-2
    _, m = pt.make_evaluate(task)(state.best_params, hp, _padded(val))
    base = macro_baselines(train, val)
    assert float(m["regime_balanced_accuracy"][0]) > 0.9
    assert float(m["alloc_return"][0]) > 0.7 * base["oracle_alloc_return"]


@pytest.mark.slow  # one compiled sweep / K-seed program (~1-2 min cold)
def test_determinism_same_seed_bitwise_seeds_differ_vmap_equals_loop(macro_setup):
    task, tx, hp, train, val = macro_setup
    spec = pt.EngineSpec(train.size, PCFG.batch_size, 2, PCFG.epochs, PCFG.patience)
    keys = seed_keys(7, 3)
    a, _ = _run(task, tx, spec, hp, train, val, keys)
    b, _ = _run(task, tx, spec, hp, train, val, keys)
    assert content_hash(a) == content_hash(b)
    member = lambda s, k: jax.tree.map(lambda x: x[k], s)  # noqa: E731
    assert content_hash(member(a, 0).params) != content_hash(member(a, 1).params)
    # vmap == loop: member k of the 3-seed program equals a 1-seed program with key k. Not
    # bit for bit: XLA:CPU lowers a [3]-batched matmul and a [1]-batched one to different
    # kernels (summation order), and Adam turns the rounding noise in the (theoretically zero)
    # gradients of biases feeding a LayerNorm into lr-sized steps of those biases. So the
    # test compares what the networks compute: per-epoch losses and validation outputs.
    _, hist_a = _run(task, tx, spec, hp, train, val, keys)
    evaluate = pt.make_evaluate(task)
    loss_a, m_a = evaluate(a.params, hp, _padded(val))
    for k in range(3):
        alone, hist = _run(task, tx, spec, hp, train, val, seed_keys(7, 3)[k:k + 1])
        np.testing.assert_allclose(hist[0]["val_loss"][0], hist_a[0]["val_loss"][k], rtol=1e-4)
        loss_k, m_k = evaluate(alone.params, hp, _padded(val))
        np.testing.assert_allclose(loss_k[0], loss_a[k], rtol=1e-4)
        np.testing.assert_allclose(m_k["alloc_return"][0], m_a["alloc_return"][k], rtol=1e-3)
        assert int(alone.best_epoch[0]) == int(a.best_epoch[k])


def _unpadded(x):
    n = int(jax.tree.leaves(x)[0].shape[0])
    return pt.Padded(x, jnp.asarray(n, jnp.int32), n)


def test_padded_sets_train_as_the_unpadded_ones(macro_setup):
    """200 training rows padded to 224 (7 minibatches of 32, 6 run) and 100 validation rows to
    104: every epoch's losses and the parameters equal the unpadded program's (another program:
    float tolerance), and the filler rows' values do not matter."""
    task, tx, hp, _, _ = macro_setup
    train, val = _signal_samples(200, 3), _signal_samples(100, 4)
    padded_train, padded_val = pt.pad_set(train, PCFG.batch_size), pt.pad_set(val)
    assert (padded_train.rows, padded_val.rows) == (224, 104)
    # filler rows changed to other samples' values: still nothing changes
    other = _signal_samples(224, 5)
    junk = jax.tree.map(lambda p, o: p.at[200:].set(o[200:]), padded_train.data, other)
    runs = {}
    for name, tr, va in (("plain", _unpadded(train), _unpadded(val)),
                         ("padded", padded_train, padded_val),
                         ("junk", padded_train.replace(data=junk), padded_val)):
        spec = pt.EngineSpec(tr.rows, PCFG.batch_size, 3, PCFG.epochs, PCFG.patience)
        runs[name] = _run(task, tx, spec, hp, tr, va, seed_keys(2, 1))
    (plain, hist), _ = runs["plain"], None
    for name in ("padded", "junk"):
        state, h = runs[name]
        for key in ("train_loss", "train_alloc_kl", "val_loss", "val_regime_accuracy",
                    "val_alloc_return"):
            np.testing.assert_allclose(h[0][key], hist[0][key], rtol=2e-5, atol=1e-7,
                                       err_msg=f"{name} {key}")
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(plain.params),
                        strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # a 200-row set runs 6 minibatches of 32 an epoch, as it did unpadded
    spec = pt.EngineSpec(224, PCFG.batch_size, 1, 1, 1)
    assert spec.num_minibatches == 7 and int(padded_train.count) // spec.minibatch == 6


def test_phase2_epoch_goals_of_a_padded_set_are_the_unpadded_ones():
    """Phase 2 draws its goals per row: the real rows' draws do not depend on the padding."""
    train = _micro_samples(200, 0)
    padded = pt.pad_set(train, 32)
    probs = jnp.array([0.5, 0.2, 0.3])
    task, _ = pt.micro_task(TINY, train)
    key = jax.random.key(4)
    plain = task.epoch_data(key, pt.MicroTrainSet(train, probs)).goal
    goal = task.epoch_data(key, pt.MicroTrainSet(padded.data, probs)).goal
    assert goal.shape[0] == 224
    np.testing.assert_array_equal(np.asarray(goal)[:200], np.asarray(plain))


def test_early_stopping_freezes_a_seed_that_stops_improving(macro_setup):
    task, tx, hp, train, val = macro_setup
    frozen = hp.replace(lr=jnp.float32(0.0))  # nothing moves: val loss constant after epoch 1
    spec = pt.EngineSpec(train.size, PCFG.batch_size, 5, PCFG.epochs, patience=2)
    state, hist = _run(task, tx, spec, frozen, train, val, seed_keys(0, 1))
    np.testing.assert_array_equal(hist[0]["active"][0], [True, True, True, False, False])
    assert int(state.epoch[0]) == 3 and int(state.best_epoch[0]) == 1
    assert bool(state.stopped[0])
    # and an epoch limit stops a run without early stopping: 2 of 5 epochs
    state, hist = _run(task, tx, spec, hp, train, val, seed_keys(0, 1), limit=2)
    assert int(state.epoch[0]) == 2 and not bool(state.stopped[0])


def _noisy_labels(samples: MacroSamples, share: float, seed: int) -> MacroSamples:
    """``samples`` with a ``share`` of the regime labels redrawn at random: a net first learns
    the signal, then memorises the noise, so its validation loss turns up (overfitting)."""
    rng = np.random.default_rng(seed)
    lab = np.asarray(samples.regime).copy()
    flip = rng.random(lab.size) < share
    lab[flip] = rng.choice(3, int(flip.sum()))
    return samples.replace(regime=jnp.asarray(lab, jnp.int32))


def _best_and_plateau(val_loss: np.ndarray) -> tuple[int, int]:
    """(best epoch, the longest run of epochs without a gain before it) of one seed's
    validation losses, as ``train_epoch`` counts them (a gain: below the best - MIN_DELTA)."""
    best, best_epoch, plateau = np.inf, 0, 0
    for epoch, v in enumerate(val_loss, start=1):
        if v < best - pt.MIN_DELTA:
            plateau, best, best_epoch = max(plateau, epoch - best_epoch - 1), v, epoch
    return best_epoch, plateau


def test_a_shorter_patience_keeps_the_best_params_when_no_plateau_reaches_it(macro_setup):
    """No epoch's keys, minibatches or learning rate (the cosine runs over ``total_epochs``)
    depend on the patience: a patience longer than every run of epochs without a gain before
    the best one stops sooner with the same best params, bit for bit (the ``quick`` preset's
    Phase 1 at 5 instead of 15: docs/status.md); one that a run reaches stops before the
    best epoch."""
    task, tx, hp, _, val = macro_setup
    train = _noisy_labels(_signal_samples(64, 0), 0.5, 5)
    hp = hp.replace(w_regime=jnp.float32(1.0), w_alloc=jnp.float32(0.0))
    epochs = 24

    def run(patience: int):
        spec = pt.EngineSpec(train.size, 16, epochs, epochs, patience)
        state, hist = _run(task, tx, spec, hp, train, val, seed_keys(0, 2))
        return state, hist[0]

    full, hist = run(epochs + 1)                    # never stops: every epoch's loss
    found = [_best_and_plateau(hist["val_loss"][k]) for k in range(2)]
    best = [b for b, _ in found]
    assert np.asarray(full.best_epoch).tolist() == best
    assert all(b < epochs - 3 for b in best)        # it overfits: the best comes early
    patience = max(p for _, p in found) + 1
    short, _ = run(patience)
    assert bool(np.all(short.stopped)) and np.all(np.asarray(short.epoch) < epochs)
    np.testing.assert_array_equal(short.epoch, np.asarray(best) + patience)
    assert content_hash(short.best_params) == content_hash(full.best_params)
    assert content_hash(short.best_val) == content_hash(full.best_val)
    np.testing.assert_array_equal(short.best_epoch, full.best_epoch)
    if patience > 1:  # a plateau before the best: a patience it reaches stops there
        early, _ = run(patience - 1)
        assert np.any(np.asarray(early.best_epoch) < np.asarray(best))


def test_weight_average_follows_the_raw_weights_and_is_what_is_validated(macro_setup):
    """``ema_decay``: after every step the average moves (1 - d) of the way to the new
    weights (a NumPy recursion over the raw weights, one step an epoch here); training itself
    is untouched (the raw weights equal the d = 0 run's bit for bit), validation and
    ``best_params`` read the average, and at d = 0 the average is the weights themselves."""
    task, tx, hp, train, val = macro_setup
    spec = pt.EngineSpec(train.size, train.size, 1, 4, 40)   # one minibatch an epoch
    chunk = pt.make_run_chunk(task, tx, spec)
    evaluate = pt.make_evaluate(task)
    tr, va, lim = _padded(train), _padded(val), jnp.asarray(4, jnp.int32)
    init = jax.jit(jax.vmap(lambda k: pt.init_state(task, tx, k)))

    def epochs(decay: float):
        state, out = init(seed_keys(3, 1)), []
        for _ in range(4):
            state, m = chunk(state, hp.replace(ema_decay=jnp.float32(decay)), tr, va, lim)
            out.append((jax.device_get(state), jax.device_get(m)))
        return init(seed_keys(3, 1)), out

    start, avg = epochs(0.5)
    _, raw = epochs(0.0)
    ema = jax.device_get(start.params)
    for (s_avg, m_avg), (s_raw, _) in zip(avg, raw, strict=True):
        assert content_hash(s_avg.params) == content_hash(s_raw.params)
        assert content_hash(s_raw.ema_params) == content_hash(s_raw.params)
        ema = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, ema, s_avg.params)
        for got, want in zip(jax.tree.leaves(s_avg.ema_params), jax.tree.leaves(ema),
                             strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        on_avg, _ = evaluate(s_avg.ema_params, hp, va)
        on_raw, _ = evaluate(s_avg.params, hp, va)
        np.testing.assert_allclose(m_avg["val_loss"][:, 0], on_avg, rtol=1e-5)
        assert abs(float(on_avg[0]) - float(on_raw[0])) > 1e-4   # the two differ
    best = int(avg[-1][0].best_epoch[0])
    assert content_hash(avg[-1][0].best_params) == content_hash(avg[best - 1][0].ema_params)


# ------------------------------------------------------------------ Phase 2 with a known answer


def _micro_samples(n: int, seed: int) -> MicroSamples:
    """6 stocks in 3 sectors (2 each); feature 0 of stock i is its next-day return * 50."""
    rng = np.random.default_rng(seed)
    num_n = 6
    sector = np.repeat(np.arange(S), 2)
    r = rng.normal(0, 0.02, (n, num_n)).astype(np.float32)
    stock = rng.normal(0, 0.5, (n, num_n, 22)).astype(np.float32)
    stock[:, :, 0] = r * 50.0
    mask = np.ones((n, num_n), bool)
    sec = jnp.asarray(sector, jnp.int32)
    within = jax.vmap(within_sector_softmax, in_axes=(0, 0, None, None))(
        20.0 * jnp.asarray(r), jnp.asarray(mask), sec, S)
    return MicroSamples(
        stock=jnp.asarray(stock), stock_mask=jnp.asarray(mask),
        stock_sector=jnp.broadcast_to(sec, (n, num_n)),
        current_weights=jnp.full((n, num_n), 0.98 / num_n), within=within,
        next_returns=jnp.asarray(r), sector_active=jnp.ones((n, S), bool),
        day=jnp.arange(n, dtype=jnp.int32))


def test_phase2_meets_goals_and_picks_the_signalled_stocks():
    train, val_s = _micro_samples(256, 0), _micro_samples(128, 1)
    probs = jnp.array([0.5, 0.2, 0.3])
    val = pt.MicroBatch(val_s, pt.sample_goals(jax.random.key(9), val_s.sector_active, probs))
    task, _ = pt.micro_task(TINY, train)
    tx = pt.make_optimizer()
    p = PretrainConfig(epochs=30, batch_size=32, lr=3e-3, patience=30)
    hp = pt.PretrainHParams.from_config(p)
    spec = pt.EngineSpec(train.size, p.batch_size, 30, p.epochs, p.patience)
    padded = pt.pad_set(train)
    train_set = padded.replace(data=pt.MicroTrainSet(padded.data, probs))
    state, _ = _run(task, tx, spec, hp, train_set, val, seed_keys(0, 1))
    _, m = pt.make_evaluate(task)(state.best_params, hp, _padded(val))
    base = micro_baselines(val)
    assert float(m["goal_alignment"][0]) > 0.97 > base["equal_weight_goal_alignment"] + 0.1
    # stock picking inside the sectors beats spreading each sector's goal weight evenly
    assert float(m["return"][0]) > base["goal_equal_weight_return"] + 0.002
