"""Phase 3's validation cost, train.validation episodes vs continuous, side by side.

Usage: python scripts/val_bench.py MARKET_DIR (a market folder, e.g. from `hrl-sarp data
generate`). Prints JSON: per kind and pass, the evaluation program's min / median seconds over
5 calls (3 seeds, the quick preset, a Micro actor frozen inside), its walks and their length.
"""
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from hrl_sarp_jax.config import load_config
from hrl_sarp_jax.features.build import build_features
from hrl_sarp_jax.pipeline import load_valid_market
from hrl_sarp_jax.training import rl_macro as rm
from hrl_sarp_jax.training.ppo_loop import compile_programs
from hrl_sarp_jax.training.rl_macro import example_micro_actor

base = load_config("quick")
market, meta = load_valid_market(Path(sys.argv[1]), base)
feats = build_features(market, base.features, meta.macro_names, meta.fundamental_names)
out = {"machine": platform.processor() or platform.machine(), "jax": jax.__version__}
for rep in range(2):
    for kind in ("episodes", "continuous"):
        cfg = dataclasses.replace(base, train=dataclasses.replace(base.train, validation=kind))
        setup = rm.setup_phase3(cfg, market, meta, feats,
                                micro_params=example_micro_actor(cfg, market))
        comp = compile_programs(setup, 3)
        starts = () if setup.windows is None else (rm.cur.stage_starts(0, setup.windows),)
        state = comp.init(rm.phase3_keys(0, 3), rm.stack_hparams(setup.hp, 3),
                          comp.train_params, *starts)
        args = (state.train.params, comp.val_params, setup.eval_days, jax.random.key(0))
        jax.block_until_ready(comp.evaluate(*args))
        ts = []
        for _ in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(comp.evaluate(*args))
            ts.append(time.perf_counter() - t0)
        out[f"phase3_{kind}_r{rep}"] = {
            "eval_s_min": min(ts), "eval_s_median": float(np.median(ts)),
            "compile_s": comp.compile_s, "episodes": int(np.size(setup.eval_days)),
            "weeks_per_walk": int(comp.val_params.max_steps_in_episode)}
print(json.dumps(out, indent=1))
