"""utils layer (see DESIGN.md §2)."""
