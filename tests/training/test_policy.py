"""load_policy on a real run (Phases 1 and 2 on the smoke preset): the restored actors are the
phases' best params, seeds are paired k mod K, and missing levels are one clear error."""

from __future__ import annotations

import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.checkpointing import PhaseCheckpointer, content_hash, create_run, open_run
from hrl_sarp_jax.envs.params import seed_axes
from hrl_sarp_jax.errors import CheckpointError
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training.policy import (
    TrainedPolicy,
    load_policy,
    load_pretrained_policy,
    pair_seeds,
    uses_rl,
)
from hrl_sarp_jax.training.runner import PREPARE, restore_phase_state, run_pretrain_phase


@pytest.fixture(scope="module")
def p12(smoke_market, tmp_path_factory):
    """A run with Phase 1 and Phase 2 trained (tiny networks, 4 epochs each, 1 seed)."""
    _, market, meta, feats, cfg = smoke_market
    root = tmp_path_factory.mktemp("policy")
    run = create_run(root, "p12", cfg, "fp", resume=False)
    for phase in (1, 2):
        run_pretrain_phase(phase, cfg, market, meta, feats, run, progress=False)
    return root, run


def _best_val(run, phase: int) -> float:
    with PhaseCheckpointer(run, phase, read_only=True) as ck:
        return float(ck.metrics(ck.latest_step())["best_val_loss"])


def test_loads_the_best_params_of_phases_1_and_2(p12, smoke_market):
    _, market, meta, feats, cfg = smoke_market
    _, run = p12
    policy = load_policy(open_run(run.root), cfg, market, meta, feats)
    assert isinstance(policy, TrainedPolicy) and policy.seeds == 1
    assert policy.source["macro"].startswith("phase 1") and "latest step" in policy.source["macro"]
    assert policy.source["micro"].startswith("phase 2")

    # the very arrays of the latest checkpoints (every seed's best_params so far)
    p1, _, _ = restore_phase_state(run, 1, cfg, market, meta, feats)
    assert content_hash(policy.macro_actor) == content_hash(p1.best_params)
    p2, _, _ = restore_phase_state(run, 2, cfg, market, meta, feats)
    for a, b in zip(jax.tree.leaves(policy.micro_actor), jax.tree.leaves(p2.best_params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # ... and they are the best params: evaluated on the validation split they reproduce the
    # lowest validation loss each phase recorded
    for phase, params in ((1, policy.macro_actor), (2, policy.micro_actor)):
        prep = PREPARE[phase](cfg, market, meta, feats)
        loss, _ = pt.make_evaluate(prep.task)(params, prep.hp, prep.val)
        np.testing.assert_allclose(np.asarray(loss), [_best_val(run, phase)], rtol=1e-5)


def test_later_phases_read_the_latest_best_params_not_the_best_ranked_checkpoint(
        p12, smoke_market, tmp_path):
    """A checkpoint is ranked by its *current* params' validation loss; the best params so far
    ride in every checkpoint. A later checkpoint whose current params are worse (overfitting)
    but whose best params improved (a seed's best epoch after the best-ranked chunk) must be
    the one read: by the evaluation's policy, Phase 3's start and Phase 4's Micro."""
    from hrl_sarp_jax.training.rl_macro import load_phase1_actor, load_phase2_micro

    _, market, meta, feats, cfg = smoke_market
    run = _copy_run(p12[1], tmp_path / "r", (1, 2))
    newer = {}
    for phase in (1, 2):
        state, _, step = restore_phase_state(run, phase, cfg, market, meta, feats)
        better = state.replace(
            best_params=jax.tree.map(lambda x: x + 0.01, state.best_params),
            best_val=state.best_val - 0.01, last_val=state.last_val + 1.0)
        with PhaseCheckpointer(run, phase, best_metric="val_loss", higher_is_better=False) as ck:
            ck.save(step + 1, better, metrics={
                "val_loss": float(np.mean(np.asarray(better.last_val))),
                "best_val_loss": float(np.mean(np.asarray(better.best_val)))})
        with PhaseCheckpointer(run, phase, read_only=True) as ck:
            assert ck.best_step() <= step and ck.latest_step() == step + 1
        newer[phase] = content_hash(better.best_params)
    policy = load_policy(open_run(run.root), cfg, market, meta, feats)
    assert content_hash(policy.macro_actor) == newer[1]
    assert content_hash(policy.micro_actor) == newer[2]   # 1 seed: the seed itself
    macro, how = load_phase1_actor(run, cfg, market, meta, feats, 1)
    assert content_hash(macro) == newer[1] and how["phase1"].endswith(f"step {step + 1}")
    micro, _ = load_phase2_micro(run, cfg, market, meta, feats)
    assert content_hash(jax.tree.map(lambda x: np.asarray(x)[None], micro)) == newer[2]


def test_pair_seeds_takes_k_mod_each_count():
    macro = {"w": jnp.arange(3.0)[:, None] * jnp.ones((3, 2))}     # 3 Macro seeds
    micro = {"w": 10.0 + jnp.arange(2.0)}                           # 2 Micro seeds
    m, u, k, note = pair_seeds(macro, micro)
    assert k == 3 and "k mod 3" in note and "k mod 2" in note
    np.testing.assert_array_equal(np.asarray(m["w"])[:, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(np.asarray(u["w"]), [10.0, 11.0, 10.0])
    m, u, k, note = pair_seeds(micro, {"v": jnp.ones((1, 4))})      # a broadcast single seed
    assert k == 2 and np.asarray(u["v"]).shape == (2, 4)
    _, _, k, note = pair_seeds(macro, macro)
    assert k == 3 and "seed k with Micro seed k" in note


def _copy_run(src, dst, keep_phases):
    shutil.copytree(src.root, dst)
    for p in dst.glob("phase*"):
        if p.name not in {f"phase{k}" for k in keep_phases}:
            shutil.rmtree(p)
    return open_run(dst)


@pytest.mark.parametrize(("keep", "needs"), [((1,), ["Micro agent", "--phase 2"]),
                                             ((2,), ["Macro agent", "--phase 1"]),
                                             ((), ["Macro agent", "Micro agent"])])
def test_a_missing_level_names_the_phases_to_train(p12, smoke_market, tmp_path, keep, needs):
    _, market, meta, feats, cfg = smoke_market
    run = _copy_run(p12[1], tmp_path / "r", keep)
    with pytest.raises(CheckpointError) as info:
        load_policy(run, cfg, market, meta, feats)
    msg = str(info.value)
    assert "\n" not in msg and all(n in msg for n in needs), msg
    assert "hrl-sarp train --phase" in msg and "--run p12" in msg


def test_phase5_goes_through_training_joint(p12, smoke_market, tmp_path, monkeypatch):
    _, market, meta, feats, cfg = smoke_market
    run = _copy_run(p12[1], tmp_path / "r5", (1, 2))
    with PhaseCheckpointer(run, 5, best_metric="val_sharpe") as ck:
        ck.save(1, {"x": jnp.zeros(2)}, metrics={"val_sharpe": 0.5})
    # the module cannot be imported: one clear line
    monkeypatch.setitem(sys.modules, "hrl_sarp_jax.training.joint", None)
    with pytest.raises(CheckpointError, match="Phase-5 checkpoint") as info:
        load_policy(run, cfg, market, meta, feats)
    assert "\n" not in str(info.value)
    # with it, its policy is returned as is
    sentinel = TrainedPolicy({"m": jnp.zeros((1, 1))}, {"u": jnp.zeros((1, 1))}, 1,
                             {"macro": "phase 5", "micro": "phase 5"})
    fake = types.ModuleType("hrl_sarp_jax.training.joint")
    fake.load_phase5_policy = lambda r, c, *_: sentinel if r.root == run.root else None
    monkeypatch.setitem(sys.modules, "hrl_sarp_jax.training.joint", fake)
    assert load_policy(run, cfg, market, meta, feats) is sentinel


@pytest.mark.slow  # trains Phases 1-4 (tiny): ~4 min on 2 cores with a cold compile cache
def test_phase3_and_phase4_checkpoints_take_precedence(smoke_market, tmp_path):
    """Phase 3 (1 seed) and Phase 4 (2 seeds) over Phases 1-2: the Macro actor is the one
    Phase 4 froze as its goal source, the Micro actors (every seed) reproduce the validation
    goal alignment Phase 4 recorded with its best checkpoint; seeds are paired k mod 1."""
    from hrl_sarp_jax.training import rl_macro, rl_micro
    from tests.training.conftest import smoke_cfg

    _, market, meta, feats, _ = smoke_market
    cfg = smoke_cfg("train.ppo.num_envs=2", "train.ppo.rollout_steps=8",
                    "train.ppo.minibatch_size=4", "train.ppo.epochs=1",
                    "train.ppo.total_env_steps=16", "train.eval_interval=1",
                    "env.macro_episode_weeks=4", "env.micro_episode_days=10", "train.seeds=1")
    run = create_run(tmp_path, "p1234", cfg, "fp", resume=False)
    for phase in (1, 2):
        run_pretrain_phase(phase, cfg, market, meta, feats, run, progress=False)
    rl_macro.run_phase3(run, cfg, market, meta, feats)
    spec = rl_micro.Phase4Spec(num_envs=2, steps_per_chunk=8, batch_size=8, buffer_episodes=4,
                               warmup_transitions=8, eval_episodes=2)
    rl_micro.run_phase4(run, cfg, market, meta, feats, seeds=2, spec=spec, total_env_steps=32,
                        eval_every_chunks=1)

    policy = load_policy(open_run(run.root), cfg, market, meta, feats)
    assert policy.seeds == 2 and "k mod 1" in policy.source["seeds"]
    assert policy.source["macro"].startswith("phase 3")
    assert policy.source["micro"].startswith("phase 4: MicroActor of all 2 seed(s)")
    # Phase 4 trained Micro seed k under Macro seed k mod 1: the pairs the policy evaluates
    frozen, _ = rl_micro.load_phase3_macro(run, cfg, market, meta, feats, 2)
    for a, b in zip(jax.tree.leaves(policy.macro_actor), jax.tree.leaves(frozen), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    setup = rl_micro.setup_phase4(cfg, market, meta, feats, macro_params=frozen, spec=spec,
                                  seeds=2)
    _, eval_key = rl_micro.phase4_keys(cfg.seed, 2)
    ev = jax.jit(jax.vmap(setup.p4.evaluate, in_axes=(0, seed_axes(setup.val_params), None)))(
        policy.micro_actor, setup.val_params, eval_key)
    with PhaseCheckpointer(run, 4, read_only=True) as ck:
        recorded = ck.metrics(ck.best_step())["val_goal_alignment"]
    np.testing.assert_allclose(float(np.mean(np.asarray(ev["val_goal_alignment"]))), recorded,
                               rtol=1e-5)


def test_the_pretrained_hierarchy_is_phases_1_and_2_and_only_an_rl_policy_needs_it(
        p12, smoke_market, tmp_path):
    _, market, meta, feats, cfg = smoke_market
    run = open_run(p12[1].root)
    policy = load_policy(run, cfg, market, meta, feats)
    pre = load_pretrained_policy(run, cfg, market, meta, feats)
    assert content_hash(pre.macro_actor) == content_hash(policy.macro_actor)  # same restore
    assert content_hash(pre.micro_actor) == content_hash(policy.micro_actor)
    assert not uses_rl(policy)  # a Phase 1 + 2 policy is its own pre-trained hierarchy
    rl = TrainedPolicy(policy.macro_actor, policy.micro_actor, 1,
                       {"macro": "phase 3: MacroActor of all 1 seed(s), best step 4",
                        "micro": policy.source["micro"]})
    assert uses_rl(rl) and uses_rl(TrainedPolicy(None, None, 1, {}))  # Phase 5 records none
    assert load_pretrained_policy(_copy_run(p12[1], tmp_path / "r", (1,)), cfg, market, meta,
                                  feats) is None
