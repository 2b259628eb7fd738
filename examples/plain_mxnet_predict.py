"""Classify one image with an exported model, using only MXNet and NumPy.

    python examples/plain_mxnet_predict.py PREFIX IMAGE [INPUT_SIZE]

INPUT_SIZE defaults to the one in PREFIX.json, the export's sidecar.
"""
import json
import sys

import mxnet as mx
import numpy as np

prefix = sys.argv[1] if len(sys.argv) > 1 else "runs/full-connect-pre-act/full-connect-pre-act"
image = sys.argv[2] if len(sys.argv) > 2 else "cat.jpg"
# the input size it was trained at: a guess (224) would answer wrongly for a 32 px model
size = int(sys.argv[3]) if len(sys.argv) > 3 else json.load(open(prefix + ".json"))["input_size"]

net = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
img = mx.image.resize_short(mx.image.imread(image), round(size / 0.875), interp=1)  # 256 for 224
img = mx.image.center_crop(img, (size, size))[0].astype("float32")  # RGB, H x W x 3
img = (img - mx.nd.array([123.68, 116.779, 103.939])) / mx.nd.array([58.393, 57.12, 57.375])
probs = net(img.transpose((2, 0, 1)).expand_dims(0)).softmax()[0].asnumpy()
names = open(prefix + ".synsets.txt").read().splitlines()
for i in np.argsort(-probs)[:5]:
    print("%.4f  %s" % (probs[i], names[i]))
