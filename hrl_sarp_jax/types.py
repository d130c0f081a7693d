"""Shared type aliases and the shape vocabulary used in docstrings.

Shape letters: T time (trading days), W weeks, E parallel envs, B batch, S sectors,
N stocks (padded to N_max), F features, M macro series, K fundamental fields or critics,
G goal size (S + 3), H hidden width.
"""

from __future__ import annotations

from typing import Any

import jax

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any
Params = Any

NUM_REGIMES = 3
BULL, BEAR, SIDEWAYS = 0, 1, 2
