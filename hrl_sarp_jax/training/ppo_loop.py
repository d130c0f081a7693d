"""The PPO phases (Phase 3, the flat baseline, the Phase-3 sweep) in the host loop
(``training.host_loop``): compile, start or resume, and a ``PPOLoopTask`` for the loop (its unit
is a chunk of updates), the curriculum and the summary's common part
(``training.ppo_engine`` holds the compiled programs).

Per chunk of ``spec.updates_per_chunk`` updates: one metrics line per update (means over
seeds, per-seed values under ``per_seed``), one evaluation on the validation split, a
curriculum decision (phases with a rule), a checkpoint of the whole state (latest-N plus best
by the mean ``best_metric``, or with ``train.checkpoint_margin`` by its lower bound over the
starting policy: ``training.selection``) and, when the phase asks, of the policy parameters
alone. A resume continues bit-exactly from the latest checkpoint (the state, its keys and the
curriculum position are saved). The summary states per seed whether the final policy beats
the starting one by more than a standard error (``final_vs_start``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from hrl_sarp_jax.agents.ppo import PPOHParams
from hrl_sarp_jax.checkpointing import PhaseCheckpointer, Run
from hrl_sarp_jax.config import Config
from hrl_sarp_jax.data.market import MarketMeta
from hrl_sarp_jax.envs.params import EnvParams, seed_axes, with_policy
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training import validation
from hrl_sarp_jax.training.host_loop import run_loop
from hrl_sarp_jax.training.ppo_engine import PPOProgram, PPOState
from hrl_sarp_jax.training.programs import RUN_ONCE_OPTIONS, compile_ahead, jit_once
from hrl_sarp_jax.training.selection import SELECT_METRIC, RankedCheckpoints
from hrl_sarp_jax.training.sharding import replicate, shard_seeds, to_host
from hrl_sarp_jax.types import Array, PyTree
from hrl_sarp_jax.utils.trees import repeat_members

_F32 = jnp.float32


# --------------------------------------------------------------------------- setup


@dataclass
class PPOSetup:
    """Everything the host loop (and the benchmarks) need, built from config + market."""

    program: PPOProgram
    train_params: EnvParams
    val_params: EnvParams
    eval_days: jax.Array
    hp: PPOHParams
    info: dict[str, Any]
    windows: cur.StageWindows | None = None
    """The curriculum's start windows (None: episodes start anywhere in the training split)."""


# HOST ONLY
def split_bounds(meta: MarketMeta, cfg: Config, num_days: int) -> tuple[int, int, int]:
    """(first validation day, first test day, number of days) of ``cfg.data``'s split."""
    dates = np.asarray(meta.dates).astype("datetime64[D]")
    val = int(np.searchsorted(dates, np.datetime64(cfg.data.val_start, "D")))
    test = int(np.searchsorted(dates, np.datetime64(cfg.data.test_start, "D")))
    if not 0 < val < test <= num_days:
        raise ConfigError(f"data.val_start={cfg.data.val_start} / data.test_start="
                          f"{cfg.data.test_start} leave no training or validation days in "
                          f"{dates[0]}..{dates[-1]}")
    return val, test, num_days


# HOST ONLY
def stack_hparams(hp: PPOHParams, count: int) -> PPOHParams:
    """hp with a leading axis of ``count`` identical members."""
    return repeat_members(hp, int(count))


# HOST ONLY
def member_keys(seed: int, stream: int, count: int) -> Array:
    """[count] keys: member k = fold_in(fold_in(key(seed), stream), k), independent of
    ``count`` (a K-seed run's member k equals a one-seed run with that member's key)."""
    root = jax.random.fold_in(jax.random.key(int(seed)), int(stream))
    return jnp.stack([jax.random.fold_in(root, k) for k in range(int(count))])


def signature(tree: PyTree) -> tuple:
    """Structure, shapes and dtypes of a pytree (a compile-cache key)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((tuple(np.shape(x)), str(jnp.result_type(x))) for x in leaves)


# --------------------------------------------------------------------------- compile


def seed_policy(env_params: EnvParams, seeds: int) -> tuple[EnvParams, Any]:
    """(``env_params`` with its frozen policy (e.g. Phase 3's Micro allocator) stacked [K],
    the ``in_axes`` that map it per seed); (env_params, None) when there is none. Phase 3 maps
    its one allocator per seed as Phase 5's Macro block maps each seed's Micro, so that both
    run one compiled program."""
    if env_params.policy_params is None:
        return env_params, None
    out = with_policy(env_params, repeat_members(env_params.policy_params, int(seeds)))
    return out, seed_axes(out)


def place_env_params(env_params: EnvParams, mesh: Any) -> EnvParams:
    """Env params placed for a seed mesh: replicated, the per-seed policy (if any) split over
    the seeds (as Phase 3 compiles its programs and Phase 5 its Macro block)."""
    placed = replicate(env_params, mesh)
    if env_params.policy_params is None:
        return placed
    return with_policy(placed, shard_seeds(env_params.policy_params, mesh))


def _init_seeds(init: Callable[..., PPOState], keys: Array, hp: PPOHParams,
                env_params: EnvParams, starts: cur.StartSet | None = None) -> PPOState:
    """K seeds' initial states, one after another (``lax.map``), stacked [K]; a frozen policy
    in ``env_params`` is per seed ([K], ``seed_policy``).

    (Written as a map when ``jit(vmap(init))`` over 2+ seeds hung on jax 0.10.2 CPU; the cause
    was the orthogonal initialiser's batched LAPACK QR deadlocking the intra-op thread pool,
    fixed in ``networks.common.orthogonal``. A sequential map gives the same per-seed values.)
    """
    def one(args):
        key, h, policy = args
        return init(key, h, with_policy(env_params, policy), starts)
    return jax.lax.map(one, (keys, hp, env_params.policy_params))


class Compiled(NamedTuple):
    """A PPO program compiled ahead of time for K seeds: init, run_chunk and evaluate, the
    seconds the three took to compile, their fingerprints (``training.programs``), and the
    train / validation env params to call them with (the frozen policy stacked per seed)."""

    init: Callable
    chunk: Callable
    evaluate: Callable
    compile_s: float
    fingerprints: dict[str, str]
    train_params: EnvParams
    val_params: EnvParams


_COMPILED: dict[tuple, Compiled] = {}


def _starts_arg(setup: PPOSetup, stage: int) -> tuple:
    """() or (starts,): the curriculum argument of init / run_chunk."""
    return () if setup.windows is None else (cur.stage_starts(stage, setup.windows),)


# HOST ONLY
def compile_programs(setup: PPOSetup, seeds: int, mesh: Any = None, *,
                     compiler_options: dict[str, Any] | None = None) -> Compiled:
    """(init, run_chunk, evaluate) vmapped over K seeds (hparams per seed), compiled ahead of
    time and timed together (compile_s = 0 when this process already compiled the same
    programs: the first compile wins, whatever its options). run_chunk and evaluate take XLA
    ``compiler_options`` if given; init, which runs once, ``programs.RUN_ONCE_OPTIONS``. ``mesh``: a
    ``training.sharding`` seed mesh; run_chunk and evaluate are then compiled for the seed
    axis split over its devices (inputs placed with ``shard_seeds``)."""
    devices = None if mesh is None else tuple(d.id for d in mesh.devices.flat)
    key = (setup.program, int(seeds), signature(setup.train_params),
           signature(setup.windows), signature(setup.eval_days), devices)
    train_k, train_axes = seed_policy(setup.train_params, seeds)
    val_k, val_axes = seed_policy(setup.val_params, seeds)
    if key in _COMPILED:  # the programs only: the env params are this setup's own (another
        # market of the same shapes, e.g. a walk-forward fold, runs the same programs)
        return _COMPILED[key]._replace(compile_s=0.0, train_params=train_k, val_params=val_k)
    prog = setup.program
    init = init_program(prog)
    hp = stack_hparams(setup.hp, seeds)
    starts = _starts_arg(setup, 0)
    init_args = (member_keys(0, 0, seeds), hp, train_k, *starts)
    abstract = jax.eval_shape(init, *init_args)
    init, init_s, init_fp = compile_ahead(init, *init_args, compiler_options=RUN_ONCE_OPTIONS)
    train_params, val_params, days = train_k, val_k, setup.eval_days
    if mesh is not None:
        abstract, hp = shard_seeds((abstract, hp), mesh)
        train_params, val_params = (place_env_params(p, mesh) for p in (train_k, val_k))
        days, starts = replicate((days, starts), mesh)
    chunk, chunk_s, chunk_fp = compile_ahead(
        chunk_program(prog, train_axes, bool(starts)), abstract, train_params, hp, *starts,
        compiler_options=compiler_options)
    evaluate, eval_s, eval_fp = compile_ahead(
        evaluate_program(prog, val_axes), abstract.train.params, val_params, days,
        jax.random.key(0), compiler_options=compiler_options)
    out = Compiled(init, chunk, evaluate, init_s + chunk_s + eval_s,
                   {"init": init_fp, "chunk": chunk_fp, "evaluate": eval_fp}, train_k, val_k)
    _COMPILED[key] = out._replace(train_params=None, val_params=None)  # programs, no market
    return out


def init_program(prog: PPOProgram) -> Callable:
    """``init`` of K seeds jitted: (keys [K], hparams [K], env params (frozen policy [K] or
    none), *starts) -> PPOState [K] (``_init_seeds``); Phase 5's Macro block uses it too.
    Compiled with ``programs.RUN_ONCE_OPTIONS`` however it is called, so every caller gets
    the same bits (and one cached executable)."""
    return jit_once(prog.init, "init", None, lambda: jax.jit(partial(_init_seeds, prog.init),
                                                         compiler_options=RUN_ONCE_OPTIONS))


def chunk_program(prog: PPOProgram, env_axes: Any, with_starts: bool) -> Callable:
    """``run_chunk`` jitted and vmapped over seeds (state, hparams; the env params' frozen
    policy per ``env_axes``); Phase 5's Macro block builds the same program."""
    axes = (0, env_axes, 0) + ((None,) if with_starts else ())
    return jit_once(prog.run_chunk, "chunk", (env_axes, with_starts),
                    lambda: jax.jit(jax.vmap(prog.run_chunk, in_axes=axes)))


def evaluate_program(prog: PPOProgram, env_axes: Any) -> Callable:
    """``evaluate`` jitted and vmapped over seeds' params (see ``chunk_program``)."""
    return jit_once(prog.evaluate, "evaluate", env_axes, lambda: jax.jit(
        jax.vmap(prog.evaluate, in_axes=(0, env_axes, None, None))))


# --------------------------------------------------------------------------- records


def mean_records(metrics: dict[str, np.ndarray], first_update: int) -> list[dict[str, Any]]:
    """One record per update (means over seeds) from [K, U] metrics."""
    out = []
    u = next(iter(metrics.values())).shape[1]
    for j in range(u):
        rec = {"update": first_update + j + 1}
        rec.update({k: float(np.mean(v[:, j])) for k, v in metrics.items()})
        rec["per_seed"] = {k: v[:, j].tolist() for k, v in metrics.items()}
        out.append(rec)
    return out


def seed_lists(ev: dict[str, np.ndarray]) -> dict[str, list]:
    """Per-seed values of the scalar eval metrics (metrics.jsonl's ``per_seed``)."""
    return {k: np.asarray(v).tolist() for k, v in ev.items()
            if k.startswith("val_") and np.ndim(v) == 1}


def eval_record(ev: dict[str, np.ndarray]) -> dict[str, Any]:
    """Means over seeds of the scalar eval metrics, plus per-seed val Sharpe."""
    rec: dict[str, Any] = {k: float(np.mean(v)) for k, v in ev.items()
                           if k.startswith("val_") and np.ndim(v) == 1}
    rec["val_sharpe_per_seed"] = [float(x) for x in ev["val_sharpe"]]
    return rec


# --------------------------------------------------------------------------- the loop


@dataclass(frozen=True)
class LoopSpec:
    """How one PPO phase's host loop is named and what it does besides the common steps."""

    phase: int | str
    """Checkpointer, metrics and summary name (3, 'flat')."""
    label: str
    """Progress-line prefix ('phase 3', 'flat baseline')."""
    key_stream: int
    """fold_in stream of the members' keys and (+1000) of the evaluation key."""
    eval_at_start: bool = False
    """Evaluate and checkpoint update 0 (the starting policy), so 'best' never falls below it."""
    policy_phase: str | None = None
    """Also checkpoint the policy parameters alone (``{"policy": params}``) under this name."""
    best_metric: str = "val_sharpe"


@dataclass
class LoopResult:
    """What the loop leaves for the phase's summary."""

    state: PPOState
    setup: PPOSetup
    last_eval: dict[str, np.ndarray]
    summary: dict[str, Any]
    """The common part of the summary (budget, timing, final validation, checkpoints)."""
    start_info: dict[str, Any] = field(default_factory=dict)
    stage: int = 0
    history: list = field(default_factory=list)





@dataclass
class Course:
    """Where a PPO phase's curriculum stands (no rule: stage 0 throughout, never recorded);
    saved with every checkpoint and restored on resume."""

    rule: cur.CurriculumRule | None
    stage: int = 0
    stage_updates: int = 0
    history: list[list[int]] = field(default_factory=lambda: [[0, 0]])

    @classmethod
    def start(cls, rule: cur.CurriculumRule | None) -> Course:
        stage = cur.initial_stage(rule) if rule is not None else 0
        return cls(rule, stage, 0, [[0, stage]])

    def resume(self, user: dict[str, Any]) -> None:
        if self.rule is not None:
            self.stage, self.stage_updates = int(user["stage"]), int(user["stage_updates"])
            self.history = [list(h) for h in user["stage_history"]]

    def meta(self) -> dict[str, Any]:
        return ({} if self.rule is None else {"stage": self.stage, "stage_updates":
                                               self.stage_updates,
                                               "stage_history": self.history})


@dataclass
class Placed:
    """A PPO phase's run-time inputs, placed as its programs expect them (on the seed mesh,
    once, not copied into place on every call); ``place`` places the curriculum's starts."""

    hp: PPOHParams
    train_params: EnvParams
    val_params: EnvParams
    days: Array
    place: Callable[[Any], Any]


class PPOLoopTask:
    """A PPO phase in the host loop (``training.host_loop``): a unit is one chunk of
    ``spec.updates_per_chunk`` updates (progress counts updates), every chunk is validated,
    and with a curriculum the stage is promoted between validation and checkpoint (so a
    resume continues with the decision)."""

    def __init__(self, run: Run, loop: LoopSpec, ranked: RankedCheckpoints,
                 pol_ck: PhaseCheckpointer | None, compiled: Compiled, setup: PPOSetup,
                 placed: Placed, eval_key: Array, course: Course,
                 info: dict[str, Any] | None, seeds: int, say: Callable[[str], None]) -> None:
        self.run, self.loop, self.ranked, self.pol_ck = run, loop, ranked, pol_ck
        self.compiled, self.setup, self.placed = compiled, setup, placed
        self.eval_key, self.course = eval_key, course
        self.info, self.seeds, self.say = info, seeds, say

    def _stage_of(self, stage: int) -> dict[str, int]:
        return {"stage": stage} if self.course.rule is not None else {}

    def progress(self, state: PPOState) -> int:
        return int(np.max(to_host(state.update)))

    def train(self, state: PPOState) -> tuple[PPOState, tuple[int, int]]:
        done_before, ran_stage, pl = self.progress(state), self.course.stage, self.placed
        state, metrics = self.compiled.chunk(state, pl.train_params, pl.hp, *pl.place(
            _starts_arg(self.setup, ran_stage)))
        metrics = {key: np.asarray(v) for key, v in to_host(metrics).items()}
        for rec in mean_records(metrics, done_before):
            self.run.log_metrics(self.loop.phase, rec.pop("update"),
                                 {**rec, **self._stage_of(ran_stage)})
        return state, (done_before, ran_stage)

    def due(self, done: int, limit: int) -> bool:
        return True

    def evaluate(self, state: PPOState) -> tuple[dict[str, np.ndarray], np.ndarray]:
        ev = {key: np.asarray(v) for key, v in to_host(self.compiled.evaluate(
            state.train.params, self.placed.val_params, self.placed.days,
            self.eval_key)).items()}
        return ev, ev["episode_sharpe"]

    def record(self, state: PPOState, done: int, trained: tuple[int, int] | None,
               ev: dict[str, np.ndarray], episodes: np.ndarray) -> None:
        loop, rec, course = self.loop, eval_record(ev), self.course
        ran_stage = course.stage if trained is None else trained[1]
        env_steps = 0 if trained is None else int(np.sum(to_host(state.env_steps)))
        self.run.log_metrics(loop.phase, done, {**rec, **self._stage_of(ran_stage),
                                                "eval": True, "per_seed": seed_lists(ev),
                                                "env_steps": env_steps})
        if trained is not None:
            course.stage_updates += done - trained[0]
            # the curriculum decision is taken before saving, so a resume continues with it
            if course.rule is not None and cur.promote(
                    course.stage, rec["val_sharpe"], course.stage_updates, done,
                    self.setup.program.spec.total_updates, course.rule):
                course.stage, course.stage_updates = course.stage + 1, 0
                course.history.append([done, course.stage])
        self._save(state, done, rec, episodes)
        if trained is None:
            self.say(f"{loop.label}: before training val_sharpe {rec['val_sharpe']:.3f} "
                     f"(equal weight {rec['val_equal_weight_sharpe']:.3f})")
        else:
            said = f" stage {ran_stage}" if course.rule is not None else ""
            self.say(f"{loop.label}: update {done}/{self.setup.program.spec.total_updates}"
                     f"{said} val_sharpe {rec['val_sharpe']:.3f} (equal weight "
                     f"{rec['val_equal_weight_sharpe']:.3f})")

    def _save(self, state: PPOState, step: int, rec: dict[str, Any],
              episodes: np.ndarray) -> None:
        """The whole state (ranked) and, when the phase asks, the policy alone, ranked the
        same; the metadata carries the curriculum position and the start info."""
        metric = self.loop.best_metric
        meta: dict[str, Any] = self.course.meta()
        meta["seeds"] = self.seeds
        if self.info is not None:
            meta["start_info"] = self.info
        saved = self.ranked.save(step, state, {
            metric: rec[metric], "val_equal_weight_sharpe": rec["val_equal_weight_sharpe"],
            "seeds": self.seeds}, meta, rec[metric], episodes)
        if self.pol_ck is not None:
            latest = self.pol_ck.latest_step()
            if latest is None or step > latest:
                self.pol_ck.save(step, {"policy": state.train.params}, metrics=saved,
                                 meta={"seeds": self.seeds})


# HOST ONLY (not jittable)
def run_ppo(run: Run, cfg: Config, loop: LoopSpec,
            make_setup: Callable[[], tuple[PPOSetup, dict[str, Any] | None]], *,
            seeds: int, resume: bool = False, update_limit: int | None = None,
            rule: cur.CurriculumRule | None = None, mesh: Any = None,
            hparams: PPOHParams | None = None, keys: Array | None = None,
            prepare: Callable[[PPOState], tuple[PPOState, dict[str, Any]]] | None = None,
            final_keys: tuple[str, ...] = (),
            log: Callable[[str], None] | None = None) -> LoopResult:
    """Train one PPO phase of K = ``seeds`` members into ``run`` (see the module docstring).

    ``make_setup`` builds the programs and env params (after the check that a fresh run has no
    checkpoints) and the phase's ``start_info`` (None: the phase keeps none); the setup's
    ``info["allocator"]``, if any, is named in the first progress line. ``rule``: the
    curriculum (None: none, and no ``stage`` in the records).
    ``hparams`` (leaves [K]; None fields, e.g. the schedule, from the setup) / ``keys`` [K]
    replace K copies of the setup's hyperparameters /
    ``member_keys(cfg.seed, loop.key_stream, K)``. ``prepare`` edits a fresh state (warm
    starts) and returns what it did, merged into ``start_info`` (saved with every checkpoint,
    restored on resume). ``final_keys``: validation scalars copied into the summary.
    ``update_limit`` stops after that many updates in total (a simulated interruption; the
    learning-rate schedule still spans the full budget).
    """
    t0 = time.perf_counter()
    say = log or (lambda _msg: None)
    k = int(seeds)
    margin = float(cfg.train.checkpoint_margin)
    ranked = RankedCheckpoints(run, loop.phase, label=loop.label, metric=loop.best_metric,
                               margin=margin, keep_latest=cfg.train.keep_latest, resume=resume)
    pol_ck = None if loop.policy_phase is None else PhaseCheckpointer(
        run, loop.policy_phase, keep_latest=cfg.train.keep_latest,
        best_metric=SELECT_METRIC if margin else loop.best_metric)
    try:
        if not resume and pol_ck is not None and pol_ck.latest_step() is not None:
            raise CheckpointError(
                f"{loop.label} of run {run.name} already has checkpoints (steps "
                f"{pol_ck.all_steps()}); pass --resume to continue it or use a new --run")
        setup, start_info = make_setup()
        spec = setup.program.spec
        hp = member_hparams(setup.hp, k, hparams)
        compiled = compile_programs(setup, k, mesh)
        where = "" if mesh is None else f" on {mesh.size} device(s)"
        describe = (f", allocator {setup.info['allocator']}" if "allocator" in setup.info
                    else "")
        say(f"{loop.label}: {k} seed(s){where}, {spec.total_updates} updates of "
            f"{spec.steps_per_update} env steps{describe}, compiled in "
            f"{compiled.compile_s:.1f}s")
        course = Course.start(rule)
        state = compiled.init(member_keys(cfg.seed, loop.key_stream, k) if keys is None
                              else keys, hp, compiled.train_params,
                              *_starts_arg(setup, course.stage))
        ranked.windows = validation.windows(np.asarray(setup.eval_days),
                                            setup.val_params.max_steps_in_episode,
                                            spec.eval_block_weeks)
        state, info, resumed = _start_or_resume(ranked, state, course, start_info, prepare)
        if resumed:
            said = f" (next stage {course.stage})" if rule is not None else ""
            say(f"{loop.label}: resumed from update {ranked.resumed_from}{said}")
        state, placed = _place(state, hp, compiled, setup, mesh)
        eval_key = jax.random.fold_in(jax.random.key(int(cfg.seed)), 1000 + loop.key_stream)
        task = PPOLoopTask(run, loop, ranked, pol_ck, compiled, setup, placed, eval_key,
                           course, info, k, say)
        limit = spec.total_updates if update_limit is None else min(int(update_limit),
                                                                    spec.total_updates)
        state, last_eval, _ = run_loop(task, ranked, state, limit=limit, evaluate_start=(
            loop.eval_at_start and not resumed))
    finally:
        ranked.ck.close()
        if pol_ck is not None:
            pol_ck.close()
    summary = _loop_summary(state, compiled, ranked, loop, last_eval, final_keys, k, t0, say)
    return LoopResult(state, setup, last_eval, summary, info or {}, course.stage,
                      course.history)


# HOST ONLY
def member_hparams(hp: PPOHParams, seeds: int, hparams: PPOHParams | None) -> PPOHParams:
    """K copies of the setup's ``hp``, with the leaves ``hparams`` gives ([K]) in their place
    (what it leaves None, e.g. the schedule, stays the setup's)."""
    stacked = stack_hparams(hp, seeds)
    if hparams is None:
        return stacked
    return stacked.replace(**{f.name: jnp.asarray(getattr(hparams, f.name), _F32)
                              for f in dataclasses.fields(hparams)
                              if getattr(hparams, f.name) is not None})


# HOST ONLY
def _start_or_resume(ranked: RankedCheckpoints, state: PPOState, course: Course,
                     start_info: dict[str, Any] | None,
                     prepare: Callable[[PPOState], tuple[PPOState, dict[str, Any]]] | None
                     ) -> tuple[PPOState, dict[str, Any] | None, bool]:
    """(state, start info, resumed): the latest checkpoint with its curriculum position and
    start info when there is one, else the fresh ``state`` edited by ``prepare``."""
    info = None if start_info is None else dict(start_info)
    restored = ranked.restore_latest(state)
    if restored is not None:
        state, user = restored
        course.resume(user)
        if info is not None:
            info = dict(user.get("start_info", info))
        return state, info, True
    if prepare is not None:
        state, done = prepare(state)
        info = {**(info or {}), **done}
    if state.anchor is not None:  # the anchor is the policy the phase starts from
        state = state.replace(anchor=state.train.params)
    return state, info, False


# HOST ONLY
def _place(state: PPOState, hp: PPOHParams, compiled: Compiled, setup: PPOSetup, mesh: Any
           ) -> tuple[PPOState, Placed]:
    """The state and hparams with the seed axis over the mesh's devices, and the shared
    inputs replicated (no mesh: as they are)."""
    if mesh is None:
        return state, Placed(hp, compiled.train_params, compiled.val_params, setup.eval_days,
                             lambda x: x)
    state, hp = shard_seeds((state, hp), mesh)
    train_params, val_params = (place_env_params(p, mesh)
                                for p in (compiled.train_params, compiled.val_params))
    return state, Placed(hp, train_params, val_params, replicate(setup.eval_days, mesh),
                         partial(replicate, mesh=mesh))


# HOST ONLY
def _loop_summary(state: PPOState, compiled: Compiled, ranked: RankedCheckpoints,
                  loop: LoopSpec, last_eval: dict[str, np.ndarray],
                  final_keys: tuple[str, ...], seeds: int, t0: float,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The summary's common part: budget, wall time since ``t0``, compile time, the final
    validation per seed and the checkpoint selection."""
    final = eval_record(last_eval)
    env_steps = to_host(state.env_steps)
    selection = ranked.summary(last_eval["episode_sharpe"], "policy", say)
    best_metrics = ranked.best_metrics
    return {
        "env_steps": int(np.sum(env_steps)),
        "env_steps_per_seed": int(np.max(env_steps)),
        "updates": int(np.max(to_host(state.update))),
        "wall_s": round(time.perf_counter() - t0, 3),
        "compile_s": round(compiled.compile_s, 3),
        "programs": compiled.fingerprints,
        "seeds": seeds,
        **{key: final[key] for key in final_keys},
        "per_seed": {key: np.asarray(v).tolist() for key, v in last_eval.items()
                     if key.startswith("val_")},
        "best_val_sharpe": None if not best_metrics else best_metrics.get(loop.best_metric),
        **selection,
    }
