"""envs layer (see DESIGN.md §2)."""
