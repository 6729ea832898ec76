"""The master process: keeps groups of forked workers alive and obeys signals.

One loop does everything. Signal handlers only note the signal and wake the
loop (through ``signal.set_wakeup_fd`` on a non-blocking pipe); the loop then
reaps exited workers, restarts the ones that died unasked (under the same
worker id, with back-off when they keep dying young), kills hung workers,
answers socket hand-over requests and acts on the noted signals.

Signals to the master:

* TERM, INT -- stop: after ``drain_delay`` seconds (0 by default) during
  which every worker is marked "going away" but goes on serving, every
  worker gets SIGTERM; those still alive after ``grace`` seconds get
  SIGKILL; :meth:`Supervisor.run` returns once all are reaped. Meanwhile
  the master answers connections queued on its listening sockets with
  ``refusal`` (see :mod:`brim.supervisor.draining`), so none is reset. A
  second TERM/INT skips the rest of the delay, or of the grace.
* QUIT -- graceful shutdown: every worker is asked to drain (SIGHUP plus the
  drain flag); unless ``on_shutdown`` says a successor took the sockets
  over, the master answers what is queued on them with ``refusal``; it
  closes its listening sockets and returns from
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
from typing import Any

from brim.supervisor._linux import set_child_subreaper
from brim.supervisor.control import ERROR, READY, RECYCLE, ControlChannel
from brim.supervisor.draining import Draining, Refusal
from brim.supervisor.dump import DUMP_SIGNAL
from brim.supervisor.errors import SupervisorError
from brim.supervisor.handover import HandoverPoint
from brim.supervisor.hangs import HangCheck
from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.pool import Child, Group, Pool, Slot, Target
from brim.supervisor.proctitle import set_process_title
from brim.supervisor.reaping import Reaper, describe_status
from brim.supervisor.recycling import Recycler, Recycling
from brim.supervisor.scaling import Scaling
from brim.supervisor.signals import (
    DRAIN_SIGNAL,
    HANDLED,
    IGNORE_IN_CHILD,
    REOPEN_SIGNAL,
    RESET_IN_CHILD,
)
from brim.supervisor.spawning import Forker
from brim.supervisor.startcheck import Failed, ReplacedWorkers, StartCheck
from brim.supervisor.worker import ChildSetup, WorkerContext

__all__ = ["DRAIN_SIGNAL", "REOPEN_SIGNAL", "Recycling", "Supervisor", "Target",
           "describe_status"]

_MAX_SLEEP = 1.0
#: How often the master wakes while a start check or a recycle is under way.
_BUSY_SLEEP = 0.05
_INHERIT: Any = object()  # "use the supervisor's value"


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
      after a worker was reaped (``status`` as from ``os.waitpid``);
      :attr:`exit_cause` says then why it went, :attr:`exit_killed` whether
      the master killed it, :attr:`exit_notes` what it left in its notes.
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

    ``drain_delay`` and ``refusal``: see TERM above and
    :class:`~brim.supervisor.draining.Draining`.

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
        drain_delay: float = 0.0,
        refusal: Refusal | None = None,
    ) -> None:
        if grace < 0:
            raise SupervisorError(f"grace must be >= 0 seconds, not {grace!r}")
        if timeout is not None and timeout <= 0:
            raise SupervisorError(f"timeout must be > 0 seconds or None, not {timeout!r}")
        if drain_delay < 0:
            raise SupervisorError(f"drain_delay must be >= 0 seconds, not {drain_delay!r}")
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
        self._watchdog_due = 0.0
        self._sockets: dict[str, socket.socket] = dict(sockets or {})
        # The workers, and the policies that look after them each tick.
        self._pool = Pool(name, self.log, self.grace, self.start_check)
        self._groups = self._pool.groups
        self._slots = self._pool.slots
        self._children = self._pool.children
        self._start_check = StartCheck(self._pool)
        self._replaced = ReplacedWorkers(self._pool)
        self._hangs = HangCheck(self._pool, dump_signal, self.dump_wait)
        self._recycler = Recycler(self._pool, self._spawn,
                                  lambda *args: self._hook("on_recycle", *args), restart_delay)
        self._reaper = Reaper(
            self._pool, self._start_check, restart_delay=restart_delay,
            restart_delay_max=restart_delay_max, stable_after=stable_after,
            reap_orphans=reap_orphans, status_changed=self._status_changed,
            on_child_exit=lambda *args: self._hook("on_child_exit", *args))
        self._scaling = Scaling(self._pool, self._wake)
        self._draining = Draining(self._pool, drain_delay, refusal)
        self._forker = Forker(self._pool, restart_delay=restart_delay,
                              before_fork=lambda *args: self._hook("before_fork", *args),
                              setup_for=self._child_setup)
        self._pending: list[int] = []
        self._wake_r = self._wake_w = -1
        self._handover = (HandoverPoint(self.handover_path, handover_replace)
                          if self.handover_path is not None else None)
        self._master_pid = 0
        self._running = False
        self._stopping = False
        self._stop_deadline = 0.0
        #: Set once a successor fetched the sockets: they are its to accept on now.
        self._handed_over = False

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
        notes_size: int = 0,
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
        *notes_size*: each worker gets that many bytes of shared memory
        (:attr:`WorkerContext.notes`) that the master reads after it exited
        (:attr:`exit_notes`).
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
        group = Group(
            name,
            workers,
            target,
            title if title is not None else "{group} worker {id}",
            self.timeout if timeout is _INHERIT else timeout,
            recycling or Recycling(),
            announces_ready,
            max_workers,
            max(0, notes_size),
        )
        self._groups[name] = group
        for worker_id in range(workers):
            self._slots[(name, worker_id)] = Slot(group, worker_id)
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
            child = self._pool.worker_of(slot)
            for old in [c for c in self._children.values() if c.group == name
                        and c.worker_id == key[1] and not c.retired and not c.standby]:
                # The slot's worker and, mid-recycle, the one it replaces.
                old.replacement = None
                if when_replaced and old is child:
                    old.standby = True
                else:
                    self._pool.retire(old)

    def adopt(self, pid: int, group: str, worker_id: int, *, held: bool = False) -> None:
        """Take on worker ``pid``, forked by this very process before it re-executed
        itself in place (``execv``: same pid, so the worker is still our child).

        It serves on as a worker a reload replaces (see :meth:`remove_group`
        with *when_replaced*): once every worker of the group added under
        ``group`` is up and stayed up ``start_check`` seconds it is asked to
        drain (SIGHUP), and killed if still busy after ``grace``. If no
        group takes the name it drains at once, unless *held*: then it serves
        on until one does (a master whose new conf could not be loaded keeps
        the workers it has). Its heartbeat and control pipe stayed with the
        old image, so it is never taken for hung and never restarted.
        """
        child = Child(pid, group, worker_id, HeartbeatSlot(), time.monotonic(),
                      standby=True, adopted=True, held=held)
        child.up_at = child.started
        self._children[pid] = child

    @property
    def children(self) -> list[tuple[int, str, int]]:
        """(pid, group, worker id) of every worker process alive, draining ones too:
        what a master hands to its re-executed self to :meth:`adopt`."""
        return [(c.pid, c.group, c.worker_id) for c in self._children.values()]

    def prepare_handover(self) -> None:
        """Start serving ``handover_path`` now rather than when :meth:`run` starts.

        Why: a program that drops privileges before :meth:`run` may no longer
        be allowed to create the socket where it should live (next to a pid
        file in /var/run, say); binding it first, as root, avoids that.
        """
        if self._handover is None:
            raise SupervisorError("no handover_path was given")
        self._handover.serve()

    def adopt_handover(self, sock: socket.socket) -> None:
        """Serve hand-overs on ``sock``, a listening unix socket already bound at
        ``handover_path`` (by this process before it re-executed itself)."""
        if self._handover is None:
            raise SupervisorError("no handover_path was given")
        self._handover.adopt(sock)

    def keep_signals_for_exec(self) -> Callable[[], None]:
        """Before this process re-executes itself (``execv``): keep every signal to it.

        Blocks every signal the master handles and turns the ones noted but
        not yet acted on back into pending signals: the kernel keeps both the
        mask and pending signals across ``execv``, and :meth:`run` in the new
        image unblocks them once its handlers are in place, so a TERM that
        came during a reload still stops the master. Returns the undo, for
        when the exec failed.
        """
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
        noted = list(dict.fromkeys(self._pending))
        self._pending.clear()
        for signum in noted:
            os.kill(os.getpid(), signum)

        def undo() -> None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)

        return undo

    @property
    def handover_socket(self) -> socket.socket | None:
        """The socket that answers hand-over requests, once served."""
        return self._handover.sock if self._handover is not None else None

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

    @property
    def exit_cause(self) -> str:
        """Why the worker reaped last went, while its on_child_exit hook runs: ``hung``
        (killed for missing heartbeats), ``recycled``, ``retired`` (drained by a
        reload, a resize or a stop) or ``crash`` (anything else)."""
        return self._reaper.exit_cause

    @property
    def exit_killed(self) -> bool:
        """Whether the master SIGKILLed the worker reaped last (hung, or still busy past
        ``grace``), while its on_child_exit hook runs."""
        return self._reaper.exit_killed

    @property
    def exit_notes(self) -> bytes:
        """A copy of the notes the worker reaped last left (see ``notes_size`` in
        :meth:`add_group`; b"" without any), while its on_child_exit hook runs."""
        return self._reaper.exit_notes

    def up_counts(self) -> dict[str, tuple[int, int]]:
        """Group name to (workers up, workers wanted)."""
        return self._pool.up_counts()

    def status_line(self) -> str:
        """"wsgi 2/2, tcp#echo 1/1": workers up per group, for STATUS= and logs."""
        return self._pool.status_line()

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
        return self._scaling.add_worker(group)

    def remove_worker(self, group: str) -> bool:
        """One worker fewer in *group* (the highest id drains); False if one is left."""
        return self._scaling.remove_worker(group)

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
            self._pool.retire(child)
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
        old_handlers = {sig: signal.getsignal(sig) for sig in HANDLED}
        old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        try:
            for sig in HANDLED:
                signal.signal(sig, self._on_signal)
            # Blocked by a master that re-executed itself (see
            # keep_signals_for_exec): its pending signals are ours now.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
            if self._handover is not None:
                self._handover.serve()
            set_process_title(f"{self.name}: {self.title}")
            self.log.info("%s: master %d started", self.name, self._master_pid)
            self._begin_check()
            self._spawn_due(time.monotonic())
            self._hook("on_started", self)
            shut_down = self._loop()
            return 0
        finally:
            if not shut_down and self._children:
                self._terminate_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old_handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
            if self._handover is not None:
                self._handover.close()
            os.close(r)
            os.close(w)
            self._wake_r = self._wake_w = -1
            self._control.close()
            self._control = None
            self._start_check.end()
            self._running = False

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self._pending.append(signum)

    def _loop(self) -> bool:
        """The master loop; returns True after a graceful shutdown."""
        while True:
            while self._pending:
                if self._handle(self._pending.pop(0)):
                    return True
            self._reap()
            now = time.monotonic()
            if self._draining.delay_over(now):
                self._begin_stop("drain delay over")
            if self._stopping:
                if not self._children:
                    self._draining.refuse(self._sockets)
                    if self._draining.refused:
                        self.log.info("%s: answered %d queued connection(s) with a refusal",
                                      self.name, self._draining.refused)
                    self.log.info("%s: master %d stopped", self.name, self._master_pid)
                    return False
                if now >= self._stop_deadline:
                    self._kill_remaining("did not stop within the grace period")
            else:
                self._spawn_due(now)
                self._hangs.tick(now)
                self._recycler.tick(now)
                # Replaced workers are told to drain before on_ready reports
                # the reload done: once it says so, only new workers accept.
                self._replaced.tick(now)
                self._verdict(self._start_check.tick(now))
            self._watchdog(now)
            self._wait(self._sleep_time(time.monotonic()))

    # -- one small handler per signal ------------------------------------------

    def _handle(self, signum: int) -> bool:
        """Act on one noted signal; True when the loop must end (graceful shutdown)."""
        handler = {
            signal.SIGTERM: self._handle_term, signal.SIGINT: self._handle_term,
            signal.SIGQUIT: self._handle_quit, signal.SIGHUP: self._handle_hup,
            REOPEN_SIGNAL: self._handle_reopen, DUMP_SIGNAL: self._handle_dump,
            signal.SIGTTIN: self._handle_scale, signal.SIGTTOU: self._handle_scale,
        }.get(signum)
        return bool(handler(signum)) if handler is not None else False

    def _handle_term(self, signum: int) -> None:
        """TERM, INT: stop; a second one while stopping skips the rest of the grace."""
        why = signal.Signals(signum).name
        if self._stopping:
            self._kill_remaining(f"second {why} while stopping")
            return
        if self._draining.delaying:
            self._begin_stop(f"second {why} during the drain delay")
            return
        if self.notify is not None:
            self.notify.stopping()
        if self._draining.delay > 0:
            self.log.info("%s: %s received, %d worker(s) going away; they stop in %gs",
                          self.name, why, len(self._children), self._draining.delay)
            self._draining.begin_delay(time.monotonic())
            return
        self._begin_stop(f"{why} received")

    def _begin_stop(self, why: str) -> None:
        """Tell every worker to stop, and count the grace from now."""
        self._draining.end_delay()
        self._stopping = True
        self._stop_deadline = time.monotonic() + self.grace
        self.log.info("%s: %s, stopping %d worker(s)", self.name, why, len(self._children))
        for child in self._children.values():
            self._pool.signal(child, signal.SIGTERM)

    def _handle_quit(self, signum: int) -> bool:
        """QUIT: let the workers finish on their own, let go of the sockets, end the loop."""
        handed_over = bool(self._hook("on_shutdown", self))
        if self.notify is not None and not handed_over:
            self.notify.stopping()
        self.log.info(
            "%s: graceful shutdown: %d worker(s) finish their work, master %d exits",
            self.name, len(self._children), self._master_pid,
        )
        for child in self._children.values():
            child.heartbeat.request_drain()
            self._pool.signal(child, DRAIN_SIGNAL)
            child.heartbeat.close()
        self._children.clear()
        for slot in self._slots.values():
            slot.pid = None
        if not (handed_over or self._handed_over):
            # No successor accepts on them: answer what is queued rather than
            # leave it to be reset when the last draining worker lets go.
            self._draining.refuse(self._sockets)
        for sock in self._sockets.values():
            sock.close()
        if self._handover is not None:
            self._handover.close()
        return True

    def _handle_hup(self, signum: int) -> None:
        """HUP: on_reload (or replace every worker), then a start check."""
        if self._stopping:
            return
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

    def _handle_reopen(self, signum: int) -> None:
        """USR1: run on_reopen here, then pass it on to every worker."""
        self._hook("on_reopen", self)
        for child in list(self._children.values()):
            self._pool.signal(child, REOPEN_SIGNAL)

    def _handle_dump(self, signum: int) -> None:
        self.log.info("%s: %s: asking every worker for a stack dump", self.name,
                      signal.Signals(signum).name)
        for child in list(self._children.values()):
            self._pool.signal(child, DUMP_SIGNAL)

    def _handle_scale(self, signum: int) -> None:
        if not self._stopping:
            self._scaling.scale(signum == signal.SIGTTIN)
            self._status_changed()

    # -- talking to systemd (or whatever ``notify`` is) ------------------------

    def _status_changed(self) -> None:
        if self.notify is not None:
            self.notify.status(self.status_line())
        self._hook("on_status", self)

    def _hook(self, name: str, *args: Any) -> Any:
        """Call the hook attribute ``name`` if it is set; its exception is logged, never raised."""
        hook = getattr(self, name)
        if hook is None:
            return None
        try:
            return hook(*args)
        except Exception:
            self.log.exception("%s: %s hook failed", self.name, name)
            return None

    def _watchdog(self, now: float) -> None:
        interval = self.notify.watchdog_interval if self.notify is not None else None
        if interval and now >= self._watchdog_due:
            self.notify.watchdog()
            self._watchdog_due = now + interval / 2

    # -- the start check (see brim.supervisor.startcheck) ----------------------

    def _begin_check(self) -> None:
        self._start_check.begin()

    def _verdict(self, verdict: Failed | bool) -> None:
        """Act on the start check's verdict: on_start_failed, or READY and on_ready."""
        if isinstance(verdict, Failed):
            self._status_changed()
            self._hook("on_start_failed", self, verdict.group, verdict.worker_id, verdict.error)
        elif verdict:
            self.log.info("%s: every worker is up: %s", self.name, self.status_line())
            if self.notify is not None:
                self.notify.ready(self.status_line())
            self._hook("on_ready", self)

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
                self._recycler.want(child, message.text or "asked by the worker")
            elif message.kind == ERROR:
                child.last_error = message.text

    def _sleep_time(self, now: float) -> float:
        wake = now + _MAX_SLEEP
        if self._stopping:
            # Past the deadline the stragglers have had SIGKILL: poll gently
            # (SIGCHLD wakes us anyway) instead of spinning.
            wake = min(wake, max(self._stop_deadline, now + 0.05))
        else:
            wake = min(wake, self._reaper.next_wake(now), self._hangs.next_wake(now),
                       self._draining.next_wake(now))
            if self._start_check.running or self._recycler.busy:
                wake = min(wake, now + _BUSY_SLEEP)
        if self.notify is not None and self.notify.watchdog_interval:
            wake = min(wake, self._watchdog_due)
        return max(0.0, wake - now)

    def _wait(self, timeout: float) -> None:
        readers: list[Any] = [self._wake_r]
        if self._control is not None:
            readers.append(self._control.fd_read)
        if self._handover is not None and self._handover.sock is not None:
            readers.append(self._handover.sock)
        watched = self._draining.watched(self._sockets) if self._stopping else []
        readers.extend(watched)
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
        if watched and any(sock in ready for sock in watched):
            self._draining.refuse(self._sockets, ready)
        handover = self._handover
        if handover is not None and handover.sock in ready and handover.answer(self._sockets):
            self._handed_over = True
            self.log.info("%s: handed over %d listening socket(s)", self.name, len(self._sockets))

    # -- stopping -------------------------------------------------------------

    def _kill_remaining(self, why: str) -> None:
        for child in self._children.values():
            if not child.killed:
                self._pool.kill(child, "%s: killing worker %s %d (pid %d): %s", why)

    def _terminate_all(self) -> None:
        """Blocking stop used when the loop ends abnormally: no orphan is left."""
        for child in self._children.values():
            self._pool.signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while self._children and time.monotonic() < deadline:
            self._reap()
            if self._children:
                time.sleep(0.05)
        for child in self._children.values():
            self._pool.signal(child, signal.SIGKILL)
        for pid in list(self._children):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self._children.pop(pid).heartbeat.close()

    # -- workers -------------------------------------------------------------

    def reopen(self) -> None:
        """Ask the loop to have logs reopened, as SIGUSR1 does."""
        self._request(REOPEN_SIGNAL)

    def _reap(self) -> None:
        self._read_control()  # a dying worker's last error comes before its exit
        self._reaper.reap(self._stopping)

    def _spawn_due(self, now: float) -> None:
        self._forker.spawn_due(now)

    def _spawn(self, slot: Slot) -> None:
        self._forker.spawn(slot)

    def _child_setup(self, group: Group, worker_id: int, heartbeat: HeartbeatSlot,
                     mask: set[int]) -> ChildSetup:
        """What :func:`brim.supervisor.worker.run_child` needs in a new worker."""
        assert self._control is not None
        if self._draining.delaying:
            heartbeat.mark_unready()  # a replacement born during the delay goes away too
        return ChildSetup(
            group=group.name, worker_id=worker_id,
            title=group.title.format(group=group.name, id=worker_id),
            master_pid=self._master_pid, supervisor_name=self.name, heartbeat=heartbeat,
            control=self._control, mask=mask, log=self.log,
            reset_signals=RESET_IN_CHILD, ignore_signals=IGNORE_IN_CHILD,
            death_signal=DRAIN_SIGNAL, capture_output=self.capture_output,
            release_master=self._release_in_child, after_fork_child=self.after_fork_child,
        )

    def _release_in_child(self) -> None:
        """Close, in a new worker, what only the master may hold."""
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        if self._handover is not None:
            self._handover.close_in_child()
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
