"""Image folders to ``.lst`` files and back (im2rec ``--list``), and the class names beside them."""
import os
import random
import re

from ..utils import fs
from ..errors import UserError
from .files import (check_name_lengths, check_prefix, check_root, output_dir, prefix_lock,
                    report_skipped, text_name, write_text)


IMAGE_EXTS = (".jpeg", ".jpg", ".png")
# The names --list writes for PREFIX: PREFIX.lst, PREFIX_<chunk>.lst and the _train/_val/
# _test splits of either. Only these belong to PREFIX: `v` must not pack a stale `v2_old.lst`.
_OWN_NAME = r"(?:_\d+)?(?:_(?:train|val|test))?"
# A .lst line is tab-separated and one per line, so these cannot appear in a listed path.
_BAD_NAME_CHARS = ("\t", "\n", "\r")


def synsets_path(rec_path):
    """Where the class names of a ``.rec`` (or ``.lst``) live: same prefix, ``.synsets.txt``."""
    return os.path.splitext(rec_path)[0] + ".synsets.txt"


def read_synsets(path):
    """Class names from a synsets file: line ``i`` names class ``i``.

    Parameters
    ----------
    path : str
        A ``<prefix>.synsets.txt`` written by ``tools/im2rec.py --list --recursive``.

    Returns
    -------
    list of str
    """
    if not os.path.isfile(path):
        raise UserError("no synsets file %s; `tools/im2rec.py PREFIX ROOT --list --recursive` "
                        "writes it beside PREFIX.lst, so re-run that step" % path)
    with open(path, encoding="utf-8") as f:
        names = f.read().splitlines()
    while names and not names[-1].strip():
        names.pop()
    blank = [i for i, name in enumerate(names) if not name.strip()]
    if not names or blank:
        raise UserError("%s has %s; it needs one class name per line (line i = class i)"
                        % (path, "no names" if not names else "a blank line %d" % (blank[0] + 1)))
    return [name.strip() for name in names]


def _walk_once(root, skipped):
    """``os.walk(root, followlinks=True)`` in sorted order, entering each real folder once.

    A link to a folder that is under ``root`` anyway (``ln -s .. root/a/loop``, or a
    second name for a class) is not followed and is added to ``skipped``: the folder
    keeps its own name and is listed once, and a loop ends. Links to folders outside
    ``root`` are followed (once each), as MXNet's im2rec follows them.
    """
    # Folders reachable without links are the real ones: a link to one of them is never
    # the name to list it under, even if the walk meets the link first.
    own = {os.path.realpath(path): os.path.relpath(path, root) for path, _, _ in os.walk(root)}
    seen = {os.path.realpath(root): "."}
    for path, dirs, files in os.walk(root, followlinks=True):
        keep = []
        for name in sorted(dirs):
            full = os.path.join(path, name)
            real = os.path.realpath(full)
            first = seen.get(real) or (own.get(real) if os.path.islink(full) else None)
            if first:
                skipped.append((os.path.relpath(full, root), "link to a folder listed already "
                                "(ROOT/%s; a symlink loop or a second name)" % first))
                continue
            seen[real] = os.path.relpath(full, root)
            keep.append(name)
        dirs[:] = keep
        yield path, dirs, files


def _lst_name(relpath):
    """``(relpath as a .lst holds it, None)``, or ``(None, why it cannot be a .lst entry)``."""
    if any(c in relpath for c in _BAD_NAME_CHARS):
        return None, "name holds a tab or line break, which a .lst line cannot; rename the file"
    name = text_name(relpath)
    if name is None:
        return None, "name is not valid UTF-8; rename the file"
    return name, None


def list_images(root, recursive=False, exts=IMAGE_EXTS, skipped=None):
    """Images under ``root`` in im2rec's order, with im2rec's labels.

    Folders are walked in sorted order and every folder that holds images becomes
    the next class, exactly as MXNet's im2rec numbers them. Without ``recursive``
    only files directly in ``root`` are listed, all with label 0. Unlike MXNet's
    walk, each real folder is entered once (a symlink loop would never end), and
    files whose names a ``.lst`` cannot hold, dangling symlinks and (with
    ``recursive``) class folders without images are left out and named in ``skipped``.

    Parameters
    ----------
    skipped : list, optional
        Receives ``(path relative to root, reason)`` for each folder link, file and
        empty class folder left out.

    Returns
    -------
    items : list of (int, str, float)
        ``(index, path relative to root, label)``.
    classes : list of str
        Folder of each class relative to ``root`` (an ImageNet wnid, for one).
    """
    check_root(root)
    skipped = [] if skipped is None else skipped
    exts = tuple(e.lower() for e in exts)
    items, classes = [], {}
    if recursive:
        walk = _walk_once(root, skipped)
    else:
        walk = [(root, [], os.listdir(root))]
    for path, dirs, files in walk:
        images = 0
        for fname in sorted(files):
            fpath = os.path.join(path, fname)
            if os.path.islink(fpath) and not os.path.exists(fpath):
                skipped.append((os.path.relpath(fpath, root), "dangling symlink: its target "
                                "%s does not exist" % os.readlink(fpath)))
            elif os.path.splitext(fname)[1].lower() in exts and os.path.isfile(fpath):
                images += 1
                name, reason = _lst_name(os.path.relpath(fpath, root))
                if reason:
                    skipped.append((os.path.relpath(fpath, root), reason))
                    continue
                label = classes.setdefault(text_name(os.path.relpath(path, root)),
                                           len(classes)) if recursive else 0
                items.append((len(items), name, float(label)))
        if recursive and not dirs and not images and path != root:
            skipped.append((os.path.relpath(path, root), "folder holds no %s image, so it is "
                            "no class: every later class takes the label it would have had"
                            % "/".join(exts)))
    return items, sorted(classes, key=classes.get)


def _write_list(path, items):
    write_text(path, ["%d\t%s%s\n" % (index, "".join("%f\t" % x for x in labels), relpath)
                       for index, relpath, *labels in items])


def make_list(prefix, root, recursive=False, exts=IMAGE_EXTS, train_ratio=1.0, test_ratio=0.0,
              shuffle=True, chunks=1, stream=None):
    """Write the ``.lst`` file(s) for the images under ``root`` (im2rec ``--list``).

    Splits and chunks are named as im2rec names them (``PREFIX.lst``, or
    ``PREFIX_train.lst``/``_val.lst``/``_test.lst``, with ``_<chunk>`` before the
    split). With ``recursive`` a ``.synsets.txt`` is written beside ``PREFIX.lst``
    and every other list, line ``i`` naming class ``i``. Folder links and files
    that :func:`list_images` leaves out get a ``warning:`` line on ``stream``
    (default stderr).

    Returns
    -------
    list of str
        The list files written.
    """
    check_prefix(prefix)
    if not 0 < train_ratio <= 1 or not 0 <= test_ratio < 1 or train_ratio + test_ratio > 1:
        raise UserError("--train-ratio must be in (0, 1] and --test-ratio in [0, 1) with a sum "
                        "of at most 1; got %g and %g" % (train_ratio, test_ratio))
    if chunks < 1:
        raise UserError("--chunks must be at least 1, got %d" % chunks)
    skipped = []
    items, classes = list_images(root, recursive, exts, skipped)
    report_skipped(skipped, stream)
    if not items:
        raise UserError("no %s images in %s%s; check the folder and --exts%s" % (
            "/".join(exts), root, " or its subfolders" if recursive else "",
            "" if recursive else ", or add --recursive for one subfolder per class"))
    output_dir(prefix)
    with prefix_lock(prefix):
        return _write_lists(prefix, items, classes, recursive, train_ratio, test_ratio,
                            shuffle, chunks)


def _write_lists(prefix, items, classes, recursive, train_ratio, test_ratio, shuffle, chunks):
    if shuffle:
        random.seed(100)  # im2rec's seed: the same folder gives the same list as MXNet's tool
        random.shuffle(items)
    parts = []
    chunk_size = (len(items) + chunks - 1) // chunks
    for c in range(chunks):
        chunk = items[c * chunk_size:(c + 1) * chunk_size]
        stem = prefix + ("_%d" % c if chunks > 1 else "")
        n_train, n_test = int(len(chunk) * train_ratio), int(len(chunk) * test_ratio)
        if train_ratio == 1.0:
            parts.append((stem + ".lst", chunk))
        else:
            parts.append((stem + "_train.lst", chunk[n_test:n_test + n_train]))
            if test_ratio:
                parts.append((stem + "_test.lst", chunk[:n_test]))
            if train_ratio + test_ratio < 1.0:
                parts.append((stem + "_val.lst", chunk[n_test + n_train:]))
    written = [path for path, _ in parts]
    synsets = [synsets_path(path) for path in sorted({prefix + ".lst"} | set(written))] \
        if recursive else []
    check_name_lengths(written + synsets)  # all or nothing: no .lst without its synsets
    fs.remove_stale_tmp(os.path.dirname(os.path.abspath(prefix)), os.path.basename(prefix))
    for path, part in parts:
        _write_list(path, part)
    for path in synsets:
        write_text(path, [name + "\n" for name in classes])
    return written


def read_list(path):
    """Parse a ``.lst`` file: ``index <TAB> label(s) <TAB> relative path`` per line.

    Returns
    -------
    list of (int, str, float, ...)
        ``(index, relative path, label, ...)`` per line, as im2rec holds them.
    """
    items, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            try:
                if len(fields) < 3:
                    raise ValueError("needs 3 tab-separated fields")
                # the path as written: " a.jpg" and "a.jpg " are files too (MXNet's
                # im2rec strips them, and then packs nothing; see packing._existing_name)
                item = (int(fields[0]), fields[-1]) + tuple(float(x) for x in fields[1:-1])
            except ValueError:
                raise UserError("%s line %d is not `index<TAB>label<TAB>path`: %r; regenerate it "
                                "with --list" % (path, n, line.rstrip("\n")[:80])) from None
            if item[0] in seen:
                raise UserError("%s line %d repeats index %d; every image needs its own index"
                                % (path, n, item[0]))
            seen.add(item[0])
            items.append(item)
    return items


def _own_files(prefix, ext):
    """Files of ``prefix`` with extension ``ext``: the names --list gives PREFIX's lists.

    Returns the matching paths and the other ``prefix*ext`` names, which belong to
    another prefix (MXNet's im2rec packs any ``prefix*.lst``, stale ones included).
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    base = os.path.basename(prefix)
    own = re.compile(re.escape(base) + _OWN_NAME + re.escape(ext) + "$")
    names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    mine = [os.path.join(folder, n) for n in names if own.match(n)]
    others = [n for n in names if n.startswith(base) and n.endswith(ext) and not own.match(n)]
    return mine, others


def find_lists(prefix):
    """The ``.lst`` files im2rec packs for ``prefix``: ``PREFIX.lst`` and the chunks and
    splits ``--list`` names after it (``PREFIX_0.lst``, ``PREFIX_train.lst``, ...)."""
    check_prefix(prefix)
    lists, others = _own_files(prefix, ".lst")
    if not lists:
        raise UserError("no %s.lst (or its _train/_val/_test, _N splits) in %s%s; create it "
                        "first with `tools/im2rec.py %s ROOT --list --recursive`" % (
                            os.path.basename(prefix), os.path.dirname(os.path.abspath(prefix)),
                            " (%s belong to other prefixes)" % ", ".join(others) if others
                            else "", prefix))
    return lists


def find_records(prefix):
    """The ``.rec`` files of ``prefix`` (as :func:`find_lists`), or ``prefix`` itself if
    it names a ``.rec``; for ``im2rec.py --check``."""
    if prefix.endswith(".rec") and os.path.isfile(prefix):
        return [prefix]
    check_prefix(prefix)
    recs, _ = _own_files(prefix, ".rec")
    if not recs:
        raise UserError("no %s.rec (or its _train/_val/_test, _N splits) in %s; pack it with "
                        "`tools/im2rec.py %s ROOT`" % (os.path.basename(prefix),
                                                       os.path.dirname(os.path.abspath(prefix)),
                                                       prefix))
    return recs
