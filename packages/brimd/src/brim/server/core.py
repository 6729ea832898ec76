"""brim.server.Server: one brimd, from a validated conf to a running master.

The Server is also what apps get as ``env['brim']``: it holds the conf, the
stats store and the subservers, so an app can look around the whole brimd
it runs in.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

from brim.conf import Conf, ConfError
from brim.stats import StatsStore
from brim.supervisor import (
    Supervisor,
    SupervisorError,
    listen_tcp,
    listen_udp,
    parse_umask,
    raise_open_files_limit,
    server_ssl_context,
)
from brim.wsgi.log import reopen_logs

from . import options
from .dialect import MAIN_SECTION, read_conf
from .logtarget import LogTarget
from .subservers import ListeningSubserver, Subserver, WSGISubserver, build_subservers

#: Default conf files, read in this order when no -c is given.
DEFAULT_CONF_FILES = ("/etc/brimd.conf", "/etc/brim/brimd.conf", "~/.brimd.conf")


def pid_file_path(override: str | None, configured: str | None) -> str | None:
    """Which pid file: ``-p`` wins (``-`` for none), then ``pid_file`` in [brim],
    then /var/run/brimd.pid as root or ~/.brimd.pid otherwise."""
    if override == "-":
        return None
    if override:
        return os.path.abspath(os.path.expanduser(override))
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return options.default_pid_file()


class Server:
    """A whole brimd: conf, subservers, sockets, stats and the supervisor.

    Building one validates the conf completely (options, app imports,
    ``parse_conf``, ``stats_conf``) and raises ConfError on the first problem,
    before any socket is bound or process started. ``conf`` must have been
    read in brimd's dialect (``brim.server.dialect.read_conf``), or [brim]
    and the other brimd sections mean nothing to it.
    """

    def __init__(self, conf: Conf, *, output: bool = False) -> None:
        self.conf = conf
        self.output = output
        self.subservers: list[Subserver] = build_subservers(conf)
        read = lambda name: options.value(conf, MAIN_SECTION, MAIN_SECTION, name)  # noqa: E731
        self.user: str | None = read("user")
        self.group: str | None = read("group")
        self.umask: str = read("umask")
        self.grace: float = read("grace")
        self.worker_timeout: float = read("worker_timeout")
        self.pid_file_option: str | None = read("pid_file")
        self._check_umask()
        self.log = LogTarget.read(conf, MAIN_SECTION, MAIN_SECTION)
        self.stats: StatsStore | None = None
        self.supervisor: Supervisor | None = None
        self.logger = logging.getLogger(self.log.name)
        self.start_time = time.time()
        #: Where logs go; set by setup_logging and followed by every worker.
        self.log_to_stderr = True
        self.log_to_syslog = True
        self._worker_loggers: dict[LogTarget, logging.Logger] = {}
        self._preload()

    def _preload(self) -> None:
        """Import in the master everything workers import, so a privilege drop cannot
        leave a worker unable to read its own code."""
        hubs = [s.hub for s in self.subservers if s.kind != "daemons"]
        if not hubs:
            return
        from brim.wsgi import green, http, log  # noqa: F401

        try:
            green.preload(hubs)
        except ValueError as err:
            raise ConfError(f"[brim] eventlet_hub: {err}") from None

    @classmethod
    def from_files(cls, paths: list[str] | None, *, output: bool = False) -> Server:
        """Read the conf (the -c files, or the default locations) and build a Server."""
        if paths:
            conf = read_conf(paths)
        else:
            conf = read_conf(DEFAULT_CONF_FILES, missing_ok=True)
            if not conf.files:
                raise ConfError(
                    f"no conf file found (looked for {', '.join(DEFAULT_CONF_FILES)}); "
                    "write one or name it with -c"
                )
        return cls(conf, output=output)

    def _check_umask(self) -> None:
        try:
            parse_umask(self.umask)
        except SupervisorError as err:
            raise self.conf.error(MAIN_SECTION, "umask", str(err)) from None

    # -- master side ---------------------------------------------------------

    @property
    def listeners(self) -> list[ListeningSubserver]:
        return [s for s in self.subservers if isinstance(s, ListeningSubserver)]

    def bind(self, inherited: dict[str, socket.socket] | None = None) -> dict[str, socket.socket]:
        """Give every listening subserver its socket: inherited if offered, else bound now.

        Sockets handed over by a running brimd (on restart) are used for the
        addresses they match; any left unused are returned, for the caller to
        close. Also builds the TLS contexts, so a bad cert fails here.
        """
        inherited = dict(inherited or {})
        raise_open_files_limit()  # every connection is a descriptor; workers inherit it
        for sub in self.listeners:
            sock = inherited.pop(sub.socket_key, None)
            if sock is None:
                try:
                    if sub.proto == "tcp":
                        sock = listen_tcp(sub.ip, sub.port, sub.backlog, retry=sub.listen_retry)
                    else:
                        sock = listen_udp(sub.ip, sub.port, retry=sub.listen_retry)
                except SupervisorError as err:
                    raise ConfError(f"[{sub.section}] {err}") from None
            sub.sock = sock
            if isinstance(sub, WSGISubserver) and sub.certfile:
                try:
                    sub.settings.ssl_context = server_ssl_context(sub.certfile, sub.keyfile)
                except SupervisorError as err:
                    raise ConfError(f"[{sub.section}] certfile: {err}") from None
        return inherited

    @property
    def sockets(self) -> dict[str, socket.socket]:
        return {s.socket_key: s.sock for s in self.listeners if s.sock is not None}

    def allocate_stats(self) -> StatsStore:
        """The shared stats store; must exist before the first fork.

        Each subserver describes its own group (see Subserver.stats_group):
        brim.stats learns from those which are daemons and which have no
        Stats app of their own, and knows nothing else about brimd.
        """
        groups = [sub.stats_group() for sub in self.subservers]
        self.stats = StatsStore(groups, start_time=self.start_time)
        return self.stats

    def setup_logging(self, *, stderr: bool, syslog: bool = True) -> logging.Logger:
        """Log to syslog (when daemonized), to stderr (foreground, no-daemon or -o), or both,
        unless the conf's log_sink says otherwise."""
        self.log_to_stderr, self.log_to_syslog = stderr, syslog
        self.logger = self.log.setup(stderr=stderr, syslog=syslog)
        return self.logger

    def _reopen_logs(self, sup: Supervisor) -> None:
        """SIGUSR1 in the master: reopen its log files (the supervisor then tells the workers)."""
        reopen_logs()
        self.logger.info("%s: reopening log files (SIGUSR1)", sup.name)

    def worker_logger(self, sub: Subserver) -> logging.Logger:
        """The logger of a subserver's worker, set up in the worker itself."""
        logger = self._worker_loggers.get(sub.log)
        if logger is None:
            logger = sub.log.setup(stderr=self.log_to_stderr, syslog=self.log_to_syslog)
            self._worker_loggers[sub.log] = logger
        return logger

    def supervise(self, *, handover_path: str | None = None, on_reload: Any = None,
                  on_started: Any = None) -> Supervisor:
        """The Supervisor that keeps every subserver's workers alive."""
        sup = Supervisor(
            name="brimd",
            logger=self.logger,
            grace=self.grace,
            timeout=self.worker_timeout or None,
            sockets=self.sockets,
            handover_path=handover_path,
            on_reload=on_reload,
            on_started=on_started,
            on_reopen=self._reopen_logs,
        )
        self.add_groups(sup)
        return sup

    def add_groups(self, sup: Supervisor) -> None:
        """Have ``sup`` keep every subserver's workers alive (daemons get no hang check)."""
        for sub in self.subservers:
            timeout: Any = None if sub.kind == "daemons" else (self.worker_timeout or None)
            sup.add_group(sub.group, sub.workers, self._target(sub), title=sub.title,
                          timeout=timeout)
        self.supervisor = sup

    def _target(self, sub: Subserver):
        def run(ctx: Any) -> int:
            self._worker_loggers.clear()
            return sub.run(ctx, self)

        run.__name__ = f"run_{sub.kind}"
        return run

    def close_sockets(self) -> None:
        for sub in self.listeners:
            if sub.sock is not None:
                try:
                    sub.sock.close()
                except OSError:
                    pass

    def pid_file(self, override: str | None) -> str | None:
        """The pid file path: -p wins, then pid_file in [brim], then the default."""
        return pid_file_path(override, self.pid_file_option)

    def __repr__(self) -> str:
        return f"<brim.server.Server {[s.group for s in self.subservers]}>"
