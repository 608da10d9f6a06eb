"""Example action handlers and goal types (what a goalrt user writes)."""
