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
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brim.supervisor._linux import set_parent_death_signal
from brim.supervisor.daemon import is_daemonized
from brim.supervisor.errors import SupervisorError
from brim.supervisor.handover import answer_handover, release_handover, serve_handover
from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.output import capture_output
from brim.supervisor.proctitle import set_process_title
from brim.supervisor.worker import WorkerContext

#: The signal a worker receives when it must drain (finish and exit).
DRAIN_SIGNAL = signal.SIGHUP
#: The signal that asks the master, then every worker, to reopen its log
#: files: the convention logrotate's postrotate uses for nginx and gunicorn.
REOPEN_SIGNAL = signal.SIGUSR1

_HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
            REOPEN_SIGNAL)
_RESET_IN_CHILD = (
    signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD, signal.SIGALRM,
)
_MAX_SLEEP = 1.0
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


@dataclass
class _Group:
    name: str
    workers: int
    target: Target
    title: str
    timeout: float | None


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
    ) -> None:
        if grace < 0:
            raise SupervisorError(f"grace must be >= 0 seconds, not {grace!r}")
        if timeout is not None and timeout <= 0:
            raise SupervisorError(f"timeout must be > 0 seconds or None, not {timeout!r}")
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
    ) -> None:
        """Keep *workers* processes running ``target(ctx)``, with ids 0..workers-1.

        *title* is formatted with ``{group}`` and ``{id}`` and prefixed with
        ``"<name>: "``; the default is ``"{group} worker {id}"``. *timeout*
        overrides the supervisor's hung-worker timeout for this group.
        May be called while running (from a hook); workers start promptly.
        """
        if name in self._groups:
            raise SupervisorError(f"group {name!r} already exists")
        if not isinstance(workers, int) or workers < 0:
            raise SupervisorError(f"group {name!r}: workers must be an int >= 0, not {workers!r}")
        if not callable(target):
            raise SupervisorError(f"group {name!r}: target {target!r} is not callable")
        group = _Group(
            name,
            workers,
            target,
            title if title is not None else "{group} worker {id}",
            self.timeout if timeout is _INHERIT else timeout,
        )
        self._groups[name] = group
        for worker_id in range(workers):
            self._slots[(name, worker_id)] = _Slot(group, worker_id)
        self._wake()

    def remove_group(self, name: str) -> None:
        """Stop keeping group *name* alive; its workers are asked to drain."""
        if self._groups.pop(name, None) is None:
            raise SupervisorError(f"no group {name!r}")
        for key in [k for k in self._slots if k[0] == name]:
            slot = self._slots.pop(key)
            if slot.pid is not None and slot.pid in self._children:
                self._retire(self._children[slot.pid])

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
        if threading.current_thread() is not threading.main_thread():
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
        old_handlers = {sig: signal.getsignal(sig) for sig in _HANDLED}
        old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        try:
            for sig in _HANDLED:
                signal.signal(sig, self._on_signal)
            if self.handover_path is not None and self._handover is None:
                self.prepare_handover()
            set_process_title(f"{self.name}: {self.title}")
            self.log.info("%s: master %d started", self.name, self._master_pid)
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
            self._wait(self._sleep_time(time.monotonic()))

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
        return max(0.0, wake - now)

    def _wait(self, timeout: float) -> None:
        readers: list[Any] = [self._wake_r]
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
        try:
            if self.on_reload is not None:
                self.on_reload(self)
            else:
                self.replace_all()
        except Exception:
            self.log.exception("%s: reload hook failed", self.name)

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
            if silent > group.timeout:
                self._kill(child, "%s: worker %s %d (pid %d) hung: no heartbeat for %.1fs, "
                           "killing it", silent)

    def _reap(self) -> None:
        for pid in list(self._children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
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
        self.log.warning(
            "%s: worker %s %d (pid %d) exited unexpectedly with %s; restarting %s",
            self.name, child.group, child.worker_id, child.pid, how,
            f"in {delay:.2f}s" if delay else "now",
        )

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
            self._child_main(group, slot.worker_id, heartbeat, old_mask)  # never returns
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        slot.pid = pid
        self._children[pid] = _Child(pid, group.name, slot.worker_id, heartbeat, time.monotonic())
        self.log.info(
            "%s: started worker %s %d (pid %d)", self.name, group.name, slot.worker_id, pid
        )

    def _child_main(
        self, group: _Group, worker_id: int, heartbeat: HeartbeatSlot, mask: set[int]
    ) -> None:
        """Runs in the new worker: clean up the master's state, run the target, exit."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for sig in _RESET_IN_CHILD:
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # Ignored until the worker installs its own handler: SIGUSR1's
            # default action would end a worker that is still starting.
            signal.signal(REOPEN_SIGNAL, signal.SIG_IGN)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            set_parent_death_signal(DRAIN_SIGNAL)
            if os.getppid() != self._master_pid:
                os._exit(0)  # the master died while we were being born
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            if self._handover is not None:
                self._handover.close()  # our fd only; the socket file stays the master's
                self._handover = None
            for other in self._children.values():
                other.heartbeat.close()
            self._children.clear()
            self._pending.clear()
            capture = self.capture_output
            if capture is None:
                capture = is_daemonized()
            if capture:
                capture_output(self.log)
            title = group.title.format(group=group.name, id=worker_id)
            set_process_title(f"{self.name}: {title}")
            ctx = WorkerContext(
                group.name, worker_id, self._master_pid, heartbeat, self.name, title
            )
            if self.after_fork_child is not None:
                self.after_fork_child(ctx)
                set_parent_death_signal(DRAIN_SIGNAL)  # a credential change clears it
            code = _exit_code(group.target(ctx), self.log)
        except SystemExit as exc:
            code = _exit_code(exc.code, self.log)
        except BaseException:
            try:
                self.log.exception(
                    "%s: worker %s %d (pid %d) crashed",
                    self.name, group.name, worker_id, os.getpid(),
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
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
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


