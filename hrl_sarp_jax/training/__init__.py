"""training layer (see DESIGN.md §2): the curriculum phases; ``phases.PHASES`` is the registry.

Modules: ``datasets`` (supervised samples, date splits), ``pretrain`` (Phase 1/2 losses and
the compiled epoch engine, pure), ``runner`` (host loop: checkpoints, logs, summaries),
``phases`` (registry used by the CLI).
"""
