"""no-daemon mode: all of brimd in one foreground process, for debugging.

Every subserver runs as worker 0 in green threads of this one process and
every daemon in a thread, so a debugger or a print() sees all of it, and
Ctrl-C ends it. Nothing is forked, nothing is restarted.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from .core import Server


class LocalContext:
    """The worker context of no-daemon mode: worker 0 of its group, in-process."""

    single = True
    draining = False

    def __init__(self, group: str) -> None:
        self.group = group
        self.worker_id = 0

    def heartbeat(self) -> None:
        """Nobody watches heartbeats here: there is no master."""


def run_single(server: Server) -> int:
    from brim.wsgi import green

    logger = server.setup_logging(stderr=True, syslog=False)
    hubs = [s.hub for s in server.subservers if s.kind != "daemons" and s.hub]
    green.use_hub(hubs[0] if hubs else None)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    for sub in server.subservers:
        if sub.kind == "daemons":
            thread = threading.Thread(target=_run_daemon, args=(sub, server, logger),
                                      name=sub.group, daemon=True)
            thread.start()
    running = [green.spawn(sub.run, LocalContext(sub.group), server)
               for sub in server.subservers if sub.kind != "daemons"]
    logger.info("brimd running in the foreground (no-daemon); Ctrl-C ends it")
    try:
        if running:
            for thread in running:
                thread.wait()
        else:
            while True:
                green.sleep(3600)
    except KeyboardInterrupt:
        logger.info("brimd no-daemon: interrupted, exiting")
        return 0
    return 0


def _run_daemon(sub: Any, server: Server, logger: Any) -> None:
    try:
        sub.run(LocalContext(sub.group), server)
    except Exception:
        logger.exception("daemon %s failed (no-daemon mode does not restart it)", sub.section)
