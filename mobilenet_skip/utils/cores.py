"""How many physical cores and how much memory this process may use (Linux), from the
standard library alone.

``tools/_bootstrap.py`` loads this file by path before MXNet is imported (to size its
OpenMP pool), so it must not import the package or MXNet.
"""
import os

__all__ = ["physical_cores", "memory_limit"]


def _cgroup_cpus():
    """CPUs a container's CFS quota allows (cgroup v2 or v1), or None without a quota."""
    for path, split in (("/sys/fs/cgroup/cpu.max", lambda t: t.split()[:2]),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", None)):
        try:
            with open(path) as f:
                text = f.read()
            if split is None:
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                    quota, period = text.strip(), f.read().strip()
            else:
                quota, period = split(text)
            if quota in ("max", "-1"):
                return None
            return max(1, -(-int(quota) // int(period)))
        except (OSError, ValueError):
            continue
    return None


def physical_cores():
    """Physical cores this process may run on (Linux), or None where that is unknown.

    Hyper-threads of one core count once; a container's CPU quota caps the count.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    cores = set()
    for cpu in cpus:
        topology = "/sys/devices/system/cpu/cpu%d/topology/" % cpu
        try:
            with open(topology + "physical_package_id") as f:
                package = f.read().strip()
            with open(topology + "core_id") as f:
                cores.add((package, f.read().strip()))
        except OSError:
            return None
    quota = _cgroup_cpus()
    return min(len(cores), quota) if quota else len(cores)


def memory_limit():
    """Bytes of memory this process may use at most (Linux): the machine's ``MemTotal``,
    capped by a container's cgroup limit; None where that is unknown."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            limits += [int(line.split()[1]) * 1024 for line in f
                       if line.startswith("MemTotal:")]
    except (OSError, ValueError, IndexError):
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits) if limits else None
