"""Count, rate and ETA for jobs that run for hours (packing ImageNet, for one)."""
import sys
import time

__all__ = ["Progress", "format_duration"]


def format_duration(seconds):
    """``H:MM:SS`` for a number of seconds."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return "%d:%02d:%02d" % (hours, minutes, secs)


class Progress:
    """Progress of ``total`` items on a stream (stderr by default).

    On a terminal a bar is redrawn in place a few times a second; anywhere else
    (a log file, a batch job) a plain line is written every ``every`` seconds, so
    logs stay readable and still show the job is alive.

    Parameters
    ----------
    total : int
        Number of items the job will process.
    label : str
        Printed before the count.
    unit : str
        Name of one item, for the rate.
    stream : file, optional
        Where to write (default ``sys.stderr``).
    every : float
        Seconds between plain lines when ``stream`` is not a terminal.
    """

    BAR_WIDTH = 30

    def __init__(self, total, label="", unit="img", stream=None, every=30.0):
        self.total = max(int(total), 0)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else every
        self.count = 0
        self.start = time.monotonic()
        self._last = self.start

    def update(self, n=1):
        """Record ``n`` more items done, and redraw if it is time."""
        self.count += n
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._draw(now)

    def status(self, now=None):
        """The progress text: count, percentage, rate and ETA."""
        elapsed = (now if now is not None else time.monotonic()) - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = format_duration((self.total - self.count) / rate) if rate > 0 else "?"
        pct = 100.0 * self.count / self.total if self.total else 100.0
        return "%s%d/%d (%.1f%%) %.1f %s/s ETA %s" % (
            self.label + " " if self.label else "", self.count, self.total, pct, rate,
            self.unit, eta)

    def _draw(self, now):
        if self.tty:
            filled = self.BAR_WIDTH * self.count // self.total if self.total else self.BAR_WIDTH
            bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
            self.stream.write("\r[%s] %s\x1b[K" % (bar, self.status(now)))
        else:
            self.stream.write(self.status(now) + "\n")
        self.stream.flush()

    def close(self):
        """Finish the bar's line on a terminal (plain logs need nothing more)."""
        if self.tty:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
