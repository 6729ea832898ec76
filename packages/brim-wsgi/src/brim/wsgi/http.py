"""The HTTP/1.1 WSGI worker: one green thread per connection.

A worker process gets an already-listening socket from the master, accepts
connections on it and serves each on its own green thread (up to
concurrent_per_worker at once). Requests are parsed by httptools (llhttp),
a strict C parser, so malformed and ambiguous requests (bad chunk sizes,
Content-Length together with Transfer-Encoding, conflicting lengths) are
refused before any app sees them.

The request path is kept lean on purpose: the environ starts as a copy of a
per-connection template, the response head is built as one string, the head
and a small body leave in one send, the Date header is formatted once a
second, and the request log line is formatted as one string and handed to
logging without the caller lookup.

A connection is three modules: reading requests (:mod:`._parsing`), writing
responses (:mod:`._responding`), and here the loop that runs the app for
each request, and the server that accepts and drains.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools

from . import green
from ._input import _ClientError, _Input
from ._parsing import RequestReader, _Request
from ._responding import ResponseWriter
from .log import NOTICE, format_request_line, new_txn, set_txn, txn_logger

__all__ = ['HTTPServer', 'HTTPSettings']


@dataclass
class HTTPSettings:
    """Everything a worker needs to know, already parsed and checked."""

    client_timeout: float = 60.0
    concurrent_per_worker: int = 1024
    wsgi_input_iter_chunk_size: int = 4096
    wsgi_output_iter_chunk_size: int = 65536
    max_request_line: int = 8190
    max_header_size: int = 65536
    max_headers: int = 100
    log_headers: bool = False
    count_status_codes: tuple[int, ...] = (404, 408, 499, 501)
    ssl_context: ssl.SSLContext | None = None
    json_dumps: Callable = json.dumps
    json_loads: Callable = json.loads


# After a response, unread request body up to this size is read and dropped
# to keep the connection; beyond it the connection is closed instead.
_MAX_DISCARD = 1 << 20

#: Seconds an idle keep-alive connection may still send one request once its
#: worker starts draining (see HTTPServer._close_idle_later).
DRAIN_IDLE = 2.0


class _Connection(RequestReader, ResponseWriter):
    """One client connection: the parser callbacks and the request loop."""

    def __init__(self, server: HTTPServer, sock: socket.socket, addr: Any) -> None:
        self.server = server
        self.sock = sock
        self.settings = server.settings
        self.timeout = server.settings.client_timeout
        self.parser = httptools.HttpRequestParser(self)
        self.ready: deque[_Request] = deque()
        self.parsing: _Request | None = None
        self.in_head = False
        self.head_raw = 0
        self.error_status = 0
        self.error_reason = ''
        self.upgraded = False
        self.served = 0
        env = server._base_env.copy()
        if isinstance(addr, tuple):
            env['REMOTE_ADDR'] = str(addr[0])
            env['REMOTE_PORT'] = str(addr[1])
        else:
            env['REMOTE_ADDR'] = str(addr or '')
            env['REMOTE_PORT'] = ''
        self.client = env['REMOTE_ADDR']
        self.base_env = env
        # Per-response state, reset by _serve.
        self.status: str | None = None
        self.resp_headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        self.resp_left: int | None = None
        self.bytes_out = 0
        self.keep = True
        self.req: _Request | None = None
        self.gone_status = 0

    # ----- httptools callbacks ------------------------------------------------


    # ----- reading ---------------------------------------------------------


    # ----- writing ---------------------------------------------------------


    # ----- serving ---------------------------------------------------------

    def run(self) -> None:
        sock = self.sock
        sleep = green.sleep
        try:
            if self.settings.ssl_context is not None:
                try:
                    sock = self.settings.ssl_context.wrap_socket(
                        sock, server_side=True, do_handshake_on_connect=False)
                    self.sock = sock
                    green.tls_handshake(sock, self.timeout)
                except (OSError, ValueError):
                    return
            while True:
                req = self._next_request()
                if req is None:
                    return
                # A response that went out keep-alive just before a drain
                # began promised the client another request: run() goes on,
                # and _next_request waits at most until the drain deadline.
                if not self._serve(req):
                    return
                # Let other connections run before reading the next request:
                # with a fast client the next request is often already here,
                # and without this one busy connection can starve the rest.
                sleep(0)
        finally:
            self._close()


    def _serve(self, req: _Request) -> bool:
        """Run the app for one request and answer it; True to keep the connection."""
        server = self.server
        start = time.time()
        txn = new_txn()
        set_txn(txn)
        self.req = req
        self.status = None
        self.resp_headers = []
        self.head_sent = False
        self.chunked = False
        self.resp_left = None
        self.bytes_out = 0
        self.keep = req.keep_alive and not self.upgraded and not server._draining
        self.gone_status = 0
        self.code = 500
        env = self.base_env.copy()
        url = req.url
        if url[:1] != b'/' and b'://' in url:
            path = httptools.parse_url(url).path or b'/'
            query = httptools.parse_url(url).query or b''
        else:
            path, _, query = url.partition(b'?')
            if b'#' in query:
                query = query.partition(b'#')[0]
            elif b'#' in path:
                path = path.partition(b'#')[0]
        if b'%' in path:
            path = _unquote(path)
        env['REQUEST_METHOD'] = req.method
        env['PATH_INFO'] = path.decode('latin-1')
        env['QUERY_STRING'] = query.decode('latin-1')
        env['RAW_PATH_INFO'] = env['REQUEST_URI'] = raw_uri = url.decode('latin-1')
        env['SERVER_PROTOCOL'] = 'HTTP/' + req.version
        for key, _name, value in req.headers:
            if key is None:
                continue
            text = value.decode('latin-1')
            if key in env:
                sep = '; ' if key == 'HTTP_COOKIE' else ','
                env[key] = env[key] + sep + text
            else:
                env[key] = text
        if req.te_seen:
            env.pop('CONTENT_LENGTH', None)
        env['wsgi.input'] = _Input(self, req, self.settings.wsgi_input_iter_chunk_size)
        env['brim.start'] = start
        env['brim.txn'] = txn
        env['brim.additional_request_log_info'] = extra = []
        result = None
        try:
            result = server.app(env, self.start_response)
            self._respond(result)
        except green.GreenletExit:
            raise
        except Exception as err:
            self._app_failed(err)
        finally:
            if result is not None:
                close = getattr(result, 'close', None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        server.logger.exception('WSGI app iterable close() failed')
        code = self.gone_status or self.code
        if self.keep and not req.complete:
            self.keep = self._discard_body(req)
        server._count(code)
        logger = server.logger
        if logger.isEnabledFor(NOTICE):
            headers = None
            if self.settings.log_headers:
                headers = [(n.decode('latin-1'), v.decode('latin-1'))
                           for _k, n, v in req.headers]
            line = format_request_line(
                self.client, req.method, raw_uri, code, req.bytes_in, self.bytes_out,
                time.time() - start, txn, env.get('HTTP_USER_AGENT'), env.get('HTTP_REFERER'),
                extra, headers)
            record = logger.makeRecord(logger.name, NOTICE, '', 0, line, None, None)
            record.brim_txn_done = True
            logger.handle(record)
        set_txn(None)
        self.served += 1
        req.body = bytearray()
        return self.keep


    def _app_failed(self, err: Exception) -> None:
        server = self.server
        if isinstance(err, _ClientError) or self.gone_status:
            self.keep = False
            if not self.gone_status:
                self.gone_status = getattr(err, 'status', 499)
            if self.gone_status == 400 and not self.head_sent:
                self._try_error_head(400, self.error_reason or 'bad request body')
                self.gone_status = 400
            return
        self.keep = False
        if self.head_sent:
            server.logger.exception('WSGI app failed after the response started; '
                                    'closing the connection')
            return
        server.logger.exception('WSGI app failed')
        self.code = 500
        self._try_error_head(500, 'the server hit an error')


    def _discard_body(self, req: _Request) -> bool:
        """Read and drop what is left of a request body the app did not read."""
        req.discard = True
        req.body = bytearray()
        start_in = req.bytes_in
        try:
            while not req.complete:
                if req.bytes_in - start_in > _MAX_DISCARD:
                    return False
                self._fill_body(req)
        except _ClientError:
            return False
        return True


def _unquote(path: bytes) -> bytes:
    """Percent-decode a path as bytes (PEP 3333 wants the decoded bytes as latin-1)."""
    parts = path.split(b'%')
    out = [parts[0]]
    for part in parts[1:]:
        try:
            out.append(bytes((int(part[:2], 16),)) + part[2:])
        except ValueError:
            out.append(b'%' + part)
    return b''.join(out)


class HTTPServer:
    """Serves a WSGI app on a listening socket inside one worker process."""

    def __init__(self, sock: socket.socket, app: Any, settings: HTTPSettings, *,
                 stats: Any = None, logger: logging.Logger | None = None,
                 server: object = None, name: str = 'wsgi') -> None:
        self.name = name
        self.app = app
        self.settings = settings
        self.stats = stats
        self.logger = logger if logger is not None else logging.getLogger('brim')
        self._listener = sock
        sock.setblocking(False)
        self._pool = green.GreenPool(settings.concurrent_per_worker)
        self._acceptor: Any = None
        self._draining = False
        self._drain_deadline = 0.0
        self._stopped = False
        self._idle: set[Any] = set()
        self._init_counters(settings.count_status_codes)
        host, port = sock.getsockname()[:2]
        self._base_env: dict[str, Any] = {
            'SCRIPT_NAME': '',
            'SERVER_NAME': str(host),
            'SERVER_PORT': str(port),
            'wsgi.version': (1, 0),
            'wsgi.url_scheme': 'https' if settings.ssl_context is not None else 'http',
            'wsgi.errors': sys.stderr,
            'wsgi.multithread': True,
            'wsgi.multiprocess': True,
            'wsgi.run_once': False,
            'wsgi.input_terminated': True,
            'brim.server': server if server is not None else self,
            'brim.logger': txn_logger(self.logger),
            'brim.stats': stats,
            'brim.json_dumps': settings.json_dumps,
            'brim.json_loads': settings.json_loads,
        }
        if server is not None:
            # The seed's env['brim']. PEP 3333 keeps dotless keys for CGI str
            # values (wsgiref.validate rejects an object there), so it is set
            # only when a server object is given; 'brim.server' always is.
            self._base_env['brim'] = server

    def _init_counters(self, codes: tuple[int, ...]) -> None:
        """Look up stat slots once so each request costs a few indexed increments."""
        stats = self.stats
        self._req_idx: int | None = None
        self._class_idx: list[int | None] = [None] * 10
        self._code_idx: dict[int, int] = {}
        if stats is None:
            return
        self._req_idx = stats.index_of('request_count')
        for n in range(1, 6):
            self._class_idx[n] = stats.index_of(f'status_{n}xx_count')
        for code in codes:
            i = stats.index_of(f'status_{code}_count')
            if i is not None:
                self._code_idx[code] = i

    def _count(self, code: int) -> None:
        stats = self.stats
        if stats is None:
            return
        incr_at = stats.incr_at
        if self._req_idx is not None:
            incr_at(self._req_idx)
        i = self._class_idx[code // 100] if 0 < code < 1000 else None
        if i is not None:
            incr_at(i)
        i = self._code_idx.get(code)
        if i is not None:
            incr_at(i)

    def _handle(self, sock: socket.socket, addr: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = _Connection(self, sock, addr)
        try:
            conn.run()
        except green.GreenletExit:
            pass
        except Exception:
            self.logger.exception('connection handler failed')

    def _accept_loop(self) -> None:
        listener = self._listener
        spawn_n = self._pool.spawn_n
        handle = self._handle
        while True:
            conn, addr = green.accept(listener)
            spawn_n(handle, conn, addr)

    def serve_forever(self) -> None:
        """Accept and serve until drain() or stop() has finished."""
        self._acceptor = green.spawn(self._accept_loop)
        try:
            self._acceptor.wait()
        except green.GreenletExit:
            pass
        self._pool.waitall()

    def drain(self) -> None:
        """Stop accepting, finish in-flight requests, then close keep-alive connections.

        Each connection's next response says ``Connection: close``; idle ones
        get DRAIN_IDLE seconds to ask for it before they are closed.
        """
        if self._draining:
            return
        self._drain_deadline = time.monotonic() + DRAIN_IDLE
        self._stop_accepting()
        if self._idle:
            green.spawn(self._close_idle_later)

    def _stop_accepting(self) -> None:
        """Mark the server draining and let go of the listening socket (in this process)."""
        self._draining = True
        if self._acceptor is not None:
            green.kill(self._acceptor)
        try:
            self._listener.close()
        except OSError:
            pass

    def _close_idle_later(self) -> None:
        """Give idle keep-alive connections a moment to send one last request.

        Closing them the instant a drain starts races a client that is just
        sending its next request on the connection: the request would meet a
        closed socket. A client that asks within DRAIN_IDLE seconds is
        answered with ``Connection: close`` and reconnects (to a new worker,
        after a reload or restart); the rest are closed quietly.
        """
        green.sleep(DRAIN_IDLE)
        for g in list(self._idle):
            green.kill(g)

    def stop(self) -> None:
        """Drop everything now: the listener and every connection."""
        self._stopped = True
        self._stop_accepting()
        for g in list(self._pool.coroutines_running):
            green.kill(g)
