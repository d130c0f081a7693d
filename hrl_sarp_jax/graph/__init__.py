"""graph layer (see DESIGN.md §2)."""
