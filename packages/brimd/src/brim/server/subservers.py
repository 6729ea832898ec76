"""The four kinds of subserver brimd runs: WSGI, TCP, UDP and daemons.

Each subserver is built in the master from its conf section (imports,
``parse_conf``, ``stats_conf``, option checks: everything that can fail
because of the conf), and then run in each of its worker processes by
:meth:`Subserver.run`. Anything a worker does that is specific to eventlet
goes through :mod:`brim.wsgi.green`.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from brim.conf import Conf, ConfError
from brim.stats import DAEMON, Group, StatDecl
from brim.wsgi.chain import app_stats, build_chain, load_apps, load_class, parse_app_conf
from brim.wsgi.log import reopen_logs
from brim.wsgi.settings import http_settings, json_function
from brim.wsgi.stats import server_stats

from . import options
from .logtarget import LogTarget

if TYPE_CHECKING:
    from .core import Server

#: Seconds between a worker's heartbeats (see the worker_timeout option).
HEARTBEAT_INTERVAL = 1.0

#: The stats every worker and daemon keeps about its own process.
PROCESS_STATS: list[StatDecl] = [
    ("start_time", "worker", "When this worker or daemon process last started, in seconds "
     "since the epoch (0 if it has not started yet)"),
    ("start_count", "sum", "Times this worker or daemon process started; more than once "
     "means it was restarted"),
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

    @property
    def title(self) -> str:
        return "{group} worker {id}"

    def stats_group(self) -> Group:
        """This subserver's stats group, described for brim.stats.

        Its samples are labelled ``subserver="<section>"`` in Prometheus,
        and it is reported under its section name by other Stats apps.
        """
        return Group(self.group, self.workers, self.stats, labels={"subserver": self.group},
                     reported_by_all=self.reported_by_all)

    def env(self, server: Server, bucket: Any, logger: Any) -> dict[str, Any]:
        """The brim.* items every kind of app is handed."""
        return {
            "brim": server,
            "brim.stats": bucket,
            "brim.logger": logger,
            "brim.json_dumps": self.json_dumps,
            "brim.json_loads": self.json_loads,
        }

    def run(self, ctx: Any, server: Server) -> int:  # pragma: no cover - abstract
        raise NotImplementedError


class ListeningSubserver(Subserver):
    """A subserver with an address, a listening socket and N workers."""

    proto = "tcp"

    def __init__(self, conf: Conf, section: str) -> None:
        super().__init__(conf, section)
        read = lambda name: options.value(conf, self.kind, section, name)  # noqa: E731
        self.ip: str = read("ip")
        self.port: int = read("port")
        self.workers = read("workers")
        self.listen_retry: float = read("listen_retry")
        self.backlog: int = read("backlog") if self.kind != "udp" else 0
        self.concurrent: int = read("concurrent_per_worker")
        self.sock: socket.socket | None = None

    @property
    def address(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{host}:{self.port}"

    @property
    def socket_key(self) -> str:
        """The name its socket is handed over under on restart."""
        return f"{self.proto} {self.address}"

    @property
    def title(self) -> str:
        return f"{self.section} worker {{id}} {self.address}"


def _setup_green_worker(sub: Subserver, ctx: Any, server: Server):
    """Common start of an eventlet worker: hub, logger, stats bucket, heartbeat."""
    from brim.wsgi import green
    from brim.wsgi.log import txn_logger

    single = getattr(ctx, "single", False)
    if not single:
        green.use_hub(sub.hub)
    logger = server.worker_logger(sub)
    bucket = server.stats.bucket(sub.group, ctx.worker_id)
    bucket.mark_started()

    def _beat() -> None:
        while True:
            ctx.heartbeat()
            green.sleep(HEARTBEAT_INTERVAL)

    green.spawn(_beat)
    return green, logger, txn_logger(logger), bucket


class WSGISubserver(ListeningSubserver):
    kind = "wsgi"

    def __init__(self, conf: Conf, section: str) -> None:
        super().__init__(conf, section)
        self.specs = load_apps(conf, section)
        self.settings = http_settings(conf, section)
        self.certfile = options.value(conf, self.kind, section, "certfile")
        self.keyfile = options.value(conf, self.kind, section, "keyfile")
        self.stats = [*server_stats(self.settings.count_status_codes),
                      *(decl for spec in self.specs for decl in spec.stats)]

    def run(self, ctx: Any, server: Server) -> int:
        from brim.wsgi.http import HTTPServer

        green, logger, _, bucket = _setup_green_worker(self, ctx, server)
        app = build_chain(self.specs)
        http = HTTPServer(self.sock, app, self.settings, stats=bucket, logger=logger,
                          server=server, name=self.section)
        _drain_on_signals(green, http.drain, ctx)
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
        super().__init__(conf, section)
        self.cls = load_class(conf, section, referrer=(section, "call"))
        self.conf = parse_app_conf(self.cls, section, conf)
        self.stats = [*PROCESS_STATS, (self.count_stat, "sum", self.count_help),
                      *app_stats(self.cls, section, self.conf)]

    def call_app(self, app: Any, base_env: dict[str, Any], logger: Any, address: Any,
                 *args: Any) -> None:
        """``app(*args, env)`` with a fresh txn; a failure is logged, never raised."""
        from brim.wsgi import green
        from brim.wsgi.log import new_txn, set_txn

        txn = new_txn()
        set_txn(txn)
        env = dict(base_env)
        env["brim.txn"] = txn
        env["brim.start"] = time.time()
        try:
            app(*args, env)
        except green.GreenletExit:
            pass
        except Exception:
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

    def run(self, ctx: Any, server: Server) -> int:
        green, raw_logger, logger, bucket = _setup_green_worker(self, ctx, server)
        app = self.cls(self.section, self.conf)
        pool = green.GreenPool(self.concurrent)
        listener = self.sock
        listener.setblocking(False)
        base_env = self.env(server, bucket, logger)

        def handle(conn: socket.socket, address: Any) -> None:
            bucket.incr(self.count_stat)
            try:
                self.call_app(app, base_env, raw_logger, address, green.green_socket(conn),
                              address)
            finally:
                try:
                    conn.close()
                except OSError:
                    pass

        def accept_loop() -> None:
            while True:
                conn, address = green.accept(listener)
                pool.spawn_n(handle, conn, address)

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

    def run(self, ctx: Any, server: Server) -> int:
        green, raw_logger, logger, bucket = _setup_green_worker(self, ctx, server)
        app = self.cls(self.section, self.conf)
        pool = green.GreenPool(self.concurrent)
        sock = green.green_socket(self.sock)
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
        super().__init__(conf, "daemons")
        self.section = name
        self.group = f"daemon:{name}"
        self.cls = load_class(conf, name, referrer=("daemons", "daemons"))
        self.conf = parse_app_conf(self.cls, name, conf)
        self.stats = [*PROCESS_STATS, *app_stats(self.cls, name, self.conf)]

    def stats_group(self) -> Group:
        """One process, labelled ``daemon="<name>"``, reported by every Stats app as
        ``daemon_<name>``."""
        return Group(self.group, 1, self.stats, kind=DAEMON, labels={"daemon": self.section},
                     key=f"daemon_{self.section}", reported_by_all=True)

    @property
    def title(self) -> str:
        return f"daemon {self.section}"

    def run(self, ctx: Any, server: Server) -> int:
        from brim.wsgi.log import txn_logger

        logger = server.worker_logger(self)
        if not getattr(ctx, "single", False):
            # A plain process: the handler runs between bytecodes of the
            # daemon's main thread. Its sinks write whole blocks, so a
            # reopen there costs at most the order of two lines.
            signal.signal(signal.SIGUSR1, lambda *_: reopen_logs())
        bucket = server.stats.bucket(self.group, 0)
        bucket.mark_started()
        daemon = self.cls(self.section, self.conf)
        daemon(self.env(server, bucket, txn_logger(logger)))
        logger.warning("daemon %s returned; it will be started again", self.section)
        return 0


def _drain_on_signals(green: Any, drain: Callable[[], None], ctx: Any) -> None:
    """HUP (the supervisor's drain request) and TERM both finish work and exit.

    TERM is graceful too, as in gunicorn: the master follows it with KILL
    after ``grace`` seconds, so a worker that cannot finish is still ended.
    SIGINT is ignored: a Ctrl-C reaches the whole process group and the
    master turns it into an orderly stop. USR1 reopens the log files.
    """
    if getattr(ctx, "single", False):
        return  # no-daemon mode: one process, Ctrl-C ends it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    green.install_signal_handlers({signal.SIGHUP: lambda _: drain(),
                                   signal.SIGTERM: lambda _: drain(),
                                   signal.SIGUSR1: lambda _: reopen_logs()})

    def _watch_master() -> None:
        while not ctx.draining:
            green.sleep(HEARTBEAT_INTERVAL)
        drain()

    green.spawn(_watch_master)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address) or "-"


def build_subservers(conf: Conf) -> list[Subserver]:
    """Every subserver the conf describes, validated; ConfError on the first problem."""
    options.check_sections(conf)
    subservers: list[Subserver] = []
    for section in conf.subconfigs("wsgi"):
        subservers.append(WSGISubserver(conf, section))
    for section in conf.subconfigs("tcp"):
        subservers.append(TCPSubserver(conf, section))
    for section in conf.subconfigs("udp"):
        subservers.append(UDPSubserver(conf, section))
    names = options.value(conf, "daemons", "daemons", "daemons")
    for name in dict.fromkeys(names):
        subservers.append(DaemonSubserver(conf, name))
    if not subservers:
        where = ", ".join(conf.files) or "no conf file was found"
        raise ConfError(
            f"nothing to run: add a [wsgi], [tcp#name], [udp#name] or [daemons] section ({where})"
        )
    _check_addresses(subservers)
    return subservers


def _check_addresses(subservers: list[Subserver]) -> None:
    seen: dict[str, str] = {}
    for sub in subservers:
        if not isinstance(sub, ListeningSubserver) or sub.port == 0:
            continue
        key = f"{sub.proto} {sub.port}"
        if key in seen and (sub.ip == "*" or seen[key].split()[1] in ("*", sub.ip)):
            raise ConfError(
                f"[{sub.section}] port: {sub.proto} port {sub.port} is already used by "
                f"[{seen[key].split()[0]}]"
            )
        seen.setdefault(key, f"{sub.section} {sub.ip}")
