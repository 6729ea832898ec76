"""Sending on and accepting from non-blocking sockets, shared by both engines.

What differs between green threads and OS threads is only how a caller
waits for a socket to be ready; each engine passes its own ``wait(fd,
writing, timeout)``, which returns when fd is ready and raises TimeoutError
after timeout seconds.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

#: How an engine waits: wait(fd, writing, timeout), TimeoutError when it passed.
Wait = Callable[[int, bool, "float | None"], None]

#: accept() errors that end neither the accept loop nor the worker: the peer
#: gave up between SYN and accept, or a resource ran short for a moment.
TRANSIENT_ACCEPT = (errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE,
                    errno.ENOBUFS, errno.ENOMEM)


def sender(wait: Wait) -> Callable[[socket.socket, bytes | memoryview, float | None], None]:
    """An engine's ``sendall(sock, data, timeout)``, waiting with its ``wait``.

    A closure rather than a wrapper around a shared function: it runs once
    a response, and this way it is one call.
    """

    def sendall(sock: socket.socket, data: bytes | memoryview, timeout: float | None) -> None:
        """Send all of data, waiting while the kernel's buffer is full.

        The common case (everything fits in the socket buffer) is one send
        call and no wait. TimeoutError if the peer takes nothing for timeout
        seconds.
        """
        try:
            sent = sock.send(data)
        except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
            sent = 0
        total = len(data)
        if sent == total:
            return
        fd = sock.fileno()
        view = memoryview(data)
        while sent < total:
            try:
                sent += sock.send(view[sent:])
            except (BlockingIOError, ssl.SSLWantWriteError):
                wait(fd, True, timeout)
            except ssl.SSLWantReadError:
                wait(fd, False, timeout)

    return sendall


def sendfile(sock: socket.socket, fd: int, offset: int, count: int, timeout: float | None,
             wait: Wait) -> int:
    """Send count bytes of file fd from offset with os.sendfile; the bytes sent.

    Fewer than count only when the file ended first. TimeoutError if the
    peer takes nothing for timeout seconds.
    """
    out = sock.fileno()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            wait(out, True, timeout)
            continue
        if n == 0:
            break
        sent += n
    return sent


def tls_handshake(sock: ssl.SSLSocket, timeout: float | None, wait: Wait) -> None:
    """Run a server-side TLS handshake on a non-blocking SSLSocket.

    timeout bounds the whole handshake, not each wait: a client that
    dribbles its ClientHello a byte at a time still runs out of it.
    TimeoutError when it does.
    """
    fd = sock.fileno()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            sock.do_handshake()
            return
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError) as want:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("TLS handshake not finished in time") from None
            wait(fd, isinstance(want, ssl.SSLWantWriteError), left)


def accept(sock: socket.socket, wait: Wait,
           pause: Callable[[float], None]) -> tuple[socket.socket, Any]:
    """Accept one connection from a non-blocking listener, waiting for one.

    Several worker processes share one listener, so EAGAIN after a wake-up
    (another worker won the race) is normal and simply waits again. The new
    connection is returned non-blocking.
    """
    fd = sock.fileno()
    while True:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            wait(fd, False, None)
            continue
        except OSError as err:
            if err.errno in TRANSIENT_ACCEPT:
                pause(0.01 if err.errno in (errno.EMFILE, errno.ENFILE) else 0)
                continue
            raise
        conn.setblocking(False)
        return conn, addr
