"""Which signals the master handles, and what a new worker does with them.

Apart from :mod:`brim.supervisor.master` because the master loop, forking a
worker and retiring one all need them.
"""

from __future__ import annotations

import signal

from brim.supervisor.dump import DUMP_SIGNAL

__all__ = ["DRAIN_SIGNAL", "HANDLED", "IGNORE_IN_CHILD", "REOPEN_SIGNAL", "RESET_IN_CHILD"]

#: The signal a worker receives when it must drain (finish and exit).
DRAIN_SIGNAL = signal.SIGHUP
#: The signal that asks the master, then every worker, to reopen its log
#: files: the convention logrotate's postrotate uses for nginx and gunicorn.
REOPEN_SIGNAL = signal.SIGUSR1

#: The signals the master loop acts on (their handlers only note them).
HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
           REOPEN_SIGNAL, signal.SIGTTIN, signal.SIGTTOU, DUMP_SIGNAL)
#: Back to their default disposition in a new worker.
RESET_IN_CHILD = (
    signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM,
    signal.SIGTTIN, signal.SIGTTOU,
)
#: Ignored by a new worker until it installs handlers of its own.
IGNORE_IN_CHILD = (signal.SIGINT, REOPEN_SIGNAL, DUMP_SIGNAL)
