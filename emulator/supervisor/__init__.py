"""Gateway-side management of the worker processes, one per function."""
