"""Reaping: what the master does when a worker exits, and restart back-off.

A worker that died unasked gets its slot started again, under the same id:
at once the first time, then after ``restart_delay`` doubled per
consecutive early death, up to ``restart_delay_max``; a worker that lived
``stable_after`` seconds resets the count. A replacement that dies before
it was up leaves its slot to the worker it was to replace. A worker that
exits during a start check fails it (see :mod:`brim.supervisor.startcheck`).
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brim.supervisor.pool import Child, Pool
    from brim.supervisor.startcheck import StartCheck

__all__ = ["Reaper", "describe_status"]


def describe_status(status: int) -> str:
    """'exit code 3' or 'signal SIGKILL' for a ``waitpid`` status."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = str(sig)
        return f"signal {name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def exit_cause(child: Child, stopping: bool) -> str:
    """Why a reaped worker went: ``hung`` (killed for missing heartbeats), ``recycled``,
    ``retired`` (drained: a reload, a resize, a stop; or a previous image's worker) or
    ``crash`` (anything else: it exited, or someone else killed it)."""
    if child.hung:
        return "hung"
    if child.recycle is not None:
        return "recycled"
    if stopping or child.retired or child.standby or child.adopted or child.held:
        return "retired"
    return "crash"


class Reaper:
    """Reaps exited workers and decides when each slot starts again.

    ``on_child_exit(group, worker_id, pid, status)`` is the supervisor's
    hook; ``status_changed()`` is told when a slot lost its worker.
    ``reap_orphans``: reap any other child as well (PID 1 or subreaper duty).
    """

    def __init__(self, pool: Pool, start_check: StartCheck, *, restart_delay: float,
                 restart_delay_max: float, stable_after: float, reap_orphans: bool,
                 on_child_exit: Callable[[str, int, int, int], Any],
                 status_changed: Callable[[], None]) -> None:
        self.pool = pool
        self.start_check = start_check
        self.restart_delay = restart_delay
        self.restart_delay_max = restart_delay_max
        self.stable_after = stable_after
        self.reap_orphans = reap_orphans
        self.on_child_exit = on_child_exit
        self.status_changed = status_changed
        #: Why the worker last reaped went (see exit_cause), for on_child_exit.
        self.exit_cause = ""
        #: Whether the master killed it, and a copy of its notes (see HeartbeatSlot).
        self.exit_killed = False
        self.exit_notes = b""

    def reap(self, stopping: bool) -> None:
        if self.reap_orphans:
            self._reap_any(stopping)
        for pid in list(self.pool.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done != 0:
                self._reaped(pid, status, stopping)

    def next_wake(self, now: float) -> float:
        """When the next slot without a worker is due to start one."""
        due = [slot.next_start for slot in self.pool.slots.values() if slot.pid is None]
        return min(due, default=math.inf)

    def _reap_any(self, stopping: bool) -> None:
        """Reap every exited child, ours or adopted (PID 1 or subreaper duty)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.pool.children:
                self._reaped(pid, status, stopping)
            else:
                self.pool.log.info("%s: reaped orphaned process %d (%s)", self.pool.name, pid,
                                   describe_status(status))

    def _reaped(self, pid: int, status: int, stopping: bool) -> None:
        child = self.pool.children.pop(pid)
        self.exit_notes = child.heartbeat.take_notes()
        child.heartbeat.close()
        self._child_exited(child, status, stopping)
        self.exit_cause = exit_cause(child, stopping)
        self.exit_killed = child.killed
        try:
            self.on_child_exit(child.group, child.worker_id, pid, status)
        finally:
            self.exit_notes = b""

    def _child_exited(self, child: Child, status: int, stopping: bool) -> None:
        pool = self.pool
        how = describe_status(status)
        slot = pool.slots.get((child.group, child.worker_id))
        old = next((c for c in pool.children.values() if c.replacement == child.pid), None)
        if old is not None and slot is not None and not stopping:
            # A replacement that died before it was up: the worker it was to
            # replace never stopped serving, and keeps its slot for now.
            old.replacement = None
            slot.pid = old.pid
            slot.failures += 1
            old.recycle_after = time.monotonic() + min(
                self.restart_delay * 2 ** (slot.failures - 1), self.restart_delay_max)
            pool.log.warning(
                "%s: replacement worker %s %d (pid %d) exited with %s before it was up; "
                "pid %d keeps serving", pool.name, child.group, child.worker_id, child.pid,
                how, old.pid)
            self.start_check.note_exit(child, how)
            return
        if not (stopping or child.retired or child.standby) and child.recycle is None:
            self.start_check.note_exit(child, how)
        if stopping or child.retired or slot is None or slot.pid != child.pid:
            pool.log.info(
                "%s: worker %s %d (pid %d) exited with %s",
                pool.name, child.group, child.worker_id, child.pid, how,
            )
            return
        now = time.monotonic()
        if now - child.started >= self.stable_after:
            slot.failures = 0
        slot.failures += 1
        delay = 0.0
        if slot.failures > 1:
            delay = min(self.restart_delay * 2 ** (slot.failures - 2), self.restart_delay_max)
        slot.pid = None
        slot.next_start = now + delay
        self.status_changed()
        pool.log.warning(
            "%s: worker %s %d (pid %d) exited unexpectedly with %s; restarting %s",
            pool.name, child.group, child.worker_id, child.pid, how,
            f"in {delay:.2f}s" if delay else "now",
        )
