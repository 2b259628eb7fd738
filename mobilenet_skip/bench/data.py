"""The benchmark's data section: MXNet's C++ ImageRecordIter against gluon's Python
DataLoader over the same .rec, with the train and the val augmentation."""
import gc
import os
import tempfile

from ..config.recipe import Recipe
from ..data import records as data
from .sections import (_count_loader_batch, _count_record_batch, _endless, decode_threads,
                       machine_info, measure_rate, register)
from ..data.demo import pack_demo_data
from ..data.preprocess import Preprocessing

__all__ = []


# --- data: ImageRecordIter against gluon's DataLoader over the same .rec -------------

def _add_data_arguments(p):
    g = p.add_argument_group("data section")
    g.add_argument("--rec", help="a .rec (with its .idx) to read; default: a temporary demo set")
    g.add_argument("--image-size", type=int, default=None,
                   help="side of the temporary demo images (default: the val resize of the "
                   "input size, as ImageNet val is packed at 256 for 224)")
    g.add_argument("--preprocess-threads", dest="workers", type=int,
                   default=min(4, os.cpu_count() or 1),
                   help="ImageRecordIter preprocess_threads and DataLoader num_workers, the "
                   "name train_imagenet.py and eval_imagenet.py use (default: min(4, cores))")
    g.add_argument("--batches", type=int, default=20, help="batches per timed repeat")


def _gluon_loader(rec, cfg, train, workers):
    """gluon's Python pipeline doing what ImageRecordIter does for ``cfg``."""
    from mxnet.gluon.data import DataLoader
    from mxnet.gluon.data.vision import ImageRecordDataset, transforms
    pre = Preprocessing.of(cfg)
    if train:
        transform = transforms.Compose([
            transforms.RandomResizedCrop(
                pre.input_size, scale=(cfg["min_random_area"], cfg["max_random_area"]),
                ratio=(cfg["min_aspect_ratio"], cfg["max_aspect_ratio"])),
            transforms.RandomFlipLeftRight()] + pre.gluon_normalize())
    else:
        transform = pre.gluon_transform()
    dataset = ImageRecordDataset(rec).transform_first(transform)
    return DataLoader(dataset, batch_size=cfg["batch_size"], shuffle=train,
                      num_workers=workers, last_batch="keep")


def _run_data(args):
    cfg = Recipe.from_values(dict(input_size=args.input_size, batch_size=args.batch_size,
                                  preprocess_threads=args.workers))
    timing = dict(n_batches=args.batches, warmup=args.warmup, repeats=args.repeats)
    image_size = args.image_size or Preprocessing.of(cfg).resize
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        rec = args.rec or pack_demo_data(tmp, image_size, splits=("train",))[0]
        cfg = cfg.replace(rec_train=rec, rec_val=rec)
        result = {"rec": args.rec or "demo digits at %dpx" % image_size,
                  "images": data.check_record(rec), "input_size": args.input_size,
                  "batch_size": args.batch_size, "workers": args.workers,
                  "decode_threads": decode_threads(args.workers),
                  "record_iter": {}, "dataloader": {}, "speedup": {}}
        for mode, make_iter in (("train", data.train_iter), ("val", data.val_iter)):
            # One pipeline at a time: an idle one keeps decoding ahead and steals cores.
            it = make_iter(cfg)
            result["record_iter"][mode] = measure_rate(_endless(it), _count_record_batch,
                                                       **timing)
            del it
            loader = _gluon_loader(rec, cfg, mode == "train", args.workers)
            result["dataloader"][mode] = measure_rate(_endless(loader), _count_loader_batch,
                                                      **timing)
            del loader
            gc.collect()
            result["speedup"][mode] = result["record_iter"][mode] / result["dataloader"][mode]
    result["machine"] = machine_info()
    return result


def _format_data(r):
    lines = ["data: %s (%d images), input %d, batch %d, %d workers (ImageRecordIter decodes "
             "on %d thread%s here)" % (r["rec"], r["images"], r["input_size"], r["batch_size"],
                                        r["workers"], r["decode_threads"],
                                        "" if r["decode_threads"] == 1 else "s"),
             "%-28s %12s %12s" % ("img/s", "train aug", "val aug")]
    for key, name in (("record_iter", "ImageRecordIter (C++)"),
                      ("dataloader", "gluon DataLoader (Python)")):
        lines.append("%-28s %12.1f %12.1f" % (name, r[key]["train"], r[key]["val"]))
    lines.append("%-28s %11.2fx %11.2fx" % ("ImageRecordIter speed-up", r["speedup"]["train"],
                                            r["speedup"]["val"]))
    return "\n".join(lines)


register("data", _format_data, _add_data_arguments,
         help="ImageRecordIter vs gluon DataLoader img/s, train and val augmentation")(_run_data)
