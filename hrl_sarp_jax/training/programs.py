"""Ahead-of-time compilation of a phase's jitted programs, timed and fingerprinted.

# HOST ONLY
``compile_ahead(fn, *args)`` lowers and compiles ``fn`` for ``args`` (arrays or
``jax.ShapeDtypeStruct``) and returns the executable, the seconds spent (a persistent-cache
hit shows as well under a second) and a fingerprint of the lowered program. Two phases whose
programs have the same fingerprint run the same executable: the second compile is a cache
hit. Phase summaries record ``compile_s`` (every program of the phase) and ``programs``
(name -> fingerprint).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import jax

RUN_ONCE_OPTIONS: dict[str, Any] = {"xla_backend_optimization_level": 0}
"""XLA options for a program a phase runs once (its ``init``): the backend at -O0 compiles
in about a third of the time (Phase 3's and Phase 4's inits: 28 s of a cold main job's compile
at the default level), and one run of it costs milliseconds either way. Its float results may
differ from the default level's in the last bit (the orthogonal initialiser: 9e-8); the same
options always give the same bits."""


def compile_ahead(fn: Any, *args: Any, compiler_options: dict[str, Any] | None = None
                  ) -> tuple[Any, float, str]:
    """(compiled executable, seconds, sha256[:16] of the lowered StableHLO text); XLA
    ``compiler_options`` if given."""
    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    fingerprint = hashlib.sha256(lowered.as_text().encode("utf-8")).hexdigest()[:16]
    return (lowered.compile(compiler_options=compiler_options), time.perf_counter() - t0,
            fingerprint)


_PROGRAMS: OrderedDict[tuple, tuple[Any, Callable]] = OrderedDict()
PROGRAMS_KEPT = 32
"""How many jitted programs ``jit_once`` keeps (least recently used dropped first)."""


def jit_once(owner: Any, tag: str, axes: Any, build: Callable[[], Callable]) -> Callable:
    """The jitted program ``build()`` of ``owner``'s functions (``tag``: which program;
    ``axes``: a pytree of vmap axes it is built for), made once per process.

    A phase that asks again for a program another phase built (Phase 5 for Phase 3's and
    Phase 4's, every walk-forward fold, a resume) gets the same jit object, whose traces,
    lowerings and executables JAX keeps in memory: ``compile_ahead`` then costs nothing for
    the same argument shapes, where a new jit object of the same function is traced again
    (Phase 5 of the main job: 13 of its 18 compile seconds were Python tracing). ``owner`` is
    kept alive with its program, so no other object takes its ``id`` while the entry lasts."""
    leaves, treedef = jax.tree.flatten(axes)
    key = (id(owner), tag, tuple(leaves), treedef)
    hit = _PROGRAMS.get(key)
    if hit is None:
        hit = (owner, build())
        _PROGRAMS[key] = hit
        while len(_PROGRAMS) > PROGRAMS_KEPT:
            _PROGRAMS.popitem(last=False)
    _PROGRAMS.move_to_end(key)
    return hit[1]


def compiled_flops(compiled: Any) -> float:
    """XLA's flop count of a compiled program (``cost_analysis``; NaN where the backend gives
    none). Loop bodies count once, so count a step compiled alone, not the loop around it."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", float("nan")))
