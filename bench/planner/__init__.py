"""The planner benchmark and the classic domains it and the planner tests plan on."""
