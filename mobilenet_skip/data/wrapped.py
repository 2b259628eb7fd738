"""The base of every iterator that wraps another: a record shard's padding and epochs
(:mod:`.records`) and the checked batches (:mod:`.checks`: labels, the watchdog's
heartbeat) change what they must about the batches they pass on, and take everything else
from the iterator they wrap."""
import mxnet as mx

__all__ = ["WrappedIter"]


class WrappedIter(mx.io.DataIter):
    """A ``DataIter`` over ``inner``: its shapes, ``reset``, ``next`` and any attribute
    this class does not define (``set_epoch``, ``num_records``, ...) are ``inner``'s.

    Subclasses override what they change and call ``self.inner`` for the rest; one
    whose inner iterator changes (a new one per epoch) assigns ``self.inner``.

    Parameters
    ----------
    inner : mx.io.DataIter
        The iterator wrapped.
    batch_size : int, optional
        Default: ``inner.batch_size``.
    """

    def __init__(self, inner, batch_size=None):
        super(WrappedIter, self).__init__(
            getattr(inner, "batch_size", 0) if batch_size is None else batch_size)
        self.inner = inner

    @property
    def provide_data(self):
        return self.inner.provide_data

    @property
    def provide_label(self):
        return self.inner.provide_label

    def reset(self):
        self.inner.reset()

    def next(self):
        return self.inner.next()

    def __getattr__(self, name):
        # only reached for names this object lacks; "inner" itself must not recurse
        # (copy and pickle look attributes up before __init__ has run)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
