"""networks layer (see DESIGN.md §2)."""
