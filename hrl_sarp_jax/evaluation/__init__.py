"""evaluation layer (see DESIGN.md §2): backtest, baselines, metrics, stats, stress, report.

``backtest`` and ``baselines`` are jittable; ``metrics``, ``stats``, ``stress``, ``evaluate`` and
``report`` are host side (``report`` is the only module that imports matplotlib).
"""
