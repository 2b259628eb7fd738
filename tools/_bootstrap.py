"""Imported first by every tool: finds the package from a plain checkout, sizes MXNet's
OpenMP pool to the physical cores, and turns a missing MXNet into one line naming the pip
command instead of a traceback."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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


# MXNet sizes its OpenMP pool to half the logical CPUs on x86, assuming two hyper-threads
# per core; where cores have one (most cloud VMs) that leaves half the machine idle, and
# training runs at half speed. One thread per physical core is right either way. It must be
# set before MXNet loads; an OMP_NUM_THREADS or MXNET_OMP_MAX_THREADS of your own wins.
if not {"OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"} & set(os.environ):
    _cores = physical_cores()
    if _cores:
        os.environ["OMP_NUM_THREADS"] = str(_cores)

try:
    import mobilenet_skip  # noqa: F401,E402
except ImportError as err:
    sys.exit("error: %s" % err)
