"""brim.daemon_sample.DaemonSample: a daemon that logs a status line now and then.

A starting point for real daemons: built with ``(name, conf)`` in its own
process, then called once with an env of ``brim.*`` items; it should run
until the process is told to stop. If it returns or raises, brimd starts it
again (with back-off if that keeps happening).
"""

from __future__ import annotations

import os
import time
from typing import Any

from brim.conf import Option, read_options


class DaemonSample:
    """Log a line every ``interval`` seconds (default 60) and count the lines."""

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self.name = name
        self.interval = conf["interval"]

    def __call__(self, env: dict[str, Any]) -> None:
        logger = env["brim.logger"]
        stats = env["brim.stats"]
        started = time.time()
        while True:
            stats.incr(f"{self.name}.iterations")
            stats.set(f"{self.name}.last_run", time.time())
            logger.info("%s: sample daemon pid %d alive for %ds, iteration %d",
                        self.name, os.getpid(), time.time() - started,
                        stats.get(f"{self.name}.iterations"))
            time.sleep(self.interval)

    #: The options of its section (besides ``call``); brimd refuses any other.
    conf_options = (
        Option("interval", "float", 60.0, "Seconds between the daemon's log lines.",
               minimum=0.01),
    )

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[str, Any]:
        return read_options(conf, name, cls.conf_options)

    @classmethod
    def stats_conf(cls, name: str, conf: Any) -> list[tuple[str, str]]:
        return [(f"{name}.iterations", "sum"), (f"{name}.last_run", "max")]
