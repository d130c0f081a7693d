"""Checkpoint selection with a margin over the starting policy (``train.checkpoint_margin``).

# HOST ONLY (NumPy)
Issue 13 (cause 4, "validation that cannot select"): an RL phase's validation metric is a mean
over a handful of overlapping episodes, and ``best`` takes its maximum over every evaluation of
the run, so a trained checkpoint that is no better than the starting policy wins whenever noise
lifts it. With a margin z > 0 every checkpoint of Phases 3, 5 and 4 (the latter ranked by
``val_sharpe``) ranks by a lower confidence bound of its improvement over the starting policy
(update, round or step 0), evaluated on the same episodes:

    score_t = val_t - z * se_t,   se_t = sd_e(mean_k(s_t[k, e] - s_0[k, e])) / sqrt(n_windows)

with s[k, e] the validation Sharpe of seed k on episode e. The difference is paired (the same
market path for both), so its noise is far below either Sharpe's. Episodes of one market
overlap; ``n_windows`` counts the independent windows behind them (per market, the span of
their start days over one episode's length, at most the episode count), so a pool of M markets
gives M times one market's. At the start se_0 = 0 and score_0 = val_0: a trained checkpoint
replaces the start only when it beats it by more than z standard errors, and among trained
checkpoints the highest lower bound wins. z = 0 is the plain maximum (the original's rule).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from hrl_sarp_jax.checkpointing import PhaseCheckpointer
from hrl_sarp_jax.errors import CheckpointError

SELECT_METRIC = "val_select"
"""The checkpoints' ranking metric when the margin is on (the validation metric itself when off)."""
DAYS_PER_WEEK = 5
"""Trading days per week, to express an episode's length in the start days' units."""


def effective_windows(start_days: np.ndarray, episode_weeks: int) -> float:
    """Independent validation windows behind the episodes starting on ``start_days`` ([E]
    trading-day indices of one market, or [M, E] for M pooled markets): per market
    ``min(E, 1 + (last - first) / (5 * episode_weeks))``, summed over markets."""
    days = np.atleast_2d(np.asarray(start_days, np.float64))
    span = days.max(axis=1) - days.min(axis=1)
    per = np.minimum(days.shape[1], 1.0 + span / (DAYS_PER_WEEK * float(episode_weeks)))
    return float(np.sum(per))


def improvement_se(now: np.ndarray, start: np.ndarray, windows: float) -> float:
    """Standard error of the mean paired improvement of per-episode Sharpes ``now`` over
    ``start`` (both [K seeds, E episodes], the same episodes): the seeds' mean difference per
    episode, its SD over episodes over sqrt(``windows``). 0 with fewer than two episodes."""
    now, start = np.asarray(now, np.float64), np.asarray(start, np.float64)
    if now.shape != start.shape:
        raise ValueError(f"per-episode Sharpes of {now.shape} and of the start {start.shape} "
                         "must cover the same seeds and episodes")
    d = np.mean(now - start, axis=0).reshape(-1)
    if d.size < 2:
        return 0.0
    return float(np.std(d, ddof=1) / np.sqrt(max(float(windows), 1.0)))


def selection_score(value: float, now: np.ndarray, start: np.ndarray | None, windows: float,
                    margin: float) -> float:
    """``value - margin * improvement_se(now, start, windows)`` (``value`` itself without a
    start to pair with)."""
    if start is None or not margin:
        return float(value)
    return float(value) - float(margin) * improvement_se(now, start, windows)


def seeds_vs_start(now: np.ndarray, start: np.ndarray, windows: float) -> dict:
    """Per seed (``now`` / ``start`` [K, E]): the mean per-episode improvement over the start
    (under ``train.validation: continuous`` the episodes are the walk's quarters, so this is
    the mean quarterly Sharpe's change, near but not equal to the walk Sharpe's),
    its standard error (as ``improvement_se`` for that seed alone) and how many seeds improved
    by more than one standard error -- issue 13's test of an RL phase, for its summary."""
    now, start = np.asarray(now, np.float64), np.asarray(start, np.float64)
    diff = [float(np.mean(now[k] - start[k])) for k in range(now.shape[0])]
    se = [improvement_se(now[k:k + 1], start[k:k + 1], windows) for k in range(now.shape[0])]
    return {"diff": diff, "se": se,
            "improved_seeds": int(sum(d > s for d, s in zip(diff, se, strict=True)))}


START_KEY = "start_episode_sharpe"
"""Checkpoint metadata key of the starting policy's per-episode Sharpes [K, E] (a resume
pairs later checkpoints with them)."""


def saved_start(user: dict) -> np.ndarray | None:
    """The starting policy's per-episode Sharpes from a restored checkpoint's metadata."""
    return None if START_KEY not in user else np.asarray(user[START_KEY], np.float64)


def vs_start_line(label: str, what: str, vs: dict) -> str:
    """The progress line of ``seeds_vs_start``'s result (``what``: "policy", "actor", ...)."""
    return (f"{label}: the final {what} beats its start on validation by more than one "
            f"standard error for {vs['improved_seeds']} of {len(vs['diff'])} seed(s) (mean "
            f"change {np.mean(vs['diff']):+.3f}, SE {np.mean(vs['se']):.3f})")


def summary_fields(margin: float, windows: float, best_metrics: dict | None,
                   vs_start: dict | None) -> dict:
    """A phase summary's selection record: the margin, the windows and the best checkpoint's
    score (with a margin), and ``final_vs_start`` (when the start was evaluated)."""
    out: dict = {}
    if margin:
        out.update(checkpoint_margin=margin, val_windows=windows,
                   best_select=None if not best_metrics else best_metrics.get(SELECT_METRIC))
    if vs_start is not None:
        out["final_vs_start"] = vs_start
    return out


class RankedCheckpoints:
    """One RL phase run's checkpoints under the selection rule, written once for Phases 3, 4
    and 5 and the flat baseline: the checkpointer (latest-N + best by ``metric``, or by
    ``SELECT_METRIC`` with a margin), the refusal to mix a fresh run into existing steps, the
    start's per-episode Sharpes [K, E] (``set_start``; saved with every checkpoint and
    restored on resume) and the summary's selection record. A context manager (closes the
    checkpointer)."""

    def __init__(self, run: Any, phase: int | str, *, label: str, metric: str, margin: float,
                 keep_latest: int, resume: bool) -> None:
        self.label, self.metric, self.margin = label, metric, float(margin)
        self.ck = PhaseCheckpointer(run, phase, keep_latest=keep_latest,
                                    best_metric=SELECT_METRIC if self.margin else metric)
        if not resume and self.ck.latest_step() is not None:
            steps = self.ck.all_steps()
            self.ck.close()
            raise CheckpointError(
                f"{label} of run {run.name} already has checkpoints (steps {steps}); pass "
                "--resume to continue it or use a new --run")
        self.start: np.ndarray | None = None
        self.windows = 1.0
        """Independent validation windows (``effective_windows``), set once the setup is known."""
        self.resumed_from: int | None = None
        self.best_step: int | None = None
        self.latest_step: int | None = None
        self.best_metrics: dict | None = None

    def __enter__(self) -> RankedCheckpoints:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ck.close()

    def restore_latest(self, like: Any) -> tuple[Any, dict] | None:
        """(state, the checkpoint's own metadata) of the latest step, restored into the shapes
        of ``like``, and the start it saved; None when there is no checkpoint yet."""
        if self.ck.latest_step() is None:
            return None
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
        state, saved, self.resumed_from = self.ck.restore(abstract, "latest")
        user = saved.get("user", {})
        self.start = saved_start(user)
        return state, user

    def set_start(self, episode_sharpe: np.ndarray) -> None:
        """The starting policy's per-episode Sharpes [K, E] (step 0's evaluation)."""
        self.start = np.asarray(episode_sharpe, np.float64)

    def save(self, step: int, state: Any, metrics: dict, meta: dict, value: float,
             episode_sharpe: np.ndarray) -> dict:
        """Checkpoint ``state`` with ``metrics`` plus, with a margin, its selection score
        (``value``: the validation metric, ``episode_sharpe`` [K, E]), and ``meta`` plus the
        start's per-episode Sharpes; returns the metrics saved."""
        metrics = dict(metrics)
        if self.margin:
            metrics[SELECT_METRIC] = selection_score(value, episode_sharpe, self.start,
                                                     self.windows, self.margin)
        meta = dict(meta)
        if self.start is not None:
            meta[START_KEY] = self.start.tolist()
        self.ck.save(step, state, metrics=metrics, meta=meta)
        return metrics

    def finish(self) -> None:
        """Wait for the writes and read the best and latest steps (before closing)."""
        self.ck.wait_until_finished()
        self.best_step, self.latest_step = self.ck.best_step(), self.ck.latest_step()
        self.best_metrics = None if self.best_step is None else self.ck.metrics(self.best_step)

    def summary(self, final_episode_sharpe: np.ndarray, what: str,
                say: Any = None) -> dict:
        """The summary's checkpoint and selection record; ``say``s whether the final
        ``what`` ("policy", "actor", "pair") beats its start."""
        vs = None if self.start is None else seeds_vs_start(final_episode_sharpe, self.start,
                                                            self.windows)
        if vs is not None and say is not None:
            say(vs_start_line(self.label, what, vs))
        return {"best_step": self.best_step, "latest_step": self.latest_step,
                "resumed_from_step": self.resumed_from,
                **summary_fields(self.margin, self.windows, self.best_metrics, vs)}
