"""Integrated gradients (evaluation.explain): exact on linear maps, the closed form of a known
polynomial including the quadrature error, a NumPy reference, completeness of the Macro and
Micro wrappers on tiny random actors, the backtest book is the one the agent decides on, and
the attributions at D never read data after D."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrl_sarp_jax.config import CostConfig, EnvConfig, NetworkConfig, RiskConfig
from hrl_sarp_jax.envs.obs import MacroObsLayout
from hrl_sarp_jax.envs.params import make_env_params
from hrl_sarp_jax.errors import ConfigError
from hrl_sarp_jax.evaluation import explain as ex
from hrl_sarp_jax.evaluation.agent import HierarchicalStrategy, run_agent
from hrl_sarp_jax.features.featureset import MACRO_FEATURES, SECTOR_FEATURES
from hrl_sarp_jax.finance.portfolio import PortfolioState
from hrl_sarp_jax.networks.gnn import GNNConfig
from hrl_sarp_jax.networks.inputs import macro_inputs_from_views, micro_inputs
from hrl_sarp_jax.networks.macro import MacroActor
from hrl_sarp_jax.networks.micro import MicroActor
from tests.envs.make_inputs import make_inputs

T, N, S, FS = 120, 8, 3, 4
NET = NetworkConfig(gnn=GNNConfig(hidden=8, embedding=8, heads=2), macro_hidden=(16, 8),
                    attention_heads=2, attention_dim=8, goal_embedding=8,
                    micro_stock_hidden=(16, 8), critic_hidden=(16, 8))
ENV = EnvConfig(cost=CostConfig(brokerage_pct=0.0003, brokerage_cap=20.0, impact_coef=0.1),
                risk=RiskConfig(derisk_drawdown=0.03, rerisk_drawdown=0.015,
                                derisked_exposure=0.5, cvar_budget=0.02, event_reduction=0.5))
T0, L = 40, 21  # backtest window of the book tests: decisions t0 .. t0 + L (a week end)


# --------------------------------------------------------------------------- generic IG


@pytest.mark.parametrize("method", ex.METHODS)
def test_linear_function_is_exact(method):
    rng = np.random.default_rng(0)
    def draw():
        return {"a": rng.normal(size=(3, 4)).astype(np.float32),
                "b": rng.normal(size=5).astype(np.float32)}
    w, x, b = draw(), draw(), draw()
    b["b"] = np.zeros(5, np.float32)
    f = lambda z: jnp.sum(z["a"] * w["a"]) + jnp.dot(z["b"], w["b"]) + 0.7  # noqa: E731
    attr = ex.integrated_gradients(f, x, b, steps=3, method=method)
    for k in ("a", "b"):
        np.testing.assert_allclose(np.asarray(attr[k]), (x[k] - b[k]) * w[k], rtol=1e-5,
                                   atol=1e-6)
    # vector outputs: one attribution map per output, output axes first
    m = rng.normal(size=(2, 5)).astype(np.float32)
    attr2 = ex.integrated_gradients(lambda z: m @ z, x["b"], b["b"], steps=2, method=method)
    assert attr2.shape == (2, 5)
    np.testing.assert_allclose(np.asarray(attr2), m * x["b"][None], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("method", "integral_of_a2"),
                         [("trapezoid", lambda m: 1 / 3 + 1 / (6 * m * m)),
                          ("midpoint", lambda m: 1 / 3 - 1 / (12 * m * m))])
def test_x0_squared_x1_matches_the_closed_form(method, integral_of_a2):
    """f = x0² x1 from 0: IG = (2/3, 1/3) · x0² x1; the rules integrate α² with errors
    +1/(6m²) (trapezoid) and -1/(12m²) (midpoint), reproduced exactly at m = 4."""
    x = jnp.asarray([1.5, -2.0])
    f = lambda z: z[0] ** 2 * z[1]  # noqa: E731
    fx = 1.5 ** 2 * -2.0
    for m, exact in ((4, False), (64, True)):
        attr = np.asarray(ex.integrated_gradients(f, x, jnp.zeros(2), steps=m, method=method))
        a2 = integral_of_a2(m)
        np.testing.assert_allclose(attr, [2 * a2 * fx, a2 * fx], rtol=1e-5)
        if exact:  # the closed form, and completeness: sum = f(x) - f(0)
            np.testing.assert_allclose(attr, [2 / 3 * fx, 1 / 3 * fx], rtol=1e-3)
            np.testing.assert_allclose(attr.sum(), fx, rtol=1e-3)


@pytest.mark.parametrize("method", ex.METHODS)
def test_traced_steps_equal_static_steps(method):
    """One compiled program for every step count (chunks of 16 nodes in a dynamic loop, the
    last chunk partly empty) gives the vectorised rule's attributions."""
    x, b = jnp.asarray([0.9, -0.4, 1.3]), jnp.asarray([-0.2, 0.3, 0.1])
    f = lambda z: jnp.stack([jnp.sin(z[0]) * jnp.exp(z[1] * z[2]), z[0] * z[2] ** 2])  # noqa: E731
    traced = jax.jit(lambda m: ex.integrated_gradients(f, x, b, m, method))
    for steps in (1, 4, 15, 16, 33):
        np.testing.assert_allclose(np.asarray(traced(steps)),
                                   np.asarray(ex.integrated_gradients(f, x, b, steps, method)),
                                   rtol=1e-5, atol=1e-6)
    assert traced._cache_size() == 1


def test_graded_rule_resolves_a_jump_near_the_baseline():
    """f = tanh(x / s) with s = 1e-4: from 0 the whole change happens at alpha < 1e-3, inside
    the uniform rule's first interval; the graded rule's log-spaced nodes catch it. Both are
    exact on x0² x1 up to their quadrature error."""
    f = lambda z: jnp.tanh(z[0] / 1e-4) + z[0] ** 2 * z[1]  # noqa: E731
    x, fx = jnp.asarray([1.0, 2.0]), float(np.tanh(1e4) + 2.0)
    for steps, rtol in ((64, 0.05), (256, 0.005)):
        uniform = np.asarray(ex.integrated_gradients(f, x, jnp.zeros(2), steps, "trapezoid"))
        graded = np.asarray(ex.integrated_gradients(f, x, jnp.zeros(2), steps, "graded"))
        assert abs(uniform.sum() - fx) > 10  # the jump lands on g(0) = 1e4 with weight 1/(2m)
        np.testing.assert_allclose(graded.sum(), fx, rtol=rtol)
        np.testing.assert_allclose(graded[1], 1 / 3 * 2.0, rtol=1e-3)
    a, w = ex.path_points(8, "graded")
    assert a[0] == 0 and np.all(np.diff(a) > 0) and a[-1] == 1 and a.size == 4 + 8 + 1
    np.testing.assert_allclose(a[1:5], [1e-8, 1e-6, 1e-4, 1e-2], rtol=1e-5)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)


def _numpy_ig(x, b, steps):
    """NumPy reference: trapezoid IG of f = sin(x0) exp(x1 x2) + x0 x2 (analytic gradient)."""
    def grad(z):
        e = np.exp(z[1] * z[2])
        return np.array([np.cos(z[0]) * e + z[2], np.sin(z[0]) * e * z[2],
                         np.sin(z[0]) * e * z[1] + z[0]])
    alphas = np.linspace(0.0, 1.0, steps + 1)
    g = np.stack([grad(b + a * (x - b)) for a in alphas])
    w = np.full(steps + 1, 1.0 / steps)
    w[[0, -1]] /= 2
    return (w @ g) * (x - b)


def test_matches_a_numpy_reference_with_a_nonzero_baseline():
    x, b = np.array([0.9, -0.4, 1.3]), np.array([-0.2, 0.3, 0.1])
    f = lambda z: jnp.sin(z[0]) * jnp.exp(z[1] * z[2]) + z[0] * z[2]  # noqa: E731
    for steps in (5, 64):
        got = np.asarray(ex.integrated_gradients(f, jnp.asarray(x, jnp.float32),
                                                 jnp.asarray(b, jnp.float32), steps=steps))
        np.testing.assert_allclose(got, _numpy_ig(x, b, steps), rtol=1e-5, atol=1e-6)
    f_np = lambda z: np.sin(z[0]) * np.exp(z[1] * z[2]) + z[0] * z[2]  # noqa: E731
    np.testing.assert_allclose(got.sum(), f_np(x) - f_np(b), rtol=1e-3)


def test_path_points_and_bad_arguments():
    a, w = ex.path_points(4, "trapezoid")
    np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(w, [0.125, 0.25, 0.25, 0.25, 0.125])
    for method in ex.METHODS:
        np.testing.assert_allclose(ex.path_points(7, method)[1].sum(), 1.0, rtol=1e-6)
    with pytest.raises(ConfigError, match="steps=0"):
        ex.path_points(0)
    with pytest.raises(ConfigError, match="simpson"):
        ex.path_points(4, "simpson")


# --------------------------------------------------------------------------- the agents


def _jitter(params, key, scale):
    """Random actors start near uniform (zero biases, heads with gain 0.01); jitter every
    parameter so that the decisions move visibly with the inputs."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [x + scale * jax.random.normal(k, x.shape, x.dtype)
                                     for x, k in zip(leaves, keys, strict=True)])


@pytest.fixture(scope="module")
def world():
    market, feats = make_inputs(num_days=T, num_stocks=N, num_sectors=S, sector_features=FS,
                                seed=5)
    params = make_env_params(market, feats, ENV)
    layout = MacroObsLayout(S, FS)
    ex_macro = macro_inputs_from_views(layout.unflatten(jnp.zeros(layout.size, jnp.float32)))
    goal0 = jnp.zeros(S + 3, jnp.float32)
    ex_micro = (micro_inputs(jnp.zeros((N, 22)), jnp.ones(N, bool), params.stock_sector, goal0,
                             jnp.zeros(N)), goal0, jnp.ones(N, bool))
    km, kn = jax.random.split(jax.random.key(7))
    macro = _jitter(MacroActor(NET).init(km, *ex_macro), jax.random.key(0), 0.3)
    micro = _jitter(MicroActor(NET).init(kn, *ex_micro), jax.random.key(0), 0.3)
    week_end = np.asarray(market.week_end)
    return types.SimpleNamespace(p=params, macro=macro, micro=micro, week_end=week_end,
                                 market=market)


def _some_book(world, t):
    w = np.zeros(N, np.float32)
    w[[1, 2, 4]] = [0.3, 0.25, 0.2]
    return PortfolioState(weights=jnp.asarray(w), value=jnp.float32(9.0e6),
                          peak=jnp.float32(1.0e7))


def _assert_complete(outputs, base, sums, rel=0.01):
    delta = np.asarray(outputs, np.float64) - np.asarray(base, np.float64)
    assert np.abs(delta).max() > 1e-3  # the test has teeth: the decisions move
    np.testing.assert_array_less(np.abs(np.asarray(sums) - delta), rel * np.abs(delta) + 1e-6)


def test_macro_wrapper_is_complete_and_is_the_agents_decision(world):
    p, t = world.p, 70
    port = _some_book(world, t)
    mac = jax.device_get(ex.explain_macro(NET, world.macro, port, jnp.int32(t), p, steps=64))
    assert mac.macro.shape == (S + 1, 18) and mac.sector.shape == (S + 1, S, FS)
    # the jitted wrapper (traced steps, chunked loop) = the generic IG of the same f, 64 steps
    views = ex.macro_views(port, jnp.int32(t), p)
    f = ex.macro_output_fn(NET, world.macro, views, int(mac.regime))
    x = {"macro": views["macro"], "sector": views["sector"]}
    ref = jax.jit(lambda z: ex.integrated_gradients(f, z, jax.tree.map(jnp.zeros_like, z), 64,
                                                    "graded"))(x)
    np.testing.assert_allclose(mac.macro, np.asarray(ref["macro"]), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(mac.sector, np.asarray(ref["sector"]), rtol=1e-4, atol=1e-6)
    # completeness: this random actor's path is steep (LayerNorms over 8 units, ReLUs), so 64
    # steps leave several percent; the refinement doubles them until every output is within 1%
    err64 = ex.completeness_error(mac.outputs, mac.baseline_outputs, ex.macro_sums(mac))
    assert err64.max() > 0.01
    fine, fine_micro, used = ex.explain_decision(NET, world.macro, world.micro, p, t,
                                                 port=port, tolerance=0.01, max_steps=4096)
    # the Micro's lean per-stock layers are ReLU (piecewise linear: IG needs more steps over
    # its kinks than over the original's GELU); both levels end within the tolerance
    assert 64 < used["macro"] <= 4096 and 64 <= used["micro"] <= 4096
    _assert_complete(fine.outputs, fine.baseline_outputs, ex.macro_sums(fine))
    _assert_complete(fine_micro.outputs, fine_micro.baseline_outputs,
                     ex.micro_sums(fine_micro))
    coarse, _, used = ex.explain_decision(NET, world.macro, world.micro, p, t, port=port)
    assert used == {"macro": 64, "micro": 64}  # tolerance 0: fixed steps
    np.testing.assert_allclose(coarse.macro, mac.macro)
    # the explained outputs are the agent's own decision at t for this book
    goal, probs = HierarchicalStrategy(NET).macro_decision(world.macro, port, jnp.int32(t), p)
    np.testing.assert_allclose(mac.regime_probs, probs, atol=1e-6)
    np.testing.assert_allclose(mac.goal, goal, atol=1e-6)
    assert int(mac.regime) == int(np.argmax(probs))
    np.testing.assert_allclose(mac.outputs[S], probs[int(mac.regime)], atol=1e-6)
    np.testing.assert_allclose(mac.outputs[:S].sum(), 1.0, atol=1e-5)
    # the inputs are the market rows of t; the book's drawdown slot is held fixed: 0 attribution
    np.testing.assert_allclose(mac.macro_inputs[:17], np.asarray(p.macro_features[t, :17]))
    np.testing.assert_allclose(mac.macro_inputs[17], 0.1, rtol=1e-6)
    np.testing.assert_allclose(mac.sector_inputs, np.asarray(p.sector_features[t]))
    assert np.all(fine.macro[:, 17] == 0.0)
    assert np.abs(fine.macro[:, :17]).max() > 1e-3 and np.abs(fine.sector).max() > 1e-3


def test_micro_wrapper_is_complete_on_the_top_stocks(world):
    p, t = world.p, 70
    port = _some_book(world, t)
    goal = jnp.asarray([0.5, 0.2, 0.3, 0.0, 1.0, 0.0], jnp.float32)
    # 1,024 steps: the lean per-stock layers are ReLU, whose kinks need more IG steps than
    # the original's GELU (64 sufficed there) for completeness within 1%
    mic = jax.device_get(ex.explain_micro(NET, world.micro, port, goal, jnp.int32(t), p,
                                          stocks=3, steps=1024))
    assert mic.stock.shape == (3, N, 22)
    order = np.argsort(-mic.weights, kind="stable")[:3]
    np.testing.assert_array_equal(np.sort(mic.stocks), np.sort(order))
    np.testing.assert_allclose(mic.outputs, mic.weights[mic.stocks], atol=1e-7)
    _assert_complete(mic.outputs, mic.baseline_outputs, ex.micro_sums(mic))
    # untradable stocks' rows are zeroed by the inputs: no attribution
    dead = ~np.asarray(p.tradable[t])
    assert dead.any() and np.all(mic.stock[:, dead] == 0.0)
    # a stock's weight also depends on the others (softmax, attention)
    for k, i in enumerate(mic.stocks):
        assert np.abs(np.delete(mic.stock[k], i, axis=0)).max() > 0


def test_record_names_and_completeness(world):
    p, t = world.p, 70
    mac, mic, _ = ex.explain_decision(NET, world.macro, world.micro, p, t, stocks=2, steps=32)
    sectors, tickers = ("IT", "FMCG", "Metals"), (*(f"T{i}" for i in range(N - 1)), "")
    doc = ex.explanation_record(mac, mic, tickers=tickers, sectors=sectors, top=4,
                                stock_sector=np.asarray(p.stock_sector))
    valid = [s for j, s in enumerate(sectors) if bool(mac.sector_mask[j])]
    assert [e["output"] for e in doc["macro"]["explained"]] == (
        [f"weight[{s}]" for s in valid] + [f"p({doc['macro']['regime']})"])
    allowed = set(MACRO_FEATURES) | {f"{s}.{c}" for s in sectors for c in SECTOR_FEATURES[:FS]}
    for e in doc["macro"]["explained"]:
        assert len(e["drivers"]) == 4 and {d["input"] for d in e["drivers"]} <= allowed
        mags = [abs(d["attribution"]) for d in e["drivers"]]
        assert mags == sorted(mags, reverse=True)
        np.testing.assert_allclose(e["by_group"]["macro"] + e["by_group"]["sector"],
                                   e["attribution_sum"], rtol=1e-6, atol=1e-9)
    for e in doc["micro"]["explained"]:
        assert e["ticker"] in tickers and e["sector"] in sectors
        assert all(d["input"].split(".")[0] in tickers for d in e["drivers"])
    c = doc["completeness"]
    assert c["max_abs_error"] == max(e["completeness_error"] for part in ("macro", "micro")
                                     for e in doc[part]["explained"])
    text_rows = [d["input"] for d in doc["macro"]["explained"][0]["drivers"]]
    assert all(r in allowed for r in text_rows)


# --------------------------------------------------------------------------- book, causality


def test_the_backtest_book_is_the_book_the_agent_decides_on(world):
    """Run the agent through D = t0 + L (a week end): the Macro decision it logged at D equals
    the explanation's decision from ``book_from_result`` (the drifted book before trading)."""
    p = world.p
    d = T0 + L
    assert world.week_end[d]
    stack = lambda tree: jax.tree.map(lambda a: jnp.asarray(a)[None], tree)  # noqa: E731
    carry, res = run_agent(NET, stack(world.macro), stack(world.micro), p, T0, L + 1,
                           risk_manager=True, return_window=ENV.return_window)
    book = ex.book_from_result(res, p, L)
    assert 0.2 < float(np.sum(book.weights)) <= 1.0 and float(book.value) != 1e7
    mac = ex.explain_macro(NET, world.macro, book, jnp.int32(d), p, steps=4)
    np.testing.assert_allclose(np.asarray(mac.regime_probs), np.asarray(carry.regime_probs)[0, L],
                               atol=1e-5)
    np.testing.assert_allclose(np.asarray(mac.goal), np.asarray(carry.goals)[0, L], atol=1e-5)
    # its value and peak are the backtest's
    np.testing.assert_allclose(float(book.value), float(np.asarray(res.value)[0, L - 1]))
    np.testing.assert_allclose(float(book.peak),
                               max(1e7, float(np.asarray(res.value)[0, :L].max())), rtol=1e-6)
    assert ex.book_from_result(res, p, 0).value == p.initial_value


def test_the_backtest_book_follows_the_re_allocation_frequency(world):
    """Under env.micro_frequency weekly the book explained at D is the weekly backtest's (the
    drifted book), not the daily one's."""
    p, d = world.p, T0 + L
    stack = lambda tree: jax.tree.map(lambda a: jnp.asarray(a)[None], tree)  # noqa: E731
    _, weekly = run_agent(NET, stack(world.macro), stack(world.micro), p, T0, L,
                          risk_manager=True, return_window=ENV.return_window,
                          frequency="weekly")
    port, _ = ex.backtest_book(NET, world.macro, world.micro, p, T0, d,
                               return_window=ENV.return_window, frequency="weekly")
    np.testing.assert_allclose(np.asarray(port.weights),
                               np.asarray(ex.book_from_result(weekly, p, L).weights), atol=1e-6)
    daily, _ = ex.backtest_book(NET, world.macro, world.micro, p, T0, d,
                                return_window=ENV.return_window)
    assert np.abs(np.asarray(daily.weights) - np.asarray(port.weights)).sum() > 1e-3


def test_attributions_at_d_never_read_data_after_d(world):
    """Perturb every market/feature row after D: the backtest book, the decisions and every
    attribution at D are unchanged; perturbing row D itself changes them."""
    p, d = world.p, T0 + L + 1  # backtest over T0 .. D - 1: the same program as above

    def explain(params):
        port, goal = ex.backtest_book(NET, world.macro, world.micro, params, T0, d,
                                      return_window=ENV.return_window)
        decides = bool(world.week_end[d])
        mac, mic, _ = ex.explain_decision(NET, world.macro, world.micro, params, d,
                                          port=port, goal_in_force=goal,
                                          macro_decides=decides, stocks=3, steps=8)
        return port, mac, mic

    rng = np.random.default_rng(1)

    def bend(params, rows):
        def one(x):
            x = np.asarray(x)
            m = rows.reshape(-1, *([1] * (x.ndim - 1)))
            if x.dtype == bool:
                new = rng.random(x.shape) < 0.5
            elif np.issubdtype(x.dtype, np.integer):
                new = rng.integers(-1, 2, x.shape).astype(x.dtype)
            else:
                new = (x + rng.normal(0, 0.5 + np.abs(x).mean(), x.shape)).astype(x.dtype)
            return jnp.asarray(np.where(m, new, x))
        fields = ("returns", "circuit_lock", "tradable", "adv_value", "sector_returns",
                  "benchmark_returns", "stock_features", "macro_features", "sector_features",
                  "sector_mask", "adjacency", "regime_label")
        return params.replace(**{f: one(getattr(params, f)) for f in fields})

    base = jax.device_get(explain(p))
    after = jax.device_get(explain(bend(p, np.arange(T) > d)))
    for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(a, b)
    at_d = jax.device_get(explain(bend(p, np.arange(T) == d)))
    assert not np.allclose(base[1].macro, at_d[1].macro)


# --------------------------------------------------------------------------- dates, windows


def test_resolve_date_and_window_start():
    dates = np.array(["2021-01-04", "2021-01-05", "2021-01-08", "2021-01-11"], "datetime64[D]")
    assert ex.resolve_date("2021-01-05", dates) == (1, None)
    t, note = ex.resolve_date("2021-01-09", dates)  # a Saturday
    assert t == 2 and "2021-01-09 is not a trading day" in note and "2021-01-08" in note
    assert ex.resolve_date(" 2021-01-11 ", dates) == (3, None)
    for bad, needle in (("2021-01-03", "outside"), ("2021-01-12", "outside"),
                        ("2021-13-01", "not an ISO date"), ("soon", "not an ISO date")):
        with pytest.raises(ConfigError, match=needle) as info:
            ex.resolve_date(bad, dates)
        assert str(info.value).startswith("--date") and "\n" not in str(info.value)
    assert ex.window_start(dates, 3, "2021-01-05", "2021-01-07") == 2
    assert ex.window_start(dates, 1, "2021-01-05", "2021-01-07") == 1
    assert ex.window_start(dates, 0, "2021-01-05", "2021-01-07") == 0
