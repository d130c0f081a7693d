"""agents layer (see DESIGN.md §2)."""
