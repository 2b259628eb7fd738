"""Processes for a ``dist_sync`` job: MXNet's own distributed launcher
(``mxnet/tools/launch.py``), made to run on Python 3.11, safe with any argument, and unable
to hang when one of its processes dies.

What stops the launcher shipped with mxnet 1.9.1, and which module deals with it:

* the wheel ships ``launch.py`` but not the ``dmlc_tracker`` package it imports;
  :func:`.tracker.install_tracker` installs it;
* ``dmlc_tracker`` calls ``Thread.isAlive``, removed in Python 3.9. :func:`.launcher.run`
  restores the alias and then runs MXNet's ``launch.py`` unchanged;
* the launchers join the command's arguments with spaces and run the result through a
  shell, so :mod:`.command` quotes every argument first (:func:`.command.quote_command`);
  the ssh launcher also pastes the hostfile's hosts and the working directory in bare, so
  :mod:`.ssh` builds its lines instead (:func:`.ssh.ssh_line`);
* the local launcher waits for the scheduler only: when a worker or server dies, the
  others wait for it forever. :class:`.supervisor.Supervisor` watches every process the
  launcher starts; the first one to fail stops the rest, and the launcher says which one
  failed.
"""
