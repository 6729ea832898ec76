"""wsgi.input: the request body as a file-like object, read on demand.

The body is not read ahead of the app. Bytes arrive from the parser into the
request's buffer only when the app asks for more than is buffered, so a large
upload streams through in pieces and an app that ignores the body costs no
memory beyond one socket read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


class _ClientError(OSError):
    """The client broke off while we needed it: 408 (too slow), 499 (gone), 400 (bad body).

    An OSError, so an app that guards its body reads the usual way catches it.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Input:
    """PEP 3333 input stream over one request's body."""

    __slots__ = ('_conn', '_iter_chunk', '_req')

    def __init__(self, conn: Any, req: Any, iter_chunk: int) -> None:
        self._conn = conn
        self._req = req
        self._iter_chunk = iter_chunk

    def read(self, size: int | None = -1) -> bytes:
        req = self._req
        buf = req.body
        if size is None or size < 0:
            while not req.complete:
                self._conn._fill_body(req)
            data = bytes(buf)
            buf.clear()
            return data
        while len(buf) < size and not req.complete:
            self._conn._fill_body(req)
        if len(buf) <= size:
            data = bytes(buf)
            buf.clear()
            return data
        data = bytes(buf[:size])
        del buf[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        req = self._req
        buf = req.body
        start = 0
        while True:
            i = buf.find(b'\n', start)
            if i >= 0:
                end = i + 1
                break
            if size is not None and 0 <= size <= len(buf):
                end = size
                break
            if req.complete:
                end = len(buf)
                break
            start = len(buf)
            self._conn._fill_body(req)
        if size is not None and 0 <= size < end:
            end = size
        data = bytes(buf[:end])
        del buf[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        """Yield the body in pieces of at most wsgi_input_iter_chunk_size bytes.

        Pieces rather than lines: bodies are mostly not line-oriented, and a
        body without newlines must not be gathered whole into memory.
        """
        read = self.read
        size = self._iter_chunk
        while True:
            data = read(size)
            if not data:
                return
            yield data
