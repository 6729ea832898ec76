"""A stop without resets: the drain delay, and the connections left in the backlog.

Two things go wrong when a service behind a load balancer stops:

* The balancer keeps sending until it notices. A *drain delay* lets it
  notice: on TERM the master first marks every worker "going away"
  (:attr:`WorkerContext.going_away`, which a readiness check reports as
  "not ready") while they go on serving everything; only after the delay
  are they told to stop.
* Connections already queued in a listening socket's backlog are reset by
  the kernel when the last copy of that socket closes. The workers let go
  of their copies when they stop; the master keeps its own until it exits,
  so it is the last holder, and before closing it accepts what is queued
  and answers each connection with a short refusal (the caller's bytes: a
  503 for HTTP), closing it cleanly (its request read, a FIN, never a RST).
  It does so whenever a connection arrives while the workers stop, and once
  more at the very end, so a client queued at any moment of the stop gets
  an answer it can retry on.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import time
from collections.abc import Callable

from brim.supervisor.pool import Pool

#: What a listening socket's queued connections are answered with during a
#: stop, by the name it is registered under: bytes to send before a clean
#: close (``b""``: just close), or None to leave the socket alone.
Refusal = Callable[[str], "bytes | None"]

#: How long a refused connection is held open for its client to read the
#: answer and close first (its late bytes are read, so none can cause a RST).
LINGER = 1.0
_READ = 65536


def is_listening_stream(sock: socket.socket) -> bool:
    """True for a listening stream socket (TCP or Unix), whose backlog can queue."""
    try:
        return (sock.type == socket.SOCK_STREAM
                and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1)
    except OSError:
        return False


def refuse_queued(sock: socket.socket, answer: bytes, linger: float = LINGER) -> int:
    """Accept every connection waiting on ``sock``, answer and close each cleanly.

    Each connection's waiting bytes are read first (unread bytes at close
    make the kernel send a RST, which may cost the client the answer), then
    ``answer`` is sent and the writing side shut; the connection is held
    until its client closes, or ``linger`` seconds, reading and discarding
    what it still sends. Returns how many were refused.

    ``sock`` is left non-blocking: its open file (and so that flag) is
    shared with every process that inherited it, and workers accept on it
    non-blocking; switching it back to blocking here would switch theirs,
    and a worker that accepts with no connection there would then hang.
    Non-blocking also keeps this call from waiting when another process
    took the connection first.
    """
    held: list[socket.socket] = []
    sock.setblocking(False)
    while True:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            break
        except OSError as err:
            if err.errno in (errno.ECONNABORTED, errno.EPROTO):
                continue
            break
        conn.setblocking(False)
        _read_waiting(conn)
        try:
            if answer:
                conn.send(answer)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            continue
        held.append(conn)
    count = len(held)
    _linger(held, time.monotonic() + linger)
    return count


def _read_waiting(conn: socket.socket) -> bool:
    """Read what has arrived; True once the client closed (or the connection broke)."""
    while True:
        try:
            data = conn.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        if not data:
            return True


def _linger(held: list[socket.socket], deadline: float) -> None:
    """Hold the answered connections until each client closed, or the deadline."""
    while held:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        readable, _, _ = select.select(held, [], [], left)
        for conn in readable:
            if _read_waiting(conn):
                held.remove(conn)
                conn.close()
    for conn in held:
        with contextlib.suppress(OSError):
            _read_waiting(conn)
        conn.close()


class Draining:
    """The stop's drain delay and the master's refusals, one policy for the loop.

    ``delay`` seconds of "going away" come before the workers are told to
    stop (0: none). ``refusal`` says what queued connections of each
    registered socket get (see :data:`Refusal`); None leaves every socket
    alone (the old behaviour: the kernel resets what is queued).
    """

    def __init__(self, pool: Pool, delay: float, refusal: Refusal | None) -> None:
        self._pool = pool
        self.delay = float(delay)
        self.refusal = refusal
        #: When the delay ends (monotonic), while it runs; else 0.
        self.until = 0.0
        #: Connections refused so far (for the master's last log line).
        self.refused = 0

    @property
    def delaying(self) -> bool:
        return self.until > 0.0

    def begin_delay(self, now: float) -> None:
        """Mark every worker as going away; the stop proper waits until :attr:`until`."""
        self.until = now + self.delay
        for child in self._pool.children.values():
            child.heartbeat.mark_unready()

    def delay_over(self, now: float) -> bool:
        return self.delaying and now >= self.until

    def end_delay(self) -> None:
        self.until = 0.0

    def next_wake(self, now: float) -> float:
        return self.until if self.delaying else now + 3600.0

    def watched(self, sockets: dict[str, socket.socket]) -> list[socket.socket]:
        """The listening sockets to refuse queued connections on, while stopping."""
        if self.refusal is None:
            return []
        return [sock for name, sock in sockets.items()
                if sock.fileno() >= 0 and self.refusal(name) is not None
                and is_listening_stream(sock)]

    def refuse(self, sockets: dict[str, socket.socket],
               ready: list[socket.socket] | None = None) -> int:
        """Refuse what is queued on the watched sockets (those in ``ready`` only,
        when given); returns how many connections were refused."""
        if self.refusal is None:
            return 0
        count = 0
        for name, sock in sockets.items():
            if ready is not None and sock not in ready:
                continue
            if sock.fileno() < 0 or not is_listening_stream(sock):
                continue
            answer = self.refusal(name)
            if answer is not None:
                count += refuse_queued(sock, answer)
        self.refused += count
        return count
