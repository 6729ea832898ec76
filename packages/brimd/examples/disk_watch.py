"""DiskWatch: a brimd daemon that keeps an eye on the free space of a filesystem.

The example of the daemons guide (docs/daemons.rst). It runs in a process
of its own: it may block and sleep as it likes. brimd ends it with SIGTERM
on stop, and starts it again if it returns or raises.
"""

from __future__ import annotations

import os
import time
from typing import Any


class DiskWatch:
    """Every ``interval`` seconds, record the free bytes under ``path``; warn when low."""

    def __init__(self, name: str, conf: dict[str, Any]) -> None:
        self.name = name
        self.path = conf["path"]
        self.interval = conf["interval"]
        self.low = conf["low_bytes"]

    def __call__(self, env: dict[str, Any]) -> None:
        logger, stats = env["brim.logger"], env["brim.stats"]
        logger.info("%s: watching %s every %gs", self.name, self.path, self.interval)
        while True:
            st = os.statvfs(self.path)
            free = st.f_bavail * st.f_frsize
            stats.set(f"{self.name}.free_bytes", free)
            stats.set(f"{self.name}.checked", time.time())
            if free < self.low:
                logger.warning("%s: only %d bytes free under %s", self.name, free, self.path)
            time.sleep(self.interval)

    @classmethod
    def parse_conf(cls, name: str, conf: Any) -> dict[str, Any]:
        path = conf.get_path(name, "path", "/")
        if not os.path.isdir(path):
            raise conf.error(name, "path", f"{path!r} is not a directory")
        return {
            "path": path,
            "interval": conf.get_float(name, "interval", 60.0, minimum=0.1),
            "low_bytes": conf.get_int(name, "low_bytes", 1 << 30, minimum=0),
        }

    @classmethod
    def stats_conf(cls, name: str, conf: dict[str, Any]) -> list[tuple[str, str]]:
        return [(f"{name}.free_bytes", "worker"), (f"{name}.checked", "worker")]
