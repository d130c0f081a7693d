"""finance layer (see DESIGN.md §2)."""
