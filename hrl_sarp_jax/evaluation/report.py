"""Evaluation report (host side): metrics.json, report.md and a self-contained report.html.

``write_report(payload, out_dir)`` takes the payload of ``evaluation.evaluate`` (baselines,
optionally a trained agent added with ``add_strategy``) and writes, atomically
(``utils.atomic``):
- ``metrics.json``: ``strategies`` (name -> metrics: sharpe, cagr, max_drawdown, cvar_95,
  turnover, cost_drag, ...), ``oracle`` (upper bound; synthetic markets), ``tests``
  (Sharpe-difference tests), ``stress``, ``seeds``, ``window``, ``settings``;
- ``plots/*.png`` and ``report.md`` (which links them);
- ``report.html`` with every plot embedded as a base64 PNG data URI (no external files).
Plots: equity curves, drawdowns, sector allocation over time (stacked areas), realised regimes
vs the agent's regime calls, rolling Sharpe, cost breakdown, stress results. matplotlib
(Agg backend) is used only here.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from hrl_sarp_jax.config import REGIME_NAMES
from hrl_sarp_jax.evaluation.backtest import COST_ITEMS
from hrl_sarp_jax.evaluation.ladder import LADDER_HEADER, ladder_rows
from hrl_sarp_jax.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

PLOTS = ("equity", "drawdown", "sector_allocation", "regimes", "rolling_sharpe", "costs",
         "stress")
TABLE_COLUMNS = (("sharpe", "Sharpe", "{:.2f}"), ("cagr", "CAGR", "{:.1%}"),
                 ("ann_vol", "Vol", "{:.1%}"), ("sortino", "Sortino", "{:.2f}"),
                 ("max_drawdown", "MaxDD", "{:.1%}"), ("calmar", "Calmar", "{:.2f}"),
                 ("cvar_95", "CVaR95", "{:.2%}"), ("turnover", "Turnover/yr", "{:.2f}"),
                 ("cost_drag", "Cost drag/yr", "{:.2%}"), ("alpha", "Alpha", "{:.1%}"),
                 ("beta", "Beta", "{:.2f}"), ("information_ratio", "IR", "{:.2f}"))
REGIME_COLORS = ("#2ca02c", "#d62728", "#7f7f7f")


def _fmt(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    try:
        return spec.format(v)
    except (TypeError, ValueError):
        return str(v)


def _all_entries(payload: dict) -> list[tuple[str, dict]]:
    out = list(payload["strategies"].items())
    if payload.get("oracle"):
        out.append(("oracle (upper bound)", payload["oracle"]))
    return out


AGENT = "hrl_sarp"
CLASSICAL_KINDS = ("weights", "index")
"""Strategy kinds that count as the 'classical baselines' the agent must beat (the random
portfolios, the flat RL agent and the oracle are reported but are not classical)."""


def _ann_sharpe(r: np.ndarray, periods: int = 252) -> float:
    r = np.asarray(r, np.float64)
    sd = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    return float(np.mean(r) / sd * np.sqrt(periods)) if sd > 0 else float("nan")


# where a turnover source comes from, and the settings that move it
_TURNOVER_LEVERS = {
    "exposure": ("the risk manager's exposure changes", "env.risk.*"),
    "macro": ("the Macro's sector moves on its decision days",
              "env.goal_step, env.constraints.rebalance_threshold"),
    "sector_between_goals": ("sector moves between the Macro's decisions",
                             "env.goal_lock, env.reward.micro_turnover_cost, the Micro's "
                             "checkpoint rule"),
    "support": ("changes of the names held", "env.constraints.support_margin"),
    "micro": ("the Micro's trades within sectors", "env.reward.micro_turnover_cost"),
}


def turnover_source_note(attribution: dict | None) -> str:
    """' The largest share is <source> (x of y/yr; settings that move it: ...).' from a
    strategy's ``attribution.turnover_by_source``; '' when it has none."""
    t = (attribution or {}).get("turnover_by_source") or {}
    have = {k: float(t[k]) for k in _TURNOVER_LEVERS if t.get(k) is not None}
    if not have or not t.get("total"):
        return ""
    top = max(have, key=have.get)
    what, levers = _TURNOVER_LEVERS[top]
    return (f" The largest share is {what} ({have[top]:.1f} of {float(t['total']):.1f}/yr; "
            f"settings that move it: {levers}; the no-trade band, "
            f"env.constraints.rebalance_threshold / rebalance_residual, acts on every source).")


def verdict(payload: dict, agent: str = AGENT) -> dict | None:
    """Did the agent beat the best classical baseline, and what do the diagnostics say?

    Returns None without the agent. Keys: agent / best classical / oracle Sharpe, the share of
    the oracle's edge over the best classical baseline the agent captured, the bootstrap CI of
    the Sharpe difference vs that baseline (when tested), gross-of-cost Sharpes, turnover and
    cost drag next to the classical median, ``beats_best_classical`` and plain-text
    ``diagnostics``."""
    st = payload["strategies"]
    if agent not in st:
        return None
    classical = {n: e for n, e in st.items() if e.get("kind") in CLASSICAL_KINDS}
    if not classical:
        return None
    best = max(classical, key=lambda n: classical[n]["metrics"]["sharpe"])
    a, b = st[agent]["metrics"], classical[best]["metrics"]
    out: dict[str, Any] = {
        "agent": agent, "agent_sharpe": a["sharpe"], "best_classical": best,
        "best_classical_sharpe": b["sharpe"],
        "agent_sharpe_per_seed": st[agent].get("seeds", {}).get("sharpe"),
    }
    pair = payload.get("tests", {}).get(f"vs_{agent}", {}).get("pairs", {}).get(best)
    if pair:
        boot = pair["bootstrap"]
        out["sharpe_diff_vs_best"] = boot.get("diff", a["sharpe"] - b["sharpe"])
        out["sharpe_diff_ci95"] = [boot["ci_low"], boot["ci_high"]]
        out["p_value_bootstrap"] = boot.get("p_value")
    if payload.get("oracle"):
        o = payload["oracle"]["metrics"]["sharpe"]
        out["oracle_sharpe"] = o
        edge = o - b["sharpe"]
        out["oracle_edge_captured"] = (a["sharpe"] - b["sharpe"]) / edge if edge > 0 else None
    gross = {n: _ann_sharpe(e["series"]["gross"]) for n, e in st.items()
             if e.get("series", {}).get("gross") is not None}
    out["agent_gross_sharpe"] = gross.get(agent)
    out["best_classical_gross_sharpe"] = gross.get(best)
    med = lambda key: float(np.median([e["metrics"].get(key) or 0.0  # noqa: E731
                                       for e in classical.values()]))
    out["agent_turnover"], out["classical_median_turnover"] = a.get("turnover"), med("turnover")
    out["agent_cost_drag"], out["classical_median_cost_drag"] = (a.get("cost_drag"),
                                                                  med("cost_drag"))
    ci = out.get("sharpe_diff_ci95")
    out["beats_best_classical"] = bool(a["sharpe"] > b["sharpe"]
                                       and (ci is None or ci[0] > 0))
    notes = []
    if out["beats_best_classical"]:
        notes.append(f"{agent} beats the best classical baseline ({best}) and the bootstrap "
                     f"CI of the Sharpe difference excludes 0.")
    elif a["sharpe"] > b["sharpe"]:
        notes.append(f"{agent} has a higher Sharpe than {best}, but the difference is not "
                     f"significant (bootstrap CI includes 0): no clear win.")
    else:
        notes.append(f"{agent} does NOT beat the best classical baseline ({best}: Sharpe "
                     f"{b['sharpe']:.2f} vs {a['sharpe']:.2f}).")
    drag, mdrag = out["agent_cost_drag"] or 0.0, out["classical_median_cost_drag"]
    if drag > 2.0 * max(mdrag, 1e-9):
        notes.append(f"Costs: turnover {out['agent_turnover']:.1f}/yr vs a classical median of "
                     f"{out['classical_median_turnover']:.1f}/yr costs {drag:.1%}/yr (median "
                     f"{mdrag:.1%}); gross of costs its Sharpe is "
                     f"{(out['agent_gross_sharpe'] or float('nan')):.2f} vs "
                     f"{(out['best_classical_gross_sharpe'] or float('nan')):.2f}."
                     + turnover_source_note(st[agent].get("attribution")))
    ga, gb = out["agent_gross_sharpe"], out["best_classical_gross_sharpe"]
    if not out["beats_best_classical"] and ga is not None and gb is not None and ga < gb:
        notes.append(f"Gross of costs it still trails {best} (Sharpe {ga:.2f} vs {gb:.2f}): "
                     f"the allocation itself, not only its costs, loses.")
    disp = st[agent].get("seeds", {}).get("sharpe") or {}
    if disp.get("std", 0.0) > 0.3:
        notes.append(f"Seeds disagree (Sharpe std {disp['std']:.2f} over {disp.get('n')} "
                     f"seeds): the training budget is too small for a stable policy.")
    if out.get("oracle_edge_captured") is not None:
        notes.append(f"Share of the oracle's edge over {best} captured: "
                     f"{out['oracle_edge_captured']:.0%}.")
    out["diagnostics"] = notes
    return out


def metrics_json(payload: dict) -> dict:
    """The JSON document of metrics.json (no per-day series)."""
    def strip(e: dict) -> dict:
        d = {"description": e.get("description"), "kind": e.get("kind"),
             "schedule": e.get("schedule"), **e["metrics"]}
        if "seeds" in e:
            d["seed_dispersion"] = e["seeds"]
        if e.get("note"):
            d["note"] = e["note"]
        for key in ("attribution", "regime_call", "deflated_sharpe"):
            if e.get(key) is not None:
                d[key] = e[key]
        return d

    return {
        "version": payload.get("version", 1),
        "market": payload["market"], "window": payload["window"],
        "settings": payload["settings"], "seeds": payload.get("seeds", {}),
        "benchmark": payload.get("benchmark"),
        "regime_source": payload["regimes"]["source"],
        "strategies": {n: strip(e) for n, e in payload["strategies"].items()},
        "oracle": strip(payload["oracle"]) if payload.get("oracle") else None,
        "oracle_note": payload.get("oracle_note"),
        "requires_trained_run": payload.get("requires_trained_run", {}),
        "tests": payload.get("tests", {}),
        "stress": payload.get("stress", {}),
        "verdict": verdict(payload),
        **{k: payload[k] for k in ("folds", "paired_folds", "rl_phases", "ladder")
           if payload.get(k)},
    }


# --------------------------------------------------------------------------- plots


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _dates(payload: dict) -> np.ndarray:
    return np.asarray(payload["dates"]).astype("datetime64[D]")


def make_plots(payload: dict) -> dict[str, bytes]:
    """name -> PNG bytes for every name in PLOTS (a placeholder panel where data is absent)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    x = _dates(payload)
    entries = _all_entries(payload)
    bench = payload.get("benchmark")
    plots: dict[str, bytes] = {}
    cmap = plt.get_cmap("tab20")
    names_all = [*payload["strategies"], "oracle", "oracle (upper bound)"]
    colors = {n: cmap(i % 20) for i, n in enumerate(names_all)}
    colors["oracle (upper bound)"] = colors["oracle"] = "gray"
    if bench:
        colors[bench] = "black"

    def style(name: str) -> dict:
        if name == bench:
            return {"color": "black", "lw": 2.0}
        if name.startswith("oracle"):
            return {"ls": "--", "lw": 1.2, "color": "gray"}
        if payload["strategies"].get(name, {}).get("kind") == "trained":
            return {"lw": 2.2, "color": colors[name]}
        return {"lw": 1.0, "color": colors[name]}

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, e in entries:
        ax.plot(x, np.cumprod(1.0 + np.asarray(e["series"]["net"])), label=name, **style(name))
    ax.set_title("Equity curves (net of costs, start = 1)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    plots["equity"] = png_bytes(fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    for name, e in entries:
        w = np.cumprod(1.0 + np.asarray(e["series"]["net"]))
        dd = 1.0 - w / np.maximum.accumulate(np.r_[1.0, w])[1:]
        ax.plot(x, -dd, label=name, **style(name))
    ax.set_title("Drawdowns")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    plots["drawdown"] = png_bytes(fig)

    sectors = payload["market"]["sectors"]
    with_sw = [(n, e) for n, e in payload["strategies"].items()
               if e["series"].get("sector_weights") is not None]
    trained = [(n, e) for n, e in with_sw if e.get("kind") == "trained"]
    show = (trained + [(n, e) for n, e in with_sw if n in ("sector_momentum", "min_variance")])[:3]
    show = show or with_sw[:1]
    fig, axes = plt.subplots(max(len(show), 1), 1, figsize=(10, 3 * max(len(show), 1)),
                             squeeze=False)
    for ax, (name, e) in zip(axes[:, 0], show, strict=False):
        sw = np.asarray(e["series"]["sector_weights"])[:, : len(sectors)]
        ax.stackplot(x, sw.T, labels=sectors)
        ax.set_ylim(0, 1)
        ax.set_title(f"Sector allocation: {name}")
    if show:
        axes[0, 0].legend(fontsize=6, ncol=6, loc="upper left")
    else:
        axes[0, 0].text(0.5, 0.5, "no sector allocations", ha="center")
    plots["sector_allocation"] = png_bytes(fig)

    fig, ax = plt.subplots(figsize=(10, 2.6))
    realised = np.asarray(payload["regimes"]["realised"])
    for k in range(3):
        ax.fill_between(x, 0, 1, where=realised == k, color=REGIME_COLORS[k], alpha=0.35,
                        step="post", label=f"realised {REGIME_NAMES[k]}")
    calls = [(n, e["regime_calls"]) for n, e in payload["strategies"].items()
             if e.get("regime_calls") is not None]
    for n, c in calls:
        c = np.asarray(c)[0]
        for k in range(3):
            ax.fill_between(x, 1.05, 1.6, where=c == k, color=REGIME_COLORS[k], alpha=0.8,
                            step="post")
        ax.text(x[0], 1.62, f"{n} regime calls (seed 0)", fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"Realised regimes ({payload['regimes']['source']})"
                 + (" vs regime calls" if calls else ""))
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    plots["regimes"] = png_bytes(fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    win = int(min(126, max(10, len(x) // 3)))
    for name, e in entries:
        r = np.asarray(e["series"]["net"], np.float64)
        if r.size <= win:
            continue
        c = np.lib.stride_tricks.sliding_window_view(r, win)
        sd = c.std(axis=1, ddof=1)
        rs = np.where(sd > 0, c.mean(axis=1) / np.where(sd > 0, sd, 1.0), 0.0) * np.sqrt(252)
        ax.plot(x[win - 1:], rs, label=name, **style(name))
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title(f"Rolling {win}-day Sharpe")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(alpha=0.3)
    plots["rolling_sharpe"] = png_bytes(fig)

    fig, ax = plt.subplots(figsize=(10, 4))
    names = [n for n, e in entries if e["metrics"].get("cost_drag_items")]
    bottom = np.zeros(len(names))
    for item in COST_ITEMS:
        vals = np.array([dict(entries)[n]["metrics"]["cost_drag_items"].get(item, 0.0)
                         for n in names])
        if np.any(vals > 0):
            ax.bar(names, vals * 100, bottom=bottom * 100, label=item)
            bottom += vals
    ax.set_ylabel("% of value per year")
    ax.set_title("Cost drag by component")
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.legend(fontsize=7, ncol=4)
    plots["costs"] = png_bytes(fig)

    stress = payload.get("stress", {})
    shocks = stress.get("sector_shocks", {})
    hist = stress.get("historical", {})
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    if shocks:
        scen = list(next(iter(shocks.values()))["scenarios"])
        width = 0.8 / len(shocks)
        for i, (n, s) in enumerate(shocks.items()):
            axes[0].bar(np.arange(len(scen)) + i * width,
                        [s["scenarios"][k]["max_drawdown"] * 100 for k in scen], width, label=n,
                        color=colors.get(n))
        axes[0].axhline(stress.get("limit", 0.07) * 100, color="red", ls="--", lw=1)
        axes[0].set_xticks(np.arange(len(scen)) + 0.4, scen, rotation=30, fontsize=7)
        axes[0].set_ylabel("max drawdown %")
        axes[0].set_title("Sector-shock scenarios (mean allocation)")
        axes[0].legend(fontsize=6, ncol=2)
    if hist:
        wins = sorted({w for h in hist.values() for w, r in h.items() if "skipped" not in r})
        width = 0.8 / max(len(hist), 1)
        for i, (n, h) in enumerate(hist.items()):
            axes[1].bar(np.arange(len(wins)) + i * width,
                        [h[w]["max_drawdown"] * 100 if w in h and "skipped" not in h[w] else 0
                         for w in wins], width, label=n, color=colors.get(n))
        axes[1].axhline(stress.get("limit", 0.07) * 100, color="red", ls="--", lw=1)
        axes[1].set_xticks(np.arange(len(wins)) + 0.4, wins, rotation=30, fontsize=7)
        axes[1].set_title("Historical window replays (from cash)")
        axes[1].legend(fontsize=6, ncol=2)
    for ax in axes:
        if not ax.has_data():
            ax.text(0.5, 0.5, "not run", ha="center")
    plots["stress"] = png_bytes(fig)
    return plots


# --------------------------------------------------------------------------- text


def _table_rows(payload: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Strategy", *[c[1] for c in TABLE_COLUMNS]]
    rows = []
    for name, e in _all_entries(payload):
        m = e["metrics"]
        cells = [_fmt(m.get(k), spec) for k, _, spec in TABLE_COLUMNS]
        if "seeds" in e and "sharpe" in e["seeds"]:
            cells[0] += f" ± {e['seeds']['sharpe']['std']:.2f}"
        rows.append([name, *cells])
    return header, rows


def _test_rows(payload: dict) -> list[tuple[str, list[list[str]]]]:
    out = []
    for section, t in payload.get("tests", {}).items():
        rows = []
        for name, pair in t.get("pairs", {}).items():
            bs, jk = pair["bootstrap"], pair["jobson_korkie_memmel"]
            holm_b = t.get("holm_bootstrap", {}).get(name, {})
            ps = pair.get("per_seed", {})
            rows.append([name, f"{bs['diff']:+.2f}", f"[{bs['ci_low']:+.2f}, {bs['ci_high']:+.2f}]",
                         f"{bs['p_value']:.3f}", _fmt(holm_b.get("p_holm"), "{:.3f}"),
                         f"{jk['z']:+.2f}", f"{jk['p_value']:.3f}",
                         f"{pair['sign_test']['p_value']:.3f}",
                         _fmt(ps.get("t_p_value"), "{:.3f}")])
        out.append((section, rows))
    return out


TEST_HEADER = ["vs", "ΔSharpe", "bootstrap 95% CI", "p boot", "p Holm", "JK-M z", "p JK-M",
               "p sign", "p seeds (t)"]


ATTRIBUTION_HEADER = ["strategy", "allocation (Macro)", "selection (Micro)", "interaction",
                      "costs", "risk manager", "residual", "excess net", "Sharpe gross",
                      "Sharpe net"]
TURNOVER_HEADER = ["strategy", "exposure (risk manager)", "sector level: on goal days",
                   "sector level: between goals", "support (names in/out)",
                   "within sector (names kept)", "total /yr"]


def attribution_rows(payload: dict) -> tuple[list[list[str]], list[list[str]], str | None]:
    """(attribution rows, turnover-by-source rows, the rule) of every strategy that has an
    ``attribution`` block (evaluation.attribution), agent first."""
    rows, tov, rule = [], [], None
    for name, e in _all_entries(payload):
        a = e.get("attribution")
        if not a:
            continue
        rule = a.get("rule", rule)
        rows.append([name, *(_fmt(a.get(k), "{:+.2%}") for k in (
            "allocation", "selection", "interaction", "costs", "risk_manager", "residual",
            "total_excess_net")), _fmt(a.get("sharpe_gross"), "{:.2f}"),
            _fmt(a.get("sharpe_net"), "{:.2f}")])
        t = a.get("turnover_by_source")
        if t:
            tov.append([name, *(_fmt(t.get(k), "{:.2f}") for k in (
                "exposure", "macro", "sector_between_goals", "support", "micro", "total"))])
    return rows, tov, rule


def _dsr_line(payload: dict) -> str | None:
    for name, e in _all_entries(payload):
        d = e.get("deflated_sharpe")
        if d:
            sr0 = d["sr0"] * d["periods"] ** 0.5
            return (f"Deflated Sharpe ratio of {name} (Bailey & López de Prado): "
                    f"{d['dsr']:.2f} = P(true Sharpe > {sr0:.2f}/yr, the expected "
                    f"best of {d['trials']} trials without skill); its Sharpe "
                    f"{d['sharpe_annual']:.2f}/yr over {d['n']} days. Trials: every validation "
                    f"evaluation that chose a checkpoint ({d['by_phase']}) and a sweep's "
                    f"settings ({d['sweep']}).")
    return None


def val_baselines_text(vb: dict) -> str:
    """One line: an RL phase's validation Sharpe beside its comparators over the same walk
    (``pipeline.record_validation_baselines``)."""
    names = {"equal_weight": "1/N", "sector_momentum": "sector momentum"}
    parts = ", ".join(f"{names.get(n, n)} {v['sharpe']:.3g}" for n, v in vb["strategies"].items())
    return (f"validation Sharpe {vb['val_sharpe']:.3g} vs {parts} over the same walk "
            f"({vb['first_day']} .. {vb['last_day']}, {vb['periods']} "
            f"{'days' if vb['periods_per_year'] == 252 else 'weeks'})")


def rl_phases_line(payload: dict) -> str | None:
    """What the run's RL phases kept against their starting policies (``payload["rl_phases"]``,
    from the phase summaries), e.g. whether Phase 3 improved on Phase 1's Macro at all."""
    phases = payload.get("rl_phases") or {}
    if not phases:
        return None
    parts = []
    for k, r in sorted(phases.items()):
        if r.get("checkpoint_rule") == "latest":
            part = (f"Phase {k} used its latest step {r.get('latest_step')} (train.checkpoint: "
                    f"latest; ranked best: step {r.get('best_step')})")
        else:
            part = f"Phase {k} kept step {r.get('best_step')} of {r.get('latest_step')}"
        v = r.get("final_vs_start")
        if v:
            n = len(v["diff"])
            part += (f"; its final policy beats the start by more than one standard error for "
                     f"{v['improved_seeds']} of {n} seed(s) (mean change "
                     f"{float(np.mean(v['diff'])):+.3f}, SE {float(np.mean(v['se'])):.3f})")
        if r.get("val_baselines"):
            part += f"; {val_baselines_text(r['val_baselines'])}"
        parts.append(part)
    margin = next((r["checkpoint_margin"] for r in phases.values() if "checkpoint_margin" in r),
                  None)
    rule = (f"checkpoints ranked by validation Sharpe minus {margin:g} standard error(s) of the "
            "improvement over the start" if margin else "checkpoints ranked by validation "
            "Sharpe")
    return f"RL phases on validation ({rule}; step 0 is the starting policy): " + "; ".join(
        parts) + "."


def _gate_line(payload: dict) -> str | None:
    """What the risk manager did to the agent (or the first strategy with a gate record)."""
    for name, e in sorted(_all_entries(payload), key=lambda item: item[0] != AGENT):
        g = (e.get("attribution") or {}).get("risk_gate")
        if g and g.get("sharpe_without") is not None:
            return (f"Risk manager on {name}: exposure reduced on {g['days_reduced']:.0%} of "
                    f"days (mean exposure {g['mean_exposure']:.2f}); Sharpe "
                    f"{e['attribution']['sharpe_net']:.2f} with it vs {g['sharpe_without']:.2f} "
                    f"without (the same targets, open loop); max drawdown "
                    f"{g['max_drawdown']:.1%} vs {g['max_drawdown_without']:.1%}.")
    return None


def _regime_line(payload: dict) -> str | None:
    for name, e in _all_entries(payload):
        rc = e.get("regime_call")
        if rc and rc.get("accuracy") is not None:
            brier = "-" if rc.get("brier") is None else f"{rc['brier']:.3f}"
            return (f"Regime call of {name} ({rc['calls']} Macro decisions per seed, against "
                    f"the realised regime after each): accuracy {rc['accuracy']:.2f}, balanced "
                    f"accuracy {rc['balanced_accuracy']:.2f} (chance 0.33), Brier {brier} "
                    f"(uniform 0.667).")
    return None


ATTRIBUTION_NOTE = ("Window returns over the equal-weight benchmark (equal sectors, equal "
                    "within), linked geometrically (Carino); allocation + selection + "
                    "interaction + residual + costs = excess net. The risk-manager effect is "
                    "net minus the same targets replayed without the risk manager (open loop), "
                    "beside the sum. Turnover by source excludes the first buy from cash.")


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _stress_rows(payload: dict) -> tuple[list[str], list[list[str]]]:
    shocks = payload.get("stress", {}).get("sector_shocks", {})
    if not shocks:
        return [], []
    scen = list(next(iter(shocks.values()))["scenarios"])
    header = ["Strategy", *scen, "passed"]
    rows = []
    for n, s in shocks.items():
        rows.append([n, *[f"{s['scenarios'][k]['portfolio_return']:+.1%} / "
                          f"{s['scenarios'][k]['max_drawdown']:.1%}" for k in scen],
                     f"{s['summary']['passed']}/{len(scen)}"])
    return header, rows


def _hist_rows(payload: dict) -> tuple[list[str], list[list[str]]]:
    hist = payload.get("stress", {}).get("historical", {})
    if not hist:
        return [], []
    wins = list(next(iter(hist.values())))
    header = ["Strategy", *wins]
    rows = []
    for n, h in hist.items():
        rows.append([n, *[("skipped" if "skipped" in h[w] else
                           f"{h[w]['total_return']:+.1%} / {h[w]['max_drawdown']:.1%}"
                           f" {'pass' if h[w]['passed'] else 'FAIL'}") for w in wins]])
    return header, rows


def fold_tables(payload: dict) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, note, header, rows) of a stitched walk-forward payload's per-fold sections
    (``evaluation.stitch``: ``folds`` and ``paired_folds``); [] when it has none."""
    folds = payload.get("folds")
    if not folds or len(folds["windows"]) < 2:
        return []
    labels = [w["label"] for w in folds["windows"]]
    header = ["Strategy", *[f"Sharpe {x}" for x in labels],
              *[f"switch {x}: turnover / cost" for x in labels[1:]], "switch cost, all"]
    rows = [[n, *[_fmt(v, "{:.2f}") for v in e["sharpe"]],
             *[f"{t:.2f} / {c:.3%}" for t, c in zip(e["switch_turnover"], e["switch_cost"],
                                                    strict=True)],
             f"{e['switch_cost_total']:.3%}"] for n, e in folds["strategies"].items()]
    book = ("each fold starts from the book the strategy held at the end of the previous one"
            if folds["carried"] else "each fold starts from cash (its day 0 is an entry)")
    out = [("Walk-forward folds", f"Sharpe per fold's test window; {book}. Switch: turnover "
            "and cost (fraction of value) on the first day of each later fold, trading the "
            "carried book to the new target (the new fold's model for trained strategies).",
            header, rows)]
    for section, pf in payload.get("paired_folds", {}).items():
        h = ["vs", *[f"ΔSharpe {x}" for x in pf["folds"]], "mean", "sd", "95% t-interval",
             "wins", "stitched ΔSharpe [bootstrap CI]"]
        rows = []
        for n, pr in pf["pairs"].items():
            po, sti = pr["pooled"], pr.get("stitched") or {}
            ci = po["ci95"]
            rows.append([n, *[f"{d:+.2f}" for d in pr["per_fold"]], f"{po['mean']:+.2f}",
                         _fmt(po["sd"], "{:.2f}"),
                         "—" if ci[0] is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]",
                         f"{po['wins']}/{po['n']}",
                         "—" if sti.get("diff") is None else
                         f"{sti['diff']:+.2f} [{sti['ci_low']:+.2f}, {sti['ci_high']:+.2f}]"])
        out.append((f"Paired over folds: {section}", f"{pf['agent']}'s seed-mean Sharpe minus "
                    f"each strategy's, per fold; pooled over {pf['n']} folds "
                    f"(stats.paired_over_markets). Note: {pf['note']}.", h, rows))
    return out


def ladder_section(doc: dict, *, md: bool) -> list[str]:
    """What each training phase added (``evaluation.ladder``), if the document has a ladder."""
    lad = doc.get("ladder")
    if not lad:
        return []
    title = f"What each training phase added (the hierarchy after each phase, {lad['over']})"
    if md:
        return [f"## {title}", "", lad["rule"], "",
                md_table(LADDER_HEADER, ladder_rows(lad["rows"])), ""]
    return [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(lad['rule'])}</p>",
            html_table(LADDER_HEADER, ladder_rows(lad["rows"]))]


def render_markdown(payload: dict, plot_files: dict[str, str]) -> str:
    w, mk = payload["window"], payload["market"]
    s = payload["settings"]
    parts = [
        "# HRL-SARP evaluation report", "",
        f"Market **{mk['name']}** ({'synthetic' if mk['synthetic'] else 'real'}, "
        f"{mk['num_stocks']} stocks, {len(mk['sectors'])} sectors). Window: decisions from "
        f"{w['start']} to the day before {w['end']}, {w['days']} return days. Risk-free "
        f"{s['rf_annual']:.1%}/yr; baseline schedule {s['schedule']}; risk manager "
        f"{'on' if s['risk_manager'] else 'off'}; same costs and constraints for all.", "",
        "## Performance", "",
        md_table(*_table_rows(payload)), "",
    ]
    v = verdict(payload)
    if v is not None:
        parts += ["## Verdict", "", *[f"- {n}" for n in v["diagnostics"]], ""]
    if payload.get("oracle"):
        parts += ["The oracle is an UPPER BOUND that knows the synthetic market's next-day "
                  "latent regime; it is not a strategy.", ""]
    elif payload.get("oracle_note"):
        parts += [f"Oracle not run: {payload['oracle_note']}.", ""]
    if payload.get("requires_trained_run"):
        parts += ["Not included (require a trained run): "
                  + ", ".join(f"`{k}`" for k in payload["requires_trained_run"]) + ".", ""]
    att, tov, _rule = attribution_rows(payload)
    if att:
        parts += ["## Attribution by decision level", "", ATTRIBUTION_NOTE, "",
                  md_table(ATTRIBUTION_HEADER, att), "", "## Turnover by source (one-way, per "
                  "year)", "", md_table(TURNOVER_HEADER, tov), ""]
    for line in (_gate_line(payload), _regime_line(payload), _dsr_line(payload),
                 rl_phases_line(payload)):
        if line:
            parts += [line, ""]
    parts += ladder_section(payload, md=True)
    for title, note, h, rows in fold_tables(payload):
        parts += [f"## {title}", "", note, "", md_table(h, rows), ""]
    for section, rows in _test_rows(payload):
        parts += [f"## Sharpe-difference tests: {section}", "",
                  "Stationary block bootstrap (Politis-Romano) CI, Jobson-Korkie with Memmel's "
                  "correction, sign test, Holm-Bonferroni across the family.", "",
                  md_table(TEST_HEADER, rows), ""]
    h, rows = _stress_rows(payload)
    if rows:
        parts += ["## Stress scenarios (return / max drawdown)", "", md_table(h, rows), ""]
    h, rows = _hist_rows(payload)
    if rows:
        parts += ["## Historical windows (return / max drawdown)", "", md_table(h, rows), ""]
        if mk["synthetic"]:
            parts += ["On a synthetic market these are only the calendar windows of the "
                      "original's crises; the generated data holds no such events.", ""]
    parts += ["## Plots", ""]
    parts += [f"![{n}]({f})" for n, f in plot_files.items()]
    return "\n".join(parts) + "\n"


def html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(payload: dict, plots: dict[str, bytes]) -> str:
    w = payload["window"]
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>HRL-SARP evaluation report</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1200px}",
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}",
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}",
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}",
             "</style></head><body>",
             "<h1>HRL-SARP evaluation report</h1>",
             f"<p>Market {html.escape(str(payload['market']['name']))}; window "
             f"{html.escape(w['start'])} .. {html.escape(w['end'])} ({w['days']} days).</p>",
             "<h2>Performance</h2>", html_table(*_table_rows(payload))]
    v = verdict(payload)
    if v is not None:
        parts += ["<h2>Verdict</h2><ul>"] + [f"<li>{html.escape(n)}</li>"
                                             for n in v["diagnostics"]] + ["</ul>"]
    if payload.get("oracle"):
        parts.append("<p>The oracle is an UPPER BOUND (knows the next day's latent regime).</p>")
    att, tov, _rule = attribution_rows(payload)
    if att:
        parts += ["<h2>Attribution by decision level</h2>",
                  f"<p>{html.escape(ATTRIBUTION_NOTE)}</p>", html_table(ATTRIBUTION_HEADER, att),
                  "<h2>Turnover by source (one-way, per year)</h2>", html_table(TURNOVER_HEADER,
                                                                                  tov)]
    for line in (_gate_line(payload), _regime_line(payload), _dsr_line(payload),
                 rl_phases_line(payload)):
        if line:
            parts.append(f"<p>{html.escape(line)}</p>")
    parts += ladder_section(payload, md=False)
    for title, note, h, rows in fold_tables(payload):
        parts += [f"<h2>{html.escape(title)}</h2><p>{html.escape(note)}</p>",
                  html_table(h, rows)]
    for section, rows in _test_rows(payload):
        parts += [f"<h2>Sharpe-difference tests: {html.escape(section)}</h2>",
                  html_table(TEST_HEADER, rows)]
    h, rows = _stress_rows(payload)
    if rows:
        parts += ["<h2>Stress scenarios</h2>", html_table(h, rows)]
    h, rows = _hist_rows(payload)
    if rows:
        parts += ["<h2>Historical windows</h2>", html_table(h, rows)]
    parts.append("<h2>Plots</h2>")
    for name, png in plots.items():
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(f"<h3>{html.escape(name)}</h3><img id='plot-{name}' alt='{name}' "
                     f"src='data:image/png;base64,{b64}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(payload: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, plots/*.png, report.md and report.html under ``out_dir``."""
    out = Path(out_dir)
    plots = make_plots(payload)
    files: dict[str, Path] = {}
    plot_files = {}
    for name, png in plots.items():
        path = out / "plots" / f"{name}.png"
        atomic_write_bytes(path, png)
        plot_files[name] = f"plots/{name}.png"
        files[f"plot_{name}"] = path
    atomic_write_json(out / "metrics.json", metrics_json(payload))
    atomic_write_text(out / "report.md", render_markdown(payload, plot_files))
    atomic_write_text(out / "report.html", render_html(payload, plots))
    files.update(metrics=out / "metrics.json", markdown=out / "report.md",
                 html=out / "report.html")
    return files
