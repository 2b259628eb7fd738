"""MXNet's own distributed launcher (``mxnet/tools/launch.py``), made to run on Python 3.11,
safe with any argument, and unable to hang when one of its processes dies.

What stops the launcher shipped with mxnet 1.9.1, and what is done about it:

* the wheel ships ``launch.py`` but not the ``dmlc_tracker`` package it imports;
  :func:`mobilenet_skip.launch.tracker.install_tracker` installs it;
* ``dmlc_tracker`` calls ``Thread.isAlive``, removed in Python 3.9. :func:`run`
  restores the alias and then runs MXNet's ``launch.py`` unchanged;
* the launchers join the command's arguments with spaces and run the result through a
  shell, so :func:`run` quotes every argument first (:func:`quote_command`); the ssh
  launcher also pastes the hostfile's hosts and the working directory in bare, so its
  lines are built here instead (:func:`ssh_line`);
* the local launcher waits for the scheduler only: when a worker or server dies, the
  others wait for it forever. :class:`Supervisor` watches every process the launcher
  starts; the first one to fail stops the rest, and the launcher says which one failed.
"""
import os
import runpy
import shlex
import signal
import subprocess
import sys
import threading
import time

from ..errors import UserError
from .tracker import tracker_available

__all__ = ["mxnet_launch_script", "split_argv", "quote_command", "ssh_line", "ssh_submit",
           "Supervisor", "run"]


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


def _launcher_kind(options):
    kind = "ssh"  # MXNet's default
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
    the ssh launcher's line is built by :func:`ssh_line`, which quotes the whole remote
    part once more for the local shell.
    """
    return [shlex.quote(word) for word in command]


def _host_port(line):
    """(host, port) of a hostfile line ``host`` or ``host:port``, as dmlc_tracker reads it,
    refusing one that ssh would take for an option or a port that is not a number."""
    host, _, port = line.strip().partition(":")
    port = port or "22"
    if not host or host.startswith("-") or not port.isdigit():
        raise UserError("hostfile line %r: give a host name or address, optionally "
                        "followed by :port (a number)" % line.strip())
    return host, port


def ssh_line(host, port, env, working_dir, command_line):
    """The local shell line that starts one process of the job on ``host`` over ssh.

    The remote part (exported variables, ``cd working_dir``, the already quoted
    ``command_line``) has every value :func:`shlex.quote` d for the remote shell and is
    quoted once more as one word for the local one, so a host, folder or variable that
    holds a ``'``, ``;`` or space stays what it is (dmlc_tracker pastes them in bare).
    """
    exports = ["export %s=%s;" % (key, shlex.quote(str(value))) for key, value in env]
    remote = " ".join(exports + ["cd", shlex.quote(working_dir), "&&", command_line])
    return " ".join(["ssh", "-o", "StrictHostKeyChecking=no", "-p", shlex.quote(port),
                     shlex.quote(host), shlex.quote(remote)])


# dmlc_tracker.ssh's get_env passes these on from the launcher's environment
_SSH_PASSED = ("OMP_NUM_THREADS", "KMP_AFFINITY", "LD_LIBRARY_PATH", "AWS_ACCESS_KEY_ID",
               "AWS_SECRET_ACCESS_KEY", "DMLC_INTERFACE")


def ssh_submit(args, runner=None):
    """``dmlc_tracker.ssh.submit`` with its shell lines built by :func:`ssh_line`: the
    same hosts (round-robin, servers first), variables and working directory.

    ``runner`` runs a line (``subprocess.check_call(line, shell=True)`` by default;
    the :class:`Supervisor` when supervised).
    """
    import dmlc_tracker.tracker
    if args.host_file is None:
        raise UserError("--launcher ssh needs -H HOSTFILE (one host or host:port a line)")
    with open(args.host_file) as f:
        hosts = [_host_port(line) for line in f if line.strip()]
    if not hosts:
        raise UserError("hostfile %s names no host" % args.host_file)
    run_line = runner or (lambda line: subprocess.check_call(line, shell=True))
    working_dir = os.getcwd() + "/"
    if args.sync_dst_dir not in (None, "None"):
        for host, port in hosts:  # as dmlc's sync_dir, one host after the other
            run_line("rsync -az --rsh=%s %s %s" % (
                shlex.quote("ssh -o StrictHostKeyChecking=no -p " + port),
                shlex.quote(working_dir), shlex.quote(host + ":" + args.sync_dst_dir)))
        working_dir = args.sync_dst_dir
    command_line = " ".join(args.command)

    def submit(nworker, nserver, pass_envs):
        for i in range(nworker + nserver):
            pass_envs["DMLC_ROLE"] = "server" if i < nserver else "worker"
            host, port = hosts[i % len(hosts)]
            pass_envs["DMLC_NODE_HOST"] = host
            env = [(k, os.environ[k]) for k in _SSH_PASSED if k in os.environ]
            line = ssh_line(host, port, env + sorted(pass_envs.items()), working_dir,
                            command_line)
            threading.Thread(target=run_line, args=(line,), daemon=True).start()

    dmlc_tracker.tracker.submit(args.num_workers, args.num_servers, fun_submit=submit,
                                pscmd=command_line, hostIP=args.host_ip)


def _signal_name(returncode):
    if returncode < 0 or returncode > 128:
        num = -returncode if returncode < 0 else returncode - 128
        try:
            return "was killed by %s" % signal.Signals(num).name
        except ValueError:
            pass
    return "exited with status %d" % returncode


class Supervisor(object):
    """Stands in for ``subprocess`` inside ``dmlc_tracker``: every process the launcher
    starts is recorded, and the first to end unsuccessfully stops all the others
    (SIGTERM, then SIGKILL after ``grace`` seconds) and ends the launcher with status 1.

    MXNet's local launcher waits for the scheduler alone, and a scheduler, server or
    worker whose peer died waits forever, so without this one dead process hangs the job.
    """

    def __init__(self, grace=10.0, stream=None):
        self.grace = grace
        self.stream = stream or sys.stderr
        self._procs = []
        self._lock = threading.Lock()
        self._failed = False
        self._count = 0
        self._stopped = threading.Event()  # set once _fail has stopped the job
        self._expected = None   # processes the launcher starts, once watch_submit knows
        self._submitted = None  # (workers, servers) dmlc's tracker was asked to start
        self._started = False   # whether it went on to start them

    def __getattr__(self, name):  # PIPE, STDOUT, Popen, ... as the real module
        return getattr(subprocess, name)

    def _name(self, env, cmd):
        env = env or {}
        role = env.get("DMLC_ROLE")
        if role == "scheduler":
            return "the scheduler"
        if role == "server" and "DMLC_TASK_ID" in env:
            return "server #%d" % (int(env["DMLC_TASK_ID"]) - int(env.get("DMLC_NUM_WORKER", 0)))
        if role == "worker" and "DMLC_TASK_ID" in env:
            # launch order (DMLC_TASK_ID): the kvstore rank the worker logs may differ
            return "worker #%s" % env["DMLC_TASK_ID"]
        text = cmd if isinstance(cmd, str) else " ".join(cmd)
        return "'%s'" % (text if len(text) < 80 else text[:77] + "...")

    def call(self, cmd, **kwargs):
        with self._lock:
            if self._failed:  # the job is being stopped and _fail reports it, not dmlc
                return 0
            proc = subprocess.Popen(cmd, **kwargs)
            name = self._name(kwargs.get("env"), cmd)
            self._procs.append((name, proc))
        returncode = proc.wait()
        if returncode != 0:
            if self._failed:  # stopped by _fail: dmlc_tracker need not report it again
                return 0
            self._fail(name, proc, returncode)
        return returncode

    def watch_submit(self, tracker):
        """Count what ``tracker.submit`` (dmlc_tracker's) starts, so that :meth:`finish`
        waits for every process and not only for those already running.

        The scheduler starts first; the tracker starts the workers and servers on other
        threads, and only if the scheduler is still alive by then. A launcher that
        returns before those threads have started their processes would otherwise end
        with status 0 and never see a worker fail.
        """
        real = tracker.submit

        def submit(nworker, nserver, fun_submit, *args, **kwargs):
            with self._lock:  # what ran before (an ssh launcher's rsync) has finished
                self._expected = len(self._procs) + (1 if nserver else 0)
                self._submitted = (nworker, nserver)

            def start(nw, ns, envs):
                with self._lock:
                    self._expected += nw + ns
                    self._started = True
                return fun_submit(nw, ns, envs)
            return real(nworker, nserver, start, *args, **kwargs)
        tracker.submit = submit

    def check_call(self, cmd, **kwargs):
        returncode = self.call(cmd, **kwargs)
        if returncode:
            raise subprocess.CalledProcessError(returncode, cmd)
        return 0

    @property
    def failed(self):
        return self._failed

    def finish(self, linger=30.0):
        """After MXNet's launcher returned (it waits for the scheduler alone): give the
        workers and servers ``linger`` s to end too, then stop any left, saying so.

        A scheduler ends once every node has said goodbye, so a process still running
        after it is stuck, e.g. registered with another job's scheduler that took the
        port this one probed (MXNet's tracker probes a free port, then lets it go).
        """
        if self._failed:  # _fail is stopping the job and ends the launcher itself
            self._stopped.wait(self.grace + 10)
            os._exit(1)
        deadline = time.monotonic() + linger
        if self._submitted and not self._started:
            self._never_started()
        while (self._expected is not None and len(self._procs) < self._expected
               and time.monotonic() < deadline and not self._failed):
            time.sleep(0.05)  # the tracker's threads are still starting their processes
        with self._lock:
            procs = list(self._procs)
            missing = (self._expected or 0) - len(procs)
        if missing > 0 and not self._failed:
            self._stop_all(procs, "%d of the job's %d processes never started within %d s"
                           % (missing, self._expected, linger))
        for _, p in procs:
            try:
                p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
        for name, p in procs:
            if p.poll():  # failed, and the thread watching it may not have reported it yet
                self._fail(name, p, p.returncode)  # reports, stops the rest, exits 1
                self._stopped.wait(self.grace + 10)  # another thread got there first
                os._exit(1)
        left = [(n, p) for n, p in procs if p.poll() is None]
        if not left:
            return
        self._stop_all(procs, "the scheduler has ended but %s (pid %s) %s still running "
                       "%d s later; stopping %s" % (
                           ", ".join(n for n, _ in left),
                           ", ".join(str(p.pid) for _, p in left),
                           "is" if len(left) == 1 else "are", linger,
                           "it" if len(left) == 1 else "them"))

    def _never_started(self):
        """The tracker returned without starting the workers and servers: it does that
        when the scheduler has already ended, so nothing trained."""
        nworker, nserver = self._submitted
        with self._lock:
            procs = list(self._procs)
        ended = [p for n, p in procs if n == "the scheduler"]
        how = (" (%s)" % _signal_name(ended[0].returncode)
               if ended and ended[0].poll() is not None else "")
        self._stop_all(procs, "the scheduler ended%s before the launcher started "
                       "the %d worker(s) and %d server(s), so nothing ran; its output, if "
                       "any, is above" % (how, nworker, nserver))

    def _stop_all(self, procs, message):
        """Say ``message`` as the job's one error line, kill what still runs, exit 1."""
        with self._lock:
            self._failed = True
        self.stream.write("error: %s\n" % message)
        self.stream.flush()
        for _, p in procs:
            if p.poll() is None:
                _send(p, signal.SIGKILL)
                p.wait()
        sys.stdout.flush()
        os._exit(1)

    def _fail(self, name, proc, returncode):
        with self._lock:
            if self._failed:
                return
            self._failed = True
            others = [(n, p) for n, p in self._procs if p is not proc and p.poll() is None]
        self.stream.write("error: %s (pid %d) %s; stopping the other %d process(es) of this "
                          "job\n" % (name, proc.pid, _signal_name(returncode), len(others)))
        self.stream.flush()
        for _, p in others:
            _send(p, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for _, p in others:
            try:
                p.wait(max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                _send(p, signal.SIGKILL)
        for _, p in others:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        sys.stdout.flush()
        self._stopped.set()
        # the launcher's main thread sits in a join() that nothing else can end
        os._exit(1)


def _send(proc, sig):
    try:
        proc.send_signal(sig)
    except OSError:
        pass


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
    sys.argv = [script] + options + ["--"] + quote_command(command, _launcher_kind(options))
    runpy.run_path(script, run_name="__main__")
    if supervise:
        supervisor.finish()
