"""The ``hrl-sarp`` command (also ``python -m hrl_sarp_jax``).

# HOST ONLY (not jittable)
Errors print one line and the way out, and exit non-zero; ``--debug`` shows the traceback.
Heavy imports happen inside the handlers so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hrl_sarp_jax.errors import HrlSarpError

DEFAULT_MARKET_SEED = 1000
"""First market seed of ``evaluate --markets`` (tuning range 1000-8999, docs/evaluation.md)."""

DEFAULT_MARKET_DIR = Path("data/default")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="a preset name (quick, smoke, default, ...: `hrl-sarp config show`) or a "
                        "YAML file; defaults built in")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dotted override, repeatable (e.g. --set env.cost.stt_buy=0.001)",
    )


def _load_cfg(args: argparse.Namespace, *, sweep_preset: bool = False):
    """The config of ``--config`` / ``--set``; with ``sweep_preset`` a ``sweep:`` section is
    allowed and left out (a sweep preset's run trains its earlier phases with ``train``)."""
    from hrl_sarp_jax.config import load_config, load_config_sections

    if not sweep_preset:
        return load_config(args.config, args.overrides)
    cfg, extra = load_config_sections(args.config, tuple(args.overrides), ("sweep",))
    if "sweep" in extra:
        print(f"note: --config {args.config} has a 'sweep:' section; `train` trains the rest "
              f"of it (the sweep itself is `hrl-sarp sweep`)", file=sys.stderr, flush=True)
    return cfg


# --------------------------------------------------------------------------- data


def _synth_cfg(args: argparse.Namespace):
    import dataclasses

    cfg = _load_cfg(args).synth
    changes = {
        k: v
        for k, v in {
            "seed": args.seed,
            "preset": args.preset,
            "start": args.start,
            "end": args.end,
            "stocks_per_sector": args.stocks_per_sector,
        }.items()
        if v is not None
    }
    return dataclasses.replace(cfg, **changes)


def cmd_data_synth(args: argparse.Namespace) -> int:
    from hrl_sarp_jax.data.synthetic import stylized_facts, write_synthetic_market

    cfg = _synth_cfg(args)
    t0 = time.perf_counter()
    out = write_synthetic_market(Path(args.out), cfg)
    print(f"wrote synthetic market ({cfg.preset}, seed {cfg.seed}) to {out} in {time.perf_counter() - t0:.1f}s")
    if args.report:
        facts = stylized_facts(out)
        print(json.dumps(facts, indent=2) if args.json else _format_facts(facts))
    return 0


def _format_facts(facts: dict) -> str:
    lines = ["stylized facts:"]
    for k, v in facts.items():
        lines.append(f"  {k:<40} {v:.4f}" if isinstance(v, float) else f"  {k:<40} {v}")
    return "\n".join(lines)


def cmd_data_calibrate(args: argparse.Namespace) -> int:
    """Fit the generator to a market folder's training window (``data.calibrate``) and write
    the calibration file ``--out``; print what was fitted and how to use it."""
    from hrl_sarp_jax.data.calibrate import calibrate_market, fit_check, write_calibration
    from hrl_sarp_jax.data.loader import load_market

    cfg = _load_cfg(args)
    end = args.end or cfg.data.val_start
    market, meta = load_market(Path(args.dir), cfg.data)
    t0 = time.perf_counter()
    fit = calibrate_market(market, meta, end=end, start=args.start, seed=args.seed,
                           sector_weighting=cfg.data.sector_weighting)
    out = write_calibration(Path(args.out), fit)
    if args.check:
        fit["diagnostics"]["check"] = fit_check(out, market, meta, fit, cfg.data, args.check)
        out = write_calibration(out, fit)
    src, diag = fit["source"], fit["diagnostics"]
    print(f"calibrated {args.dir} on {src['first_day']} .. {src['last_day']} ({src['days']} days, "
          f"{len(fit['sectors'])} sectors, {sum(map(len, fit['tickers'].values()))} stocks) in "
          f"{time.perf_counter() - t0:.1f}s; wrote {out}")
    for r, name in enumerate(("bull", "bear", "sideways")):
        print(f"  {name:<9} drift {fit['market_mu'][r]:+.3f}/yr  vol {fit['market_sigma'][r]:.3f}"
              f"  mean spell {diag['regime_mean_duration_days'][r]:6.1f} days  share "
              f"{diag['regime_days'][r] / src['days']:.2f}")
    if args.check:
        print(f"  {'fit check':<26} {'market':>8} {'generated (' + str(args.check) + ')':>16}")
        for key, (own, mean, sd) in diag["check"].items():
            print(f"  {key:<26} {own:>8.3f} {mean:>9.3f} ± {sd:.3f}")
    print(f"  price bands: {diag['price_bands']}; use it as --preset {out} (data synth, "
          f"evaluate --markets, sweep --markets) or synth.preset: {out}")
    return 0


def cmd_data_validate(args: argparse.Namespace) -> int:
    from hrl_sarp_jax.data.validate import validate_market

    cfg = _load_cfg(args).data
    report = validate_market(Path(args.dir), cfg)
    if report.problems:
        print(f"{args.dir}: INVALID, {len(report.problems)} problem(s):", file=sys.stderr)
        for p in report.problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"{args.dir}: valid. {report.summary_line()}")
    for w in report.warnings:
        print(f"  note: {w}")
    return 0


def cmd_data_import(args: argparse.Namespace) -> int:
    from hrl_sarp_jax.data import importers

    src, out = Path(args.src), Path(args.out)
    macro_map = importers.parse_macro_map(args.macro_map)
    if args.source == "hrl-sarp":
        importers.import_hrl_sarp(src, out, calendar_code=args.calendar, macro_map=macro_map)
    else:
        if args.sectors is None:
            raise HrlSarpError(f"--from {args.source} needs --sectors MAP.csv (columns ticker,sector)")
        importers.import_table(
            src,
            out,
            layout=args.source,
            sectors=Path(args.sectors),
            macro=Path(args.macro) if args.macro else None,
            index=Path(args.index) if args.index else None,
            calendar_code=args.calendar,
            macro_map=macro_map,
        )
    print(f"imported {src} ({args.source}) into {out}; check it with: hrl-sarp data validate {out}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    """Prices, benchmark and macro series from Yahoo Finance (data.fetch.fetch_market); exit 1
    when some symbols failed (each named on its own line, the rest written)."""
    from hrl_sarp_jax.data import fetch

    res = fetch.fetch_market(args.universe, Path(args.out), start=args.start, end=args.end,
                             calendar_code=args.calendar, index=args.index, macro=args.macro)
    failed = f"; {len(res.failed)} failed: {', '.join(res.failed)}" if res.failed else ""
    print(f"fetched {len(res.tickers)} tickers into {res.out} ({res.new_rows} new price rows)"
          f"{failed}; check it with: hrl-sarp data validate {res.out}")
    return 1 if res.failed else 0


# --------------------------------------------------------------------------- pipeline


QUICK_PRESET = "quick"


def _start_tracking(args: argparse.Namespace) -> None:
    """--mlflow URI: the runs opened from now on also log to MLflow (fails now if missing)."""
    if getattr(args, "mlflow", None):
        from hrl_sarp_jax.checkpointing import configure_tracking

        configure_tracking(mlflow=args.mlflow)


def _add_mlflow_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="also log params, metrics and artifacts to an MLflow run at this "
                        "tracking URI (needs the mlflow extra: pip install 'hrl-sarp-jax[mlflow]')")


def cmd_run(args: argparse.Namespace) -> int:
    """The main job: market -> features -> Phases 1-5 -> flat RL baseline -> evaluation
    against every baseline -> report (pipeline.main_job)."""
    from hrl_sarp_jax.config import load_config, resolve_config_path
    from hrl_sarp_jax.pipeline import main_job
    from hrl_sarp_jax.training.phases import check_training_config

    config = resolve_config_path(args.config or QUICK_PRESET)
    cfg = load_config(config, args.overrides)
    check_training_config(cfg)  # before the market is written or any phase trains
    branch = _branch_arg(args.branch)
    _start_tracking(args)
    market_dir = _train_market(args, cfg)
    t0 = time.perf_counter()
    print(f"main job: config {config}, market {market_dir}, run {Path(args.checkpoints) / args.run}",
          flush=True)
    out = main_job(cfg, market_dir, args.checkpoints, args.run, split=args.split,
                   log=lambda msg: print(msg, flush=True), branch=branch)
    w = out["window"]
    print(f"\nout of sample: {w['start']} .. {w['end']} ({w['days']} trading days), "
          f"{out['seeds']} seed(s), net of costs")
    _print_table(out["table"])
    verdict = json.loads(Path(out["files"]["metrics"]).read_text()).get("verdict") or {}
    for note in verdict.get("diagnostics", []):
        print(f"  * {note}")
    _print_ladder(out.get("ladder"))
    print(f"report: {out['files']['html']}")
    print(f"        {out['files']['markdown']}")
    print(f"        {out['files']['metrics']}")
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


def _branch_arg(text: str | None) -> tuple[str, int] | None:
    """``--branch RUN:K`` -> (RUN, K)."""
    if text is None:
        return None
    from hrl_sarp_jax.training.phases import sections_free_after

    source, sep, keep = text.rpartition(":")
    if not sep or not source or not keep.isdigit():
        raise HrlSarpError(f"--branch {text!r}: give RUN:K, a run under --checkpoints and the "
                           f"last phase to keep (e.g. --branch main:3)")
    sections_free_after(int(keep))  # K names a phase
    return source, int(keep)


def _print_table(table) -> None:
    width = max(len(row[0]) for row in table)
    print(f"  {'strategy':<{width}}  {'Sharpe':>7}  {'CAGR':>8}  {'MaxDD':>7}")
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for name, sharpe, cagr, mdd in table:
        print(f"  {name:<{width}}  {fmt(sharpe, '>7.2f')}  {fmt(cagr, '>8.1%')}  "
              f"{fmt(mdd, '>7.1%')}")


# --------------------------------------------------------------------------- train, inspect


def _synth_matches(market_dir: Path, synth) -> bool:
    """Does ``market_dir`` hold the synthetic market ``synth`` describes (by its meta.json)?"""
    try:
        meta = json.loads((market_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    keys = ("seed", "preset", "stocks_per_sector", "start", "end")
    jitter = float(meta.get("alpha_jitter") or 0.0)  # absent: made without one
    return (all(meta.get(k) == getattr(synth, k) for k in keys)
            and jitter == float(synth.alpha_jitter))


SHAPE_KEYS = ("networks.", "features.macro_levels", "features.regime_hmm")
"""Config keys (a prefix ending in '.' or a whole key) that define a run's networks: their
parameter shapes, or the function they compute (e.g. ``networks.stock_activation``)."""


def _config_for_run(args: argparse.Namespace, run_dir: Path):
    """The config a command on a trained run uses: the run's saved config.yaml, or ``--config``
    when given (``--set`` applies on top of either). A ``--config`` that differs from the run
    in a key that defines its networks (``SHAPE_KEYS``) is refused with the key named, where
    the restore would fail later with a shape mismatch or, for a key without parameters of
    its own (an activation), evaluate other networks than the ones trained."""
    from hrl_sarp_jax.checkpointing import CONFIG_FILE
    from hrl_sarp_jax.config import dotted_items, load_config, load_run_config, to_dict

    saved = run_dir / CONFIG_FILE
    if not args.config:
        return load_run_config(saved, args.overrides)
    cfg = load_config(args.config, args.overrides)
    if not saved.is_file():
        return cfg

    mine = dotted_items(to_dict(cfg))
    theirs = dotted_items(to_dict(load_run_config(saved, args.overrides)))
    for key in sorted(mine):
        if any(key.startswith(s) if s.endswith(".") else key == s for s in SHAPE_KEYS) \
                and mine[key] != theirs.get(key):
            raise HrlSarpError(
                f"--config {args.config} sets {key}={mine[key]!r} but run {run_dir.name} was "
                f"trained with {theirs.get(key)!r} (its networks are built with it); leave out "
                f"--config to use the run's own config, or add --set {key}={theirs.get(key)}")
    return cfg


def _train_market(args: argparse.Namespace, cfg) -> Path:
    """--data DIR, or the embedded default market in data/default (generated when missing or
    when it was generated from other ``synth.*`` settings)."""
    from hrl_sarp_jax.data.synthetic import write_synthetic_market

    if args.data is not None:
        market_dir = Path(args.data)
        if not market_dir.is_dir():
            raise HrlSarpError(
                f"--data {market_dir}: no such market folder; create one with "
                f"`hrl-sarp data synth --out {market_dir}` or `hrl-sarp data import`")
        return market_dir
    market_dir = DEFAULT_MARKET_DIR
    if not _synth_matches(market_dir, cfg.synth):
        print(f"generating the embedded default market ({cfg.synth.preset}, seed {cfg.synth.seed}) "
              f"into {market_dir} ...", flush=True)
        write_synthetic_market(market_dir, cfg.synth)
    return market_dir


def cmd_train(args: argparse.Namespace) -> int:
    """Run one curriculum phase into checkpoints/<run>/ (phases from training.phases.PHASES)."""
    import dataclasses

    from hrl_sarp_jax.checkpointing import create_run, data_fingerprint, read_phase_summary
    from hrl_sarp_jax.data.io import market_identity
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.pipeline import record_validation_baselines
    from hrl_sarp_jax.training.market_pool import pool_source
    from hrl_sarp_jax.training.phases import check_training_config, get_phases

    todo = get_phases(args.phase)  # unknown phases fail before any work
    cfg = _load_cfg(args, sweep_preset=True)
    _start_tracking(args)
    if args.seeds is not None:
        if args.seeds < 1:
            raise HrlSarpError(f"--seeds {args.seeds}: give at least 1 seed")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seeds=args.seeds))
    check_training_config(cfg)  # every phase's keys, before Phase 1 spends any time
    market_dir = _train_market(args, cfg)
    t0 = time.perf_counter()
    market, meta = load_market(market_dir, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    print(f"market {market_dir}: {market.num_days} days, {market.num_stocks} stocks, "
          f"{market.num_sectors} sectors; features in {time.perf_counter() - t0:.1f}s", flush=True)
    run_dir = Path(args.checkpoints) / args.run
    for number, _spec in todo:
        ckpt_dir = run_dir / f"phase{number}" / "ckpt"
        has_steps = ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())
        if has_steps and not args.resume:
            raise HrlSarpError(
                f"phase {number} of run {args.run} already has checkpoints in {ckpt_dir}; "
                f"pass --resume to continue it, or choose a new --run name")
    # A run folder that exists but has no checkpoints for this phase is continued with the
    # new phase (create_run still checks that its config and data fingerprint match).
    resume = args.resume or (run_dir / "run.json").exists()
    pool_source(cfg, market_identity(market_dir))  # the pool can serve this market
    run = create_run(args.checkpoints, args.run, cfg, data_fingerprint(market_dir), resume=resume,
                     market=market_identity(market_dir))
    walks: dict = {}  # validation walk -> its comparators (pipeline.validation_baselines)
    with run:
        for number, spec in todo:
            if args.resume and read_phase_summary(run, number) is not None:
                # finished (the summary is written last), as the main job keeps it: resuming
                # it again would only rebuild its inputs and programs
                print(f"phase {number}: {spec.name}: already trained (summary found), kept",
                      flush=True)
                continue
            print(f"phase {number}: {spec.name}, {cfg.train.seeds} seed(s), run {run.root}",
                  flush=True)
            result = spec.run(cfg, market, meta, feats, run, resume=args.resume, progress=True)
            _print_result(result)
            record_validation_baselines(run, number, cfg, market, meta, feats, walks,
                                        lambda text: print(f"  {text}", flush=True))
    return 0


def _print_result(result) -> None:
    s = result.summary
    unit = next((u for u in ("epochs", "updates", "rounds") if u in s), None)
    done = f"{s[unit]} {unit}" if unit else f"{s.get('env_steps')} env steps"
    compiled = f" (compile {s['compile_s']}s)" if s.get("compile_s") is not None else ""
    print(f"phase {result.phase} done: {done}, {s.get('seeds')} seed(s), {s.get('wall_s')}s"
          f"{compiled}")
    width = max(len(label) for label, *_ in result.rows) if result.rows else 10
    print(f"  {'validation metric':<{width}}  {'value':>10}  baseline")
    for label, value, base_key, base in result.rows:
        tail = f"{base:.5f} ({base_key})" if base_key else ""
        print(f"  {label:<{width}}  {value:>10.5f}  {tail}")
    print(f"summary: {result.summary_path}")


def cmd_inspect(args: argparse.Namespace) -> int:
    """Latest and best steps, content hashes and summaries of a run's phases."""
    from hrl_sarp_jax.checkpointing import inspect_run

    run_dir = Path(args.checkpoints) / args.run
    if not run_dir.is_dir():
        raise HrlSarpError(f"no run folder {run_dir}; check --run and --checkpoints")
    info = inspect_run(run_dir)
    if args.phase is not None:
        name = str(args.phase)
        if name not in info["phases"]:
            have = ", ".join(info["phases"]) or "none"
            raise HrlSarpError(
                f"run {args.run} has no phase {name} (phases: {have}); train it with "
                f"`hrl-sarp train --phase {name} --run {args.run}`")
        info["phases"] = {name: info["phases"][name]}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"run {info['run']} ({info['path']}), data {str(info['data_fingerprint'])[:19]}...")
    if info.get("origin"):
        print(f"  {info['origin']}")
    for name, ph in info["phases"].items():
        latest, best = ph.get("latest") or {}, ph.get("best") or {}
        print(f"  phase {name}: steps {ph.get('steps')}, latest {ph.get('latest_step')} "
              f"({str(latest.get('content_hash'))[:19]}..., verified {latest.get('verified')}), "
              f"best {ph.get('best_step')} by {ph.get('best_metric')} "
              f"({str(best.get('content_hash'))[:19]}...)")
    return 0


# --------------------------------------------------------------------------- bench


def _bench_pretrain(repeats: int):
    from hrl_sarp_jax.bench.pretrain import bench_pretrain

    return bench_pretrain(repeats=repeats)


def _bench_env(repeats: int):
    from hrl_sarp_jax.bench.env import bench_env

    return bench_env(repeats=repeats)


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise HrlSarpError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,4"
                           ) from None
    if not values:
        raise HrlSarpError(f"{option} {text!r}: expected comma-separated integers, e.g. 1,4")
    return values


def _bench_rl(args: argparse.Namespace):
    """Phases 3 and 4; one timed run per seed count, so ``--repeats`` does not apply.
    ``--config/--set`` choose the config, ``--seeds`` the seed counts, ``--envs`` the envs
    per seed of both phases, ``--variant NAME:k=v,...`` adds configs run side by side."""
    import dataclasses

    from hrl_sarp_jax.bench.rl import RLBenchSizes, bench_rl
    from hrl_sarp_jax.config import load_config

    base = list(args.overrides or ())
    if args.envs is not None:
        base += [f"train.ppo.num_envs={args.envs}", f"train.td3.num_envs={args.envs}"]
    cfg = load_config(args.config, base) if (args.config or base) else None
    variants = []
    for text in args.variant or ():
        name, sep, sets = text.partition(":")
        if not sep or not name:
            raise HrlSarpError(f"--variant {text!r}: expected NAME:key=value,... (NAME: for "
                               f"the unchanged config)")
        extra = [x for x in sets.split(",") if x.strip()]
        variants.append((name, load_config(args.config, base + extra)))
    sizes = RLBenchSizes()
    if args.seeds is not None:
        sizes = dataclasses.replace(sizes, seed_counts=_int_list(args.seeds, "--seeds"))
    if args.chunks is not None:
        sizes = dataclasses.replace(sizes, phase4_chunks=int(args.chunks))
    if args.steps_per_chunk is not None:
        sizes = dataclasses.replace(sizes, phase4_steps_per_chunk=int(args.steps_per_chunk))
    if args.phase3_env_steps is not None:
        sizes = dataclasses.replace(sizes, phase3_env_steps=int(args.phase3_env_steps))
    phases = _int_list(args.phases, "--phases") if args.phases else (3, 4)
    return bench_rl(repeats=args.repeats, cfg=cfg, sizes=sizes, phases=phases,
                    variants=variants)


def cmd_bench(args: argparse.Namespace) -> int:
    from hrl_sarp_jax.bench.data import bench_data

    rl_only = (args.seeds, args.envs, args.variant, args.phases, args.config, args.overrides,
               args.chunks, args.steps_per_chunk, args.phase3_env_steps)
    if args.what != "rl" and any(x is not None for x in rl_only):
        raise HrlSarpError("--config/--set/--seeds/--envs/--phases/--variant/--chunks/"
                           "--steps-per-chunk/--phase3-env-steps apply to 'bench rl' only")
    runner = {"data": bench_data, "pretrain": _bench_pretrain, "env": _bench_env}.get(args.what)
    if args.what == "rl":
        records = _bench_rl(args)
    elif runner is None:  # pragma: no cover - argparse restricts choices
        raise HrlSarpError(f"unknown benchmark '{args.what}'")
    else:
        records = runner(repeats=args.repeats)
    for record in records:
        print(json.dumps(record) if args.json else "  ".join(f"{k}={v}" for k, v in record.items()), flush=True)
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hrl-sarp",
        description="Hierarchical RL portfolio manager (sector rotation + stock selection) in JAX.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    _add_distributed_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the main job: train Phases 1-5 and evaluate against every "
                                   "baseline on the embedded default market (or --data DIR)")
    _add_config_args(p)
    p.add_argument("--data", default=None, help="use this market folder instead of generating one")
    p.add_argument("--run", default="main", help="run name under --checkpoints (default main); "
                                                 "an existing run is continued")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.add_argument("--split", default="test", help="evaluation window: test (default), val or "
                                                   "START:END")
    p.add_argument("--branch", metavar="RUN:K", default=None,
                   help="start the new --run from run RUN's Phases 1..K (copied) and train only "
                        "the later ones: a variant of the later phases against the same earlier "
                        "ones; only the config sections no kept phase reads may differ "
                        "(K=1: train.micro_pretrain, ppo, td3, joint; K=2: ppo, td3, joint; "
                        "K=3: td3, joint; K=4: joint)")
    _add_mlflow_arg(p)
    p.set_defaults(func=cmd_run)

    data = sub.add_parser("data", help="generate, validate and import markets")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p = dsub.add_parser("synth", help="write the seeded synthetic NSE-like market")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--preset", default=None, metavar="NAME|FILE.yaml",
                   help="'nse', 'small' or a calibration file (`hrl-sarp data calibrate`)")
    p.add_argument("--start", default=None, help="first calendar date, YYYY-MM-DD")
    p.add_argument("--end", default=None, help="last calendar date, YYYY-MM-DD")
    p.add_argument("--stocks-per-sector", type=int, default=None)
    p.add_argument("--report", action="store_true", help="print the market's stylized facts")
    p.add_argument("--json", action="store_true", help="with --report: print JSON")
    p.set_defaults(func=cmd_data_synth)

    p = dsub.add_parser("calibrate", help="fit the generator to a market's training window; "
                                          "the file it writes is a synth.preset")
    _add_config_args(p)
    p.add_argument("dir", help="market folder (e.g. a real market from `data import`)")
    p.add_argument("--out", required=True, metavar="FILE.yaml", help="calibration file to write")
    p.add_argument("--start", default=None, help="first day of the window (default: the first)")
    p.add_argument("--end", default=None, help="day after the window (default: data.val_start, "
                                               "so only the training window is read)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fit's random restarts")
    p.add_argument("--check", type=int, default=4, metavar="K",
                   help="compare the market's stylized facts with K markets generated from the "
                        "file over the same dates (default 4; 0: no check)")
    p.set_defaults(func=cmd_data_calibrate)

    p = dsub.add_parser("validate", help="check a market folder; lists every problem found")
    _add_config_args(p)
    p.add_argument("dir", help="market folder")
    p.set_defaults(func=cmd_data_validate)

    p = dsub.add_parser("import", help="convert other layouts into the canonical market folder")
    p.add_argument("--from", dest="source", required=True, choices=["hrl-sarp", "long", "wide"])
    p.add_argument("src", help="source folder (hrl-sarp) or price table file (long/wide)")
    p.add_argument("--out", required=True, help="output market folder")
    p.add_argument("--sectors", default=None, help="CSV with columns ticker,sector (long/wide)")
    p.add_argument("--macro", default=None, help="optional macro table (date + series)")
    p.add_argument("--index", default=None, help="optional benchmark table (date, close)")
    p.add_argument("--calendar", default=None, metavar="CODE",
                   help="trading calendar for meta.json: any exchange_calendars code (e.g. XNYS) "
                        "or 'weekdays' (default: XBOM if every date is an XBOM session, else "
                        "weekdays)")
    p.add_argument("--macro-map", dest="macro_map", action="append", default=[],
                   metavar="SOURCE=CANONICAL",
                   help="use the macro column SOURCE as the series CANONICAL, repeatable "
                        "(e.g. wti_spot=crude)")
    p.set_defaults(func=cmd_data_import)

    p = dsub.add_parser("fetch", help="download prices, benchmark and macro series (Yahoo "
                                      "Finance) into a market folder, or extend one")
    p.add_argument("--universe", required=True, metavar="nifty-sectors|FILE.csv",
                   help="'nifty-sectors' (the original's 11 sectors x 10 NSE stocks) or a CSV "
                        "ticker,sector of Yahoo symbols")
    p.add_argument("--start", default=None, help="first date, YYYY-MM-DD (an existing folder: "
                                                 "its own start)")
    p.add_argument("--end", default=None, help="last date, YYYY-MM-DD, inclusive (default today)")
    p.add_argument("--out", required=True, help="market folder; an existing one is extended")
    p.add_argument("--calendar", default=None, metavar="CODE",
                   help="exchange_calendars code for meta.json (default XBOM for NSE/BSE "
                        "symbols)")
    p.add_argument("--index", default=None, metavar="SYMBOL",
                   help="benchmark symbol (default ^NSEI for NSE/BSE symbols; 'none' for none)")
    p.add_argument("--macro", action="append", default=None, metavar="SYMBOL=SERIES",
                   help="macro series to fetch, repeatable (default ^INDIAVIX=vix, "
                        "INR=X=usd_inr, BZ=F=crude for NSE/BSE symbols)")
    p.set_defaults(func=cmd_data_fetch)

    _add_train_parsers(sub)
    _add_backtest_parser(sub)
    _add_eval_parsers(sub)
    _add_compare_parser(sub)
    _add_decide_parsers(sub)
    _add_explain_parser(sub)
    _add_sweep_parser(sub)
    _add_config_parser(sub)
    _add_monitor_parser(sub)

    p = sub.add_parser("bench", help="benchmarks printing machine-readable figures")
    p.add_argument("what", choices=["data", "env", "pretrain", "rl"])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--config", default=None, help="rl: preset or YAML file (default: defaults)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE",
                   help="rl: config override (repeatable)")
    p.add_argument("--seeds", default=None, help="rl: seed counts, e.g. 1,4 (default 1,4)")
    p.add_argument("--envs", type=int, default=None,
                   help="rl: parallel envs per seed (train.ppo/td3.num_envs)")
    p.add_argument("--phases", default=None, help="rl: phases, e.g. 4 (default 3,4)")
    p.add_argument("--variant", action="append", metavar="NAME:KEY=VALUE,...",
                   help="rl: a config variant benchmarked side by side (repeatable)")
    p.add_argument("--chunks", type=int, default=None,
                   help="rl: timed Phase-4 chunks after the warm-up chunk (default 2)")
    p.add_argument("--steps-per-chunk", type=int, default=None,
                   help="rl: vector env steps per Phase-4 chunk (default 4)")
    p.add_argument("--phase3-env-steps", type=int, default=None,
                   help="rl: Phase-3 env steps per seed (default 1280)")
    p.set_defaults(func=cmd_bench)
    return parser


def _add_train_parsers(sub) -> None:
    p = sub.add_parser("train", help="run a training phase into checkpoints/<run>/")
    _add_config_args(p)
    p.add_argument("--phase", required=True, choices=["1", "2", "3", "4", "5", "all", "flat"],
                   help="curriculum phase: 1 Macro / 2 Micro supervised pre-training, 3 Macro PPO, "
                        "4 Micro TD3+HER, 5 joint fine-tuning, all = 1..5 in order; flat = "
                        "the flat single-level PPO baseline the evaluation compares against")
    p.add_argument("--run", required=True, help="run name: the folder under --checkpoints")
    p.add_argument("--data", default=None,
                   help="market folder (default: the embedded market in data/default)")
    p.add_argument("--seeds", type=int, default=None,
                   help="K seeds trained together in one program (sets train.seeds)")
    p.add_argument("--resume", action="store_true",
                   help="continue the phase from its latest checkpoint")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    _add_mlflow_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("inspect", help="describe a run's checkpoints (latest/best step, hashes)")
    p.add_argument("--run", required=True)
    p.add_argument("--phase", default=None, help="only this phase")
    p.add_argument("--checkpoints", default="checkpoints")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_inspect)


def cmd_backtest(args: argparse.Namespace) -> int:
    """Walk-forward backtest (walk_forward.walk_forward): per fold, train on its training window,
    select on its validation window, evaluate on its test window only; stitch the test windows
    into one out-of-sample report in checkpoints/<run>/report/."""
    from hrl_sarp_jax.config import load_config, resolve_config_path
    from hrl_sarp_jax.walk_forward import parse_walk_forward_phases, walk_forward, whole_months

    if not args.walk_forward:
        raise HrlSarpError("backtest: add --walk-forward (the only backtest mode for now); the "
                           "single-window backtest of a trained run is `hrl-sarp evaluate --run "
                           "NAME [--split START:END]`")
    missing = [f"--{k.replace('_', '-')}" for k in ("train_years", "val_years", "test_years")
               if getattr(args, k) is None]
    if missing:
        raise HrlSarpError(f"backtest --walk-forward needs {', '.join(missing)} (years in whole "
                           f"months, e.g. --train-years 3 --val-years 1 --test-years 0.5)")
    for key in ("train_years", "val_years", "test_years"):  # bad input fails before any work
        whole_months(getattr(args, key), f"--{key.replace('_', '-')}")
    if args.folds is not None and args.folds < 1:
        raise HrlSarpError(f"--folds {args.folds}: give at least 1 fold (or leave it out for "
                           f"every fold that fits)")
    if args.random_seeds < 1:
        raise HrlSarpError(f"--random-seeds {args.random_seeds}: give at least 1 seed")
    if args.bootstrap < 1:
        raise HrlSarpError(f"--bootstrap {args.bootstrap}: give at least 1 resample")
    parse_walk_forward_phases(args.phases)
    include = None
    if args.baselines is not None:
        from hrl_sarp_jax.evaluation.baselines import BASELINES

        include = [b.strip() for b in args.baselines.split(",") if b.strip()]
        usable = [n for n, spec in BASELINES.items() if spec.kind != "requires_training"]
        unknown = [b for b in include if b not in usable]
        if unknown or not include:
            raise HrlSarpError(f"--baselines {args.baselines!r}: unknown or untrained baseline(s) "
                               f"{unknown}; choose from {', '.join(usable)}")
    config = resolve_config_path(args.config or QUICK_PRESET)
    cfg = load_config(config, args.overrides)
    market_dir = _train_market(args, cfg)
    t0 = time.perf_counter()
    print(f"walk-forward backtest: config {config}, market {market_dir}, run "
          f"{Path(args.checkpoints) / args.run}", flush=True)
    out = walk_forward(cfg, market_dir, args.checkpoints, args.run,
                       train_years=args.train_years, val_years=args.val_years,
                       test_years=args.test_years, expanding=args.expanding, folds=args.folds,
                       phases=args.phases, seeds_for_random=args.random_seeds,
                       risk_manager=not args.no_risk_manager, include=include,
                       bootstrap_num=args.bootstrap, log=lambda msg: print(msg, flush=True))
    print(f"\nfolds ({'expanding' if args.expanding else 'rolling'}):")
    for f in out["folds"]:
        print(f"  {f['name']}: train {f['train_start']} .. {f['val_start']}, validate .. "
              f"{f['test_start']}, test {f['eval_start']} .. {f['eval_end']} "
              f"({f['test_days']} days)")
    w = out["window"]
    print(f"out of sample (stitched): {w['start']} .. {w['end']} ({w['days']} trading days), "
          f"{out['seeds']} seed(s), net of costs")
    _print_table(out["table"])
    for key in ("html", "markdown", "metrics"):
        print(f"{key}: {out['files'][key]}")
    print(f"decisions: {out['decisions']}")
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


def _add_backtest_parser(sub) -> None:
    p = sub.add_parser(
        "backtest", help="walk-forward backtest: train and test fold by fold on rolling (or "
                         "expanding) windows, one stitched out-of-sample report",
        description="Fold i trains on [D0 + iC, D0 + A + iC) (rolling; --expanding: from the "
                    "first day D0), validates on the next B years and tests on the next C "
                    "years (A, B, C = --train-years, --val-years, --test-years; D0 = the "
                    "market's first day). Fold i+1's test window starts where fold i's ends, so "
                    "the test windows are disjoint and consecutive and their returns stitch "
                    "into one series. No look-ahead: each fold is its own run "
                    "checkpoints/<run>/fold<i>/ (base config with the fold's data.val_start / "
                    "data.test_start), trained only on days before its validation start, "
                    "checkpoints selected on its validation window, and its test window read "
                    "only by the evaluation. The config has no training start, so a rolling "
                    "fold trains (and is evaluated) on the market sliced from its training "
                    "start (features keep their causal history). Folds run one after another "
                    "(window lengths differ, so they are not one vmapped program); running "
                    "again continues the same folds. Default config: the quick preset (as "
                    "`hrl-sarp run`).")
    _add_config_args(p)
    p.add_argument("--walk-forward", action="store_true",
                   help="required: the walk-forward mode (the single-window backtest of a "
                        "trained run is `hrl-sarp evaluate`)")
    p.add_argument("--train-years", type=float, default=None, metavar="A",
                   help="training span in years, whole months (rolling: every fold's; "
                        "expanding: the first fold's)")
    p.add_argument("--val-years", type=float, default=None, metavar="B",
                   help="validation span (model selection) in years, whole months")
    p.add_argument("--test-years", type=float, default=None, metavar="C",
                   help="test span in years, whole months; also the step between folds")
    p.add_argument("--expanding", action="store_true",
                   help="expanding training windows from the market's first day (default: "
                        "rolling windows of --train-years)")
    p.add_argument("--folds", type=int, default=None, metavar="N",
                   help="only the last N folds that fit (default: every fold that fits)")
    p.add_argument("--phases", default="all",
                   help="phases to train per fold: all (1-5 and the flat RL baseline, default) "
                        "or a comma list of 1,2,3,4,5,flat (e.g. 1,2: the pre-trained agents)")
    p.add_argument("--run", default="walk_forward",
                   help="run name under --checkpoints (default walk_forward); an existing one "
                        "is continued")
    p.add_argument("--data", default=None,
                   help="market folder (default: the embedded market in data/default)")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.add_argument("--random-seeds", type=int, default=5,
                   help="seeds of the random baseline (default 5)")
    p.add_argument("--no-risk-manager", action="store_true",
                   help="full exposure for every strategy (default: the envs' risk manager)")
    p.add_argument("--bootstrap", type=int, default=2000,
                   help="block-bootstrap resamples of the Sharpe-difference tests (default 2000)")
    p.add_argument("--baselines", default=None, metavar="NAME,NAME",
                   help="only these baselines (default: every one that needs no training)")
    p.set_defaults(func=cmd_backtest)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Settings × seeds of a ``sweep:`` preset as one vmapped Phase-3 (Macro PPO) or Phase-4
    (Micro TD3+HER) program (training.sweep)."""
    from hrl_sarp_jax.checkpointing import create_run, data_fingerprint
    from hrl_sarp_jax.data.io import market_identity
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.data.synthetic import generator_of
    from hrl_sarp_jax.evaluation.overfitting import selection_overfitting
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.training.sweep import load_sweep_config, run_sweep

    cfg, spec = load_sweep_config(args.config, args.overrides)
    if args.markets is not None:  # refused before any training: a judgement seed, no partner
        from hrl_sarp_jax.sweep_judge import check_judgeable, check_tuning_seeds

        check_tuning_seeds(args.markets, args.market_seed)
        check_judgeable(Path(args.checkpoints) / args.run, spec.phase)
    market_dir = _train_market(args, cfg)
    if args.markets is not None and args.preset is None \
            and generator_of(market_identity(market_dir), cfg.synth) is None:
        raise HrlSarpError(f"--markets: {market_dir} is not a generated market, so the "
                           f"instrument has no generator for it; give --preset nse|small or a "
                           f"calibration FILE.yaml (`hrl-sarp data calibrate`; its markets must "
                           f"have the run's stocks and sectors) or leave out --markets")
    t0 = time.perf_counter()
    market, meta = load_market(market_dir, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    print(f"market {market_dir}: {market.num_days} days, {market.num_stocks} stocks, "
          f"{market.num_sectors} sectors; features in {time.perf_counter() - t0:.1f}s", flush=True)
    run = create_run(args.checkpoints, args.run, cfg, data_fingerprint(market_dir),
                     resume=args.resume, market=market_identity(market_dir))
    with run:
        # training may not import evaluation (sibling layers): the CLI passes the statistics
        out = run_sweep(run, cfg, spec, market, meta, feats, resume=args.resume,
                        log=lambda msg: print(msg, file=sys.stderr, flush=True),
                        overfitting=selection_overfitting)
        if args.markets is not None:
            from hrl_sarp_jax.sweep_judge import judge_settings

            judged = judge_settings(run, cfg, spec, out["summary"], market, meta, feats,
                                    markets=args.markets, market_seed=args.market_seed,
                                    chunk=args.chunk, preset=args.preset,
                                    log=lambda msg: print(msg, file=sys.stderr, flush=True))
            out["paths"].update(judged["paths"])
    print(out["paths"]["ranking_md"].read_text(), end="")
    if args.markets is not None:
        print(out["paths"]["instrument_md"].read_text(), end="")
    s = out["summary"]
    print(f"sweep done: phase {out['phase']}, {len(out['results'])} members, {out['work']}, "
          f"{s['wall_s']}s (compile {s['compile_s']}s)")
    for name in ("results", "ranking_json", "ranking_md", "instrument_json", "instrument_md",
                 "best_run"):
        if name in out["paths"]:
            print(f"{name}: {out['paths'][name]}")
    return 0


def _add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="grid/random search over dynamic PPO (Phase 3) or TD3 "
                                     "(Phase 4) hyperparameters x seeds as one vmapped program")
    _add_config_args(p)
    p.add_argument("--run", required=True, help="run name: the folder under --checkpoints")
    p.add_argument("--data", default=None,
                   help="market folder (default: the embedded market in data/default)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep from its latest checkpoint")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.add_argument("--markets", type=int, default=None, metavar="K",
                   help="then judge every setting on K generated markets (the many-market "
                        "instrument) and make best/ the first there (sweep_judge)")
    p.add_argument("--market-seed", type=int, default=DEFAULT_MARKET_SEED, metavar="S",
                   help="first market seed (default 1000; the judgement seeds 9000-9999 are "
                        "refused: this is a choice)")
    p.add_argument("--chunk", type=int, default=8, help="markets per compiled evaluation call")
    p.add_argument("--preset", default=None, metavar="NAME|FILE.yaml",
                   help="generator of the judging markets: 'nse', 'small' or a calibration "
                        "file (default: the run market's own; needed for a real market)")
    p.set_defaults(func=cmd_sweep)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Restore a run's trained policy, backtest it next to every baseline on a window and write
    checkpoints/<run>/report/ (pipeline.evaluate_run)."""
    from hrl_sarp_jax.checkpointing import data_fingerprint, open_run
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.pipeline import evaluate_run

    run_dir = Path(args.checkpoints) / args.run
    if not (run_dir / "run.json").is_file():
        raise HrlSarpError(f"no run folder {run_dir}; check --run and --checkpoints, or train "
                           f"one with `hrl-sarp train --phase 1 --run {args.run}`")
    if args.random_seeds < 1:
        raise HrlSarpError(f"--random-seeds {args.random_seeds}: give at least 1 seed")
    if args.bootstrap < 1:
        raise HrlSarpError(f"--bootstrap {args.bootstrap}: give at least 1 resample")
    include = None
    if args.baselines is not None:
        from hrl_sarp_jax.evaluation.baselines import BASELINES

        include = [b.strip() for b in args.baselines.split(",") if b.strip()]
        usable = [n for n, spec in BASELINES.items() if spec.kind != "requires_training"]
        unknown = [b for b in include if b not in usable]
        if unknown or not include:
            raise HrlSarpError(f"--baselines {args.baselines!r}: unknown or untrained baseline(s) "
                               f"{unknown}; choose from {', '.join(usable)}")
    run = open_run(run_dir)
    cfg = _config_for_run(args, run_dir)
    if args.markets is not None:
        return _evaluate_markets(args, run, cfg, include)
    for flag, value in (("--market-seed", args.market_seed), ("--preset", args.preset),
                        ("--chunk", args.chunk), ("--json", args.json or None),
                        ("--tag", args.tag), ("--oracle-lags", args.oracle_lags)):
        if value is not None:
            raise HrlSarpError(f"{flag} applies to many-market evaluation; add --markets K")
    market_dir = _train_market(args, cfg)
    if run.data_fingerprint and data_fingerprint(market_dir) != run.data_fingerprint:
        print(f"note: {market_dir} is not the market run {args.run} was trained on (its data "
              f"fingerprint differs)", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    market, meta = load_market(market_dir, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    with run:
        out = evaluate_run(run, cfg, market, meta, feats, split=args.split,
                           market_dir=market_dir, seeds_for_random=args.random_seeds,
                           risk_manager=not args.no_risk_manager,
                           bootstrap_num=args.bootstrap,
                           include=include, ladder=not args.no_ladder,
                           log=lambda msg: print(msg, file=sys.stderr, flush=True))
    w = out["window"]
    print(f"evaluated run {args.run} on {out['split']} ({w['start']} .. {w['end']}, "
          f"{w['days']} days, {out['seeds']} seed(s)) in {time.perf_counter() - t0:.1f}s")
    _print_table(out["table"])
    _print_ladder(out.get("ladder"))
    for key in ("metrics", "markdown", "html"):
        print(f"{key}: {out['files'][key]}")
    print(f"decisions: {out['decisions']}")
    return 0


def _evaluate_markets(args: argparse.Namespace, run, cfg, include) -> int:
    """``evaluate --markets K``: the run judged on K generated markets (many_markets)."""
    import re

    from hrl_sarp_jax.many_markets import REPORT_DIR, evaluate_markets

    if args.data is not None:
        raise HrlSarpError("--data: many-market evaluation generates its markets; leave out "
                           "--data (or leave out --markets to evaluate on that folder)")
    if args.tag is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", args.tag):
        raise HrlSarpError(f"--tag {args.tag!r}: use letters, digits, '.', '_' or '-' (it "
                           f"names the folder {REPORT_DIR}-TAG)")
    out_dir = None if args.tag is None else run.root / f"{REPORT_DIR}-{args.tag}"
    lags = []
    for part in (args.oracle_lags or "").split(","):
        if part.strip():
            if not re.fullmatch(r"\d+", part.strip()):
                raise HrlSarpError(f"--oracle-lags {args.oracle_lags!r}: {part.strip()!r} is "
                                   f"not a whole number of trading days (e.g. 5,10,20)")
            lags.append(int(part))
    if args.oracle_lags is not None and not lags:
        raise HrlSarpError(f"--oracle-lags {args.oracle_lags!r}: give trading days, e.g. 5,10,20")
    with run:
        out = evaluate_markets(
            run, cfg, markets=args.markets,
            market_seed=DEFAULT_MARKET_SEED if args.market_seed is None else args.market_seed,
            preset=args.preset, split=args.split, chunk=args.chunk or 8,
            random_seeds=args.random_seeds, risk_manager=not args.no_risk_manager,
            include=include, bootstrap_num=args.bootstrap, ladder=not args.no_ladder,
            out_dir=out_dir, log=lambda msg: print(msg, file=sys.stderr, flush=True),
            oracle_lags=lags)
    doc = out["metrics"]
    for warning in out["warnings"]:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if args.json:
        keep = ("run", "split", "window", "seeds", "in_sample", "paired", "oracle_share",
                "paired_ensemble", "best_classical", "verdict", "summary", "ladder",
                "regime_knowledge", "seconds", "warnings")
        print(json.dumps({k: doc[k] for k in keep}, allow_nan=False))
        return 0
    seeds = doc["seeds"]["markets"]
    print(f"evaluated run {args.run} on {len(seeds)} market(s) (seeds {seeds[0]}..{seeds[-1]}), "
          f"{doc['split']} window {doc['window']['start']} .. {doc['window']['end']} in "
          f"{doc['seconds']:.1f}s")
    width = max(len(n) for n in doc["paired"])
    print(f"  {'agent minus':<{width}}  {'mean':>6}  {'95% interval':>16}  ahead")
    for name, p in doc["paired"].items():
        lo, hi = p["ci95"]
        ci = "-" if lo is None else f"[{lo:+.2f}, {hi:+.2f}]"
        print(f"  {name:<{width}}  {p['mean']:>+6.2f}  {ci:>16}  {p['wins']}/{p['n']}")
    _print_ladder(doc.get("ladder"))
    _print_knowledge(doc)
    for key in ("metrics", "markdown", "html"):
        print(f"{key}: {out['files'][key]}")
    return 0


def _print_knowledge(doc: dict) -> None:
    """The regime oracle told the regime late beside the agent (``--oracle-lags``), if any."""
    from hrl_sarp_jax.evaluation.markets_report import (
        KNOWLEDGE_HEADER,
        equivalent_lag_line,
        knowledge_rows,
    )

    rows = knowledge_rows(doc)
    if not rows:
        return
    widths = [max(len(str(x)) for x in col) for col in zip(KNOWLEDGE_HEADER, *rows, strict=True)]
    print("regime knowledge (minus equal weight, over markets):")
    for row in (KNOWLEDGE_HEADER, *rows):
        print("  " + "  ".join(f"{x:<{w}}" for x, w in zip(row, widths, strict=True)))
    print(f"  {equivalent_lag_line(doc)}")


def _print_ladder(ladder: dict | None) -> None:
    """The rungs' Sharpe and what each phase added (``evaluation.ladder``), if any."""
    from hrl_sarp_jax.evaluation.ladder import ladder_lines

    for line in ladder_lines(ladder):
        print(line)


def _add_eval_parsers(sub) -> None:
    p = sub.add_parser("evaluate", help="backtest a trained run against the baselines and write "
                                        "its report (checkpoints/<run>/report/)")
    _add_config_args(p)
    p.add_argument("--run", required=True, help="run name: the folder under --checkpoints")
    p.add_argument("--data", default=None,
                   help="market folder (default: the embedded market in data/default)")
    p.add_argument("--split", default="test",
                   help="window: test (data.test_start .. end), val (data.val_start .. the day "
                        "before data.test_start) or START:END dates (default test)")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.add_argument("--random-seeds", type=int, default=5,
                   help="seeds of the random baseline (default 5)")
    p.add_argument("--no-risk-manager", action="store_true",
                   help="full exposure for every strategy (default: the envs' risk manager, "
                        "as in training)")
    p.add_argument("--bootstrap", type=int, default=2000,
                   help="block-bootstrap resamples of the Sharpe-difference tests (default 2000)")
    p.add_argument("--baselines", default=None, metavar="NAME,NAME",
                   help="only these baselines (default: every one that needs no training)")
    p.add_argument("--no-ladder", action="store_true",
                   help="leave out the hierarchy after each earlier RL phase (default: the "
                        "ladder of what each phase added is evaluated and reported)")
    g = p.add_argument_group("many markets (docs/evaluation.md)")
    g.add_argument("--markets", type=int, default=None, metavar="K",
                   help="judge the run on K generated markets instead of one market folder; "
                        "report in checkpoints/<run>/report-markets/")
    g.add_argument("--market-seed", type=int, default=None, metavar="S",
                   help=f"first market seed (markets S .. S+K-1; default "
                        f"{DEFAULT_MARKET_SEED}, the tuning range; 9000-9999 is reserved for "
                        f"judgement)")
    g.add_argument("--preset", default=None, metavar="NAME|FILE.yaml",
                   help="generator preset: 'nse', 'small' or a calibration file from `hrl-sarp "
                        "data calibrate` (default: the run's own market's)")
    g.add_argument("--chunk", type=int, default=None, metavar="C",
                   help="markets per batched program (memory bound; default 8)")
    g.add_argument("--json", action="store_true", help="print the result as one JSON object")
    g.add_argument("--oracle-lags", default=None, metavar="DAYS,DAYS",
                   help="also run the regime oracle told the regime that many trading days "
                        "late (e.g. 5,10,20,40): where the agent's edge over equal weight sits "
                        "on the value of regime knowledge against detection delay")
    g.add_argument("--tag", default=None, metavar="NAME",
                   help="write the report to checkpoints/<run>/report-markets-NAME/ instead, "
                        "beside earlier ones (`hrl-sarp compare RUN:A RUN:B`)")
    p.set_defaults(func=cmd_evaluate)


def _markets_report(where: str, checkpoints: str) -> tuple[Path, dict]:
    """(path, payload) of a many-market metrics.json: ``where`` is the file, a report folder,
    a run folder (its report-markets/), a run name under --checkpoints, or RUN:TAG (the
    report ``evaluate --markets K --tag TAG`` wrote)."""
    from hrl_sarp_jax.many_markets import REPORT_DIR

    base = Path(where)
    tries = [base, base / "metrics.json", base / REPORT_DIR / "metrics.json",
             Path(checkpoints) / where / REPORT_DIR / "metrics.json"]
    if ":" in where:
        run, tag = where.split(":", 1)
        tries.append(Path(checkpoints) / run / f"{REPORT_DIR}-{tag}" / "metrics.json")
    path = next((t for t in tries if t.is_file()), None)
    if path is None:
        raise HrlSarpError(f"compare: no many-market report at {where!r} (tried a metrics.json, "
                           f"a report folder, {base / REPORT_DIR} and "
                           f"{Path(checkpoints) / where / REPORT_DIR}); make one with "
                           f"`hrl-sarp evaluate --run RUN --markets K`")
    try:
        return path, json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise HrlSarpError(f"compare: {path} is not a readable JSON report ({e})") from e


def cmd_compare(args: argparse.Namespace) -> int:
    """B minus A over the markets two many-market reports share (evaluation/compare.py)."""
    from hrl_sarp_jax.evaluation.compare import compare_lines, compare_reports, pool_reports

    if args.bootstrap < 1:
        raise HrlSarpError(f"--bootstrap {args.bootstrap}: give at least 1 resample")
    sides = []
    for where in (args.a, args.b):
        parts = [w.strip() for w in where.split("+")]
        if not all(parts):
            raise HrlSarpError(f"compare: {where!r} has an empty replicate; join reports with "
                               f"'+', e.g. Q:ev0+S1:ev0")
        sides.append([_markets_report(w, args.checkpoints) for w in parts])
    chosen = ([s.strip() for s in args.strategies.split(",") if s.strip()]
              if args.strategies else None)
    try:
        (name_a, a), (name_b, b) = (
            ("+".join(str(p) for p, _ in side),
             pool_reports([rep for _, rep in side], [str(p) for p, _ in side]))
            for side in sides)
        result = compare_reports(a, b, names=(name_a, name_b), strategies=chosen,
                                 num_boot=args.bootstrap)
    except ValueError as e:
        raise HrlSarpError(f"compare: {e}") from e
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(compare_lines(result)))
    return 0


def _add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="two many-market reports of the same markets side by "
                                       "side: B minus A per strategy, paired by market")
    p.add_argument("a", help="report A: a run name, RUN:TAG (evaluate --tag), a run or report "
                             "folder, or a metrics.json; replicates (retrainings of one "
                             "setting on the same markets) joined by '+' are pooled")
    p.add_argument("b", help="report B (the change), the same forms")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.add_argument("--strategies", default=None, metavar="NAME,NAME",
                   help="only these (default: every strategy whose figures differ)")
    p.add_argument("--bootstrap", type=int, default=4000,
                   help="resamples of the seed-resampled interval (default 4000)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_compare)


def cmd_decide(args: argparse.Namespace) -> int:
    """Orders for the next trading day from a run's agents (decide.decide_run); --ledger
    appends the decision to a hash-chained paper ledger."""
    from hrl_sarp_jax.checkpointing import open_run
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.decide import decide_run, decision_record, format_decision, read_holdings
    from hrl_sarp_jax.evaluation.ledger import append_entry, read_ledger
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.utils.atomic import to_json_safe

    run_dir = Path(args.checkpoints) / args.run
    if not (run_dir / "run.json").is_file():
        raise HrlSarpError(f"no run folder {run_dir}; check --run and --checkpoints, or train "
                           f"one with `hrl-sarp train --phase 1 --run {args.run}`")
    if args.capital is not None and not args.capital > 0:
        raise HrlSarpError(f"--capital {args.capital:g}: give a positive amount of money")
    if args.ledger and Path(args.ledger).exists():
        read_ledger(args.ledger)  # a damaged ledger fails before any work
    run = open_run(run_dir)
    cfg = _config_for_run(args, run_dir)
    market_dir = _train_market(args, cfg)
    market, meta = load_market(market_dir, cfg.data)
    holdings, cash = (read_holdings(args.holdings, meta.tickers) if args.holdings
                      else (None, None))
    if cash is not None and args.cash is not None:
        raise HrlSarpError(f"--cash and a cash row in {args.holdings}: give the cash once")
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    with run:
        doc = decide_run(run, cfg, market, meta, feats, date=args.date, capital=args.capital,
                         holdings=holdings, cash=args.cash if args.cash is not None else cash,
                         seed=args.seed, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.ledger:
        append_entry(args.ledger, decision_record(doc))
    doc.pop("arrays")
    print(json.dumps(to_json_safe(doc), allow_nan=False) if args.json else format_decision(doc))
    if args.ledger and not args.json:
        print(f"ledger: appended to {args.ledger}")
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    """A paper ledger marked to market with realised prices and costs (decide.paper)."""
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.decide import format_paper, paper
    from hrl_sarp_jax.evaluation.ledger import read_ledger
    from hrl_sarp_jax.utils.atomic import to_json_safe

    read_ledger(args.ledger)  # a missing or damaged ledger fails before the market loads
    if not Path(args.data).is_dir():
        raise HrlSarpError(f"--data {args.data}: no such market folder; give the market the "
                           f"ledger's decisions were made on")
    market, meta = load_market(Path(args.data), _load_cfg(args).data)
    doc = paper(args.ledger, market, meta)
    print(json.dumps(to_json_safe(doc), allow_nan=False) if args.json else format_paper(doc))
    return 0


def _add_decide_parsers(sub) -> None:
    p = sub.add_parser("decide", help="orders for the next trading day from a trained run "
                                      "(seed ensemble), optionally appended to a paper ledger")
    _add_config_args(p)
    p.add_argument("--run", required=True, help="run name: the folder under --checkpoints")
    p.add_argument("--data", default=None,
                   help="market folder (default: the embedded market in data/default)")
    p.add_argument("--date", default=None, help="decision day D, YYYY-MM-DD (default: the "
                                                "last day of the data); uses data <= D")
    p.add_argument("--capital", type=float, default=None,
                   help="the book's value (without --holdings: the backtest's book at D scaled "
                        "to it); with --holdings and no cash: capital minus the holdings' value "
                        "is the cash")
    p.add_argument("--holdings", default=None, metavar="FILE.csv",
                   help="current book: CSV ticker,shares (a row 'cash' for the cash)")
    p.add_argument("--cash", type=float, default=None, help="cash beside --holdings")
    p.add_argument("--seed", type=int, default=None,
                   help="one policy seed (default: the ensemble of every seed)")
    p.add_argument("--ledger", default=None, metavar="FILE",
                   help="append the decision to this paper ledger (JSONL, hash-chained)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.set_defaults(func=cmd_decide)

    p = sub.add_parser("paper", help="mark a paper ledger (hrl-sarp decide --ledger) to market")
    _add_config_args(p)
    p.add_argument("--ledger", required=True, metavar="FILE", help="the ledger file")
    p.add_argument("--data", required=True, help="the market folder with realised prices")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_paper)


def cmd_explain(args: argparse.Namespace) -> int:
    """Integrated-gradient attributions of a run's Macro and Micro decisions at one date
    (pipeline.explain_run); text, or one JSON object with --json."""
    from hrl_sarp_jax.checkpointing import data_fingerprint, open_run
    from hrl_sarp_jax.data.loader import load_market
    from hrl_sarp_jax.evaluation.explain import format_explanation
    from hrl_sarp_jax.features.build import build_features
    from hrl_sarp_jax.pipeline import explain_run

    run_dir = Path(args.checkpoints) / args.run
    if not (run_dir / "run.json").is_file():
        raise HrlSarpError(f"no run folder {run_dir}; check --run and --checkpoints, or train "
                           f"one with `hrl-sarp train --phase 1 --run {args.run}`")
    run = open_run(run_dir)
    cfg = _config_for_run(args, run_dir)
    market_dir = _train_market(args, cfg)
    if run.data_fingerprint and data_fingerprint(market_dir) != run.data_fingerprint:
        print(f"note: {market_dir} is not the market run {args.run} was trained on (its data "
              f"fingerprint differs)", file=sys.stderr, flush=True)
    market, meta = load_market(market_dir, cfg.data)
    feats = build_features(market, cfg.features, meta.macro_names, meta.fundamental_names)
    with run:
        doc = explain_run(run, cfg, market, meta, feats, date=args.date, seed=args.seed,
                          top=args.top, steps=args.steps, tolerance=args.tolerance,
                          max_steps=args.max_steps, stocks=args.stocks,
                          from_backtest=args.from_backtest,
                          risk_manager=not args.no_risk_manager,
                          log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(doc, indent=2, allow_nan=False) if args.json else format_explanation(doc))
    return 0


def _add_explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="integrated-gradient attributions of a trained run's "
                                       "Macro and Micro decisions at one date")
    _add_config_args(p)
    p.add_argument("--run", required=True, help="run name: the folder under --checkpoints")
    p.add_argument("--date", required=True,
                   help="decision date YYYY-MM-DD (a non-trading day means the previous "
                        "trading day)")
    p.add_argument("--seed", type=int, default=0, help="policy seed to explain (default 0)")
    p.add_argument("--top", type=int, default=10,
                   help="drivers listed per decision, by |attribution| (default 10)")
    p.add_argument("--stocks", type=int, default=5,
                   help="Micro: explain the weights of this many most weighted stocks "
                        "(default 5)")
    p.add_argument("--steps", type=int, default=64,
                   help="integration steps along the path from the zero baseline (default 64)")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="double the steps until the attributions of every output sum to "
                        "f(x) - f(0) within this fraction (default 0.01; 0 = fixed --steps)")
    p.add_argument("--max-steps", type=int, default=4096,
                   help="cap of that refinement (default 4096)")
    p.add_argument("--from-backtest", action="store_true",
                   help="explain with the book the agent holds at the date (its own backtest "
                        "since the start of the window holding it) instead of a flat, all-cash "
                        "book")
    p.add_argument("--no-risk-manager", action="store_true",
                   help="with --from-backtest: full exposure in that backtest")
    p.add_argument("--json", action="store_true", help="print one machine-readable JSON object")
    p.add_argument("--data", default=None,
                   help="market folder (default: the embedded market in data/default)")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.set_defaults(func=cmd_explain)


# --------------------------------------------------------------------------- config, monitor


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print a preset (or YAML file) fully resolved (base: chain, --set applied) as YAML; with
    no name, list the shipped presets."""
    import yaml

    from hrl_sarp_jax.config import (
        PRESETS_DIR,
        list_presets,
        load_config_sections,
        resolve_config_path,
        to_dict,
    )

    if args.name is None:
        if args.overrides:
            raise HrlSarpError("config show --set needs a preset name or file to apply it to "
                               "(e.g. `hrl-sarp config show quick --set train.seeds=8`)")
        print(f"presets (in {PRESETS_DIR}; `hrl-sarp config show NAME` prints one):")
        for name in list_presets():
            head = []  # the preset's leading comment, up to its first full stop
            for ln in (PRESETS_DIR / f"{name}.yaml").read_text().splitlines():
                if not ln.startswith("#"):
                    break
                head.append(ln.lstrip("#").strip())
            about = " ".join(head).split(". ")[0].split(": ")[0].rstrip(".")
            print(f"  {name:<12} {about}")
        return 0
    path = resolve_config_path(args.name)
    cfg, extra = load_config_sections(path, args.overrides, ("sweep",))
    print(f"# {args.name}: {path}, fully resolved" + (f"; --set {' '.join(args.overrides)}"
                                                       if args.overrides else ""))
    print(yaml.safe_dump({**to_dict(cfg), **extra}, sort_keys=False), end="")
    return 0


def _add_config_parser(sub) -> None:
    p = sub.add_parser("config", help="show the shipped presets and resolved configs")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = csub.add_parser("show", help="print a preset fully resolved as YAML (no name: list them)")
    p.add_argument("name", nargs="?", default=None, help="preset name (quick, smoke, ...) or file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override to apply, repeatable")
    p.set_defaults(func=cmd_config_show)


def cmd_monitor(args: argparse.Namespace) -> int:
    """Serve (or write once) the live monitor page of a run folder (monitor.py)."""
    from hrl_sarp_jax.monitor import make_server, write_page

    run_dir = Path(args.checkpoints) / args.run
    if args.refresh <= 0:
        raise HrlSarpError(f"--refresh {args.refresh}: give a positive number of seconds")
    if args.once != (args.out is not None):
        raise HrlSarpError("monitor: --once and --out FILE.html go together (without them the "
                           "page is served on 127.0.0.1)")
    if args.once:
        out = write_page(run_dir, args.out, refresh_s=args.refresh)
        print(f"monitor page: {out}")
        return 0
    if not 0 <= args.port <= 65535:
        raise HrlSarpError(f"--port {args.port}: give 0..65535 (0 picks a free port)")
    server = make_server(run_dir, port=args.port, refresh_s=args.refresh)
    host, port = server.server_address[:2]
    print(f"monitor of {run_dir}: http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def _add_monitor_parser(sub) -> None:
    p = sub.add_parser("monitor", help="a live page of a run: progress and ETA, learning curves "
                                       "per seed, validation Sharpe, throughput, decisions")
    p.add_argument("--run", required=True, help="run name: the folder under --checkpoints")
    p.add_argument("--checkpoints", default="checkpoints", help="root folder of run folders")
    p.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765; "
                                                          "0: any free port)")
    p.add_argument("--refresh", type=float, default=5.0,
                   help="seconds between the page's updates (default 5)")
    p.add_argument("--once", action="store_true", help="write the page once (with --out)")
    p.add_argument("--out", default=None, metavar="FILE.html", help="with --once: where to write")
    p.set_defaults(func=cmd_monitor)


def _enable_compilation_cache() -> None:
    """Persist XLA compilations across runs (the feature build compiles in ~10 s on 2 cores).

    Every program is kept, however quick to compile: the main job compiles ~320 programs
    under 0.5 s each (12 s in all), which a warm run otherwise compiles again (warm main job
    148 -> 139 s on machine A; the cache grows from 10 to 22 MB; docs/benchmarks.md).
    ``HRL_SARP_JAX_CACHE`` picks the folder; set it to an empty string to disable the cache.
    """
    import os

    folder = os.environ.get("HRL_SARP_JAX_CACHE", str(Path.home() / ".cache" / "hrl_sarp_jax" / "jax_cache"))
    if not folder:
        return
    import jax

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home only costs speed
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _add_distributed_args(parser: argparse.ArgumentParser) -> None:
    """Global multi-host options (before the command: ``hrl-sarp --distributed train ...``)."""
    g = parser.add_argument_group("multi-host (jax.distributed)")
    g.add_argument("--distributed", action="store_true",
                   help="join a multi-process JAX run before the command (also: "
                        "HRL_SARP_DISTRIBUTED=1)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="process 0's address (default: $JAX_COORDINATOR_ADDRESS, or detected "
                        "under Slurm / Open MPI / TPU)")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="number of processes (default: $JAX_NUM_PROCESSES, or detected)")
    g.add_argument("--process-id", type=int, default=None, metavar="I",
                   help="this process's index 0..N-1 (default: $JAX_PROCESS_ID, or detected)")


def _init_distributed(args: argparse.Namespace) -> None:
    """--distributed (or HRL_SARP_DISTRIBUTED=1): jax.distributed.initialize, before any other
    JAX work."""
    from hrl_sarp_jax.training.sharding import (
        distributed_requested,
        maybe_initialize_distributed,
    )

    if not (args.distributed or distributed_requested()):
        if args.coordinator or args.num_processes is not None or args.process_id is not None:
            raise HrlSarpError("--coordinator / --num-processes / --process-id only apply "
                               "with --distributed; add --distributed (before the command)")
        return
    maybe_initialize_distributed(True, coordinator_address=args.coordinator,
                                 num_processes=args.num_processes, process_id=args.process_id)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    light = args.command in ("config", "monitor")  # these two never import JAX
    if not light:
        _enable_compilation_cache()
    try:
        if not light:
            _init_distributed(args)
        return int(args.func(args) or 0)
    except HrlSarpError as exc:
        if args.debug:
            raise
        print(f"hrl-sarp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hrl-sarp: interrupted", file=sys.stderr)
        return 130
