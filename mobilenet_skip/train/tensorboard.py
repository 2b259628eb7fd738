"""TensorBoard event files of a training run (``--tensorboard DIR``), through tensorboardX.

Train scalars go under ``train/`` at the global batch step (epoch x batches per epoch +
batch), once per log window; the epoch's validation under ``epoch/`` at the epoch number,
so that they line up with ``metrics.csv``'s rows; the resolved config as the text
``config``. tensorboardX is imported only when a run asks for it.
"""
import glob
import os
import struct

from ..errors import UserError
from .callbacks import Callback
from .logs import describe

__all__ = ["TensorBoard", "INSTALL", "EPOCH_TAGS", "read_scalars"]

INSTALL = "pip install --no-deps tensorboardX==2.6.5"  # the version requirements/test.txt pins

# metrics.csv column -> tag of the epoch's scalar; a column the row lacks is skipped
EPOCH_TAGS = {"val_top1": "epoch/val_top1", "val_top5": "epoch/val_top5",
              "val_loss": "epoch/val_loss", "train_loss": "epoch/train_loss",
              "train_top1": "epoch/train_top1", "lr": "epoch/lr",
              "samples_per_s": "epoch/samples_per_s"}


def _writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs tensorboardX, which is not installed: run `%s` "
                        "(or `make venv`)" % INSTALL) from None
    return SummaryWriter


class TensorBoard(Callback):
    """Writes the run's scalars and config into ``logdir`` (rank 0's job: see ``fit``).

    Parameters
    ----------
    logdir : str
        Folder of the event files (created on the first write; a resumed run appends a
        new event file beside the earlier ones, as TensorBoard expects).
    cfg : dict
        The resolved recipe, written once as text.

    Raises
    ------
    UserError
        When tensorboardX is not installed (at construction, before training starts).
    """

    def __init__(self, logdir, cfg):
        self.writer_class = _writer_class()
        self.logdir, self.cfg = logdir, cfg
        self.writer = None

    def _open(self):
        if self.writer is None:
            self.writer = self.writer_class(self.logdir)
            # four spaces: TensorBoard renders text as markdown, this keeps the columns
            self.writer.add_text("config", "\n".join("    " + line for line in
                                                    describe(self.cfg).splitlines()))
        return self.writer

    def begin_epoch(self, epoch, done, total):
        self._open()

    def window(self, info):
        step = (info["epoch"] - 1) * info["total"] + info["done"]
        writer = self._open()
        for key, tag in (("loss", "train/loss"), ("top1", "train/top1"),
                         ("top5", "train/top5"), ("lr", "train/lr"),
                         ("samples_per_s", "train/img_per_s")):
            if info.get(key) is not None:
                writer.add_scalar(tag, float(info[key]), step)

    def end_epoch(self, row, net, trainer):
        writer = self._open()
        for column, tag in EPOCH_TAGS.items():
            if row.get(column) is not None:
                writer.add_scalar(tag, float(row[column]), int(row["epoch"]))
        writer.flush()  # an epoch's values are on disk when its metrics.csv row is

    def end_run(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_scalars(logdir):
    """Every scalar of the event files in ``logdir``, as ``{tag: [(step, value), ...]}``
    in the order written (the files read in name order, which is their creation order).

    The records are parsed with tensorboardX's own ``Event`` proto; each is a length
    (8 bytes), its CRC (4), the event and the event's CRC (4), which are not checked.
    """
    from tensorboardX.proto.event_pb2 import Event
    out = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        at = 0
        while at + 12 <= len(data):
            size = struct.unpack("<Q", data[at:at + 8])[0]
            event = Event.FromString(data[at + 12:at + 12 + size])
            at += 12 + size + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out
