#!/usr/bin/env python
"""Pack an image folder into MXNet RecordIO; the command line of MXNet's tools/im2rec.py.

Two steps, as with MXNet's tool:

  im2rec.py PREFIX ROOT --list --recursive    # PREFIX.lst (+ PREFIX.synsets.txt)
  im2rec.py PREFIX ROOT [--resize 256 ...]    # PREFIX.lst (and its splits) -> .rec + .idx
  im2rec.py --check PREFIX                    # every record header of PREFIX.rec intact?
  im2rec.py --check --decode PREFIX           # ... and every image decodes?
  im2rec.py --check --decode PREFIX --repair FIXED   # FIXED.rec/.idx without the damaged

Beyond MXNet's version: --list --recursive writes PREFIX.synsets.txt (line i names
class i, the folder's name) and enters each real folder once (symlink loops); progress
with rate and ETA goes to stderr; images that cannot be read or decoded, or are
truncated, are skipped and listed in PREFIX.skipped.txt instead of aborting the job;
.rec and .idx appear together, only once complete; one job per PREFIX at a time;
.lst entries outside ROOT are refused unless --allow-outside-root. Only PREFIX.lst and
the PREFIX_[N_]train/val/test.lst that --list writes are packed, not any PREFIX*.lst.
Images of more than --max-pixels (Pillow's 89,478,485 by default; read from the header,
undecoded) are skipped as decompression bombs. Every record is decoded as it is written,
and the .rec is stamped as checked (PREFIX.checked.json), so training and evaluation read
it at once; they decode-check once any .rec without a valid stamp.
--check --decode decodes every image as training's ImageRecordIter will: a record whose
image bytes are damaged (headers intact) kills training or evaluation by SIGFPE inside
MXNet's decoder, so it names each such record (index, key, .lst line), and --repair
writes a copy without them. A file that passes is stamped.
"""
import argparse
import signal
import sys
import threading
import time

import _bootstrap  # noqa: F401
from mobilenet_skip.cli import run_main
from mobilenet_skip.errors import UserError
from mobilenet_skip.recordio import (IMAGE_EXTS, MAX_PIXELS, PackOptions, check_record,
                                     decode_and_stamp, find_records, make_list, pack,
                                     write_stamp, write_without)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prefix", help="prefix of the .lst/.rec/.idx files (a path, not a folder)")
    p.add_argument("root", nargs="?", help="folder holding the images (one subfolder per "
                   "class with --recursive); not needed with --check")
    p.add_argument("--check", action="store_true",
                   help="check every record header of PREFIX.rec (or of the .rec PREFIX names) "
                   "through its .idx, as training does before it starts, and exit")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                   help="skip (with --check --decode: report) images of more pixels than "
                   "this, read from their headers before decoding: decompression bombs, "
                   "such as a 0.87 MB PNG of 30000x30000 that decodes to 2.7 GB (default "
                   "%(default)d, Pillow's cap)")
    g = p.add_argument_group("decoding every image (--check --decode)")
    g.add_argument("--decode", action="store_true",
                   help="with --check: also decode every image, as training's iterator will "
                   "(--num-thread at once), and name each record that cannot be decoded; "
                   "a file that passes is stamped as checked (PREFIX.checked.json)")
    g.add_argument("--repair", metavar="OUT_PREFIX",
                   help="with --check --decode: write OUT_PREFIX.rec/.idx (and its .lst and "
                   ".synsets.txt) holding every record but the damaged ones; the original "
                   "is left as it is")
    g.add_argument("--repair-in-place", action="store_true",
                   help="with --check --decode: replace PREFIX.rec/.idx themselves by the "
                   "copy without the damaged records")
    g = p.add_argument_group("creating image lists (--list)")
    g.add_argument("--list", action="store_true",
                   help="write PREFIX.lst by walking ROOT, instead of packing PREFIX.lst "
                   "and its splits")
    g.add_argument("--exts", nargs="+", default=list(IMAGE_EXTS),
                   help="image extensions to list (default: %(default)s)")
    g.add_argument("--chunks", type=int, default=1, help="split the list into this many chunks")
    g.add_argument("--train-ratio", type=float, default=1.0,
                   help="share of images in PREFIX_train.lst; below 1 the rest go to "
                   "PREFIX_val.lst (default 1: one PREFIX.lst)")
    g.add_argument("--test-ratio", type=float, default=0.0,
                   help="share of images in PREFIX_test.lst (default 0)")
    g.add_argument("--recursive", action="store_true",
                   help="one class per subfolder, in sorted order, and write PREFIX.synsets.txt; "
                   "without it only ROOT's own files are listed, with label 0")
    g.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="keep the list in folder order instead of im2rec's fixed shuffle")
    g = p.add_argument_group("creating the database (without --list)")
    g.add_argument("--pass-through", action="store_true",
                   help="store the original file bytes (still checked to decode)")
    g.add_argument("--resize", type=int, default=0,
                   help="resize the shorter side to this (default 0: pack at full size, as "
                   "MXNet's im2rec does, so an 8000x8000 photo is stored whole, about 5 MB; "
                   "decoding one takes about 600 MB of memory with any --resize, as in MXNet's "
                   "im2rec)")
    g.add_argument("--center-crop", action="store_true",
                   help="crop the central square before resizing")
    g.add_argument("--quality", type=int, default=None,
                   help="JPEG quality 1-100 (default 95), or PNG compression 0-9 (default 9: "
                   "OpenCV clamps MXNet's default of 95 to that)")
    g.add_argument("--num-thread", type=int, default=1,
                   help="images encoded in parallel; record order follows the list regardless")
    g.add_argument("--color", type=int, default=1, choices=[-1, 0, 1],
                   help="1: colour (default), 0: greyscale, -1: unchanged, alpha included")
    g.add_argument("--encoding", default=".jpg", choices=[".jpg", ".png"],
                   help="format of the stored images (default .jpg)")
    g.add_argument("--pack-label", action="store_true",
                   help="store every label column of the .lst, not only the first")
    g.add_argument("--allow-outside-root", action="store_true",
                   help="pack .lst entries that are absolute or climb out of ROOT with '..' "
                   "(refused by default: a list from elsewhere could name any file)")
    args = p.parse_args(argv)
    if args.root is None and not args.check:
        p.error("the following arguments are required: root")
    if (args.repair or args.repair_in_place) and not (args.check and args.decode):
        p.error("--repair and --repair-in-place go with --check --decode")
    return args


def check(args):
    """``--check``: every record header of each ``.rec`` of the prefix, one line each;
    with ``--decode`` every image too, one line per damaged record."""
    recs = find_records(args.prefix)
    repair = args.repair or args.repair_in_place
    if repair and len(recs) > 1:
        raise UserError("--repair writes one .rec, but %s names %d (%s); give one of them as "
                        "PREFIX" % (args.prefix, len(recs), ", ".join(recs)))
    for rec in recs:
        start = time.monotonic()
        if not args.decode:
            n = check_record(rec)
            print("ok: %s: %d records, every header intact (%.2f s)"
                  % (rec, n, time.monotonic() - start))
            continue
        n, damaged = decode_and_stamp(rec, args.num_thread, max_pixels=args.max_pixels)
        for d in damaged:
            print("damaged: %s record %d of %d (key %s, byte %d): %s; .lst line: %s"
                  % (rec, d.position + 1, n, d.key, d.offset, d.reason,
                     repr(d.lst_line) if d.lst_line is not None else "none (no .lst beside)"))
        seconds = time.monotonic() - start
        if not damaged:
            print("ok: %s: %d records, every header intact, every image decodes (%.1f s, "
                  "%.0f images/s)" % (rec, n, seconds, n / max(seconds, 1e-9)))
        elif repair:
            out, kept = write_without(rec, damaged, args.repair or rec, args.repair_in_place)
            write_stamp(out, kept, args.max_pixels)  # the records that decoded, alone
            print("wrote %s: %d of %d records, without the %d damaged ones"
                  % (out, kept, n, len(damaged)))
        else:
            raise UserError("%d of %d records of %s cannot be decoded (listed above); training "
                            "or evaluation would die on them by SIGFPE inside MXNet's decoder: "
                            "re-pack from the images, or write a copy without them with "
                            "--repair OUT_PREFIX" % (len(damaged), n, rec))
    return 0


class _Terminated(BaseException):
    """SIGTERM (SLURM, Kubernetes, kill), unwound like Ctrl-C so temporary files go."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None):
    args = parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()  # signal's own rule
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if in_main else None
    try:
        return _run(args)
    except (KeyboardInterrupt, _Terminated) as err:
        # The packer removed its temporary files on the way out; earlier outputs stand.
        ctrl_c = isinstance(err, KeyboardInterrupt)
        print("error: interrupted (%s); nothing half-written was left, the previous files of "
              "%s are unchanged" % ("Ctrl-C" if ctrl_c else "SIGTERM", args.prefix),
              file=sys.stderr)
        return 130 if ctrl_c else 128 + signal.SIGTERM
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _run(args):
    if args.check:
        return check(args)
    if args.list:
        for path in make_list(args.prefix, args.root, args.recursive, args.exts,
                              args.train_ratio, args.test_ratio, args.shuffle, args.chunks):
            print("wrote %s" % path)
        return 0
    if args.quality is None:
        args.quality = 95 if args.encoding == ".jpg" else 9
    opts = PackOptions(resize=args.resize, center_crop=args.center_crop, quality=args.quality,
                       encoding=args.encoding, color=args.color,
                       pass_through=args.pass_through, pack_label=args.pack_label,
                       max_pixels=args.max_pixels)
    pack(args.prefix, args.root, opts, num_thread=args.num_thread,
         allow_outside_root=args.allow_outside_root)
    return 0


if __name__ == "__main__":
    run_main(main)
