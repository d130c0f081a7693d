"""features layer (see DESIGN.md §2)."""
