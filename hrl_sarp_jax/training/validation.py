"""How the RL phases validate while they train (``train.validation``).

# HOST ONLY (NumPy)
``episodes``: the policy runs up to ``MAX_EPISODES`` episodes started across the validation
window (the env's own episode length: Macro and flat 26 weeks, Micro 126 days), each from cash
with a fresh risk gate; the validation Sharpe is their mean and each episode is one of the
per-episode statistics the selection margin pairs (``training.selection``).

``continuous``: as the test is run (one book, one risk gate, the whole window), one walk from
the window's first week end (Micro: its first day) to its end; the validation Sharpe is that
walk's, and its consecutive quarters (``BLOCK_WEEKS`` weeks, ``BLOCK_DAYS`` days, the last
one taking the remainder, a window shorter than two quarters halved:
``finance.metrics.block_sharpes``) stand in for episodes in the margin's standard error.
The walk's length is the validation env params' ``max_steps_in_episode``, so the compiled
training programs do not depend on it. ``walk_window`` names its days as a backtest sees
them, so the baselines can be scored over the same walk (``pipeline.validation_baselines``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.finance.metrics import block_index
from hrl_sarp_jax.training import curriculum as cur
from hrl_sarp_jax.training.selection import effective_windows

VALIDATION_KINDS = ("episodes", "continuous")
MAX_EPISODES = 16
"""Validation episodes at most (``episodes``)."""
BLOCK_WEEKS = 13
"""Weeks per block of a continuous weekly walk (a quarter)."""
BLOCK_DAYS = 63
"""Trading days per block of a continuous daily walk (a quarter)."""


def check_kind(kind: str) -> str:
    """``kind`` if it is one of ``VALIDATION_KINDS``, else a ConfigError naming the key."""
    if kind not in VALIDATION_KINDS:
        raise ConfigError(f"train.validation = {kind!r} is not one of "
                          f"{', '.join(VALIDATION_KINDS)}")
    return kind


def eval_start_days(week_end: np.ndarray, lo: int, hi: int, weeks: int, max_episodes: int
                    ) -> np.ndarray:
    """int32 [K] evaluation start days: every k-th week end in [lo, hi] that leaves ``weeks``
    full weeks before hi (or the first week end if none does), k chosen so K <= max_episodes."""
    ends = cur.window_week_ends(week_end, lo, hi)
    if ends.size == 0:
        raise ConfigError(f"the validation window [{lo}, {hi}] holds no week end")
    usable = ends[: max(ends.size - weeks, 1)]
    every = max(math.ceil(usable.size / max(int(max_episodes), 1)), 1)
    return usable[::every].astype(np.int32)


def block_steps(kind: str, daily: bool = False) -> int:
    """The specs' block length: 0 for ``episodes``, ``BLOCK_WEEKS`` (``daily``:
    ``BLOCK_DAYS``) for ``continuous``."""
    if check_kind(kind) == "episodes":
        return 0
    return BLOCK_DAYS if daily else BLOCK_WEEKS


def weekly_plan(kind: str, week_end: np.ndarray, lo: int, hi: int, val_params: Any,
                max_episodes: int = MAX_EPISODES) -> tuple[Any, np.ndarray]:
    """(validation env params, int32 start days [K]) of a weekly env (MacroEnv, FlatEnv)
    whose validation window is days [lo, hi] (``val_params.t_hi`` = hi).

    ``episodes``: the params as given and K <= ``max_episodes`` start days spread over the
    window (``eval_start_days``). ``continuous``: the params with an episode of every week
    end after the window's first one up to hi, plus one step (so only the end of the split,
    or ruin, ends it), and that first week end alone."""
    if check_kind(kind) == "episodes":
        return val_params, eval_start_days(week_end, lo, hi, int(val_params.max_steps_in_episode),
                                           max_episodes)
    walk = walk_window(week_end, lo, hi)
    return (val_params.replace(max_steps_in_episode=walk.periods + 1),
            np.asarray([walk.t0], np.int32))


class WalkWindow(NamedTuple):
    """The days a continuous validation walk covers, as a backtest sees them: decisions on
    days t0 .. t0 + length - 1, returns earned on days t0 + 1 .. t0 + length; the walk's
    period p compounds the backtest's daily returns [bounds[p], bounds[p + 1])."""

    t0: int
    length: int
    bounds: np.ndarray  # int [periods + 1], 0 .. length
    periods_per_year: int  # 52 weekly, 252 daily

    @property
    def periods(self) -> int:
        return int(self.bounds.size) - 1


def walk_window(week_end: np.ndarray | None, lo: int, hi: int, *, daily: bool = False
                ) -> WalkWindow:
    """The ``continuous`` walk through the validation window [lo, hi]: weekly (MacroEnv,
    FlatEnv) from its first week end over every week end after it up to hi; ``daily``
    (MicroEnv; ``week_end`` unused) from lo over every day up to hi (``weekly_plan``,
    ``daily_plan``)."""
    if daily:
        if hi - lo < 1:
            raise ConfigError("the validation window holds a single day; move data.test_start "
                              "later")
        return WalkWindow(int(lo), int(hi - lo), np.arange(hi - lo + 1), 252)
    day0 = int(eval_start_days(week_end, lo, hi, 0, 1)[0])
    ends = np.flatnonzero(np.asarray(week_end, bool)[day0 + 1: hi + 1]) + 1
    if ends.size < 1:
        raise ConfigError(f"the validation window [{lo}, {hi}] holds no full week after its "
                          f"first week end (day {day0}); move data.test_start later")
    return WalkWindow(day0, int(ends[-1]), np.concatenate([[0], ends]), 52)


def walk_returns(daily: np.ndarray, walk: WalkWindow) -> np.ndarray:
    """float64 [..., periods]: daily returns [..., walk.length] compounded into the walk's
    periods."""
    growth = np.cumprod(1.0 + np.asarray(daily, np.float64), axis=-1)
    growth = np.concatenate([np.ones((*growth.shape[:-1], 1)), growth], axis=-1)
    return growth[..., walk.bounds[1:]] / growth[..., walk.bounds[:-1]] - 1.0


def daily_plan(kind: str, val_params: Any, episodes: int = MAX_EPISODES) -> tuple[Any, int]:
    """(validation env params, episodes) of a daily env (MicroEnv) whose params span the
    validation window: ``episodes`` as given (each the env's episode length, started evenly
    over [start_lo, start_hi]) or, ``continuous``, one episode from start_lo to t_hi."""
    if check_kind(kind) == "episodes":
        return val_params, int(episodes)
    walk = walk_window(None, int(val_params.start_lo), int(val_params.t_hi), daily=True)
    return val_params.replace(start_hi=val_params.start_lo, max_steps_in_episode=walk.length), 1


def windows(start_days: np.ndarray, walk: int, block: int, steps_per_week: int = 1) -> float:
    """Independent windows behind a validation's per-episode statistics, for walks of
    ``walk`` steps (``steps_per_week``: 1 weekly, 5 daily) from ``start_days``: with
    ``block`` > 0 the blocks of every walk (cut as ``block_index``), else
    ``effective_windows`` of the start days for episodes of that many weeks."""
    if block:
        return float(np.size(start_days) * (int(block_index(walk, block)[-1]) + 1))
    return effective_windows(start_days, int(walk) / steps_per_week)
