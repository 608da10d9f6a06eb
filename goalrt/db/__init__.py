"""Connecting to PostgreSQL: configuration, the embedded server, the SQL files and migrations."""
