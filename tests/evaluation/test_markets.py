"""evaluation.markets: batched backtests over stacked markets equal one backtest per market;
the per-market records, paired table, summary and verdicts on hand-made inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps

from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.evaluation import baselines as bl
from hrl_sarp_jax.evaluation import markets as mk
from hrl_sarp_jax.evaluation.backtest import run_backtest
from hrl_sarp_jax.evaluation.metrics import return_metrics
from tests.evaluation.conftest import T0
from tests.evaluation.make_market import ENV_CFG, make_market


@pytest.fixture(scope="module")
def three_markets():
    """Three tiny markets of one calendar and sector map, different returns."""
    return [make_env_params(m, f, ENV_CFG) for m, _, f in (make_market(s) for s in (0, 1, 2))]


def test_stack_params_batches_only_what_differs(three_markets):
    stacked, axes = mk.stack_params(three_markets)
    names = [jax.tree_util.keystr(p) for p, _ in
             jax.tree_util.tree_flatten_with_path(three_markets[0])[0]]
    by_name = dict(zip(names, axes, strict=True))
    assert by_name[".returns"] == 0 and by_name[".benchmark_returns"] == 0
    # one calendar, one sector map, one cost schedule: kept once
    assert by_name[".week_end"] is None and by_name[".stock_sector"] is None
    assert by_name[".cost.stt_buy"] is None
    assert stacked.returns.shape == (3, *three_markets[0].returns.shape)
    assert stacked.week_end.shape == three_markets[0].week_end.shape
    one, axes1 = mk.stack_params(three_markets[:1])
    assert axes1.count(0) == 1 and one.returns.shape[0] == 1  # one market: a batch of one


@pytest.mark.parametrize("name", ["equal_weight", "sector_momentum", "random"])
def test_backtest_markets_equals_one_backtest_per_market(three_markets, weekly, name):
    """Two different programs (vmapped over markets vs one market): equal within float32
    rounding of a 240-day accumulation (values ~1e7, returns ~1e-2)."""
    spec = bl.get_baseline(name)
    fn = spec.make()
    seeded = spec.kind == "seeded"
    carry = (jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32)) if seeded
             else fn.init_carry())
    stacked, axes = mk.stack_params(three_markets)
    _, res = mk.backtest_markets(fn, carry, stacked, jnp.asarray(T0, jnp.int32),
                                 jnp.asarray(weekly), axes=axes, seeded=seeded, carry_axis=None,
                                 risk_manager=True, return_window=20)
    got = mk.result_metrics(jax.device_get(res))
    for c, p in enumerate(three_markets):
        _, one = run_backtest(fn, carry, p, T0, weekly, batched=seeded, risk_manager=True)
        np.testing.assert_allclose(np.asarray(res.net_return)[c], one.net_return,
                                   rtol=1e-4, atol=1e-7)
        want = np.atleast_2d(np.asarray(one.net_return, np.float64))
        sharpe = [return_metrics(r)["sharpe"] for r in want]
        np.testing.assert_allclose(np.atleast_1d(got["sharpe"][c]), sharpe, atol=1e-4)
        np.testing.assert_allclose(np.atleast_1d(got["turnover"][c]),
                                   np.asarray(one.turnover, np.float64).mean(-1) * 252,
                                   rtol=1e-5)
    # the markets differ, so the numbers must too (a broadcast bug would repeat market 0)
    assert len({round(float(np.mean(got["sharpe"][c])), 6) for c in range(3)}) == 3


def test_window_metrics_match_numpy():
    rng = np.random.default_rng(0)
    net = rng.normal(3e-4, 0.01, (4, 120)).astype(np.float32)
    cost = np.abs(rng.normal(1e-4, 5e-5, (4, 120))).astype(np.float32)
    tov = np.abs(rng.normal(0.02, 0.01, (4, 120))).astype(np.float32)
    out = jax.device_get(mk.window_metrics(net, net + cost, tov, cost))
    for b in range(4):
        r = net[b].astype(np.float64)
        wealth = np.cumprod(1 + r)
        np.testing.assert_allclose(out["sharpe"][b], r.mean() / r.std(ddof=1) * np.sqrt(252),
                                   rtol=1e-4)
        np.testing.assert_allclose(out["cagr"][b], wealth[-1] ** (252 / 120) - 1, rtol=1e-4)
        np.testing.assert_allclose(out["max_drawdown"][b], np.max(
            1 - wealth / np.maximum.accumulate(np.r_[1.0, wealth])[1:]), rtol=1e-4)
        np.testing.assert_allclose(out["cost_drag"][b], cost[b].astype(np.float64).mean() * 252,
                                   rtol=1e-5)
        g = r + cost[b]
        np.testing.assert_allclose(out["gross_sharpe"][b], g.mean() / g.std(ddof=1)
                                   * np.sqrt(252), rtol=1e-4)


def _records(table: dict[str, list[float]]) -> list[dict]:
    k = len(next(iter(table.values())))
    return [{"seed": i, "strategies": {n: {"sharpe": v[i], "gross_sharpe": v[i] + 0.1,
                                           "turnover": 2.0 + i, "cost_drag": 0.01 * i,
                                           "max_drawdown": 0.1}
                                       for n, v in table.items()}} for i in range(k)]


def test_paired_table_by_hand():
    recs = _records({"agent": [1.0, 0.5, 0.8, 1.1], "equal_weight": [0.5, 0.5, 0.2, 0.6],
                     "oracle": [2.0, 1.5, 1.2, 1.6]})
    out = mk.paired_table(recs, "agent", ["agent", "equal_weight", "oracle"], num_boot=500)
    assert set(out["pairs"]) == {"equal_weight", "oracle"}
    ew = out["pairs"]["equal_weight"]
    d = np.array([0.5, 0.0, 0.6, 0.5])
    assert ew["mean"] == pytest.approx(0.4) and ew["wins"] == 3 and ew["n"] == 4
    lo, hi = sps.t.interval(0.95, 3, loc=d.mean(), scale=d.std(ddof=1) / 2)
    assert ew["ci95"] == pytest.approx([lo, hi])
    assert out["pairs"]["oracle"]["wins"] == 0
    # (0.5 + 0 + 0.6 + 0.5) / 4 over (1.5 + 1 + 1 + 1) / 4
    assert out["oracle_share"]["value"] == pytest.approx(1.6 / 4.5)
    lo, hi = out["oracle_share"]["ci95"]
    assert lo <= 1.6 / 4.5 <= hi
    no_oracle = mk.paired_table(recs, "agent", ["equal_weight"], oracle=None)
    assert no_oracle["oracle_share"] is None


def test_summary_and_verdicts():
    recs = _records({"agent": [1.0, 0.5, 0.8, 1.1, 0.9], "x": [0.0, 0.1, 0.2, 0.1, 0.0],
                     "y": [2.0, 2.1, 1.9, 2.2, 2.0], "z": [1.0, 0.3, 1.2, 0.8, 1.0]})
    s = mk.summary_table(recs)
    assert s["agent"]["sharpe"]["mean"] == pytest.approx(0.86)
    assert s["agent"]["sharpe"]["quantiles"]["q50"] == pytest.approx(0.9)
    assert s["x"]["turnover"]["mean"] == pytest.approx(4.0)
    assert s["x"]["gross_sharpe"]["mean"] == pytest.approx(0.18)
    pairs = mk.paired_table(recs, "agent", ["x", "y", "z"])["pairs"]
    v = mk.verdicts(pairs, "agent")
    assert v["x"].startswith("agent beats x with 95% confidence")
    assert v["y"].startswith("agent loses to y with 95% confidence")
    assert v["z"].startswith("agent does not beat z") and "holds 0" in v["z"]
    one = mk.verdicts(mk.paired_table(recs[:1], "agent", ["x"])["pairs"], "agent")
    assert "cannot give a confidence interval" in one["x"]


@pytest.mark.parametrize("name", ["sector_momentum", "random", "oracle"])
def test_run_chunk_open_loop_equals_the_closed_loop_program(three_markets, weekly, name):
    """``run_chunk`` runs an open-loop strategy as its targets program plus the shared
    accounting (``ReplayTargets``): the same results and final carries as the strategy inside
    ``backtest_markets`` (a shared carry, a seed axis, a carry per market). Two programs:
    float32 tolerance (bit-identical on machine A)."""
    spec = bl.get_baseline(name)
    fn = spec.make()
    seeded = spec.kind == "seeded"
    stacked, axes = mk.stack_params(three_markets)
    t, s = three_markets[0].returns.shape[0], three_markets[0].num_sectors
    rng = np.random.default_rng(1)
    carry_of = None
    if name == "oracle":
        drift = rng.normal(size=(3, s))
        paths = [rng.integers(-1, 3, t) for _ in three_markets]
        carry_of = lambda c: fn.init_carry(drift, paths[c])  # noqa: E731
        carry, axis = mk.stack_trees([carry_of(c) for c in range(3)]), 0
    else:
        carry = (jax.vmap(jax.random.key)(jnp.arange(2, dtype=jnp.uint32)) if seeded
                 else fn.init_carry())
        axis = None
    strategy = mk.MarketStrategy(name, fn, "weekly", spec.kind, carry=None if carry_of
                                 else carry, carry_of=carry_of, seeded=seeded)
    got = mk.run_chunk([strategy], stacked, axes, T0, lambda _s: weekly, risk_manager=True,
                       return_window=20)[name]
    want = jax.device_get(mk.backtest_markets(
        fn, carry, stacked, jnp.asarray(T0, jnp.int32), jnp.asarray(weekly), axes=axes,
        seeded=seeded, carry_axis=axis, risk_manager=True, return_window=20))
    for a, b in zip(jax.tree.leaves(got[1]), jax.tree.leaves(want[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-6, atol=1e-8)
    if seeded:
        np.testing.assert_array_equal(jax.random.key_data(got[0]), jax.random.key_data(want[0]))
    assert float(np.sum(got[1].turnover)) > 1.0
