"""wsgi.input: the request body as a file-like object, read on demand.

The body is not read ahead of the app. Bytes come off the connection only
when the app asks for more than is buffered, so a large upload streams
through in pieces and an app that ignores the body costs no memory beyond
one socket read.
"""

from __future__ import annotations

from collections.abc import Iterator

from .body import Body

__all__ = ["Input"]

_READ_SIZE = 65536


class Input:
    """PEP 3333 input stream over one request's body."""

    __slots__ = ("_body", "_iter_chunk", "_pending")

    def __init__(self, body: Body, iter_chunk: int) -> None:
        self._body = body
        self._iter_chunk = iter_chunk
        # Bytes read from the body but not yet returned (readline read ahead).
        self._pending = bytearray()

    def read(self, size: int | None = -1) -> bytes:
        """Up to size bytes (all that is left when size is None or negative).

        Fewer than size only at the end of the body, as with a file.
        """
        pending = self._pending
        body = self._body
        if size is None or size < 0:
            parts = [bytes(pending)]
            pending.clear()
            while True:
                data = body.read(_READ_SIZE)
                if not data:
                    return b"".join(parts)
                parts.append(data)
        if not pending:
            data = body.read(size) if size else b""
            if len(data) == size or not data:
                return data
            pending += data
        while len(pending) < size:
            data = body.read(size - len(pending))
            if not data:
                break
            pending += data
        data = bytes(pending[:size])
        del pending[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line, with its b'\\n', or at most size bytes of it."""
        pending = self._pending
        body = self._body
        start = 0
        limit = -1 if size is None or size < 0 else size
        while True:
            i = pending.find(b"\n", start)
            if i >= 0:
                end = i + 1
                break
            if 0 <= limit <= len(pending):
                end = limit
                break
            start = len(pending)
            data = body.read(_READ_SIZE)
            if not data:
                end = len(pending)
                break
            pending += data
        if 0 <= limit < end:
            end = limit
        data = bytes(pending[:end])
        del pending[:end]
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
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
        """Yield the body line by line, as a file does (PEP 3333).

        A line longer than wsgi_input_iter_chunk_size comes in pieces of
        that size: a body without newlines must not be gathered whole into
        memory just because an app iterated it.
        """
        readline = self.readline
        size = self._iter_chunk
        while True:
            line = readline(size)
            if not line:
                return
            yield line
