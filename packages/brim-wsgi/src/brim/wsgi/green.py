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

import _thread
import contextvars
import os
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
    import eventlet.patcher
    from eventlet.green import socket as _green_socket_mod
# Later warnings from inside eventlet (e.g. about fork) are just as useless to
# a brim user; keep them out of logs too.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"eventlet(\..*)?")
warnings.filterwarnings("ignore", message=r"(?s).*[Ee]ventlet is deprecated")

import greenlet  # noqa: E402  (after eventlet: eventlet pins the greenlet it wants)

from . import _sockets  # noqa: E402
from ._signalpipe import SignalPipe  # noqa: E402

__all__ = [
    "PREEMPTIVE",
    "Event",
    "Exit",
    "GreenPool",
    "GreenletExit",
    "Parked",
    "accept",
    "accept_forever",
    "current",
    "green_socket",
    "green_stacks",
    "install_signal_handlers",
    "kill",
    "lock",
    "make_pool",
    "make_room_in",
    "monkey_patch",
    "preload",
    "recv",
    "recv_waiting",
    "sendall",
    "sendfile",
    "sleep",
    "spawn",
    "spawn_n",
    "stacks",
    "throw",
    "tls_handshake",
    "use_hub",
    "wait_read",
]

GreenPool = eventlet.greenpool.GreenPool
Event = eventlet.event.Event
GreenletExit = greenlet.GreenletExit
_eventlet_sleep = eventlet.greenthread.sleep
spawn = eventlet.greenthread.spawn
spawn_n = eventlet.greenthread.spawn_n
kill = eventlet.greenthread.kill
current = greenlet.getcurrent
#: os as it was before any monkey_patch(), for code that runs inside the hub.
_real_os: Any = eventlet.patcher.original("os")
#: What a killed green thread raises (the engine interface's name for it).
Exit = greenlet.GreenletExit


class Parked(BaseException):
    """Never raised here: a green thread waiting on an idle client costs a few KB,
    so it simply waits (the threads engine parks such connections instead)."""


#: Green threads switch only where they wait (see the engine interface).
PREEMPTIVE = False

_hub_local = eventlet.hubs._threadlocal
_trampoline = eventlet.hubs.trampoline


#: The kinds of green thread brim runs connections on (spawn_n's and
#: spawn's), which have no ``switch_out`` hook for the hub to call.
_PLAIN_THREADS = frozenset({greenlet.greenlet, eventlet.greenthread.GreenThread})


class _Resume:
    """A hub timer that resumes one green thread: what :func:`sleep` (0) schedules.

    eventlet's own timer carries the callback's args and kwargs and is made
    through two more calls; a worker yields once per keep-alive request,
    where the difference shows. The hub reads a timer's ``seconds`` when it
    adds it and its ``called`` when it comes due, then calls it, and orders
    two of the same due time by ``<``: this is all it needs to be.
    """

    __slots__ = ("called", "switch")
    seconds = 0.0

    def __init__(self, switch: Callable[[], Any]) -> None:
        self.switch = switch
        self.called = False

    def __call__(self) -> None:
        self.called = True
        self.switch()

    def __lt__(self, other: object) -> bool:
        return id(self) < id(other)


def sleep(seconds: float = 0) -> None:
    """Suspend the calling green thread for seconds; with 0, let every ready one run first.

    A yield (0) is what eventlet's sleep does, in fewer steps (a worker
    yields after every keep-alive request): a :class:`_Resume` is added to
    the hub's timers, due now, through the hub's ``add_timer``, which a hub
    may extend (the asyncio hub wakes its loop there); then the thread
    switches to the hub directly when it is one of the kinds brim spawns,
    a child of the hub with no ``switch_out`` hook, which is all the hub's
    own ``switch`` would check. Any other thread goes through that
    ``switch``. Should the thread be woken some other way meanwhile
    (killed, say), the timer is cancelled, so it can never resume the
    thread later at a wait of its own.
    """
    if seconds > 0:
        _eventlet_sleep(seconds)
        return
    try:
        hub = _hub_local.hub
    except AttributeError:  # no hub yet in this OS thread
        hub = eventlet.hubs.get_hub()
    me = greenlet.getcurrent()
    loop = hub.greenlet
    if loop is me:  # the hub itself (a signal handler): nothing to yield to
        return
    resume = _Resume(me.switch)
    hub.add_timer(resume)
    try:
        if type(me) in _PLAIN_THREADS and me.parent is loop and not loop.dead:
            loop.switch()
        else:
            hub.switch()
    finally:
        if not resume.called:
            resume.called = True
            hub.timer_canceled(resume)


#: The lock every green worker's state shares. Green threads switch only
#: where they wait, and the HTTP core never waits while it holds this lock,
#: so no exclusion is needed; an RLock gives exactly that for free: all green
#: threads run on one OS thread, which owns it re-entrantly, so it never
#: blocks. It is used over a Python-level no-op because its ``__enter__`` and
#: ``__exit__`` are C calls. Per request even that is skipped (PREEMPTIVE).
_NO_LOCK = _thread.RLock()


def lock() -> Any:
    """What guards state shared by a worker's connections: nothing, with green threads.

    Green threads switch only where they wait, and the HTTP core never
    waits while it holds this lock, so none is needed.
    """
    return _NO_LOCK


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


def stacks(note: Callable[[contextvars.Context | None], str | None] | None = None,
           limit: int = 40) -> list[str]:
    """The engine interface's name for :func:`green_stacks`."""
    return green_stacks(note, limit)


def throw(thread: Any, exc: type[BaseException]) -> bool:
    """Raise exc inside another green thread, where it is waiting; always True.

    The thread runs at once until it waits again or ends; then the caller
    goes on. Used to end connections that wait on their client.
    """
    eventlet.greenthread.kill(thread, exc)
    return True


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


def recv(sock: socket.socket, size: int, timeout: float | None, park: bool = False) -> bytes:
    """Receive up to size bytes from a non-blocking socket, green style.

    Works for plain and TLS sockets. Returns b'' at end of stream; raises
    TimeoutError when nothing arrived within timeout seconds. The fd is
    looked up only when there is a wait: most reads find their bytes there.
    ``park`` is ignored: this is also :func:`recv_waiting`.
    """
    while True:
        try:
            return sock.recv(size)
        except _WOULD_BLOCK_READ:
            _trampoline(sock.fileno(), read=True, timeout=timeout, timeout_exc=TimeoutError)
        except _WOULD_BLOCK_WRITE:
            _trampoline(sock.fileno(), write=True, timeout=timeout, timeout_exc=TimeoutError)


#: recv() for a connection listed as waiting on its client (it may be thrown
#: Shed). ``park`` is for engines that take idle connections off their
#: thread; a green thread simply waits, so it is recv itself: no extra call
#: on every request.
recv_waiting = recv


def _wait(fd: int, writing: bool, timeout: float | None) -> None:
    _trampoline(fd, read=not writing, write=writing, timeout=timeout, timeout_exc=TimeoutError)


#: Send all of data on a non-blocking socket, yielding while the kernel is
#: full; TimeoutError if the peer reads nothing for timeout seconds.
sendall = _sockets.sender(_wait)


def sendfile(sock: socket.socket, fd: int, offset: int, count: int,
             timeout: float | None) -> int:
    """Send count bytes of file fd from offset with os.sendfile, green style."""
    return _sockets.sendfile(sock, fd, offset, count, timeout, _wait)


def tls_handshake(sock: ssl.SSLSocket, timeout: float | None) -> None:
    """Run a server-side TLS handshake on a non-blocking SSLSocket, green style.

    timeout bounds the whole handshake, not each wait (see _sockets).
    """
    _sockets.tls_handshake(sock, timeout, _wait)


def accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """Accept one connection from a non-blocking listening socket, green style."""
    return _sockets.accept(sock, _wait, sleep)


def install_signal_handlers(handlers: dict[int, Callable[[int], None]]) -> Callable[[], None]:
    """Install signal handlers that run as ordinary green threads.

    A Python signal handler runs between bytecodes of whatever green thread
    (or the hub itself) happens to be executing, where switching green threads
    or touching the hub is unsafe. So the real handler only writes the signal
    number to a pipe; a green thread reads the pipe and calls handler(signum)
    in a normal green context, where it may kill green threads, close
    sockets, and so on. Returns a function that uninstalls them.

    The pipe is written and read with the unpatched os functions: once a
    worker is patched (``monkey_patch``), eventlet's os.write waits on the
    hub before it writes to a pipe, and a signal handler that interrupted
    the hub itself must not wait on it (that was a crash on every TERM).
    """
    pipe = SignalPipe(handlers, write=_real_os.write)
    os.set_blocking(pipe.rfd, False)

    def _dispatch() -> None:
        while True:
            try:
                data = _real_os.read(pipe.rfd, 64)
            except BlockingIOError:
                wait_read(pipe.rfd)
                continue
            except OSError:
                return
            if not data:
                return
            pipe.dispatch(data)

    dispatcher = spawn(_dispatch)

    def _uninstall() -> None:
        pipe.restore()
        kill(dispatcher)
        pipe.close()

    return _uninstall


class GreenConnections:
    """A worker's connections as green threads, and the green thread accepting them.

    Green threads are cheap, so ``size`` and ``connections`` are one limit
    here: one green thread per open connection, idle ones included.
    """

    def __init__(self, size: int, connections: int) -> None:
        self._pool = GreenPool(connections)
        self._acceptor: Any = None
        #: Set by kill_all: a connection the acceptor holds is dropped, not served.
        self._dropping = False

    def start(self, listener: socket.socket, handle: Callable[[socket.socket, Any], None],
              make_room: Callable[[], bool]) -> None:
        self._acceptor = spawn(self._accept_loop, listener, handle, make_room)

    def _accept_loop(self, listener: socket.socket,
                     handle: Callable[[socket.socket, Any], None],
                     make_room: Callable[[], bool]) -> None:
        accept_forever(listener, self._pool, handle, make_room, lambda: self._dropping)

    def stop_accepting(self) -> None:
        if self._acceptor is not None:
            kill(self._acceptor)

    def wait(self) -> None:
        """Until accepting stopped and every connection ended."""
        if self._acceptor is not None:
            try:
                self._acceptor.wait()
            except GreenletExit:
                pass
        self._pool.waitall()

    def kill_all(self) -> None:
        self._dropping = True
        self.stop_accepting()
        for g in list(self._pool.coroutines_running):
            kill(g)


def accept_forever(listener: socket.socket, pool: Any,
                   handle: Callable[[socket.socket, Any], None],
                   make_room: Callable[[], bool],
                   dropping: Callable[[], bool] = lambda: False) -> None:
    """Accept connections and run ``handle(conn, addr)`` for each in ``pool``,
    until this green thread is killed (WSGI and TCP workers both).

    When the pool is full, ``make_room`` is asked to shed a waiting
    connection (see :func:`make_room_in`), else the new one waits for a slot.
    A kill that comes while it waits does not lose it: it is this worker's
    now, its request likely in its buffer, and closing it unread would make
    the kernel reset it. It is handed to the pool (a drain serves it once a
    slot frees), unless ``dropping()`` says the worker is being stopped
    outright.
    """
    spawn_n = pool.spawn_n
    while True:
        conn, addr = accept(listener)
        try:
            if not pool.free():
                make_room_in(pool, make_room)
            spawn_n(handle, conn, addr)
        except GreenletExit:
            if dropping():
                conn.close()
            else:
                spawn_n(handle, conn, addr)
            raise
        # Let the new connection reach its app before accepting another: an
        # app that blocks the process then blocks it before this worker
        # takes more connections from the shared queue, and they go to a
        # worker that is free instead of waiting here.
        sleep(0)


def make_room_in(pool: Any, shed_one: Callable[[], bool]) -> None:
    """Before a new connection's green thread is spawned in a full pool: shed one.

    Ends the connection that has waited longest on its client. Connections
    accepted in a burst have not run yet, so none is listed as waiting: they
    get to reach their first read, then ``shed_one`` is asked again. If
    still none waits, every slot is busy, and the spawn waits for one.
    (WSGI and TCP workers both.)
    """
    if not pool.free() and not shed_one():
        sleep(0)
        shed_one()


def make_pool(size: int, connections: int) -> GreenConnections:
    """The engine interface's pool: one green thread per connection, up to ``connections``."""
    return GreenConnections(size, connections)


# ----- patching the standard library -------------------------------------------

_real_monkey_patch = eventlet.patcher.monkey_patch
#: The keyword arguments of each eventlet.monkey_patch() an app called in the
#: master, to be applied in each green worker instead.
_asked: list[dict[str, Any]] = []


def monkey_patch(**modules: bool) -> None:
    """Patch the standard library's blocking calls in this process, eventlet's way.

    socket (and with it name lookups, through eventlet's green DNS), ssl,
    select and selectors, time.sleep, os, threading and subprocess: called
    in a green worker before its app is built, so an app that blocks in
    those calls lets the worker's other green threads run. Code in C
    extensions that does its own I/O (most database drivers) still blocks
    the whole worker.
    """
    _real_monkey_patch(**modules)


def defer_app_patching() -> None:
    """Make an app's own eventlet.monkey_patch() in the master wait for the workers.

    Why: brimd's master imports every app to check it before forking, so an
    app module that calls ``eventlet.monkey_patch()`` at import time would
    patch the master itself: its threading then answers that the main thread
    is not the main thread, its select and sleep want a hub, and every
    worker forked from it inherits a half-started hub. Patching is a
    serving process's business, so the call is recorded here and made again
    in each green worker (:func:`apply_deferred_patching`); the master stays
    as it was. Idempotent.
    """
    if eventlet.monkey_patch is _deferred:
        return
    eventlet.monkey_patch = _deferred
    eventlet.patcher.monkey_patch = _deferred


def _deferred(**modules: Any) -> None:
    _asked.append(modules)


def apply_deferred_patching() -> bool:
    """Make, in this worker, the eventlet.monkey_patch() calls the apps asked for.

    Puts eventlet's own function back first, so an app that calls it again
    at run time patches this worker as it expects. True if any was asked.
    """
    eventlet.monkey_patch = _real_monkey_patch
    eventlet.patcher.monkey_patch = _real_monkey_patch
    asked = list(_asked)
    _asked.clear()
    for modules in asked:
        _real_monkey_patch(**modules)
    return bool(asked)


def patching_asked() -> bool:
    """Whether an app called eventlet.monkey_patch() while the master imported it."""
    return bool(_asked)
