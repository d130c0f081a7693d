"""Phase 4 (Micro TD3 + HER): compact observations, HER batches, determinism, learning, host."""

from __future__ import annotations

import dataclasses
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.agents import buffers
from hrl_sarp_jax.config import (
    Config,
    ConstraintConfig,
    DataConfig,
    EnvConfig,
    NetworkConfig,
    RewardConfig,
    RiskConfig,
    TD3Config,
    TrainConfig,
    load_config,
)
from hrl_sarp_jax.envs.micro import MicroEnv
from hrl_sarp_jax.envs.rewards import goal_reward
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.networks.inputs import micro_inputs_from_views
from hrl_sarp_jax.training import rl_micro as rm
from hrl_sarp_jax.training import validation
from tests.agents._compile import compile_fast
from tests.envs.make_inputs import make_inputs

T, N, S = 240, 8, 3
TINY_NET = NetworkConfig(attention_dim=8, attention_heads=1, goal_embedding=8,
                         micro_stock_hidden=(32, 16), critic_hidden=(32, 32))
# Probe env: caps relaxed so that every Dirichlet goal over 3 sectors is feasible (a 0.35
# sector cap or a 0.10 stock cap with 7 stocks would make most goals unreachable), no
# de-risking (exposure 0 makes the achieved allocation 0), no circuit locks (see _market);
# the reward is dominated by the goal term, with the cost term kept.
PROBE_ENV = EnvConfig(
    micro_episode_days=20,
    constraints=ConstraintConfig(max_stock_weight=1.0, max_sector_weight=1.0, min_cash=0.0,
                                 rebalance_threshold=0.0),
    risk=RiskConfig(derisk_drawdown=1.0, rerisk_drawdown=0.5, event_reduction=0.0),
    reward=RewardConfig(micro_w_micro=1.0, goal_w=1.0, sharpe_w=0.0, drawdown_w=0.0,
                        micro_w_portfolio=0.5, micro_w_value=0.0),
)


def _market(seed: int = 0):
    market, feats = make_inputs(num_days=T, num_stocks=N, num_sectors=S, seed=seed)
    return dataclasses.replace(market, circuit_lock=np.zeros_like(market.circuit_lock)), feats


@pytest.fixture(scope="module")
def inputs():
    return _market()


@pytest.fixture(scope="module")
def env():
    return MicroEnv(N, S, return_window=PROBE_ENV.return_window, goal_source="sampled")


@pytest.fixture(scope="module")
def train_params(inputs):
    return MicroEnv.make_params(*inputs, PROBE_ENV, split=(0, 179))


@pytest.fixture(scope="module")
def val_params(inputs):
    return MicroEnv.make_params(*inputs, PROBE_ENV, split=(180, T - 1))


def _hp(**kw) -> rm.Phase4HParams:
    td3 = TD3Config(actor_lr=3e-3, critic_lr=3e-3, gamma=0.5, tau=0.05, target_noise=0.2,
                    noise_clip=0.5, explore_noise_start=1.0, explore_noise_end=0.2)
    hp = rm.Phase4HParams.from_config(td3)
    return hp.replace(td3=hp.td3.replace(**{k: jnp.float32(v) for k, v in kw.items()}))


# --------------------------------------------------------------------------- observations


def test_compact_obs_expands_to_the_flat_obs_inputs(env, train_params):
    """expand(compact) == micro_inputs_from_views(flat obs) before and after steps, and the
    final observation decodes to the stepped state's weights and goal at day t + 1."""
    p = train_params
    obs, st = env.reset(jax.random.key(3), p)
    for i in range(6):
        ours = rm.expand(rm.compact_from_state(st), p)
        views = env.layout.unflatten(obs)
        np.testing.assert_array_equal(ours.stock, micro_inputs_from_views(views, p.stock_sector))
        np.testing.assert_array_equal(ours.goal, views["goal"])
        np.testing.assert_array_equal(ours.mask, views["stock_mask"] > 0)
        action = jax.random.dirichlet(jax.random.key(10 + i), jnp.ones(N))
        obs2, st2, *_, info = env.step(jax.random.key(20 + i), st, action, p)
        nxt = rm.compact_from_flat(env.layout, info["final_observation"], st.t + 1)
        assert int(nxt.day) == int(st2.t)
        np.testing.assert_array_equal(nxt.weights, st2.port.weights)
        np.testing.assert_array_equal(nxt.goal, st2.goal)
        obs, st = obs2, st2


# --------------------------------------------------------------------------- HER batches


def test_relabelled_batches_fed_to_the_update_carry_the_new_goal(train_params):
    """With her_ratio 1 every sample's goal is the future achieved goal in obs AND next_obs
    (so in the goal-share input column too) and its reward is recomputed for that goal."""
    p = train_params
    g = S + 3
    rng = np.random.default_rng(0)
    L, C = 5, 4
    ach = rng.dirichlet(np.ones(S), (C, L)).astype(np.float32)
    achieved = np.concatenate([ach, np.zeros((C, L, 3), np.float32)], -1)
    old_goal = np.tile(np.array([1.0, 0.0, 0.0, 0, 0, 1], np.float32), (C, L, 1))
    day = np.tile(np.arange(10, 10 + L, dtype=np.int32), (C, 1))
    w = rng.dirichlet(np.ones(N), (C, L)).astype(np.float32)
    obs = rm.CompactObs(jnp.asarray(day), jnp.asarray(w), jnp.asarray(old_goal))
    nxt = rm.CompactObs(jnp.asarray(day + 1), jnp.asarray(w), jnp.asarray(old_goal))
    base_r = rng.normal(size=(C, L)).astype(np.float32)
    tr = buffers.Transition(obs, jnp.asarray(w), jnp.asarray(base_r),
                            jnp.full((C, L), 9.0, jnp.float32), nxt,
                            jnp.zeros((C, L), bool), jnp.zeros((C, L), bool),
                            jnp.asarray(achieved))
    buf = buffers.init(jax.tree.map(lambda x: x[0, 0], tr), rows=L, num_envs=C)
    buf = buffers.add_steps(buf, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tr))
    hp = _hp().replace(her_ratio=jnp.float32(1.0))
    batch = jax.jit(rm.replay_batch, static_argnums=4)(buf, jax.random.key(0), p, hp, 64)
    # recover (episode, step, future) the same way replay_batch drew them
    sample_key, _ = jax.random.split(jax.random.key(0))
    sampled = buffers.sample(buf, sample_key, 64)
    new_goal = np.asarray(sampled.future_goal)
    assert not np.allclose(new_goal[:, :S], old_goal[0, 0, :S])
    np.testing.assert_array_equal(batch.obs.goal, new_goal)
    np.testing.assert_array_equal(batch.next_obs.goal, new_goal)
    # goal-share column (index 22) = goal weight of the stock's own sector x active sectors
    sector = np.asarray(p.stock_sector)
    mask = np.asarray(batch.obs.mask)
    active = len({int(sector[i]) for i in range(N) if mask[0, i]})
    np.testing.assert_allclose(batch.obs.stock[:, :, 22],
                               np.where(mask, new_goal[:, sector] * active, 0.0), rtol=1e-6)
    want = (np.asarray(sampled.transition.reward)
            + np.asarray(goal_reward(jnp.asarray(np.asarray(sampled.transition.achieved_goal)
                                                 [:, :S]), jnp.asarray(new_goal), p.reward)))
    np.testing.assert_allclose(batch.reward, want, rtol=1e-6, atol=1e-6)
    assert not np.any(np.asarray(batch.reward) > 8.0)  # the stale goal reward 9 is gone
    # her_ratio 0: untouched
    batch0 = rm.replay_batch(buf, jax.random.key(0), p, hp.replace(her_ratio=jnp.float32(0)), 64)
    np.testing.assert_array_equal(batch0.obs.goal[:, :g], np.tile(old_goal[0, 0], (64, 1)))


# --------------------------------------------------------------------------- determinism


SMALL_SPEC = rm.Phase4Spec(num_envs=2, steps_per_chunk=8, updates_per_step=1, batch_size=16,
                           buffer_episodes=4, warmup_transitions=6, eval_episodes=2)


@pytest.mark.slow  # keeps the default run short on 2 cores
def test_vmap_over_seeds_equals_a_loop_and_seeds_differ(env, train_params):
    p4 = rm.make_phase4(env, rm.make_networks(TINY_NET), SMALL_SPEC)
    keys, _ = rm.phase4_keys(0, 2)
    hp = _hp()
    init = jax.jit(jax.vmap(p4.init, in_axes=(0, None)))
    states = init(keys, train_params)
    hps = rm.stack_hparams(hp, 2)
    chunk_k = compile_fast(jax.vmap(p4.run_chunk, in_axes=(0, None, 0)), states, train_params,
                           hps)
    out_k, m_k = chunk_k(states, train_params, hps)
    assert float(m_k["updating"][:, -1].min()) == 1.0      # updates ran inside the chunk
    one = jax.tree.map(lambda x: x[0], states)
    chunk_1 = compile_fast(p4.run_chunk, one, train_params, hp)
    for k in range(2):
        out_1, _ = chunk_1(jax.tree.map(lambda x, k=k: x[k], states), train_params, hp)
        got = jax.tree.map(lambda x, k=k: x[k], out_k)
        # Same key streams: start days, stored days and sampled goals agree exactly ...
        np.testing.assert_array_equal(got.buffer.data.obs.day, out_1.buffer.data.obs.day)
        np.testing.assert_array_equal(got.env_state.start, out_1.env_state.start)
        np.testing.assert_allclose(got.buffer.data.obs.goal, out_1.buffer.data.obs.goal,
                                   atol=1e-6)
        # ... and the parameters up to float rounding: batched and unbatched matmuls round
        # differently on CPU, and Adam's g / sqrt(v) turns rounding noise in near-zero
        # gradients into steps of up to lr (3e-3) per update.
        for a, b in zip(jax.tree.leaves(got.agent), jax.tree.leaves(out_1.agent), strict=True):
            np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                       atol=2e-2)
    again, _ = chunk_k(states, train_params, hps)            # same seed: bit-identical
    for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(out_k), strict=True):
        np.testing.assert_array_equal(a, b)
    w = out_k.agent.actor_params["params"]["logit_head"]["kernel"]
    assert not np.allclose(w[0], w[1])                       # different seeds differ
    # truncation is stored as truncation, never as termination
    d = out_k.buffer.data
    assert bool(np.any(np.asarray(d.truncated))) or int(out_k.env_steps[0]) < 40
    assert not bool(np.any(np.asarray(d.terminated)))
    filled = min(int(out_k.buffer.steps[0]), out_k.buffer.rows)   # rows written, in order
    day, nday = np.asarray(d.obs.day)[0, :filled], np.asarray(d.next_obs.day)[0, :filled]
    assert filled > 0
    np.testing.assert_array_equal(nday, day + 1)


def test_lockstep_clock_runs_one_branch_with_bit_identical_results(env, train_params):
    """seeds_chunk passes the seeds' shared counters unbatched, so the warm-up and policy-delay
    conds execute one branch; the per-seed (batched) counters of a plain vmap make every cond
    run both branches and select. The chunk below crosses the warm-up (step 3 of 8), the
    actor's warm-up (2 updates) and the policy delay: both programs take the same decisions
    (exactly) and agree to float rounding (XLA compiles a branch and a select into differently
    fused kernels). Adam's first steps move each parameter by ±lr whatever the gradient's size,
    so a gradient element that is rounding noise (e.g. on an input that is ~0) can take the
    other sign in the other program: up to 2·lr per actor step on a few elements (< 0.5% here:
    a wrong branch or one update more or less would move most of them)."""
    import dataclasses

    spec = dataclasses.replace(SMALL_SPEC, actor_warmup_updates=2)
    p4 = rm.make_phase4(env, rm.make_networks(TINY_NET), spec)
    keys, _ = rm.phase4_keys(0, 2)
    states = jax.jit(jax.vmap(p4.init, in_axes=(0, None)))(keys, train_params)
    hps = rm.stack_hparams(_hp(), 2)
    lockstep = jax.jit(rm.seeds_chunk(p4))
    batched = jax.jit(jax.vmap(p4.run_chunk, in_axes=(0, None, 0)))
    text = lockstep.lower(states, train_params, hps).as_text()
    assert text.count("stablehlo.case") >= 3 or text.count("stablehlo.if") >= 3  # real conds
    a, ma = lockstep(states, train_params, hps)
    b, mb = batched(states, train_params, hps)
    assert np.asarray(ma["updating"]).tolist()[0] == [0, 0, 1, 1, 1, 1, 1, 1]
    assert float(np.sum(np.asarray(ma["actor_updated"]))) == 2 * 2  # updates 4 and 6, 2 seeds
    leaves = jax.tree_util.tree_leaves_with_path((a, ma))
    off, total = 0, 0
    for (path, x), y in zip(leaves, jax.tree.leaves((b, mb)), strict=True):
        name, x, y = jax.tree_util.keystr(path), np.asarray(x), np.asarray(y)
        if name.startswith("[0].agent.actor_"):   # actor params, target, Adam moments
            far = ~np.isclose(x, y, rtol=1e-5, atol=1e-4)
            off, total = off + int(far.sum()), total + x.size
            assert np.max(np.abs(x - y), initial=0.0) <= 2 * 2 * 3e-3, name  # 2 actor steps
        elif np.issubdtype(x.dtype, np.floating):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4, err_msg=name)
        else:  # days, counters, keys, flags
            np.testing.assert_array_equal(x, y)
    assert off <= 0.005 * total, (off, total)
    assert int(a.agent.step[0]) == 6 and int(a.env_steps[0]) == 16
    # Phase 5 carries the buffer over and zeroes env_steps: warm-up counts what is stored,
    # so its first step updates
    _, m2 = lockstep(a.replace(env_steps=jnp.zeros_like(a.env_steps)), train_params, hps)
    assert np.asarray(m2["updating"]).min() == 1.0


# --------------------------------------------------------------------------- learning


def _learn(env, train_params, val_params, spec: rm.Phase4Spec, chunks: int):
    p4 = rm.make_phase4(env, rm.make_networks(TINY_NET), spec)
    keys, eval_key = rm.phase4_keys(7, 1)
    hp = _hp()
    state = p4.init(keys[0], train_params)
    chunk = compile_fast(p4.run_chunk, state, train_params, hp)
    evaluate = compile_fast(p4.evaluate, state.agent.actor_params, val_params, eval_key)
    before = jax.device_get(evaluate(state.agent.actor_params, val_params, eval_key))
    for _ in range(chunks):
        state, _ = chunk(state, train_params, hp)
    after = jax.device_get(evaluate(state.agent.actor_params, val_params, eval_key))
    return before, after, state


LEARN_SPEC = rm.Phase4Spec(num_envs=8, steps_per_chunk=100, updates_per_step=1, batch_size=64,
                           buffer_episodes=64, warmup_transitions=256,
                           explore_decay_updates=1500, eval_episodes=16)


def test_micro_her_learns_to_meet_held_out_goals(env, train_params, val_params):
    """Held-out sampled goals (a key stream training never uses) on the validation window:
    mean cosine >= 0.95 after 1,000 updates (measured 0.975; equal weight 0.81), with a mean
    cost of < 2e-3 of value per day (measured 1.0e-3)."""
    before, after, state = _learn(env, train_params, val_params, LEARN_SPEC, chunks=10)
    assert int(state.agent.step) >= 950
    assert after["val_goal_alignment"] >= 0.95, (before, after)
    assert after["val_goal_alignment"] > before["val_goal_alignment"] + 0.05
    assert after["val_goal_alignment"] > after["val_equal_weight_goal_alignment"] + 0.05
    assert after["val_cost_frac"] < 2e-3, after


# --------------------------------------------------------------------------- host loop


@pytest.mark.slow  # three host runs, each compiling init, chunk and evaluation (~60-200 s)
def test_run_phase4_summary_and_exact_resume(tmp_path, inputs):
    """Sampled goals (no Phase 3), a random actor (no Phase 2); 2 chunks in one go equal 1
    chunk, an interruption and a resume, bit for bit."""
    from hrl_sarp_jax.checkpointing import create_run, read_phase_summary

    market, feats = inputs
    from tests.envs.make_inputs import make_dates

    dates = make_dates(T, 0)
    meta = types.SimpleNamespace(dates=dates)
    cfg = Config(
        data=DataConfig(val_start=str(dates[180]), test_start=str(dates[T - 1])),
        env=PROBE_ENV, networks=TINY_NET,
        train=TrainConfig(td3=TD3Config(num_envs=2, batch_size=16, buffer_episodes=4,
                                        total_env_steps=32), eval_interval=1, keep_latest=2),
    )
    spec = dataclasses.replace(SMALL_SPEC, steps_per_chunk=8)

    full = create_run(tmp_path, "full", cfg, "fp", resume=False)
    s_full = rm.run_phase4(full, cfg, market, meta, feats, seeds=1, spec=spec)
    part = create_run(tmp_path, "part", cfg, "fp", resume=False)
    rm.run_phase4(part, cfg, market, meta, feats, seeds=1, spec=spec, chunk_limit=1)
    s_part = rm.run_phase4(part, cfg, market, meta, feats, seeds=1, spec=spec, resume=True)
    assert s_part["resumed_from_step"] == 16
    for key in ("env_steps", "val_sharpe", "val_equal_weight_sharpe", "val_goal_alignment"):
        assert s_full[key] == s_part[key], key
    saved = read_phase_summary(full, 4)
    assert saved["env_steps"] == 32 and saved["goal_source"] == "sampled"
    assert saved["phase3"].startswith("no checkpoint")
    # 4 episodes of micro_episode_days = 20 steps: a ring of 40 vector steps of 2 envs
    assert saved["buffer"] == {"rows": 40, "transitions": 80}
    for key in ("wall_s", "val_sharpe", "val_equal_weight_sharpe", "val_goal_alignment",
                "val_cost_frac"):
        assert np.isfinite(saved[key]), key
    assert len(saved["per_seed"]["val_goal_alignment"]) == 1
    assert "episode_sharpe" not in saved["per_seed"]  # kept for the margin, not logged
    vs = saved["final_vs_start"]
    assert len(vs["diff"]) == len(vs["se"]) == 1 and vs["improved_seeds"] in (0, 1)
    with pytest.raises(Exception, match="resume"):
        rm.run_phase4(full, cfg, market, meta, feats, seeds=1, spec=spec)

    # a huge selection margin, interrupted and resumed (the start's per-episode Sharpes come
    # back from the checkpoint): 'best' stays the starting actor, while the plain maximum may
    # move; the other results are those of the run without the margin, bit for bit
    from hrl_sarp_jax.checkpointing import PhaseCheckpointer

    mcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, checkpoint_margin=1e6))
    marg = create_run(tmp_path, "marg", mcfg, "fp", resume=False)
    rm.run_phase4(marg, mcfg, market, meta, feats, seeds=1, spec=spec, chunk_limit=1)
    s_marg = rm.run_phase4(marg, mcfg, market, meta, feats, seeds=1, spec=spec, resume=True)
    assert s_marg["best_step"] == 0 and s_marg["checkpoint_margin"] == 1e6
    assert s_marg["final_vs_start"] == vs and s_marg["val_sharpe"] == s_full["val_sharpe"]
    with PhaseCheckpointer(marg, 4, read_only=True) as ck:
        assert s_marg["best_select"] == ck.metrics(0)["val_sharpe"]
        assert ck.metrics(32)["val_select"] < ck.metrics(32)["val_sharpe"] - 1.0

    # anchored (train.td3.anchor_kl_coef > 0): the anchor comes back from the checkpoint, so
    # an interrupted and resumed run is the uninterrupted one
    acfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, td3=dataclasses.replace(cfg.train.td3, anchor_kl_coef=1.0)))
    aspec = dataclasses.replace(spec, anchored=True)
    afull = create_run(tmp_path, "afull", acfg, "fp", resume=False)
    s_af = rm.run_phase4(afull, acfg, market, meta, feats, seeds=1, spec=aspec)
    apart = create_run(tmp_path, "apart", acfg, "fp", resume=False)
    rm.run_phase4(apart, acfg, market, meta, feats, seeds=1, spec=aspec, chunk_limit=1)
    s_ap = rm.run_phase4(apart, acfg, market, meta, feats, seeds=1, spec=aspec, resume=True)
    for key in ("val_sharpe", "val_goal_alignment", "val_cost_frac"):
        assert s_af[key] == s_ap[key], key
    assert s_af["anchor"].endswith("weight 1") and s_af["val_sharpe"] != s_full["val_sharpe"]
    kl = [r["anchor_kl"] for r in apart.read_metrics() if r["phase"] == 4 and "anchor_kl" in r]
    assert kl and max(kl) > 0


def test_frozen_macro_goal_source_sets_weekly_goals(inputs):
    """macro_goal_fn turns MacroActor params into MicroEnv's 'policy' goal source: goals are
    projected sector weights ⊕ a regime one-hot, and change only at week ends."""
    from hrl_sarp_jax.envs.obs import MacroObsLayout
    from hrl_sarp_jax.networks.inputs import macro_inputs_from_views
    from hrl_sarp_jax.networks.macro import MacroActor

    market, feats = inputs
    f_s = int(feats.sector.shape[-1])
    layout = MacroObsLayout(S, f_s)
    example = macro_inputs_from_views(layout.unflatten(jnp.zeros(layout.size, jnp.float32)))
    macro = MacroActor(TINY_NET).init(jax.random.key(1), *example)
    env = MicroEnv(N, S, goal_source="policy", goal_fn=rm.macro_goal_fn(TINY_NET, S, f_s))
    p = MicroEnv.make_params(market, feats, PROBE_ENV, split=(0, 179), policy_params=macro)

    def roll(key):
        _, st = env.reset(key, p)

        def body(st, k):
            _, st2, *_ = env.step(k, st, jnp.full((N,), 1.0 / N), p)
            return st2, (st.goal, st2.goal, st2.t)

        return jax.lax.scan(body, st, jax.random.split(key, 15))[1]

    before, after, t = jax.device_get(jax.jit(roll)(jax.random.key(2)))
    assert np.all(np.isfinite(after))
    np.testing.assert_allclose(after[:, S:].sum(-1), 1.0)
    assert np.all(after[:, :S] >= 0) and np.all(after[:, :S].sum(-1) <= 1.0 + 1e-5)
    changed = np.any(before != after, axis=-1)
    week_end = np.asarray(market.week_end)[t]
    assert not np.any(changed & ~week_end)


def test_replay_ratio_and_warmup_come_from_the_config():
    td3 = TD3Config(num_envs=4, batch_size=32, total_env_steps=400, updates_per_step=3,
                    warmup_transitions=7)
    spec = rm.Phase4Spec.from_config(td3)
    assert (spec.updates_per_step, spec.warmup_transitions) == (3, 7)
    assert spec.explore_decay_updates == (400 // 4) * 3 // 2  # half the planned updates
    with pytest.raises(ConfigError, match=r"^config key 'train\.td3\.num_envs' = 0 must be >= 1$"):
        load_config(None, ["train.td3.num_envs=0"])
    # Phase 4's checkpoint rule is one of the two validation metrics it records
    rm.Phase4Spec.from_config(TD3Config(checkpoint_metric="val_sharpe"))
    with pytest.raises(ConfigError, match=r"train\.td3\.checkpoint_metric = 'sharpe' is not "
                                          r"one of val_goal_alignment, val_sharpe"):
        rm.Phase4Spec.from_config(TD3Config(checkpoint_metric="sharpe"))


def test_replay_capacity_does_not_grow_with_the_envs():
    """buffer_episodes x episode days transitions, in whole vector steps of the envs: the
    quick preset's 64 x 126 = 8,064 at 32 envs (252 rows) and 8,192 at 4,096 envs (2 rows),
    where an episode-slot buffer needed a whole 126-day slot per env (516,096)."""
    rows = {e: rm.Phase4Spec(num_envs=e, buffer_episodes=64).buffer_rows(126)
            for e in (1, 32, 4096)}
    assert rows == {1: 8064, 32: 252, 4096: 2}
    assert rm.Phase4Spec(num_envs=5, buffer_episodes=1).buffer_rows(12) == 3  # 15 >= 12


def test_an_anchored_phase4_anchors_to_the_actor_it_starts_from(env, train_params):
    """``train.td3.anchor_kl_coef`` > 0 makes the spec anchored; the agent's anchor is then the
    actor handed to ``init`` (Phase 2's), not the random one; unanchored agents keep none."""
    assert rm.Phase4Spec.from_config(TD3Config(anchor_kl_coef=0.5)).anchored
    assert not rm.Phase4Spec.from_config(TD3Config()).anchored
    spec = dataclasses.replace(SMALL_SPEC, anchored=True)
    p4 = rm.make_phase4(env, rm.make_networks(TINY_NET), spec)
    key = rm.phase4_keys(0, 1)[0][0]
    fresh = jax.jit(p4.init)(key, train_params)
    given = jax.tree.map(lambda x: x + 0.5, fresh.agent.actor_params)
    state = jax.jit(p4.init)(key, train_params, given)
    for a, b, c in zip(jax.tree.leaves(state.agent.anchor), jax.tree.leaves(given),
                       jax.tree.leaves(fresh.agent.anchor), strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    plain = rm.make_phase4(env, rm.make_networks(TINY_NET), SMALL_SPEC)
    assert jax.eval_shape(plain.init, key, train_params).agent.anchor is None


def test_a_run_saved_before_checkpoint_metric_keeps_goal_alignment(tmp_path):
    import yaml

    from hrl_sarp_jax.checkpointing import create_run, open_run
    from hrl_sarp_jax.config import Config, load_run_config, to_dict

    assert Config().train.td3.checkpoint_metric == "val_sharpe"
    saved = to_dict(Config())
    del saved["train"]["td3"]["checkpoint_metric"]
    run = create_run(tmp_path, "old", saved, "fp", resume=False)
    (run.root / "config.yaml").write_text(yaml.safe_dump(saved))  # as an old version wrote it
    for cfg in (open_run(run.root).config, load_run_config(run.root / "config.yaml")):
        assert cfg.train.td3.checkpoint_metric == "val_goal_alignment"


def test_continuous_validation_is_one_walk_cut_into_blocks(env, val_params):
    """train.validation: continuous: one episode from the window's first day to its end; the
    validation Sharpe is that walk's daily Sharpe and its 20-day blocks (the remainder joining
    the last) are the per-episode Sharpes, against NumPy over ``walk``'s daily returns."""
    params, episodes = validation.daily_plan("continuous", val_params, 16)
    days = int(val_params.t_hi) - int(val_params.start_lo)
    assert episodes == 1 and params.max_steps_in_episode == days > 2 * 20
    assert int(params.start_hi) == int(params.start_lo) == 180
    spec = dataclasses.replace(LEARN_SPEC, eval_episodes=1, eval_block_days=20)
    p4 = rm.make_phase4(env, rm.make_networks(TINY_NET), spec)
    keys, eval_key = rm.phase4_keys(7, 1)
    actor = p4.init(keys[0], params).agent.actor_params
    ev = jax.device_get(jax.jit(p4.evaluate)(actor, params, eval_key))
    # evaluate draws episode e's goals from split(key, episodes)[e]
    r, alive = jax.device_get(jax.jit(p4.walk)(actor, params, jax.random.split(eval_key, 1)[0]))
    r = np.asarray(r, np.float64)[np.asarray(alive)]
    assert r.size == days

    def numpy_sharpe(x):
        return x.mean() / x.std(ddof=1) * np.sqrt(252)

    np.testing.assert_allclose(ev["val_sharpe"], numpy_sharpe(r), rtol=1e-3)
    starts = list(range(0, 20 * (days // 20), 20))
    want = [numpy_sharpe(r[i:j]) for i, j in zip(starts, [*starts[1:], days], strict=True)]
    np.testing.assert_allclose(ev["episode_sharpe"], want, rtol=1e-3)
    assert int(ev["val_days"]) == days
    assert rm.eval_windows(spec, params) == len(want) >= 2
