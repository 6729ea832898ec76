"""The worker's side of the supervisor: :class:`WorkerContext` and :func:`run_child`.

Each worker runs ``target(ctx)``. The context tells it who it is (group and a
stable worker id, 0..N-1, that survives restarts so per-worker resources
such as stats buckets can be keyed on it), lets it prove it is alive
(:meth:`WorkerContext.heartbeat`), say it is up (:meth:`WorkerContext.ready`),
ask to be replaced (:meth:`WorkerContext.request_recycle`), and tells it when
it should stop taking new work (:attr:`WorkerContext.draining`).

:func:`run_child` is what a freshly forked worker runs: it undoes the
master's process state (signal handlers, descriptors), runs the target and
turns its outcome into an exit status, so nothing of the master's loop runs
in a worker.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from brim.supervisor._linux import set_parent_death_signal
from brim.supervisor.control import ERROR, READY, RECYCLE, ControlChannel
from brim.supervisor.daemon import is_daemonized
from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.output import capture_output, flush_std_streams
from brim.supervisor.proctitle import set_process_title


class WorkerContext:
    """The identity and master link of one worker process."""

    __slots__ = ("_control", "_slot", "group", "master_pid", "single", "supervisor_name",
                 "title", "worker_id")

    def __init__(
        self,
        group: str,
        worker_id: int,
        master_pid: int,
        slot: HeartbeatSlot,
        supervisor_name: str,
        title: str,
        control: ControlChannel | None = None,
    ) -> None:
        self.group = group
        self.worker_id = worker_id
        self.master_pid = master_pid
        self.supervisor_name = supervisor_name
        self.title = title
        self._slot = slot
        self._control = control
        #: True when the target runs in this very process, with no master
        #: (see :meth:`detached`): signals and exits are then the runner's.
        self.single = False

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
        ctx = cls(group, worker_id, os.getppid(), HeartbeatSlot(), supervisor_name, title)
        ctx.single = True
        return ctx

    def request_drain(self) -> None:
        """Mark this worker as draining, as the master does before sending SIGHUP."""
        self._slot.request_drain()

    def mark_going_away(self) -> None:
        """Make :attr:`going_away` true while the worker still serves everything:
        what the master does during a stop's drain delay, for a runner with no
        master (see :meth:`detached`) to do itself."""
        self._slot.mark_unready()

    def ready(self) -> None:
        """Say "started and serving": the master's start check waits for this.

        Only groups added with ``announces_ready=True`` wait for it; for the
        others a worker counts as up once forked.
        """
        self._slot.mark_ready()
        if self._control is not None:
            self._control.send(READY)

    def request_recycle(self, reason: str) -> None:
        """Ask the master to replace this worker (say, after ``max_requests``).

        The worker goes on serving: the master starts its replacement first
        and asks this one to drain only once the replacement is up.
        """
        if self._control is not None:
            self._control.send(RECYCLE, reason)

    def report_error(self, text: str) -> None:
        """Give the master the error this worker is failing with (a traceback).

        It is what ``brimd start`` prints when a worker cannot stay up.
        """
        if self._control is not None:
            self._control.send(ERROR, text)

    def __repr__(self) -> str:
        return f"<WorkerContext {self.group} {self.worker_id} pid {os.getpid()}>"

    @property
    def notes(self) -> mmap.mmap | None:
        """This worker's shared notes (its group's ``notes_size`` bytes), or None.

        Whatever the worker writes here, the master reads after the worker
        exited, even when it was killed (:attr:`Supervisor.exit_notes`).
        """
        return self._slot.notes

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

    @property
    def going_away(self) -> bool:
        """True once a readiness check should say "not ready".

        Set from the start of a stop's drain delay (the worker still serves
        everything, so a load balancer has time to notice and stop sending)
        and whenever :attr:`draining` is.
        """
        return self._slot.unready() or self.draining


@dataclass
class ChildSetup:
    """What a newly forked worker needs from its master, in one record."""

    group: str
    worker_id: int
    title: str
    master_pid: int
    supervisor_name: str
    heartbeat: HeartbeatSlot
    control: ControlChannel
    #: The signal mask to restore (the master blocks its signals around fork).
    mask: set[int]
    log: logging.Logger
    #: Signals to set back to their default action, and to ignore.
    reset_signals: tuple[int, ...]
    ignore_signals: tuple[int, ...]
    #: The signal the kernel sends when the master dies.
    death_signal: int
    capture_output: bool | None
    #: Closes the master's own descriptors in the child (its wake pipe,
    #: hand-over socket, other workers' heartbeat slots).
    release_master: Callable[[], None]
    after_fork_child: Callable[[WorkerContext], Any] | None = None


def run_child(setup: ChildSetup, target: Callable[[WorkerContext], Any]) -> NoReturn:
    """Runs in the new worker: clean up the master's state, run the target, exit."""
    code = 1
    ctx: WorkerContext | None = None
    try:
        signal.set_wakeup_fd(-1)
        for sig in setup.reset_signals:
            signal.signal(sig, signal.SIG_DFL)
        # Ignored until the worker installs handlers of its own: SIGINT
        # reaches the whole process group on Ctrl-C (the master turns it into
        # an orderly stop); a reopen or dump signal's default action would end
        # a worker that is still starting.
        for sig in setup.ignore_signals:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, setup.mask)
        set_parent_death_signal(setup.death_signal)
        if os.getppid() != setup.master_pid:
            os._exit(0)  # the master died while we were being born
        setup.release_master()
        setup.control.close_reader()
        capture = setup.capture_output
        if capture is None:
            capture = is_daemonized()
        if capture:
            capture_output(setup.log)
        set_process_title(f"{setup.supervisor_name}: {setup.title}")
        ctx = WorkerContext(setup.group, setup.worker_id, setup.master_pid, setup.heartbeat,
                            setup.supervisor_name, setup.title, setup.control)
        if setup.after_fork_child is not None:
            setup.after_fork_child(ctx)
            set_parent_death_signal(setup.death_signal)  # a credential change clears it
        code = _exit_code(target(ctx), setup.log)
    except SystemExit as exc:
        code = _exit_code(exc.code, setup.log)
    except BaseException as exc:
        try:
            setup.control.send(ERROR, "".join(traceback.format_exception(exc)).rstrip())
            setup.log.exception(
                "%s: worker %s %d (pid %d) crashed",
                setup.supervisor_name, setup.group, setup.worker_id, os.getpid(),
            )
        except BaseException:
            pass
    finally:
        _flush_all()
        os._exit(code)


def _exit_code(result: Any, log: logging.Logger) -> int:
    if result is None:
        return 0
    if isinstance(result, bool):
        return int(result)
    if isinstance(result, int):
        return result & 0xFF
    log.error("worker exited with %r", result)
    return 1


def _flush_all() -> None:
    flush_std_streams()
    for handler in list(logging.getLogger().handlers) + _all_handlers():
        try:
            handler.flush()
        except Exception:
            pass


def _all_handlers() -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    return handlers
