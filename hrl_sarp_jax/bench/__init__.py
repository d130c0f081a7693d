"""Benchmarks behind ``hrl-sarp bench``: each ``bench_*`` yields machine-readable records.

# HOST ONLY (not jittable)
"""
