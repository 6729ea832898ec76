"""LogStream: a file-like object whose text becomes log records.

Why: some text meant for an operator is written to a stream, not a logger:
``wsgi.errors`` (PEP 3333 gives apps a stream; Flask's default handler logs
a whole traceback into it with one ``write``), and a daemonized process's
``sys.stderr``, whose fd 2 is /dev/null. A LogStream turns that text into
records on a brim logger, so it lands in the log with its txn.

What one record is: the text of one ``write`` that ends with a newline (or
up to its last newline), or what ``flush`` finds buffered, so a traceback
written in one go is one record (one JSON line; in text, one line and its
continuation lines), and ``print()``'s two writes (text, then newline) are
one record too. A record is at most :data:`MAX_RECORD` characters; longer
text is cut into several.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
from typing import Any

from .records import MULTILINE

__all__ = ["MAX_RECORD", "LogStream", "capture_std_streams"]

#: The most characters one record carries; an app writing without a line
#: break cannot make a record, or the memory it waits in, larger.
MAX_RECORD = 64 * 1024

# Set while a stream is logging, in this thread (or green thread, when
# threading is patched): a handler that writes to sys.stderr, which may be a
# LogStream itself, must not loop back into it.
_local = threading.local()


class LogStream:
    """A writable text stream that logs what is written to it, at one level.

    txn: the request whose records these are (``wsgi.errors`` is made per
    request with it); None takes the txn current when each record is made.
    prefix starts each record ('stderr: ' for a captured sys.stderr).

    A plain class with slots, not an :class:`io.TextIOBase`: one is made per
    request, and the io base class's creation and finalizer cost five times
    as much. It has what code writing to a text stream uses; ``fileno()``
    raises :class:`io.UnsupportedOperation`, as for any stream without one.
    """

    __slots__ = ("_level", "_logger", "_name", "_prefix", "_txn", "pending")

    #: Never closed: a write after close() must still reach the log.
    closed = False
    encoding = "utf-8"
    errors = "strict"

    def __init__(self, logger: logging.Logger, level: int = logging.ERROR,
                 txn: str | None = None, name: str = "wsgi.errors", prefix: str = "") -> None:
        self._logger = logger
        self._level = level
        self._txn = txn
        self._name = name
        self._prefix = prefix
        #: Text written and waiting for its newline or a flush ('' when none):
        #: a plain attribute, read once a request.
        self.pending = ""

    @property
    def name(self) -> str:  # some code prints a stream's name
        return self._name

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a LogStream has no file descriptor")

    def write(self, text: Any) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if getattr(_local, "busy", False):
            # A handler writing to this very stream: keep it out of the log.
            fallback = sys.__stderr__
            if fallback is not None:
                try:
                    fallback.write(text)
                except (OSError, ValueError):
                    pass
            return len(text)
        buffer = self.pending + text
        while len(buffer) > MAX_RECORD:
            self._emit(buffer[:MAX_RECORD])
            buffer = buffer[MAX_RECORD:]
        if text.endswith("\n"):
            self.pending = ""
            self._emit(buffer)
        elif "\n" in text:
            done, _, self.pending = buffer.rpartition("\n")
            self._emit(done)
        else:
            self.pending = buffer
        return len(text)

    def writelines(self, lines: Any) -> None:
        self.write("".join(lines))

    def flush(self) -> None:
        if self.pending:
            text, self.pending = self.pending, ""
            self._emit(text)

    def close(self) -> None:
        # Apps may close wsgi.errors; the stream stays usable, since a later
        # write must still reach the log.
        self.flush()

    def __enter__(self) -> LogStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def _emit(self, text: str) -> None:
        text = text.rstrip("\r\n")
        if not text.strip():
            return
        extra: dict[str, Any] = {MULTILINE: True}
        if self._txn is not None:
            extra["brim_txn"] = self._txn
            extra["brim_txn_done"] = True
        _local.busy = True
        try:
            self._logger.log(self._level, "%s", self._prefix + text, extra=extra)
        finally:
            _local.busy = False


def capture_std_streams(logger: logging.Logger) -> None:
    """Send this process's sys.stdout (INFO) and sys.stderr (ERROR) to logger.

    For a daemonized process, whose fds 1 and 2 are /dev/null. Python-level
    writes only: what C code writes to fd 2 itself still goes there.
    """
    sys.stdout = LogStream(logger, logging.INFO, name="<stdout>", prefix="stdout: ")
    sys.stderr = LogStream(logger, logging.ERROR, name="<stderr>", prefix="stderr: ")
