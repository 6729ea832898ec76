"""The running brimd master: from a bound Server to a supervised, reporting service.

Why apart from :class:`~brim.server.core.Server`: a Server is a validated
conf with its sockets and stats (and what apps see as ``env['brim']``); a
reload builds a new one. The master outlives those: it holds the pid file,
the supervisor, systemd's notifier, the report to the command that started
it and the status file, and it swaps Servers on reload. One object owns
that lifecycle: :meth:`Master.run` (the master itself, in the foreground or
once daemonized), :meth:`Master.start_daemon` (``start`` and ``restart``:
fork, daemonize, and wait for an honest report) and :meth:`Master.reload`
(SIGHUP).

An honest start: the command that starts brimd returns only once every
subserver's workers are up and stayed up ``start_check`` seconds, printing
one line per subserver, or fails with the error of the worker that could
not stay up (its traceback), leaving nothing running. A restart takes over
from its predecessor only then; until then the old brimd serves on.
"""

from __future__ import annotations

import os
import signal
import sys
from importlib import metadata

from brim.conf import ConfError
from brim.supervisor import (
    PidFile,
    Supervisor,
    SupervisorError,
    daemonize,
    drop_privileges,
    parse_umask,
    user_ids,
)
from brim.supervisor.systemd import Notifier

from .core import Server
from .report import StartReport
from .statusfile import StatusFile, status_path
from .subservers import RECYCLE_STAT, ListeningSubserver, Subserver, WSGISubserver

__all__ = ["START_TIMEOUT", "Master", "handover_path", "version"]

#: How long ``start``, ``restart`` and ``reload`` wait for the master's answer.
START_TIMEOUT = 60.0


def version() -> str:
    try:
        return metadata.version("brimd")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        return "unknown"


def handover_path(pid_path: str, pid: int) -> str:
    """Where the master with ``pid`` offers its sockets to a successor."""
    return f"{pid_path}.{pid}.sock"


def describe(sub: Subserver, workers: int) -> str:
    """One line for the start report: ``wsgi 127.0.0.1:8080 4 workers``."""
    if isinstance(sub, ListeningSubserver):
        return f"{sub.section} {sub.where} {workers} worker{'s' if workers != 1 else ''}"
    return f"daemon {sub.section}"


class Master:
    """One brimd master process and everything it keeps across reloads."""

    def __init__(self, server: Server, pidfile: PidFile | None, *, stderr: bool, syslog: bool,
                 reload_conf: list[str] | None, foreground: bool = False,
                 predecessor: int | None = None) -> None:
        self.server = server
        self.pidfile = pidfile
        self.stderr = stderr
        self.syslog = syslog
        self.reload_conf = reload_conf
        self.foreground = foreground
        #: The running brimd this one takes over from (restart), until it has.
        self.predecessor = predecessor
        self.report: StartReport | None = None
        self.status = StatusFile(status_path(pidfile.path)) if pidfile else None
        self.logger = server.logger
        self.notifier: Notifier | None = None
        #: Start checks so far: 1 after the start, one more per reload.
        self.generation = 0
        self.started = False
        #: The verdict on the current generation, as the status file tells it:
        #: starting, reloading, running or failed (with ``error``). Kept until
        #: the next generation, so ``brimd reload`` cannot miss it.
        self.state = "starting"
        self.error: str | None = None
        self.failure: str | None = None

    # -- start and restart: fork, daemonize, wait for the report ------------------

    def start_daemon(self, *, keep_std: bool) -> int:
        """Fork; the child daemonizes and runs the master; this process waits.

        Returns the command's exit code: 0 once every worker stayed up, 1
        with the failing worker's error printed on stderr otherwise.
        """
        report = StartReport()
        pid = os.fork()
        if pid:
            report.in_command()
            self.server.close_sockets()
            ok, text = report.wait(START_TIMEOUT)
            os.waitpid(pid, 0)
            if ok:
                if text:
                    print(text)
                return 0
            print(text, file=sys.stderr)
            return 1
        self.report = report.in_master()
        try:
            daemonize(keep_std=keep_std)
            code = self.run()
        except BaseException as err:
            if isinstance(err, SystemExit):
                raise
            report.failed(str(err) if isinstance(err, ConfError) else f"brimd: {err}")
            code = 1
        os._exit(code)

    # -- the master -------------------------------------------------------------

    def run(self) -> int:
        """Become the master: pid file, logging, privileges, the supervisor loop."""
        if self.pidfile is not None and self.predecessor is None:
            self.pidfile.write()
        code = 1
        try:
            code = self._supervise()
        except Exception as err:
            # Once daemonized, stderr is gone: the log is the only place left.
            self.logger.exception("brimd master failed")
            if self.failure is None:
                self.failure = (str(err) if isinstance(err, ConfError)
                                else f"brimd: {type(err).__name__}: {err}")
        finally:
            self._finish()
        return 1 if self.failure else code

    def _supervise(self) -> int:
        server = self.server
        self.logger = server.setup_logging(stderr=self.stderr, syslog=self.syslog)
        self.notifier = Notifier.from_environment(self.logger)
        path = self.pidfile.path if self.pidfile else None
        sup = Supervisor(
            name="brimd", logger=self.logger, grace=server.settings.grace,
            timeout=server.settings.worker_timeout or None, sockets=server.sockets,
            handover_path=handover_path(path, os.getpid()) if path else None,
            start_check=server.settings.start_check, reap_orphans=self.foreground,
            notify=self.notifier,
            on_reload=self.reload, on_reopen=server.reopen_logs, on_ready=self._ready,
            on_start_failed=self._start_failed, on_recycle=self._recycled,
            on_status=self._write_status, on_shutdown=self._shutdown,
            after_fork_child=self._in_worker,
        )
        add_groups(server, sup)
        if path:
            sup.prepare_handover()  # while still allowed to create files beside the pid file
        if self.status is not None:
            try:
                self.status.open()
            except OSError as err:
                self.logger.warning("cannot write status file %s: %s", self.status.path, err)
        self._drop_privileges()
        self.logger.info("brimd %s started: %s", version(),
                         ", ".join(f"{s.group} x{s.workers}" for s in server.subservers))
        self.generation = 1
        self._write_status(sup)
        return sup.run()

    def _drop_privileges(self) -> None:
        server = self.server
        settings = server.settings
        if settings.user or settings.group:
            uid, gid = user_ids(settings.user, settings.group)
            for target in {server.log, *(sub.log for sub in server.subservers)}:
                target.hand_file_to(uid, gid)
            if self.pidfile is not None and self.predecessor is not None:
                self.pidfile.keep_open()  # rewritten once this master is up
            drop_privileges(settings.user, settings.group, settings.umask)
        else:
            os.umask(parse_umask(settings.umask))

    def _finish(self) -> None:
        if self.report is not None:
            self.report.failed(self.failure or "brimd: the master stopped before its "
                               "workers were up (see its log)")
        if self.pidfile is not None and self.predecessor is None:
            try:
                if self.pidfile.remove() and self.status is not None:
                    self.status.remove()
            except SupervisorError as err:
                self.logger.warning("%s", err)
        if self.notifier is not None:
            self.notifier.close()
        self.logger.info("brimd stopped")

    # -- supervisor hooks --------------------------------------------------------

    def _in_worker(self, ctx: object) -> None:
        """In each new worker: the master's own files are not the worker's to hold."""
        if self.status is not None:
            self.status.close()
        if self.pidfile is not None:
            self.pidfile.close()

    def summary(self, sup: Supervisor) -> list[str]:
        counts = sup.up_counts()
        return [describe(sub, counts.get(sub.group, (0, sub.workers))[1])
                for sub in self.server.subservers]

    def _ready(self, sup: Supervisor) -> None:
        """Every worker stayed up: report, and (restart) take over from the predecessor."""
        self.started = True
        if self.state != "failed":  # a refused reload stays failed
            self.state = "running"
        if self.predecessor is not None:
            if self.pidfile is not None:
                try:
                    self.pidfile.write()
                except SupervisorError as err:
                    self.logger.error("%s", err)
            try:
                os.kill(self.predecessor, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            self.predecessor = None
        self._write_status(sup)
        if self.report is not None:
            self.report.succeeded("\n".join(self.summary(sup)))
            self.report = None

    def _start_failed(self, sup: Supervisor, group: str, worker_id: int, error: str) -> None:
        text = f"brimd: {group} worker {worker_id} could not stay up:\n{error}"
        if self.started:  # a reload whose workers fail: keep trying, say so
            self.state, self.error = "failed", text
            self.logger.error("%s", text)
            self._write_status(sup)
            return
        self.failure = text
        self.logger.error("%s; stopping", text)
        sup.stop()

    def _recycled(self, group: str, worker_id: int, pid: int, reason: str) -> None:
        if self.server.stats is not None:
            self.server.stats.bucket(group, worker_id).incr(RECYCLE_STAT[0])

    def _shutdown(self, sup: Supervisor) -> bool:
        """QUIT: if a successor wrote the pid file, tell systemd it is the main process now."""
        successor = self.pidfile.running_pid() if self.pidfile is not None else None
        if successor is None or successor == os.getpid():
            return False
        if self.notifier is not None:
            self.notifier.mainpid(successor)
        self.predecessor = successor  # its pid file and status file: not ours to remove
        return True

    def _write_status(self, sup: Supervisor) -> None:
        if self.status is None or self.predecessor is not None:
            return
        counts = sup.up_counts()
        record = {
            "pid": os.getpid(), "generation": self.generation, "state": self.state,
            "error": self.error,
            # A successor started by `brimd restart` notifies systemd in our place.
            "notify": self.notifier.environment() if self.notifier is not None else {},
            "subservers": [
                {"name": sub.group, "line": describe(sub, counts.get(sub.group, (0, 0))[1]),
                 "up": counts.get(sub.group, (0, 0))[0],
                 "workers": counts.get(sub.group, (0, 0))[1]}
                for sub in self.server.subservers
            ],
        }
        try:
            self.status.write(record)
        except OSError as err:
            self.logger.warning("cannot write status file %s: %s", self.status.path, err)

    # -- reload -------------------------------------------------------------------

    def reload(self, sup: Supervisor) -> None:
        """SIGHUP: read the conf again and replace every worker gracefully.

        The new conf is validated completely before anything changes; a bad
        one is logged and reported (``brimd reload`` prints it) and brimd
        keeps running as it was. Sockets whose address is unchanged are
        kept, so no connection is refused; new addresses are bound, ports no
        longer configured are closed. The old workers serve on until the new
        ones stayed up ``start_check`` seconds, and drain then; if the new
        ones cannot stay up, the old ones go on serving (``brimd reload``
        says so). ``user`` and ``group`` need a restart.
        """
        old = self.server
        self.generation += 1
        try:
            new = old.reloaded(self.reload_conf)
            unused = new.bind(old.sockets, activated=old.activated)
        except (ConfError, SupervisorError) as err:
            self.state = "failed"
            self.error = f"brimd: reload refused, still running the previous conf: {err}"
            self.logger.error("%s", self.error)
            self._write_status(sup)
            return
        self.state, self.error = "reloading", None
        self._write_status(sup)
        if (new.settings.user, new.settings.group) != (old.settings.user,
                                                       old.settings.group):
            self.logger.warning("reload: user and group changes take effect on restart, "
                                "not reload")
        new.allocate_stats()
        self.logger = new.setup_logging(stderr=old.log_to_stderr, syslog=old.log_to_syslog)
        for group in list(sup.groups):
            sup.remove_group(group, when_replaced=True)
        sup.set_sockets(new.sockets)
        for sock in unused.values():
            try:
                sock.close()
            except OSError:
                pass
        add_groups(new, sup)
        if old.stats is not None:
            old.stats.close()
        self.server = new
        self.logger.info("brimd reloaded: %s",
                         ", ".join(f"{s.group} x{s.workers}" for s in new.subservers))


def add_groups(server: Server, sup: Supervisor) -> None:
    """Have ``sup`` keep every subserver's workers alive, with its recycling rules.

    WSGI subservers may be resized at run time (TTIN/TTOU) up to their
    ``max_workers``; daemons get no hang check (they may block as they like).
    """
    for sub in server.subservers:
        timeout = None if sub.kind == "daemons" else (server.settings.worker_timeout or None)
        sup.add_group(
            sub.group, sub.workers, server.worker_target(sub), title=sub.title,
            timeout=timeout, recycling=sub.recycling, announces_ready=True,
            max_workers=sub.max_workers if isinstance(sub, WSGISubserver) else None,
        )
    server.supervisor = sup
