"""Shared plumbing for the thin command-line tools in tools/."""
import os
import sys

__all__ = ["run_main", "DEBUG_ENV", "add_source_arguments", "source_from_args"]

DEBUG_ENV = "MOBILENET_SKIP_DEBUG"  # set to 1 for full tracebacks on user errors


def run_main(main, argv=None):
    """Run ``main(argv)`` and exit with its status; a user error becomes one line on stderr.

    ``ValueError`` (which :class:`~mobilenet_skip.errors.UserError` extends) and
    missing files are what bad input raises, so they print as ``error: ...`` and
    exit 2; so does a full disk (ENOSPC, or MXNet's ``FileStream.Write incomplete``).
    Anything else is a bug and keeps its traceback. A reader that closed the pipe
    (``| head``) ends the tool quietly.
    """
    from .utils.fs import disk_full_error, is_disk_full
    try:
        try:
            status = main(argv)
        except Exception as err:
            # A full disk met outside the writers that handle it (an MXNet C++ writer, a
            # log file): still one line, not a traceback.
            if is_disk_full(err) and not isinstance(err, ValueError):
                raise disk_full_error(getattr(err, "filename", None) or os.getcwd() + "/.")
            raise
    except BrokenPipeError:
        _quiet_closed_pipe()
    except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as err:
        if os.environ.get(DEBUG_ENV):
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print("error: %s" % msg, file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)


def _quiet_closed_pipe():
    """Exit without a traceback when stdout's reader has gone: what is still buffered can
    never be written, so stdout goes to /dev/null (the interpreter's last flush would
    fail again), and the status is a shell's for a process SIGPIPE ended (128 + 13), as
    ``cat`` would end, which ``set -o pipefail`` scripts expect."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(141)


def add_source_arguments(parser):
    """The flags naming the weights a deployment tool reads (see
    :func:`~mobilenet_skip.deploy.source.load_source`)."""
    from .models import list_models
    g = parser.add_argument_group(
        "weights (one of: --prefix, --save-dir with --epoch, --params)")
    g.add_argument("--prefix", help="an export: PREFIX-symbol.json and PREFIX-0000.params")
    g.add_argument("--save-dir", help="a training run's folder (its config.yaml says the model)")
    g.add_argument("--epoch", type=int, help="which epoch's checkpoint of --save-dir")
    g.add_argument("--params", help="a training checkpoint file (<model>-NNNN.params)")
    g.add_argument("--model", choices=list_models(),
                   help="network of the checkpoint (default: from the run's config.yaml)")
    g.add_argument("--multiplier", type=float,
                   help="its width multiplier (default: config.yaml's, else 1.0)")
    g.add_argument("--classes", type=int,
                   help="its number of classes (default: config.yaml's, else read from it)")
    g.add_argument("--input-size", type=int,
                   help="network input side (default: the export's or run's own, else 224)")
    return g


def source_from_args(args):
    """``deploy.source.load_source`` for the flags of :func:`add_source_arguments`."""
    from .deploy.source import load_source
    return load_source(prefix=args.prefix, save_dir=args.save_dir, epoch=args.epoch,
                       params=args.params, model=args.model, multiplier=args.multiplier,
                       classes=args.classes, input_size=args.input_size,
                       synsets=getattr(args, "synsets", None))
