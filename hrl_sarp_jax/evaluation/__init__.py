"""evaluation layer (see DESIGN.md §2)."""
