"""The master's tables of workers: groups, slots and live children, in one place.

Why one object: the master loop and each of its policies (start check,
recycling, hang check, reaping, scaling) read and change the same three
tables. Keeping them here, with the few operations they share (is a worker
up, did a group stay up, signal, kill or retire a worker), lets each policy
be an object of its own that reaches into no other.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.recycling import Recycling
from brim.supervisor.signals import DRAIN_SIGNAL
from brim.supervisor.worker import WorkerContext

__all__ = ["Child", "Group", "Pool", "Slot", "Target"]

Target = Callable[[WorkerContext], Any]


@dataclass
class Group:
    name: str
    workers: int
    target: Target
    title: str
    timeout: float | None
    recycling: Recycling
    announces_ready: bool
    max_workers: int | None
    #: Bytes of shared notes per worker (see HeartbeatSlot); 0 for none.
    notes_size: int = 0


@dataclass
class Slot:
    """One position (group, worker id) that must always have a live worker."""

    group: Group
    worker_id: int
    pid: int | None = None
    failures: int = 0
    next_start: float = 0.0


@dataclass
class Child:
    pid: int
    group: str
    worker_id: int
    heartbeat: HeartbeatSlot
    started: float
    retired: bool = False
    kill_at: float | None = None
    killed: bool = False
    #: When it was first seen up (monotonic); None while it starts.
    up_at: float | None = None
    #: Why it is to be recycled; None while it is not.
    recycle: str | None = None
    #: The pid of its replacement while that one starts.
    replacement: int | None = None
    #: No new recycle attempt before this (after a replacement failed).
    recycle_after: float = 0.0
    rss_checked: float = 0.0
    #: When the dump signal was sent to it as hung (monotonic).
    dump_at: float | None = None
    #: The last error it reported through the control pipe.
    last_error: str = ""
    #: Its group was replaced by a reload; it serves until the replacement
    #: passes its start check (see Supervisor.remove_group).
    standby: bool = False
    #: Forked by this process before it re-executed itself (see
    #: Supervisor.adopt): its heartbeat and control pipe are out of reach.
    adopted: bool = False
    #: Kept serving even while no group of its name exists (see adopt).
    held: bool = False
    #: Killed as hung (no heartbeat): see Supervisor.exit_cause.
    hung: bool = False


class Pool:
    """Groups by name, slots by (group, worker id), live children by pid."""

    def __init__(self, name: str, log: logging.Logger, grace: float,
                 start_check: float) -> None:
        self.name = name
        self.log = log
        self.grace = grace
        self.start_check = start_check
        self.groups: dict[str, Group] = {}
        self.slots: dict[tuple[str, int], Slot] = {}
        self.children: dict[int, Child] = {}

    def worker_of(self, slot: Slot) -> Child | None:
        """The live worker a slot currently counts on, if any."""
        return self.children.get(slot.pid) if slot.pid is not None else None

    def is_up(self, child: Child, now: float) -> bool:
        if child.up_at is None:
            group = self.groups.get(child.group)
            if group is None or not group.announces_ready or child.heartbeat.is_ready():
                child.up_at = now
        return child.up_at is not None

    def stayed_up(self, group: str, now: float) -> bool:
        """Whether every worker of ``group`` is up and has been for start_check seconds."""
        for (name, _wid), slot in self.slots.items():
            if name != group:
                continue
            child = self.worker_of(slot)
            if child is None or not self.is_up(child, now):
                return False
            assert child.up_at is not None
            if now - child.up_at < self.start_check:
                return False
        return True

    def up_counts(self) -> dict[str, tuple[int, int]]:
        """Group name to (workers up, workers wanted)."""
        counts = {name: [0, g.workers] for name, g in self.groups.items()}
        now = time.monotonic()
        for (gname, _wid), slot in self.slots.items():
            child = self.worker_of(slot)
            if child is not None and self.is_up(child, now):
                counts[gname][0] += 1
        return {name: (up, wanted) for name, (up, wanted) in counts.items()}

    def status_line(self) -> str:
        """"wsgi 2/2, tcp#echo 1/1": workers up per group, for STATUS= and logs."""
        return ", ".join(f"{name} {up}/{wanted}" for name, (up, wanted)
                         in self.up_counts().items())

    def signal(self, child: Child, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self, child: Child, message: str, *args: Any) -> None:
        """SIGKILL a worker, once; ``message`` gets the supervisor name, the
        worker's group, id and pid, then ``args``, and says why in the log."""
        self.log.warning(message, self.name, child.group, child.worker_id, child.pid, *args)
        child.killed = True
        self.signal(child, signal.SIGKILL)

    def retire(self, child: Child) -> None:
        """Ask a worker to drain; it is killed if still alive after ``grace``."""
        child.retired = True
        child.kill_at = time.monotonic() + self.grace
        child.heartbeat.request_drain()
        self.signal(child, DRAIN_SIGNAL)
