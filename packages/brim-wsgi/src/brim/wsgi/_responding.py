"""Writing responses: start_response, heads, framing, error replies.

Mixed into the connection class of :mod:`brim.wsgi.http`. The head is built
as one string and, with a small body, leaves in one send; the Date header is
formatted once a second.
"""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import green
from ._input import _ClientError
from ._parsing import _RECV_SIZE
from .log import NOTICE, format_request_line, new_txn, set_txn

if TYPE_CHECKING:
    from ._parsing import _Request

_REASONS = {
    400: 'Bad Request', 408: 'Request Timeout', 414: 'URI Too Long',
    431: 'Request Header Fields Too Large', 500: 'Internal Server Error',
    501: 'Not Implemented', 505: 'HTTP Version Not Supported',
}


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


class ResponseWriter:
    """The writing half of a connection: what start_response and the app's body become."""

    def _gone(self, status: int, reason: str) -> _ClientError:
        if not self.gone_status:
            self.gone_status = status
        self.keep = False
        return _ClientError(status, reason)

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

    def _send_error(self, status: int, reason: str, req: _Request | None) -> None:
        """Answer a request we could not parse or that was too slow, then close."""
        server = self.server
        start = time.time()
        txn = new_txn()
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
