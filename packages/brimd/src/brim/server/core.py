"""brim.server.Server: one brimd, from a validated conf to a running master.

The Server is also what apps get as ``env['brim']``: it holds the conf, the
stats store and the subservers, so an app can look around the whole brimd
it runs in.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from brim.conf import Conf, ConfError, ConfProblems
from brim.log.configure import reopen_logs
from brim.log.stream import capture_std_streams
from brim.stats import StatsBucket, StatsStore
from brim.supervisor import (
    ActivatedSocket,
    Supervisor,
    SupervisorError,
    activated_sockets,
    describe_socket,
    listen_tcp,
    listen_udp,
    listen_unix,
    raise_open_files_limit,
    server_ssl_context,
    user_ids,
)
from brim.supervisor.daemon import is_daemonized
from brim.wsgi.errors import STOPPING_ANSWER

from . import options
from .dialect import BRIMD_DIALECT, MAIN_SECTION, apply_overrides, read_conf
from .logtarget import LogTarget
from .settings import ListenSettings, MasterSettings, read_record
from .subservers import (
    ListeningSubserver,
    Subserver,
    WSGISubserver,
    build_subservers,
    check_addresses,
)

#: Default conf files, read in this order when no -c is given.
DEFAULT_CONF_FILES = ("/etc/brimd.conf", "/etc/brim/brimd.conf", "~/.brimd.conf")


def load_conf(paths: Sequence[str] | None, overrides: Sequence[str] = ()) -> Conf:
    """The conf brimd runs: the -c files (or the default locations that exist),
    then the environment's and the command line's overrides."""
    if paths:
        conf = read_conf(paths)
    else:
        conf = read_conf(DEFAULT_CONF_FILES, missing_ok=True)
        if not conf.files:
            raise ConfError(
                f"no conf file found (looked for {', '.join(DEFAULT_CONF_FILES)}); "
                "write one or name it with -c"
            )
    return apply_overrides(conf, overrides)


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


def _describe_passed(passed: ActivatedSocket) -> str:
    return f"{passed.name!r} ({describe_socket(passed.sock)})"


def _serves_address(sub: ListeningSubserver, sock: socket.socket) -> bool:
    """Whether ``sock`` is bound where ``sub``'s ip and port say, with its protocol."""
    want = socket.SOCK_STREAM if sub.proto == "tcp" else socket.SOCK_DGRAM
    path = sub.listen.unix_path
    if sock.family == socket.AF_UNIX and sock.type == want and path is not None:
        try:
            return bool(sock.getsockname() == path)
        except OSError:
            return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != want:
        return False
    try:
        host, port = sock.getsockname()[:2]
        bound = ipaddress.ip_address(host)
    except (OSError, ValueError):
        return False
    if port != sub.listen.port:
        return False
    ip = sub.listen.ip
    ip = ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip
    if ip in ("", "*"):
        return bound.is_unspecified
    try:
        return ipaddress.ip_address(ip) == bound
    except ValueError:  # a host name: any of its addresses
        try:
            infos = socket.getaddrinfo(ip, port, sock.family, want)
        except OSError:
            return False
        return any(ipaddress.ip_address(info[4][0]) == bound for info in infos)


def _listen_unix(where: ListenSettings) -> socket.socket:
    """The Unix socket of ``ip = unix:/path``, with socket_mode and socket_owner."""
    assert where.unix_path is not None
    mode = (int(where.socket_mode.strip().lower().removeprefix("0o"), 8)
            if where.socket_mode else None)
    uid = gid = None
    if where.socket_owner:
        user, _, group = where.socket_owner.partition(":")
        uid, gid = user_ids(user or None, group or None)
        if group == "" and user:
            gid = None  # "user" alone: its uid, the group brimd creates it with
    return listen_unix(where.unix_path, where.backlog, mode, uid, gid)


def _check_passed(conf: Conf, sub: ListeningSubserver, passed: ActivatedSocket) -> None:
    """Refuse a socket chosen by name that ``sub`` cannot serve, saying why."""
    sock = passed.sock
    what = f"systemd's socket {_describe_passed(passed)}"
    problem = None
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        problem = f"{what} is not an IPv4, IPv6 or Unix socket"
    elif sock.family == socket.AF_UNIX and sub.proto != "tcp":
        problem = f"{what} is a Unix socket, and [{sub.section}] serves UDP"
    elif sub.proto == "tcp" and sock.type != socket.SOCK_STREAM:
        problem = f"{what} is not a stream socket, and [{sub.section}] serves TCP"
    elif sub.proto == "udp" and sock.type != socket.SOCK_DGRAM:
        problem = f"{what} is not a datagram socket, and [{sub.section}] serves UDP"
    elif sub.proto == "tcp" and not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = (f"{what} is not listening (a .socket unit with Accept=yes passes "
                   "connections; brimd needs Accept=no)")
    if problem:
        raise conf.error(sub.section, "socket_name", problem)


def _defer_app_patching() -> None:
    """Keep an app's import-time eventlet.monkey_patch() out of the master.

    The master imports every app to check the conf; a module that patches
    the standard library when imported would patch the master (and, through
    fork, every worker before it has chosen its model). The call is
    recorded instead and made in each green worker (see
    :func:`brim.wsgi.green.defer_app_patching`).
    """
    try:
        from brim.wsgi import green
    except ImportError:  # brim-wsgi without eventlet: nothing can patch
        return
    green.defer_app_patching()


class Server:
    """A whole brimd: conf, subservers, sockets, stats and the supervisor.

    Building one validates the conf completely (options, app imports,
    ``parse_conf``, ``stats_conf``) and raises one ConfError naming every problem,
    before any socket is bound or process started. ``conf`` must have been
    read in brimd's dialect (``brim.server.dialect.read_conf``), or [brim]
    and the other brimd sections mean nothing to it.
    """

    def __init__(self, conf: Conf, *, output: bool = False,
                 built_in_memory: bool = False, overrides: Sequence[str] = ()) -> None:
        self.conf = conf
        self.output = output
        #: The conf was not read from files (``brimd serve`` builds one from
        #: its command line): a reload carries it over as it is
        #: (:attr:`brim.server.reexec.Carried.conf_store`) instead of reading
        #: the conf files again.
        self.built_in_memory = built_in_memory
        #: The ``--set`` values the conf was read with, applied again on reload.
        self.overrides = tuple(overrides)
        # Every problem at once (each section, each app), not only the first.
        problems = ConfProblems()
        _defer_app_patching()
        with problems.check():
            self.subservers: list[Subserver] = build_subservers(conf)
        with problems.check():
            #: The master's own options ([brim]), read and checked once.
            self.settings = read_record(MasterSettings, conf, MAIN_SECTION, MAIN_SECTION)
        with problems.check():
            self.log = LogTarget.read(conf, MAIN_SECTION, MAIN_SECTION)
        problems.raise_any()
        self.stats: StatsStore | None = None
        self.supervisor: Supervisor | None = None
        #: The sockets systemd passed (socket activation), all of them in use;
        #: reload matches the new conf against them again.
        self.activated: list[ActivatedSocket] = []
        #: In a worker process: its WorkerContext (None in the master).
        self.worker: Any = None
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
        green_subs = [s for s in self.subservers if s.kind != "daemons"]
        if not green_subs:
            return
        import brim.log.stream  # noqa: F401
        from brim.wsgi import green, http, requestlog, threads  # noqa: F401

        for sub in green_subs:
            try:
                green.preload([sub.hub])
            except ValueError as err:
                # Named where the value was set, with its file and line.
                found = self.conf.found_in(sub.section, "eventlet_hub", inherit=True)
                raise self.conf.error(found or sub.section, "eventlet_hub", str(err)) from None

    @classmethod
    def from_files(cls, paths: Sequence[str] | None, *, output: bool = False,
                   overrides: Sequence[str] = ()) -> Server:
        """Read the conf (the -c files, or the default locations) and build a Server.

        ``overrides`` are ``--set`` values (``section.option=value``); they
        and the ``BRIMD_`` environment variables win over the files (see
        :func:`brim.server.dialect.apply_overrides`).
        """
        return cls(load_conf(paths, overrides), output=output, overrides=overrides)

    @classmethod
    def in_memory(cls, store: dict[str, dict[str, str]], *, output: bool = False) -> Server:
        """A Server for a conf built in memory, section to options (``brimd serve``)."""
        return cls(Conf(store, dialect=BRIMD_DIALECT), output=output, built_in_memory=True)

    # -- master side ---------------------------------------------------------

    @property
    def listeners(self) -> list[ListeningSubserver]:
        return [s for s in self.subservers if isinstance(s, ListeningSubserver)]

    def bind(self, inherited: dict[str, socket.socket] | None = None, *,
             activated: list[ActivatedSocket] | None = None,
             on_busy: Callable[[str], object] | None = None) -> dict[str, socket.socket]:
        """Give every listening subserver its socket: systemd's, inherited, or bound now.

        Socket activation: when systemd passed sockets (``activated``; read
        from the environment when None), every listening subserver serves one
        of them, the one named by its ``socket_name`` or else the one with
        its ip, port and protocol. A passed socket no subserver takes, or a
        subserver that finds none, is a ConfError naming them: systemd owns
        the addresses then, and a socket brimd bound on the side would serve
        an address the .socket unit does not list (while one it lists would
        queue connections nobody accepts).

        Otherwise sockets handed over by a running brimd (restart) or kept by
        reload are used for the subservers they match, by address, or by
        ``socket_name`` for a socket systemd once passed; the rest are bound
        now. Inherited sockets left unused are returned, for the caller to
        close (never one systemd passed). Also builds the TLS contexts, so a
        bad cert fails here. ``on_busy`` is told, once per address, when a
        port is in use and binding is being retried (and who holds it).
        """
        inherited = dict(inherited or {})
        if activated is None:
            activated = activated_sockets()
        self.activated = list(activated)
        raise_open_files_limit()  # every connection is a descriptor; workers inherit it
        passed = self._match_activated() if self.activated else {}
        if not self.activated:
            check_addresses(self.listeners, skip=lambda sub: sub.name_key in inherited)
        for sub in self.listeners:
            sub.named_by_systemd = False
            if self.activated:
                sock: socket.socket | None = passed[sub.section]
                sub.named_by_systemd = sub.listen.socket_name is not None
            elif sub.name_key is not None and sub.name_key in inherited:
                sock = inherited.pop(sub.name_key)
                sub.named_by_systemd = True
            else:
                sock = inherited.pop(sub.socket_key, None)
            if sock is None:
                try:
                    where = sub.listen
                    if where.unix_path is not None:
                        sock = _listen_unix(where)
                    elif sub.proto == "tcp":
                        sock = listen_tcp(where.ip, where.port, where.backlog,
                                          retry=where.listen_retry, on_busy=on_busy)
                    else:
                        sock = listen_udp(where.ip, where.port, retry=where.listen_retry,
                                          on_busy=on_busy)
                except SupervisorError as err:
                    raise ConfError(f"[{sub.section}] {err}") from None
            sub.sock = sock
            if isinstance(sub, WSGISubserver) and sub.certfile:
                try:
                    sub.settings.ssl_context = server_ssl_context(
                        sub.certfile, sub.keyfile, **sub.tls_options)
                except SupervisorError as err:
                    text = str(err)
                    option = ("cafile" if "CA file" in text else
                              "ciphers" if "cipher" in text else "certfile")
                    raise ConfError(f"[{sub.section}] {option}: {text}") from None
        systemds = {id(a.sock) for a in self.activated}
        return {key: sock for key, sock in inherited.items() if id(sock) not in systemds}

    def _match_activated(self) -> dict[str, socket.socket]:
        """Section to socket: which passed socket each listening subserver serves.

        Subservers with a socket_name choose first, so one matched by
        address cannot take a socket another one asked for by name.
        """
        left = list(self.activated)
        chosen: dict[str, socket.socket] = {}
        passed_list = ", ".join(_describe_passed(a) for a in self.activated)
        for sub in sorted(self.listeners, key=lambda s: s.listen.socket_name is None):
            name = sub.listen.socket_name
            if name is not None:
                hit = next((a for a in left if a.name == name), None)
                if hit is None:
                    raise self.conf.error(
                        sub.section, "socket_name",
                        f"systemd passed no socket named {name!r} "
                        f"(it passed {passed_list})")
                _check_passed(self.conf, sub, hit)
            else:
                hit = next((a for a in left if _serves_address(sub, a.sock)), None)
                if hit is None:
                    raise ConfError(
                        f"[{sub.section}] systemd passed no socket for {sub.proto} "
                        f"{sub.address} (it passed {passed_list}); set socket_name to "
                        "the one to serve, or list this address in the .socket unit")
            left.remove(hit)
            chosen[sub.section] = hit.sock
        if left:
            raise ConfError(
                "systemd passed socket(s) no subconfig serves: "
                + ", ".join(_describe_passed(a) for a in left)
                + "; name each in a subconfig's socket_name (or give a subconfig its ip "
                "and port), or remove it from the .socket unit")
        return chosen

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

    def bucket(self, group: str, index: int) -> StatsBucket:
        """One worker's stats bucket, in the store allocated before the workers forked."""
        if self.stats is None:
            raise RuntimeError("no stats store: Server.allocate_stats() comes before any fork")
        return self.stats.bucket(group, index)

    def setup_logging(self, *, stderr: bool, syslog: bool = True) -> logging.Logger:
        """Log to syslog (when daemonized), to stderr (foreground, no-daemon or -o), or both,
        unless the conf's log_sink says otherwise."""
        self.log_to_stderr, self.log_to_syslog = stderr, syslog
        self.logger = self.log.setup(stderr=stderr, syslog=syslog)
        self._capture_std_streams(self.logger)
        return self.logger

    def _capture_std_streams(self, logger: logging.Logger) -> None:
        """In a daemonized process (no ``-o``), send sys.stdout and sys.stderr to the log.

        Their fds are /dev/null there: a warning, a print or a traceback
        written to them would be lost. Each block written becomes one record
        (:class:`brim.log.LogStream`).
        """
        if is_daemonized() and not self.log_to_stderr:
            capture_std_streams(logger)

    def reopen_logs(self, sup: Supervisor) -> None:
        """SIGUSR1 in the master: reopen its log files (the supervisor then tells the workers)."""
        reopen_logs()
        self.logger.info("%s: reopening log files (SIGUSR1)", sup.name)

    def worker_logger(self, sub: Subserver) -> logging.Logger:
        """The logger of a subserver's worker, set up in the worker itself."""
        logger = self._worker_loggers.get(sub.log)
        if logger is None:
            logger = sub.log.setup(stderr=self.log_to_stderr, syslog=self.log_to_syslog)
            self._worker_loggers[sub.log] = logger
            self._capture_std_streams(logger)
        return logger

    def worker_target(self, sub: Subserver) -> Callable[[Any], int]:
        """What a worker of ``sub`` runs: the subserver, with this Server around it."""
        def run(ctx: Any) -> int:
            self._worker_loggers.clear()
            self.worker = ctx
            return sub.run(ctx, self)

        run.__name__ = f"run_{sub.kind}"
        return run

    @property
    def going_away(self) -> bool:
        """True in a worker once brimd is stopping or draining it: from TERM
        (the drain delay included), a reload or restart replacing it, or its
        recycling. What a readiness check answers 503 on."""
        ctx = self.worker
        return bool(ctx is not None and ctx.going_away)

    def refusal(self, key: str) -> bytes | None:
        """What connections still queued on socket ``key`` get when brimd stops.

        The master answers them (see :mod:`brim.supervisor.draining`) rather
        than let the kernel reset them: a plain HTTP listener's get a 503
        with ``Connection: close``; a TLS or TCP listener's are closed
        cleanly (no handshake in the master); UDP has no backlog.
        """
        for sub in self.listeners:
            if sub.socket_key != key or sub.proto != "tcp":
                continue
            if isinstance(sub, WSGISubserver) and not sub.certfile:
                return STOPPING_ANSWER
            return b""
        return None

    def close_sockets(self) -> None:
        for sub in self.listeners:
            if sub.sock is not None:
                try:
                    sub.sock.close()
                except OSError:
                    pass

    def pid_file(self, override: str | None) -> str | None:
        """The pid file path: -p wins, then pid_file in [brim], then the default."""
        return pid_file_path(override, self.settings.pid_file)

    def __repr__(self) -> str:
        return f"<brim.server.Server {[s.group for s in self.subservers]}>"
