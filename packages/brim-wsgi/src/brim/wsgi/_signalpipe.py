"""The signal pipe both engines use to run signal handlers outside the signal.

A Python signal handler runs between any two bytecodes of whatever happens
to be executing (a green thread, eventlet's hub, a pool thread holding a
lock), where waking threads, taking locks or closing sockets is unsafe. So
the handler installed here only writes the signal's number to a pipe; each
engine reads the pipe its own way (a green thread, an OS thread) and hands
what it read to :meth:`SignalPipe.dispatch`, which calls the real handlers
in an ordinary context. The pipe and the dispatch are written once here;
only the reading differs between engines.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from typing import Any

__all__ = ["SignalPipe"]


class SignalPipe:
    """Signal handlers installed for ``handlers``' signals, writing to a pipe.

    ``write`` is the ``os.write`` to use in the handler: a patched one
    (eventlet's) must not be, since it may wait on the hub the signal
    interrupted.
    """

    def __init__(self, handlers: dict[int, Callable[[int], None]],
                 write: Callable[[int, bytes], int] = os.write) -> None:
        self.handlers = handlers
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.wfd, False)
        self._write = write
        self._previous = {signum: signal.signal(signum, self._on_signal)
                          for signum in handlers}

    def _on_signal(self, signum: int, frame: Any) -> None:
        try:
            self._write(self.wfd, bytes((signum,)))
        except OSError:
            pass  # pipe full: that signal is already pending

    def dispatch(self, data: bytes) -> None:
        """Call the handler of each signal number read from the pipe.

        A handler that fails is logged; the dispatch goes on, so one bad
        handler cannot leave later signals unanswered.
        """
        for signum in data:
            handler = self.handlers.get(signum)
            if handler is not None:
                try:
                    handler(signum)
                except Exception:
                    logging.getLogger("brim").exception("signal handler failed")

    def restore(self) -> None:
        """Put back the handlers that were there before."""
        for signum, old in self._previous.items():
            signal.signal(signum, old)

    def close(self, *, read_end: bool = True) -> None:
        """Close the pipe (the write end only: a reader blocked on it sees its end)."""
        for fd in (self.rfd, self.wfd) if read_end else (self.wfd,):
            try:
                os.close(fd)
            except OSError:
                pass
