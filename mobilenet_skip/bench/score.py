"""Score a run's checkpoints on another ``.rec``: the converged study's test set.

``python -m mobilenet_skip.bench.score SAVE_DIR REC EPOCH [EPOCH ...]`` prints one JSON
line per epoch, ``{"epoch", "top1", "top5", "images"}``, each epoch's checkpoint loaded
with the run's own settings (:func:`~mobilenet_skip.deploy.source.load_source`) and
scored with the run's validation preprocessing by the one single-crop scorer. The study
scores its test images only here, after training, so nothing it chooses sees them.
"""
import json
import sys

__all__ = ["score_epochs", "main"]


def score_epochs(save_dir, rec, epochs, batch_size=100):
    """``[{"epoch", "top1", "top5", "images"}]`` of each epoch's checkpoint on ``rec``."""
    import mxnet as mx

    from ..data import records
    from ..deploy.runtime import val_config
    from ..deploy.source import load_source
    from ..train.evaluation import evaluate

    out = []
    for epoch in epochs:
        src = load_source(save_dir=save_dir, epoch=int(epoch))
        src.net.hybridize(static_alloc=True, static_shape=True)
        data = records.val_iter(val_config(src.info, rec, batch_size, threads=1))
        result = evaluate(src.net, data, [mx.cpu()])
        out.append({"epoch": int(epoch), "top1": result["top1"], "top5": result["top5"],
                    "images": result["images"]})
    return out


def main(argv):
    if len(argv) < 3:
        print("usage: python -m mobilenet_skip.bench.score SAVE_DIR REC EPOCH [EPOCH ...]",
              file=sys.stderr)
        return 2
    for row in score_epochs(argv[0], argv[1], argv[2:]):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
