"""The many-market report: metrics.json, report.md, report.html and plots (host side).

Input: the document ``many_markets.evaluate_markets`` builds (metrics.json's content). The
report shows the paired table (agent minus each strategy, over markets), the distribution of
the per-market Sharpe difference against the best classical baseline, turnover and cost per
strategy, and the verdict in words.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from hrl_sarp_jax.evaluation.markets import per_market_sharpe
from hrl_sarp_jax.evaluation.report import (
    ATTRIBUTION_HEADER,
    ATTRIBUTION_NOTE,
    TURNOVER_HEADER,
    html_table,
    ladder_section,
    md_table,
    png_bytes,
    rl_phases_line,
)
from hrl_sarp_jax.utils.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

PAIRED_HEADER = ["vs", "mean ΔSharpe", "sd", "95% interval", "ahead in", "p"]
SUMMARY_HEADER = ["strategy", "Sharpe mean", "Sharpe q05..q95", "gross Sharpe", "turnover/yr",
                  "cost drag/yr", "max DD"]


def _f(v: Any, spec: str = "+.2f") -> str:
    return "-" if v is None else format(float(v), spec)


def paired_rows(pairs: dict[str, dict]) -> list[list[str]]:
    """One row per compared strategy of a ``paired`` block."""
    rows = []
    for x, p in pairs.items():
        lo, hi = p["ci95"]
        rows.append([x, _f(p["mean"]), _f(p["sd"], ".2f"), f"[{_f(lo)}, {_f(hi)}]",
                     f"{p['wins']}/{p['n']}", _f(p.get("p_value"), ".3f")])
    return rows


def summary_rows(doc: dict) -> list[list[str]]:
    rows = []
    for name, s in doc["summary"].items():
        q = s["sharpe"]["quantiles"]
        rows.append([name, _f(s["sharpe"]["mean"]), f"{_f(q['q05'])} .. {_f(q['q95'])}",
                     _f(s["gross_sharpe"]["mean"]), _f(s["turnover"]["mean"], ".1f"),
                     _f(s["cost_drag"]["mean"], ".2%"), _f(s["max_drawdown"]["mean"], ".1%")])
    return rows


KNOWLEDGE_HEADER = ["strategy", "told the regime", "call balanced accuracy", "minus equal weight",
                    "95% interval", "ahead in"]
KNOWLEDGE_NOTE = ("The regime oracle told the latent regime L trading days late (`--oracle-lags`): "
                  "a regime allocator whose only error is a detection delay, each call scored "
                  "on the agent's decision days against the label the agent's call is scored "
                  "on. Where the agent's edge over equal weight sits on this curve says how "
                  "much of the regime's value its decisions capture.")


def knowledge_rows(doc: dict) -> list[list[str]]:
    """metrics.json ``regime_knowledge`` as rows (none when the run had no --oracle-lags)."""
    k = doc.get("regime_knowledge")
    if not k:
        return []
    rows = []
    for r in k["rows"]:
        p = r["minus_equal_weight"]
        lo, hi = p["ci95"]
        late = ("-" if r["lag_days"] is None else "next day" if r["lag_days"] == 0
                else f"{r['lag_days']} days late")
        rows.append([r["strategy"], late, _f(r["balanced_accuracy"], ".3f"), _f(p["mean"]),
                     f"[{_f(lo)}, {_f(hi)}]", f"{p['wins']}/{p['n']}"])
    return rows


def equivalent_lag_line(doc: dict) -> str | None:
    """'The agent's edge over equal weight is that of the regime oracle told the regime about
    N trading days late …' from metrics.json ``regime_knowledge``, or None without one."""
    k = doc.get("regime_knowledge")
    if not k or "equivalent_lag_days" not in k:
        return None
    lags = [r["lag_days"] for r in k["rows"] if r["lag_days"] is not None]
    parts = []
    for name, lag in k["equivalent_lag_days"].items():
        parts.append(f"{name} as an oracle about {lag:.0f} trading days late" if lag is not None
                     else f"{name} outside the lags run ({min(lags)}..{max(lags)} days)")
    return ("Edge over equal weight as a detection delay (the late oracles' edges interpolated "
            "linearly): " + "; ".join(parts) + ".")


def knowledge_section(doc: dict, *, md: bool) -> list[str]:
    """The regime-knowledge table in markdown or HTML, or nothing."""
    rows = knowledge_rows(doc)
    if not rows:
        return []
    title = "Regime knowledge: the oracle told the regime late"
    line = equivalent_lag_line(doc)
    if md:
        return [f"## {title}", "", KNOWLEDGE_NOTE, "", md_table(KNOWLEDGE_HEADER, rows), "",
                *([line, ""] if line else [])]
    return [f"<h2>{title}</h2>", f"<p>{html.escape(KNOWLEDGE_NOTE)}</p>",
            html_table(KNOWLEDGE_HEADER, rows), *([f"<p>{html.escape(line)}</p>"] if line else [])]


def attribution_tables(doc: dict) -> tuple[list[list[str]], list[list[str]]]:
    """The agent's attribution and turnover by source, mean over markets (one row each)."""
    a = doc.get("attribution")
    if not a:
        return [], []
    att = [[doc["agent"], *(_f(a.get(k), "+.2%") for k in (
        "allocation", "selection", "interaction", "costs", "risk_manager", "residual",
        "total_excess_net")), _f(a.get("sharpe_gross"), ".2f"), _f(a.get("sharpe_net"), ".2f")]]
    t = a.get("turnover_by_source")
    tov = [[doc["agent"], *(_f(t.get(k), ".2f") for k in (
        "exposure", "macro", "sector_between_goals", "support", "micro", "total"))]] if t else []
    return att, tov


def delta_plot(doc: dict) -> bytes:
    """PNG: per-market Sharpe difference of the agent (seed mean) and of the ensemble against
    the best classical baseline, one dot per market, with the mean and its 95% interval."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    best = doc["best_classical"]
    recs = doc["markets"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for row, (name, block) in enumerate(((doc["agent"], "paired"),
                                         (doc["ensemble"], "paired_ensemble"))):
        d = per_market_sharpe(recs, name) - per_market_sharpe(recs, best)
        jitter = (np.arange(d.size) % 7 - 3) * 0.03
        ax.scatter(d, row + jitter, s=14, alpha=0.6)
        p = doc[block].get(best)
        if p is not None:
            ax.plot([p["mean"]], [row], "k|", ms=18)
            lo, hi = p["ci95"]
            if lo is not None:
                ax.plot([lo, hi], [row, row], "k-", lw=2)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks([0, 1], [doc["agent"], doc["ensemble"]])
    ax.set_xlabel(f"Sharpe − Sharpe of {best} (per market; bar: mean and 95% interval)")
    ax.set_title(f"{len(recs)} markets, window {doc['window']['start']} .. {doc['window']['end']}")
    return png_bytes(fig)


def _jitter(doc: dict) -> str:
    """', sector drifts jittered by J' where markets' drift tables differ (synth.alpha_jitter)."""
    j = doc["depends_on"].get("alpha_jitter")
    return f", sector drifts jittered by {j:g}" if j else ""


def _headline(doc: dict) -> list[str]:
    w = doc["window"]
    seeds = doc["seeds"]["markets"]
    lines = [f"Run {doc['run']}: {len(seeds)} generated market(s), seeds {seeds[0]}..{seeds[-1]} "
             f"(preset {doc['depends_on']['preset']}{_jitter(doc)}), window {w['start']} .. "
             f"{w['end']} "
             f"({w['days']} days, split {doc['split']}), net of costs, "
             f"{doc['seeds']['policy']} policy seed(s); {doc['seconds']:.0f} s."]
    if doc["in_sample"]:
        lines.append(f"IN SAMPLE: seeds {doc['in_sample_seeds']} are the run's own training "
                     f"market.")
    if doc["judgement_range"]:
        lines.append("Judgement range (seeds 9000-9999): logged in judgement.jsonl.")
    share = doc.get("oracle_share")
    if share and share.get("value") is not None:
        lo, hi = share["ci95"]
        lines.append(f"Share of the oracle's edge over equal weight captured by the agent: "
                     f"{share['value']:.0%} (bootstrap 95% interval {lo:.0%} .. {hi:.0%}).")
    rl = rl_phases_line(doc)
    if rl:
        lines.append(rl)
    return lines


def render_markdown(doc: dict, plot_file: str) -> str:
    parts = ["# HRL-SARP many-market evaluation", "", *_headline(doc), "", "## Verdict", ""]
    parts += [f"- {v}" for v in doc["verdict"].values()]
    parts += ["", "## Agent (mean over its seeds) minus each strategy, over markets", "",
              md_table(PAIRED_HEADER, paired_rows(doc["paired"])), "",
              "## Seed ensemble minus each strategy", "",
              md_table(PAIRED_HEADER, paired_rows(doc["paired_ensemble"])), "",
              "## Per strategy over markets (net of costs unless gross)", "",
              md_table(SUMMARY_HEADER, summary_rows(doc)), "",
              *ladder_section(doc, md=True),
              *knowledge_section(doc, md=True),
              "## Attribution by decision level (mean over markets)", "", ATTRIBUTION_NOTE, "",
              md_table(ATTRIBUTION_HEADER, attribution_tables(doc)[0]), "",
              "## Turnover by source (one-way, per year, mean over markets)", "",
              md_table(TURNOVER_HEADER, attribution_tables(doc)[1]), ""]
    if doc.get("best_classical"):
        parts += [f"## Per-market ΔSharpe against the best classical baseline "
                  f"({doc['best_classical']})", "", f"![delta_sharpe]({plot_file})", ""]
    return "\n".join(parts)


def render_html(doc: dict, plot: bytes) -> str:
    b64 = base64.b64encode(plot).decode("ascii")
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>HRL-SARP many-market evaluation</title><style>",
             "body{font-family:sans-serif;margin:2em;max-width:1200px}",
             "table{border-collapse:collapse;font-size:12px;margin:1em 0}",
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}",
             "td:first-child,th:first-child{text-align:left}img{max-width:100%}",
             "</style></head><body><h1>HRL-SARP many-market evaluation</h1>"]
    parts += [f"<p>{html.escape(x)}</p>" for x in _headline(doc)]
    parts += ["<h2>Verdict</h2><ul>"] + [f"<li>{html.escape(v)}</li>"
                                         for v in doc["verdict"].values()] + ["</ul>"]
    parts += ["<h2>Agent (mean over its seeds) minus each strategy, over markets</h2>",
              html_table(PAIRED_HEADER, paired_rows(doc["paired"])),
              "<h2>Seed ensemble minus each strategy</h2>",
              html_table(PAIRED_HEADER, paired_rows(doc["paired_ensemble"])),
              "<h2>Per strategy over markets</h2>", html_table(SUMMARY_HEADER, summary_rows(doc)),
              *ladder_section(doc, md=False),
              *knowledge_section(doc, md=False),
              "<h2>Attribution by decision level (mean over markets)</h2>",
              f"<p>{html.escape(ATTRIBUTION_NOTE)}</p>",
              html_table(ATTRIBUTION_HEADER, attribution_tables(doc)[0]),
              "<h2>Turnover by source (one-way, per year, mean over markets)</h2>",
              html_table(TURNOVER_HEADER, attribution_tables(doc)[1])]
    if plot:
        parts += [f"<h2>Per-market ΔSharpe against {html.escape(doc['best_classical'])}</h2>",
                  f"<img id='plot-delta_sharpe' alt='delta_sharpe' "
                  f"src='data:image/png;base64,{b64}'>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_markets_report(doc: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write metrics.json, plots/delta_sharpe.png, report.md and report.html (atomically)."""
    out = Path(out_dir)
    plot = delta_plot(doc) if doc.get("best_classical") else b""
    if plot:
        atomic_write_bytes(out / "plots" / "delta_sharpe.png", plot)
    atomic_write_json(out / "metrics.json", doc)
    atomic_write_text(out / "report.md", render_markdown(doc, "plots/delta_sharpe.png"))
    atomic_write_text(out / "report.html", render_html(doc, plot))
    files = {"metrics": out / "metrics.json", "markdown": out / "report.md",
             "html": out / "report.html"}
    if plot:
        files["plot_delta_sharpe"] = out / "plots" / "delta_sharpe.png"
    return files
