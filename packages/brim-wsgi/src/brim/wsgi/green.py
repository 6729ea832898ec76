"""The one door to eventlet.

Every use of the green-thread engine in brim goes through this module, so a
later move to another engine (eventlet is in bugfix-only maintenance) means
rewriting this file and nothing else. Callers get plain functions: spawn,
sleep, a pool, an event, and socket waits that suspend only the calling
green thread.

eventlet announces its deprecation with a warning at import time; brim users
did not choose eventlet and cannot act on that warning, so it is filtered
here, before the import, and never reaches a terminal or a log.
"""

from __future__ import annotations

import contextvars
import errno
import os
import signal
import socket
import ssl
import time
import types
import warnings
from collections.abc import Callable, Iterable
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import eventlet
    import eventlet.event
    import eventlet.greenpool
    import eventlet.greenthread
    import eventlet.hubs
    from eventlet.green import socket as _green_socket_mod
# Later warnings from inside eventlet (e.g. about fork) are just as useless to
# a brim user; keep them out of logs too.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"eventlet(\..*)?")
warnings.filterwarnings("ignore", message=r"(?s).*[Ee]ventlet is deprecated")

import greenlet  # noqa: E402  (after eventlet: eventlet pins the greenlet it wants)

__all__ = [
    "Event",
    "GreenPool",
    "GreenletExit",
    "accept",
    "current",
    "green_socket",
    "green_stacks",
    "install_signal_handlers",
    "kill",
    "preload",
    "recv",
    "sendall",
    "sendfile",
    "sleep",
    "spawn",
    "spawn_n",
    "throw",
    "tls_handshake",
    "use_hub",
    "wait_read",
]

GreenPool = eventlet.greenpool.GreenPool
Event = eventlet.event.Event
GreenletExit = greenlet.GreenletExit
sleep = eventlet.greenthread.sleep
spawn = eventlet.greenthread.spawn
spawn_n = eventlet.greenthread.spawn_n
kill = eventlet.greenthread.kill
current = greenlet.getcurrent
_trampoline = eventlet.hubs.trampoline



def green_stacks(note: Callable[[contextvars.Context | None], str | None] | None = None,
                 limit: int = 40) -> list[str]:
    """The stacks of this process's green threads as text lines, for a stack dump.

    Found through the garbage collector, so nothing has to keep a list of
    them: every live, started green thread but the hub's own and the
    calling one (whose stack the dump shows as what runs now). Threads with
    the same stack (a thousand idle connections waiting to read) are shown
    once, with their count. ``note(context)``, given the thread's context
    variables, may add a few words to its header (the request's txn, say).
    Runs in a signal handler too: it never switches green threads.
    """
    import gc
    import traceback

    hub = getattr(eventlet.hubs._threadlocal, "hub", None)
    skip = {id(greenlet.getcurrent()), id(getattr(hub, "greenlet", None))}
    groups: dict[tuple[Any, ...], tuple[list[str], list[str]]] = {}
    waiting = 0
    for obj in gc.get_objects():
        if not isinstance(obj, greenlet.greenlet) or id(obj) in skip or obj.dead:
            continue
        frame = obj.gr_frame
        if frame is None:
            waiting += 1  # spawned, not started yet
            continue
        frames: list[types.FrameType] = []
        while frame is not None and len(frames) < limit:
            frames.append(frame)
            frame = frame.f_back
        frames.reverse()
        key = tuple((f.f_code, f.f_lineno) for f in frames)
        if key not in groups:
            summary = traceback.StackSummary.extract((f, f.f_lineno) for f in frames)
            text = [line for entry in traceback.format_list(summary)
                    for line in entry.rstrip("\n").split("\n")]
            groups[key] = (text, [])
        words = None
        if note is not None:
            try:
                words = note(getattr(obj, "gr_context", None))
            except Exception:
                words = None
        groups[key][1].append(words or "")
    lines = []
    for text, notes in groups.values():
        said = [n for n in notes if n]
        shown = ", ".join(said[:20]) + (f" and {len(said) - 20} more" if len(said) > 20 else "")
        if len(notes) == 1:
            lines.append(f'green thread{" " + shown if shown else ""}:')
        else:
            lines.append(f'{len(notes)} green threads with this stack'
                         f'{" (" + shown + ")" if shown else ""}:')
        lines.extend(text)
    if waiting:
        lines.append(f"{waiting} green threads spawned and not started yet")
    return lines


def throw(thread: Any, exc: type[BaseException]) -> None:
    """Raise exc inside another green thread, where it is waiting.

    The thread runs at once until it waits again or ends; then the caller
    goes on. Used to end connections that wait on their client.
    """
    eventlet.greenthread.kill(thread, exc)


_HUB_NAMES = ("epolls", "poll", "selects", "kqueue")


def use_hub(name: str | None) -> None:
    """Select eventlet's event loop by name (the ``eventlet_hub`` option).

    None or '' keeps eventlet's default choice. An unknown name raises
    ValueError naming the choices, so configuration errors read clearly.
    """
    if not name:
        return
    if name not in _HUB_NAMES:
        raise ValueError(f'unknown eventlet hub {name!r}; choose from {", ".join(_HUB_NAMES)}')
    try:
        eventlet.hubs.use_hub(name)
    except Exception as err:
        raise ValueError(f"eventlet hub {name!r} is not usable here: {err}") from None


def preload(hub_names: Iterable[str | None] = ()) -> None:
    """Import the event-loop modules workers will need, without starting a hub.

    Why: a master that drops privileges before forking may have been
    installed where the dropped user cannot read (a root-only virtualenv,
    say); every module a worker imports lazily after fork must already be in
    memory, inherited through fork.
    """
    import importlib

    hub = eventlet.hubs.get_default_hub()  # imports, does not instantiate
    del hub
    for name in hub_names:
        if name:
            use_hub_module = f"eventlet.hubs.{name}"
            try:
                importlib.import_module(use_hub_module)
            except ImportError as err:
                raise ValueError(f"eventlet hub {name!r} is not usable here: {err}") from None


def green_socket(sock: socket.socket, waiting: dict[Any, float] | None = None,
                 shed: type[BaseException] = Exception) -> Any:
    """Wrap a plain socket so its blocking calls yield to other green threads.

    With ``waiting``, the socket is handed to code brim does not control (a
    TCP app) and may have to be taken back: while a receive waits on the
    peer, the calling green thread is listed in ``waiting`` with the time
    it started waiting, so a full worker can shed it (``shed`` thrown into
    it). That ends the wait as if the peer had closed: the socket is shut
    down and the receive returns ``b''``, which any app handles already.
    """
    if waiting is None:
        return _green_socket_mod.socket(sock)
    watched = _WatchedSocket(sock)
    watched._brim_waiting = waiting
    watched._brim_shed = shed
    return watched


class _WatchedSocket(_green_socket_mod.socket):
    """eventlet's green socket, listing its reader while a receive waits (see green_socket).

    Every receive (recv, recv_into, recvfrom, makefile reads) waits through
    eventlet's ``_read_trampoline``; a copy made by ``dup()`` is not watched.
    """

    _brim_waiting: dict[Any, float] | None = None
    _brim_shed: type[BaseException] = Exception

    def _read_trampoline(self) -> None:
        waiting = self._brim_waiting
        if waiting is None:
            super()._read_trampoline()
            return
        me = greenlet.getcurrent()
        waiting[me] = time.monotonic()
        try:
            super()._read_trampoline()
        except self._brim_shed:
            try:
                self.fd.shutdown(socket.SHUT_RDWR)  # the reader now sees the end of the stream
            except OSError:
                pass
        finally:
            waiting.pop(me, None)


def wait_read(fd: int, timeout: float | None = None) -> None:
    """Suspend the calling green thread until fd is readable.

    Raises socket.timeout (TimeoutError) after timeout seconds.
    """
    _trampoline(fd, read=True, timeout=timeout, timeout_exc=TimeoutError)


_WOULD_BLOCK_READ = (BlockingIOError, ssl.SSLWantReadError)
_WOULD_BLOCK_WRITE = (ssl.SSLWantWriteError,)


def recv(sock: socket.socket, size: int, timeout: float | None) -> bytes:
    """Receive up to size bytes from a non-blocking socket, green style.

    Works for plain and TLS sockets. Returns b'' at end of stream; raises
    TimeoutError when nothing arrived within timeout seconds. The fd is
    looked up only when there is a wait: most reads find their bytes there.
    """
    while True:
        try:
            return sock.recv(size)
        except _WOULD_BLOCK_READ:
            _trampoline(sock.fileno(), read=True, timeout=timeout, timeout_exc=TimeoutError)
        except _WOULD_BLOCK_WRITE:
            _trampoline(sock.fileno(), write=True, timeout=timeout, timeout_exc=TimeoutError)


def sendall(sock: socket.socket, data: bytes | memoryview, timeout: float | None) -> None:
    """Send all of data on a non-blocking socket, yielding while the kernel is full.

    The common case (everything fits in the socket buffer) is one send call
    and no trip through the hub. TimeoutError if the peer reads nothing for
    timeout seconds.
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
            _trampoline(fd, write=True, timeout=timeout, timeout_exc=TimeoutError)
        except ssl.SSLWantReadError:
            _trampoline(fd, read=True, timeout=timeout, timeout_exc=TimeoutError)


def sendfile(sock: socket.socket, fd: int, offset: int, count: int,
             timeout: float | None) -> int:
    """Send count bytes of file fd from offset with os.sendfile, green style.

    Returns the bytes sent: fewer than count only when the file ended first.
    TimeoutError if the peer reads nothing for timeout seconds.
    """
    out = sock.fileno()
    sent = 0
    while sent < count:
        try:
            n = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 30))
        except BlockingIOError:
            _trampoline(out, write=True, timeout=timeout, timeout_exc=TimeoutError)
            continue
        if n == 0:
            break
        sent += n
    return sent


def tls_handshake(sock: ssl.SSLSocket, timeout: float | None) -> None:
    """Run a server-side TLS handshake on a non-blocking SSLSocket, green style.

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
            _trampoline(fd, read=isinstance(want, ssl.SSLWantReadError),
                        write=isinstance(want, ssl.SSLWantWriteError), timeout=left,
                        timeout_exc=TimeoutError)


def accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """Accept one connection from a non-blocking listening socket, green style.

    Several worker processes share one listener, so EAGAIN after a wake-up
    (another worker won the race) is normal and simply waits again. The new
    connection is returned non-blocking, ready for recv/sendall above.
    """
    fd = sock.fileno()
    while True:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            _trampoline(fd, read=True)
            continue
        except OSError as err:
            # The peer gave up between SYN and accept, or a transient resource
            # shortage: neither should end the accept loop.
            if err.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EMFILE, errno.ENFILE,
                             errno.ENOBUFS, errno.ENOMEM):
                sleep(0.01 if err.errno in (errno.EMFILE, errno.ENFILE) else 0)
                continue
            raise
        conn.setblocking(False)
        return conn, addr


def install_signal_handlers(handlers: dict[int, Callable[[int], None]]) -> Callable[[], None]:
    """Install signal handlers that run as ordinary green threads.

    A Python signal handler runs between bytecodes of whatever green thread
    (or the hub itself) happens to be executing, where switching green threads
    or touching the hub is unsafe. So the real handler only writes the signal
    number to a pipe; a green thread reads the pipe and calls handler(signum)
    in a normal green context, where it may kill green threads, close
    sockets, and so on. Returns a function that uninstalls them.
    """
    rfd, wfd = os.pipe()
    os.set_blocking(rfd, False)
    os.set_blocking(wfd, False)
    previous = {}

    def _on_signal(signum: int, frame: Any) -> None:
        try:
            os.write(wfd, bytes((signum,)))
        except OSError:
            pass  # pipe full: that signal is already pending

    def _dispatch() -> None:
        while True:
            try:
                data = os.read(rfd, 64)
            except BlockingIOError:
                wait_read(rfd)
                continue
            except OSError:
                return
            if not data:
                return
            for signum in data:
                handler = handlers.get(signum)
                if handler is not None:
                    handler(signum)

    for signum in handlers:
        previous[signum] = signal.signal(signum, _on_signal)
    dispatcher = spawn(_dispatch)

    def _uninstall() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)
        kill(dispatcher)
        for fd in (rfd, wfd):
            try:
                os.close(fd)
            except OSError:
                pass

    return _uninstall
