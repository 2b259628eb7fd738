"""MXNet's ``launch.py`` run with the user's command quoted, ``Thread.isAlive`` restored
for ``dmlc_tracker``, the ssh lines built by :mod:`.ssh`, and every process under a
:class:`.supervisor.Supervisor` (the package docstring says why each is needed)."""
import os
import runpy
import sys
import threading

from ..errors import UserError
from .command import launcher_kind, mxnet_launch_script, quote_command, split_argv
from .ssh import ssh_submit
from .supervisor import Supervisor
from .tracker import tracker_available

__all__ = ["run"]


def _first_port_from_env():
    """``DMLC_PS_ROOT_PORT`` set for the launcher is the first scheduler port it tries.

    MXNet's tracker always probes 9091 upwards and hands the first free port to the
    scheduler, which binds it a moment later; two jobs started together on one machine
    can then pick the same port, and one fails ("bind failed") or, worse, its workers
    join the other's scheduler. A port of your own keeps such jobs apart.
    """
    text = os.environ.get("DMLC_PS_ROOT_PORT")
    if not text:
        return
    try:
        port = int(text)
        ok = 1024 <= port <= 64535
    except ValueError:
        ok = False
    if not ok:
        raise UserError("DMLC_PS_ROOT_PORT=%r: the scheduler's first port must be a number "
                        "from 1024 to 64535" % text)
    import dmlc_tracker.tracker
    init = dmlc_tracker.tracker.PSTracker.__init__
    init.__defaults__ = (port, port + 1000) + tuple(init.__defaults__[2:])


def run(argv, supervise=True):
    """Run MXNet's ``launch.py`` with ``argv``: the user's command quoted, Python 3.9+'s
    ``Thread.isAlive`` restored, and its processes under a :class:`Supervisor`."""
    if not hasattr(threading.Thread, "isAlive"):
        threading.Thread.isAlive = threading.Thread.is_alive
    options, command = split_argv(argv)
    if not tracker_available():
        raise UserError("dmlc_tracker is not installed; run `make venv` or "
                        "`python tools/launch.py --install-tracker`")
    if not command and not ({"-h", "--help"} & set(options)):
        raise UserError("no command to launch: put it after the launcher's options, e.g. "
                        "`-n 2 -s 1 --launcher local python tools/train_imagenet.py ...`")
    _first_port_from_env()
    if supervise:
        import dmlc_tracker.local
        import dmlc_tracker.ssh
        import dmlc_tracker.tracker
        supervisor = Supervisor()
        for module in (dmlc_tracker.local, dmlc_tracker.ssh, dmlc_tracker.tracker):
            module.subprocess = supervisor
        supervisor.watch_submit(dmlc_tracker.tracker)
    import dmlc_tracker.ssh
    dmlc_tracker.ssh.submit = lambda args: ssh_submit(
        args, (lambda line: supervisor.check_call(line, shell=True)) if supervise else None)
    script = mxnet_launch_script()
    # "--" ends MXNet's options: a command word such as -n is then the command's own
    sys.argv = [script] + options + ["--"] + quote_command(command, launcher_kind(options))
    runpy.run_path(script, run_name="__main__")
    if supervise:
        supervisor.finish()
