"""The one exception type for user mistakes: the CLIs print it as a single line; and the
one line worth quoting from MXNet's multi-line C++ errors."""

__all__ = ["UserError", "mxnet_message"]


class UserError(ValueError):
    """Bad input from the user (a path, a name, a flag); the message says how to fix it."""


def mxnet_message(err):
    """The informative line of an MXNetError (the C++ check), shortened."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    checks = [line for line in lines if "Check failed" in line or "Error" in line]
    return (checks[-1] if checks else lines[0] if lines else type(err).__name__)[:200]
