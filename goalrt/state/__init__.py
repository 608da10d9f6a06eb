"""The state: paths and values, snapshots, replay and forks."""
