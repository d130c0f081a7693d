"""Evaluation-only probe: the Macro's sector weights read from its own regime probabilities.

    TIED=soft|hard python scripts/tied_allocation.py evaluate --run R --markets 40 \
        --market-seed 1000 --no-ladder --tag T [--tau 400]
    hrl-sarp compare R:ev0 R:T

Phase 1 trains the allocation head towards softmax(τ · T[label]) (``alloc_target:
regime_table``, T the run's [3, S] table of mean next-week sector returns per regime, in
``phase1/summary.json``) and the regime head towards the label. Here each Macro decision
executes, instead of the allocation head's weights, ``soft``: Σ_r p_r softmax(τ · T_r) with p
the regime head's probabilities (the head's own target in expectation, read from the better
trained head), or ``hard``: softmax(τ · T_argmax p). τ: ``--tau`` (default the run's
``train.macro_pretrain.alloc_temperature``). Everything else is ``hrl-sarp`` as installed (the
goal step, the projection, the Micro); the script replaces
``HierarchicalStrategy.macro_action_at`` (the agent, its ensemble and the pre-trained
hierarchy), so every classical baseline is unchanged. An evaluation-only probe of a run trained
with the sector head; the library option that trains and executes the same allocation is
``networks.macro_allocation: regime_table`` (docs/status.md, "The allocation read from the
regime call" and "The allocation tied to the regime head").
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import hrl_sarp_jax.evaluation.agent as agent_mod
from hrl_sarp_jax.config import load_run_config
from hrl_sarp_jax.networks.common import masked_softmax

MODES = ("soft", "hard")


def tied_weights(probs: jax.Array, table: jax.Array, valid: jax.Array, tau: float,
                 mode: str) -> jax.Array:
    """Sector weights [S] from regime probabilities [3] and a regime table [3, S] over the
    valid sectors [S] (``mode`` soft: the probability-weighted mix of the rows' softmaxes;
    hard: the softmax of the most probable regime's row)."""
    rows = jax.vmap(lambda row: masked_softmax(tau * row, valid))(table)
    return probs @ rows if mode == "soft" else rows[jnp.argmax(probs)]


def tied_action(mode: str, table: np.ndarray, tau: float):
    """``HierarchicalStrategy.macro_action_at`` with its sector weights replaced by
    ``tied_weights`` of its regime probabilities."""
    library = agent_mod.HierarchicalStrategy.macro_action_at
    t_ = jnp.asarray(table, jnp.float32)

    def macro_action_at(self, macro_params, port, t, params):
        s = params.num_sectors
        probs = library(self, macro_params, port, t, params)[s:]
        return jnp.concatenate([tied_weights(probs, t_[:, :s], params.sector_valid, tau, mode),
                                probs])

    return macro_action_at


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


if __name__ == "__main__":
    mode, argv = os.environ.get("TIED", ""), sys.argv[1:]
    if mode not in MODES:
        sys.exit(f"TIED={mode!r}: set it to one of {', '.join(MODES)}")
    tau = _option(argv, "--tau")
    if tau is not None:
        i = argv.index("--tau")
        argv = argv[:i] + argv[i + 2:]
    run = Path(_option(argv, "--checkpoints") or "checkpoints") / (_option(argv, "--run") or "main")
    table = np.asarray(json.loads((run / "phase1" / "summary.json").read_text())["regime_table"])
    if tau is None:
        tau = load_run_config(run / "config.yaml").train.macro_pretrain.alloc_temperature
    agent_mod.HierarchicalStrategy.macro_action_at = tied_action(mode, table, float(tau))
    from hrl_sarp_jax.cli import main

    sys.exit(main(argv))
