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
second, and the request log line is formatted here as one string and handed
to logging without the caller lookup.
"""

from __future__ import annotations

import email.utils
import json
import logging
import socket
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from os import urandom
from typing import Any

import httptools

from . import green
from ._input import _ClientError, _Input
from .log import NOTICE, format_request_line, set_txn, txn_logger

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


_RECV_SIZE = 65536
# After a response, unread request body up to this size is read and dropped
# to keep the connection; beyond it the connection is closed instead.
_MAX_DISCARD = 1 << 20

#: Seconds an idle keep-alive connection may still send one request once its
#: worker starts draining (see HTTPServer._close_idle_later).
DRAIN_IDLE = 2.0

_REASONS = {
    400: 'Bad Request', 408: 'Request Timeout', 414: 'URI Too Long',
    431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
    501: 'Not Implemented', 505: 'HTTP Version Not Supported',
}

# --- header names -> environ keys, cached -------------------------------------

_HEADER_KEYS: dict[bytes, str | None] = {}


def _header_key(name: bytes) -> str | None:
    """The environ key for a request header name, or None to drop it.

    Names with '_' are dropped: after the CGI translation they would be
    indistinguishable from the '-' form, which lets a client forge headers a
    proxy in front believed it had removed.
    """
    key = _HEADER_KEYS.get(name)
    if key is not None or name in _HEADER_KEYS:
        return key
    text = name.decode('latin-1')
    if '_' in text:
        key = None
    else:
        key = text.upper().replace('-', '_')
        if key not in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            key = 'HTTP_' + key
    if len(_HEADER_KEYS) < 1024:
        _HEADER_KEYS[name] = key
    return key


# --- the Date header, formatted once a second ---------------------------------

_date_sec = 0
_date_line = ''


def _date_header(now: float) -> str:
    global _date_sec, _date_line
    sec = int(now)
    if sec != _date_sec:
        _date_line = 'Date: ' + email.utils.formatdate(sec, usegmt=True) + '\r\n'
        _date_sec = sec
    return _date_line


def _to_bytes(piece: Any) -> bytes:
    """Body pieces: bytes pass; str (a Python 2 habit) is encoded, latin-1 first."""
    if type(piece) is bytes:
        return piece
    if isinstance(piece, str):
        try:
            return piece.encode('latin-1')
        except UnicodeEncodeError:
            return piece.encode('utf-8')
    if isinstance(piece, (bytes, bytearray, memoryview)):
        return bytes(piece)
    raise TypeError(f'WSGI app body piece must be bytes, got {type(piece).__name__}')


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def _new_txn() -> str:
    """uuid.uuid4().hex, without building a UUID object (a third of the cost)."""
    return '%032x' % ((int.from_bytes(urandom(16), 'big') & _V4_CLEAR) | _V4_SET)


class _LimitExceeded(Exception):
    """Raised inside a parser callback to stop parsing; the status is on the conn."""


class _Request:
    """One parsed request head plus its body buffer."""

    __slots__ = ('body', 'bytes_in', 'complete', 'content_length', 'continue_sent', 'discard',
                 'expect_continue', 'header_bytes', 'headers', 'host_seen', 'keep_alive',
                 'method', 'te_seen', 'url', 'version')

    def __init__(self) -> None:
        self.url = b''
        self.headers: list[tuple[str | None, bytes, bytes]] = []
        self.header_bytes = 0
        self.body = bytearray()
        self.bytes_in = 0
        self.complete = False
        self.discard = False
        self.content_length: bytes | None = None
        self.te_seen = False
        self.host_seen = False
        self.expect_continue = False
        self.continue_sent = False
        self.method = ''
        self.version = '1.1'
        self.keep_alive = True


class _Connection:
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

    def on_message_begin(self) -> None:
        self.parsing = _Request()
        self.in_head = True
        self.head_raw = 0

    def on_url(self, url: bytes) -> None:
        req = self.parsing
        req.url += url
        if len(req.url) > self.settings.max_request_line:
            self._fail(414, 'request line too long')

    def on_header(self, name: bytes, value: bytes) -> None:
        req = self.parsing
        settings = self.settings
        req.header_bytes += len(name) + len(value) + 4
        if req.header_bytes > settings.max_header_size:
            self._fail(431, 'request headers too large')
        if len(req.headers) >= settings.max_headers:
            self._fail(431, 'too many request headers')
        key = _header_key(name)
        if key == 'CONTENT_LENGTH':
            if req.te_seen:
                self._fail(400, 'both Content-Length and Transfer-Encoding')
            if req.content_length is not None and req.content_length != value.strip():
                self._fail(400, 'conflicting Content-Length headers')
            req.content_length = value.strip()
            if req.headers and any(k == 'CONTENT_LENGTH' for k, _, _ in req.headers):
                return  # an identical repeat: keep one
        elif key == 'HTTP_TRANSFER_ENCODING':
            if req.content_length is not None:
                self._fail(400, 'both Content-Length and Transfer-Encoding')
            req.te_seen = True
        elif key == 'HTTP_HOST':
            # RFC 9112 3.2: more than one Host is a 400, whatever the values;
            # two hosts mean the request names two different targets.
            if req.host_seen:
                self._fail(400, 'more than one Host header')
            req.host_seen = True
        elif key == 'HTTP_EXPECT':
            req.expect_continue = value.strip().lower() == b'100-continue'
        req.headers.append((key, name, value))

    def on_headers_complete(self) -> None:
        req = self.parsing
        parser = self.parser
        req.method = parser.get_method().decode('latin-1')
        req.version = parser.get_http_version()
        req.keep_alive = parser.should_keep_alive()
        if req.version == '1.0':
            req.expect_continue = False
        elif req.version != '1.1':
            self._fail(505, 'unsupported HTTP version')
        elif not req.host_seen:
            self._fail(400, 'HTTP/1.1 request without a Host header')
        if req.url[:1] != b'/' or req.method == 'CONNECT':
            self._check_target(req)
        self.in_head = False
        self.ready.append(req)

    def _check_target(self, req: _Request) -> None:
        """Refuse a request-target that does not fit its method (RFC 9112 3.2).

        llhttp takes any target form with any method. Left alone, an
        absolute-form URL it accepted could still fail httptools.parse_url
        in _serve, dropping the connection with a traceback instead of an
        answer; a CONNECT to '/echo' reached the app, whose 200 means "tunnel
        open" to any proxy in front; '*' reached apps as a path. Each is a
        400 here, before any app runs.
        """
        url = req.url
        if req.method == 'CONNECT':
            host, sep, port = url.rpartition(b':')
            if not (sep and host and port.isdigit() and b'/' not in host):
                self._fail(400, 'CONNECT needs a host:port target')
        elif url == b'*':
            if req.method != 'OPTIONS':
                self._fail(400, "only OPTIONS may target '*'")
        elif b'://' in url:
            try:
                httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError:
                self._fail(400, 'invalid absolute-form request target')

    def on_body(self, body: bytes) -> None:
        req = self.parsing
        req.bytes_in += len(body)
        if not req.discard:
            req.body += body

    def on_message_complete(self) -> None:
        self.parsing.complete = True

    def _fail(self, status: int, reason: str) -> None:
        if not self.error_status:
            self.error_status = status
            self.error_reason = reason
        raise _LimitExceeded(reason)

    # ----- reading ---------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.upgraded = True
        except httptools.HttpParserError as err:
            if not self.error_status:
                self.error_status = 400
                self.error_reason = str(err) or 'malformed request'
        if self.in_head and not self.error_status:
            self.head_raw += len(data)
            if self.head_raw > self.settings.max_request_line + self.settings.max_header_size:
                self.error_status = 431
                self.error_reason = 'request head too large'

    def _next_request(self) -> _Request | None:
        """Wait for the next complete request head; None means close quietly."""
        server = self.server
        sock = self.sock
        head_deadline = 0.0
        while not self.ready:
            if self.error_status:
                self._send_error(self.error_status, self.error_reason, self.parsing)
                return None
            if self.upgraded:
                return None
            # A drain never cuts a request whose head is arriving: run() stops
            # after the response, which says Connection: close.
            partial = self.in_head and self.head_raw > 0
            idle = not partial and self.served > 0
            timeout = self.timeout
            if idle and server._draining:
                timeout = max(0.0, server._drain_deadline - time.monotonic())
            if partial:
                if not head_deadline:
                    head_deadline = time.monotonic() + timeout
                timeout = max(0.0, head_deadline - time.monotonic())
            me = None
            if idle:
                me = green.current()
                server._idle.add(me)
            try:
                data = green.recv(sock, _RECV_SIZE, timeout)
            except TimeoutError:
                if idle:
                    return None  # an expired keep-alive: nothing was asked
                self._send_error(408, 'client timeout', self.parsing)
                return None
            except green.GreenletExit:
                return None  # drained while idle
            except OSError:
                return None
            finally:
                if me is not None:
                    server._idle.discard(me)
            if not data:
                return None
            self._feed(data)
        return self.ready.popleft()

    def _fill_body(self, req: _Request) -> None:
        """Read more of req's body from the socket (called by wsgi.input)."""
        if self.error_status:
            raise self._gone(400, f'bad request body: {self.error_reason}')
        if req.expect_continue and not req.continue_sent:
            req.continue_sent = True
            if not self.head_sent:
                self._send(b'HTTP/1.1 100 Continue\r\n\r\n')
        try:
            data = green.recv(self.sock, _RECV_SIZE, self.timeout)
        except TimeoutError:
            raise self._gone(408, 'client timeout reading the request body') from None
        except OSError as err:
            raise self._gone(499, f'client went away reading the request body: {err}') from None
        if not data:
            raise self._gone(499, 'client closed the connection mid-body')
        self._feed(data)
        if self.error_status and not req.complete:
            raise self._gone(400, f'bad request body: {self.error_reason}')

    def _gone(self, status: int, reason: str) -> _ClientError:
        if not self.gone_status:
            self.gone_status = status
        self.keep = False
        return _ClientError(status, reason)

    # ----- writing ---------------------------------------------------------

    def _send(self, data: bytes) -> None:
        try:
            green.sendall(self.sock, data, self.timeout)
        except TimeoutError:
            raise self._gone(408, 'client timeout reading the response') from None
        except OSError as err:
            raise self._gone(499, f'client went away: {err}') from None

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError('start_response called a second time without exc_info')
        if not isinstance(status, str):
            status = status.decode('latin-1')
        self.status = status
        self.resp_headers = headers
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable: sends at once, chunked if no length was given."""
        data = _to_bytes(data)
        if not self.head_sent:
            self._send_head(data, final=False)
        elif data:
            self._send_body(data, final=False)

    def _build_head(self, body_len: int | None) -> bytes:
        """The response head; body_len is the whole body's length when known."""
        status = self.status
        if status is None:
            raise AssertionError('app did not call start_response before returning a body')
        code = int(status[:3])
        req = self.req
        parts = ['HTTP/1.1 ', status, '\r\n']
        has_len = has_date = False
        keep = self.keep
        for name, value in self.resp_headers:
            if not isinstance(name, str):
                name = name.decode('latin-1')
            if not isinstance(value, str):
                value = value.decode('latin-1') if isinstance(value, bytes) else str(value)
            if '\n' in value or '\r' in value or '\n' in name or '\r' in name:
                raise ValueError(f'response header {name!r} holds a line break')
            lname = name.lower()
            if lname == 'content-length':
                has_len = True
                self.resp_left = int(value)
            elif lname == 'date':
                has_date = True
            elif lname == 'connection':
                if 'close' in value.lower():
                    keep = False
                continue
            elif lname == 'transfer-encoding':
                continue  # framing is ours to choose
            parts += (name, ': ', value, '\r\n')
        no_body = req.method == 'HEAD' or code < 200 or code in (204, 304)
        if not has_len and not no_body:
            if body_len is not None:
                parts += ('Content-Length: ', str(body_len), '\r\n')
                self.resp_left = body_len
            elif req.version == '1.1':
                parts.append('Transfer-Encoding: chunked\r\n')
                self.chunked = True
            else:
                keep = False  # HTTP/1.0 and no length: the close ends the body
        if no_body:
            self.resp_left = 0
        if not req.complete and req.expect_continue and not req.continue_sent:
            keep = False  # the client holds its body back; we will not read it
        if not has_date:
            parts.append(_date_header(time.time()))
        if not keep:
            parts.append('Connection: close\r\n\r\n')
        elif req.version == '1.0':
            parts.append('Connection: keep-alive\r\n\r\n')
        else:
            parts.append('\r\n')
        self.keep = keep
        self.code = code
        return ''.join(parts).encode('latin-1')

    def _frame(self, data: bytes, final: bool) -> bytes:
        """Apply framing to a body piece: chunk it, or clip it to Content-Length."""
        if self.chunked:
            if data:
                data = b'%x\r\n%b\r\n' % (len(data), data)
            if final:
                data += b'0\r\n\r\n'
            return data
        left = self.resp_left
        if left is not None:
            if len(data) > left:
                data = data[:left]
            self.resp_left = left - len(data)
        return data

    def _send_head(self, data: bytes, final: bool) -> None:
        head = self._build_head(len(data) if final else None)
        self.head_sent = True
        if self.resp_left == 0 and not self.chunked:
            self._send(head)
            return
        body = self._frame(data, final)
        self.bytes_out += len(data)
        if len(body) < 65536:
            self._send(head + body)
        else:
            self._send(head)
            self._send(body)

    def _send_body(self, data: bytes, final: bool) -> None:
        if self.resp_left == 0 and not self.chunked:
            return
        body = self._frame(data, final)
        self.bytes_out += len(data)
        if body:
            self._send(body)

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

    def _linger(self) -> None:
        """Half-close, then drop what the client still sends, briefly.

        Closing a socket with unread input makes the kernel reset the
        connection, and a reset can destroy the error response before the
        client reads it. So: shut our side, read a little more, then close.
        """
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(self.timeout, 2.0)
            for _ in range(64):
                left = deadline - time.monotonic()
                if left <= 0 or not green.recv(self.sock, _RECV_SIZE, left):
                    break
        except (OSError, ValueError):
            pass

    def _close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self, req: _Request) -> bool:
        """Run the app for one request and answer it; True to keep the connection."""
        server = self.server
        start = time.time()
        txn = _new_txn()
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

    def _emit(self, data: bytes, final: bool) -> None:
        if self.head_sent:
            self._send_body(data, final)
        else:
            self._send_head(data, final)

    def _respond(self, result: Any) -> None:
        """Send the app's body, coalesced into pieces of about the output chunk size."""
        if isinstance(result, (bytes, str)):
            self._emit(_to_bytes(result), True)
        elif isinstance(result, (list, tuple)) and len(result) == 1:
            self._emit(_to_bytes(result[0]), True)
        else:
            limit = self.settings.wsgi_output_iter_chunk_size
            pending: list[bytes] = []
            size = 0
            for piece in result:
                if type(piece) is not bytes:
                    piece = _to_bytes(piece)
                if not piece:
                    continue
                pending.append(piece)
                size += len(piece)
                if size >= limit:
                    data = pending[0] if len(pending) == 1 else b''.join(pending)
                    pending = []
                    size = 0
                    self._emit(data, False)
            self._emit(pending[0] if len(pending) == 1 else b''.join(pending), True)
        if self.resp_left:
            # Fewer bytes than the Content-Length promised: the client cannot
            # tell where this response ends, so the connection must end.
            self.keep = False

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

    def _try_error_head(self, status: int, reason: str) -> None:
        body = f'{status} {_REASONS.get(status, "Error")}\n'.encode()
        head = (f'HTTP/1.1 {status} {_REASONS.get(status, "Error")}\r\n'
                f'Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n'
                f'{_date_header(time.time())}Connection: close\r\n\r\n').encode('latin-1')
        self.head_sent = True
        self.bytes_out = len(body)
        try:
            self._send(head + body)
        except _ClientError:
            pass

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

    def _send_error(self, status: int, reason: str, req: _Request | None) -> None:
        """Answer a request we could not parse or that was too slow, then close."""
        server = self.server
        start = time.time()
        txn = _new_txn()
        set_txn(txn)
        body = f'{status} {_REASONS.get(status, "Error")}: {reason}\n'.encode('latin-1', 'replace')
        head = (f'HTTP/1.1 {status} {_REASONS.get(status, "Error")}\r\n'
                f'Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n'
                f'{_date_header(start)}Connection: close\r\n\r\n').encode('latin-1')
        try:
            green.sendall(self.sock, head + body, min(self.timeout, 5.0))
        except OSError:
            pass
        else:
            self._linger()
        server._count(status)
        logger = server.logger
        if logger.isEnabledFor(NOTICE):
            method = path = ua = referer = None
            if req is not None:
                method = req.method or None
                path = req.url.decode('latin-1') or None
                for key, _name, value in req.headers:
                    if key == 'HTTP_USER_AGENT':
                        ua = value.decode('latin-1')
                    elif key == 'HTTP_REFERER':
                        referer = value.decode('latin-1')
            line = format_request_line(self.client, method, path, status, 0, len(body),
                                       time.time() - start, txn, ua, referer, [reason])
            record = logger.makeRecord(logger.name, NOTICE, '', 0, line, None, None)
            record.brim_txn_done = True
            logger.handle(record)
        set_txn(None)


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
