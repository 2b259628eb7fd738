"""mobilenet-skip: MobileNet v1 with residual skip connections, in MXNet/Gluon.

MXNet is not in install_requires because it comes in two flavours that must not
be installed together; pick one with an extra (`pip install .[cpu]` or `.[gpu]`)
or, for the exact pinned set, `make FLAVOUR=cpu|gpu` (see README).
gluoncv is required: the benchmark trains and times gluoncv's own MobileNet beside ours
(mobilenet_skip.bench, behind tools/benchmark.py).
It declares the GUI `opencv-python`; the lock in requirements/ installs with --no-deps
and keeps only the headless build of the same API.
"""
import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "mobilenet_skip", "__init__.py")) as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="mobilenet-skip",
    version=VERSION,
    description="MobileNet v1 with residual skip connections (Huang, Dong, Bai) in MXNet Gluon",
    long_description=open(os.path.join(HERE, "README.md")).read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mobilenet_skip", "mobilenet_skip.*"]),
    python_requires=">=3.8",
    install_requires=["numpy==1.23.5", "pyyaml", "opencv-python-headless==4.8.1.78",
                      "matplotlib<3.9", "gluoncv==0.10.5.post0"],
    extras_require={
        "cpu": ["mxnet==1.9.1"],
        "gpu": ["mxnet-cu112==1.9.1"],
        "onnx": ["onnx<1.19", "onnxruntime", "ml_dtypes<0.6"],  # ml_dtypes: --onnx-int8
        "demo": ["scikit-learn", "threadpoolctl"],  # threadpoolctl: the study's linear floor
        "tensorboard": ["tensorboardX", "protobuf"],  # --tensorboard's event writer
    },
    classifiers=["Programming Language :: Python :: 3",
                 "Topic :: Scientific/Engineering :: Artificial Intelligence"],
)
