"""Score a run's checkpoints on another ``.rec``: the converged study's test set.

``python -m mobilenet_skip.bench.score SAVE_DIR REC EPOCH [EPOCH ...]`` prints one JSON
line per epoch, ``{"epoch", "top1", "top5", "images"}``, each epoch's checkpoint loaded
with the run's own settings (:func:`~mobilenet_skip.deploy.source.load_source`) and
scored in memory with the run's validation preprocessing by the one single-crop scorer
(:func:`~mobilenet_skip.deploy.scoring.score`). The study scores its test images only
here, after training, so nothing it chooses sees them.
"""
import json
import sys

__all__ = ["score_epochs", "main"]


def score_epochs(save_dir, rec, epochs, batch_size=100):
    """``[{"epoch", "top1", "top5", "images"}]`` of each epoch's checkpoint on ``rec``."""
    from ..deploy.runtime import network_runner
    from ..deploy.scoring import score
    from ..deploy.source import load_source

    out = []
    for epoch in epochs:
        src = load_source(save_dir=save_dir, epoch=int(epoch))
        result = score(network_runner(src.net, src.info, src.path, batch_size=batch_size), rec,
                       threads=1)
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
