"""The :class:`Supervisor`: every process MXNet's launcher starts is watched, and the
first to fail stops the others, so that one dead process cannot hang the job."""
import os
import signal
import subprocess
import sys
import threading
import time

__all__ = ["Supervisor"]


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

