"""Training, one concern a module.

- :mod:`.devices`: contexts, the kvstore, the worker's rank;
- :mod:`.optim`: the optimizer and lr-mode registries, TF's RMSProp; :mod:`.states`
  their state saved without pickle;
- :mod:`.net`: the network as the recipe builds it; :mod:`.step`: the loss, one step
  and its running sums;
- :mod:`.loop`: ``fit``, reporting through :mod:`.callbacks`; :mod:`.guard`: signals,
  NaN losses; :mod:`.dist`: alone or dist_sync, one strategy; :mod:`.feed`: the run's data;
- :mod:`.rundir`: the run folder, its only reader and writer; :mod:`.resume`: starting
  or resuming in it; :mod:`.logs`: the log lines;
- :mod:`.measure`: the train benchmark's measuring process.

Kept import-light: deployment reads a run folder through :mod:`.rundir` without
pulling in the training machinery.
"""
