"""SHA-256 digests of the files a run and an export write and later read back.

A file that is read back carries its digest in the small JSON that describes it: a
checkpoint's marker (:mod:`.checkpoints`) for its ``.params``, ``.states`` and
``.bncopies``, an export's sidecar (:mod:`.sidecar`) for its graph, weights and one-file
forms (ONNX). A reader checks the digest once the file has passed the checks of its own
format (which name a file of another kind, or another model's, as such) and before
anything uses it, so that a stretch of zeroed or flipped bytes, which MXNet's loaders
accept as weights, is refused in one line naming the file, both digests and what to use
instead.

Hashing the 17-20 MB ``.params`` of a 1.0-wide network at 224 px takes about 12 ms from
the page cache on this project's 2-core machine when idle, 25-30 ms when busy
(docs/workflow.md, 3. Resume): little beside loading it, so every load pays it.
"""
import hashlib
import sys

from ..errors import UserError

__all__ = ["KEY", "file_sha256", "verify_files", "note"]

KEY = "sha256"  # the entry of a marker or sidecar: {file key: hex digest}
_CHUNK = 1 << 20


def file_sha256(path):
    """The hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def note(line):
    """Print ``line`` on stderr, as the tools print a note."""
    print(line, file=sys.stderr, flush=True)


def verify_files(files, recorded, described_by, fix, say=note):
    """Check each file against the digest ``recorded`` for its key.

    Parameters
    ----------
    files : dict
        ``{key: path}`` of the files about to be read (only existing ones).
    recorded : dict or None
        The describing JSON's :data:`KEY` entry; None (or not a dict) when it records
        none: the files are then used unverified, with one :func:`note`.
    described_by : str
        The describing file (a marker, a sidecar), named in the messages.
    fix : str
        What to do about a damaged file, ending the error line.
    say : callable
        Where the note goes (a line starting ``note: ``): stderr by default; training
        passes its log, so that ``train.log`` keeps it.

    Raises
    ------
    UserError
        One line naming the first damaged file, the expected and found digests and
        ``fix``.
    """
    if not isinstance(recorded, dict):
        say("note: %s records no SHA-256 of %s, so %s used unverified"
            % (described_by, ", ".join(sorted(files.values())),
               "it is" if len(files) == 1 else "they are"))
        return
    unrecorded = []
    for key, path in sorted(files.items()):
        if key not in recorded:
            unrecorded.append(path)
            continue
        found = file_sha256(path)
        if found != recorded[key]:
            raise UserError("%s is damaged: its SHA-256 is %s, but %s recorded %s; %s"
                            % (path, found, described_by, recorded[key], fix))
    if unrecorded:
        say("note: %s records no SHA-256 of %s (not written with it), so %s used "
            "unverified" % (described_by, ", ".join(unrecorded),
                            "it is" if len(unrecorded) == 1 else "they are"))
