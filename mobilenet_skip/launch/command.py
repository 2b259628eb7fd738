"""The command line of MXNet's ``launch.py``: where its options end and the user's
command begins, and the command's words quoted for the shell the launcher hands them to."""
import os
import shlex

from ..errors import UserError

__all__ = ["mxnet_launch_script", "split_argv", "launcher_kind", "quote_command"]


def mxnet_launch_script():
    """Path of the ``launch.py`` inside the installed mxnet package."""
    import mxnet
    path = os.path.join(os.path.dirname(mxnet.__file__), "tools", "launch.py")
    if not os.path.isfile(path):
        raise UserError("this mxnet install has no tools/launch.py (%s)" % path)
    return path


# MXNet launch.py's options that take a value; the command starts at the first other word.
_VALUE_OPTS = {"-n", "--num-workers", "-s", "--num-servers", "-H", "--hostfile",
               "--sync-dst-dir", "--launcher", "--env-server", "--env-worker", "--env"}
_FLAG_OPTS = {"--p3", "-h", "--help"}


def split_argv(argv):
    """(launcher options, the user's command) of a ``launch.py`` command line.

    Raises
    ------
    UserError
        For an option MXNet's launcher does not have, or no command.
    """
    argv = list(argv)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[:i], argv[i + 1:]
        if not arg.startswith("-") or arg == "-":
            return argv[:i], argv[i:]
        key = arg.split("=", 1)[0]
        if key in _VALUE_OPTS:
            i += 1 if "=" in arg else 2
        elif arg in _FLAG_OPTS:
            i += 1
        else:
            raise UserError("unknown launcher option %s before the command; the launcher's "
                            "options are %s" % (arg, ", ".join(sorted(_VALUE_OPTS | _FLAG_OPTS))))
    return argv, []


def launcher_kind(options):
    """The ``--launcher`` ``options`` name (``ssh``, MXNet's default, without one)."""
    kind = "ssh"
    for i, arg in enumerate(options):
        if arg == "--launcher" and i + 1 < len(options):
            kind = options[i + 1]
        elif arg.startswith("--launcher="):
            kind = arg.split("=", 1)[1]
    return kind


def quote_command(command, launcher="local"):
    """The command's words quoted so that the launcher's shell gives back exactly them.

    MXNet's launchers join the words with spaces and hand the line to a shell, so a
    space splits a path and a ``;`` runs what follows. Words are :func:`shlex.quote` d;
    the ssh launcher's line is built by :func:`.ssh.ssh_line`, which quotes the whole remote
    part once more for the local shell.
    """
    return [shlex.quote(word) for word in command]

