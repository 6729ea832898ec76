"""The HTTP/1.1 WSGI worker: accepting connections and serving each on a green thread.

A worker process gets an already-listening socket from the master, accepts
connections on it and serves each on its own green thread, up to
concurrent_per_worker at once. The request path is split by concept:

* :mod:`.request` parses and checks a request head (RFC 9112, strictly);
* :mod:`.body` decodes a request body, chunked or by length;
* :mod:`.connection` owns a socket and its read buffer;
* :mod:`.exchange` owns one request and its response, and its ``finish()``;
* :mod:`.response` checks what an app asks to send;
* :mod:`.state` is the server state they share.

When every green thread is busy and a new connection arrives, the worker
sheds the connection that has waited longest on its client (an idle
keep-alive one first), so clients that send nothing cannot lock out clients
that do.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

from . import green
from .connection import Connection
from .environ import brim_items
from .file_wrapper import FileWrapper
from .log import txn_logger
from .settings import HTTPSettings
from .state import DRAIN_IDLE, ServerState, make_room

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
        self._pool = green.GreenPool(settings.concurrent_per_worker)
        self._acceptor: Any = None
        host, port = sock.getsockname()[:2]
        base_env: dict[str, Any] = {
            "SCRIPT_NAME": "",
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "https" if settings.ssl_context is not None else "http",
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
        self.state = ServerState(settings, app, self.logger, stats, base_env, notes)

    @property
    def app(self) -> Any:
        return self.state.app

    def _handle(self, sock: socket.socket, addr: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        metrics = self.state.metrics
        metrics.slot_taken()
        try:
            Connection(self.state, sock, addr).run()
        except green.GreenletExit:
            pass
        except Exception:
            self.logger.exception("connection handler failed")
        finally:
            metrics.slot_freed()

    def _accept_loop(self) -> None:
        listener = self._listener
        pool = self._pool
        spawn_n = pool.spawn_n
        handle = self._handle
        shed_one = self.state.shed_one
        while True:
            conn, addr = green.accept(listener)
            if not pool.free():
                make_room(pool, shed_one)
            spawn_n(handle, conn, addr)

    def serve_forever(self) -> None:
        """Accept and serve until drain() or stop() has finished."""
        self._acceptor = green.spawn(self._accept_loop)
        flusher = green.spawn(self.state.flush_log_forever)
        try:
            try:
                self._acceptor.wait()
            except green.GreenletExit:
                pass
            self._pool.waitall()
        finally:
            green.kill(flusher)
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
        if self._acceptor is not None:
            green.kill(self._acceptor)
        try:
            self._listener.close()
        except OSError:
            pass

    def stop(self) -> None:
        """Drop everything now: the listener and every connection."""
        self.state.draining = True
        self._stop_accepting()
        for g in list(self._pool.coroutines_running):
            green.kill(g)
        self.state.flush_log()
