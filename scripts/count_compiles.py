"""Count the XLA programs an hrl-sarp command compiles, by the code that asked for them.

    python scripts/count_compiles.py run            # any hrl-sarp command line
    COUNT_COMPILES_OUT=compiles.json python scripts/count_compiles.py train --phase 1

Hooks JAX's "Compiling ..." log messages (``jax_log_compiles``) and attributes each to the
innermost ``hrl_sarp_jax`` frame on the Python stack ('?' when none: a jitted call made
outside the package). Writes {total, by_site, by_name_site} as JSON (default
``compiles.json``) and prints the total. Use an empty ``HRL_SARP_JAX_CACHE`` to count a cold
job: programs loaded from the persistent cache are logged too.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator

LOGGERS = ("jax._src.interpreters.pxla", "jax._src.dispatch")


@contextlib.contextmanager
def counting() -> Iterator[collections.Counter]:
    """Counter of (program name, innermost hrl_sarp_jax frame) for every compile inside."""
    import jax

    counts: collections.Counter = collections.Counter()

    class Hook(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            msg = rec.getMessage()
            if not msg.startswith("Compiling "):
                return
            site = "?"
            for fr in reversed(traceback.extract_stack()[:-1]):
                if "/hrl_sarp_jax/" in fr.filename:
                    site = f"{fr.filename.split('/hrl_sarp_jax/')[-1]}:{fr.lineno} {fr.name}"
                    break
            counts[(msg.split()[1], site)] += 1

    hook, saved = Hook(), jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    loggers = [logging.getLogger(name) for name in LOGGERS]
    state = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(hook)
        lg.setLevel(logging.WARNING)
        lg.propagate = False
    try:
        yield counts
    finally:
        for lg, (level, propagate) in zip(loggers, state, strict=True):
            lg.removeHandler(hook)
            lg.setLevel(level)
            lg.propagate = propagate
        jax.config.update("jax_log_compiles", saved)


def summary(counts: collections.Counter) -> dict:
    by_site: collections.Counter = collections.Counter()
    for (_, site), c in counts.items():
        by_site[site] += c
    return {"total": sum(counts.values()), "by_site": by_site.most_common(),
            "by_name_site": [[n, s, c] for (n, s), c in counts.most_common()]}


def main(argv: list[str]) -> int:
    from hrl_sarp_jax.cli import main as cli_main

    out = os.environ.get("COUNT_COMPILES_OUT", "compiles.json")
    start = time.time()
    rc = 1
    with counting() as counts:
        try:
            rc = cli_main(argv)
        finally:
            with open(out, "w") as f:
                json.dump(summary(counts), f, indent=1)
            print(f"count_compiles: {sum(counts.values())} XLA programs in "
                  f"{time.time() - start:.0f} s -> {out}", file=sys.stderr)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
