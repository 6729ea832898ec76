"""The HTTP/1.1 WSGI worker: accepting connections and serving them on its engine.

A worker process gets an already-listening socket from the master, accepts
connections on it and serves them, up to concurrent_per_worker at once, on
the engine its ``worker_model`` names (:mod:`.engine`): a green thread per
connection, or a pool of ``threads`` OS threads. The request path is split
by concept:

* :mod:`.request` parses and checks a request head (RFC 9112, strictly);
* :mod:`.body` decodes a request body, chunked or by length;
* :mod:`.connection` owns a socket and its read buffer;
* :mod:`.exchange` owns one request and its response, and its ``finish()``;
* :mod:`.response` checks what an app asks to send;
* :mod:`.state` is the server state they share.

When every connection slot is taken and a new connection arrives, the worker
sheds the connection that has waited longest on its client (an idle
keep-alive one first), so clients that send nothing cannot lock out clients
that do.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from brim.log.txn import txn_logger

from . import engine as engines
from .connection import Connection
from .environ import brim_items
from .file_wrapper import FileWrapper
from .settings import HTTPSettings
from .state import DRAIN_IDLE, ServerState

__all__ = ["DRAIN_IDLE", "HTTPServer", "HTTPSettings"]


class HTTPServer:
    """Serves a WSGI app on a listening socket inside one worker process."""

    def __init__(self, sock: socket.socket, app: Any, settings: HTTPSettings, *,
                 stats: Any = None, logger: logging.Logger | None = None,
                 server: object = None, name: str = "wsgi", notes: Any = None) -> None:
        self.name = name
        self.settings = settings
        self.logger = logger if logger is not None else logging.getLogger("brim")
        self._listener = sock
        sock.setblocking(False)
        #: The worker model's engine, chosen once for the worker.
        self.engine = engines.load(settings.worker_model)
        self._pool = self.engine.make_pool(settings.threads, settings.concurrent_per_worker)
        bound = sock.getsockname()
        if isinstance(bound, tuple):
            host, port = bound[:2]
        else:  # a Unix socket: its path names the server; there is no port
            host = bound.decode(errors="replace") if isinstance(bound, bytes) else bound
            port = ""
        base_env: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if settings.ssl_context is not None else "http",
            # Replaced per request by a LogStream under its txn (Exchange.environ).
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            **brim_items(server=server, stats=stats, logger=txn_logger(self.logger),
                         json_dumps=settings.json_dumps, json_loads=settings.json_loads),
        }
        if server is None:
            base_env["brim.server"] = self
        #: What every connection shares: settings, app, counters, drain state.
        #: ``notes``: shared memory for the requests in flight (see brim.wsgi.inflight).
        self.state = ServerState(settings, app, self.logger, stats, base_env, self.engine,
                                 notes)

    @property
    def app(self) -> Any:
        return self.state.app

    def _handle(self, sock: socket.socket, addr: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.state.lock:
            self.state.metrics.slot_taken()
        self._run(Connection(self.state, sock, addr))

    def _run(self, conn: Connection) -> None:
        """Serve a connection; when the engine parks it, say how to resume it.

        Its slot is freed when it ends, not when it is parked: a parked
        connection still holds one of concurrent_per_worker.
        """
        try:
            conn.run()
        except self.engine.Parked as parked:
            parked.resume = lambda: self._run(conn)  # type: ignore[attr-defined]
            raise
        except self.engine.Exit:
            pass
        except Exception:
            self.logger.exception("connection handler failed")
        with self.state.lock:
            self.state.metrics.slot_freed()

    def serve_forever(self) -> None:
        """Accept and serve until drain() or stop() has finished.

        The engine's pool accepts (when full, it asks the state to shed the
        connection that has waited longest on its client) and runs each
        connection; this returns once accepting stopped and every
        connection ended.
        """
        self._pool.start(self._listener, self._handle, self.state.shed_one)
        flusher = self.engine.spawn(self.state.flush_log_forever)
        try:
            self._pool.wait()
        finally:
            self.engine.kill(flusher)
            self.state.flush_log()

    def drain(self) -> None:
        """Stop accepting, finish in-flight requests, then close keep-alive connections.

        Each connection's next response says ``Connection: close``; idle ones
        get DRAIN_IDLE seconds to ask for it before they are closed.
        """
        if self.state.draining:
            return
        self._stop_accepting()
        self.state.drain()

    def _stop_accepting(self) -> None:
        """Let go of the listening socket (in this process)."""
        self._pool.stop_accepting()
        try:
            self._listener.close()
        except OSError:
            pass

    def stop(self) -> None:
        """Drop everything now: the listener and every connection."""
        self.state.draining = True
        self._pool.kill_all()
        try:
            self._listener.close()
        except OSError:
            pass
        self.state.flush_log()
