"""data layer (see DESIGN.md §2)."""
