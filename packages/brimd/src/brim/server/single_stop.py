"""How no-daemon mode stops: the master's drain, done by the one process itself.

A forked brimd stops without resetting anyone (see
:mod:`brim.supervisor.draining`): the master marks its workers "going
away" for ``drain_delay``, tells them to drain, and answers what is still
queued on the listening sockets with a refusal before it lets go of them.
In no-daemon mode there is no master: the subservers run in this process,
and closing their listeners would make the kernel reset every connection
in the backlog. So this process keeps its own copy of each listening
socket, as a master does, and plays the master's part on TERM.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

from brim.supervisor import WorkerContext
from brim.supervisor.draining import is_listening_stream, refuse_queued

#: How often the stop looks whether every subserver has finished.
_POLL = 0.05


class SingleStop:
    """TERM in no-daemon mode: drain delay, drain, refusals; a second TERM hurries it."""

    def __init__(self, server: Any, contexts: list[WorkerContext], green: Any,
                 logger: logging.Logger) -> None:
        self.server = server
        self.contexts = contexts
        self.green = green
        self.logger = logger
        #: The first TERM (or INT) starts the stop; a second skips what is left of it.
        self.asked = green.Event()
        self.hurry = green.Event()
        #: This process's own copy of each listening stream socket, by key:
        #: what keeps the backlog alive once the subservers let go of theirs.
        self.held: dict[str, socket.socket] = {}
        for sub in server.listeners:
            sock = getattr(sub, "sock", None)
            if sock is not None and sub.socket_key not in self.held \
                    and is_listening_stream(sock):
                self.held[sub.socket_key] = sock.dup()

    def signalled(self) -> None:
        """The signal handler's part (on a green thread): note the TERM."""
        if not self.asked.ready():
            self.asked.send(True)
        elif not self.hurry.ready():
            self.hurry.send(True)

    def run(self, finished: Any) -> None:
        """The stop, once asked: ``finished()`` says every subserver has returned."""
        settings = self.server.settings
        delay = float(settings.drain_delay)
        if delay > 0:
            self.logger.info("brimd no-daemon: stopping, going away for %gs first", delay)
            for ctx in self.contexts:
                ctx.mark_going_away()
            self.hurry.wait(delay)
        self.logger.info("brimd no-daemon: stopping: finishing the requests in flight")
        for ctx in self.contexts:
            ctx.request_drain()
        deadline = time.monotonic() + float(settings.grace)
        while not finished() and time.monotonic() < deadline and not self.hurry.ready():
            self.green.sleep(_POLL)
        if not finished():
            self.logger.warning("brimd no-daemon: requests still in flight are cut off")
        self.refuse()

    def refuse(self) -> int:
        """Answer what is queued on the held sockets, then close them; how many."""
        count = 0
        for key, sock in self.held.items():
            answer = self.server.refusal(key)
            if answer is not None:
                count += refuse_queued(sock, answer)
            sock.close()
        self.held.clear()
        if count:
            self.logger.info("brimd no-daemon: answered %d queued connection(s) with a "
                             "refusal", count)
        return count
