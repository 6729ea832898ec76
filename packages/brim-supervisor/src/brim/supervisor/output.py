"""Sending a worker's stdout, stderr and uncaught exceptions to a logger.

Why: once daemonized, fds 1 and 2 point at /dev/null, so a stray ``print``
or a traceback from a thread would vanish. :func:`capture_output` replaces
``sys.stdout`` (logged at INFO) and ``sys.stderr`` (logged at ERROR) with
line-buffered writers that log each complete line, and routes
``sys.excepthook`` and ``threading.excepthook`` to the logger. Writes made
below Python (by C extensions straight to fd 1/2) are not captured: they go
wherever fds 1 and 2 point (/dev/null after :func:`~brim.supervisor.daemonize`).
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import types


class LoggerWriter(io.TextIOBase):
    """A text stream that logs each complete line it is given."""

    def __init__(self, logger: logging.Logger, level: int, name: str) -> None:
        super().__init__()
        self._logger = logger
        self._level = level
        self._name = name
        self._buffer = ""
        self._local = threading.local()

    @property
    def name(self) -> str:  # some code prints sys.stdout.name
        return self._name

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if getattr(self._local, "busy", False):
            # A logging handler writing to this very stream: do not recurse.
            fallback = sys.__stderr__
            if fallback is not None:
                fallback.write(text)
            return len(text)
        self._buffer += text
        if "\n" in self._buffer:
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._emit(line)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self._emit(line)

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line:
            return
        self._local.busy = True
        try:
            self._logger.log(self._level, "%s: %s", self._name, line)
        finally:
            self._local.busy = False


def capture_output(logger: logging.Logger) -> None:
    """Route this process's Python-level stdout, stderr and uncaught errors to *logger*."""
    sys.stdout = LoggerWriter(logger, logging.INFO, "stdout")
    sys.stderr = LoggerWriter(logger, logging.ERROR, "stderr")

    def _excepthook(
        kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
    ) -> None:
        logger.error("uncaught exception", exc_info=(kind, value, tb))

    def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        logger.error(
            "uncaught exception in thread %s",
            name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),  # type: ignore[arg-type]
        )

    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook


def flush_std_streams() -> None:
    """Flush stdout and stderr, ignoring any failure.

    For a process about to end, or be killed, whose last words may still sit
    in a buffer.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
