"""Host loop for the supervised phases: data, compiled epochs, logs, checkpoints, summary.

# HOST ONLY (not jittable)
``run_pretrain_phase(1 | 2, cfg, market, meta, feats, run)`` builds the phase's samples and
task, initialises K = cfg.train.seeds seeds (member k from fold_in(key(seed), k)), restores the
latest checkpoint when the phase has one (resume continues bit-exactly: the epoch key is
fold_in(seed key, epoch) and the whole state is checkpointed), then calls the compiled
``chunk_epochs``-epoch program until every seed has early-stopped or run ``epochs`` epochs.
After each chunk it logs one metrics line per epoch (means over the seeds still training),
saves a checkpoint (step = epochs run; best-by ``val_loss`` of the current params, mean over
seeds) and updates the progress bar. At the end the per-seed best parameters (lowest
validation loss) are evaluated on the validation split next to baselines and written to
``phase<k>/summary.json``. Downstream phases take ``best_params`` from the latest checkpoint.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from hrl_sarp_jax.checkpointing import PhaseCheckpointer, Run, write_phase_summary
from hrl_sarp_jax.config import Config, PretrainConfig
from hrl_sarp_jax.data.market import MarketArrays, MarketMeta
from hrl_sarp_jax.errors import CheckpointError, ConfigError
from hrl_sarp_jax.features.featureset import STOCK_FEATURES, FeatureSet
from hrl_sarp_jax.networks.macro import decayable
from hrl_sarp_jax.training import datasets as ds
from hrl_sarp_jax.training import pretrain as pt
from hrl_sarp_jax.training.market_pool import (
    PoolMarket,
    market_pool,
    pool_record,
    skipped_pool,
)
from hrl_sarp_jax.training.programs import compile_ahead
from hrl_sarp_jax.types import NUM_REGIMES

CHECKPOINT_METRIC = "val_loss"


@dataclass
class Prepared:
    """Everything one supervised phase needs, built on the host."""

    phase: int
    task: pt.Task
    train: pt.Padded         # padded to whole minibatches of a bucketed size (pt.pad_set)
    val: pt.Padded
    hp: pt.PretrainHParams
    pcfg: PretrainConfig
    baselines: dict[str, float]
    info: dict[str, Any]
    summarize: Callable[[dict[str, np.ndarray]], dict[str, Any]]
    headline: list[tuple[str, str, str | None]]  # (label, summary key, baseline key)


@dataclass
class PhaseResult:
    phase: int
    summary: dict[str, Any]
    summary_path: Path
    rows: list[tuple[str, float, str | None, float | None]] = field(default_factory=list)


def check_pretrain_config(p: PretrainConfig, where: str) -> None:
    """ConfigError naming the first out-of-range ``train.<where>.*`` key."""
    targets = ds.MICRO_TARGETS if where == "micro_pretrain" else ds.ALLOC_TARGETS
    checks = [  # numeric ranges: config_ranges (checked when the Config is built)
        (p.w_regime + p.w_alloc > 0, "w_regime/w_alloc", "must not both be 0"),
        (p.alloc_target in targets, "alloc_target",
         f"must be one of {', '.join(targets)} for Phase {1 if where == 'macro_pretrain' else 2}"),
        (p.class_weights in ("balanced", "none"), "class_weights", "must be 'balanced' or 'none'"),
        (all(n in STOCK_FEATURES for n in p.forecast_features), "forecast_features",
         f"must name stock features ({', '.join(STOCK_FEATURES)})"),
        (not p.forecast_features or (where == "micro_pretrain" and p.alloc_target == "fitted"),
         "forecast_features", "applies to train.micro_pretrain with alloc_target: fitted only"),
    ]
    for ok, key, msg in checks:
        if not ok:
            raise ConfigError(f"config key 'train.{where}.{key}' {msg} "
                              f"(got {getattr(p, key.split('/')[0])!r})")


def root_keys(seed: int) -> tuple[jax.Array, jax.Array]:
    """(seeds root, data root) for ``cfg.seed``: training streams and data draws (e.g. the
    fixed validation goals) never share a key."""
    seeds_root, data_root = jax.random.split(jax.random.key(int(seed)))
    return seeds_root, data_root


def seed_keys(seed: int, count: int) -> jax.Array:
    """[count] keys, member k = fold_in(seeds root, k): independent of ``count``."""
    seeds_root, _ = root_keys(seed)
    return jnp.stack([jax.random.fold_in(seeds_root, k) for k in range(int(count))])


# --------------------------------------------------------------------------- Phase 1


def _balanced_acc_np(pred: np.ndarray, label: np.ndarray) -> float:
    rec = [np.mean(pred[label == c] == c) for c in range(NUM_REGIMES) if np.any(label == c)]
    return float(np.mean(rec)) if rec else float("nan")


def macro_baselines(train: ds.MacroSamples, val: ds.MacroSamples) -> dict[str, float]:
    """Majority class (of the training labels), persistence (regime of the week just ended,
    majority where unknown), equal weight over valid sectors and the oracle allocation."""
    y_tr, y = np.asarray(train.regime), np.asarray(val.regime)
    majority = int(np.argmax(np.bincount(y_tr, minlength=NUM_REGIMES)))
    maj = np.full_like(y, majority)
    pers = np.asarray(val.persistence)
    pers = np.where(pers >= 0, pers, majority)
    mask = np.asarray(val.inputs.sector_mask)
    r = np.asarray(val.next_returns, np.float64)
    ew = (np.where(mask, r, 0).sum(1) / np.maximum(mask.sum(1), 1)).mean()
    oracle = (np.asarray(val.alloc_target, np.float64) * r).sum(1).mean()
    return {
        "majority_class": majority,
        "majority_baseline_accuracy": float(np.mean(maj == y)),
        "majority_baseline_balanced_accuracy": _balanced_acc_np(maj, y),
        "persistence_baseline_accuracy": float(np.mean(pers == y)),
        "persistence_baseline_balanced_accuracy": _balanced_acc_np(pers, y),
        "equal_weight_return": float(ew),
        "oracle_alloc_return": float(oracle),
    }


def pooled(datasets, market: MarketArrays, meta: MarketMeta, feats: FeatureSet, cfg: Config,
           pool: tuple[PoolMarket, ...]) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``datasets`` (``ds.macro_datasets`` | ``ds.micro_datasets``) of the run's market and of
    each pool market: ((own train, own val), pooled train, pooled val, the pool's record).
    A ``train_only`` pool market (a bootstrap of the run's training days) adds no validation."""
    parts = [datasets(market, meta, feats, cfg)]
    parts += [datasets(m.market, m.meta, m.feats, cfg) for m in pool]
    use_val = [True] + [not m.train_only for m in pool]
    record = {} if not pool else {"pool": pool_record(pool, {
        "train_samples_per_market": [a.size for a, _ in parts],
        "val_samples_per_market": [b.size if u else 0
                                   for (_, b), u in zip(parts, use_val, strict=True)]})}
    return (parts[0], ds.concat_samples([a for a, _ in parts]),
            ds.concat_samples([b for (_, b), u in zip(parts, use_val, strict=True) if u]),
            record)


def check_macro_allocation(cfg: Config) -> None:
    """ConfigError unless ``networks.macro_allocation: regime_table`` has Phase 1's table
    (``train.macro_pretrain.alloc_target: regime_table``)."""
    target = cfg.train.macro_pretrain.alloc_target
    if cfg.networks.macro_allocation == "regime_table" and target != "regime_table":
        raise ConfigError("config key 'networks.macro_allocation' = 'regime_table' needs "
                          f"train.macro_pretrain.alloc_target: regime_table (got {target!r})")


def prepare_macro(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                  pool: tuple[PoolMarket, ...] = ()) -> Prepared:
    p = cfg.train.macro_pretrain
    check_pretrain_config(p, "macro_pretrain")
    own, train, val, pool_info = pooled(ds.macro_datasets, market, meta, feats, cfg, pool)
    table_info: dict[str, Any] = {"alloc_target": p.alloc_target}
    if p.alloc_target == "regime_table":
        table = ds.regime_table(train)
        train, val = (ds.with_table_target(x, table, p.alloc_temperature) for x in (train, val))
        table_info["regime_table"] = np.round(table, 6).tolist()
    cw = pt.class_weights(np.asarray(train.regime), p.class_weights)
    hp = pt.PretrainHParams.from_config(p, cw)
    check_macro_allocation(cfg)
    logits = (p.alloc_temperature * table
              if cfg.networks.macro_allocation == "regime_table" else None)
    task, _ = pt.macro_task(cfg.networks, train, logits)
    dates = np.asarray(meta.dates)
    label_share = ds.regime_frequencies(train.regime)

    def summarize(m: dict[str, np.ndarray]) -> dict[str, Any]:
        return {
            "val_regime_accuracy": float(np.mean(m["regime_accuracy"])),
            "val_regime_balanced_accuracy": float(np.mean(m["regime_balanced_accuracy"])),
            "val_alloc_return": float(np.mean(m["alloc_return"])),
            "val_alloc_kl": float(np.mean(m["alloc_kl"])),
            "val_regime_loss": float(np.mean(m["regime_loss"])),
        }

    padded_train, padded_val = pt.pad_set(train, p.batch_size), pt.pad_set(val)
    return Prepared(
        phase=1, task=task, train=padded_train, val=padded_val, hp=hp, pcfg=p,
        baselines=macro_baselines(train, val),
        info={
            "train_samples": train.size, "val_samples": val.size,
            "padded_rows": {"train": padded_train.rows, "val": padded_val.rows},
            "train_span": [str(dates[int(own[0].day[0])]), str(dates[int(own[0].day[-1])])],
            "val_span": [str(dates[int(own[1].day[0])]), str(dates[int(own[1].day[-1])])],
            "train_regime_share": label_share.tolist(), **pool_info, **table_info,
            "class_weights": cw.tolist(), "class_weighting": p.class_weights,
            "current_portfolio": "equal weight over valid sectors, cash = min_cash, drawdown 0",
        },
        summarize=summarize,
        headline=[
            ("regime balanced accuracy", "val_regime_balanced_accuracy",
             "persistence_baseline_balanced_accuracy"),
            ("  majority-class baseline", "majority_baseline_balanced_accuracy", None),
            ("regime accuracy", "val_regime_accuracy", "persistence_baseline_accuracy"),
            ("next-week allocation return", "val_alloc_return", "equal_weight_return"),
            ("  oracle allocation return", "oracle_alloc_return", None),
        ],
    )


# --------------------------------------------------------------------------- Phase 2


def micro_baselines(val: pt.MicroBatch) -> dict[str, float]:
    """1/N over tradable stocks, goal-consistent equal weight (g_s spread evenly inside each
    sector), the 1/N allocation's goal alignment and the oracle (target) return."""
    s = val.samples
    mask = np.asarray(s.stock_mask)
    r = np.asarray(s.next_returns, np.float64)
    goal = np.asarray(val.goal, np.float64)
    sector = np.asarray(s.stock_sector)
    num_s = goal.shape[1] - NUM_REGIMES
    n = np.maximum(mask.sum(1, keepdims=True), 1)
    ew = np.where(mask, 1.0 / n, 0.0)
    onehot = (sector[..., None] == np.arange(num_s)) & mask[..., None]  # [B, N, S]
    per_sector = np.maximum(onehot.sum(1), 1)  # [B, S]
    g = goal[:, :num_s]
    gew = np.where(mask, np.take_along_axis(g / per_sector, sector, 1), 0.0)
    target = np.asarray(pt.goal_target(s, val.goal), np.float64)
    a = np.einsum("bn,bns->bs", ew, onehot)
    cos = (a * g).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(g, axis=1),
                                      1e-12)
    return {
        "equal_weight_return": float((ew * r).sum(1).mean()),
        "goal_equal_weight_return": float((gew * r).sum(1).mean()),
        "equal_weight_goal_alignment": float(cos.mean()),
        "oracle_return": float((target * r).sum(1).mean()),
    }


def prepare_micro(cfg: Config, market: MarketArrays, meta: MarketMeta, feats: FeatureSet,
                  pool: tuple[PoolMarket, ...] = ()) -> Prepared:
    p = cfg.train.micro_pretrain
    check_pretrain_config(p, "micro_pretrain")
    own, train, val, pool_info = pooled(ds.micro_datasets, market, meta, feats, cfg, pool)
    target_info: dict[str, Any] = {"alloc_target": p.alloc_target}
    if p.alloc_target == "fitted":
        cols = (None if not p.forecast_features else
                tuple(STOCK_FEATURES.index(n) for n in p.forecast_features))
        fit = ds.fit_within_forecast(train, market.num_sectors, columns=cols)
        train, val = (ds.with_forecast_target(x, fit, p.alloc_temperature, market.num_sectors)
                      for x in (train, val))
        target_info["forecast"] = {
            "horizon_days": p.target_horizon, "score_sd": float(fit.score_sd),
            "coef_per_sd": dict(zip(STOCK_FEATURES, np.round(np.asarray(fit.coef), 8).tolist(),
                                    strict=True))}
    else:
        train, val = train.replace(forward=None), val.replace(forward=None)
    labels = [ds.train_regime_labels(market, meta, feats, cfg)]
    labels += [ds.train_regime_labels(m.market, m.meta, m.feats, cfg) for m in pool]
    probs = ds.regime_frequencies(np.concatenate(labels))
    _, data_root = root_keys(cfg.seed)
    val_goals = pt.sample_goals(jax.random.fold_in(data_root, 2), val.sector_active,
                                jnp.asarray(probs, jnp.float32))
    val_set = pt.MicroBatch(val, val_goals)
    task, _ = pt.micro_task(cfg.networks, train)
    dates = np.asarray(meta.dates)

    def summarize(m: dict[str, np.ndarray]) -> dict[str, Any]:
        return {
            "val_goal_alignment": float(np.mean(m["goal_alignment"])),
            "val_return": float(np.mean(m["return"])),
            "val_alloc_kl": float(np.mean(m["alloc_kl"])),
        }

    padded, padded_val = pt.pad_set(train, p.batch_size), pt.pad_set(val_set)
    return Prepared(
        phase=2, task=task,
        train=padded.replace(data=pt.MicroTrainSet(padded.data, jnp.asarray(probs, jnp.float32))),
        val=padded_val, hp=pt.PretrainHParams.from_config(p), pcfg=p,
        baselines=micro_baselines(val_set),
        info={
            "train_samples": train.size, "val_samples": val.size,
            "padded_rows": {"train": padded.rows, "val": padded_val.rows},
            "train_span": [str(dates[int(own[0].day[0])]), str(dates[int(own[0].day[-1])])],
            "val_span": [str(dates[int(own[1].day[0])]), str(dates[int(own[1].day[-1])])],
            "goal_regime_probs": probs.tolist(), **pool_info, **target_info,
            "goals": "Dirichlet(1) over sectors with a tradable stock ⊕ regime one-hot; fresh "
                     "each epoch (training), fixed from the config seed (validation)",
            "current_weights": "equal weight over tradable stocks * (1 - min_cash)",
        },
        summarize=summarize,
        headline=[
            ("goal alignment (cosine)", "val_goal_alignment", "equal_weight_goal_alignment"),
            ("next-day return", "val_return", "equal_weight_return"),
            ("  goal-consistent equal weight", "goal_equal_weight_return", None),
            ("  oracle return", "oracle_return", None),
        ],
    )


PREPARE = {1: prepare_macro, 2: prepare_micro}


# --------------------------------------------------------------------------- the host loop


def _epoch_records(metrics: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per-epoch records (means over the seeds active that epoch) from [K, chunk] metrics."""
    active = metrics["active"]  # [K, C]
    out = []
    for e in range(active.shape[1]):
        on = active[:, e]
        if not on.any():
            continue
        rec: dict[str, Any] = {"epoch": int(metrics["epoch"][on, e].max()),
                               "seeds_active": int(on.sum())}
        for k, v in metrics.items():
            if k in ("active", "epoch"):
                continue
            rec[k] = float(np.mean(v[on, e]))
        if active.shape[0] > 1:
            rec["val_loss_per_seed"] = [float(x) if a else None
                                        for x, a in zip(metrics["val_loss"][:, e], on,
                                                        strict=True)]
        rec["per_seed"] = {k: [float(x) if a else None for x, a in zip(v[:, e], on, strict=True)]
                           for k, v in metrics.items() if k not in ("active", "epoch")}
        out.append(rec)
    return out


def pretrain_optimizer(phase: int, cfg: Config) -> optax.GradientTransformation:
    """Phase ``phase``'s optimiser: ``pretrain.make_optimizer``, with weight decay kept off
    the Macro's frozen regime table (``networks.macro_allocation: regime_table``)."""
    tied = phase == 1 and cfg.networks.macro_allocation == "regime_table"
    return pt.make_optimizer(decayable if tied else None)


def run_pretrain_phase(
    phase: int,
    cfg: Config,
    market: MarketArrays,
    meta: MarketMeta,
    feats: FeatureSet,
    run: Run,
    *,
    resume: bool = False,
    epoch_limit: int | None = None,
    progress: bool = True,
) -> PhaseResult:
    """Train Phase ``phase`` (1 or 2) into ``run``; returns the summary and its path.

    ``resume``: continue from the phase's latest checkpoint if it has one (else start).
    ``epoch_limit``: stop after this many epochs in total (a simulated interruption; the
    cosine schedule still spans ``epochs``). ``compile_s`` counts every program the phase
    compiles (init, the chunk, the final evaluation).
    """
    t0 = time.perf_counter()
    pool = market_pool(cfg, run.info.get("market"), phase, market, meta)
    prep = PREPARE[phase](cfg, market, meta, feats, pool)
    seeds = int(cfg.train.seeds)
    if seeds < 1:
        raise ConfigError(f"config key 'train.seeds' must be >= 1 (got {seeds})")
    tx = pretrain_optimizer(phase, cfg)
    epochs = prep.pcfg.epochs
    limit = epochs if epoch_limit is None else max(0, min(int(epoch_limit), epochs))
    ck = PhaseCheckpointer(run, phase, keep_latest=cfg.train.keep_latest,
                           best_metric=CHECKPOINT_METRIC, higher_is_better=False)
    try:
        state, init_s, resumed_from = _start_or_resume(prep, tx, cfg, ck, resume, run.name)
        state, chunk_s = _train_to_limit(prep, tx, state, limit, run, ck, seeds, progress)
        ck.wait_until_finished()
        steps = {"resumed_from_step": resumed_from, "latest_step": ck.latest_step(),
                 "best_step": ck.best_step()}
    finally:
        ck.close()
    return _finish_phase(prep, state, run, cfg, t0, init_s + chunk_s, steps)


# HOST ONLY
def _start_or_resume(prep: Prepared, tx: optax.GradientTransformation, cfg: Config,
                     ck: PhaseCheckpointer, resume: bool, run_name: str
                     ) -> tuple[pt.PretrainState, float, int | None]:
    """(state [K], init compile seconds, the step resumed from or None): the K seeds' fresh
    state, or with ``resume`` the phase's latest checkpoint (CheckpointError when the phase
    has checkpoints and ``resume`` is off)."""
    keys = seed_keys(cfg.seed, int(cfg.train.seeds))
    init, init_s, _ = compile_ahead(jax.jit(jax.vmap(lambda k: pt.init_state(prep.task, tx, k))),
                                    keys)
    state = init(keys)
    if ck.latest_step() is None:
        return state, init_s, None
    if not resume:
        raise CheckpointError(
            f"phase {prep.phase} of run {run_name} already has checkpoints "
            f"(steps {ck.all_steps()}); pass --resume to continue it or use a new --run")
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    state, _meta, resumed_from = ck.restore(abstract, "latest")
    return state, init_s, resumed_from


# HOST ONLY
def _train_to_limit(prep: Prepared, tx: optax.GradientTransformation, state: pt.PretrainState,
                    limit: int, run: Run, ck: PhaseCheckpointer, seeds: int, progress: bool
                    ) -> tuple[pt.PretrainState, float]:
    """(state, chunk compile seconds): the chunk program compiled once, run until every seed
    stopped early or reached ``limit`` epochs (``_train_chunks``), with a progress bar."""
    p = prep.pcfg
    spec = pt.EngineSpec(train_size=prep.train.rows, batch_size=p.batch_size,
                         chunk_epochs=min(p.chunk_epochs, p.epochs), total_epochs=p.epochs,
                         patience=p.patience)
    limit_arr = jnp.asarray(limit, jnp.int32)
    chunk, chunk_s, _ = compile_ahead(pt.make_run_chunk(prep.task, tx, spec), state,
                                      prep.hp, prep.train, prep.val, limit_arr)
    bar = tqdm(total=limit, initial=min(int(np.max(np.asarray(state.epoch))), limit),
               desc=f"phase {prep.phase}", unit="epoch", file=sys.stderr, disable=not progress,
               leave=False)
    state = _train_chunks(lambda s: chunk(s, prep.hp, prep.train, prep.val, limit_arr),
                          state, limit, run, prep.phase, ck, seeds, bar)
    bar.close()
    return state, chunk_s


# HOST ONLY
def _finish_phase(prep: Prepared, state: pt.PretrainState, run: Run, cfg: Config, t0: float,
                  compile_s: float, steps: dict[str, int | None]) -> PhaseResult:
    """The best params of every seed on the validation split (one more compiled program),
    the phase summary written, and the headline rows."""
    evaluate, eval_s, _ = compile_ahead(pt.make_evaluate(prep.task), state.best_params,
                                        prep.hp, prep.val)
    losses, metrics = jax.device_get(evaluate(state.best_params, prep.hp, prep.val))
    summary: dict[str, Any] = {
        **_pretrain_outcome(prep, state, losses, metrics),
        "wall_s": round(time.perf_counter() - t0, 3),
        "compile_s": round(compile_s + eval_s, 3),
        "seeds": int(cfg.train.seeds),
        "per_seed": _pretrain_per_seed(state, losses, metrics),
        **steps,
        "params_used": "per-seed best_params (lowest validation loss; in every checkpoint)",
        **prep.info,
        **skipped_pool(cfg, run.info.get("market"), prep.phase),
    }
    path = write_phase_summary(run, prep.phase, summary)
    rows = [(label, float(summary[key]), base, float(summary[base]) if base else None)
            for label, key, base in prep.headline]
    return PhaseResult(prep.phase, summary, path, rows)


def _train_chunks(chunk: Callable[[pt.PretrainState], tuple[pt.PretrainState, Any]],
                  state: pt.PretrainState, limit: int, run: Run, phase: int,
                  ck: PhaseCheckpointer, seeds: int, bar: Any) -> pt.PretrainState:
    """Chunks until every seed stopped early or reached ``limit`` epochs: per chunk, one
    metrics line per epoch and a checkpoint (ranked by the mean last validation loss)."""
    def done(s: pt.PretrainState) -> bool:
        return bool(np.all(np.asarray(s.stopped) | (np.asarray(s.epoch) >= limit)))

    while not done(state):
        before = int(np.max(np.asarray(state.epoch)))
        state, metrics = chunk(state)
        for rec in _epoch_records(jax.device_get(metrics)):
            epoch = rec.pop("epoch")
            run.log_metrics(phase, epoch, rec)
        step = int(np.max(np.asarray(state.epoch)))
        ck.save(step, state,
                metrics={CHECKPOINT_METRIC: float(np.mean(np.asarray(state.last_val))),
                         "best_val_loss": float(np.mean(np.asarray(state.best_val)))},
                meta={"seeds": seeds, "epochs_run": step,
                      "stopped": np.asarray(state.stopped).tolist()})
        bar.update(step - before)
        bar.set_postfix(val_loss=f"{float(np.mean(np.asarray(state.last_val))):.4f}")
        if step == before:  # every seed stopped inside the chunk: nothing advanced
            break
    return state


def _pretrain_outcome(prep: Prepared, state: pt.PretrainState, losses: Any, metrics: Any
                      ) -> dict[str, Any]:
    """The summary's headline: the best params' validation metrics (means), the baselines
    and the epochs run."""
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    return {
        **prep.summarize(metrics),
        "val_loss": float(np.mean(np.asarray(losses))),
        **prep.baselines,
        "epochs": int(np.max(np.asarray(state.epoch))),
    }


def _pretrain_per_seed(state: pt.PretrainState, losses: Any, metrics: Any
                       ) -> dict[str, list]:
    per_seed = {k: np.asarray(v).tolist() for k, v in metrics.items()}
    per_seed["val_loss"] = np.asarray(losses).tolist()
    per_seed["best_epoch"] = np.asarray(state.best_epoch).tolist()
    per_seed["epochs"] = np.asarray(state.epoch).tolist()
    per_seed["stopped_early"] = np.asarray(state.stopped).tolist()
    return per_seed


def phase_task(phase: int, cfg: Config, market: MarketArrays, meta: MarketMeta,
               feats: FeatureSet) -> pt.Task:
    """Phase ``phase``'s network task (1: MacroActor, 2: MicroActor) from the shapes of its
    training samples alone: ``jax.eval_shape`` traces the dataset builder without computing a
    sample (the eager build costs ~8 s of small compiles a phase in a fresh process)."""
    datasets, task = {1: (ds.macro_datasets, pt.macro_task),
                      2: (ds.micro_datasets, pt.micro_task)}[phase]
    train, _ = jax.eval_shape(lambda: datasets(market, meta, feats, cfg))
    return task(cfg.networks, train)[0]


def restore_phase_state(run: Run, phase: int, cfg: Config, market: MarketArrays,
                        meta: MarketMeta, feats: FeatureSet, step: int | str | None = None
                        ) -> tuple[pt.PretrainState, dict, int]:
    """Restore a supervised phase's checkpointed state (all seeds) for later phases or tests."""
    task = phase_task(phase, cfg, market, meta, feats)
    tx = pretrain_optimizer(phase, cfg)
    abstract = jax.eval_shape(jax.vmap(lambda k: pt.init_state(task, tx, k)),
                              seed_keys(cfg.seed, cfg.train.seeds))
    with PhaseCheckpointer(run, phase, read_only=True) as ck:
        return ck.restore(abstract, step)


def restore_best_params(run: Run, phase: int, cfg: Config, market: MarketArrays,
                        meta: MarketMeta, feats: FeatureSet
                        ) -> tuple[pt.PretrainState, dict, int]:
    """The state later phases and the evaluation read a supervised phase's ``best_params``
    (and ``best_val``) from: the latest checkpoint's. Every checkpoint carries each seed's best
    params so far, so the latest holds the lowest validation loss of the whole phase; the
    checkpoint ranked best by ``CHECKPOINT_METRIC`` (the *current* params' loss) can be an
    earlier one with older best params (with 5-epoch chunks, the quick preset's Phase 1 ranks
    step 5 best while its seeds' best epochs are 9, 5 and 10; until 2026-12-06 that step's
    were read)."""
    return restore_phase_state(run, phase, cfg, market, meta, feats, None)
