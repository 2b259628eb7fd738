"""Training, one concern a module.

- :mod:`.devices`: contexts, the kvstore, the worker's rank;
- :mod:`.net`: the network as the recipe builds it; :mod:`.step`: the loss, one step
  and its running sums;
- :mod:`.loop`: ``fit``, reporting through :mod:`.callbacks`; :mod:`.guard`: signals,
  NaN losses; :mod:`.dist`: alone or dist_sync, one strategy; :mod:`.feed`: the run's data;
- :mod:`.resume`: starting or resuming in a run folder; :mod:`.logs`: the log lines.

The run folder itself, its checkpoints and the single-crop scorer are
:mod:`mobilenet_skip.runs`, a layer below, which deployment reads without pulling in
the training machinery.
"""
