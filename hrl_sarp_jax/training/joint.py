"""Phase 5: alternating joint fine-tuning of the Macro (PPO) and Micro (TD3+HER) agents.

# HOST ONLY (the compiled programs are Phase 3's and Phase 4's own chunk functions)
Both agents act on one accounting (``envs.common``): MacroEnv runs the *current* Micro actor
daily inside each week as its allocator, and MicroEnv takes its weekly goals from the *current*
Macro actor. Each round, per seed k (K seeds vmapped, seed k's Macro paired with seed k's
Micro through per-seed ``EnvParams.policy_params``):

  1. Macro block: PPO updates of Macro_k in MacroEnv with Micro_k frozen as the allocator;
  2. Micro block: TD3+HER updates of Micro_k in MicroEnv with Macro_k (just updated) setting
     goals;
  3. validation: the hierarchy (Macro_k + Micro_k) on the validation window, deterministic,
     against the equal-weight allocation on the same episodes; a checkpoint of both states
     (latest-N + best by mean ``val_sharpe``).

Learning rates are Phases 3-4's times ``train.joint.lr_scale`` (0.1, the original's intended
value), with a fresh warmup + cosine PPO schedule over Phase 5's updates (Phase 3's schedule
ended at its floor). Both agents start from their phase's best checkpoint; the Micro replay
buffer, env states and keys carry over from Phase 4. Episode starts use the whole training
window (the curriculum's 'mixed' stage). ``--resume`` continues bit-exactly from the latest round.

The original's Phase 5 was a stub; its unused implementation could never reach a Macro step
(reference §5.7).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.optim import copy_injected
from hrl_sarp_jax.checkpointing import (
    PhaseCheckpointer,
    read_phase_summary,
    restore_chosen,
    write_phase_summary,
)
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.data.loader import MarketArrays, MarketMeta
from hrl_sarp_jax.envs.params import seed_axes, with_policy
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import FeatureSet
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import rl_macro, rl_micro, validation
from hrl_sarp_jax.training.host_loop import run_loop
from hrl_sarp_jax.training.ppo_loop import (
    chunk_program,
    evaluate_program,
    init_program,
    place_env_params,
)
from hrl_sarp_jax.training.programs import compile_ahead
from hrl_sarp_jax.training.selection import RankedCheckpoints
from hrl_sarp_jax.training.sharding import replicate, seed_mesh_for, shard_seeds, to_host
from hrl_sarp_jax.types import Params, PyTree
from hrl_sarp_jax.utils.trees import first_member, take_members

PHASE = 5
BEST_METRIC = "val_sharpe"
JOINT_STAGE = cur.STAGE_NAMES.index("mixed")
"""Episodes start at any week end of the training window (the original forced its 'hard'
stage here; fine-tuning on crash windows only would bias both agents toward them)."""
_I32 = jnp.int32


# --------------------------------------------------------------------------- per-seed params


def micro_policy_params(micro_actor: Params, stock_sector: np.ndarray, k: int) -> PyTree:
    """MacroEnv allocator params for K seeds: ``{"actor": [K] MicroActor, "stock_sector":
    [K, N]}``."""
    sector = jnp.broadcast_to(jnp.asarray(stock_sector, _I32), (k, len(stock_sector)))
    return {"actor": micro_actor, "stock_sector": sector}


def macro_actor_of(state3: rl_macro.Phase3State) -> Params:
    """The MacroActor half of (stacked) MacroActorCritic params."""
    return {"params": state3.train.params["params"]["actor"]}


# --------------------------------------------------------------------------- setup


@dataclasses.dataclass
class Phase5Setup:
    """Programs, env params and hparams of Phase 5 (HOST ONLY)."""

    s3: rl_macro.Phase3Setup
    s4: rl_micro.Phase4Setup
    seeds: int
    macro_chunks_per_round: int
    micro_chunks_per_round: int
    rounds: int
    hp3: Any
    hp4: Any
    programs: dict[str, Callable]
    starts: cur.StartSet
    stock_sector: np.ndarray
    """[N] each stock's sector, on the host (the env params get placed on the seed mesh)."""


def _scaled_hparams(cfg: Config, s3: rl_macro.Phase3Setup, s4: rl_micro.Phase4Setup, k: int):
    scale = jnp.float32(cfg.train.joint.lr_scale)
    hp3 = rl_macro.stack_hparams(s3.hp.replace(lr=s3.hp.lr * scale), k)
    td3 = s4.hp.td3.replace(actor_lr=s4.hp.td3.actor_lr * scale,
                            critic_lr=s4.hp.td3.critic_lr * scale)
    hp4 = rl_micro.stack_hparams(s4.hp.replace(td3=td3), k)
    return hp3, hp4


def setup_phase5(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                 example_micro: Params, example_macro: Params, seeds: int) -> Phase5Setup:
    """Build Phase 5's programs. ``example_*``: one seed's actor params (shapes only matter)."""
    j, k = cfg.train.joint, int(seeds)
    ppo = cfg.train.ppo
    macro_updates = max(1, math.ceil(j.macro_env_steps / ppo.rollout_steps))
    # the Macro block runs in Phase 3's chunks when they divide it: Phase 3's own programs
    upc = int(cfg.train.eval_interval)
    if upc < 1 or macro_updates % upc:
        upc = macro_updates
    cfg3 = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_interval=upc))
    s3 = rl_macro.setup_phase3(cfg3, market, meta, feats, micro_params=example_micro,
                               total_env_steps=macro_updates * ppo.rollout_steps * j.rounds)
    s4 = rl_micro.setup_phase4(cfg, market, meta, feats, macro_params=example_macro)
    sp4 = s4.p4.spec
    micro_chunks = max(1, math.ceil(j.micro_env_steps / (sp4.num_envs * sp4.steps_per_chunk)))
    hp3, hp4 = _scaled_hparams(cfg, s3, s4, k)
    starts = cur.stage_starts(JOINT_STAGE, s3.windows)
    return Phase5Setup(s3, s4, k, macro_updates // upc, micro_chunks, int(j.rounds), hp3, hp4,
                       _programs(s3, s4), starts, np.asarray(s3.train_params.stock_sector))


def _programs(s3: rl_macro.Phase3Setup, s4: rl_micro.Phase4Setup) -> dict[str, Callable]:
    """Phase 3's and Phase 4's pure functions vmapped over seeds, env params mapped on
    ``policy_params`` only (jit caches one executable per shape)."""
    p3, p4 = s3.program, s4.p4
    ax3 = seed_axes(s3.train_params)
    micro = rl_micro.seed_programs(p4, s4.train_params, s4.val_params)  # Phase 4's own
    return {  # Phase 3's own programs as well (ppo_loop.compile_programs)
        "init3": init_program(p3),
        "chunk3": chunk_program(p3, ax3, True),
        "eval3": evaluate_program(p3, seed_axes(s3.val_params)),
        "chunk4": micro["chunk"],
        "eval4": micro["evaluate"],
    }


# --------------------------------------------------------------------------- restoring


def _abstract(tree: PyTree) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def restore_phase3_state(run: Any, cfg: Config, market: MarketArrays, meta: MarketMeta,
                         feats: FeatureSet) -> tuple[rl_macro.Phase3State, dict[str, Any]]:
    """Phase 3's ``train.checkpoint`` state (all its seeds) or a CheckpointError saying to train
    Phase 3."""
    if not (run.phase_dir(3) / "ckpt").is_dir():
        raise CheckpointError(f"phase 5 needs phase 3 of run {run.name}: run `hrl-sarp train "
                              f"--phase 3 --run {run.name}` first")
    summary = read_phase_summary(run, 3) or {}
    k3 = int(summary.get("seeds", cfg.train.seeds))
    abstract = rl_macro.abstract_state(cfg, market, meta, feats, k3)
    state, _meta, step = restore_chosen(run, 3, abstract, cfg.train.checkpoint)
    return state, {"phase3": f"{cfg.train.checkpoint} step {step} ({k3} seed(s))"}


def restore_phase4_state(run: Any, cfg: Config, market: MarketArrays, meta: MarketMeta,
                         feats: FeatureSet, example_macro: Params
                         ) -> tuple[rl_micro.Phase4State, dict[str, Any]]:
    """Phase 4's ``train.checkpoint`` state (all its seeds: actor, critics, optimisers, replay
    buffer)."""
    if not (run.phase_dir(4) / "ckpt").is_dir():
        raise CheckpointError(f"phase 5 needs phase 4 of run {run.name}: run `hrl-sarp train "
                              f"--phase 4 --run {run.name}` first")
    state, _meta, step = rl_micro.restore_phase4(run, cfg, market, meta, feats, example_macro,
                                                 cfg.train.checkpoint)
    k4 = int(jax.tree.leaves(state)[0].shape[0])
    return state, {"phase4": f"{cfg.train.checkpoint} step {step} ({k4} seed(s))"}


def _pair(state: PyTree, have: int, k: int) -> tuple[PyTree, str]:
    """State with K members: member k is saved member k mod ``have``."""
    if have == k:
        return state, "seed k from seed k"
    return take_members(state, np.arange(k) % have), f"seed k from seed k mod {have}"


@jax.jit
def fresh_ppo_optimizer(state3: rl_macro.Phase3State, template: rl_macro.Phase3State
                        ) -> rl_macro.Phase3State:
    """``state3`` (Phase 3's) with Phase 5's optimiser (``template.train.tx``: a new warmup +
    cosine schedule) and zeroed counters; the injected lr / clip norm from ``template`` (one
    program: op by op it compiled one per leaf shape)."""
    ts = template.train
    params = state3.train.params
    opt = jax.vmap(ts.tx.init)(params)
    opt = copy_injected(ts.opt_state, opt)
    train = ts.replace(params=params, opt_state=opt, step=jnp.zeros_like(ts.step))
    return state3.replace(train=train, update=jnp.zeros_like(state3.update),
                          env_steps=jnp.zeros_like(state3.env_steps))


# --------------------------------------------------------------------------- host loop


def _initial_states(setup: Phase5Setup, cfg: Config, state3_saved, state4_saved):
    """Phase 5's starting (macro, micro) states from the saved Phase 3 / 4 states."""
    k, pr = setup.seeds, setup.programs
    micro_pp = micro_policy_params(state4_saved.agent.actor_params,
                                   setup.stock_sector, k)
    train3 = with_policy(setup.s3.train_params, micro_pp)
    template = pr["init3"](rl_macro.phase3_keys(cfg.seed + 5, k), setup.hp3, train3,
                           setup.starts)
    state3 = fresh_ppo_optimizer(state3_saved, template)
    state3 = state3.replace(env=template.env, obs=template.obs, ep_return=template.ep_return,
                            ep_length=template.ep_length, key=template.key)
    state4 = state4_saved.replace(env_steps=jnp.zeros_like(state4_saved.env_steps))
    return state3, state4


def _compile(setup: Phase5Setup, state3, state4, mesh: Any) -> tuple[float, dict[str, str]]:
    """Compile the four programs ahead of time (replacing the jitted ones in ``setup``);
    returns the seconds spent and each program's fingerprint (``training.programs``). The
    Macro block's inputs are placed as Phase 3 places its own (``ppo_loop.compile_programs``),
    so its programs are Phase 3's (a cache hit)."""
    pr, k = setup.programs, setup.seeds
    sector = setup.stock_sector
    pp3 = micro_policy_params(state4.agent.actor_params, sector, k)
    pp4 = macro_actor_of(state3)
    args = {  # setup's starts, eval days and market arrays are already placed (run_phase5)
        "chunk3": (state3, place_env_params(with_policy(setup.s3.train_params, pp3), mesh),
                   setup.hp3, setup.starts),
        "eval3": (state3.train.params,
                  place_env_params(with_policy(setup.s3.val_params, pp3), mesh),
                  setup.s3.eval_days, jax.random.key(0)),
        "chunk4": (state4, with_policy(setup.s4.train_params, pp4), setup.hp4),
        "eval4": (state4.agent.actor_params, with_policy(setup.s4.val_params, pp4),
                  jax.random.key(0)),
    }
    seconds, fingerprints = 0.0, {}
    for name, a in args.items():
        pr[name], s, fingerprints[name] = compile_ahead(pr[name], *a)
        seconds += s
    return seconds, fingerprints


def _round(setup: Phase5Setup, state3, state4):
    """One round: the Macro block (with the current Micro), then the Micro block (with the
    just-updated Macro). Returns the new states and the metrics of both blocks."""
    pr, k = setup.programs, setup.seeds
    micro_pp = micro_policy_params(state4.agent.actor_params,
                                   setup.stock_sector, k)
    train3 = with_policy(setup.s3.train_params, micro_pp)
    m3 = []
    for _ in range(setup.macro_chunks_per_round):
        state3, m = pr["chunk3"](state3, train3, setup.hp3, setup.starts)
        m3.append(to_host(m))
    train4 = with_policy(setup.s4.train_params, macro_actor_of(state3))
    m4 = []
    for _ in range(setup.micro_chunks_per_round):
        state4, m = pr["chunk4"](state4, train4, setup.hp4)
        m4.append(to_host(m))
    return state3, state4, m3, m4


def _validate(setup: Phase5Setup, state3, state4, key) -> tuple[dict[str, np.ndarray],
                                                                  np.ndarray]:
    """Validation means per seed ([K] each) and the hierarchy's per-episode Sharpes [K, E]."""
    pr, k = setup.programs, setup.seeds
    micro_pp = micro_policy_params(state4.agent.actor_params,
                                   setup.stock_sector, k)
    ev3 = pr["eval3"](state3.train.params, with_policy(setup.s3.val_params, micro_pp),
                      setup.s3.eval_days, key)
    ev4 = pr["eval4"](state4.agent.actor_params,
                      with_policy(setup.s4.val_params, macro_actor_of(state3)), key)
    ev3, ev4 = ({m: np.asarray(v) for m, v in ev.items()} for ev in to_host((ev3, ev4)))
    return {
        "val_sharpe": ev3["val_sharpe"], "val_sharpe_std": ev3["val_sharpe_std"],
        "val_equal_weight_sharpe": ev3["val_equal_weight_sharpe"],
        "val_return": ev3["val_return"], "val_equal_weight_return": ev3["val_equal_weight_return"],
        "val_max_drawdown": ev3["val_max_drawdown"],
        "val_regime_accuracy": ev3["val_regime_accuracy"],
        "val_goal_alignment": ev4["val_goal_alignment"],
        "val_daily_sharpe": ev4["val_sharpe"],
        "val_daily_equal_weight_sharpe": ev4["val_equal_weight_sharpe"],
        "val_cost_frac": ev4["val_cost_frac"],
    }, ev3["episode_sharpe"]


def _block_record(metrics: list[dict], prefix: str, per_seed: bool = False) -> dict[str, Any]:
    """Means of a block's metrics ([K, ...] per chunk); ``per_seed``: one mean per seed."""
    rec: dict[str, Any] = {}
    for name in ("reward", "net_return", "cost_frac", "turnover", "policy_loss", "value_loss",
                 "entropy", "critic_loss", "actor_loss", "anchor_kl", "goal_alignment"):
        vals = [np.asarray(m[name]) for m in metrics if name in m]
        if vals and name in rl_micro.ACTOR_METRICS and all(
                "actor_updated" in m for m in metrics if name in m):  # TD3: over actor steps
            rec[f"{prefix}{name}"] = _actor_block_mean(metrics, name, per_seed)
        elif vals and per_seed:
            rec[f"{prefix}{name}"] = np.concatenate(
                [v.reshape(v.shape[0], -1) for v in vals], axis=1).mean(axis=1).tolist()
        elif vals:
            rec[f"{prefix}{name}"] = float(np.mean(np.concatenate([v.ravel() for v in vals])))
    return rec


def _actor_block_mean(metrics: list[dict], name: str, per_seed: bool
                      ) -> float | list[float | None] | None:
    """``rl_micro.actor_step_mean`` of ``name`` over a block's chunks ([K, ...] each)."""
    chunks = [m for m in metrics if name in m]
    v = np.concatenate([np.asarray(m[name]).reshape(len(m[name]), -1) for m in chunks], axis=1)
    on = np.concatenate([np.asarray(m["actor_updated"]).reshape(len(m[name]), -1)
                         for m in chunks], axis=1)
    if per_seed:
        return [rl_micro.actor_step_mean(a, b) for a, b in zip(v, on, strict=True)]
    return rl_micro.actor_step_mean(v, on)


def _save_round(run: Any, ranked: RankedCheckpoints, done: int, state3, state4,
                last: dict[str, np.ndarray], eps: np.ndarray, m3: list, m4: list,
                k: int) -> dict[str, float]:
    """Log the round's metrics and checkpoint both states (``eps``: the per-episode
    validation Sharpes [K, E] the selection rule pairs with round 0's); returns the
    validation means."""
    means = {m: float(np.mean(v)) for m, v in last.items()}
    run.log_metrics(PHASE, done, {**_block_record(m3, "macro_"), **_block_record(m4, "micro_"),
                                  **means, "val_sharpe_per_seed": last["val_sharpe"].tolist(),
                                  "eval": True, "per_seed": {
                                      **_block_record(m3, "macro_", True),
                                      **_block_record(m4, "micro_", True),
                                      **{m: v.tolist() for m, v in last.items()}},
                                  "env_steps": int(sum(np.sum(x) for x in to_host(
                                      (state3.env_steps, state4.env_steps))))})
    metrics = {BEST_METRIC: means["val_sharpe"],
               "val_equal_weight_sharpe": means["val_equal_weight_sharpe"],
               "val_goal_alignment": means["val_goal_alignment"]}
    ranked.save(done, {"macro": state3, "micro": state4}, metrics, {"round": done, "seeds": k},
                means["val_sharpe"], eps)
    return means


class Phase5Task:
    """Phase 5 in the host loop (``training.host_loop``): a unit is one round (the Macro
    block, then the Micro block), the state the pair (Phase-3 state, Phase-4 state), and every
    round is validated, logged in one line with its blocks' training means and checkpointed
    as step ``round``."""

    def __init__(self, run: Any, ranked: RankedCheckpoints, setup: Phase5Setup, eval_key: Any,
                 rounds: int, seeds: int, say: Callable[[str], None]) -> None:
        self.run, self.ranked, self.setup, self.eval_key = run, ranked, setup, eval_key
        self.rounds, self.seeds, self.say = rounds, seeds, say
        self.first_round_s: float | None = None
        """Seconds of the first round trained by this call with its validation (compiles
        included when they were not ahead of time)."""
        self._t_round = 0.0

    def progress(self, state: tuple) -> int:
        return self.rounds

    def train(self, state: tuple) -> tuple[tuple, tuple[list, list]]:
        self._t_round = time.perf_counter()
        state3, state4, m3, m4 = _round(self.setup, *state)
        self.rounds += 1
        return (state3, state4), (m3, m4)

    def due(self, done: int, limit: int) -> bool:
        return True

    def evaluate(self, state: tuple) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return _validate(self.setup, *state, self.eval_key)

    def record(self, state: tuple, done: int, trained: tuple[list, list] | None,
               last: dict[str, np.ndarray], episodes: np.ndarray) -> None:
        if done and self.first_round_s is None:
            self.first_round_s = time.perf_counter() - self._t_round
        m3, m4 = trained if trained is not None else ([], [])
        means = _save_round(self.run, self.ranked, done, *state, last, episodes, m3, m4,
                            self.seeds)
        if done == 0:  # Phases 3-4's agents: 'best' never falls below the un-fine-tuned pair
            self.say(f"phase 5: before fine-tuning val_sharpe {means['val_sharpe']:.3f}"
                     f" (equal weight {means['val_equal_weight_sharpe']:.3f})")
        else:
            self.say(f"phase 5: round {done}/{self.setup.rounds} val_sharpe "
                     f"{means['val_sharpe']:.3f} (equal weight "
                     f"{means['val_equal_weight_sharpe']:.3f}), goal alignment "
                     f"{means['val_goal_alignment']:.3f}")


def _start_from_phases_3_4(run: Any, cfg: Config, market: MarketArrays, meta: MarketMeta,
                           feats: FeatureSet, k: int
                           ) -> tuple[Phase5Setup, Any, Any, dict[str, Any]]:
    """(setup, Macro state [K], Micro state [K], sources): Phase 3's and Phase 4's saved
    states paired onto K seeds, with fresh optimisers and envs (``_initial_states``);
    ``sources`` says where each came from and how the seeds were paired (for the summary)."""
    saved3, info3 = restore_phase3_state(run, cfg, market, meta, feats)
    k3 = int(jax.tree.leaves(saved3)[0].shape[0])
    example_macro = first_member(macro_actor_of(saved3))
    saved4, info4 = restore_phase4_state(run, cfg, market, meta, feats, example_macro)
    k4 = int(jax.tree.leaves(saved4)[0].shape[0])
    saved3, how3 = _pair(saved3, k3, k)
    saved4, how4 = _pair(saved4, k4, k)
    setup = setup_phase5(cfg, market, meta, feats, first_member(saved4.agent.actor_params),
                         example_macro, k)
    state3, state4 = _initial_states(setup, cfg, saved3, saved4)
    return setup, state3, state4, {"pairing": {"phase3": how3, "phase4": how4}, **info3,
                                   **info4}


def _place(setup: Phase5Setup, state3: Any, state4: Any, mesh: Any
           ) -> tuple[Phase5Setup, Any, Any]:
    """The seed axis over the mesh's devices, as Phases 3-4 place it (the Micro block's
    programs are then Phase 4's own: same shapes and placement, one compile serves both),
    and the Macro block's shared inputs placed once as its programs expect them (Phase 3's
    placement), not copied into place on every call."""
    state3, state4, hp3, hp4 = shard_seeds((state3, state4, setup.hp3, setup.hp4), mesh)
    s3 = dataclasses.replace(setup.s3, **dict(zip(
        ("train_params", "val_params", "eval_days"),
        replicate((setup.s3.train_params, setup.s3.val_params, setup.s3.eval_days), mesh),
        strict=True)))
    return (dataclasses.replace(setup, hp3=hp3, hp4=hp4, s3=s3,
                                starts=replicate(setup.starts, mesh)), state3, state4)


def run_phase5(run: Any, cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
               *, seeds: int | None = None, resume: bool = False, round_limit: int | None = None,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train Phase 5 into ``run``, write ``phase5/summary.json`` and return the summary.

    ``round_limit`` stops after that many rounds in total (a simulated interruption)."""
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    k = int(cfg.train.seeds if seeds is None else seeds)
    if k < 1:
        raise ConfigError(f"Phase 5 needs at least one seed (got {k})")
    with RankedCheckpoints(run, PHASE, label="phase 5", metric=BEST_METRIC,
                           margin=float(cfg.train.checkpoint_margin),
                           keep_latest=cfg.train.keep_latest, resume=resume) as ranked:
        setup, state3, state4, sources = _start_from_phases_3_4(run, cfg, market, meta,
                                                                feats, k)
        done = 0
        restored = ranked.restore_latest({"macro": state3, "micro": state4})
        if restored is not None:
            both, user = restored
            state3, state4 = both["macro"], both["micro"]
            done = int(user.get("round", ranked.resumed_from))
            say(f"phase 5: resumed after round {done}")
        windows = validation.windows(np.asarray(setup.s3.eval_days),
                                     setup.s3.val_params.max_steps_in_episode,
                                     setup.s3.program.spec.eval_block_weeks)
        mesh = seed_mesh_for(k)
        setup, state3, state4 = _place(setup, state3, state4, mesh)
        compile_s, fingerprints = _compile(setup, state3, state4, mesh)
        limit = setup.rounds if round_limit is None else min(setup.rounds, int(round_limit))
        sp3, sp4 = setup.s3.program.spec, setup.s4.p4.spec
        macro_steps = setup.macro_chunks_per_round * sp3.updates_per_chunk * sp3.steps_per_update
        micro_steps = setup.micro_chunks_per_round * sp4.num_envs * sp4.steps_per_chunk
        say(f"phase 5: {k} seed(s), {setup.rounds} rounds of {macro_steps} Macro (weekly) + "
            f"{micro_steps} Micro (daily) env steps per seed, lr x {cfg.train.joint.lr_scale}, "
            f"compiled in {compile_s:.1f}s")
        eval_key = jax.random.fold_in(jax.random.key(int(cfg.seed)), 1000 + PHASE)
        ranked.windows = windows
        task = Phase5Task(run, ranked, setup, eval_key, done, k, say)
        (state3, state4), last, eps = run_loop(task, ranked, (state3, state4), limit=limit,
                                               evaluate_start=restored is None)
    selection = ranked.summary(eps, "pair", say)
    means = {m: float(np.mean(v)) for m, v in last.items()}
    env3, env4 = (int(np.sum(x)) for x in to_host((state3.env_steps, state4.env_steps)))
    summary = {
        **means,
        "per_seed": {m: v.tolist() for m, v in last.items()},
        "env_steps": env3 + env4,
        "macro_env_steps": env3,
        "micro_env_steps": env4,
        "rounds": task.rounds,
        "seeds": k,
        "wall_s": round(time.perf_counter() - t0, 3),
        "compile_s": round(compile_s, 3),
        "programs": fingerprints,
        "first_round_s": None if task.first_round_s is None else round(task.first_round_s, 3),
        "lr_scale": float(cfg.train.joint.lr_scale),
        "best_metric": BEST_METRIC,
        **selection,
        **sources,
        "val_span": setup.s3.info["val_span"],
    }
    write_phase_summary(run, PHASE, summary)
    return summary


def run_phase5_entry(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                     run: Any, *, resume: bool = False, epoch_limit: int | None = None,
                     progress: bool = True) -> Any:
    """``run_phase5`` with the phase registry's signature (``epoch_limit`` = round limit)."""
    from hrl_sarp_jax.training.runner import PhaseResult

    say = (lambda msg: print(msg, file=sys.stderr)) if progress else None
    s = run_phase5(run, cfg, market, meta, feats, resume=resume, round_limit=epoch_limit,
                   log=say)
    rows = [("hierarchy validation Sharpe (weekly)", s["val_sharpe"], "val_equal_weight_sharpe",
             s["val_equal_weight_sharpe"]),
            ("validation total return", s["val_return"], "val_equal_weight_return",
             s["val_equal_weight_return"]),
            ("Micro goal alignment", s["val_goal_alignment"], None, None)]
    return PhaseResult(PHASE, s, run.phase_dir(PHASE) / "summary.json", rows)


# --------------------------------------------------------------------------- for evaluation


def load_phase5_policy(run: Any, cfg: Config, market: MarketArrays, meta: MarketMeta,
                       feats: FeatureSet, which: str = "best") -> Any:
    """The Phase-5 (``which``: 'best' or 'latest') Macro and Micro actors of every seed, as a
    ``training.policy.TrainedPolicy``."""
    from hrl_sarp_jax.training.policy import TrainedPolicy

    summary = read_phase_summary(run, PHASE) or {}
    k = int(summary.get("seeds", cfg.train.seeds))
    abstract3 = rl_macro.abstract_state(cfg, market, meta, feats, k)
    example_macro = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                 macro_actor_of(abstract3))
    s4 = rl_micro.setup_phase4(cfg, market, meta, feats, macro_params=example_macro)
    keys, _ = rl_micro.phase4_keys(cfg.seed, k)
    abstract4 = jax.eval_shape(jax.vmap(s4.p4.init, in_axes=(0, None)), keys, s4.train_params)
    with PhaseCheckpointer(run, PHASE, read_only=True) as ck:
        both, _meta, step = ck.restore(_abstract({"macro": abstract3, "micro": abstract4}),
                                       which, for_policy=True)
    return TrainedPolicy(macro_actor=macro_actor_of(both["macro"]),
                         micro_actor=both["micro"].agent.actor_params, seeds=k,
                         source={"macro": f"phase 5 {which} step {step}",
                                 "micro": f"phase 5 {which} step {step}"})
