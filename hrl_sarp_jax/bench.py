"""Benchmarks behind ``hrl-sarp bench``: each yields machine-readable records.

# HOST ONLY (not jittable)
"""

from __future__ import annotations
