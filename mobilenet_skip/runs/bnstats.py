"""BatchNorm running statistics that are the same on every device and in the checkpoint.

With several devices each keeps its own copy of every parameter. The trained ones are
identical after each update, but BatchNorm's ``running_mean``/``running_var`` are
updated from each device's own share of the batch, so they drift apart. Gluon's
``save_parameters`` stores their mean (``Parameter._reduce``: ``add_n`` of the copies
on the CPU, divided by their number), so a validation run on the devices' own copies
measures a network that no checkpoint holds. :func:`sync_running_stats` gives every
copy the value that is saved.

The running statistics are exponential averages, linear in the batch statistics, so
the mean of the copies evolves the same whether or not they were synchronised: syncing
changes nothing that is saved later (up to float rounding).
"""
import os

import mxnet as mx

__all__ = ["sync_running_stats", "running_stats", "device_copies", "restore_device_copies"]

# A fixed point of the reduction is reached in 1-5 rounds for 2-16 devices (measured on
# float32; with 2 or 4 devices the mean itself is one).
_MAX_ROUNDS = 32


def running_stats(net):
    """The parameters no optimizer updates (``grad_req == "null"``), initialised ones only."""
    return [p for p in net.collect_params().values()
            if p.grad_req == "null" and p._data is not None]


def _equal(a, b):
    return bool((a == b).min().asscalar())


def sync_running_stats(net):
    """Give every device's copy of ``net``'s running statistics the value
    ``save_parameters`` writes for them.

    The mean of n equal copies is not always the copy itself in floating point (with 3
    devices it differs in the last bit for about 15% of entries), so the copies are set
    to the saved value until saving them gives that value back. Only the small
    non-trained arrays move; on one device this does nothing.

    Returns
    -------
    int
        How many parameters' copies were rewritten (0 once they are in sync).
    """
    changed = 0
    for param in running_stats(net):
        copies = param.list_data()
        if len(copies) < 2:
            continue
        moved = False
        for _ in range(_MAX_ROUNDS):
            saved = param._reduce()  # exactly what Block.save_parameters stores
            if all(_equal(c.copyto(mx.cpu()), saved) for c in copies):
                break
            for c in copies:
                saved.copyto(c)
            moved = True
        changed += moved
    return changed


def device_copies(net):
    """Every device's own copy of the running statistics, ``{"name@i": array}`` (empty on
    one device), for a mid-epoch checkpoint.

    Mid-epoch the copies differ, and their saved mean, loaded back into every device,
    evolves to the same mean only up to float rounding (1e-6), so a resumed run would
    end with other statistics than an unbroken one. Kept with the checkpoint and put back
    by :func:`restore_device_copies`, they end bit for bit the same.
    """
    params = getattr(net, "_collect_params_with_prefix", dict)()  # any Block has it
    return {"%s@%d" % (name, i): copy.copyto(mx.cpu())
            for name, p in sorted(params.items())
            if p.grad_req == "null" and p._data is not None and len(p.list_data()) > 1
            for i, copy in enumerate(p.list_data())}


def restore_device_copies(net, path):
    """Put the copies :func:`device_copies` saved at ``path`` back on the devices, when
    their number is the same as now (otherwise each device keeps the saved mean).

    Returns
    -------
    int
        How many parameters got their own copies back.
    """
    if not os.path.isfile(path):
        return 0
    saved = mx.nd.load(path)
    restored = 0
    for name, p in net._collect_params_with_prefix().items():
        copies = p.list_data() if p._data is not None else []
        values = [saved.get("%s@%d" % (name, i)) for i in range(len(copies))]
        if len(copies) > 1 and "%s@%d" % (name, len(copies)) not in saved \
                and all(v is not None for v in values):
            for value, copy in zip(values, copies):
                value.astype(copy.dtype).copyto(copy)
            restored += 1
    return restored
