"""Scaling: one worker more or fewer at run time (TTIN and TTOU, gunicorn's convention).

Only groups added with ``max_workers`` scale, between one worker and that
many. A new worker gets the next id; the one with the highest id drains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from brim.supervisor.errors import SupervisorError

if TYPE_CHECKING:
    from brim.supervisor.pool import Group, Pool

__all__ = ["Scaling"]


class Scaling:
    """Adds and removes slots; ``wake()`` gets the master loop to fill a new one."""

    def __init__(self, pool: Pool, wake: Callable[[], None]) -> None:
        self.pool = pool
        self.wake = wake

    def add_worker(self, group: str) -> bool:
        """One more worker in *group* (up to its ``max_workers``); False if at the limit."""
        from brim.supervisor.pool import Slot

        g = self._scalable(group)
        if g.max_workers is not None and g.workers >= g.max_workers:
            return False
        self.pool.slots[(group, g.workers)] = Slot(g, g.workers)
        g.workers += 1
        self.wake()
        return True

    def remove_worker(self, group: str) -> bool:
        """One worker fewer in *group* (the highest id drains); False if one is left."""
        pool = self.pool
        g = self._scalable(group)
        if g.workers <= 1:
            return False
        g.workers -= 1
        slot = pool.slots.pop((group, g.workers))
        for child in list(pool.children.values()):
            mine = child.group == group and child.worker_id == g.workers
            if mine and not child.retired:
                child.replacement = None
                pool.retire(child)
        slot.pid = None
        return True

    def scale(self, more: bool) -> None:
        """TTIN (``more``) or TTOU: every group with ``max_workers``, logged."""
        pool = self.pool
        for name, group in list(pool.groups.items()):
            if group.max_workers is None:
                continue
            changed = self.add_worker(name) if more else self.remove_worker(name)
            pool.log.info(
                "%s: %s: %s, now %d worker(s)", pool.name, name,
                ("one worker more" if more else "one worker fewer") if changed
                else f"unchanged (limits 1..{group.max_workers})", group.workers,
            )

    def _scalable(self, group: str) -> Group:
        g = self.pool.groups.get(group)
        if g is None:
            raise SupervisorError(f"no group {group!r}")
        return g
