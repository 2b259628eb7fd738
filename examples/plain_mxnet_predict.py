"""Classify one image with an exported model, using only MXNet and NumPy.

    python examples/plain_mxnet_predict.py PREFIX IMAGE [INPUT_SIZE]

PREFIX.json, the export's sidecar, gives the input size (INPUT_SIZE, if given, must be
that), the shorter side to resize to and the mean/std.
"""
import json
import sys

import mxnet as mx
import numpy as np

prefix = sys.argv[1] if len(sys.argv) > 1 else "runs/full-connect-pre-act/full-connect-pre-act"
image = sys.argv[2] if len(sys.argv) > 2 else "cat.jpg"
# how it was trained: a guess (224) would answer wrongly for a 32 px model
side = json.load(open(prefix + ".json"))
size = side["input_size"]
if "resize" not in side or int(sys.argv[3] if len(sys.argv) > 3 else size) != size:
    sys.exit("%s.json: needs the resize entry (re-export it) and input size %d" % (prefix, size))

net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
img = mx.image.resize_short(mx.image.imread(image), side["resize"], interp=1)  # 256 for 224
img = mx.image.center_crop(img, (size, size))[0].astype("float32")  # RGB, H x W x 3
img = (img - mx.nd.array(side["mean_rgb"])) / mx.nd.array(side["std_rgb"])
probs = net(img.transpose((2, 0, 1)).expand_dims(0)).softmax()[0].asnumpy()
names = open(prefix + ".synsets.txt").read().splitlines()
for i in np.argsort(-probs)[:5]:
    print("%.4f  %s" % (probs[i], names[i]))
