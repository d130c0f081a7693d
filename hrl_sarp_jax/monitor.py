"""``hrl-sarp monitor``: a live, self-contained HTML view of one run folder.

# HOST ONLY (standard library + PyYAML; no JAX, so it starts at once beside a training job)
The page shows each phase's progress with an ETA (its logged steps against the budget the run's
config.yaml sets), learning curves per seed, validation Sharpe against its comparators, env
steps per second, and the latest evaluation's table and decisions (``report/``). Charts are
inline SVG drawn here: no scripts from elsewhere, nothing fetched from the network.

Files are read as they are being written: a torn last line of metrics.jsonl or decisions.jsonl
(a write in progress) is skipped, a missing or half-written JSON file is treated as absent.

``serve`` answers on 127.0.0.1 only: ``/`` (the page; a small script replaces its content
with ``/fragment`` every few seconds), ``/fragment`` and ``/state.json`` (the snapshot the page
is drawn from). ``write_page`` writes the page once, atomically, with a meta refresh.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from hrl_sarp_jax.config import config_from_dict, upgrade_saved_config
from hrl_sarp_jax.errors import ConfigError, HrlSarpError
from hrl_sarp_jax.utils.atomic import atomic_write_text

__all__ = [
    "PHASES",
    "make_server",
    "read_jsonl",
    "render_fragment",
    "render_page",
    "snapshot",
    "svg_chart",
    "write_page",
]

PHASES = (("1", "Macro pre-training"), ("2", "Micro pre-training"), ("3", "Macro PPO"),
          ("4", "Micro TD3+HER"), ("5", "joint fine-tuning"), ("flat", "flat PPO baseline"))
"""(phase, label) in the order ``hrl-sarp run`` trains them."""

CURVES = {
    "1": ("train_loss", "val_loss"),
    "2": ("train_loss", "val_loss"),
    "3": ("pg_loss", "value_loss", "episode_return", "reward"),
    "4": ("critic_loss", "actor_loss", "episode_return", "val_goal_alignment"),
    "5": ("macro_value_loss", "micro_critic_loss", "macro_reward", "val_goal_alignment"),
    "flat": ("pg_loss", "value_loss", "episode_return", "reward"),
}
"""Learning curves drawn per phase (those present; else the first logged per-seed metrics);
validation Sharpe has its own charts."""

GAP_S = 600.0
"""A pause longer than this between two records starts a new stretch for the ETA rate."""
MAX_POINTS = 400
"""Points per drawn line (longer series are thinned evenly, the last point kept)."""

# chart geometry (pixels): plot area = [LEFT, WIDTH - RIGHT] x [TOP, HEIGHT - BOTTOM]
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 420, 190, 56, 12, 24, 26
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
"""Seed k's colour is COLORS[k % 10]; means are black, comparators grey and dashed."""


# --------------------------------------------------------------------------- reading


def read_jsonl(path: Path, *, tail_bytes: int | None = None) -> list[dict]:
    """The JSON objects of a JSON-lines file; lines that do not parse (a torn last line being
    written) are skipped. ``tail_bytes``: only the file's last bytes (whole lines of them)."""
    try:
        with open(path, "rb") as fh:
            if tail_bytes is not None:
                size = fh.seek(0, 2)
                fh.seek(max(0, size - tail_bytes))
                data = fh.read()
                if size > tail_bytes:
                    data = data[data.find(b"\n") + 1:]
            else:
                data = fh.read()
    except OSError:
        return []
    out = []
    for line in data.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _budget(phase: str, cfg: Any) -> tuple[int | None, str]:
    """(steps the phase runs for, their unit) from the config: the same arithmetic as the
    phases' specs (an early stop in Phases 1-2 ends a phase sooner)."""
    if cfg is None:
        return None, "steps"
    t = cfg.train
    if phase == "1":
        return int(t.macro_pretrain.epochs), "epochs"
    if phase == "2":
        return int(t.micro_pretrain.epochs), "epochs"
    if phase in ("3", "flat"):
        upc = max(int(t.eval_interval), 1)
        updates = max(int(t.ppo.total_env_steps) // max(int(t.ppo.rollout_steps), 1), 1)
        return math.ceil(updates / upc) * upc, "updates"
    if phase == "4":
        per_chunk = max(int(t.td3.num_envs), 1) * 64  # Phase4Spec.steps_per_chunk
        return math.ceil(int(t.td3.total_env_steps) / per_chunk) * per_chunk, "env steps/seed"
    if phase == "5":
        return int(t.joint.rounds), "rounds"
    return None, "steps"


def _load_config(run_dir: Path) -> tuple[Any, str | None]:
    try:
        data = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None, "config.yaml not readable yet"
    try:
        return config_from_dict(upgrade_saved_config(data or {})), None  # keys added since
    except ConfigError as exc:
        return None, f"config.yaml does not fit this version ({exc})"


def _is_eval(rec: Mapping) -> bool:
    return bool(rec.get("eval")) or rec.get("kind") == "eval"


def _series(records: Sequence[Mapping], name: str) -> dict[str, Any]:
    """{"steps", "mean", "seeds": [[value per step] per seed]} of one metric in a phase."""
    steps, mean, seeds = [], [], []
    for rec in records:
        if name not in rec and name not in (rec.get("per_seed") or {}):
            continue
        steps.append(rec.get("step"))
        mean.append(_num(rec.get(name)))
        per = (rec.get("per_seed") or {}).get(name)
        if per is None and isinstance(rec.get(f"{name}_per_seed"), list):
            per = rec[f"{name}_per_seed"]
        per = per if isinstance(per, list) else []
        while len(seeds) < len(per):
            seeds.append([None] * (len(steps) - 1))
        for k, col in enumerate(seeds):
            col.append(_num(per[k]) if k < len(per) else None)
    return {"steps": steps, "mean": mean, "seeds": seeds}


def _eta(records: Sequence[Mapping], budget: int | None) -> tuple[float | None, float | None]:
    """(steps per second over the latest stretch without a long pause, seconds left)."""
    pts = [(float(r["time"]), float(r["step"])) for r in records
           if _num(r.get("time")) is not None and _num(r.get("step")) is not None]
    if len(pts) < 2:
        return None, None
    start = 0
    for i in range(1, len(pts)):
        if pts[i][0] - pts[i - 1][0] > GAP_S:
            start = i
    (t0, s0), (t1, s1) = pts[start], pts[-1]
    if t1 <= t0 or s1 <= s0:
        return None, None
    rate = (s1 - s0) / (t1 - t0)
    left = None if budget is None else max(0.0, (budget - max(s for _, s in pts)) / rate)
    return rate, left


def _walk_baselines(summary: Any) -> dict[str, float | None]:
    """Plain 1/N and sector momentum over the phase's validation walk, once the phase has
    ended (its summary's ``val_baselines``: ``pipeline.record_validation_baselines``)."""
    vb = summary.get("val_baselines") if isinstance(summary, dict) else None
    strategies = vb.get("strategies") if isinstance(vb, dict) else None
    if not isinstance(strategies, dict):
        return {}
    return {k: _num(b.get("sharpe")) if isinstance(b, dict) else None
            for k, b in strategies.items()}


def _phase_snapshot(run_dir: Path, phase: str, label: str, records: list[dict], cfg: Any,
                    now: float) -> dict[str, Any]:
    summary_path = run_dir / f"phase{phase}" / "summary.json"
    summary = _read_json(summary_path)
    budget, unit = _budget(phase, cfg)
    steps = [s for r in records if (s := _num(r.get("step"))) is not None]
    step = int(max(steps)) if steps else None
    last_time = max((t for r in records if (t := _num(r.get("time"))) is not None), default=None)
    done = isinstance(summary, dict) and (
        last_time is None or last_time <= summary_path.stat().st_mtime + 1.0)
    status = "done" if done else ("running" if records else "pending")
    rate, eta = _eta(records, budget)
    progress = 1.0 if done else (None if step is None or not budget else min(step / budget, 1.0))
    evals = [r for r in records if _is_eval(r)]
    env_rate = [(r.get("step"), _num(r.get("env_steps_per_s"))) for r in records
                if _num(r.get("env_steps_per_s")) is not None]
    stage = next((r["stage"] for r in reversed(records) if "stage" in r), None)
    names = [n for n in CURVES.get(phase, ()) if any(
        n in r or n in (r.get("per_seed") or {}) for r in records)]
    if not names:
        seen: list[str] = []
        for r in records:
            seen += [n for n in (r.get("per_seed") or {}) if n not in seen]
        names = seen[:4]
    validation = None
    if any("val_sharpe" in r for r in evals):
        last = next(r for r in reversed(evals) if "val_sharpe" in r)
        comparators = sorted(k for r in evals for k in r
                             if k.startswith("val_") and k.endswith("_sharpe")
                             and k != "val_sharpe" and "daily" not in k)
        comparators = list(dict.fromkeys(comparators))
        per = (last.get("per_seed") or {}).get("val_sharpe") or last.get("val_sharpe_per_seed")
        validation = {
            "step": last.get("step"), "val_sharpe": _num(last.get("val_sharpe")),
            "per_seed": [_num(v) for v in per] if isinstance(per, list) else [],
            "comparators": {k: _num(last.get(k)) for k in comparators},
            "series": _series(evals, "val_sharpe"),
            "comparator_series": {k: _series(evals, k) for k in comparators},
            "walk_baselines": _walk_baselines(summary),
        }
    return {
        "phase": phase, "label": label, "status": status, "step": step, "budget": budget,
        "unit": unit, "progress": progress, "steps_per_s": rate,
        "eta_s": 0.0 if done else eta, "records": len(records),
        "last_update_s": None if last_time is None else max(0.0, now - last_time),
        "stage": stage,
        "env_steps_per_s": env_rate[-1][1] if env_rate else None,
        "env_rate_series": {"steps": [s for s, _ in env_rate], "mean": [v for _, v in env_rate],
                            "seeds": []},
        "curves": {n: _series(records, n) for n in names},
        "validation": validation,
        "summary": summary if isinstance(summary, dict) else None,
    }


def _report_snapshot(run_dir: Path, decisions_tail: int = 1 << 18) -> dict[str, Any] | None:
    """The latest evaluation (report/): its strategy table and the last decision day."""
    folder = run_dir / "report"
    payload = _read_json(folder / "metrics.json")
    if not isinstance(payload, dict):
        return None
    strategies = payload.get("strategies") or {}
    rows = []
    order = sorted(strategies, key=lambda n: (n != "hrl_sarp", n))
    extra = [("oracle (upper bound)", payload["oracle"])] if isinstance(
        payload.get("oracle"), dict) else []
    for name, entry in [(n, strategies[n]) for n in order] + extra:
        m = (entry or {}).get("metrics") or {}
        rows.append({"strategy": name, **{k: _num(m.get(k))
                                         for k in ("sharpe", "cagr", "max_drawdown")}})
    decisions = read_jsonl(folder / "decisions.jsonl", tail_bytes=decisions_tail)
    last_date = max((str(d.get("date")) for d in decisions if d.get("date")), default=None)
    macro_recs = [d for d in decisions if d.get("kind") == "macro"]
    macro_date = max((str(d.get("date")) for d in macro_recs), default=None)
    return {
        "window": payload.get("window"),
        "rows": rows,
        "last_date": last_date,
        "micro": [d for d in decisions if d.get("kind") == "micro" and d.get("date") == last_date],
        "macro_date": macro_date,
        "macro": [d for d in macro_recs if d.get("date") == macro_date],
        "mtime": (folder / "metrics.json").stat().st_mtime,
    }


def snapshot(run_dir: str | Path, *, now: float | None = None) -> dict[str, Any]:
    """Everything the page shows, as JSON-able data (``/state.json``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise HrlSarpError(f"{run_dir}: no such run folder; start it with `hrl-sarp run` or "
                           f"`hrl-sarp train`, or check --run / --checkpoints")
    now = time.time() if now is None else now
    info = _read_json(run_dir / "run.json")
    cfg, cfg_note = _load_config(run_dir)
    records = read_jsonl(run_dir / "metrics.jsonl")
    by_phase: dict[str, list[dict]] = {}
    for rec in records:
        by_phase.setdefault(str(rec.get("phase")), []).append(rec)
    phases = [_phase_snapshot(run_dir, p, label, by_phase.get(p, []), cfg, now)
              for p, label in PHASES]
    known = {p for p, _ in PHASES}
    phases += [_phase_snapshot(run_dir, p, f"phase {p}", recs, cfg, now)
               for p, recs in by_phase.items() if p not in known]
    return {
        "run": (info or {}).get("run_name", run_dir.name) if isinstance(info, dict)
        else run_dir.name,
        "path": str(run_dir),
        "now": now,
        "seeds": None if cfg is None else int(cfg.train.seeds),
        "config_note": cfg_note,
        "records": len(records),
        "phases": phases,
        "report": _report_snapshot(run_dir),
    }


# --------------------------------------------------------------------------- drawing


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec)


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    s = round(s)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def _thin(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(pairs) <= MAX_POINTS:
        return pairs
    stride = math.ceil(len(pairs) / MAX_POINTS)
    return pairs[::stride] + ([pairs[-1]] if (len(pairs) - 1) % stride else [])


def svg_chart(title: str, lines: Sequence[Mapping[str, Any]]) -> str:
    """An inline SVG line chart. Each line: {"label", "steps", "values", "color", "width",
    "dash" (optional)}; points with a missing value are left out. x spans the steps, y the
    values of all lines (no padding): a value v at step s is drawn at
    (LEFT + (s - s_min) / (s_max - s_min) * (WIDTH - LEFT - RIGHT),
     TOP + (v_max - v) / (v_max - v_min) * (HEIGHT - TOP - BOTTOM))."""
    data = []
    for line in lines:
        pairs = [(float(s), float(v)) for s, v in zip(line["steps"], line["values"], strict=False)
                 if _num(s) is not None and _num(v) is not None]
        if pairs:
            data.append((line, _thin(pairs)))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">'
            f'<text x="{LEFT}" y="14" font-size="12" font-weight="bold">{html.escape(title)}'
            f'</text>')
    if not data:
        return head + (f'<text x="{LEFT}" y="{HEIGHT // 2}" font-size="11" fill="#888">'
                       f'no data yet</text></svg>')
    xs = [x for _, pts in data for x, _ in pts]
    ys = [y for _, pts in data for _, y in pts]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = [head,
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#ccc"/>',
           f'<text x="{LEFT - 4}" y="{TOP + 4}" font-size="10" text-anchor="end">'
           f'{_fmt(y1, ".4g")}</text>',
           f'<text x="{LEFT - 4}" y="{HEIGHT - BOTTOM}" font-size="10" text-anchor="end">'
           f'{_fmt(y0, ".4g")}</text>',
           f'<text x="{LEFT}" y="{HEIGHT - 8}" font-size="10">{_fmt(x0, ".6g")}</text>',
           f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">'
           f'{_fmt(x1, ".6g")}</text>']
    for line, pts in data:
        points = " ".join(f"{LEFT + (x - x0) / (x1 - x0) * pw:.1f},"
                          f"{TOP + (y1 - y) / (y1 - y0) * ph:.1f}" for x, y in pts)
        dash = f' stroke-dasharray="{line["dash"]}"' if line.get("dash") else ""
        out.append(f'<polyline fill="none" stroke="{line["color"]}" '
                   f'stroke-width="{line.get("width", 1)}"{dash} points="{points}">'
                   f'<title>{html.escape(str(line["label"]))}</title></polyline>')
        if len(pts) == 1:  # a lone point draws no line: mark it
            x, y = points.split(",")
            out.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{line["color"]}"/>')
    legend = " · ".join(f'<tspan fill="{line["color"]}">{html.escape(str(line["label"]))}</tspan>'
                        for line, _ in data[:8])
    out.append(f'<text x="{LEFT + pw / 2:.0f}" y="{HEIGHT - 8}" font-size="10" '
               f'text-anchor="middle">{legend}</text></svg>')
    return "".join(out)


def _series_lines(series: Mapping[str, Any], name: str = "mean") -> list[dict[str, Any]]:
    lines = [{"label": f"seed {k}", "steps": series["steps"], "values": col,
              "color": COLORS[k % len(COLORS)], "width": 1}
             for k, col in enumerate(series["seeds"])]
    lines.append({"label": name, "steps": series["steps"], "values": series["mean"],
                  "color": "#000", "width": 2})
    return lines


def _phase_table(snap: Mapping[str, Any]) -> str:
    rows = []
    for p in snap["phases"]:
        pct = "-" if p["progress"] is None else f"{100 * p['progress']:.0f}%"
        bar = "" if p["progress"] is None else (
            f'<span class="bar"><span style="width:{100 * p["progress"]:.0f}%"></span></span>')
        budget = "-" if p["budget"] is None else f"{p['budget']}"
        rows.append(
            f'<tr class="{p["status"]}"><td>{html.escape(p["phase"])}</td>'
            f'<td>{html.escape(p["label"])}</td><td>{p["status"]}</td>'
            f'<td>{bar} {pct}</td><td>{_fmt(p["step"], "d")} / {budget} {p["unit"]}</td>'
            f'<td>{_duration(p["eta_s"]) if p["status"] == "running" else "-"}</td>'
            f'<td>{_fmt(p["env_steps_per_s"], ".1f")}</td><td>{_fmt(p["stage"], "")}</td>'
            f'<td>{_duration(p["last_update_s"])}</td></tr>')
    return ('<table><tr><th>phase</th><th></th><th>status</th><th>progress</th><th>step</th>'
            '<th>ETA</th><th>env steps/s</th><th>stage</th><th>last record</th></tr>'
            + "".join(rows) + "</table>")


def _validation_table(snap: Mapping[str, Any]) -> str:
    rows = []
    for p in snap["phases"]:
        v = p["validation"]
        if not v:
            continue
        comps = ", ".join(f"{html.escape(k[4:])} {_fmt(x)}" for k, x in v["comparators"].items())
        walk = v.get("walk_baselines") or {}
        if walk:
            comps += "; over the same walk: " + ", ".join(
                f"{html.escape(k)} {_fmt(x)}" for k, x in walk.items())
        seeds = " ".join(_fmt(x) for x in v["per_seed"])
        rows.append(f'<tr><td>{html.escape(p["phase"])}</td><td>{_fmt(v["step"], "d")}</td>'
                    f'<td><b>{_fmt(v["val_sharpe"])}</b></td><td>{seeds}</td>'
                    f'<td>{comps}</td></tr>')
    if not rows:
        return "<p>no validation yet</p>"
    return ('<table><tr><th>phase</th><th>step</th><th>val Sharpe (mean)</th><th>per seed</th>'
            '<th>comparators</th></tr>' + "".join(rows) + "</table>")


def _report_html(rep: Mapping[str, Any] | None) -> str:
    if rep is None:
        return "<p>no evaluation yet (report/ appears after <code>hrl-sarp evaluate</code> " \
               "or at the end of <code>hrl-sarp run</code>)</p>"
    w = rep.get("window") or {}
    head = (f"<p>window {html.escape(str(w.get('start', '?')))} .. "
            f"{html.escape(str(w.get('end', '?')))}, net of costs</p>")
    table = "".join(f'<tr><td>{html.escape(r["strategy"])}</td><td>{_fmt(r["sharpe"], ".2f")}'
                    f'</td><td>{_fmt(r["cagr"], ".1%")}</td>'
                    f'<td>{_fmt(r["max_drawdown"], ".1%")}</td></tr>' for r in rep["rows"])
    out = [head, "<table><tr><th>strategy</th><th>Sharpe</th><th>CAGR</th><th>MaxDD</th></tr>",
           table, "</table>"]
    if rep["macro"]:
        out.append(f"<h3>Macro decision of {html.escape(str(rep['macro_date']))}</h3><table>"
                   "<tr><th>seed</th><th>regime</th><th>largest sector weights</th></tr>")
        for d in rep["macro"]:
            top = sorted((d.get("sector_weights") or {}).items(), key=lambda kv: -kv[1])[:4]
            out.append(f'<tr><td>{d.get("seed")}</td><td>{html.escape(str(d.get("regime")))}</td>'
                       f'<td>{", ".join(f"{html.escape(k)} {w:.1%}" for k, w in top)}</td></tr>')
        out.append("</table>")
    if rep["micro"]:
        out.append(f"<h3>Micro book of {html.escape(str(rep['last_date']))}</h3><table>"
                   "<tr><th>seed</th><th>largest holdings</th><th>cash</th></tr>")
        for d in rep["micro"]:
            top = list((d.get("top_weights") or {}).items())
            out.append(f'<tr><td>{d.get("seed")}</td>'
                       f'<td>{", ".join(f"{html.escape(k)} {w:.1%}" for k, w in top)}</td>'
                       f'<td>{_fmt(_num(d.get("cash")), ".1%")}</td></tr>')
        out.append("</table>")
    return "".join(out)


def render_fragment(snap: Mapping[str, Any]) -> str:
    """The page's content (what ``/fragment`` serves and the page's script swaps in)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap["now"]))
    note = f' <span class="warn">{html.escape(snap["config_note"])}</span>' \
        if snap.get("config_note") else ""
    parts = [f'<p class="meta">run <b>{html.escape(str(snap["run"]))}</b> '
             f'({html.escape(snap["path"])}), {snap["seeds"] or "?"} seed(s), '
             f'{snap["records"]} metric records; read {when}{note}</p>',
             "<h2>Phases</h2>", _phase_table(snap),
             "<h2>Validation Sharpe</h2>", _validation_table(snap)]
    charts = []
    for p in snap["phases"]:
        v = p["validation"]
        if v:
            lines = _series_lines(v["series"], "val_sharpe")
            lines += [{"label": k[4:], "steps": s["steps"], "values": s["mean"], "color": "#888",
                       "width": 1.5, "dash": "4 3"} for k, s in v["comparator_series"].items()]
            charts.append(svg_chart(f"phase {p['phase']}: val Sharpe vs comparators", lines))
    parts.append('<div class="charts">' + "".join(charts) + "</div>")
    parts.append("<h2>Learning curves per seed</h2>")
    for p in snap["phases"]:
        if not p["curves"] and not p["env_rate_series"]["steps"]:
            continue
        charts = [svg_chart(f"phase {p['phase']}: {name}", _series_lines(s))
                  for name, s in p["curves"].items()]
        if p["env_rate_series"]["steps"]:
            charts.append(svg_chart(f"phase {p['phase']}: env steps/s",
                                    _series_lines(p["env_rate_series"], "env steps/s")))
        parts.append(f'<h3>phase {html.escape(p["phase"])}: {html.escape(p["label"])}</h3>'
                     f'<div class="charts">{"".join(charts)}</div>')
    parts += ["<h2>Latest evaluation</h2>", _report_html(snap["report"])]
    return "\n".join(parts)


_STYLE = """body{font-family:sans-serif;margin:1em 2em;color:#222}table{border-collapse:collapse;
margin:.4em 0}td,th{border:1px solid #ddd;padding:2px 8px;font-size:13px;text-align:left}
tr.running td{background:#eef6ff}tr.done td{color:#555}.bar{display:inline-block;width:80px;
height:8px;background:#eee}.bar span{display:block;height:8px;background:#2ca02c}
.charts svg{margin:4px 8px 4px 0;border:1px solid #eee}.meta{color:#555}.warn{color:#b00}"""

_SCRIPT = """<script>
(function(){var ms=%d;function tick(){fetch('fragment',{cache:'no-store'}).then(function(r){
if(!r.ok){throw new Error(r.status);}return r.text();}).then(function(t){
document.getElementById('content').innerHTML=t;
document.getElementById('status').textContent='';}).catch(function(e){
document.getElementById('status').textContent='monitor not answering ('+e+')';}).then(
function(){setTimeout(tick,ms);});}setTimeout(tick,ms);})();
</script>"""


def render_page(snap: Mapping[str, Any], *, refresh_s: float = 5.0, live: bool = True) -> str:
    """The whole page. ``live``: a script swaps in ``fragment`` every ``refresh_s`` seconds
    (served); otherwise a meta refresh reloads the file (written by ``--once``)."""
    refresh = max(float(refresh_s), 0.05)
    meta = (f'<noscript><meta http-equiv="refresh" content="{max(1, round(refresh))}">'
            f'</noscript>') if live else \
        f'<meta http-equiv="refresh" content="{max(1, round(refresh))}">'
    script = _SCRIPT % round(refresh * 1000) if live else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{meta}'
            f'<title>hrl-sarp monitor: {html.escape(str(snap["run"]))}</title>'
            f'<style>{_STYLE}</style></head><body><h1>hrl-sarp monitor</h1>'
            f'<p id="status" class="warn"></p><div id="content">{render_fragment(snap)}</div>'
            f'{script}</body></html>\n')


# --------------------------------------------------------------------------- output


def write_page(run_dir: str | Path, out: str | Path, *, refresh_s: float = 30.0) -> Path:
    """Write the page for ``run_dir`` to ``out`` once, atomically (it reloads itself every
    ``refresh_s`` seconds, showing whatever the file holds then)."""
    out = Path(out)
    atomic_write_text(out, render_page(snapshot(run_dir), refresh_s=refresh_s, live=False))
    return out


def make_server(run_dir: str | Path, *, port: int = 0, refresh_s: float = 5.0,
                host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for ``run_dir`` on ``host:port`` (0: any free port; see
    ``server.server_address``); call ``serve_forever()`` and ``shutdown()``."""
    run_dir = Path(run_dir)
    snapshot(run_dir)  # a missing run folder fails here, before anything listens

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = self.path.split("?", 1)[0]
            pages: dict[str, tuple[str, Callable[[dict], str]]] = {
                "/": ("text/html", lambda s: render_page(s, refresh_s=refresh_s)),
                "/index.html": ("text/html", lambda s: render_page(s, refresh_s=refresh_s)),
                "/fragment": ("text/html", render_fragment),
                "/state.json": ("application/json",
                                lambda s: json.dumps(s, allow_nan=False, default=str)),
            }
            if route not in pages:
                self._answer(404, "text/plain", f"not found: {route}")
                return
            kind, draw = pages[route]
            try:
                body = draw(snapshot(run_dir))
            except Exception as exc:  # keep serving; the page shows the error
                self._answer(500, "text/plain", f"monitor: {type(exc).__name__}: {exc}")
                return
            self._answer(200, kind, body)

        def _answer(self, code: int, kind: str, body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", f"{kind}; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:  # quiet: the terminal shows the URL only
            return

    try:
        server = ThreadingHTTPServer((host, int(port)), Handler)
    except OSError as exc:
        raise HrlSarpError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); "
                           f"choose another port or 0 for any free one") from None
    server.daemon_threads = True
    return server
