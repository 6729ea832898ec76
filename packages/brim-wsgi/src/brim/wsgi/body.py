"""Request bodies: Content-Length and chunked framing, decoded on demand.

A body is read only when the app asks (through ``wsgi.input``) or, after the
response, when what is left must be drained to keep the connection. Its
bytes come from the connection's read buffer, so a pipelined request behind
the body stays in that buffer for the next head, and nothing of a body is
ever counted against a head's size limits.

Every way a body can fail (bad chunk syntax, a client that stops sending or
sends too slowly, a client that goes away) is recorded on the body as an
:class:`~brim.wsgi.errors.HTTPError` before it is raised to the app, so the
exchange knows the outcome even when the app swallows the exception.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .errors import (
    BadRequest,
    ClientError,
    HeaderFieldsTooLarge,
    HTTPError,
    PayloadTooLarge,
    RequestTimeout,
)
from .request import _TOKEN, has_bare_cr_lf, parse_fields

if TYPE_CHECKING:
    from .settings import HTTPSettings

__all__ = ["Body", "ChunkedBody", "LengthBody", "NoBody", "Reader"]


class Reader(Protocol):
    """What a body reads from: the connection's buffer, and a way to fill it.

    A Connection is one; a body needs no more of it than this.
    """

    #: Bytes received and not yet consumed (a body takes its bytes from the front).
    buf: bytearray

    def fill(self, timeout: float) -> None:
        """Read more bytes into buf; TimeoutError after timeout seconds of silence."""
        ...

# chunk-size [ chunk-ext ] (RFC 9112 7.1.1): 1-16 hex digits, then any number
# of ;name[=token or quoted-string], with optional whitespace around ; and =.
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN
    + rb"|" + _QUOTED + rb"))?)*")
_MAX_CHUNK_LINE = 4096
_MAX_CHUNK = (1 << 63) - 1


class Body:
    """One request's body. Subclasses decode their framing from the connection buffer."""

    def __init__(self, conn: Reader, settings: HTTPSettings) -> None:
        self.conn = conn
        self.settings = settings
        #: True once the whole body (and, for chunked, its trailers) was read.
        self.done = False
        #: Bytes of the body as they came on the wire, framing included.
        self.wire = 0
        #: Why the body could not be read, once it could not.
        self.error: HTTPError | None = None
        #: Called once before the first wait on the client (100-continue).
        self.before_wait: Callable[[], None] | None = None
        self._waited = 0.0

    def read(self, size: int) -> bytes:
        """Up to size bytes (size > 0) of the decoded body; b'' at its end.

        Raises ClientError (an OSError) when the body cannot be read.
        """
        if self.error is not None:
            raise ClientError(self.error)
        try:
            while True:
                data = self._decode(size)
                if data is not None:
                    return data
                self._fill()
        except HTTPError as err:
            self.error = err
            raise ClientError(err) from None

    def discard(self, limit: int) -> bool:
        """Read and drop the rest of the body; False when it was over limit or failed."""
        start = self.wire
        try:
            while not self.done:
                if self.wire - start > limit:
                    return False
                self.read(65536)
        except ClientError:
            return False
        return True

    def _decode(self, size: int) -> bytes | None:
        """Decoded bytes from the buffer, b'' at the end, None when more must arrive."""
        raise NotImplementedError

    def _fill(self) -> None:
        """Wait for more body bytes, within client_timeout and min_body_rate."""
        hook = self.before_wait
        if hook is not None:
            self.before_wait = None
            hook()
        settings = self.settings
        timeout = settings.client_timeout
        by_rate = False
        if settings.min_body_rate:
            allowed = (settings.client_timeout + self.wire / settings.min_body_rate
                       - self._waited)
            if allowed < timeout:
                timeout, by_rate = allowed, True
            if timeout <= 0:
                raise RequestTimeout(
                    f"request body slower than min_body_rate ({settings.min_body_rate} B/s)")
        start = time.monotonic()
        try:
            self.conn.fill(timeout)
        except TimeoutError:
            if by_rate:
                raise RequestTimeout(f"request body slower than min_body_rate "
                                     f"({settings.min_body_rate} B/s)") from None
            raise RequestTimeout("client silent for client_timeout mid-body") from None
        finally:
            self._waited += time.monotonic() - start


class _Unread:
    """The Reader of a body with no bytes: there is never anything to wait for."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def fill(self, timeout: float) -> None:
        raise AssertionError("a body without bytes never waits for any")


class NoBody(Body):
    """A request without a body: reads give b'' at once.

    It reads no connection, so it holds none: a connection that held its
    NoBody while the NoBody held the connection would be a reference cycle,
    left to the cyclic garbage collector (a gen 2 pass of ~15 ms every few
    thousand short connections) instead of freed when it ends. Nothing in it
    ever changes (it is done, and has nothing to fail on), so one serves a
    whole worker.
    """

    def __init__(self, settings: HTTPSettings) -> None:
        super().__init__(_Unread(), settings)
        self.done = True

    def _decode(self, size: int) -> bytes | None:
        return b""


class LengthBody(Body):
    """A body of Content-Length bytes."""

    def __init__(self, conn: Reader, settings: HTTPSettings, length: int) -> None:
        super().__init__(conn, settings)
        self.left = length
        self.done = length == 0

    def _decode(self, size: int) -> bytes | None:
        left = self.left
        if not left:
            return b""
        buf = self.conn.buf
        if not buf:
            return None
        n = min(left, len(buf), size)
        if n == len(buf):
            data = bytes(buf)
            buf.clear()
        else:
            data = bytes(buf[:n])
            del buf[:n]
        self.left = left - n
        self.wire += n
        if not self.left:
            self.done = True
        return data


# Where a chunked body's decoder is: before a size line, inside a chunk's
# data, at the CRLF after the data, or in the trailer section.
_SIZE, _DATA, _DATA_END, _TRAILERS = range(4)


class ChunkedBody(Body):
    """A chunked body (RFC 9112 7.1). Trailers are checked and then dropped.

    Trailer fields never reach the environ: they arrive after the app has
    started, and merging them would let a client set a field that a proxy in
    front checked only in the header section.
    """

    def __init__(self, conn: Reader, settings: HTTPSettings) -> None:
        super().__init__(conn, settings)
        self._state = _SIZE
        self._left = 0
        #: Decoded bytes the chunk size lines have announced so far.
        self._announced = 0

    def _decode(self, size: int) -> bytes | None:
        buf = self.conn.buf
        while True:
            state = self._state
            if state == _DATA:
                if not buf:
                    return None
                n = min(self._left, len(buf), size)
                data = bytes(buf[:n])
                del buf[:n]
                self.wire += n
                self._left -= n
                if not self._left:
                    self._state = _DATA_END
                return data
            if state == _DATA_END:
                if len(buf) < 2:
                    if buf and buf[0] != 13:
                        raise BadRequest("chunk data longer than its size")
                    return None
                if buf[:2] != b"\r\n":
                    raise BadRequest("chunk data not followed by CRLF")
                del buf[:2]
                self.wire += 2
                self._state = _SIZE
            elif state == _SIZE:
                if self.done:
                    return b""
                end = buf.find(b"\r\n")
                if end < 0:
                    self._check_partial(buf, _MAX_CHUNK_LINE, "chunk size line")
                    return None
                line = bytes(buf[:end])
                del buf[:end + 2]
                self.wire += end + 2
                match = _CHUNK_LINE.fullmatch(line)
                if match is None:
                    raise BadRequest("malformed chunk size line")
                chunk = int(match.group(1), 16)
                if chunk > _MAX_CHUNK:
                    raise BadRequest("chunk size too large")
                self._announced += chunk
                limit = self.settings.max_body_size
                if limit and self._announced > limit:
                    # Refused at the size line, before its data is read.
                    raise PayloadTooLarge(f"chunked body over max_body_size ({limit})")
                if chunk:
                    self._left = chunk
                    self._state = _DATA
                else:
                    self._state = _TRAILERS
            else:
                return self._trailers(buf)

    def _trailers(self, buf: bytearray) -> bytes | None:
        if buf[:2] == b"\r\n":
            del buf[:2]
            self.wire += 2
            self._finish()
            return b""
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            self._check_partial(buf, self.settings.max_header_size + 4, "trailer section")
            return None
        section = bytes(buf[:end])
        del buf[:end + 4]
        self.wire += end + 4
        parse_fields(section, self.settings, trailers=True)
        self._finish()
        return b""

    def _finish(self) -> None:
        self.done = True
        self._state = _SIZE

    @staticmethod
    def _check_partial(buf: bytearray, limit: int, what: str) -> None:
        """Refuse an incomplete line or section that is already too long or malformed."""
        if len(buf) > limit:
            if what == "trailer section":
                raise HeaderFieldsTooLarge("trailer section over max_header_size")
            raise BadRequest(f"{what} too long")
        if has_bare_cr_lf(buf):
            raise BadRequest(f"bare CR or LF in the {what}")
