"""Shared plumbing for the thin command-line tools in tools/."""
import os
import sys

__all__ = ["run_main", "DEBUG_ENV"]

DEBUG_ENV = "MOBILENET_SKIP_DEBUG"  # set to 1 for full tracebacks on user errors


def run_main(main, argv=None):
    """Run ``main(argv)`` and exit with its status; a user error becomes one line on stderr.

    ``ValueError`` (which :class:`~mobilenet_skip.errors.UserError` extends) and
    missing files are what bad input raises, so they print as ``error: ...`` and
    exit 2. Anything else is a bug and keeps its traceback.
    """
    try:
        status = main(argv)
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print("error: %s" % msg, file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
