"""The four kinds of subserver brimd runs: WSGI, TCP, UDP and daemons.

Each subserver is built in the master from its conf section (imports,
``parse_conf``, ``stats_conf``, option checks: everything that can fail
because of the conf), and then run in each of its worker processes by
:meth:`Subserver.run`. Anything a worker does that is specific to eventlet
goes through :mod:`brim.wsgi.green`.
"""

from __future__ import annotations

import logging
import random
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brim.conf import Conf, ConfError, ConfProblems
from brim.log.configure import reopen_logs
from brim.stats import DAEMON, Group, StatDecl, StatsBucket
from brim.supervisor import WorkerContext
from brim.supervisor.dump import add_dump_source, install_dump_handler
from brim.supervisor.systemd import describe_socket
from brim.wsgi.environ import brim_items
from brim.wsgi.settings import http_settings, json_function
from brim.wsgi.stats import server_stats

from . import options
from .apps import app_stats, load_apps, load_class, parse_app_conf
from .exits import EXIT_STATS
from .logtarget import LogTarget
from .settings import ListenSettings, RecycleSettings, read_record

if TYPE_CHECKING:
    from .core import Server

#: Seconds between a worker's heartbeats (see the worker_timeout option).
HEARTBEAT_INTERVAL = 1.0

#: Counted by the master each time it recycles a process on purpose.
RECYCLE_STAT: StatDecl = (
    "recycle_count", "sum", "Times this worker or daemon process was recycled on purpose "
    "(max_requests, max_worker_lifetime, max_worker_rss)")

#: The stats every worker and daemon keeps about its own process.
PROCESS_STATS: list[StatDecl] = [
    ("start_time", "worker", "When this worker or daemon process last started, in seconds "
     "since the epoch (0 if it has not started yet)"),
    ("pid", "worker", "Process id of the worker or daemon now in this slot (0: never "
     "started); reports add its RSS and CPU seconds from /proc"),
    ("start_count", "sum", "Times this worker or daemon process started; more than once "
     "means it was restarted"),
    RECYCLE_STAT,
    *EXIT_STATS,
]


class Subserver:
    """What every kind shares: a conf section, a stats group, logging settings."""

    kind = ""
    #: Whether every Stats app reports this subserver: those with no HTTP
    #: listener of their own can be seen no other way.
    reported_by_all = False

    def __init__(self, conf: Conf, section: str) -> None:
        self.section = section
        self.group = section
        self.workers = 1
        self.stats: list[StatDecl] = list(PROCESS_STATS)
        #: Where this subserver's workers log (read once, set up in each worker).
        self.log = LogTarget.read(conf, self.kind, section)
        self.hub = (None if self.kind == "daemons"
                    else options.value(conf, self.kind, section, "eventlet_hub"))
        self.json_dumps = json_function(conf, section, "json_dumps")
        self.json_loads = json_function(conf, section, "json_loads")
        #: When its processes are replaced on purpose (the master checks most).
        self.recycle = read_record(RecycleSettings, conf, self.kind, section)
        self.recycling = self.recycle.recycling()

    @property
    def max_workers(self) -> int:
        """Stats buckets to allocate: the most workers it may ever have at once."""
        return self.workers

    @property
    def title(self) -> str:
        return "{group} worker {id}"

    def stats_group(self) -> Group:
        """This subserver's stats group, described for brim.stats.

        Its samples are labelled ``subserver="<section>"`` in Prometheus,
        and it is reported under its section name by other Stats apps.
        """
        return Group(self.group, self.workers, self.stats, labels={"subserver": self.group},
                     spare=self.max_workers - self.workers,
                     reported_by_all=self.reported_by_all)

    def env(self, server: Server, bucket: Any, logger: Any) -> dict[str, Any]:
        """The brim.* items every kind of app is handed (as a WSGI app's are)."""
        return brim_items(server=server, stats=bucket, logger=logger,
                          json_dumps=self.json_dumps, json_loads=self.json_loads)

    def run(self, ctx: WorkerContext, server: Server) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class ListeningSubserver(Subserver):
    """A subserver with an address, a listening socket and N workers."""

    proto = "tcp"

    def __init__(self, conf: Conf, section: str) -> None:
        super().__init__(conf, section)
        #: Where it listens and how its workers take work, read once.
        self.listen = read_record(ListenSettings, conf, self.kind, section)
        self.workers = self.listen.workers  # the current count: TTIN/TTOU and no-daemon
        path = self.listen.unix_path
        if path is not None and (self.proto != "tcp" or not path.startswith("/")):
            raise conf.error(section, "ip", (
                f"{self.listen.ip!r}: a Unix socket needs an absolute path (unix:/run/x.sock)"
                if self.proto == "tcp" else "a Unix socket is for WSGI and TCP subconfigs; "
                "UDP listens on an IP address"))
        self.sock: socket.socket | None = None
        #: Set when ``sock`` is the socket systemd passed under ``socket_name``
        #: (directly, or handed over or kept since): its address is systemd's,
        #: not ip and port.
        self.named_by_systemd = False

    @property
    def address(self) -> str:
        ip, port = self.listen.ip, self.listen.port
        if self.listen.unix_path is not None:
            return ip
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    @property
    def name_key(self) -> str | None:
        """The key of a socket systemd passed under this subconfig's socket_name."""
        name = self.listen.socket_name
        return f"{self.proto} systemd:{name}" if name else None

    @property
    def socket_key(self) -> str:
        """The name its socket is handed over (restart) and kept (reload) under.

        A socket systemd passed by name keeps that name as its key, so a
        successor finds it by socket_name even when ip or port changed.
        """
        if self.named_by_systemd and self.name_key:
            return self.name_key
        return f"{self.proto} {self.address}"

    @property
    def listener(self) -> socket.socket:
        """Its bound socket; the master binds it (Server.bind) before any worker starts."""
        if self.sock is None:
            raise RuntimeError(f"[{self.section}] has no socket: Server.bind() comes first")
        return self.sock

    @property
    def where(self) -> str:
        """Where it listens: ip and port, or the socket's own address when systemd
        passed it or the OS chose the port (port 0)."""
        if self.sock is not None and (self.named_by_systemd or self.listen.port == 0):
            return describe_socket(self.sock).partition(" ")[2]
        return self.address

    @property
    def title(self) -> str:
        return f"{self.section} worker {{id}} {self.where}"


def _setup_green_worker(sub: Subserver, ctx: WorkerContext,
                        server: Server) -> tuple[Any, logging.Logger, Any, StatsBucket]:
    """Common start of an eventlet worker: hub, logger, stats bucket, heartbeat."""
    from brim.wsgi import green

    if not ctx.single:
        green.use_hub(sub.hub)
        if green.apply_deferred_patching():
            server.worker_logger(sub).info(
                "[%s] patched the standard library with eventlet, as an app asked at import",
                sub.section)
    return _setup_worker(sub, ctx, server, green, "green threads")


def _setup_worker(sub: Subserver, ctx: WorkerContext, server: Server, engine: Any,
                  title: str) -> tuple[Any, logging.Logger, Any, StatsBucket]:
    """Common start of a worker on an engine: logger, stack dumps, stats bucket, heartbeat."""
    from brim.log.txn import txn_logger

    logger = server.worker_logger(sub)
    _install_dump(ctx, logger)
    add_dump_source(title, lambda: engine.stacks(_txn_note))
    bucket = server.bucket(sub.group, ctx.worker_id)
    bucket.mark_started()

    def _beat() -> None:
        while True:
            ctx.heartbeat()
            engine.sleep(HEARTBEAT_INTERVAL)

    engine.spawn(_beat)
    return engine, logger, txn_logger(logger), bucket


def _setup_threads_worker(sub: Subserver, ctx: WorkerContext,
                          server: Server) -> tuple[Any, logging.Logger, Any, StatsBucket]:
    """Common start of a worker on OS threads: nothing is patched, whatever an app asked."""
    from brim.wsgi import green, threads

    setup = _setup_worker(sub, ctx, server, threads, "threads serving connections")
    if not ctx.single and green.patching_asked():
        setup[1].warning("[%s] an app called eventlet.monkey_patch() at import; a threads "
                         "worker patches nothing, so it was not applied", sub.section)
    return setup


class WSGISubserver(ListeningSubserver):
    kind = "wsgi"

    def __init__(self, conf: Conf, section: str) -> None:
        # Its options, its apps and its HTTP settings are checked independently,
        # so a conf with faults in several is told about all of them at once.
        problems = ConfProblems()
        with problems.check():
            super().__init__(conf, section)
        with problems.check():
            #: The chain's apps, loaded and checked here; each worker builds them.
            self.apps = load_apps(conf, section)
        with problems.check():
            self.settings = http_settings(conf, section)
        with problems.check():
            self._read_tls(conf, section)
        problems.raise_any()
        self.stats = [*server_stats(self.settings.count_status_codes), RECYCLE_STAT, *EXIT_STATS,
                      *self.apps.stats]
        self._max_workers = self.recycle.max_workers or 2 * self.workers
        if self._max_workers < self.workers:
            raise conf.error(section, "max_workers", f"must be at least workers "
                             f"({self.workers}), not {self._max_workers}")

    def _read_tls(self, conf: Conf, section: str) -> None:
        """certfile, keyfile and the rest of the TLS options, as server_ssl_context takes them.

        The files are read when the master binds (and again on reload).
        """
        self.certfile = options.value(conf, self.kind, section, "certfile")
        self.keyfile = options.value(conf, self.kind, section, "keyfile")
        self.tls_options: dict[str, Any] = {
            "cafile": options.value(conf, self.kind, section, "cafile"),
            "client_cert": options.value(conf, self.kind, section, "client_cert"),
            "min_version": options.value(conf, self.kind, section, "tls_min_version"),
            "ciphers": options.value(conf, self.kind, section, "ciphers") or None,
            "alpn": ("http/1.1",),
        }
        if self.tls_options["client_cert"] != "none" and not self.tls_options["cafile"]:
            found = conf.found_in(section, "client_cert", inherit=True) or section
            raise conf.error(found, "client_cert", "needs cafile, the CAs to verify client "
                             "certificates against")

    @property
    def max_workers(self) -> int:
        """The most workers SIGTTIN may raise it to (stats buckets are made for these)."""
        return self._max_workers

    @property
    def notes_size(self) -> int:
        """Shared bytes per worker for its requests in flight (brim.wsgi.inflight)."""
        from brim.wsgi.inflight import table_size

        return table_size(self.settings.concurrent_per_worker)

    def run(self, ctx: WorkerContext, server: Server) -> int:
        from brim.wsgi.http import HTTPServer

        if self.settings.worker_model == "threads":
            engine, logger, _, bucket = _setup_threads_worker(self, ctx, server)
        else:
            if self.settings.monkey_patch and not ctx.single:
                from brim.wsgi import green

                green.monkey_patch()  # before the hub starts and the app is built
            engine, logger, _, bucket = _setup_green_worker(self, ctx, server)
        app = self.apps.build()
        http = HTTPServer(self.listener, app, self.settings, stats=bucket, logger=logger,
                          server=server, name=self.section, notes=ctx.notes)
        add_dump_source(f"requests in flight in [{self.section}]",
                        http.state.requests_in_flight)
        def drain() -> None:
            ctx.request_drain()  # a readiness check answers 503 from now on
            http.drain()

        _drain_on_signals(engine, drain, ctx)
        if self.recycle.max_requests:
            # Jitter drawn per worker: workers started together (at start,
            # or after a reload) would otherwise all reach the limit at once.
            limit = self.recycle.max_requests + random.randint(
                0, self.recycle.max_requests_jitter)
            http.state.limit_requests(
                limit, lambda: ctx.request_recycle(f"max_requests: served {limit}"))
        ctx.ready()
        http.serve_forever()
        return 0


class SocketSubserver(ListeningSubserver):
    """What TCP and UDP subservers share: one app class, called per connection or datagram."""

    #: The stat each worker counts its connections or datagrams in, and what it means.
    count_stat = ""
    count_help = ""
    reported_by_all = True
    #: What one call of the app handles, for log lines.
    unit = ""

    def __init__(self, conf: Conf, section: str) -> None:
        problems = ConfProblems()
        with problems.check():
            super().__init__(conf, section)
        with problems.check():
            self.cls = load_class(conf, section, referrer=(section, "call"))
            own = [o.name for o in options.SECTION_OPTIONS[self.kind]]
            self.conf = parse_app_conf(self.cls, section, conf, own)
            self.stats = [*PROCESS_STATS, (self.count_stat, "sum", self.count_help),
                          *app_stats(self.cls, section, self.conf)]
        problems.raise_any()

    def call_app(self, app: Any, base_env: dict[str, Any], logger: Any, address: Any,
                 *args: Any) -> None:
        """``app(*args, env)`` with a fresh txn; a failure is logged, never raised.

        Whatever the app raises, SystemExit and KeyboardInterrupt included (an
        app that runs argparse on a client's line, or exits on a command),
        ends this connection or datagram only: the worker and its other
        connections go on. Only the worker's own GreenletExit (a drain) is
        let through.
        """
        from brim.log.txn import new_txn, set_txn
        from brim.wsgi import green

        txn = new_txn()
        set_txn(txn)
        env = dict(base_env)
        env["brim.txn"] = txn
        env["brim.start"] = time.time()
        try:
            app(*args, env)
        except green.GreenletExit:
            pass
        except BaseException:
            logger.exception("[%s] app failed on %s from %s", self.section, self.unit,
                             _peer(address))
        finally:
            set_txn(None)


    def serve(self, green: Any, ctx: Any, pool: Any, loop: Callable[[], None],
              release: Callable[[], None] | None = None) -> int:
        """Run ``loop`` (accepting or receiving) until asked to drain, then let the
        app calls in flight finish; ``release`` lets go of the socket on drain."""
        main = green.spawn(loop)

        def drain() -> None:
            green.kill(main)
            if release is not None:
                release()

        _drain_on_signals(green, drain, ctx)
        ctx.ready()
        try:
            main.wait()
        except green.GreenletExit:
            pass
        pool.waitall()
        return 0


class TCPSubserver(SocketSubserver):
    """Calls ``app(sock, address, env)`` in a green thread per connection."""

    kind = "tcp"
    count_stat = "connection_count"
    count_help = "Connections accepted and handed to the app"
    unit = "connection"

    def run(self, ctx: WorkerContext, server: Server) -> int:
        """Accept and serve; when every slot is taken, shed the connection that has
        waited longest on its client, as a WSGI worker does (see green_socket)."""
        from brim.wsgi.state import Shed, shed_longest

        green, raw_logger, logger, bucket = _setup_green_worker(self, ctx, server)
        app = self.cls(self.section, self.conf)
        pool = green.GreenPool(self.listen.concurrent_per_worker)
        listener = self.listener
        listener.setblocking(False)
        base_env = self.env(server, bucket, logger)
        #: Connections whose app waits in a receive, oldest first.
        waiting: dict[Any, float] = {}

        def handle(conn: socket.socket, address: Any) -> None:
            bucket.incr(self.count_stat)
            try:
                self.call_app(app, base_env, raw_logger, address,
                              green.green_socket(conn, waiting, Shed), address)
            finally:
                try:
                    conn.close()
                except OSError:
                    pass

        def accept_loop() -> None:
            green.accept_forever(listener, pool, handle,
                                 lambda: shed_longest(green.throw, waiting))

        def release() -> None:
            try:
                listener.close()
            except OSError:
                pass

        return self.serve(green, ctx, pool, accept_loop, release)


class UDPSubserver(SocketSubserver):
    """Calls ``app(sock, datagram, address, env)`` in a green thread per datagram."""

    kind = "udp"
    proto = "udp"
    count_stat = "datagram_count"
    count_help = "Datagrams received and handed to the app"
    unit = "datagram"

    def __init__(self, conf: Conf, section: str) -> None:
        super().__init__(conf, section)
        self.max_datagram_size = options.value(conf, self.kind, section, "max_datagram_size")

    def run(self, ctx: WorkerContext, server: Server) -> int:
        green, raw_logger, logger, bucket = _setup_green_worker(self, ctx, server)
        app = self.cls(self.section, self.conf)
        pool = green.GreenPool(self.listen.concurrent_per_worker)
        sock = green.green_socket(self.listener)
        base_env = self.env(server, bucket, logger)
        size = self.max_datagram_size
        section = self.section

        def handle(datagram: bytes, address: Any) -> None:
            self.call_app(app, base_env, raw_logger, address, sock, datagram, address)

        def receive_loop() -> None:
            while True:
                try:
                    datagram, address = sock.recvfrom(size)
                except OSError as err:
                    raw_logger.warning("[%s] receive failed: %s", section, err)
                    green.sleep(0.1)
                    continue
                bucket.incr(self.count_stat)
                pool.spawn_n(handle, datagram, address)

        return self.serve(green, ctx, pool, receive_loop)


class DaemonSubserver(Subserver):
    """One daemon: ``cls(name, conf)`` called as ``daemon(env)`` in its own process.

    Daemons are plain processes (no eventlet hub): they may block, sleep and
    use threads as they like. TERM or HUP ends them; a daemon that returns or
    raises is started again, with back-off if it keeps failing.
    """

    kind = "daemons"

    def __init__(self, conf: Conf, name: str) -> None:
        problems = ConfProblems()
        with problems.check():
            super().__init__(conf, "daemons")
        self.section = name
        self.group = f"daemon:{name}"
        with problems.check():
            self.cls = load_class(conf, name, referrer=("daemons", "daemons"))
            self.conf = parse_app_conf(self.cls, name, conf)
            self.stats = [*PROCESS_STATS, *app_stats(self.cls, name, self.conf)]
        problems.raise_any()

    def stats_group(self) -> Group:
        """One process, labelled ``daemon="<name>"``, reported by every Stats app as
        ``daemon_<name>``."""
        return Group(self.group, 1, self.stats, kind=DAEMON, labels={"daemon": self.section},
                     key=f"daemon_{self.section}", reported_by_all=True)

    @property
    def title(self) -> str:
        return f"daemon {self.section}"

    def run(self, ctx: WorkerContext, server: Server) -> int:
        from brim.log.txn import txn_logger

        logger = server.worker_logger(self)
        _install_dump(ctx, logger)
        if not ctx.single:
            # A plain process: the handler runs between bytecodes of the
            # daemon's main thread. Its sinks write whole blocks, so a
            # reopen there costs at most the order of two lines.
            signal.signal(signal.SIGUSR1, lambda *_: reopen_logs())
        bucket = server.bucket(self.group, 0)
        bucket.mark_started()
        daemon = self.cls(self.section, self.conf)
        ctx.ready()
        daemon(self.env(server, bucket, txn_logger(logger)))
        logger.warning("daemon %s returned; it will be started again", self.section)
        return 0


def _install_dump(ctx: Any, logger: Any) -> None:
    """Log a stack dump on DUMP_SIGNAL (SIGUSR2), which the master sends a hung
    worker before it kills it, and an operator may send any time.

    A plain signal handler, not a green one: it runs even when the worker's
    loop is blocked, and sees the code that blocks it. In no-daemon mode
    :func:`brim.server.single.run_single` installs one for the whole process.
    """
    if not ctx.single:
        install_dump_handler(logger, ctx.title)


def _txn_note(context: Any) -> str | None:
    """The txn a thread serves, read from its context variables, for a dump."""
    from brim.log.txn import current_txn

    if context is None:
        return None
    try:
        txn = context.run(current_txn)
    except RuntimeError:
        # Entered by the OS thread running it now: read it without entering.
        txn = next((value for var, value in context.items() if var.name == "brim_txn"), None)
    return f"txn:{txn}" if txn else None


def _drain_on_signals(engine: Any, drain: Callable[[], None], ctx: Any) -> None:
    """HUP (the supervisor's drain request) and TERM both finish work and exit.

    TERM is graceful too, as in gunicorn: the master follows it with KILL
    after ``grace`` seconds, so a worker that cannot finish is still ended.
    SIGINT is ignored: a Ctrl-C reaches the whole process group and the
    master turns it into an orderly stop. USR1 reopens the log files.
    """
    # In no-daemon mode nothing else says "drain": look often, so the stop
    # takes effect at once (one flag read per look).
    every = 0.05 if ctx.single else HEARTBEAT_INTERVAL

    def _watch_master() -> None:
        while not ctx.draining:
            engine.sleep(every)
        drain()

    engine.spawn(_watch_master)
    if ctx.single:
        # no-daemon mode: one process; its signals are run_single's, which
        # asks for the drain through ctx (brim.server.single_stop).
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    engine.install_signal_handlers({signal.SIGHUP: lambda _: drain(),
                                   signal.SIGTERM: lambda _: drain(),
                                   signal.SIGUSR1: lambda _: reopen_logs()})


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address) or "-"


def build_subservers(conf: Conf) -> list[Subserver]:
    """Every subserver the conf describes, validated.

    Each section (and each app) is checked even when an earlier one failed,
    and the ConfError names every problem found, so ``brimd check`` and a
    refused start list all a user has to fix.
    """
    problems = ConfProblems()
    with problems.check():
        options.check_sections(conf)
    subservers: list[Subserver] = []
    kinds: list[tuple[Callable[[Conf, str], Subserver], list[str]]] = [
        (WSGISubserver, conf.subconfigs("wsgi")),
        (TCPSubserver, conf.subconfigs("tcp")),
        (UDPSubserver, conf.subconfigs("udp")),
    ]
    with problems.check():
        names = options.value(conf, "daemons", "daemons", "daemons")
        kinds.append((DaemonSubserver, list(dict.fromkeys(names))))
    for build, sections in kinds:
        for section in sections:
            with problems.check():
                subservers.append(build(conf, section))
    problems.raise_any()
    if not subservers:
        where = ", ".join(conf.files) or "no conf file was found"
        raise ConfError(
            f"nothing to run: add a [wsgi], [tcp#name], [udp#name] or [daemons] section ({where})"
        )
    check_addresses(subservers, skip=lambda sub: sub.listen.socket_name is not None)
    return subservers


def check_addresses(subservers: list[Any],
                    skip: Callable[[ListeningSubserver], bool] = lambda sub: False) -> None:
    """ConfError when two listening subconfigs would bind the same address.

    ``skip`` leaves some out: a subconfig with a socket_name is checked only
    once it is known to bind its own address (no socket activation, and no
    socket systemd passed carried over by a restart), since under activation
    it serves the socket systemd passed, whatever its ip and port say.
    """
    seen: dict[str, str] = {}
    for sub in subservers:
        if not isinstance(sub, ListeningSubserver) or skip(sub):
            continue
        path = sub.listen.unix_path
        if path is not None:
            if f"unix {path}" in seen:
                raise ConfError(f"[{sub.section}] ip: unix socket {path} is already used by "
                                f"[{seen[f'unix {path}']}]")
            seen[f"unix {path}"] = sub.section
            continue
        if sub.listen.port == 0:
            continue
        ip, port = sub.listen.ip, sub.listen.port
        key = f"{sub.proto} {port}"
        if key in seen and (ip == "*" or seen[key].split()[1] in ("*", ip)):
            raise ConfError(
                f"[{sub.section}] port: {sub.proto} port {port} is already used by "
                f"[{seen[key].split()[0]}]"
            )
        seen.setdefault(key, f"{sub.section} {ip}")
