"""How many OpenMP threads a training run gives MXNet's operators, and why.

On small networks OpenMP's synchronisation costs more than a second core gives, and its
spinning threads starve ImageRecordIter's decoder of the core it needs. Measured on 2
cores through ``tools/train_imagenet.py`` (train img/s of ``metrics.csv``; the rows of
``tools/benchmark.py train --threads``), per device step of batch 32:

=========================================  ===========  ==========  ==========
network, width, input                      Mult-Adds    1 thread    2 threads
=========================================  ===========  ==========  ==========
mobilenet 0.25, 32 px (the study)          27M          2,130-2,240 710-890
full-connect-pre-act 0.5, 32 px (demo)     118M         810-900     640-650
mobilenet 0.5, 64 px                       389M         700-720     630-640
mobilenet 1.0, 64 px                       1,483M       218         277
=========================================  ===========  ==========  ==========

So one thread below :data:`SINGLE_THREAD_BELOW` Mult-Adds per device step (between the
last two rows), every physical core at or above it (at 1.0-224, 18,000M, the second
thread helps). The thread count changes the numerics, so runs compared bit for bit must
share it. It must be fixed before MXNet loads (``OMP_NUM_THREADS``, read once by OpenMP
and by MXNet's engine): ``tools/train_imagenet.py`` restarts itself once when the
choice differs from what its process started with.

This module imports neither the package nor MXNet: ``tools/_bootstrap.py`` loads it
before MXNet starts.
"""
import os

__all__ = ["SINGLE_THREAD_BELOW", "SOURCE_ENV", "Choice", "choose_threads", "started_with",
           "user_threads", "parse_threads"]

SINGLE_THREAD_BELOW = 750e6  # Mult-Adds per device step; see the table above
# Set beside OMP_NUM_THREADS whenever this package, not the user, chose the value: a
# child process (or the restarted trainer) must tell the user's setting from ours.
SOURCE_ENV = "MOBILENET_SKIP_OMP_SOURCE"


class Choice(tuple):
    """``(threads, reason)``: the thread count and the sentence the log prints."""
    __slots__ = ()

    def __new__(cls, threads, reason):
        return tuple.__new__(cls, (int(threads), reason))

    threads = property(lambda self: self[0])
    reason = property(lambda self: self[1])


def parse_threads(value):
    """``"auto"``, or a positive thread count as an int; None for anything else."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    return int(text) if text.isdigit() and int(text) >= 1 else None


def user_threads(environ=None):
    """The thread count the user set (not this package) in ``OMP_NUM_THREADS``, else in
    ``MXNET_OMP_MAX_THREADS`` (MXNet's own cap), or None."""
    env = os.environ if environ is None else environ
    if env.get(SOURCE_ENV):
        return None
    for name in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS"):
        value = parse_threads(env.get(name, ""))
        if isinstance(value, int):
            return value
    return None


def started_with(environ=None):
    """The OpenMP thread count this process's MXNet runs with (``OMP_NUM_THREADS`` as it
    was when MXNet loaded), or None when unset."""
    env = os.environ if environ is None else environ
    value = parse_threads(env.get("OMP_NUM_THREADS", ""))
    return value if isinstance(value, int) else None


def choose_threads(setting, macs_per_step, cores, on_gpu=False, environ=None):
    """The OpenMP thread count of a run and the reason for it.

    Parameters
    ----------
    setting : str or int
        The recipe key ``omp_threads``: a count wins over everything, ``auto`` decides.
    macs_per_step : float
        Mult-Adds of one device's forward pass over its batch (images x per-image count).
    cores : int or None
        Physical cores this process may use (:func:`.cores.physical_cores`).
    on_gpu : bool
        GPU training: the CPU only feeds the devices, so every core stays available.
    environ : mapping, optional
        The environment to read ``OMP_NUM_THREADS`` from (default ``os.environ``).
    """
    cores = max(int(cores or 1), 1)
    if setting != "auto":
        return Choice(setting, "omp_threads: %d in the recipe or on the command line" % setting)
    user = user_threads(environ)
    if user:
        return Choice(user, "%d threads set in the environment (OMP_NUM_THREADS or "
                      "MXNET_OMP_MAX_THREADS)" % user)
    work = "%.0fM Mult-Adds per device step" % (macs_per_step / 1e6)
    if on_gpu:
        return Choice(cores, "auto: GPU training, every physical core feeds the devices")
    if macs_per_step < SINGLE_THREAD_BELOW or cores == 1:
        return Choice(1, "auto: %s, below %.0fM, where a second thread costs more than it "
                      "gives (mobilenet_skip/utils/threads.py)" % (work, SINGLE_THREAD_BELOW / 1e6))
    return Choice(cores, "auto: %s, at least %.0fM: one thread per physical core"
                  % (work, SINGLE_THREAD_BELOW / 1e6))
