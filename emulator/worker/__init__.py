"""The worker process: one function's execution environments."""
