"""Replay ring bookkeeping (wrap-around, episode ends), sampling against a NumPy model, HER.

Achieved goals encode (episode id, step) so that every sampled index can be traced back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.agents import buffers
from hrl_sarp_jax.agents.buffers import Transition
from hrl_sarp_jax.agents.her import her_ratio_from_k, relabel
from hrl_sarp_jax.agents.td3 import batch_from_transition

F, G, L = 2, 2, 4    # plain obs features, goal size, max episode length


def _tr(ep: int, t: int, *, term: bool = False, trunc: bool = False) -> Transition:
    """Obs = [ep, t | goal = (-1, -1)]; reward marks (ep, t); achieved goal = (ep, t)."""
    obs = jnp.array([ep, t, -1.0, -1.0], jnp.float32)
    return Transition(
        obs=obs, action=jnp.full((3,), ep, jnp.float32), reward=jnp.float32(100 * ep + t),
        goal_reward=jnp.float32(0.5), next_obs=obs + jnp.array([0, 1, 0, 0], jnp.float32),
        terminated=jnp.bool_(term), truncated=jnp.bool_(trunc),
        achieved_goal=jnp.array([ep, t], jnp.float32),
    )


def _stack(trs):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trs)


add_step = jax.jit(buffers.add_step)
sample = jax.jit(buffers.sample, static_argnums=2)


def _stream(episodes):
    """[(ep_id, length, end_kind)] -> list of per-step transitions, end_kind in term/trunc/open."""
    out = []
    for ep, n, end in episodes:
        for t in range(n):
            last = t == n - 1
            out.append(_tr(ep, t, term=last and end == "term", trunc=last and end == "trunc"))
    return out


def _fill(streams, rows):
    """A ring of ``rows`` rows fed the envs' streams (equal lengths) in lock-step."""
    state = buffers.init(_tr(0, 0), rows=rows, num_envs=len(streams))
    for step in zip(*streams, strict=True):
        state = add_step(state, _stack(list(step)))
    return state


@pytest.fixture(scope="module")
def two_env_ring():
    # R = 3 rows, H = 2 envs, 7 vector steps: rows hold global steps 6, 4, 5 (row = step mod 3).
    # env 0: ep 1 (steps 0-1, term), ep 2 (2-4, trunc), ep 3 (5, term), ep 4 (6, open)
    # env 1: ep 11 (0-3, trunc), ep 12 (4, term), ep 13 (5-6, open)
    env0 = _stream([(1, 2, "term"), (2, 3, "trunc"), (3, 1, "term"), (4, 1, "open")])
    env1 = _stream([(11, 4, "trunc"), (12, 1, "term"), (13, 2, "open")])
    return _fill([env0, env1], rows=3)


def test_ring_wrap_around_bookkeeping(two_env_ring):
    s = two_env_ring
    assert int(s.steps) == 7 and s.capacity == 6
    assert int(buffers.num_transitions(s)) == 6
    # (episode id, step in episode) of what each row holds, rows 0..2 = global steps 6, 4, 5
    np.testing.assert_array_equal(s.data.achieved_goal[:, 0], [[4, 0], [2, 2], [3, 0]])
    np.testing.assert_array_equal(s.data.achieved_goal[:, 1], [[13, 1], [12, 0], [13, 0]])
    # episode numbers per env (0-based count of that env's finished episodes at the step)
    np.testing.assert_array_equal(s.episode, [[3, 2], [1, 1], [2, 2]])
    np.testing.assert_array_equal(s.env_episode, [3, 2])
    # last global step of each finished episode, at episode mod (R + 1) = mod 4
    np.testing.assert_array_equal(s.episode_end[:3, 0], [1, 4, 5])
    np.testing.assert_array_equal(s.episode_end[:2, 1], [3, 4])


def test_partial_ring_counts_only_written_rows():
    s = _fill([_stream([(5, 3, "term"), (6, 2, "open")])], rows=8)
    assert int(buffers.num_transitions(s)) == 5 and s.capacity == 8


def test_capacity_does_not_grow_with_the_envs():
    assert buffers.rows_for(1280, 32) == 40
    assert buffers.rows_for(1280, 4096) == 1          # one vector step: 4,096 transitions
    assert buffers.rows_for(10, 4) == 3               # rounded up to whole vector steps
    with pytest.raises(ValueError, match="capacity=0"):
        buffers.rows_for(0, 4)
    with pytest.raises(ValueError, match="rows=0"):
        buffers.init(_tr(0, 0), rows=0, num_envs=2)


def test_add_rejects_wrong_dtype(two_env_ring):
    bad = _stack([_tr(0, 0), _tr(0, 0)])._replace(reward=jnp.zeros(2, jnp.int32))
    with pytest.raises(AssertionError):
        buffers.add_step(two_env_ring, bad)


def test_add_steps_equals_step_by_step(two_env_ring):
    env0 = _stream([(1, 2, "term"), (2, 3, "trunc"), (3, 1, "term"), (4, 1, "open")])
    env1 = _stream([(11, 4, "trunc"), (12, 1, "term"), (13, 2, "open")])
    steps = _stack([_stack([a, b]) for a, b in zip(env0, env1, strict=True)])
    s = jax.jit(buffers.add_steps)(buffers.init(_tr(0, 0), rows=3, num_envs=2), steps)
    jax.tree.map(np.testing.assert_array_equal, s, two_env_ring)


def _reference(streams, rows):
    """NumPy model: {(env, global step): (episode id, step in episode, last stored global step
    of that episode)} for the transitions a ring of ``rows`` rows still holds."""
    total = len(streams[0])
    out = {}
    for h, stream in enumerate(streams):
        ids = [int(tr.achieved_goal[0]) for tr in stream]
        for t in range(max(0, total - rows), total):
            last = max(u for u in range(t, total) if ids[u] == ids[t])
            out[(h, t)] = (ids[t], int(stream[t].achieved_goal[1]), last)
    return out


@pytest.mark.parametrize("rows", [1, 3, 7, 40])
def test_sampling_matches_a_numpy_model(rows):
    # 3 envs, 30 steps of random episodes (lengths 1-6, term or trunc), some still open
    rng = np.random.default_rng(rows)
    streams = []
    for h in range(3):
        eps, n, ep = [], 0, 100 * h
        while n < 30:
            k = min(int(rng.integers(1, 7)), 30 - n)
            n += k
            eps.append((ep, k, "open" if n == 30 else ("term", "trunc")[int(rng.integers(2))]))
            ep += 1
        streams.append(_stream(eps))
    s = _fill(streams, rows)
    ref = _reference(streams, rows)
    sb = sample(s, jax.random.key(rows), 4096)
    env, t, f = (np.asarray(x) for x in (sb.env, sb.step, sb.future_step))
    ach = np.asarray(sb.transition.achieved_goal)
    got = [(int(a), int(b)) for a, b in zip(env, t, strict=True)]
    assert set(got) == set(ref)                     # exactly the stored transitions, all of them
    counts = np.array([got.count(k) for k in ref])  # uniform: 4096 / |ref| each
    assert counts.min() > 0.5 * 4096 / len(ref) and counts.max() < 1.6 * 4096 / len(ref)
    for i, key in enumerate(got):
        ep, step_in_ep, last = ref[key]
        assert tuple(ach[i]) == (ep, step_in_ep)    # the stored transition itself
        assert key[1] <= f[i] <= last               # a future step of the same episode
    fg = np.asarray(sb.future_goal)
    np.testing.assert_array_equal(fg[:, 0], ach[:, 0])          # same episode id
    np.testing.assert_array_equal(fg[:, 1] - ach[:, 1], f - t)  # f - t steps later in it
    # the future step covers the whole range: from the first stored step of the longest
    # stored episode, every later step of it occurs
    spans = {k: v[2] - k[1] for k, v in ref.items()}
    key = max(spans, key=spans.get)
    seen = set(f[(env == key[0]) & (t == key[1])].tolist())
    assert seen == set(range(key[1], ref[key][2] + 1))


@pytest.fixture(scope="module")
def longer_buffer():
    # H = 1, R = 9 rows holding ep 2 (3 steps), ep 3 (2 steps), ep 4 (4 steps, open);
    # ep 1 (2 steps) was overwritten.
    return _fill([_stream([(1, 2, "term"), (2, 3, "term"), (3, 2, "trunc"), (4, 4, "open")])],
                 rows=9)


# --------------------------------------------------------------------------- HER


def _set_goal(obs, goal):
    return obs.at[..., F:].set(goal)


def _goal_reward(achieved, goal):
    return -jnp.sum(jnp.abs(achieved - goal), axis=-1)


@jax.jit
def _sample_and_relabel(state, key, her_ratio):
    sample_key, relabel_key = jax.random.split(key)
    sb = buffers.sample(state, sample_key, 256)
    new = relabel(sb.transition, relabel_key, future_goals=sb.future_goal,
                  goal_reward_fn=_goal_reward, set_goal_fn=_set_goal, her_ratio=her_ratio)
    return sb, new


def test_her_ratio_zero_changes_nothing(longer_buffer):
    sb, new = _sample_and_relabel(longer_buffer, jax.random.key(1), jnp.float32(0.0))
    jax.tree.map(np.testing.assert_array_equal, new, sb.transition)


def test_her_full_relabel_rewrites_goal_in_both_obs_and_reward(longer_buffer):
    sb, new = _sample_and_relabel(longer_buffer, jax.random.key(2), jnp.float32(1.0))
    old = sb.transition
    goal = np.asarray(sb.future_goal)
    for o_new, o_old in ((new.obs, old.obs), (new.next_obs, old.next_obs)):
        np.testing.assert_array_equal(o_new[:, F:], goal)           # new goal in the goal slice
        assert not np.any(np.all(np.asarray(o_new[:, F:]) == -1.0, axis=-1))  # old one gone
        np.testing.assert_array_equal(o_new[:, :F], o_old[:, :F])   # the rest untouched
    # goal reward recomputed: -|achieved_t - g'|₁ with achieved = (ep, t), g' = (ep, f)
    # → -(f - t); the goal-independent part is kept as stored.
    np.testing.assert_allclose(new.goal_reward, -(np.asarray(sb.future_step - sb.step)), atol=0)
    np.testing.assert_array_equal(new.reward, old.reward)
    np.testing.assert_allclose(new.total_reward, old.reward + new.goal_reward)
    np.testing.assert_array_equal(new.action, old.action)
    # the TD3 batch sums both reward parts
    np.testing.assert_allclose(batch_from_transition(new).reward, new.total_reward)


def test_her_k4_relabels_four_fifths_and_keeps_the_rest_exact(longer_buffer):
    ratio = her_ratio_from_k(4)
    assert ratio == pytest.approx(0.8)
    sb, new = _sample_and_relabel(longer_buffer, jax.random.key(3), jnp.float32(ratio))
    changed = np.asarray(new.goal_reward != sb.transition.goal_reward)  # stored 0.5 never recurs
    assert 0.72 < changed.mean() < 0.88            # 256 Bernoulli(0.8): sd 0.025
    np.testing.assert_array_equal(new.obs[~changed], sb.transition.obs[~changed])
    np.testing.assert_array_equal(new.obs[changed][:, F:], sb.future_goal[changed])
