"""Reading requests: httptools parser callbacks, limits and request-target checks.

Mixed into the connection class of :mod:`brim.wsgi.http`. Every check that
refuses a request (sizes, smuggling forms, versions, Host, targets) happens
here, while the head is parsed, so no app ever sees a request brim refused.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from . import green

if TYPE_CHECKING:
    from .http import HTTPServer, HTTPSettings

_RECV_SIZE = 65536

# Header names -> environ keys, cached: most requests repeat the same names.
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


class RequestReader:
    """The parsing half of a connection: feeds bytes to llhttp, queues requests."""

    server: HTTPServer
    settings: HTTPSettings
    sock: Any
    parser: httptools.HttpRequestParser
    ready: deque[_Request]
    parsing: _Request | None

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
