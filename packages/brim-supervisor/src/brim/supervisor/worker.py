"""What a worker process is given: :class:`WorkerContext`.

Each worker runs ``target(ctx)``. The context tells it who it is (group and a
stable worker id, 0..N-1, that survives restarts so per-worker resources
such as stats buckets can be keyed on it), lets it prove it is alive
(:meth:`WorkerContext.heartbeat`), and tells it when it should stop taking
new work (:attr:`WorkerContext.draining`).
"""

from __future__ import annotations

import os

from brim.supervisor.heartbeat import HeartbeatSlot


class WorkerContext:
    """The identity and master link of one worker process."""

    __slots__ = ("_slot", "group", "master_pid", "supervisor_name", "title", "worker_id")

    def __init__(
        self,
        group: str,
        worker_id: int,
        master_pid: int,
        slot: HeartbeatSlot,
        supervisor_name: str,
        title: str,
    ) -> None:
        self.group = group
        self.worker_id = worker_id
        self.master_pid = master_pid
        self.supervisor_name = supervisor_name
        self.title = title
        self._slot = slot

    @classmethod
    def detached(
        cls, group: str = "main", worker_id: int = 0, supervisor_name: str = "brim"
    ) -> WorkerContext:
        """A context for running a target in this very process, with no master.

        Why: a launcher's debugging mode ("no-daemon, no fork") can call the
        same ``target(ctx)``. Its "master" is this process's parent, so
        :attr:`draining` turns true only by :meth:`request_drain` or if that
        parent goes away.
        """
        title = f"{group} worker {worker_id}"
        return cls(group, worker_id, os.getppid(), HeartbeatSlot(), supervisor_name, title)

    def request_drain(self) -> None:
        """Mark this worker as draining, as the master does before sending SIGHUP."""
        self._slot.request_drain()

    def __repr__(self) -> str:
        return f"<WorkerContext {self.group} {self.worker_id} pid {os.getpid()}>"

    def heartbeat(self) -> None:
        """Say "still alive": call it from the worker's main loop.

        When the supervisor has a ``timeout``, a worker that does not call
        this for longer than that is taken as hung, killed and replaced. It is
        a single store into shared memory, cheap enough to call per request.
        """
        self._slot.beat()

    @property
    def master_alive(self) -> bool:
        """False once the master has died (this process was re-parented)."""
        return os.getppid() == self.master_pid

    @property
    def draining(self) -> bool:
        """True once the worker should stop taking new work, finish, and exit.

        Set when the master asked it to drain (graceful shutdown, reload,
        group removal; the master also sends SIGHUP) or when the master is
        gone. Reading it costs a memory read and a ``getppid()``.
        """
        return self._slot.drain_requested() or not self.master_alive
