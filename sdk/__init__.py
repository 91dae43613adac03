"""The Python SDK and the `cin upload` family of commands (not yet built)."""
