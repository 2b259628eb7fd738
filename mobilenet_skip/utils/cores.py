"""How many physical cores and how much memory this process may use and can still get
(Linux), from the standard library alone: the one probe of each.

``tools/_bootstrap.py`` loads this file by path before MXNet is imported (to size its
OpenMP pool), so it must not import the package or MXNet.
"""
import os

__all__ = ["physical_cores", "memory_limit", "memory_available"]


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


def _meminfo(field):
    """Bytes of one ``/proc/meminfo`` field (``MemTotal``, ``MemAvailable``), or None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_folders():
    """``(folder, limit file, usage file)`` of each memory cgroup this process may be
    limited by: its own (v2, then v1, as ``/proc/self/cgroup`` names them), then the
    mount's root, which is the container's own where ``/proc/self/cgroup`` shows the
    host's path."""
    found = []
    try:
        with open("/proc/self/cgroup") as f:
            lines = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        lines = []
    for _, controllers, path in lines:
        if controllers == "":
            found.append(("/sys/fs/cgroup" + path, "memory.max", "memory.current"))
        elif "memory" in controllers.split(","):
            found.append(("/sys/fs/cgroup/memory" + path, "memory.limit_in_bytes",
                          "memory.usage_in_bytes"))
    return found + [("/sys/fs/cgroup", "memory.max", "memory.current"),
                    ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes")]


def _cgroup_memory():
    """``(limit, usage)`` in bytes of the first memory cgroup that sets a limit, or None."""
    for folder, limit_file, usage_file in _cgroup_folders():
        try:
            limit = _read_text(os.path.join(folder, limit_file))
            if limit == "max" or int(limit) >= 1 << 60:  # v1 says "no limit" as ~2**63
                continue
            return int(limit), int(_read_text(os.path.join(folder, usage_file)))
        except (OSError, ValueError):
            continue
    return None


def _read_text(path):
    with open(path) as f:
        return f.read().strip()


def memory_limit():
    """Bytes of memory this process may use at most (Linux): the machine's ``MemTotal``,
    capped by a container's cgroup limit; None where that is unknown."""
    cgroup = _cgroup_memory()
    found = [n for n in (_meminfo("MemTotal"), cgroup and cgroup[0]) if n is not None]
    return min(found) if found else None


def memory_available():
    """Bytes a new allocation can get (Linux): ``MemAvailable``, or less under a cgroup
    memory limit (the OOM killer enforces that one); None if neither can be read."""
    cgroup = _cgroup_memory()
    found = [n for n in (_meminfo("MemAvailable"), cgroup and max(cgroup[0] - cgroup[1], 0))
             if n is not None]
    return min(found) if found else None
