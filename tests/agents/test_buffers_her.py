"""Episode buffer bookkeeping (wrap-around, heads, lengths), sampling validity and HER relabelling.

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
add_episodes = jax.jit(buffers.add_episodes)
sample = jax.jit(buffers.sample, static_argnums=2)


def _stream(episodes):
    """[(ep_id, length, end_kind)] -> list of per-step transitions, end_kind in term/trunc/max."""
    out = []
    for ep, n, end in episodes:
        for t in range(n):
            last = t == n - 1
            out.append(_tr(ep, t, term=last and end == "term", trunc=last and end == "trunc"))
    return out


@pytest.fixture(scope="module")
def two_head_buffer():
    # C = 4 slots, H = 2 heads: head 0 owns slots {0, 1}, head 1 owns slots {2, 3}.
    # head 0: ep 1 (2 steps, terminated) → slot 0; ep 2 (3, truncated) → slot 1;
    #         ep 3 (1, terminated) wraps → slot 0; then 1 step of ep 4 in progress → slot 1.
    # head 1: ep 11 (4 steps, ends only because L = 4) → slot 2; ep 12 (1, term) → slot 3;
    #         ep 13 (1, trunc) wraps → slot 2; then 1 step of ep 14 in progress → slot 3.
    # Both streams have 7 steps, so they can be added in lock-step.
    head0 = _stream([(1, 2, "term"), (2, 3, "trunc"), (3, 1, "term"), (4, 1, "open")])
    head1 = _stream([(11, 4, "max"), (12, 1, "term"), (13, 1, "trunc"), (14, 1, "open")])
    state = buffers.init(_tr(0, 0), capacity_episodes=4, max_len=L, num_heads=2)
    for a, b in zip(head0, head1, strict=True):
        state = add_step(state, _stack([a, b]))
    return state


def test_step_wise_wrap_around_bookkeeping(two_head_buffer):
    s = two_head_buffer
    np.testing.assert_array_equal(s.length, [1, 1, 1, 1])
    # episode id stored at step 0 of each slot
    np.testing.assert_array_equal(s.data.achieved_goal[:, 0, 0], [3, 4, 13, 14])
    np.testing.assert_array_equal(s.head_pos, [1, 1])     # both heads are writing their 2nd slot
    np.testing.assert_array_equal(s.head_step, [1, 1])    # ... with one step written
    # stale steps of the overwritten episodes are still in memory but beyond `length`
    np.testing.assert_array_equal(s.data.achieved_goal[1, 1:3, 0], [2, 2])
    np.testing.assert_array_equal(s.data.achieved_goal[2, 1:4, 0], [11, 11, 11])


def test_partial_lengths_before_wrap():
    # H = 1, C = 3: ep 5 (3 steps, term), ep 6 (2 of at most 4, in progress).
    s = buffers.init(_tr(0, 0), capacity_episodes=3, max_len=L, num_heads=1)
    for tr in _stream([(5, 3, "term"), (6, 2, "open")]):
        s = add_step(s, _stack([tr]))
    np.testing.assert_array_equal(s.length, [3, 2, 0])
    assert int(s.head_pos[0]) == 1 and int(s.head_step[0]) == 2
    assert int(buffers.num_transitions(s)) == 5


def test_add_whole_episodes_with_wrap_and_skip():
    s = buffers.init(_tr(0, 0), capacity_episodes=4, max_len=L, num_heads=2)

    def episodes(ids, lengths):
        eps = [_stack([_tr(i, t) for t in range(L)]) for i in ids]
        return _stack(eps), jnp.array(lengths, jnp.int32)

    s = add_episodes(s, *episodes([1, 11], [2, 4]))    # slots 0, 2
    s = add_episodes(s, *episodes([2, 12], [3, 0]))    # slot 1; head 1 skipped (length 0)
    s = add_episodes(s, *episodes([3, 13], [1, 2]))    # head 0 wraps → slot 0; head 1 → slot 3
    np.testing.assert_array_equal(s.length, [1, 3, 4, 2])
    np.testing.assert_array_equal(s.data.achieved_goal[:, 0, 0], [3, 2, 11, 13])
    np.testing.assert_array_equal(s.head_pos, [1, 0])


def test_capacity_must_split_between_heads():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        buffers.init(_tr(0, 0), capacity_episodes=5, max_len=L, num_heads=2)


def test_add_rejects_wrong_dtype(two_head_buffer):
    bad = _stack([_tr(0, 0), _tr(0, 0)])._replace(reward=jnp.zeros(2, jnp.int32))
    with pytest.raises(AssertionError):
        buffers.add_step(two_head_buffer, bad)


@pytest.fixture(scope="module")
def longer_buffer():
    # H = 1, C = 3, after wrap: slots hold ep 4 (4 steps), ep 2 (3 steps), ep 3 (2 steps);
    # ep 1 (2 steps) was overwritten by ep 4.
    s = buffers.init(_tr(0, 0), capacity_episodes=3, max_len=L, num_heads=1)
    for tr in _stream([(1, 2, "term"), (2, 3, "term"), (3, 2, "trunc"), (4, 4, "max")]):
        s = add_step(s, _stack([tr]))
    return s


def test_sampled_indices_are_valid_and_cover_all(longer_buffer):
    s = longer_buffer
    np.testing.assert_array_equal(s.length, [4, 3, 2])
    sb = sample(s, jax.random.key(0), 512)
    ep, t, f = (np.asarray(x) for x in (sb.episode, sb.step, sb.future_step))
    length = np.asarray(s.length)[ep]
    assert (length > 0).all() and (t < length).all() and (t <= f).all() and (f < length).all()
    # the transition returned is exactly the stored one at (episode, step)
    ep_id = np.asarray(s.data.achieved_goal[:, 0, 0])[ep]
    np.testing.assert_array_equal(sb.transition.reward, 100 * ep_id + t)
    assert set(ep_id.tolist()) == {2, 3, 4}          # the overwritten episode 1 never appears
    # all 9 stored transitions appear; uniform over transitions → each ≈ 512/9 ≈ 57
    pairs = {(int(a), int(b)) for a, b in zip(ep_id, t, strict=True)}
    assert len(pairs) == 9
    # future goals: same episode, a later-or-equal step inside its length
    fg = np.asarray(sb.future_goal)
    np.testing.assert_array_equal(fg[:, 0], ep_id)
    np.testing.assert_array_equal(fg[:, 1], f)
    # the future step is uniform on [t, len-1]: from step 0 of ep 4, all 4 steps occur
    assert set(f[(ep_id == 4) & (t == 0)].tolist()) == {0, 1, 2, 3}


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
