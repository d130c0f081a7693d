"""Regime rule (causal) and regime label (target): hand-computed cases and the id convention."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import REGIME_NAMES
from hrl_sarp_jax.features import regime
from hrl_sarp_jax.types import BEAR, BULL, SIDEWAYS
from tests.features.conftest import CFG

# 3 weeks of 5 days; week ends at 4, 9, 14. Closes: flat week 1, +5% week 2, -5% week 3.
WEEK_END = np.zeros(15, bool)
WEEK_END[[4, 9, 14]] = True
CLOSE = np.array([100.0] * 5 + [101, 102, 103, 104, 105] + [104, 103, 102, 101, 99.75], np.float32)


@partial(jax.jit, static_argnames=("source",))
def _label(close, week_end, latent, source):
    return regime.regime_label(close, week_end, latent, 0.02, source)


rule_fn = jax.jit(partial(regime.regime_rule, threshold=0.02))


def test_id_convention_is_bull_bear_sideways():
    assert (BULL, BEAR, SIDEWAYS) == (0, 1, 2)
    assert REGIME_NAMES == ("bull", "bear", "sideways")
    got = regime.rule_regime(jnp.array([0.05, -0.05, 0.0, 0.02, -0.02]), 0.02)
    np.testing.assert_array_equal(np.asarray(got), [BULL, BEAR, SIDEWAYS, SIDEWAYS, SIDEWAYS])


def test_rule_is_the_last_completed_week():
    got = np.asarray(rule_fn(jnp.asarray(CLOSE), jnp.asarray(WEEK_END)))
    # before day 4: -1; week 1 (close 0 -> 4, flat) sideways; week 2 (100 -> 105) bull;
    # week 3 (105 -> 99.75, -5%) bear
    np.testing.assert_array_equal(got, [-1] * 4 + [SIDEWAYS] * 5 + [BULL] * 5 + [BEAR])


def test_label_is_the_next_period_after_t():
    latent = jnp.full(15, -1, jnp.int32)
    got = np.asarray(_label(jnp.asarray(CLOSE), jnp.asarray(WEEK_END), latent, "rule"))
    expected = []
    for t in range(15):
        nxt = next((e for e in (4, 9, 14) if e > t), None)
        if nxt is None:
            expected.append(-1)
            continue
        r = CLOSE[nxt] / CLOSE[t] - 1
        expected.append(BULL if r > 0.02 else BEAR if r < -0.02 else SIDEWAYS)
    np.testing.assert_array_equal(got, expected)
    assert got[4] == BULL and got[9] == BEAR and got[14] == -1  # a week end labels the next week


def test_latent_majority_and_auto_fallback():
    latent = np.array([0] * 5 + [1, 1, 2, 2, 2] + [-1] * 5, np.int32)
    close, we = jnp.asarray(CLOSE), jnp.asarray(WEEK_END)
    lat = np.asarray(_label(close, we, jnp.asarray(latent), "latent"))
    # t=4: days 5..9 -> {1,1,2,2,2} -> 2; t=6: days 7..9 -> 2; t=5: days 6..9 -> {1,2,2,2} -> 2
    # t=0: days 1..4 all 0; t>=9: period has unknown days -> -1
    np.testing.assert_array_equal(lat[:9], [0, 0, 0, 0, 2, 2, 2, 2, 2])
    assert np.all(lat[9:] == -1)
    auto = np.asarray(_label(close, we, jnp.asarray(latent), "auto"))
    rule = np.asarray(_label(close, we, jnp.asarray(latent), "rule"))
    np.testing.assert_array_equal(auto[:9], lat[:9])
    np.testing.assert_array_equal(auto[9:], rule[9:])


def test_latent_ties_go_to_the_lowest_id():
    latent = np.array([2, 1, 1, 0, 0] + [2] * 10, np.int32)
    lat = np.asarray(
        _label(jnp.asarray(CLOSE), jnp.asarray(WEEK_END), jnp.asarray(latent), "latent")
    )
    assert lat[0] == 0  # days 1..4 = {1, 1, 0, 0}: tie between 0 and 1 -> 0


def test_unknown_source_is_rejected():
    with pytest.raises(ValueError, match="regime source"):
        regime.regime_label(
            jnp.asarray(CLOSE), jnp.asarray(WEEK_END), jnp.zeros(15, jnp.int32), 0.02, "hmm"
        )


def test_market_labels_use_the_latent_regime_when_known(feats_np, ref_np):
    """The session market has a latent path: 'auto' = latent majority up to the next week end."""
    we = np.where(ref_np["week_end"])[0]
    lat = ref_np["latent_regime"]
    label = feats_np["regime_label"]
    for t in (0, 17, 100, 200):
        nxt = we[we > t][0]
        counts = np.bincount(lat[t + 1 : nxt + 1], minlength=3)
        assert label[t] == int(np.argmax(counts))
    assert label.dtype == np.int32 and CFG.regime_source == "auto"
