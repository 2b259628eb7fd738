"""Optimizer state saved without pickle.

Optimizer state is stored as NDArrays (``mx.nd.save``) plus a small JSON description
(which array belongs where, the update counters). Loading never unpickles: a run
folder from someone else is data, not code.
"""
import mxnet as mx

from ..errors import UserError

__all__ = ["save_states", "load_states", "newer_format_error", "STATE_FORMAT"]

STATE_FORMAT = 1  # the "optimizer_state" JSON a checkpoint's marker carries


def newer_format_error(path, found):
    """The one-line :class:`UserError` for a file a newer release wrote (format ``found``)."""
    return UserError("%s was written by a newer mobilenet-skip (format %s); upgrade "
                     "mobilenet-skip to read it" % (path, found))


def _flatten(state, key, arrays):
    """A JSON layout of a (nested) state: null, an array's name, or a list of layouts."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[key] = state
        return key
    if isinstance(state, (tuple, list)):
        return [_flatten(s, "%s.%d" % (key, i), arrays) for i, s in enumerate(state)]
    raise TypeError("cannot save optimizer state of type %s" % type(state).__name__)


def _unflatten(layout, arrays, ctx):
    if layout is None:
        return None
    if isinstance(layout, str):
        return arrays[layout].copyto(ctx)
    return tuple(_unflatten(item, arrays, ctx) for item in layout)


def _signature(state):
    """Nesting, array shapes and dtypes: what must agree for a state to carry over."""
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        return (tuple(state.shape), str(state.dtype))
    return [_signature(s) for s in state]


def save_states(trainer, path, write):
    """Save the Trainer's optimizer state: arrays through ``write(path, fn)`` (an atomic
    writer calling ``fn(tmp_path)``) with ``mx.nd.save``, the rest returned as JSON.

    Every device holds the same state after the all-reduce, so the first one's is saved.
    """
    opt = trainer._optimizer
    updater = trainer._updaters[0]
    arrays = {}
    layout = {str(i): _flatten(s, "s%d" % i, arrays) for i, s in sorted(updater.states.items())}
    write(path, lambda tmp: mx.nd.save(tmp, arrays))
    device = trainer._contexts[0].device_id
    counts = opt._all_index_update_counts.get(device, opt._index_update_count)
    return {"format": STATE_FORMAT, "optimizer": type(opt).__name__.lower(),
            "num_update": int(opt.num_update),
            "update_counts": {str(k): int(v) for k, v in sorted(counts.items())},
            "layout": layout}


def _refuse(path, why):
    raise UserError("--resume: %s %s; a run folder is data, not code, so only this "
                    "package's own state format is read: pass --overwrite to start again (or "
                    "another --save-dir)" % (path, why))


def load_states(trainer, path, info):
    """Restore arrays and update counters saved by :func:`save_states` into a Trainer
    whose optimizer was built from the NEW settings (lr, wd, momentum ... stay new).

    Returns
    -------
    list of int
        Parameter indices whose saved state does not fit the new optimizer's layout
        (such as momentum 0 -> 0.9) and that therefore start afresh.

    Raises
    ------
    UserError
        When ``info`` is missing (an old pickled ``.states``) or of a newer format, the
        file is not an ``mx.nd.save`` file, or it belongs to another optimizer or network.
    """
    found = info.get("format") if isinstance(info, dict) else None
    if isinstance(found, int) and found > STATE_FORMAT:
        raise newer_format_error(path, found)
    if found != STATE_FORMAT:
        _refuse(path, "is in the old pickled format (or has no state description in its "
                      ".json marker) and is not loaded")
    opt = trainer._optimizer
    if info.get("optimizer") != type(opt).__name__.lower():
        raise UserError("--resume: %s holds %s state but the run now uses %s; resume with "
                        "the optimizer it was trained with, or start afresh with --overwrite"
                        % (path, info.get("optimizer"), type(opt).__name__.lower()))
    try:
        arrays = mx.nd.load(path)
    except Exception:  # MXNet's own parser refused it: no code ran
        _refuse(path, "is not an MXNet NDArray file")
    if not isinstance(arrays, dict):
        arrays = {}
    layout = info.get("layout", {})
    names = [n for n in _names(layout.values())]
    missing = [n for n in names if n not in arrays]
    if missing:
        _refuse(path, "lacks the arrays its .json marker lists (%s ...)" % missing[0])
    params = trainer._params
    fresh = []
    for key, item in sorted(layout.items(), key=lambda kv: int(kv[0])):
        index = int(key)
        if index >= len(params):
            _refuse(path, "has state for parameter %d of a network with %d" % (index,
                                                                             len(params)))
        weight = params[index].list_data()[0]
        new = opt.create_state_multi_precision(index, weight)
        old = _unflatten(item, arrays, weight.context)
        if _signature(new) != _signature(old):
            shapes = [s for s in _names([item]) if tuple(arrays[s].shape) not in
                      _shapes(_signature(new))]
            if shapes:
                _refuse(path, "does not fit this network (parameter %s)" % params[index].name)
            fresh.append(index)
            continue
        for updater, ctx in zip(trainer._updaters, trainer._contexts):
            updater.states[index] = _unflatten(item, arrays, ctx)
            updater.states_synced[index] = True
    counts = {int(k): int(v) for k, v in info.get("update_counts", {}).items()}
    opt._all_index_update_counts = {ctx.device_id: dict(counts) for ctx in trainer._contexts}
    opt._index_update_count = opt._all_index_update_counts[trainer._contexts[0].device_id]
    opt.num_update = int(info.get("num_update", 0))
    return fresh


def _names(layouts):
    for item in layouts:
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            for name in _names(item):
                yield name


def _shapes(signature):
    if signature is None:
        return []
    if isinstance(signature, tuple):
        return [signature[0]]
    return [s for sig in signature for s in _shapes(sig)]
