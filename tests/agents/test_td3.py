"""TD3: targets, logit-space smoothing, K critics, delayed Polyak updates, noise decay, probe."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hrl_sarp_jax.agents.td3 import (
    TD3Batch,
    TD3HParams,
    explore_noise,
    make_td3,
    masked_kl,
    smoothed_target_action,
    td3_targets,
)
from hrl_sarp_jax.config import TD3Config, load_config
from hrl_sarp_jax.errors import ConfigError
from tests.agents._compile import compile_fast


def _hp(**kw) -> TD3HParams:
    base = dict(actor_lr=1e-3, critic_lr=1e-3, gamma=0.9, tau=0.25, target_noise=0.2,
                noise_clip=0.5, explore_noise=0.3, explore_noise_end=0.05)
    base.update(kw)
    return TD3HParams(**{k: jnp.float32(v) for k, v in base.items()})


def test_td3_targets_hand_computed():
    # K = 3 critics, B = 3; γ = 0.9.
    # col 0: min(1, 2, 0.5) = 0.5; not terminated: 1 + 0.9·0.5 = 1.45
    # col 1: min(3, -1, 4) = -1;   terminated:     2 + 0 = 2
    # col 2: min(2, 2, 2) = 2;     truncated (not terminated) still bootstraps: 0 + 0.9·2 = 1.8
    q_next = jnp.array([[1.0, 3.0, 2.0], [2.0, -1.0, 2.0], [0.5, 4.0, 2.0]])
    y = td3_targets(q_next, jnp.array([1.0, 2.0, 0.0]), jnp.array([False, True, False]), 0.9)
    np.testing.assert_allclose(y, [1.45, 2.0, 1.8], rtol=1e-6)


def test_smoothing_is_in_logit_space_and_respects_mask():
    logits = jnp.array([[0.0, 1.0, -2.0, 5.0]] * 64)
    mask = jnp.array([[True, True, True, False]] * 64)
    w = smoothed_target_action(logits, mask, jax.random.key(0), jnp.float32(10.0), jnp.float32(0.5))
    np.testing.assert_array_equal(w[:, 3], 0.0)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    # Each logit moved by at most ±0.5, so every log-weight ratio moved by at most 1.0.
    moved = (jnp.log(w[:, 0]) - jnp.log(w[:, 1])) - (0.0 - 1.0)
    assert float(jnp.abs(moved).max()) <= 1.0 + 1e-5
    assert float(jnp.abs(moved).max()) > 0.5        # noise of std 10 did hit the clip
    # noise_clip 0 → exactly the target policy's weights
    w0 = smoothed_target_action(logits, mask, jax.random.key(0), jnp.float32(10.0), jnp.float32(0))
    expected = np.append(jax.nn.softmax(jnp.array([0.0, 1.0, -2.0])), 0.0)
    np.testing.assert_allclose(w0[0], expected, rtol=1e-6)


def test_masked_kl_is_the_kl_of_the_valid_slots_softmaxes():
    # slot 4 is padding: its logits (9 and -5) must not matter
    a = jnp.array([[0.0, 1.0, 2.0, 9.0]])
    b = jnp.array([[1.0, 0.0, 0.0, -5.0]])
    mask = jnp.array([[True, True, True, False]])
    pa, pb = (np.exp(x) / np.exp(x).sum() for x in (np.array([0.0, 1, 2]), np.array([1.0, 0, 0])))
    np.testing.assert_allclose(masked_kl(a, b, mask), [np.sum(pa * np.log(pa / pb))], rtol=1e-5)
    np.testing.assert_allclose(masked_kl(a, a, mask), [0.0], atol=1e-6)


def test_explore_noise_decays_per_update():
    hp = _hp(explore_noise=0.3, explore_noise_end=0.05)
    # linear over 100 updates: 0.3 → 0.05; step 40 → 0.3 - 0.4·0.25 = 0.2
    got = [float(explore_noise(jnp.int32(s), hp, 100)) for s in (0, 40, 100, 500)]
    np.testing.assert_allclose(got, [0.3, 0.2, 0.05, 0.05], rtol=1e-6)


# --------------------------------------------------------------------------- update mechanics
# Tiny "networks": the actor's logits are its parameter vector; critic k returns the constant
# params["c"] plus a linear term, so min over K and the Polyak updates can be checked by hand.


def _actor_apply(params, obs):
    logits = jnp.broadcast_to(params["l"], (obs.shape[0], 3))
    return logits, jnp.ones_like(logits, bool)


def _actor_init(key, obs):
    del obs
    return {"l": jax.random.normal(key, (3,), jnp.float32)}


def _critic_apply(params, obs, action):
    return params["c"] + action @ params["w"] + 0.0 * obs[:, 0]


def _critic_init(key, obs, action):
    del obs, action
    c_key, w_key = jax.random.split(key)
    return {"c": jax.random.normal(c_key, (), jnp.float32),
            "w": jax.random.normal(w_key, (3,), jnp.float32)}


@pytest.fixture(scope="module")
def td3_k3():
    td3 = make_td3(_actor_apply, _critic_apply, actor_init=_actor_init, critic_init=_critic_init,
                   num_critics=3, policy_delay=2, max_grad_norm=1.0, explore_decay_updates=10)
    batch = TD3Batch(obs=jnp.ones((4, 2)), action=jnp.full((4, 3), 1 / 3),
                     reward=jnp.array([1.0, 0.0, 2.0, -1.0]), next_obs=jnp.ones((4, 2)),
                     terminated=jnp.array([False, True, False, False]))
    state = td3.init(jax.random.key(0), batch.obs, batch.action)
    return td3, jax.jit(td3.update), batch, state


def test_init_honours_k_critics(td3_k3):
    _, _, _, state = td3_k3
    assert state.critic_params["w"].shape == (3, 3)
    assert len(set(np.asarray(state.critic_params["c"]).tolist())) == 3   # independent inits
    assert state.step.dtype == jnp.int32


def test_target_uses_min_over_all_three_critics(td3_k3):
    _, update, batch, state = td3_k3
    # Make the target critics constant: c = (1, 5, -2), w = 0 → min = -2 whatever a' is.
    state = state.replace(critic_target={"c": jnp.array([1.0, 5.0, -2.0]), "w": jnp.zeros((3, 3))})
    _, m = update(state, batch, jax.random.key(1), _hp(gamma=0.5))
    # y = r + 0.5·(1 - term)·(-2) = (1-1, 0, 2-1, -1-1) = (0, 0, 1, -2); mean -0.25
    np.testing.assert_allclose(m["target_mean"], -0.25, rtol=1e-6)


def test_hparams_are_vmappable_leaves(td3_k3):
    # One compile sweeps γ: with constant target critics (min = -2) and r = (1, 0, 2, -1),
    # γ = 0.5 → mean y = -0.25 (see above); γ = 0 → y = r, mean 0.5.
    td3, _, batch, state = td3_k3
    state = state.replace(critic_target={"c": jnp.array([1.0, 5.0, -2.0]), "w": jnp.zeros((3, 3))})
    hps = jax.tree.map(lambda a, b: jnp.stack([a, b]), _hp(gamma=0.5), _hp(gamma=0.0))
    sweep = jax.jit(jax.vmap(td3.update, in_axes=(None, None, None, 0)))
    _, m = sweep(state, batch, jax.random.key(1), hps)
    np.testing.assert_allclose(m["target_mean"], [-0.25, 0.5], rtol=1e-6)


def test_delayed_actor_and_polyak_targets(td3_k3):
    _, update, batch, s0 = td3_k3
    hp = _hp(tau=0.25)
    s1, m1 = update(s0, batch, jax.random.key(2), hp)
    # update 1 of policy_delay 2: critics move, actor and both targets do not
    assert float(m1["actor_updated"]) == 0.0
    assert not np.allclose(s1.critic_params["w"], s0.critic_params["w"])
    np.testing.assert_array_equal(s1.actor_params["l"], s0.actor_params["l"])
    np.testing.assert_array_equal(s1.critic_target["w"], s0.critic_target["w"])
    s2, m2 = update(s1, batch, jax.random.key(3), hp)
    assert float(m2["actor_updated"]) == 1.0 and int(s2.step) == 2
    assert not np.allclose(s2.actor_params["l"], s1.actor_params["l"])
    # targets ← τ·online + (1-τ)·target
    np.testing.assert_allclose(
        s2.actor_target["l"], 0.25 * s2.actor_params["l"] + 0.75 * s1.actor_target["l"], rtol=1e-6
    )
    np.testing.assert_allclose(
        s2.critic_target["w"], 0.25 * s2.critic_params["w"] + 0.75 * s1.critic_target["w"],
        rtol=1e-6,
    )


def test_actor_warmup_freezes_the_actor_but_not_the_critic_target():
    td3 = make_td3(_actor_apply, _critic_apply, actor_init=_actor_init, critic_init=_critic_init,
                   num_critics=2, policy_delay=2, actor_warmup_updates=4)
    batch = TD3Batch(obs=jnp.ones((4, 2)), action=jnp.full((4, 3), 1 / 3),
                     reward=jnp.array([1.0, 0.0, 2.0, -1.0]), next_obs=jnp.ones((4, 2)),
                     terminated=jnp.zeros(4, bool))
    s0 = td3.init(jax.random.key(0), batch.obs, batch.action)
    update = jax.jit(td3.update)
    hp = _hp(tau=0.25)
    s, flags = s0, []
    for k in range(6):
        prev = s
        s, m = update(s, batch, jax.random.key(10 + k), hp)
        flags.append(float(m["actor_updated"]))
        if k + 1 in (2, 4):   # delayed steps inside the warmup: critic target only
            np.testing.assert_array_equal(s.actor_params["l"], s0.actor_params["l"])
            np.testing.assert_array_equal(s.actor_target["l"], s0.actor_target["l"])
            np.testing.assert_allclose(
                s.critic_target["w"], 0.25 * s.critic_params["w"] + 0.75 * prev.critic_target["w"],
                rtol=1e-6)
    assert flags == [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]   # first actor step: update 6 (> 4, even)
    assert not np.allclose(s.actor_params["l"], s0.actor_params["l"])


def test_anchored_actor_settles_where_q_and_the_anchor_balance():
    """Q_1 = p_0 (the critic frozen at c = 0, w = e_0; critic lr 0) and an anchor at uniform
    weights u: the anchored loss −Q/mean|Q| + c·KL(u ‖ p) has logit gradient
    −(e_0 − p) + c·(p − u), zero at p = (e_0 + c·u) / (1 + c): (2/3, 1/6, 1/6) at c = 1. The
    unanchored actor (and the anchored one at c = 0) goes to e_0. The logged KL is the hand
    value KL(u ‖ p) at the actor's weights before its step."""
    batch = TD3Batch(obs=jnp.ones((4, 2)), action=jnp.full((4, 3), 1 / 3),
                     reward=jnp.zeros(4), next_obs=jnp.ones((4, 2)), terminated=jnp.zeros(4, bool))
    critic = {"c": jnp.zeros(2), "w": jnp.stack([jnp.eye(3)[0]] * 2)}
    hp = _hp(actor_lr=0.05, critic_lr=0.0)
    for anchored, coef, want in ((True, 1.0, [2 / 3, 1 / 6, 1 / 6]), (True, 0.0, None),
                                 (False, 0.0, None)):
        td3 = make_td3(_actor_apply, _critic_apply, actor_init=_actor_init,
                       critic_init=_critic_init, num_critics=2, policy_delay=1,
                       anchored=anchored)
        s = td3.init(jax.random.key(0), batch.obs, batch.action)
        start = {"l": jnp.array([0.0, 1.0, -1.0])}
        s = s.replace(actor_params=start, critic_params=critic, critic_target=critic,
                      anchor={"l": jnp.zeros(3)} if anchored else None)
        update = jax.jit(td3.update)
        _, m = update(s, batch, jax.random.key(1), hp.replace(anchor_kl_coef=jnp.float32(coef)))
        if anchored:
            p = np.asarray(jax.nn.softmax(start["l"]))
            np.testing.assert_allclose(m["anchor_kl"], np.sum(np.log(1 / 3 / p)) / 3, rtol=1e-5)
        else:
            assert "anchor_kl" not in m
        for k in range(400):
            s, m = update(s, batch, jax.random.key(2 + k), hp.replace(
                anchor_kl_coef=jnp.float32(coef)))
        p = np.asarray(jax.nn.softmax(s.actor_params["l"]))
        if want is None:
            assert p[0] > 0.95, (anchored, coef, p)
        else:
            np.testing.assert_allclose(p, want, atol=0.01)


def test_critic_gradient_is_globally_clipped(td3_k3):
    _, update, batch, state = td3_k3
    big = batch._replace(reward=batch.reward * 1e4)
    s1, m = update(state, big, jax.random.key(4), _hp())
    assert float(m["critic_grad_norm"]) > 100.0
    mu = s1.critic_opt_state[1].inner_state[0].mu    # Adam μ = (1-β1)·clipped gradient
    np.testing.assert_allclose(optax.tree.norm(mu) / 0.1, 1.0, rtol=1e-4)


def test_hparams_from_config():
    hp = TD3HParams.from_config(TD3Config())
    np.testing.assert_allclose([hp.tau, hp.explore_noise, hp.explore_noise_end], [0.005, 0.3, 0.05])
    with pytest.raises(ConfigError, match=r"'train\.td3\.anchor_kl_coef' = -0\.5 must be >= 0"):
        load_config(None, ["train.td3.anchor_kl_coef=-0.5"])


# --------------------------------------------------------------------------- learning probe


class _Actor(nn.Module):
    @nn.compact
    def __call__(self, obs):
        logits = nn.Dense(3)(nn.relu(nn.Dense(16)(obs)))
        return logits, jnp.ones(logits.shape, bool)


class _Critic(nn.Module):
    @nn.compact
    def __call__(self, obs, action):
        h = nn.relu(nn.Dense(32)(jnp.concatenate([obs, action], axis=-1)))
        return nn.Dense(1)(h)[..., 0]


# The best asset depends on the observed bit: bit 0 → asset 0 pays 1, bit 1 → asset 2 pays 1;
# asset 1 pays 0.2 either way. One-step episodes (always terminated).
PAYOFF = jnp.array([[1.0, 0.2, 0.0], [0.0, 0.2, 1.0]])


@pytest.fixture(scope="module")
def trained_td3():
    actor, critic = _Actor(), _Critic()
    td3 = make_td3(actor.apply, critic.apply, actor_init=actor.init, critic_init=critic.init,
                   num_critics=2, policy_delay=2, explore_decay_updates=300)
    hp = _hp(actor_lr=3e-3, critic_lr=3e-3, gamma=0.99, tau=0.05, explore_noise=1.0,
             explore_noise_end=0.3)
    B, updates = 32, 400

    def train(key):
        init_key, loop_key = jax.random.split(key)
        state = td3.init(init_key, jnp.zeros((B, 2)), jnp.full((B, 3), 1 / 3))

        def one(state, k):
            bit_key, act_key, upd_key = jax.random.split(k, 3)
            bit = jax.random.bernoulli(bit_key, 0.5, (B,)).astype(jnp.int32)
            obs = jax.nn.one_hot(bit, 2, dtype=jnp.float32)
            action = td3.act(state, obs, act_key, hp, True)
            reward = jnp.sum(action * PAYOFF[bit], axis=-1)
            batch = TD3Batch(obs, action, reward, obs, jnp.ones((B,), bool))
            state, m = td3.update(state, batch, upd_key, hp)
            return state, m["critic_loss"]

        return jax.lax.scan(one, state, jax.random.split(loop_key, updates))

    key = jax.random.key(0)
    state, critic_loss = compile_fast(train, key)(key)
    greedy = td3.act(state, jnp.eye(2, dtype=jnp.float32), jax.random.key(1), hp, False)
    return greedy, critic_loss


def test_td3_learns_contextual_bandit(trained_td3):
    greedy, critic_loss = trained_td3
    assert float(greedy[0, 0]) > 0.8, greedy
    assert float(greedy[1, 2]) > 0.8, greedy
    assert float(critic_loss[-20:].mean()) < float(critic_loss[:20].mean())
