"""Regime ids (0 Bull, 1 Bear, 2 Sideways; -1 unknown): the causal rule regime and the target.

``regime_rule[t]``: the rule applied to the benchmark return of the most recent completed
calendar week (the week ending at or before t), from the previous week end's close (the first
day's close for the first week) to that week end's close. Uses data <= t.
``regime_label[t]``: the regime of the period a decision at t is exposed to, from the close of
t to the next week end strictly after t; by the rule, or by the majority latent regime over the
days (t, next week end] (ties go to the lowest id). This is a *target* and looks forward.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from hrl_sarp_jax.features.rolling import lag, lead, safe_div
from hrl_sarp_jax.types import BEAR, BULL, NUM_REGIMES, SIDEWAYS, Array

REGIME_SOURCES = ("auto", "rule", "latent")


def rule_regime(period_return: Array, threshold: float) -> Array:
    """int32: Bull if return > +thr, Bear if < -thr, else Sideways."""
    return jnp.where(
        period_return > threshold, BULL, jnp.where(period_return < -threshold, BEAR, SIDEWAYS)
    ).astype(jnp.int32)


def last_week_end(week_end: Array) -> Array:
    """int32 [T]: index of the last week end <= t, -1 if none yet."""
    t = jnp.arange(week_end.shape[0], dtype=jnp.int32)
    return lax.cummax(jnp.where(week_end, t, jnp.int32(-1)), axis=0)


def next_week_end(week_end: Array) -> Array:
    """int32 [T]: index of the first week end > t, -1 if none in the data."""
    num = week_end.shape[0]
    t = jnp.arange(num, dtype=jnp.int32)
    first_at_or_after = lax.cummin(jnp.where(week_end, t, jnp.int32(num)), axis=0, reverse=True)
    nxt = lead(first_at_or_after, 1, num)
    return jnp.where(nxt < num, nxt, -1).astype(jnp.int32)


def regime_rule(bench_close: Array, week_end: Array, threshold: float) -> Array:
    """int32 [T]: rule regime of the most recent completed week (-1 before the first)."""
    last = last_week_end(week_end)
    prev = lag(last, 1, -1)  # last week end strictly before t
    safe_last = jnp.maximum(last, 0)
    base = jnp.maximum(prev[safe_last], 0)  # the week before `last` ended here (day 0 if none)
    ret = safe_div(bench_close[safe_last], bench_close[base]) - 1.0
    ok = (last >= 0) & (base < safe_last) & (bench_close[base] > 0) & (bench_close[safe_last] > 0)
    return jnp.where(ok, rule_regime(ret, threshold), -1).astype(jnp.int32)


def regime_label(
    bench_close: Array, week_end: Array, latent: Array, threshold: float, source: str
) -> Array:
    """int32 [T]: target regime for a decision at t (period t -> next week end after t).

    source 'rule': the rule on the benchmark return close t -> close of the next week end.
    'latent': majority of ``latent`` over (t, next week end], -1 where any day is unknown.
    'auto': latent where every day of the period is known, else the rule.
    -1 where the next week end is beyond the data.
    """
    if source not in REGIME_SOURCES:
        raise ValueError(f"regime source must be one of {REGIME_SOURCES}, got {source!r}")
    nxt = next_week_end(week_end)
    has_next = nxt >= 0
    end = jnp.maximum(nxt, 0)
    ret = safe_div(bench_close[end], bench_close) - 1.0
    rule_ok = has_next & (bench_close > 0) & (bench_close[end] > 0)
    rule = jnp.where(rule_ok, rule_regime(ret, threshold), -1)
    if source == "rule":
        return rule.astype(jnp.int32)
    onehot = (latent[:, None] == jnp.arange(NUM_REGIMES, dtype=jnp.int32)[None, :]).astype(
        jnp.int32
    )
    counts = jnp.cumsum(onehot, axis=0)  # [T, 3], exact integer prefix counts
    unknown = jnp.cumsum((latent < 0).astype(jnp.int32))
    period_counts = counts[end] - counts  # days (t, end]
    known = has_next & (unknown[end] - unknown == 0)
    majority = jnp.argmax(period_counts, axis=1).astype(jnp.int32)
    latent_label = jnp.where(known, majority, -1)
    if source == "latent":
        return latent_label.astype(jnp.int32)
    return jnp.where(known, latent_label, rule).astype(jnp.int32)
