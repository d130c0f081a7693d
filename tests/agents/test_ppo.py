"""PPO: hand-computed surrogate, once-only advantage normalisation, lr schedule, clipping, probe."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hrl_sarp_jax.agents.distributions import Categorical, Dirichlet
from hrl_sarp_jax.agents.optim import injected, set_injected
from hrl_sarp_jax.agents.ppo import (
    PPOBatch,
    PPOHParams,
    PPORollout,
    create_train_state,
    current_lr,
    make_batch,
    make_optimizer,
    policy_step,
    ppo_loss,
    ppo_minibatch_step,
    ppo_update,
    supervised_nll,
)
from hrl_sarp_jax.config import PPOConfig, load_config
from hrl_sarp_jax.errors import ConfigError
from tests.agents._compile import compile_fast

S = 3  # sectors in the probe


def _hp(**kw) -> PPOHParams:
    base = dict(lr=3e-3, clip_eps=0.2, entropy_coef=0.0, value_coef=0.5, gamma=0.99,
                gae_lambda=0.95, max_grad_norm=0.5)
    base.update(kw)
    return PPOHParams(**{k: jnp.float32(v) for k, v in base.items()})


def _fixed_policy(params, obs):
    """A 'network' with π(action 0 | sample i) = exp(params['lp'][i]) and V = params['v']:
    a Categorical with logits [lp, log(1 - e^lp)]."""
    del obs
    lp = params["lp"]
    logits = jnp.stack([lp, jnp.log1p(-jnp.exp(lp))], axis=-1)
    return Categorical(logits), params["v"]


def test_clipped_surrogate_hand_computed():
    # Two samples, ε = 0.2, old log π = log 0.5 for both.
    # Sample 0: new π = 0.75 → ratio 1.5, A = +1: min(1.5·1, clip(1.5)=1.2·1) = 1.2
    # Sample 1: new π = 0.2  → ratio 0.4, A = -2: min(0.4·-2, clip(0.4)=0.8·-2) = min(-0.8, -1.6)
    #           = -1.6
    # pg_loss = -mean(1.2, -1.6) = 0.2
    # Values: V_old = (0, 0), V = (0.5, -0.1), R = (1, 1), ε = 0.2
    #   V_clipped = (0.2, -0.1); (V-R)² = (0.25, 1.21); (Vc-R)² = (0.64, 1.21)
    #   value_loss = ½·mean(max) = ½·(0.64 + 1.21)/2 = 0.4625
    # entropy: H(0.75, 0.25) = 0.562335, H(0.2, 0.8) = 0.500402 → mean 0.531369
    # loss = 0.2 + 0.5·0.4625 - 0.1·0.531369 = 0.378113
    params = {"lp": jnp.log(jnp.array([0.75, 0.2])), "v": jnp.array([0.5, -0.1])}
    batch = PPOBatch(
        obs=jnp.zeros((2, 1)), action=jnp.zeros(2, jnp.int32),
        log_prob=jnp.log(jnp.array([0.5, 0.5])), value=jnp.zeros(2),
        advantage=jnp.array([1.0, -2.0]), ret=jnp.ones(2),
    )
    loss, m = ppo_loss(params, _fixed_policy, batch, _hp(entropy_coef=0.1))
    np.testing.assert_allclose(m["pg_loss"], 0.2, rtol=1e-5)
    np.testing.assert_allclose(m["value_loss"], 0.4625, rtol=1e-5)
    np.testing.assert_allclose(m["entropy"], 0.531369, rtol=1e-5)
    np.testing.assert_allclose(loss, 0.378113, rtol=1e-5)
    np.testing.assert_allclose(m["clip_frac"], 1.0)   # |1.5-1| and |0.4-1| both exceed 0.2


def test_auxiliary_loss_hand_computed_and_masked():
    # Two samples: π(0) = 0.75 and 0.2, labels 0 and 1 → -(log 0.75 + log 0.8)/2 = 0.255413;
    # a third sample with label -1 (unknown) is left out.
    params = {"lp": jnp.log(jnp.array([0.75, 0.2, 0.5])), "v": jnp.zeros(3)}
    dists, _ = _fixed_policy(params, None)
    labels = jnp.array([0, 1, -1], jnp.int32)
    np.testing.assert_allclose(supervised_nll({"regime": dists}, {"regime": labels}),
                               0.255413, rtol=1e-5)
    batch = PPOBatch(obs=jnp.zeros((3, 1)), action=jnp.zeros(3, jnp.int32),
                     log_prob=jnp.log(jnp.array([0.75, 0.2, 0.5])), value=jnp.zeros(3),
                     advantage=jnp.zeros(3), ret=jnp.zeros(3), targets={"regime": labels})
    apply = lambda p, o: ({"regime": _fixed_policy(p, o)[0]}, p["v"])  # noqa: E731
    action = {"regime": jnp.zeros(3, jnp.int32)}
    loss, m = ppo_loss(params, apply, batch._replace(action=action), _hp(aux_coef=2.0))
    # ratio 1, A = 0, V = R: the loss is the auxiliary term alone, times its weight
    np.testing.assert_allclose(m["aux_loss"], 0.255413, rtol=1e-5)
    np.testing.assert_allclose(loss, 2.0 * 0.255413, rtol=1e-5)


def test_auxiliary_loss_learns_the_labels_and_is_off_at_weight_zero():
    """With zero advantages and exact values only the auxiliary term has a gradient: its
    weight > 0 moves π(label) up on every sample; at weight 0 nothing moves."""
    labels = jnp.array([0, 1, 2, 1], jnp.int32)
    params = {"logits": jnp.zeros((4, 3)), "v": jnp.zeros(4)}
    apply = lambda p, o: ({"regime": Categorical(p["logits"])}, p["v"])  # noqa: E731
    action = {"regime": jnp.zeros(4, jnp.int32)}
    batch = PPOBatch(obs=jnp.zeros((4, 1)), action=action, log_prob=jnp.log(jnp.full(4, 1 / 3)),
                     value=jnp.zeros(4), advantage=jnp.zeros(4), ret=jnp.zeros(4),
                     targets={"regime": labels})
    tx = make_optimizer(lr=1.0, max_grad_norm=1.0, warmup_steps=0, decay_steps=100)
    step = jax.jit(ppo_minibatch_step)
    for weight, moves in ((1.0, True), (0.0, False)):
        ts = create_train_state(apply, params, tx)
        hp = _hp(aux_coef=weight, lr=0.05, max_grad_norm=10.0)
        for _ in range(30):
            lp_old = apply(ts.params, None)[0]["regime"].log_prob(action["regime"])
            ts, m = step(ts, batch._replace(log_prob=lp_old), hp)
        probs = np.asarray(jax.nn.softmax(ts.params["logits"]))
        p_label = probs[np.arange(4), np.asarray(labels)]
        if moves:
            assert (p_label > 0.6).all() and float(m["aux_loss"]) < np.log(3) / 2, p_label
        else:
            np.testing.assert_allclose(p_label, 1 / 3, atol=1e-6)


def test_critic_warmup_trains_the_value_alone_then_everything():
    """``critic_warmup_steps`` W: for the optimiser's first W steps only V moves (the policy's
    logits stay exactly where they were, though the advantage and the auxiliary label pull
    on them); from step W on the policy learns too. W = 0 is every term from the start."""
    params = {"logits": jnp.zeros((4, 3)), "v": jnp.zeros(4)}
    apply = lambda p, o: ({"regime": Categorical(p["logits"])}, p["v"])  # noqa: E731
    action = {"regime": jnp.zeros(4, jnp.int32)}
    batch = PPOBatch(obs=jnp.zeros((4, 1)), action=action, log_prob=jnp.log(jnp.full(4, 1 / 3)),
                     value=jnp.zeros(4), advantage=jnp.ones(4), ret=jnp.ones(4),
                     targets={"regime": jnp.array([0, 1, 2, 1], jnp.int32)})
    tx = make_optimizer(lr=1.0, max_grad_norm=1.0, warmup_steps=0, decay_steps=100)
    step = jax.jit(ppo_minibatch_step)
    hp = _hp(aux_coef=1.0, lr=0.05, max_grad_norm=10.0, critic_warmup_steps=3)
    ts = create_train_state(apply, params, tx)
    for i in range(5):
        before = ts.params
        ts, _ = step(ts, batch, hp)
        moved_v = not np.allclose(ts.params["v"], before["v"])
        moved_pi = not np.allclose(ts.params["logits"], before["logits"])
        assert moved_v, i
        assert moved_pi == (i >= 3), i
    # W = 0: the first step is the plain loss's step (within float rounding)
    plain, _ = step(create_train_state(apply, params, tx), batch, _hp(aux_coef=1.0, lr=0.05,
                                                                        max_grad_norm=10.0))
    zero, _ = step(create_train_state(apply, params, tx), batch, _hp(
        aux_coef=1.0, lr=0.05, max_grad_norm=10.0, critic_warmup_steps=0))
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(zero.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(zero.params["logits"], 0.0)


def test_anchor_term_hand_value_and_learns_the_anchor_policy():
    """The anchor term is KL(anchor ‖ π) per sample, times its weight. With zero advantages
    and exact values it is the only gradient: π converges to the anchor's probabilities (a
    known answer); at weight 0 the update equals one without an anchor (float rounding)."""
    params = {"logits": jnp.zeros((4, 3)), "v": jnp.zeros(4)}
    apply = lambda p, o: ({"regime": Categorical(p["logits"])}, p["v"])  # noqa: E731
    target = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3] * 3],
                      np.float32)
    anchor = {"regime": Categorical(jnp.log(jnp.asarray(target)))}
    action = {"regime": jnp.zeros(4, jnp.int32)}
    batch = PPOBatch(obs=jnp.zeros((4, 1)), action=action, log_prob=jnp.log(jnp.full(4, 1 / 3)),
                     value=jnp.zeros(4), advantage=jnp.zeros(4), ret=jnp.zeros(4),
                     anchor=anchor)
    # hand value at uniform π: KL(t ‖ u) = Σ t ln(3 t), mean over the 4 samples
    kl_hand = np.mean(np.sum(target * np.log(3 * target), axis=-1))
    loss, m = ppo_loss(params, apply, batch, _hp(anchor_kl_coef=2.0))
    np.testing.assert_allclose(m["anchor_kl"], kl_hand, rtol=1e-5)
    np.testing.assert_allclose(loss, 2.0 * kl_hand, rtol=1e-5)

    tx = make_optimizer(lr=1.0, max_grad_norm=1.0, warmup_steps=0, decay_steps=1000)
    step = jax.jit(ppo_minibatch_step)
    ts = create_train_state(apply, params, tx)
    hp = _hp(anchor_kl_coef=1.0, lr=0.05, max_grad_norm=10.0)
    for _ in range(300):
        lp_old = apply(ts.params, None)[0]["regime"].log_prob(action["regime"])
        ts, m = step(ts, batch._replace(log_prob=lp_old), hp)
    np.testing.assert_allclose(jax.nn.softmax(ts.params["logits"]), target, atol=0.02)
    assert float(m["anchor_kl"]) < 1e-3

    plain, _ = step(create_train_state(apply, params, tx),
                    batch._replace(anchor=None, advantage=jnp.ones(4)), _hp(lr=0.05))
    zero, _ = step(create_train_state(apply, params, tx),
                   batch._replace(advantage=jnp.ones(4)), _hp(lr=0.05, anchor_kl_coef=0.0))
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(zero.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(zero.params["logits"], 0.0)
    with pytest.raises(ConfigError, match=r"'train\.ppo\.anchor_kl_coef' = -1\.0 must be >= 0"):
        load_config(None, ["train.ppo.anchor_kl_coef=-1"])


def test_critic_warmup_from_config_counts_gradient_steps():
    from hrl_sarp_jax.training.ppo_engine import PPOSpec, with_schedule

    cfg = PPOConfig(rollout_steps=128, num_envs=8, minibatch_size=64, epochs=4,
                    total_env_steps=8192, critic_warmup_updates=16)
    spec = PPOSpec.from_config(cfg, updates_per_chunk=8)
    hp = with_schedule(PPOHParams.from_config(cfg), spec)
    assert float(hp.critic_warmup_steps) == 16 * 4 * 2  # updates x epochs x minibatches
    off = PPOConfig(rollout_steps=128, num_envs=8, minibatch_size=64)
    assert with_schedule(PPOHParams.from_config(off), PPOSpec.from_config(
        off, updates_per_chunk=8)).critic_warmup_steps is None
    with pytest.raises(ConfigError, match="critic_warmup_updates"):
        PPOSpec.from_config(PPOConfig(critic_warmup_updates=-1), updates_per_chunk=8)


def test_loss_does_not_renormalise_advantages():
    # At ratio 1 the surrogate is -mean(A): scaling A by 10 must scale it by 10 (a loss that
    # renormalised A would give the same value twice).
    params = {"lp": jnp.log(jnp.array([0.5, 0.5])), "v": jnp.zeros(2)}
    batch = PPOBatch(jnp.zeros((2, 1)), jnp.zeros(2, jnp.int32), jnp.log(jnp.array([0.5, 0.5])),
                     jnp.zeros(2), jnp.array([1.0, 3.0]), jnp.zeros(2))
    _, m1 = ppo_loss(params, _fixed_policy, batch, _hp())
    _, m10 = ppo_loss(params, _fixed_policy, batch._replace(advantage=batch.advantage * 10), _hp())
    np.testing.assert_allclose(m1["pg_loss"], -2.0, rtol=1e-6)
    np.testing.assert_allclose(m10["pg_loss"], -20.0, rtol=1e-6)


def test_make_batch_normalises_once_and_flattens():
    T, E = 4, 2
    rollout = PPORollout(
        obs=jnp.arange(T * E, dtype=jnp.float32).reshape(T, E, 1),
        action=jnp.zeros((T, E), jnp.int32), log_prob=jnp.zeros((T, E)),
        value=jnp.zeros((T, E)), reward=jnp.arange(T * E, dtype=jnp.float32).reshape(T, E),
        next_value=jnp.zeros((T, E)), terminated=jnp.ones((T, E), bool),
        truncated=jnp.zeros((T, E), bool),
    )
    b = make_batch(rollout, _hp())
    # every step terminates and V = 0, so A = r; normalised: (r - 3.5) / std(0..7)
    r = np.arange(8.0)
    np.testing.assert_allclose(b.advantage, (r - 3.5) / r.std(), rtol=1e-5)
    np.testing.assert_allclose(b.ret, r, rtol=1e-6)        # returns are not normalised
    np.testing.assert_array_equal(b.obs[:, 0], r)           # [T, E] flattened row-major


def test_lr_schedule_applies_after_k_steps():
    # warmup 4, cosine over 8 more steps to 0.1·lr. With a constant gradient of 1 Adam's
    # bias-corrected moments are m̂ = v̂ = 1, so every step moves each parameter by exactly
    # lr_k/(1 + 1e-8): the schedule is visible in the parameters themselves. The peak lr is the
    # dynamic value written into the state (0.01), not the 1.0 given at build time.
    tx = make_optimizer(lr=1.0, max_grad_norm=1e9, warmup_steps=4, decay_steps=8, min_lr_scale=0.1)

    @jax.jit
    def step(ts):
        ts = ts.replace(opt_state=set_injected(ts.opt_state, peak_lr=0.01))
        new = ts.apply_gradients(grads={"w": jnp.ones(3)})
        return new, (ts.params["w"] - new.params["w"])[0], current_lr(new.opt_state)

    ts = create_train_state(lambda p, o: None, {"w": jnp.zeros(3)}, tx)
    deltas, lrs = [], []
    for _ in range(12):
        ts, delta, lr = step(ts)
        deltas.append(float(delta))
        lrs.append(float(lr))
    np.testing.assert_allclose(deltas, lrs, rtol=1e-5)
    assert float(injected(ts.opt_state, "peak_lr")) == pytest.approx(0.01)
    # steps 0..3: 0.01·(1,2,3,4)/4
    # step 6 (k = 2 into the decay): 0.1 + 0.9·½(1 + cos(π·2/8)) = 0.1 + 0.45·1.7071068
    #   = 0.8681981 → lr 0.008681981
    # step 11 (k = 7): 0.1 + 0.45·(1 + cos(7π/8)) = 0.1 + 0.45·0.0761205 = 0.1342542 → 0.001342542
    np.testing.assert_allclose(lrs[:4], [0.0025, 0.005, 0.0075, 0.01], rtol=1e-5)
    np.testing.assert_allclose(lrs[6], 0.008681981, rtol=1e-5)
    np.testing.assert_allclose(lrs[11], 0.001342542, rtol=1e-5)


def test_global_norm_clipping_bound():
    # Adam's first moment after one step is (1 - β1)·g_clipped, so ‖μ‖/(1-β1) is the norm of
    # the gradient Adam actually saw: it must equal max_grad_norm when the raw norm is larger.
    params = {"lp": jnp.log(jnp.array([0.5, 0.5])), "v": jnp.array([30.0, -40.0])}
    batch = PPOBatch(jnp.zeros((2, 1)), jnp.zeros(2, jnp.int32), jnp.log(jnp.array([0.5, 0.5])),
                     jnp.zeros(2), jnp.array([1.0, -1.0]), jnp.zeros(2))
    tx = make_optimizer(lr=1e-3, max_grad_norm=100.0, warmup_steps=0, decay_steps=10)
    ts = create_train_state(_fixed_policy, params, tx)
    hp = _hp(max_grad_norm=0.05)           # dynamic value overrides the 100 given at build time
    ts2, m = jax.jit(ppo_minibatch_step)(ts, batch, hp)
    assert float(m["grad_norm"]) > 1.0      # raw norm (value gradient ~ V·c_v) is large
    mu = ts2.opt_state[1].inner_state[0].mu
    np.testing.assert_allclose(optax.tree.norm(mu) / 0.1, 0.05, rtol=1e-4)


def test_lr_is_a_vmappable_leaf():
    # A sweep over lr in one compile: with ratio 1 and one Adam step, every parameter moves by
    # ≈ lr (sign of the gradient), so the two members move by 1e-3 and 1e-2.
    params = {"lp": jnp.log(jnp.array([0.5, 0.5])), "v": jnp.array([0.3, -0.2])}
    batch = PPOBatch(jnp.zeros((2, 1)), jnp.zeros(2, jnp.int32), jnp.log(jnp.array([0.5, 0.5])),
                     jnp.zeros(2), jnp.array([1.0, -1.0]), jnp.zeros(2))
    tx = make_optimizer(lr=1.0, max_grad_norm=100.0, warmup_steps=0, decay_steps=10)
    ts = create_train_state(_fixed_policy, params, tx)
    hps = jax.tree.map(lambda a, b: jnp.stack([a, b]), _hp(lr=1e-3), _hp(lr=1e-2))
    new, _ = jax.jit(jax.vmap(ppo_minibatch_step, in_axes=(None, None, 0)))(ts, batch, hps)
    moved = jnp.abs(new.params["v"] - params["v"])
    np.testing.assert_allclose(moved, [[1e-3, 1e-3], [1e-2, 1e-2]], rtol=1e-3)


def test_hparams_from_config():
    hp = PPOHParams.from_config(PPOConfig())
    assert hp.clip_eps.dtype == jnp.float32
    np.testing.assert_allclose([hp.lr, hp.clip_eps, hp.max_grad_norm], [1.5e-4, 0.15, 0.5])


# --------------------------------------------------------------------------- learning probe


class _BanditPolicy(nn.Module):
    @nn.compact
    def __call__(self, obs):
        h = nn.tanh(nn.Dense(16)(obs))
        conc = nn.softplus(nn.Dense(S)(h)) + 0.05
        regime_logits = nn.Dense(3)(h)
        value = nn.Dense(1)(h)[..., 0]
        mask = jnp.ones(conc.shape, bool)
        return {"weights": Dirichlet(conc, mask), "regime": Categorical(regime_logits)}, value


PAYOFF = jnp.array([0.0, 0.3, 1.0])   # sector 2 pays the most
REGIME_BONUS = jnp.array([0.0, 0.5, 0.0])  # regime call 1 is "correct"


@pytest.fixture(scope="module")
def trained_bandit():
    net = _BanditPolicy()
    T, E, updates = 4, 8, 60
    obs = jnp.ones((T, E, 1), jnp.float32)

    def train(key):
        init_key, loop_key = jax.random.split(key)
        params = net.init(init_key, obs[0])
        tx = make_optimizer(lr=3e-3, max_grad_norm=0.5, warmup_steps=10, decay_steps=10_000)
        ts = create_train_state(net.apply, params, tx)
        hp = _hp(entropy_coef=0.001)

        def one_update(ts, k):
            act_key, upd_key = jax.random.split(k)
            action, log_prob, value = policy_step(ts.apply_fn, ts.params, obs, act_key)
            reward = action["weights"] @ PAYOFF + REGIME_BONUS[action["regime"]]
            ones = jnp.ones((T, E), bool)
            rollout = PPORollout(obs, action, log_prob, value, reward, jnp.zeros((T, E)),
                                 terminated=ones, truncated=~ones)
            ts, m = ppo_update(ts, rollout, upd_key, hp, epochs=4, num_minibatches=2)
            return ts, reward.mean()

        return jax.lax.scan(one_update, ts, jax.random.split(loop_key, updates))

    key = jax.random.key(0)
    ts, mean_reward = compile_fast(train, key)(key)
    dists, _ = net.apply(ts.params, jnp.ones((1, 1)))
    return dists, mean_reward


def test_ppo_learns_simplex_bandit(trained_bandit):
    dists, mean_reward = trained_bandit
    w = dists["weights"].mean()[0]
    assert float(w[2]) > 0.9, w
    p_regime = jax.nn.softmax(dists["regime"].logits[0])
    assert float(p_regime[1]) > 0.9, p_regime
    assert float(mean_reward[-10:].mean()) > float(mean_reward[:10].mean()) + 0.3
