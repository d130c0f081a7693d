"""Episode-start curriculum for the RL phases: bull -> mixed -> stress (spec §5.8, fixed).

The original's curriculum changed nothing but a log line (spec §5.8, §11 item 24). Here a stage
is a set of allowed episode start days (calendar week ends), computed once on the host from the
market's regimes and its benchmark, and handed to the compiled training program as int32 leaves
(``StartSet``), so moving between stages never recompiles.

  stage 0  bull    week ends whose regime is Bull (the generator's latent regime when the market
                   has one, else the causal rule regime of the week ending there)
  stage 1  mixed   every week end of the training window
  stage 2  stress  week ends in a Bear regime, plus the ``stress_drawdowns`` largest benchmark
                   drawdowns (from ``stress_lead_weeks`` before each peak to its trough), so that
                   stress episodes run into the crashes
Every stage is restricted to the env's own start window [start_lo, start_hi]; a stage that would
be empty falls back to the mixed set (recorded in ``info``).

Why start sets and not only (start_lo, start_hi): bull and stress periods are not contiguous.
``MacroEnv.reset_env`` draws from the contiguous window [start_lo, start_hi], so the RL loop
draws the start day itself from the stage's set and resets into the one-week window
[day, day] (``training.rl_macro``). ``stage_window`` still gives each stage's bounding window
for code that can only move ``start_lo``/``start_hi``. (A cleaner env-side alternative would be
an ``allowed_start`` [T] bool leaf in ``EnvParams`` sampled by ``reset_env``; not needed.)

Promotion is a host-side rule on validation metrics (``promote``): after at least
``min_updates`` updates in the stage, promote when the validation Sharpe reaches the stage's
threshold; promote anyway once the run has spent ``max_fraction`` of its updates (cumulative) in
the stages up to this one. The last stage is final.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from hrl_sarp_jax.types import BEAR, BULL, Array

STAGE_NAMES = ("bull", "mixed", "stress")
NUM_STAGES = len(STAGE_NAMES)


@dataclass(frozen=True)
class CurriculumRule:
    """Host-side curriculum settings (static; the stage sets themselves are array leaves)."""

    enabled: bool = True
    """False: train on the mixed stage (every week end) throughout."""
    promote_sharpe: tuple[float, ...] = (0.5, 0.3)
    """Validation Sharpe that promotes out of stage 0 and stage 1."""
    min_updates: tuple[int, ...] = (20, 20)
    """Updates a stage must run before a Sharpe promotion counts."""
    max_fraction: tuple[float, ...] = (0.2, 0.6)
    """Cumulative fraction of all updates after which stage 0 / 1 are left regardless."""
    stress_drawdowns: int = 3
    """Number of largest benchmark drawdowns whose windows join the stress stage."""
    stress_lead_weeks: int = 4
    """Stress windows start this many week ends before each drawdown's peak."""


DEFAULT_RULE = CurriculumRule()

START_SET_BUCKET = 16
"""Start sets are padded to a multiple of this many week ends (``build_stage_windows``)."""


@struct.dataclass
class StartSet:
    """Allowed episode start days: ``days[:count]`` (int32 day indices of week ends); the
    padding repeats ``days[0]`` so any index is a valid day."""

    days: Array    # [W] int32
    count: Array   # [] int32, >= 1


@struct.dataclass
class StageWindows:
    """Per-stage start sets (stage on the leading axis) and their bounding windows."""

    days: Array    # [K, W] int32
    count: Array   # [K] int32
    lo: Array      # [K] int32 first allowed day
    hi: Array      # [K] int32 last allowed day


def stage_starts(stage: Array | int, windows: StageWindows) -> StartSet:
    """The start set of ``stage`` (pure; ``stage`` may be traced)."""
    return StartSet(days=windows.days[stage], count=windows.count[stage])


def stage_window(stage: Array | int, windows: StageWindows) -> tuple[Array, Array]:
    """(start_lo, start_hi) int32: the bounding window of ``stage`` (pure; may be traced)."""
    return windows.lo[stage], windows.hi[stage]


def sample_start_days(key: Array, starts: StartSet, shape: tuple[int, ...]) -> Array:
    """int32 ``shape`` start days drawn uniformly from ``starts`` (pure). A per-env start set
    (days [E, W], count [E]: a pool of markets, ``stack_windows``) draws env i's day from row
    i (``shape`` must be (E,))."""
    idx = jax.random.randint(key, shape, 0, starts.count, jnp.int32)
    if starts.days.ndim == 2:
        return jnp.take_along_axis(starts.days, idx[:, None], axis=1)[:, 0]
    return starts.days[idx]


# --------------------------------------------------------------------------- host side


# HOST ONLY
def stack_windows(windows: list[StageWindows], copies: int = 1) -> StageWindows:
    """Several markets' stage windows as per-env start sets: days [stages, E, W], count / lo /
    hi [stages, E] with E = len(windows) x copies (env i: market i mod len(windows), as
    ``envs.params.stack_markets``); rows are padded to the widest with their first day."""
    width = max(int(w.days.shape[1]) for w in windows)

    def pad(d: Array) -> np.ndarray:
        d = np.asarray(d)
        return np.concatenate([d, np.repeat(d[:, :1], width - d.shape[1], axis=1)], axis=1)

    def env_axis(rows: list) -> Array:
        return jnp.asarray(np.concatenate([np.stack(rows, axis=1)] * int(copies), axis=1))

    return StageWindows(days=env_axis([pad(w.days) for w in windows]),
                        count=env_axis([np.asarray(w.count) for w in windows]),
                        lo=env_axis([np.asarray(w.lo) for w in windows]),
                        hi=env_axis([np.asarray(w.hi) for w in windows]))


# HOST ONLY
def make_start_set(days: np.ndarray, width: int) -> StartSet:
    """StartSet of the (non-empty) sorted ``days``, padded to ``width``."""
    days = np.asarray(days, np.int32)
    if days.size == 0:
        raise ValueError("a start set needs at least one day")
    if days.size > width:
        raise ValueError(f"{days.size} start days do not fit width {width}")
    padded = np.full(width, days[0], np.int32)
    padded[: days.size] = days
    return StartSet(days=jnp.asarray(padded), count=jnp.asarray(days.size, jnp.int32))


# HOST ONLY
def window_week_ends(week_end: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """int32 indices of the week ends in [lo, hi]."""
    idx = np.flatnonzero(np.asarray(week_end, bool)).astype(np.int32)
    return idx[(idx >= lo) & (idx <= hi)]


# HOST ONLY
def largest_drawdowns(returns: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` non-overlapping (peak, trough) day pairs of the largest drawdowns of the
    wealth path cumprod(1 + returns), largest first (each at least one day long)."""
    r = np.asarray(returns, np.float64)
    wealth = np.cumprod(1.0 + r)
    free = np.ones(r.size, bool)
    out: list[tuple[int, int]] = []
    for _ in range(max(int(count), 0)):
        best, best_pair = 0.0, None
        # scan the free segments; a drawdown may not straddle an already chosen one
        seg_start = None
        for i in range(r.size + 1):
            inside = i < r.size and free[i]
            if inside and seg_start is None:
                seg_start = i
            if not inside and seg_start is not None:
                w = wealth[seg_start:i]
                peak_val = np.maximum.accumulate(w)
                dd = 1.0 - w / peak_val
                trough = int(np.argmax(dd))
                if dd[trough] > best:
                    peak = int(np.argmax(w[: trough + 1]))
                    best, best_pair = float(dd[trough]), (seg_start + peak, seg_start + trough)
                seg_start = None
        if best_pair is None:
            break
        out.append(best_pair)
        peak, trough = best_pair
        # the episode is over once wealth recovers the peak (or at the end of the data)
        # (the recovery day itself may be the peak of the next drawdown)
        after = np.flatnonzero(wealth[trough:] >= wealth[peak])
        end = trough + int(after[0]) if after.size else r.size
        free[peak: end] = False
    return out


# HOST ONLY
def build_stage_windows(
    week_end: np.ndarray,
    regime: np.ndarray,
    benchmark_returns: np.ndarray,
    start_lo: int,
    start_hi: int,
    t_hi: int,
    rule: CurriculumRule | None = None,
    width_lo: int | None = None,
) -> tuple[StageWindows, dict[str, Any]]:
    """The three stages' start sets inside the env's start window [start_lo, start_hi].

    Args:
      week_end: bool [T] calendar week ends.
      regime: int32 [T] regime per day (0 Bull, 1 Bear, 2 Sideways, -1 unknown): the latent
        regime when the market has one, else the rule regime (``regime_for_curriculum``).
      benchmark_returns: float [T] simple daily returns of the benchmark.
      start_lo, start_hi: the env's start window; t_hi: the split's last day (drawdowns are
        searched in [start_lo, t_hi], never beyond the split).
      width_lo: the sets' width W counts the week ends in [width_lo, start_hi] (default
        ``start_lo``; the split's first day, before the features' warm-up, gives markets of
        one training span one W), rounded up to a multiple of ``START_SET_BUCKET``: walk-forward
        folds then share their compiled programs. Draws read ``days[:count]`` only.
    Returns:
      (StageWindows with that W, info: per-stage counts, the
      drawdown windows and any stage that fell back to the mixed set).
    """
    rule = DEFAULT_RULE if rule is None else rule
    mixed = window_week_ends(week_end, start_lo, start_hi)
    if mixed.size == 0:
        raise ValueError(f"no week end in the start window [{start_lo}, {start_hi}]")
    reg = np.asarray(regime, np.int32)
    bull = mixed[reg[mixed] == BULL]
    r = np.asarray(benchmark_returns, np.float64)[start_lo: t_hi + 1]
    drawdowns = [(p + start_lo, t + start_lo)
                 for p, t in largest_drawdowns(r, rule.stress_drawdowns)]
    we_all = np.flatnonzero(np.asarray(week_end, bool))
    stress_mask = reg[mixed] == BEAR
    for peak, trough in drawdowns:
        before = we_all[we_all <= peak]
        first = before[max(before.size - 1 - rule.stress_lead_weeks, 0)] if before.size else peak
        stress_mask |= (mixed >= first) & (mixed <= trough)
    stress = mixed[stress_mask]
    sets, fallback = [], []
    for name, days in zip(STAGE_NAMES, (bull, mixed, stress), strict=True):
        if days.size == 0:
            fallback.append(name)
            days = mixed
        sets.append(days)
    span = window_week_ends(week_end, start_lo if width_lo is None else min(width_lo, start_lo),
                            start_hi).size
    width = -(-int(span) // START_SET_BUCKET) * START_SET_BUCKET
    starts = [make_start_set(d, width) for d in sets]
    windows = StageWindows(
        days=jnp.stack([s.days for s in starts]),
        count=jnp.stack([s.count for s in starts]),
        lo=jnp.asarray([int(d[0]) for d in sets], jnp.int32),
        hi=jnp.asarray([int(d[-1]) for d in sets], jnp.int32),
    )
    info = {
        "stage_names": list(STAGE_NAMES),
        "stage_start_counts": [int(d.size) for d in sets],
        "stress_drawdowns": [[int(p), int(t)] for p, t in drawdowns],
        "fallback_to_mixed": fallback,
    }
    return windows, info


# HOST ONLY
def regime_for_curriculum(latent_regime: np.ndarray, regime_rule: np.ndarray
                          ) -> tuple[np.ndarray, str]:
    """(regime [T], source): the latent regime when any day has one, else the rule regime."""
    latent = np.asarray(latent_regime, np.int32)
    if np.any(latent >= 0):
        return latent, "latent"
    return np.asarray(regime_rule, np.int32), "rule"


# HOST ONLY
def promote(
    stage: int,
    val_sharpe: float,
    updates_in_stage: int,
    updates_done: int,
    total_updates: int,
    rule: CurriculumRule | None = None,
) -> bool:
    """Whether to move from ``stage`` to ``stage + 1`` after an evaluation (see module doc)."""
    rule = DEFAULT_RULE if rule is None else rule
    if not rule.enabled or stage >= NUM_STAGES - 1:
        return False
    if updates_done >= rule.max_fraction[stage] * total_updates:
        return True
    return bool(updates_in_stage >= rule.min_updates[stage]
                and np.isfinite(val_sharpe) and val_sharpe >= rule.promote_sharpe[stage])


# HOST ONLY
def initial_stage(rule: CurriculumRule | None = None) -> int:
    """Stage 0 when the curriculum is on, else the mixed stage."""
    rule = DEFAULT_RULE if rule is None else rule
    return 0 if rule.enabled else 1
