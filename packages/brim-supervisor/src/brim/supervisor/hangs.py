"""Workers that do not finish: hung ones, and draining ones past their grace.

A worker silent past its group's ``timeout`` (no heartbeat) first gets
``dump_signal``, a chance to log its stacks, then SIGKILL ``dump_wait``
seconds later; the supervisor restarts it. A worker asked to drain that is
still alive ``grace`` seconds later is killed.
"""

from __future__ import annotations

import math
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brim.supervisor.pool import Pool

__all__ = ["HangCheck"]


class HangCheck:
    """The master's hang check, one tick at a time."""

    def __init__(self, pool: Pool, dump_signal: int | None, dump_wait: float) -> None:
        self.pool = pool
        self.dump_signal = dump_signal
        self.dump_wait = dump_wait

    def tick(self, now: float) -> None:
        self._check_hung(now)
        self._check_draining(now)

    def next_wake(self, now: float) -> float:
        """When the next check may be due: a kill deadline, or a quarter of a timeout."""
        wake = math.inf
        for child in self.pool.children.values():
            if child.kill_at is not None and not child.killed:
                wake = min(wake, child.kill_at)
        timeouts = [g.timeout for g in self.pool.groups.values() if g.timeout]
        if timeouts:
            wake = min(wake, now + min(timeouts) / 4)
        return wake

    def _check_draining(self, now: float) -> None:
        pool = self.pool
        for child in pool.children.values():
            due = child.kill_at is not None and now >= child.kill_at
            if child.retired and not child.killed and due:
                pool.kill(child, "%s: killing draining worker %s %d (pid %d): "
                          "still busy after %gs", pool.grace)

    def _check_hung(self, now: float) -> None:
        pool = self.pool
        for child in pool.children.values():
            if child.retired or child.killed or child.adopted:
                continue
            group = pool.groups.get(child.group)
            if group is None or not group.timeout:
                continue
            silent = now - child.heartbeat.last()
            if silent <= group.timeout:
                child.dump_at = None  # it recovered: a later hang gets its own dump
                continue
            if self.dump_signal is not None and child.dump_at is None:
                # A Python signal handler runs even while the worker's loop is
                # blocked, on the very frame that blocks it: its stacks are the
                # one clue to why it hung.
                child.dump_at = now
                pool.log.warning(
                    "%s: worker %s %d (pid %d) hung: no heartbeat for %.1fs; asked it for a "
                    "stack dump (%s), killing it in %gs", pool.name, child.group,
                    child.worker_id, child.pid, silent, signal.Signals(self.dump_signal).name,
                    self.dump_wait)
                pool.signal(child, self.dump_signal)
            elif child.dump_at is None or now >= child.dump_at + self.dump_wait:
                child.hung = True
                pool.kill(child, "%s: worker %s %d (pid %d) hung: no heartbeat for %.1fs, "
                          "killing it", silent)
