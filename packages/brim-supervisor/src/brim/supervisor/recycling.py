"""Recycling: replacing workers on purpose, the replacement first.

A worker is recycled when it outlives ``max_lifetime``, grows past
``max_rss``, or asks for it (:meth:`WorkerContext.request_recycle`, e.g.
after so many requests). Its replacement is started under the same id first;
only once that one is up is the old one asked to drain, and at most
``concurrency`` workers of a group are being recycled at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brim.supervisor._linux import process_rss
from brim.supervisor.errors import SupervisorError

if TYPE_CHECKING:
    from brim.supervisor.pool import Child, Pool, Slot

__all__ = ["Recycler", "Recycling"]

#: How often each worker's RSS is read when its group has ``max_rss``.
RSS_EVERY = 1.0


@dataclass(frozen=True)
class Recycling:
    """When a group's workers are replaced on purpose, and how many at once.

    ``max_lifetime`` (seconds) and ``max_rss`` (bytes) are checked by the
    master; a worker may also ask for it itself
    (:meth:`WorkerContext.request_recycle`, e.g. after so many requests).
    Why the replacement comes first: the group never has fewer workers
    taking connections than configured, so recycling costs clients nothing.
    """

    max_lifetime: float | None = None
    max_rss: int | None = None
    concurrency: int = 1

    def __post_init__(self) -> None:
        if self.max_lifetime is not None and self.max_lifetime <= 0:
            raise SupervisorError(f"max_lifetime must be > 0, not {self.max_lifetime!r}")
        if self.max_rss is not None and self.max_rss <= 0:
            raise SupervisorError(f"max_rss must be > 0, not {self.max_rss!r}")
        if self.concurrency < 1:
            raise SupervisorError(f"recycle concurrency must be >= 1, not {self.concurrency!r}")


class Recycler:
    """The master's recycling policy, one tick at a time.

    ``spawn(slot)`` forks a worker into a slot (the slot's pid is unchanged
    if the fork failed); ``on_recycle(group, worker_id, pid, reason)`` is
    the supervisor's hook.
    """

    def __init__(self, pool: Pool, spawn: Callable[[Slot], None],
                 on_recycle: Callable[[str, int, int, str], Any],
                 restart_delay: float) -> None:
        self.pool = pool
        self.spawn = spawn
        self.on_recycle = on_recycle
        self.restart_delay = restart_delay

    def want(self, child: Child, reason: str) -> None:
        """Note that ``child`` is to be recycled (once; never a retiring one)."""
        if child.recycle is None and not child.retired and not child.killed:
            child.recycle = reason

    @property
    def busy(self) -> bool:
        """Whether a recycle is under way (the loop then wakes often)."""
        return any(c.recycle is not None and not c.retired
                   for c in self.pool.children.values())

    def tick(self, now: float) -> None:
        """Note workers due for recycling, finish started recycles, start new ones."""
        pool = self.pool
        for child in list(pool.children.values()):
            group = pool.groups.get(child.group)
            if group is None or child.retired or child.recycle is not None or child.adopted:
                continue
            rules = group.recycling
            if rules.max_lifetime and now - child.started >= rules.max_lifetime:
                self.want(child, f"max_worker_lifetime {rules.max_lifetime:g}s reached")
            elif rules.max_rss and now >= child.rss_checked + RSS_EVERY:
                child.rss_checked = now
                rss = process_rss(child.pid)
                if rss is not None and rss > rules.max_rss:
                    self.want(child, f"max_worker_rss: RSS {rss / 2**20:.0f} MiB "
                                     f"over {rules.max_rss / 2**20:g} MiB")
        for child in list(pool.children.values()):
            new = pool.children.get(child.replacement) if child.replacement else None
            if new is not None and pool.is_up(new, now):
                child.replacement = None
                pool.log.info("%s: worker %s %d (pid %d) recycled (%s): pid %d took over",
                              pool.name, child.group, child.worker_id, child.pid,
                              child.recycle, new.pid)
                pool.retire(child)
        for name, group in pool.groups.items():
            mine = [c for c in pool.children.values() if c.group == name]
            busy = sum(1 for c in mine if c.recycle is not None
                       and (c.replacement is not None or c.retired))
            due = sorted((c for c in mine if c.recycle is not None and not c.retired
                          and c.replacement is None and c.recycle_after <= now),
                         key=lambda c: c.started)
            for child in due[:max(0, group.recycling.concurrency - busy)]:
                self._start(child)

    def _start(self, child: Child) -> None:
        pool = self.pool
        slot = pool.slots.get((child.group, child.worker_id))
        if slot is None or slot.pid != child.pid:
            return
        self.spawn(slot)
        if slot.pid == child.pid:  # fork failed; spawn logged it
            child.recycle_after = time.monotonic() + self.restart_delay
            return
        child.replacement = slot.pid
        pool.log.info("%s: recycling worker %s %d (pid %d): %s; replacement pid %s",
                      pool.name, child.group, child.worker_id, child.pid, child.recycle,
                      slot.pid)
        self.on_recycle(child.group, child.worker_id, child.pid, child.recycle or "")
