"""What a training run leaves behind, as training writes it and deployment reads it: the
layer below both ``train`` and ``deploy``, so that neither imports the other.

- :mod:`.folder`: the run folder (:class:`~.folder.RunDir`), the one place that knows its
  file names, and its only writer; :mod:`.metrics`: the rows of its metrics.csv;
- :mod:`.checkpoints`: the epoch checkpoints and their markers; :mod:`.states`: the
  optimizer state they hold, saved without pickle; :mod:`.bnstats`: BatchNorm running
  statistics that are the same on every device and in the checkpoint;
- :mod:`.sidecar`: an export's description (model, input size, preprocessing) and the
  validation iterator it implies;
- :mod:`.digests`: the SHA-256 that markers and sidecars record of the files they
  describe, checked before a reader uses them;
- :mod:`.scorer`: :func:`~.scorer.evaluate`, the one single-crop scorer of training's
  validation, of exports and of checkpoints.

Kept import-light: importing the package loads no MXNet.
"""
