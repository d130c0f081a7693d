"""training layer (see DESIGN.md §2)."""
