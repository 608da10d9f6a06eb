"""The worker: the loop that claims goals, plans them and dispatches their steps."""
