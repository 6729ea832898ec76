"""One request and its response: the exchange.

An :class:`Exchange` owns everything about one request: the parsed request
(or the error that refused it), its body, the environ, ``start_response``
and ``write``, the state of the response on the wire, and ``finish()``.
Whatever happens (the app answers, the parser refused the request, the
client timed out or went away, the app broke a rule or raised), the
exchange leaves through :meth:`Exchange.finish`, which counts the status
and logs the request line: one place, so no path can skip either.

The response head is built only when the first body bytes (or the end of
the body) are known, so a small response leaves in one send, and a
``Content-Length`` can be added when the app gave the whole body at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from logging import ERROR
from typing import TYPE_CHECKING, Any, Protocol

from brim.log.stream import LogStream
from brim.log.txn import new_txn, set_txn

from ._input import Input
from .body import Body, ChunkedBody, LengthBody, NoBody, Reader
from .errors import (
    AppError,
    AppFailed,
    ClientError,
    ClientGone,
    HTTPError,
    PayloadTooLarge,
    RequestTimeout,
)
from .file_wrapper import FileWrapper
from .proxy import Forwarded, forwarded
from .request import Request
from .response import ResponseHead, check_start, date_field, error_response

if TYPE_CHECKING:
    from .settings import HTTPSettings
    from .state import ServerState

__all__ = ["Client", "Exchange"]


class Client(Reader, Protocol):
    """What an exchange needs of its connection: reading (a body's Reader), sending,
    and what the connection knows about its client. A Connection is one."""

    state: ServerState
    settings: HTTPSettings
    #: The environ items common to every request on the connection.
    base_env: dict[str, Any]
    #: The client's address, for the request log.
    client: str
    #: The same, encoded for the in-flight table.
    client_recorded: bytes
    #: The peer is a trusted proxy: its forwarding headers are believed.
    trusted: bool
    #: The body every request without one shares.
    no_body: NoBody

    @property
    def tls(self) -> bool: ...

    def send(self, data: bytes | memoryview) -> None: ...

    def send_final(self, data: bytes, linger: bool) -> None: ...

    def sendfile(self, fd: int, offset: int, count: int) -> int: ...

    def peer_closed(self) -> bool: ...

# After a response, unread request body up to this size is read and dropped
# to keep the connection; beyond it the connection is closed instead.
MAX_DISCARD = 1 << 20

_warned_str_body = False

# How the response body is framed on the wire.
_LENGTH, _CHUNKED, _CLOSE = range(3)

# Statuses whose response carries no content (RFC 9110 15.3.5, 15.3.6, 15.4.5).
# Whatever body the app gives them is dropped, and not even iterated.
_BODYLESS = frozenset((204, 205, 304))


class Exchange:
    """One request, from its parsed head (or its refusal) to its log line."""

    def __init__(self, conn: Client, req: Request | None,
                 refusal: HTTPError | None = None) -> None:
        self.conn = conn
        self.state = conn.state
        self.req = req
        self.start = time.time()
        self.txn = new_txn()
        #: Its row in the worker's in-flight table (-1: none; see ServerState.started).
        self.row = -1
        #: The app's checked start_response, once it called it.
        self.response: ResponseHead | None = None
        self.head_sent = False
        #: The status that went out (or that the request is counted as).
        self.code = 0
        self.framing = _LENGTH
        #: Body bytes still to send under a Content-Length (None: not length-framed).
        self.left: int | None = None
        #: Body bytes that went on the wire.
        self.bytes_out = 0
        self.keep = req is not None and req.keep_alive and not self.state.draining
        #: What ended the exchange other than the app's own response: a
        #: refusal, a client that failed, a rule the app broke. First one wins.
        self.error: HTTPError | None = refusal
        self.extra: list[str] = []
        #: Who the client is: the peer, or what a trusted proxy says (see _forwarded()).
        self.client = conn.client
        #: What a trusted proxy's forwarding headers say, once read.
        self.forwarded: Forwarded | None = None
        #: Set by finish(): from then on the app may not write (a write from
        #: another green thread would land between two responses).
        self.finished = False
        #: The request's wsgi.errors, once environ() made it.
        self.errors: LogStream | None = None
        self.body: Body
        settings = conn.settings
        if req is None or not (req.chunked or req.content_length):
            self.body = conn.no_body
        elif req.chunked:
            self.body = ChunkedBody(conn, settings)
        else:
            assert req.content_length is not None
            self.body = LengthBody(conn, settings, req.content_length)
        if req is not None and req.expect_continue and not self.body.done:
            self.body.before_wait = self._send_continue
        limit = settings.max_body_size
        if limit and req is not None and (req.content_length or 0) > limit:
            self.error = PayloadTooLarge(f"Content-Length {req.content_length} over "
                                         f"max_body_size ({limit})")
        self._continue_sent = False

    # ----- running it --------------------------------------------------------

    def serve(self) -> bool:
        """Answer the request (run the app, or send the refusal); True to keep the connection."""
        set_txn(self.txn)
        self.state.started(self)  # in flight (stack dumps, gauges) until finish()
        try:
            if self.error is None and self.conn.trusted:
                self._forwarded()
            if self.error is None:
                self._run_app()
            self._settle()
        finally:
            self.finish()
        return self.keep

    def _forwarded(self) -> None:
        """Read a trusted proxy's forwarding headers; a malformed one is the request's 400."""
        req = self.req
        assert req is not None
        try:
            self.forwarded = forwarded(req.cgi, self.conn.settings.trusted_proxies)
        except HTTPError as err:
            self.error = err
            return
        if self.forwarded is not None and self.forwarded.client is not None:
            self.client = self.forwarded.client

    def _run_app(self) -> None:
        env = self.environ()
        result: Any = None
        try:
            result = self.state.app(env, self.start_response)
            self._send_result(result)
        except self.state.engine.Exit:
            raise
        except BaseException as exc:  # no app exception may end a worker
            self._app_raised(exc)
        finally:
            if result is not None:
                self._close_result(result)

    def _close_result(self, result: Any) -> None:
        close = getattr(result, "close", None)
        if close is None:
            return
        try:
            close()
        except self.state.engine.Exit:
            raise
        except BaseException:  # a close() that raises must not end the worker either
            self.state.logger.exception("WSGI app iterable close() failed")
            if self.error is None:
                self.error = AppFailed("app iterable close() raised")

    def _app_raised(self, exc: BaseException) -> None:
        """Record why the app stopped; the error itself was logged or is logged here."""
        if isinstance(exc, HTTPError) and exc is self.error:
            return  # recorded where it was raised (a broken rule, a failed send)
        if self.error is not None or self.body.error is not None:
            if not isinstance(exc, OSError):
                self.state.logger.exception("WSGI app raised after its request failed")
            return
        if self.head_sent:
            self.state.logger.exception(
                "WSGI app failed after the response started; closing the connection")
        else:
            self.state.logger.exception("WSGI app failed")
        self.error = AppFailed(f"app raised {type(exc).__name__}")

    def _settle(self) -> None:
        """Decide what the request ends as, and send an error answer if one is due."""
        error = self.body.error or self.error
        if error is None:
            req = self.req
            assert req is not None
            if self.keep and not self.body.done:
                if req.expect_continue and not self._continue_sent:
                    self.keep = False  # the client holds its body back; do not wait for it
                else:
                    self.keep = self.body.discard(MAX_DISCARD)
            return
        self.keep = False
        if isinstance(error, AppError) and not isinstance(error, AppFailed):
            self.state.logger.error("WSGI app broke a rule: %s", error.reason)
        if self.head_sent:
            if isinstance(error, (ClientGone, RequestTimeout)):
                self.code = error.status
            return
        self.code = error.status
        if isinstance(error, ClientGone):
            return
        detail = None if isinstance(error, AppError) else error.reason
        data, self.bytes_out = error_response(error.status, error.title, detail, time.time())
        self.head_sent = True
        self.conn.send_final(data, error.linger)

    def finish(self) -> None:
        """Count the request's status and log its line: every request ends here, once."""
        self.finished = True
        code = self.code or 500
        state = self.state
        log = state.request_log
        if log is not None:
            req = self.req
            ua = referer = None
            headers = None
            if req is not None:
                method: str | None = req.method
                target: str | None = req.target
                ua = req.user_agent
                referer = req.referer
                if self.conn.settings.log_headers:
                    headers = [(n.decode("latin-1"), v.decode("latin-1"))
                               for n, v in req.fields]
            else:
                method = self.error.method if self.error else None
                target = self.error.target if self.error else None
            extra = self.extra
            failed = self.body.error or self.error
            if failed is not None and not isinstance(failed, AppError):
                extra = [*extra, failed.reason]
            now = time.time()
        # One hold for the counters and the line (OS threads finish at once;
        # neither the counters nor the log's memos are atomic).
        lock = state.request_lock
        if lock is not None:
            lock.acquire()
        try:
            state.finished(self)
            state.count(code)
            if log is not None:
                log.write(self.client, method, target, code, self.body.wire, self.bytes_out,
                          now - self.start, self.txn, ua, referer, extra, headers, now)
        finally:
            if lock is not None:
                lock.release()
        errors = self.errors
        if errors is not None and errors.pending:
            errors.flush()  # what the app wrote without a final newline
        set_txn(None)

    # ----- the app's side: environ, start_response, write --------------------

    def environ(self) -> dict[str, Any]:
        """The PEP 3333 environ for this request."""
        req = self.req
        assert req is not None
        env = self.conn.base_env.copy()
        env.update(req.cgi)
        via = self.forwarded
        if via is not None:
            if via.client is not None:
                env["REMOTE_ADDR"] = via.client
                env["REMOTE_PORT"] = via.port or ""
            if via.scheme is not None:
                env["wsgi.url_scheme"] = via.scheme
            if via.host is not None:
                env["HTTP_HOST"] = via.host
                name, colon, port = via.host.rpartition(":")
                if not colon or name.endswith(":") or "]" in port:  # no port (or bare IPv6)
                    name, port = via.host, ""
                env["SERVER_NAME"] = name.strip("[]")
                env["SERVER_PORT"] = port or ("443" if env["wsgi.url_scheme"] == "https"
                                              else "80")
        env["wsgi.input"] = Input(self.body, self.conn.settings.wsgi_input_iter_chunk_size)
        # The app's error stream is the log: each line (or block written at
        # once, such as a traceback) one ERROR record under this request's txn.
        env["wsgi.errors"] = self.errors = LogStream(self.state.logger, ERROR, self.txn)
        env["brim.start"] = self.start
        env["brim.txn"] = self.txn
        env["brim.additional_request_log_info"] = self.extra
        return env

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        """PEP 3333's start_response: checks what the app asks for before anything is sent."""
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.response is not None:
            self._broke("start_response called a second time without exc_info")
        try:
            self.response = check_start(status, headers)
        except AppError as err:
            self._broke(err.reason)
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's legacy write(): the data goes out before write returns."""
        if self.finished:
            # Not recorded on the exchange: its status is counted and logged.
            self.state.logger.error("WSGI app called write() after its response finished "
                                    "(txn %s); nothing sent", self.txn)
            raise AppError("write() called after the response finished")
        if self.response is None:
            self._broke("write() called before start_response")
        if type(data) is not bytes:
            data = self._real_bytes(data, "write() takes bytes, not {}")
        self._emit(data, False)
        if self.head_sent and self._no_body() and self.conn.peer_closed():
            # Nothing goes on the wire for a bodiless response, so no send
            # can find out that the client left: ask the socket instead.
            raise self._client_failed(ClientGone("client went away (bodiless response)"))

    def _real_bytes(self, data: Any, rule: str) -> bytes:
        """data as plain bytes: a bytes subclass may lie about its len(); its buffer cannot.

        Anything that is not bytes at all breaks the rule, which names its type at {}.
        """
        if not isinstance(data, bytes):
            self._broke(rule.format(type(data).__name__))
        return bytes(memoryview(data))

    def _broke(self, rule: str) -> None:
        """Record that the app broke a rule, and stop it with AppError."""
        err = AppError(rule)
        if self.error is None:
            self.error = err
        raise err

    # ----- sending the response ----------------------------------------------

    def _send_result(self, result: Any) -> None:
        """Send what the app returned: an iterable of bytes, or a FileWrapper."""
        if isinstance(result, str) and result.isascii():
            result = [self._seed_str_body(result)]
        elif isinstance(result, (bytes, str)) or not hasattr(result, "__iter__"):
            self._broke(f"app returned {type(result).__name__}, not an iterable of bytes")
        if type(result) is list and len(result) == 1:
            piece = result[0]
            if type(piece) is not bytes:
                piece = self._real_bytes(piece, "body piece is {}, not bytes")
            self._emit(piece, True)
            return
        if type(result) is FileWrapper:
            if self._send_file(result):
                return
            if self.response is not None:
                result = result.pieces(self.response.content_length)
        if self.response is not None and self._no_body():
            # HEAD, 204, 205, 304: no byte of the body is sent, so none is
            # asked for. An endless stream would otherwise run on unseen,
            # holding a slot long after its client left.
            self._emit(b"", True)
            return
        if type(result) is list or type(result) is tuple:
            self._send_blocks(result)
            return
        # Any other iterable may be a stream (server-sent events, a long
        # poll): PEP 3333 says each block goes out as soon as it is yielded.
        for piece in result:
            if type(piece) is not bytes:
                piece = self._real_bytes(piece, "body piece is {}, not bytes")
            if self.response is not None and self._no_body():
                break  # the first block told start_response (lazily) that none is sent
            if piece:
                self._emit(piece, False)
        self._emit(b"", True)

    def _send_blocks(self, blocks: list[Any] | tuple[Any, ...]) -> None:
        """Send a body whose blocks are all here already, joined up to wsgi_output_iter_chunk_size.

        Joining delays nothing (no block is waiting for a later one to be
        made), and a small body leaves in one send with its head.
        """
        limit = self.conn.settings.wsgi_output_iter_chunk_size
        pending: list[bytes] = []
        size = 0
        for piece in blocks:
            if type(piece) is not bytes:
                piece = self._real_bytes(piece, "body piece is {}, not bytes")
            if not piece:
                continue
            pending.append(piece)
            size += len(piece)
            if size >= limit:
                data = pending[0] if len(pending) == 1 else b"".join(pending)
                pending = []
                size = 0
                self._emit(data, False)
        self._emit(pending[0] if len(pending) == 1 else b"".join(pending), True)

    def _seed_str_body(self, body: str) -> bytes:
        """The one str brim still sends: a whole ASCII body returned as a plain str.

        That is the Brim.Net docs' own Python 2 example (``return body``), and
        those examples must keep working as written. It is bounded on
        purpose: ASCII only, so its length in characters is its length in
        bytes, and only a str returned as the whole body; a str inside an
        iterable is refused as PEP 3333 says. A warning says so once per worker.
        """
        global _warned_str_body
        if not _warned_str_body:
            _warned_str_body = True
            self.state.logger.warning(
                "WSGI app returned a str body; PEP 3333 wants an iterable of bytes. Sent "
                "as ASCII for Brim.Net compatibility (a str inside an iterable is refused)")
        return body.encode("ascii")

    def _emit(self, data: bytes, final: bool) -> None:
        """Send a body piece, preceded by the head if it has not gone out."""
        if self.error is not None or self.body.error is not None:
            self._check_going()
        head = b""
        if not self.head_sent:
            head = self._head(len(data) if final else None)
            self.head_sent = True
        payload = data
        over = False
        if self.framing == _CHUNKED:
            if data:
                data = b"%x\r\n%b\r\n" % (len(data), data)
            if final:
                data += b"0\r\n\r\n"
        elif self.left is not None:
            if len(data) > self.left:
                over = not self._no_body()
                payload = data = data[:self.left]
            self.left -= len(data)
        if head:
            if len(data) < 65536:
                self._send(head + data)
            else:
                self._send(head)
                self._send(data)
        elif data:
            self._send(data)
        self.bytes_out += len(payload)
        if over:
            self._broke("app sent more than its Content-Length")
        if final and self.left:
            self._broke(f"app sent {self.left} bytes fewer than its Content-Length")

    def _check_going(self) -> None:
        """Stop the app's output once the exchange failed (for the client or for a rule)."""
        error = self.body.error or self.error
        if error is None:
            return
        if isinstance(error, AppError):
            raise error
        raise ClientError(error)

    def _no_body(self) -> bool:
        req = self.req
        response = self.response
        assert req is not None and response is not None
        return req.method == "HEAD" or response.code in _BODYLESS

    def _head(self, body_len: int | None) -> bytes:
        """The response head; body_len is the whole body's length when known."""
        response = self.response
        req = self.req
        if response is None:
            self._broke("app returned a body before calling start_response")
        assert response is not None and req is not None
        # Bytes throughout: the status line and the app's fields were encoded
        # once, when check_start first saw them.
        parts = [response.head]
        keep = self.keep and not response.close
        no_body = req.method == "HEAD" or response.code in _BODYLESS  # as _no_body()
        if response.code == 205:
            # RFC 9110 15.3.6: no content, and the framing must say so (a 205
            # is not bodiless by the message rules, as 204 and 304 are).
            parts.append(b"Content-Length: 0\r\n")
            self.left = 0
        elif response.content_length is not None:
            self.left = 0 if no_body else response.content_length
        elif no_body:
            self.left = 0
        elif body_len is not None:
            parts.append(b"Content-Length: %d\r\n" % body_len)
            self.left = body_len
        elif req.version == "1.1":
            parts.append(b"Transfer-Encoding: chunked\r\n")
            self.framing = _CHUNKED
        else:
            self.framing = _CLOSE
            keep = False  # HTTP/1.0 and no length: the close ends the body
        if not response.has_date:
            parts.append(date_field(time.time()))
        if keep and not self.body.done and req.expect_continue and not self._continue_sent:
            keep = False  # the client holds its body back; it will not come
        if not keep:
            parts.append(b"Connection: close\r\n\r\n")
        elif req.version == "1.0":
            parts.append(b"Connection: keep-alive\r\n\r\n")
        else:
            parts.append(b"\r\n")
        self.keep = keep
        self.code = response.code
        return b"".join(parts)

    def _send_file(self, wrapper: FileWrapper) -> bool:
        """Send a FileWrapper's file with sendfile; False to iterate it instead."""
        if self.conn.tls or self.response is None:
            return False
        span = wrapper.sendfile_span()
        if span is None:
            return False
        self._check_going()
        fd, offset, size = span
        response = self.response
        self._send(self._head(size if response.content_length is None
                              else response.content_length))
        self.head_sent = True
        count = self.left or 0
        if not count:
            return True
        try:
            sent = self.conn.sendfile(fd, offset, count)
        except HTTPError as err:
            raise self._client_failed(err) from None
        self.bytes_out += sent
        self.left = count - sent
        if self.left:
            self._broke(f"file ended {self.left} bytes before its Content-Length")
        return True

    def _send(self, data: bytes) -> None:
        """Send on the connection; a failure is recorded, then raised as ClientError."""
        try:
            self.conn.send(data)
        except HTTPError as err:
            raise self._client_failed(err) from None

    def _client_failed(self, err: HTTPError) -> ClientError:
        """Record that the client failed a send, and what to raise to the app for it."""
        if self.error is None:
            self.error = err
        return ClientError(err)

    def _send_continue(self) -> None:
        """Tell a client that waits (Expect: 100-continue) to send its body."""
        if not self.head_sent and not self._continue_sent:
            self._continue_sent = True
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
