"""risk layer (see DESIGN.md §2)."""
