"""The event log: event types, the sync and async clients, and the LISTEN/NOTIFY bus."""
