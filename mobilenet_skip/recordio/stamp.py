"""The stamp of a completed decode check, and the check that training and evaluation
make of a ``.rec`` before MXNet's decoder reads it.

A record whose image does not decode kills ``ImageRecordIter`` by SIGFPE (evaluation)
or stops it with an OpenCV error (training), see :mod:`.decoding`. Decoding ImageNet's
1.28M images before every run would cost about 20 minutes of a core, so the check runs
once per file: ``tools/im2rec.py`` decodes every record as it writes it, and
``--check --decode`` every record it reads, and each then writes ``PREFIX.checked.json``
beside the ``.rec``. The stamp names the ``.rec``'s size and modification time and its
``.idx``'s SHA-256: any write to the ``.rec`` (a zeroed stretch, a partial copy) or
another ``.idx`` voids it, and reading it costs one ``stat`` and a hash of the small
index. A ``.rec`` without a valid stamp (packed by MXNet's own im2rec, copied without its
times, written to since) is decode-checked once by :func:`require_decodable` and then
stamped. What the stamp cannot see is a change that keeps both size and modification
time (a disk's bit rot, ``touch -r``); ``--check --decode`` finds that, and removes the
stamp of a file it finds damaged.

Where the ``.rec``'s folder is read-only (a shared data set), the stamp goes to
``$XDG_CACHE_HOME/mobilenet-skip/checked/`` instead, keyed by the ``.rec``'s real path.
"""
import hashlib
import json
import os
import sys

from ..errors import UserError
from ..utils import fs
from ..utils.cores import physical_cores
from .decoding import decode_check
from .images import MAX_PIXELS

__all__ = ["stamp_path", "write_stamp", "is_stamped", "remove_stamp", "decode_and_stamp",
           "require_decodable"]

_VERSION = 1  # raise when what a check proves changes: older stamps then mean nothing


def stamp_path(rec_path):
    """``PREFIX.checked.json`` for ``PREFIX.rec``."""
    return os.path.splitext(rec_path)[0] + ".checked.json"


def _cache_path(rec_path):
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(os.fsencode(os.path.realpath(rec_path))).hexdigest()[:32]
    return os.path.join(base, "mobilenet-skip", "checked", key + ".json")


def _identity(rec_path):
    """What a stamp binds: the ``.rec``'s size and modification time, the ``.idx``'s hash."""
    st = os.stat(rec_path)
    digest = hashlib.sha256()
    with open(os.path.splitext(rec_path)[0] + ".idx", "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"rec_bytes": st.st_size, "rec_mtime_ns": st.st_mtime_ns,
            "idx_sha256": digest.hexdigest()}


def write_stamp(rec_path, records, max_pixels=MAX_PIXELS, identity=None):
    """Stamp ``rec_path`` as decode-checked: every one of its ``records`` decodes.

    Parameters
    ----------
    identity : dict, optional
        :func:`_identity` taken before the check began (default: now), so that a write
        to the file during the check leaves a stamp that no longer matches.

    Returns
    -------
    str or None
        The stamp written; None when neither the ``.rec``'s folder nor the cache takes it
        (the next run checks the file again).
    """
    stamp = dict(identity or _identity(rec_path), version=_VERSION,
                 rec=os.path.basename(rec_path), records=int(records),
                 max_pixels=int(max_pixels), checked="every record's image decodes")
    text = json.dumps(stamp, indent=1, sort_keys=True) + "\n"
    for path in (stamp_path(rec_path), _cache_path(rec_path)):
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            fs.atomic_save(path, text)
            return path
        except (OSError, UserError):  # read-only or full: the cache, else no stamp
            continue
    return None


def is_stamped(rec_path):
    """Whether ``rec_path`` carries a stamp of a completed check that still matches it."""
    identity = None
    for path in (stamp_path(rec_path), _cache_path(rec_path)):
        try:
            with open(path, encoding="utf-8") as f:
                stamp = json.load(f)
        except (OSError, ValueError):
            continue
        identity = identity or _identity(rec_path)
        if isinstance(stamp, dict) and stamp.get("version") == _VERSION and \
                all(stamp.get(k) == v for k, v in identity.items()):
            return True
    return False


def remove_stamp(rec_path):
    """Void every stamp of ``rec_path`` (a check found it damaged)."""
    for path in (stamp_path(rec_path), _cache_path(rec_path)):
        try:
            os.remove(path)
        except OSError:
            pass


def decode_and_stamp(rec_path, num_thread=1, stream=None, max_pixels=MAX_PIXELS):
    """:func:`.decode_check`, then stamp the file if every record decodes, or void its
    stamp if any does not. Returns what :func:`.decode_check` returns."""
    try:
        identity = _identity(rec_path)
    except OSError:  # no .rec or .idx: decode_check names which, in one line
        identity = None
    count, damaged = decode_check(rec_path, num_thread, stream, max_pixels)
    if damaged:
        remove_stamp(rec_path)
    else:
        write_stamp(rec_path, count, max_pixels, identity)
    return count, damaged


def require_decodable(rec_path, records, stream=None):
    """Before an ``ImageRecordIter`` reads ``rec_path``: decode every image, once, unless
    a valid stamp says that was done; refuse the file in one line if any does not decode.

    Parameters
    ----------
    rec_path : str
        A ``.rec`` whose headers :func:`.check_record` has passed.
    records : int
        Its record count (what :func:`.check_record` returned), for the note.
    stream : file, optional
        Where the one-time check says what it does, with its progress (default stderr).
    """
    if is_stamped(rec_path):
        return
    stream = stream if stream is not None else sys.stderr
    print("note: %s has no stamp of a decode check (packed by another tool, copied, or "
          "changed since): decoding its %d images once before MXNet's decoder reads them"
          % (rec_path, records), file=stream, flush=True)
    count, damaged = decode_and_stamp(rec_path, physical_cores() or os.cpu_count() or 1,
                                      stream)
    if damaged:
        first = damaged[0]
        raise UserError(
            "%d of %d records of %s cannot be decoded, the first record %d (key %s, byte %d): "
            "%s; MXNet's decoder would stop training or kill evaluation on them: "
            "`tools/im2rec.py --check --decode %s` lists them and `--repair OUT_PREFIX` "
            "writes a copy without them, or re-pack from the images"
            % (len(damaged), count, rec_path, first.position + 1, first.key, first.offset,
               first.reason, rec_path))
