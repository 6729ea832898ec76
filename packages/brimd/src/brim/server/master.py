"""The running brimd master: from a bound Server to a supervised, reporting service.

Why apart from :class:`~brim.server.core.Server`: a Server is a validated
conf with its sockets and stats (and what apps see as ``env['brim']``). The
master holds the pid file, the supervisor, systemd's notifier, the report to
the command that started it and the status file. One object owns that
lifecycle: :meth:`Master.run` (the master itself, in the foreground or once
daemonized), :meth:`Master.start_daemon` (``start`` and ``restart``: fork,
daemonize, and wait for an honest report) and :meth:`Master.reload`
(SIGHUP), which re-executes the master in place with a new Server built from
the conf and code on disk; :meth:`Master.resumed` is the master again in
that new image (see :mod:`brim.server.reexec`).

An honest start: the command that starts brimd returns only once every
subserver's workers are up and stayed up ``start_check`` seconds, printing
one line per subserver, or fails with the error of the worker that could
not stay up (its traceback), leaving nothing running. A restart takes over
from its predecessor only then; until then the old brimd serves on.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from importlib import metadata

from brim.conf import ConfError
from brim.stats import Carry, StatsError, StatsStore
from brim.supervisor import (
    PidFile,
    Supervisor,
    SupervisorError,
    daemonize,
    drop_privileges,
    is_daemonized,
    parse_umask,
    user_ids,
)
from brim.supervisor.systemd import Notifier

from .core import Server
from .exits import KILLED_STAT, recycle_reason, recycle_stat, restart_stat
from .killed import KilledRequests
from .reexec import Carried, ReloadRefused, check_new, execute
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
        #: What the previous image of this process handed over (a reload
        #: re-executed it in place; see brim.server.reexec), or None.
        self.carried: Carried | None = None
        #: The counters carried from the previous image's stats store (reload).
        self.carry: Carry | None = None
        #: Logs the requests a worker had in flight when it went.
        self.killed = KilledRequests(server)

    @classmethod
    def resumed(cls, server: Server, carried: Carried) -> Master:
        """The master again, in the image a reload re-executed (same pid)."""
        pidfile = PidFile(carried.pid_file, name="brimd") if carried.pid_file else None
        master = cls(server, pidfile, stderr=carried.stderr, syslog=carried.syslog,
                     reload_conf=carried.conf, foreground=carried.foreground)
        master.carried = carried
        master.generation = carried.generation
        master.started = True
        master.state = "reloading"
        return master

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
        if self.pidfile is not None and self.predecessor is None and self.carried is None:
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
            drain_delay=server.settings.drain_delay, refusal=server.refusal,
            on_reload=self.reload, on_reopen=server.reopen_logs, on_ready=self._ready,
            on_start_failed=self._start_failed, on_recycle=self._recycled,
            on_status=self._write_status, on_shutdown=self._shutdown,
            after_fork_child=self._in_worker, on_child_exit=self._exited,
        )
        add_groups(server, sup)
        carried = self.carried
        if carried is not None:
            self._resume(sup, carried)
        else:
            if path:
                sup.prepare_handover()  # while still allowed to create files beside it
            if self.status is not None:
                try:
                    self.status.open()
                except OSError as err:
                    self.logger.warning("cannot write status file %s: %s", self.status.path,
                                        err)
            self._drop_privileges()
            self.logger.info("brimd %s started: %s", version(),
                             ", ".join(f"{s.group} x{s.workers}" for s in server.subservers))
            self.generation = 1
        self._write_status(sup)
        return sup.run()

    def _resume(self, sup: Supervisor, carried: Carried) -> None:
        """After the exec of a reload: take back the files and workers of the old image.

        Privileges were dropped and the umask set before the exec; both hold.
        """
        if carried.handover_fd is not None:
            sup.adopt_handover(socket.socket(fileno=carried.handover_fd))
        if self.status is not None and carried.status_fd is not None:
            self.status.adopt(carried.status_fd)
        for pid, group, worker_id in carried.workers:
            sup.adopt(pid, group, worker_id)
        self._carry_stats(carried)
        settings = self.server.settings
        if [settings.user, settings.group] != carried.identity:
            self.logger.warning("reload: user and group changes take effect on restart, "
                                "not reload")
        self.logger.info("brimd reloaded: %s (brimd %s, new code loaded, master re-executed "
                         "in place, pid %d; %d previous worker(s) serve until the new ones "
                         "are up)", ", ".join(f"{s.group} x{s.workers}"
                                              for s in self.server.subservers),
                         version(), os.getpid(), len(carried.workers))

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
        self._count(group, worker_id, RECYCLE_STAT[0])
        counted = recycle_reason(reason)
        if counted is not None:
            self._count(group, worker_id, recycle_stat(counted))

    def _exited(self, group: str, worker_id: int, pid: int, status: int) -> None:
        """A worker was reaped: count a restart by its cause; fold the previous store's counts."""
        sup = self.server.supervisor
        cause = sup.exit_cause if sup is not None else ""
        if cause in ("crash", "hung"):
            self._count(group, worker_id, restart_stat(cause))
        if sup is not None and sup.exit_notes:
            lost = self.killed.log(group, worker_id, pid, cause, sup.exit_killed,
                                   sup.exit_notes)
            if lost:
                self._count(group, worker_id, KILLED_STAT, lost)
        if self.carry is not None:
            self.carry.fold()

    def _count(self, group: str, worker_id: int, stat: str, n: int = 1) -> None:
        """Count ``n`` in a worker slot's bucket (the master's own words in it)."""
        stats = self.server.stats
        if stats is None:
            return
        try:
            bucket = stats.bucket(group, worker_id)
            for _ in range(n):
                bucket.incr(stat)
        except StatsError:  # a group or slot this image's store does not have
            pass

    def _carry_stats(self, carried: Carried) -> None:
        """After a reload's exec: start the new store's counters where the old one's are.

        The old image's store comes as a memfd (Carried.stats_fd), mapped
        here read-only. Its counters are copied bucket by bucket, so no
        series goes back (StatsStore.carry_from); what the old workers still
        count while they drain is folded into the departed buckets as they
        go (each reaped worker, each status change), until the next reload.
        Each worker slot the old store had in use counts one ``reload``.
        """
        new = self.server.stats
        if carried.stats_fd is None or new is None:
            return
        try:
            old = StatsStore.attach(carried.stats_fd)
        except StatsError as err:
            self.logger.warning("reload: counters start again from 0: %s", err)
            return
        finally:
            os.close(carried.stats_fd)
            carried.stats_fd = None
        self.carry = new.carry_from(old)
        for group in new.groups():
            if group not in old.groups():
                continue
            for n, values in enumerate(old.values(group, usage=False)):
                if values["start_time"] and n < new.bucket_count(group):
                    new.bucket(group, n).incr(recycle_stat("reload"))

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
        if self.carry is not None:
            self.carry.fold()
        if self.status is None or self.predecessor is not None:
            return
        counts = sup.up_counts()
        record = {
            "pid": os.getpid(), "generation": self.generation, "state": self.state,
            "error": self.error, "foreground": self.foreground,
            # A successor started by `brimd restart` notifies systemd in our place.
            "notify": self.notifier.environment() if self.notifier is not None else {},
            # Where `brimd top` maps the stats store (see StatsStore.attach).
            "stats": self.server.stats.path if self.server.stats is not None else None,
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
        """SIGHUP: load the conf and the code now on disk, and replace every worker.

        The master re-executes itself in place (same pid; see
        :mod:`brim.server.reexec` for why and how): a fresh interpreter
        first checks the new conf and apps completely and binds new
        addresses; if that fails, the error is logged and reported
        (``brimd reload`` prints it and exits 1) and nothing changes.
        Otherwise the new image keeps the sockets whose address is
        unchanged (no connection is refused), closes ports no longer
        configured, and starts new workers; the old ones serve on until the
        new ones stayed up ``start_check`` seconds, and drain then. If the
        new ones cannot stay up, the old ones go on serving (``brimd reload``
        says so). ``user``, ``group`` and ``pid_file`` need a restart.
        """
        self.generation += 1
        if self.report is not None or self.predecessor is not None:
            self._refuse(sup, "brimd: reload refused: this brimd is still starting")
            return
        carried = self._carried(sup)
        try:
            new_sockets = check_new(carried, self._watchdog_ping)
        except ReloadRefused as err:
            self._refuse(sup, f"brimd: reload refused, still running the previous conf: {err}")
            return
        for key, sock in new_sockets.items():
            carried.sockets[key] = sock.fileno()
        self.state, self.error = "reloading", None
        self._write_status(sup)
        self.logger.info("brimd: the new conf and code loaded in a check; re-executing the "
                         "master in place (pid %d)", os.getpid())
        try:
            execute(carried, sup)
        except OSError as err:
            self._refuse(sup, f"brimd: reload failed: cannot re-execute the master: {err}")
        finally:
            for sock in new_sockets.values():  # reached only if the exec failed
                sock.close()

    def _watchdog_ping(self) -> None:
        if self.notifier is not None and self.notifier.watchdog_interval:
            self.notifier.watchdog()

    def _refuse(self, sup: Supervisor, error: str) -> None:
        self.state, self.error = "failed", error
        self.logger.error("%s", error)
        self._write_status(sup)

    def _carried(self, sup: Supervisor) -> Carried:
        """What this master hands to its re-executed self (see brim.server.reexec)."""
        server = self.server
        handover = sup.handover_socket
        if self.carry is not None:
            self.carry.fold()  # the last of the previous store, before this one goes on
        return Carried(
            conf=self.reload_conf, sys_path=list(sys.path),
            pid_file=self.pidfile.path if self.pidfile else None,
            stderr=server.log_to_stderr, syslog=server.log_to_syslog, output=server.output,
            foreground=self.foreground, daemonized=is_daemonized(),
            generation=self.generation, start_time=server.start_time,
            sockets={key: sock.fileno() for key, sock in server.sockets.items()},
            activated=[[a.name, a.sock.fileno()] for a in server.activated],
            workers=[list(child) for child in sup.children],
            status_fd=self.status.fileno() if self.status is not None else None,
            handover_fd=handover.fileno() if handover is not None else None,
            notify=self.notifier.environment() if self.notifier is not None else {},
            log=dataclasses.asdict(server.log), grace=server.settings.grace,
            identity=[server.settings.user, server.settings.group],
            conf_store=server.conf.store if server.built_in_memory else None,
            stats_fd=server.stats.fileno() if server.stats is not None else None,
            overrides=list(server.overrides),
        )


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
            notes_size=sub.notes_size if isinstance(sub, WSGISubserver) else 0,
        )
    server.supervisor = sup
