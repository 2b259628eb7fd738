"""The ssh launcher's shell lines, built here with every host, folder and variable
quoted: ``dmlc_tracker.ssh`` pastes them into the line bare."""
import os
import shlex
import subprocess
import threading

from ..errors import UserError

__all__ = ["ssh_line", "ssh_submit"]


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

