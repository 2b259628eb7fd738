"""Training: devices and kvstore, optimizer and lr schedule, the step, the loop, the run folder.

Kept import-light: deployment reads a run folder through :mod:`.rundir` without
pulling in the training machinery.
"""
