"""No look-ahead: perturbing every input after t leaves every input row <= t bitwise unchanged.

The perturbed markets are built by hand from NumPy copies of the session market (same shapes,
so the compiled feature builder is reused).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.data import schema
from hrl_sarp_jax.features import regime
from hrl_sarp_jax.features.build import build_features
from hrl_sarp_jax.features.featureset import MACRO_FEATURES
from tests.features.conftest import CFG
from tests.features.make_market import to_market

TIME_ARRAYS = (
    "open",
    "high",
    "low",
    "close",
    "volume",
    "returns",
    "market_cap",
    "delivery_pct",
    "circuit_lock",
    "stock_mask",
    "market_cap_mask",
    "delivery_mask",
    "sector_returns",
    "sector_close",
    "sector_mask",
    "benchmark_close",
    "benchmark_returns",
    "macro",
    "macro_mask",
    "fundamentals",
    "fundamentals_mask",
    "sentiment",
    "sentiment_mask",
    "week_end",
    "latent_regime",
)
EVENT_COL = schema.MACRO_SERIES.index("event_flag")
SCHEDULE_FEATURES = [MACRO_FEATURES.index("event_flag"), MACRO_FEATURES.index("days_to_event")]
CUTS = (30, 97, 150)


@jax.jit
def _rule_label(close, week_end):
    latent = jnp.full(close.shape, -1, jnp.int32)
    return regime.regime_label(close, week_end, latent, CFG.regime_threshold, "rule")


def _perturb_after(arrs: dict, t: int, seed: int, keep_schedule: bool) -> dict:
    """Copy of ``arrs`` with every time-indexed array replaced after index t by other values."""
    rng = np.random.default_rng(seed)
    out = {k: np.array(v, copy=True) for k, v in arrs.items()}
    for name in TIME_ARRAYS:
        a = out[name]
        tail = a[t + 1 :]
        if a.dtype == bool:
            new = rng.random(tail.shape) < 0.5
        elif name == "latent_regime":
            new = rng.integers(-1, 3, tail.shape)
        elif name == "circuit_lock":
            new = rng.integers(-1, 2, tail.shape)
        else:
            new = np.abs(tail) * rng.uniform(0.2, 3.0, tail.shape) + rng.uniform(0, 2, tail.shape)
        if name == "macro" and keep_schedule:
            new[:, EVENT_COL] = tail[:, EVENT_COL]
        if name == "macro_mask" and keep_schedule:
            new[:, EVENT_COL] = tail[:, EVENT_COL]
        a[t + 1 :] = new.astype(a.dtype)
    return out


@pytest.fixture(scope="module")
def perturbed(built):
    return {
        t: build_features(to_market(_perturb_after(built.np, t, seed=t, keep_schedule=True)), CFG)
        for t in CUTS
    }


def _leaves(feats) -> dict:
    return {k: np.asarray(getattr(feats, k)) for k in feats.__dataclass_fields__}


INPUTS = (
    "stock",
    "stock_mask",
    "macro",
    "macro_mask",
    "sector",
    "sector_mask",
    "adjacency",
    "regime_rule",
)


@pytest.mark.parametrize("t", CUTS)
def test_inputs_up_to_t_are_bitwise_unchanged(feats_np, perturbed, t):
    new = _leaves(perturbed[t])
    for name in INPUTS:
        np.testing.assert_array_equal(new[name][: t + 1], feats_np[name][: t + 1], err_msg=name)
        assert (
            not np.array_equal(new[name][t + 1 :], feats_np[name][t + 1 :]) or name == "regime_rule"
        )


@pytest.mark.parametrize("t", CUTS)
def test_regime_label_is_a_target_that_reads_the_future(built, feats_np, ref_np, t):
    arrs = {k: np.array(v, copy=True) for k, v in built.np.items()}
    arrs["latent_regime"][t + 1 :] = (arrs["latent_regime"][t + 1 :] + 1) % 3  # relabel the future
    new = _leaves(build_features(to_market(arrs), CFG))
    assert new["regime_label"][t] != feats_np["regime_label"][t]
    np.testing.assert_array_equal(new["regime_rule"], feats_np["regime_rule"])
    # label[t] is the rule on the benchmark return close t -> next week end after t
    we = np.where(ref_np["week_end"])[0]
    nxt = we[we > t][0]
    r = ref_np["benchmark_close"][nxt] / ref_np["benchmark_close"][t] - 1
    want = 0 if r > CFG.regime_threshold else 1 if r < -CFG.regime_threshold else 2
    rule_label = _rule_label(
        jnp.asarray(ref_np["benchmark_close"], jnp.float32), jnp.asarray(ref_np["week_end"])
    )
    assert int(rule_label[t]) == want


def test_only_the_published_schedule_is_read_ahead(built, feats_np):
    """Changing only the event schedule after t moves event_flag/days_to_event, nothing else."""
    t = 97
    arrs = {k: np.array(v, copy=True) for k, v in built.np.items()}
    arrs["macro"][t + 1 :, EVENT_COL] = 1.0 - arrs["macro"][t + 1 :, EVENT_COL]
    new = _leaves(build_features(to_market(arrs), CFG))
    others = [i for i in range(len(MACRO_FEATURES)) if i not in SCHEDULE_FEATURES]
    np.testing.assert_array_equal(new["macro"][: t + 1, others], feats_np["macro"][: t + 1, others])
    assert not np.array_equal(
        new["macro"][: t + 1, SCHEDULE_FEATURES], feats_np["macro"][: t + 1, SCHEDULE_FEATURES]
    )
    # and only within the 20-day horizon before t
    np.testing.assert_array_equal(new["macro"][: t - 20], feats_np["macro"][: t - 20])
    for name in ("stock", "sector", "adjacency", "regime_rule"):
        np.testing.assert_array_equal(new[name], feats_np[name])
