"""Forking workers into their slots: the one place the master forks.

Every slot without a worker gets one once its ``next_start`` (set by the
reaper's back-off) has come. The signals the master handles are blocked
across the fork, so none can land in the new worker before it has reset
them (see :func:`brim.supervisor.worker.run_child`); a fork that fails is
retried ``restart_delay`` seconds later.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.signals import HANDLED
from brim.supervisor.worker import ChildSetup, run_child

if TYPE_CHECKING:
    from brim.supervisor.pool import Group, Pool, Slot

__all__ = ["Forker"]

#: What a new worker is told: its group, id, heartbeat and the signal mask to restore.
SetupFor = Callable[["Group", int, HeartbeatSlot, "set[int]"], ChildSetup]


class Forker:
    """Starts workers: ``before_fork(group, worker_id)`` is the supervisor's hook,
    ``setup_for`` builds what :func:`run_child` needs in the new worker."""

    def __init__(self, pool: Pool, *, restart_delay: float,
                 before_fork: Callable[[str, int], Any], setup_for: SetupFor) -> None:
        self.pool = pool
        self.restart_delay = restart_delay
        self.before_fork = before_fork
        self.setup_for = setup_for

    def spawn_due(self, now: float) -> None:
        for slot in list(self.pool.slots.values()):
            if slot.pid is None and slot.next_start <= now:
                self.spawn(slot)

    def spawn(self, slot: Slot) -> None:
        """Fork a worker into ``slot`` (its pid is left as it was if the fork failed)."""
        from brim.supervisor.pool import Child

        pool = self.pool
        group = slot.group
        self.before_fork(group.name, slot.worker_id)
        heartbeat = HeartbeatSlot(group.notes_size)
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        try:
            pid = os.fork()
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            heartbeat.close()
            slot.failures += 1
            slot.next_start = time.monotonic() + self.restart_delay
            pool.log.error(
                "%s: cannot start worker %s %d: fork failed: %s",
                pool.name, group.name, slot.worker_id, err.strerror,
            )
            return
        if pid == 0:  # the new worker: never returns
            run_child(self.setup_for(group, slot.worker_id, heartbeat, old_mask), group.target)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        slot.pid = pid
        pool.children[pid] = Child(pid, group.name, slot.worker_id, heartbeat, time.monotonic())
        pool.log.info(
            "%s: started worker %s %d (pid %d)", pool.name, group.name, slot.worker_id, pid
        )
