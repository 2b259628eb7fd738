"""Deployment: trained weights as files other programs load, and those files at work.

- :mod:`.artifact`: an export on disk (symbol, params, synsets, the sidecar) and in
  memory (:class:`~.artifact.Graph`), and writing it;
- :mod:`.loading`: reading an export back, every broken file named; :mod:`.limits`:
  the input sizes a graph can run at here (memory, oneDNN's fatal 1x1 convolution);
- :mod:`.source`: where the weights come from (an export, a run's epoch, a checkpoint);
- :mod:`.registry`: the deployment forms (fp32, fused, :mod:`.int8`, :mod:`.onnx`, ONNX
  Runtime INT8 :mod:`.ort_int8`), the sidecar kinds they write and the runtime that runs
  each, light enough for every reader to import;
- :mod:`.forms`: writing those forms, each derived from the FP32 graph in memory;
- :mod:`.run`: :func:`export_run`, the export a training run ends with;
- :mod:`.runtime`: the runtimes (MXNet's SymbolBlock or Module, ONNX Runtime) behind
  one interface, :class:`~.runtime.Runner`; :mod:`.scoring`: single-crop top-1/top-5 of
  any runner; :mod:`.report`: what an evaluation gets wrong (per-class top-1, confusion
  matrix, misclassified images); :mod:`.int8_report`: what the INT8 forms buy (latency,
  file size);
- :mod:`.images`: single images, read, decoded and preprocessed, and their top-k;
  :mod:`.predicting`: many of them in batches.

Nothing here imports :mod:`mobilenet_skip.train`: a run folder, its checkpoints, the
sidecar's preprocessing and the scorer are :mod:`mobilenet_skip.runs`'.
"""
from .run import export_run

__all__ = ["export_run"]
