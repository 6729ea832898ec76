"""The master process: keeps groups of forked workers alive and obeys signals.

One loop does everything. Signal handlers only note the signal and wake the
loop (through ``signal.set_wakeup_fd`` on a non-blocking pipe); the loop then
reaps exited workers, restarts the ones that died unasked (under the same
worker id, with back-off when they keep dying young), kills hung workers,
answers socket hand-over requests and acts on the noted signals.

Signals to the master:

* TERM, INT -- stop: every worker gets SIGTERM; those still alive after
  ``grace`` seconds get SIGKILL; :meth:`Supervisor.run` returns once all are
  reaped. A second TERM/INT while stopping skips the rest of the grace.
* QUIT -- graceful shutdown: every worker is asked to drain (SIGHUP plus the
  drain flag), the master closes its listening sockets and returns from
  :meth:`~Supervisor.run` at once. The workers finish the connections they
  hold and exit on their own; having outlived the master they are adopted
  and reaped by init (or the nearest subreaper).
* HUP -- reload: calls ``on_reload(supervisor)``; the default replaces every
  worker gracefully (a new one is started under the same id, the old one is
  asked to drain and is killed if still alive after ``grace``).
* TTIN, TTOU -- one worker more, or one fewer, in every group added with
  ``max_workers`` (never fewer than one); gunicorn's convention.
* USR1 -- reopen logs: ``on_reopen(supervisor)`` runs, then every worker
  gets USR1.
* USR2 (:data:`~brim.supervisor.dump.DUMP_SIGNAL`) -- passed on to every
  worker: each logs a stack dump.

Workers talk back through a pipe (:mod:`brim.supervisor.control`): that they
are up, that they want to be recycled, and the error they die of. The master
uses it for three things:

* the start check: after :meth:`Supervisor.run` starts and after each reload,
  ``on_ready`` is called once every worker is up and has stayed up
  ``start_check`` seconds, or ``on_start_failed`` with the first worker's
  last error if one exits first;
* recycling (see :class:`Recycling`): a worker that asks for it, or outlives
  ``max_lifetime``, or grows past ``max_rss``, gets a replacement under the
  same id; only once that replacement is up is the old one asked to drain,
  and at most ``concurrency`` workers of a group are being recycled at once;
* the hung-worker kill: a worker silent past ``timeout`` first gets
  ``dump_signal`` (a chance to log its stacks), then SIGKILL ``dump_wait``
  seconds later.

With a ``notify`` object (:mod:`brim.supervisor.systemd`) the master tells
systemd READY, RELOADING, STOPPING, its STATUS and WATCHDOG pings.

Signals to a worker: SIGTERM means stop now; SIGHUP means drain (stop taking
new work, finish, exit). A worker starts with default dispositions for TERM,
HUP, QUIT, CHLD and ALRM (so, untouched, TERM and HUP simply end it) and with
SIGINT ignored, because a Ctrl-C in a terminal reaches the whole process
group and it is the master's job to turn it into an orderly stop. A worker
also gets SIGHUP from the kernel if the master dies (Linux PR_SET_PDEATHSIG),
and :attr:`WorkerContext.draining` turns true then as well.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brim.supervisor._linux import process_rss, set_child_subreaper
from brim.supervisor.control import ERROR, READY, RECYCLE, ControlChannel
from brim.supervisor.dump import DUMP_SIGNAL
from brim.supervisor.errors import SupervisorError
from brim.supervisor.handover import answer_handover, release_handover, serve_handover
from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.proctitle import set_process_title
from brim.supervisor.worker import ChildSetup, WorkerContext, run_child

#: The signal a worker receives when it must drain (finish and exit).
DRAIN_SIGNAL = signal.SIGHUP
#: The signal that asks the master, then every worker, to reopen its log
#: files: the convention logrotate's postrotate uses for nginx and gunicorn.
REOPEN_SIGNAL = signal.SIGUSR1

_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
            REOPEN_SIGNAL, signal.SIGTTIN, signal.SIGTTOU, DUMP_SIGNAL)
_RESET_IN_CHILD = (
    signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM,
    signal.SIGTTIN, signal.SIGTTOU,
)
_IGNORE_IN_CHILD = (signal.SIGINT, REOPEN_SIGNAL, DUMP_SIGNAL)
_MAX_SLEEP = 1.0
#: How often the master wakes while a start check or a recycle is under way.
_BUSY_SLEEP = 0.05
#: How often each worker's RSS is read when its group has ``max_rss``.
_RSS_EVERY = 1.0
_INHERIT: Any = object()  # "use the supervisor's value"

Target = Callable[[WorkerContext], Any]


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


@dataclass
class _Group:
    name: str
    workers: int
    target: Target
    title: str
    timeout: float | None
    recycling: Recycling
    announces_ready: bool
    max_workers: int | None


@dataclass
class _Slot:
    """One position (group, worker id) that must always have a live worker."""

    group: _Group
    worker_id: int
    pid: int | None = None
    failures: int = 0
    next_start: float = 0.0


@dataclass
class _Child:
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


class Supervisor:
    """A master that keeps named groups of worker processes alive.

    ``name`` prefixes every process title (``"brimd: wsgi worker 0"``).
    ``grace`` is how long workers get to finish after TERM (stop) or after a
    drain request during reload before they are killed. ``timeout`` (None:
    off) kills and replaces a worker whose :meth:`WorkerContext.heartbeat`
    is older than that many seconds; a group may override it.

    Restart back-off: a worker that dies less than ``stable_after`` seconds
    after it started counts as a failure; the first failure restarts at once,
    later consecutive ones wait ``restart_delay`` doubled each time, up to
    ``restart_delay_max``. A worker that lived ``stable_after`` seconds
    resets the count.

    Why ``stable_after`` is one second (as supervisord's ``startsecs``): the
    back-off is for workers that die at once (an app that cannot start), and
    those die within milliseconds. A longer window also catches workers that
    ran and served and were then killed from outside (an operator, the OOM
    killer): with 10 s, killing one of four busy workers every second left
    every slot waiting 4-16 s and the port with no worker at all for seconds.

    ``capture_output``: route workers' stdout/stderr and uncaught exceptions
    to the logger (see :mod:`brim.supervisor.output`); None means "if this
    process was daemonized". Uncaught exceptions from a target are always
    logged.

    Hooks (exceptions from them are logged, never fatal to the master):

    * ``on_reload(supervisor)`` -- on SIGHUP; default :meth:`replace_all`.
    * ``before_fork(group, worker_id)`` -- in the master, before each fork.
    * ``after_fork_child(ctx)`` -- in the new worker, before its target.
    * ``on_child_exit(group, worker_id, pid, status)`` -- in the master,
      after a worker was reaped (``status`` as from ``os.waitpid``).
    * ``on_started(supervisor)`` -- once per :meth:`run`, after the first
      workers were forked; the moment a successor tells its predecessor to
      shut down (connections queue on the shared socket until they accept).
    * ``on_ready(supervisor)`` -- when a start check passed: after :meth:`run`
      began or a reload, every worker is up and stayed up ``start_check``
      seconds.
    * ``on_start_failed(supervisor, group, worker_id, error)`` -- when a
      worker exited during a start check; ``error`` is its last reported
      error (a traceback) or how it exited.
    * ``on_recycle(group, worker_id, pid, reason)`` -- when the master starts
      recycling a worker.
    * ``on_status(supervisor)`` -- when the count of workers up may have
      changed (see :meth:`up_counts`).
    * ``on_shutdown(supervisor)`` -- on QUIT, before the workers are let go;
      return True when another process took over as the service (a restart
      that handed the sockets over): no STOPPING=1 is sent then.

    ``reap_orphans``: also reap any other child this process has (and, unless
    it is PID 1 already, become a child subreaper so orphaned grandchildren
    are ours), as PID 1 in a container must. Only for a process that runs no
    other children of its own.

    ``notify``: an object with ``ready(status)``, ``reloading()``,
    ``stopping()``, ``status(text)``, ``watchdog()`` and
    ``watchdog_interval`` (seconds or None), such as
    :class:`brim.supervisor.systemd.Notifier`.

    ``sockets`` / :meth:`add_socket` register listening sockets by name:
    the master serves them to a successor through ``handover_path`` (see
    :mod:`brim.supervisor.handover`) and closes them on graceful shutdown.
    A successor that fetched its sockets from a running master passes
    ``handover_replace=True`` to take the same path over.
    Workers inherit every open socket through fork either way.
    """

    def __init__(
        self,
        name: str = "brim",
        logger: logging.Logger | None = None,
        grace: float = 30.0,
        timeout: float | None = None,
        *,
        title: str = "master",
        restart_delay: float = 0.5,
        restart_delay_max: float = 30.0,
        stable_after: float = 1.0,
        capture_output: bool | None = None,
        sockets: dict[str, socket.socket] | None = None,
        handover_path: str | os.PathLike[str] | None = None,
        handover_replace: bool = False,
        on_reload: Callable[[Supervisor], Any] | None = None,
        before_fork: Callable[[str, int], Any] | None = None,
        after_fork_child: Callable[[WorkerContext], Any] | None = None,
        on_child_exit: Callable[[str, int, int, int], Any] | None = None,
        on_started: Callable[[Supervisor], Any] | None = None,
        on_reopen: Callable[[Supervisor], Any] | None = None,
        on_ready: Callable[[Supervisor], Any] | None = None,
        on_start_failed: Callable[[Supervisor, str, int, str], Any] | None = None,
        on_recycle: Callable[[str, int, int, str], Any] | None = None,
        on_status: Callable[[Supervisor], Any] | None = None,
        on_shutdown: Callable[[Supervisor], Any] | None = None,
        start_check: float = 1.0,
        dump_signal: int | None = DUMP_SIGNAL,
        dump_wait: float = 1.0,
        reap_orphans: bool = False,
        notify: Any = None,
    ) -> None:
        if grace < 0:
            raise SupervisorError(f"grace must be >= 0 seconds, not {grace!r}")
        if timeout is not None and timeout <= 0:
            raise SupervisorError(f"timeout must be > 0 seconds or None, not {timeout!r}")
        if start_check < 0:
            raise SupervisorError(f"start_check must be >= 0 seconds, not {start_check!r}")
        self.name = name
        self.log = logger or logging.getLogger("brim.supervisor")
        self.grace = float(grace)
        self.timeout = timeout
        self.title = title
        self.restart_delay = restart_delay
        self.restart_delay_max = restart_delay_max
        self.stable_after = stable_after
        self.capture_output = capture_output
        self.handover_path = os.fspath(handover_path) if handover_path is not None else None
        self.handover_replace = handover_replace
        self.on_reload = on_reload
        self.before_fork = before_fork
        self.after_fork_child = after_fork_child
        self.on_child_exit = on_child_exit
        self.on_started = on_started
        self.on_reopen = on_reopen
        self.on_ready = on_ready
        self.on_start_failed = on_start_failed
        self.on_recycle = on_recycle
        self.on_status = on_status
        self.on_shutdown = on_shutdown
        self.start_check = float(start_check)
        self.dump_signal = dump_signal
        self.dump_wait = float(dump_wait)
        self.reap_orphans = reap_orphans
        self.notify = notify
        self._control: ControlChannel | None = None
        #: When the running start check began (monotonic); None if none runs.
        self._check_began: float | None = None
        self._check_failed: tuple[str, int, str] | None = None
        self._watchdog_due = 0.0
        self._sockets: dict[str, socket.socket] = dict(sockets or {})
        self._groups: dict[str, _Group] = {}
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._children: dict[int, _Child] = {}
        self._pending: list[int] = []
        self._wake_r = self._wake_w = -1
        self._handover: socket.socket | None = None
        self._handover_ino = 0
        self._master_pid = 0
        self._running = False
        self._stopping = False
        self._stop_deadline = 0.0

    # -- configuration ---------------------------------------------------

    def add_group(
        self,
        name: str,
        workers: int,
        target: Target,
        *,
        title: str | None = None,
        timeout: Any = _INHERIT,
        recycling: Recycling | None = None,
        announces_ready: bool = False,
        max_workers: int | None = None,
    ) -> None:
        """Keep *workers* processes running ``target(ctx)``, with ids 0..workers-1.

        *title* is formatted with ``{group}`` and ``{id}`` and prefixed with
        ``"<name>: "``; the default is ``"{group} worker {id}"``. *timeout*
        overrides the supervisor's hung-worker timeout for this group.
        *recycling* says when its workers are replaced on purpose.
        *announces_ready*: its workers call :meth:`WorkerContext.ready` once
        they serve, and count as up only then (otherwise, once forked).
        *max_workers*: TTIN/TTOU may change the count at run time, between 1
        and this many (None: they leave the group alone).
        May be called while running (from a hook); workers start promptly.
        """
        if name in self._groups:
            raise SupervisorError(f"group {name!r} already exists")
        if not isinstance(workers, int) or workers < 0:
            raise SupervisorError(f"group {name!r}: workers must be an int >= 0, not {workers!r}")
        if not callable(target):
            raise SupervisorError(f"group {name!r}: target {target!r} is not callable")
        if max_workers is not None and max_workers < max(workers, 1):
            raise SupervisorError(
                f"group {name!r}: max_workers {max_workers!r} is below its {workers} workers")
        group = _Group(
            name,
            workers,
            target,
            title if title is not None else "{group} worker {id}",
            self.timeout if timeout is _INHERIT else timeout,
            recycling or Recycling(),
            announces_ready,
            max_workers,
        )
        self._groups[name] = group
        for worker_id in range(workers):
            self._slots[(name, worker_id)] = _Slot(group, worker_id)
        self._wake()

    def remove_group(self, name: str, *, when_replaced: bool = False) -> None:
        """Stop keeping group *name* alive; its workers are asked to drain.

        With *when_replaced* (a reload, from ``on_reload``), they go on
        serving until every worker of the group added under the same name is
        up and stayed up ``start_check`` seconds, and drain only then (at
        once if no group takes the name): a reload whose new workers cannot
        stay up leaves the old ones serving (no longer restarted if they die)
        instead of nobody.
        """
        if self._groups.pop(name, None) is None:
            raise SupervisorError(f"no group {name!r}")
        for key in [k for k in self._slots if k[0] == name]:
            slot = self._slots.pop(key)
            child = self._worker_of(slot)
            for old in [c for c in self._children.values() if c.group == name
                        and c.worker_id == key[1] and not c.retired and not c.standby]:
                # The slot's worker and, mid-recycle, the one it replaces.
                old.replacement = None
                if when_replaced and old is child:
                    old.standby = True
                else:
                    self._retire(old)

    def add_socket(self, name: str, sock: socket.socket) -> None:
        """Register a listening socket under *name* (for hand-over and shutdown)."""
        self._sockets[name] = sock

    def set_sockets(self, sockets: dict[str, socket.socket]) -> None:
        """Replace the registered listening sockets (after a reload changed them)."""
        self._sockets = dict(sockets)

    @property
    def sockets(self) -> dict[str, socket.socket]:
        """The registered listening sockets, by name."""
        return dict(self._sockets)

    @property
    def groups(self) -> dict[str, int]:
        """Group name to the number of workers it keeps alive."""
        return {g.name: g.workers for g in self._groups.values()}

    @property
    def workers(self) -> dict[tuple[str, int], int]:
        """(group, worker id) to pid, for the current (not retiring) workers."""
        return {k: s.pid for k, s in self._slots.items() if s.pid is not None}

    def up_counts(self) -> dict[str, tuple[int, int]]:
        """Group name to (workers up, workers wanted)."""
        counts = {name: [0, g.workers] for name, g in self._groups.items()}
        now = time.monotonic()
        for (gname, _wid), slot in self._slots.items():
            child = self._worker_of(slot)
            if child is not None and self._is_up(child, now):
                counts[gname][0] += 1
        return {name: (up, wanted) for name, (up, wanted) in counts.items()}

    def status_line(self) -> str:
        """"wsgi 2/2, tcp#echo 1/1": workers up per group, for STATUS= and logs."""
        return ", ".join(f"{name} {up}/{wanted}" for name, (up, wanted)
                         in self.up_counts().items())

    # -- requests (safe from hooks, other threads and signal handlers) -----

    def stop(self) -> None:
        """Ask the loop to stop, as SIGTERM does."""
        self._request(signal.SIGTERM)

    def shutdown(self) -> None:
        """Ask the loop for a graceful shutdown, as SIGQUIT does."""
        self._request(signal.SIGQUIT)

    def reload(self) -> None:
        """Ask the loop to reload, as SIGHUP does."""
        self._request(signal.SIGHUP)

    def add_worker(self, group: str) -> bool:
        """One more worker in *group* (up to its ``max_workers``); False if at the limit."""
        g = self._scalable(group)
        if g.max_workers is not None and g.workers >= g.max_workers:
            return False
        self._slots[(group, g.workers)] = _Slot(g, g.workers)
        g.workers += 1
        self._wake()
        return True

    def remove_worker(self, group: str) -> bool:
        """One worker fewer in *group* (the highest id drains); False if one is left."""
        g = self._scalable(group)
        if g.workers <= 1:
            return False
        g.workers -= 1
        slot = self._slots.pop((group, g.workers))
        for child in list(self._children.values()):
            mine = child.group == group and child.worker_id == g.workers
            if mine and not child.retired:
                child.replacement = None
                self._retire(child)
        slot.pid = None
        return True

    def _worker_of(self, slot: _Slot) -> _Child | None:
        """The live worker a slot currently counts on, if any."""
        return self._children.get(slot.pid) if slot.pid is not None else None

    def _scalable(self, group: str) -> _Group:
        g = self._groups.get(group)
        if g is None:
            raise SupervisorError(f"no group {group!r}")
        return g

    def _request(self, signum: int) -> None:
        self._pending.append(signum)
        self._wake()

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except OSError:
                pass  # pipe full: the loop is already due to wake

    # -- actions (call only from the master loop, e.g. from on_reload) ----

    def replace_all(self, group: str | None = None) -> None:
        """Gracefully replace every worker (of *group*, or of all groups).

        A new worker is started under each id first, then the old one is
        asked to drain; it is killed if still alive after ``grace`` seconds.
        """
        if group is not None and group not in self._groups:
            raise SupervisorError(f"no group {group!r}")
        old = []
        for (gname, _wid), slot in self._slots.items():
            if group is not None and gname != group:
                continue
            if slot.pid is not None and slot.pid in self._children:
                old.append(self._children[slot.pid])
            slot.pid = None
            slot.next_start = 0.0
            self._spawn(slot)
        for child in old:
            self._retire(child)
        self.log.info(
            "%s: replaced %d worker(s)%s", self.name, len(old), f" of {group}" if group else ""
        )

    # -- the loop -----------------------------------------------------------

    def run(self) -> int:
        """Run the master loop until stopped or shut down; return an exit code (0).

        Must be called from the main thread (signal handlers live there).
        Signal handlers and the wakeup fd are restored on return.
        """
        if not _on_main_thread():
            raise SupervisorError("Supervisor.run() must be called from the main thread")
        if self._running:
            raise SupervisorError("Supervisor.run() is already running")
        self._master_pid = os.getpid()
        self._running = True
        self._stopping = False
        shut_down = False
        r, w = os.pipe()
        for fd in (r, w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._wake_r, self._wake_w = r, w
        self._control = ControlChannel()
        if self.reap_orphans and self._master_pid != 1:
            set_child_subreaper(True)
        old_handlers = {sig: signal.getsignal(sig) for sig in _HANDLED}
        old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        try:
            for sig in _HANDLED:
                signal.signal(sig, self._on_signal)
            if self.handover_path is not None and self._handover is None:
                self.prepare_handover()
            set_process_title(f"{self.name}: {self.title}")
            self.log.info("%s: master %d started", self.name, self._master_pid)
            self._begin_check()
            self._spawn_due(time.monotonic())
            if self.on_started is not None:
                try:
                    self.on_started(self)
                except Exception:
                    self.log.exception("%s: on_started hook failed", self.name)
            shut_down = self._loop()
            return 0
        finally:
            if not shut_down and self._children:
                self._terminate_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
            self._close_handover()
            os.close(r)
            os.close(w)
            self._wake_r = self._wake_w = -1
            self._control.close()
            self._control = None
            self._check_began = None
            self._running = False

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self._pending.append(signum)

    def _loop(self) -> bool:
        """The master loop; returns True after a graceful shutdown."""
        while True:
            while self._pending:
                signum = self._pending.pop(0)
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self._begin_stop(signal.Signals(signum).name)
                elif signum == signal.SIGQUIT:
                    self._do_shutdown()
                    return True
                elif signum == signal.SIGHUP and not self._stopping:
                    self._do_reload()
                elif signum == REOPEN_SIGNAL:
                    self._do_reopen()
                elif signum == DUMP_SIGNAL:
                    self.log.info("%s: %s: asking every worker for a stack dump", self.name,
                                  signal.Signals(signum).name)
                    for child in list(self._children.values()):
                        self._signal(child, DUMP_SIGNAL)
                elif signum in (signal.SIGTTIN, signal.SIGTTOU) and not self._stopping:
                    self._do_scale(signum == signal.SIGTTIN)
            self._reap()
            now = time.monotonic()
            if self._stopping:
                if not self._children:
                    self.log.info("%s: master %d stopped", self.name, self._master_pid)
                    return False
                if now >= self._stop_deadline:
                    self._kill_remaining("did not stop within the grace period")
            else:
                self._spawn_due(now)
                self._check_hung(now)
                self._check_retired(now)
                self._check_recycling(now)
                self._check_start(now)
                self._retire_replaced(now)
            self._watchdog(now)
            self._wait(self._sleep_time(time.monotonic()))

    def _do_scale(self, more: bool) -> None:
        for name, group in list(self._groups.items()):
            if group.max_workers is None:
                continue
            changed = self.add_worker(name) if more else self.remove_worker(name)
            self.log.info(
                "%s: %s: %s, now %d worker(s)", self.name, name,
                ("one worker more" if more else "one worker fewer") if changed
                else f"unchanged (limits 1..{group.max_workers})", group.workers,
            )
        self._status_changed()

    # -- talking to systemd (or whatever ``notify`` is) ------------------------

    def _status_changed(self) -> None:
        if self.notify is not None:
            self.notify.status(self.status_line())
        if self.on_status is not None:
            try:
                self.on_status(self)
            except Exception:
                self.log.exception("%s: on_status hook failed", self.name)

    def _watchdog(self, now: float) -> None:
        interval = self.notify.watchdog_interval if self.notify is not None else None
        if interval and now >= self._watchdog_due:
            self.notify.watchdog()
            self._watchdog_due = now + interval / 2

    # -- the start check -------------------------------------------------------

    def _begin_check(self) -> None:
        self._check_began = time.monotonic()
        self._check_failed = None

    def _is_up(self, child: _Child, now: float) -> bool:
        if child.up_at is None:
            group = self._groups.get(child.group)
            if group is None or not group.announces_ready or child.heartbeat.is_ready():
                child.up_at = now
        return child.up_at is not None

    def _check_start(self, now: float) -> None:
        """Call on_ready once every worker stayed up start_check s, or on_start_failed."""
        if self._check_began is None:
            return
        if self._check_failed is not None:
            self._check_began = None
            group, worker_id, error = self._check_failed
            self._status_changed()
            if self.on_start_failed is not None:
                try:
                    self.on_start_failed(self, group, worker_id, error)
                except Exception:
                    self.log.exception("%s: on_start_failed hook failed", self.name)
            return
        if not all(self._stayed_up(name, now) for name in self._groups):
            return
        self._check_began = None
        self.log.info("%s: every worker is up: %s", self.name, self.status_line())
        if self.notify is not None:
            self.notify.ready(self.status_line())
        if self.on_ready is not None:
            try:
                self.on_ready(self)
            except Exception:
                self.log.exception("%s: on_ready hook failed", self.name)

    def _retire_replaced(self, now: float) -> None:
        """Drain the workers a reload kept, group by group, once their replacements
        are up and stayed up start_check seconds (or at once if nothing replaces
        them): a group that came up is not held back by another that cannot."""
        standby = [c for c in self._children.values() if c.standby and not c.retired]
        for name in {c.group for c in standby}:
            if name in self._groups and not self._stayed_up(name, now):
                continue
            mine = [c for c in standby if c.group == name]
            for child in mine:
                self._retire(child)
            self.log.info("%s: %s: %d replaced worker(s) asked to drain", self.name, name,
                          len(mine))

    def _stayed_up(self, group: str, now: float) -> bool:
        """Whether every worker of ``group`` is up and has been for start_check seconds."""
        for (name, _wid), slot in self._slots.items():
            if name != group:
                continue
            child = self._worker_of(slot)
            if child is None or not self._is_up(child, now):
                return False
            assert child.up_at is not None
            if now - child.up_at < self.start_check:
                return False
        return True

    # -- recycling -------------------------------------------------------------

    def _want_recycle(self, child: _Child, reason: str) -> None:
        if child.recycle is None and not child.retired and not child.killed:
            child.recycle = reason

    def _check_recycling(self, now: float) -> None:
        """Note workers due for recycling, finish started recycles, start new ones."""
        for child in list(self._children.values()):
            group = self._groups.get(child.group)
            if group is None or child.retired or child.recycle is not None:
                continue
            rules = group.recycling
            if rules.max_lifetime and now - child.started >= rules.max_lifetime:
                self._want_recycle(child, f"max_worker_lifetime {rules.max_lifetime:g}s reached")
            elif rules.max_rss and now >= child.rss_checked + _RSS_EVERY:
                child.rss_checked = now
                rss = process_rss(child.pid)
                if rss is not None and rss > rules.max_rss:
                    self._want_recycle(child, f"max_worker_rss: RSS {rss / 2**20:.0f} MiB "
                                              f"over {rules.max_rss / 2**20:g} MiB")
        for child in list(self._children.values()):
            new = self._children.get(child.replacement) if child.replacement else None
            if new is not None and self._is_up(new, now):
                child.replacement = None
                self.log.info("%s: worker %s %d (pid %d) recycled (%s): pid %d took over",
                              self.name, child.group, child.worker_id, child.pid,
                              child.recycle, new.pid)
                self._retire(child)
        for name, group in self._groups.items():
            mine = [c for c in self._children.values() if c.group == name]
            busy = sum(1 for c in mine if c.recycle is not None
                       and (c.replacement is not None or c.retired))
            due = sorted((c for c in mine if c.recycle is not None and not c.retired
                          and c.replacement is None and c.recycle_after <= now),
                         key=lambda c: c.started)
            for child in due[:max(0, group.recycling.concurrency - busy)]:
                self._start_recycle(child)

    def _start_recycle(self, child: _Child) -> None:
        slot = self._slots.get((child.group, child.worker_id))
        if slot is None or slot.pid != child.pid:
            return
        self._spawn(slot)
        if slot.pid == child.pid:  # fork failed; _spawn logged it
            child.recycle_after = time.monotonic() + self.restart_delay
            return
        child.replacement = slot.pid
        self.log.info("%s: recycling worker %s %d (pid %d): %s; replacement pid %s",
                      self.name, child.group, child.worker_id, child.pid, child.recycle,
                      slot.pid)
        if self.on_recycle is not None:
            try:
                self.on_recycle(child.group, child.worker_id, child.pid, child.recycle or "")
            except Exception:
                self.log.exception("%s: on_recycle hook failed", self.name)

    # -- messages from workers ---------------------------------------------------

    def _read_control(self) -> None:
        if self._control is None:
            return
        now = time.monotonic()
        for message in self._control.receive():
            child = self._children.get(message.pid)
            if child is None:
                continue
            if message.kind == READY:
                if child.up_at is None:
                    child.up_at = now
                    self._status_changed()
            elif message.kind == RECYCLE:
                self._want_recycle(child, message.text or "asked by the worker")
            elif message.kind == ERROR:
                child.last_error = message.text

    def _sleep_time(self, now: float) -> float:
        wake = now + _MAX_SLEEP
        if self._stopping:
            # Past the deadline the stragglers have had SIGKILL: poll gently
            # (SIGCHLD wakes us anyway) instead of spinning.
            wake = min(wake, max(self._stop_deadline, now + 0.05))
        else:
            for slot in self._slots.values():
                if slot.pid is None:
                    wake = min(wake, slot.next_start)
            for child in self._children.values():
                if child.kill_at is not None and not child.killed:
                    wake = min(wake, child.kill_at)
            timeouts = [g.timeout for g in self._groups.values() if g.timeout]
            if timeouts:
                wake = min(wake, now + min(timeouts) / 4)
            recycling = any(c.recycle is not None and not c.retired
                            for c in self._children.values())
            if self._check_began is not None or recycling:
                wake = min(wake, now + _BUSY_SLEEP)
        if self.notify is not None and self.notify.watchdog_interval:
            wake = min(wake, self._watchdog_due)
        return max(0.0, wake - now)

    def _wait(self, timeout: float) -> None:
        readers: list[Any] = [self._wake_r]
        if self._control is not None:
            readers.append(self._control.fd_read)
        if self._handover is not None:
            readers.append(self._handover)
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            return
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self._control is not None and self._control.fd_read in ready:
            self._read_control()
        handover = self._handover
        if handover is not None and handover in ready and answer_handover(handover, self._sockets):
            self.log.info("%s: handed over %d listening socket(s)", self.name, len(self._sockets))

    # -- stopping -------------------------------------------------------------

    def _begin_stop(self, why: str) -> None:
        if self._stopping:
            self._kill_remaining(f"second {why} while stopping")
            return
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.grace
        if self.notify is not None:
            self.notify.stopping()
        self.log.info(
            "%s: %s received, stopping %d worker(s)", self.name, why, len(self._children)
        )
        for child in self._children.values():
            self._signal(child, signal.SIGTERM)

    def _kill_remaining(self, why: str) -> None:
        for child in self._children.values():
            if not child.killed:
                self._kill(child, "%s: killing worker %s %d (pid %d): %s", why)

    def _terminate_all(self) -> None:
        """Blocking stop used when the loop ends abnormally: no orphan is left."""
        for child in self._children.values():
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self._children and time.monotonic() < deadline:
            self._reap()
            if self._children:
                time.sleep(0.05)
        for child in self._children.values():
            self._signal(child, signal.SIGKILL)
        for pid in list(self._children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self._children.pop(pid).heartbeat.close()

    def _do_shutdown(self) -> None:
        handed_over = False
        if self.on_shutdown is not None:
            try:
                handed_over = bool(self.on_shutdown(self))
            except Exception:
                self.log.exception("%s: on_shutdown hook failed", self.name)
        if self.notify is not None and not handed_over:
            self.notify.stopping()
        self.log.info(
            "%s: graceful shutdown: %d worker(s) finish their work, master %d exits",
            self.name, len(self._children), self._master_pid,
        )
        for child in self._children.values():
            child.heartbeat.request_drain()
            self._signal(child, DRAIN_SIGNAL)
            child.heartbeat.close()
        self._children.clear()
        for slot in self._slots.values():
            slot.pid = None
        for sock in self._sockets.values():
            sock.close()
        self._close_handover()

    def prepare_handover(self) -> None:
        """Start serving ``handover_path`` now rather than when :meth:`run` starts.

        Why: a program that drops privileges before :meth:`run` may no longer
        be allowed to create the socket where it should live (next to a pid
        file in /var/run, say); binding it first, as root, avoids that.
        """
        if self.handover_path is None:
            raise SupervisorError("no handover_path was given")
        if self._handover is None:
            self._handover = serve_handover(self.handover_path, self.handover_replace)
            self._handover.setblocking(False)
            self._handover_ino = os.stat(self.handover_path).st_ino

    def _close_handover(self) -> None:
        if self._handover is not None and self.handover_path is not None:
            release_handover(self._handover, self.handover_path, self._handover_ino)
            self._handover = None

    def _do_reload(self) -> None:
        self.log.info("%s: reload requested", self.name)
        if self.notify is not None:
            self.notify.reloading()
        try:
            if self.on_reload is not None:
                self.on_reload(self)
            else:
                self.replace_all()
        except Exception:
            self.log.exception("%s: reload hook failed", self.name)
        # READY=1 follows once the workers the reload started are up (or,
        # if it changed nothing, at once): Type=notify-reload waits for it.
        self._begin_check()

    # -- workers -------------------------------------------------------------

    def reopen(self) -> None:
        """Ask the loop to have logs reopened, as SIGUSR1 does."""
        self._request(REOPEN_SIGNAL)

    def _do_reopen(self) -> None:
        """Run on_reopen here, then pass SIGUSR1 on to every worker."""
        if self.on_reopen is not None:
            try:
                self.on_reopen(self)
            except Exception:
                self.log.exception("%s: on_reopen hook failed", self.name)
        for child in list(self._children.values()):
            self._signal(child, REOPEN_SIGNAL)

    def _signal(self, child: _Child, signum: int) -> None:
        try:
            os.kill(child.pid, signum)
        except ProcessLookupError:
            pass

    def _kill(self, child: _Child, message: str, *args: Any) -> None:
        """SIGKILL a worker, once; ``message`` gets the supervisor name, the
        worker's group, id and pid, then ``args``, and says why in the log."""
        self.log.warning(message, self.name, child.group, child.worker_id, child.pid, *args)
        child.killed = True
        self._signal(child, signal.SIGKILL)

    def _retire(self, child: _Child) -> None:
        child.retired = True
        child.kill_at = time.monotonic() + self.grace
        child.heartbeat.request_drain()
        self._signal(child, DRAIN_SIGNAL)

    def _check_retired(self, now: float) -> None:
        for child in self._children.values():
            due = child.kill_at is not None and now >= child.kill_at
            if child.retired and not child.killed and due:
                self._kill(child, "%s: killing draining worker %s %d (pid %d): "
                           "still busy after %gs", self.grace)

    def _check_hung(self, now: float) -> None:
        for child in self._children.values():
            if child.retired or child.killed:
                continue
            group = self._groups.get(child.group)
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
                self.log.warning(
                    "%s: worker %s %d (pid %d) hung: no heartbeat for %.1fs; asked it for a "
                    "stack dump (%s), killing it in %gs", self.name, child.group,
                    child.worker_id, child.pid, silent, signal.Signals(self.dump_signal).name,
                    self.dump_wait)
                self._signal(child, self.dump_signal)
            elif child.dump_at is None or now >= child.dump_at + self.dump_wait:
                self._kill(child, "%s: worker %s %d (pid %d) hung: no heartbeat for %.1fs, "
                           "killing it", silent)

    def _reap(self) -> None:
        self._read_control()  # a dying worker's last error comes before its exit
        if self.reap_orphans:
            self._reap_any()
        for pid in list(self._children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done != 0:
                self._reaped(pid, status)

    def _reap_any(self) -> None:
        """Reap every exited child, ours or adopted (PID 1 or subreaper duty)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self._children:
                self._reaped(pid, status)
            else:
                self.log.info("%s: reaped orphaned process %d (%s)", self.name, pid,
                              describe_status(status))

    def _reaped(self, pid: int, status: int) -> None:
        child = self._children.pop(pid)
        child.heartbeat.close()
        self._child_exited(child, status)
        if self.on_child_exit is not None:
            try:
                self.on_child_exit(child.group, child.worker_id, pid, status)
            except Exception:
                self.log.exception("%s: on_child_exit hook failed", self.name)

    def _child_exited(self, child: _Child, status: int) -> None:
        how = describe_status(status)
        slot = self._slots.get((child.group, child.worker_id))
        old = next((c for c in self._children.values() if c.replacement == child.pid), None)
        if old is not None and slot is not None and not self._stopping:
            # A replacement that died before it was up: the worker it was to
            # replace never stopped serving, and keeps its slot for now.
            old.replacement = None
            slot.pid = old.pid
            slot.failures += 1
            old.recycle_after = time.monotonic() + min(
                self.restart_delay * 2 ** (slot.failures - 1), self.restart_delay_max)
            self.log.warning(
                "%s: replacement worker %s %d (pid %d) exited with %s before it was up; "
                "pid %d keeps serving", self.name, child.group, child.worker_id, child.pid,
                how, old.pid)
            self._note_start_failure(child, how)
            return
        if not (self._stopping or child.retired or child.standby) and child.recycle is None:
            self._note_start_failure(child, how)
        if self._stopping or child.retired or slot is None or slot.pid != child.pid:
            self.log.info(
                "%s: worker %s %d (pid %d) exited with %s",
                self.name, child.group, child.worker_id, child.pid, how,
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
        self._status_changed()
        self.log.warning(
            "%s: worker %s %d (pid %d) exited unexpectedly with %s; restarting %s",
            self.name, child.group, child.worker_id, child.pid, how,
            f"in {delay:.2f}s" if delay else "now",
        )

    def _note_start_failure(self, child: _Child, how: str) -> None:
        if self._check_began is not None and self._check_failed is None:
            error = child.last_error or f"worker {child.group} {child.worker_id} exited with {how}"
            self._check_failed = (child.group, child.worker_id, error)

    def _spawn_due(self, now: float) -> None:
        for slot in list(self._slots.values()):
            if slot.pid is None and slot.next_start <= now:
                self._spawn(slot)

    def _spawn(self, slot: _Slot) -> None:
        group = slot.group
        if self.before_fork is not None:
            try:
                self.before_fork(group.name, slot.worker_id)
            except Exception:
                self.log.exception("%s: before_fork hook failed", self.name)
        heartbeat = HeartbeatSlot()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
        try:
            pid = os.fork()
        except OSError as err:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            heartbeat.close()
            slot.failures += 1
            slot.next_start = time.monotonic() + self.restart_delay
            self.log.error(
                "%s: cannot start worker %s %d: fork failed: %s",
                self.name, group.name, slot.worker_id, err.strerror,
            )
            return
        if pid == 0:
            self._become_worker(group, slot.worker_id, heartbeat, old_mask)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        slot.pid = pid
        self._children[pid] = _Child(pid, group.name, slot.worker_id, heartbeat, time.monotonic())
        self.log.info(
            "%s: started worker %s %d (pid %d)", self.name, group.name, slot.worker_id, pid
        )

    def _become_worker(
        self, group: _Group, worker_id: int, heartbeat: HeartbeatSlot, mask: set[int]
    ) -> None:
        """In the new worker: hand over to :func:`brim.supervisor.worker.run_child`."""
        assert self._control is not None
        setup = ChildSetup(
            group=group.name, worker_id=worker_id,
            title=group.title.format(group=group.name, id=worker_id),
            master_pid=self._master_pid, supervisor_name=self.name, heartbeat=heartbeat,
            control=self._control, mask=mask, log=self.log,
            reset_signals=_RESET_IN_CHILD, ignore_signals=_IGNORE_IN_CHILD,
            death_signal=DRAIN_SIGNAL, capture_output=self.capture_output,
            release_master=self._release_in_child, after_fork_child=self.after_fork_child,
        )
        run_child(setup, group.target)

    def _release_in_child(self) -> None:
        """Close, in a new worker, what only the master may hold."""
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._handover is not None:
            self._handover.close()  # our fd only; the socket file stays the master's
            self._handover = None
        for other in self._children.values():
            other.heartbeat.close()
        self._children.clear()
        self._pending.clear()


def _on_main_thread() -> bool:
    """Whether this is the thread that may set signal handlers (the main one).

    Asked of the signal module itself, not of threading: a program that
    called ``eventlet.monkey_patch()`` has a threading whose every thread,
    the main one included, denies being the main thread.
    """
    current = signal.getsignal(signal.SIGCHLD)
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL if current is None else current)
    except ValueError:
        return False
    return True
