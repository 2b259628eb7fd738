"""The one exception type for user mistakes: the CLIs print it as a single line."""

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input from the user (a path, a name, a flag); the message says how to fix it."""
