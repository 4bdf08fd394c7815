"""State: prior resources, outputs, apply history, run history and the lock."""
