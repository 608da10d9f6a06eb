"""Agent memory: the history indexed for search by words and meaning (docs/memory.md)."""
