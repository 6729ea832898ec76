"""wsgi.file_wrapper: files sent by the kernel rather than read through Python.

PEP 3333's optional extension. An app returns ``env['wsgi.file_wrapper'](f)``
instead of reading ``f`` itself; on a plain TCP connection brim then sends a
regular file with ``os.sendfile``, which copies from the page cache to the
socket without the bytes ever entering the worker. Under TLS, or for a
file-like object without a real file behind it, the wrapper is iterated like
any other body, in ``blksize`` pieces.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from typing import Any

__all__ = ["FileWrapper"]


class FileWrapper:
    """An iterable over a file-like object that brim may send with sendfile."""

    def __init__(self, filelike: Any, blksize: int = 65536) -> None:
        self.filelike = filelike
        self.blksize = blksize

    def __iter__(self) -> Iterator[bytes]:
        return self.pieces(None)

    def pieces(self, limit: int | None) -> Iterator[bytes]:
        """The file in blksize pieces, stopping after limit bytes when one is given.

        A response's Content-Length is such a limit: an app that seeks to
        the start of a range and sets its length wants just that range sent,
        not the rest of the file.
        """
        read = self.filelike.read
        size = self.blksize
        while limit is None or limit > 0:
            data = read(size if limit is None else min(size, limit))
            if not data:
                return
            if limit is not None:
                limit -= len(data)
            yield data

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def sendfile_span(self) -> tuple[int, int, int] | None:
        """(fd, offset, bytes to the end) for a regular file, else None.

        None means: iterate instead (no fileno, not a regular file, a
        position that cannot be told, a file not open for reading, or a
        size of 0). A size of 0 is what /proc and other generated files
        report whatever they hold, so their data is read, not trusted to
        the size; and a file that cannot be read fails in read(), as the
        app's error it is, not in sendfile, where it would pass for the
        client's.
        """
        try:
            fd = self.filelike.fileno()
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or not info.st_size:
                return None
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY:
                return None
            tell = getattr(self.filelike, "tell", None)
            offset = tell() if tell is not None else os.lseek(fd, 0, os.SEEK_CUR)
        except (AttributeError, OSError, ValueError):
            return None
        return fd, offset, max(0, info.st_size - offset)
