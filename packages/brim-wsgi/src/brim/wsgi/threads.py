"""The threads engine: a worker serves on a pool of OS threads, nothing patched.

For apps that block (``time.sleep``, a database driver in C, ``requests``):
a request that blocks holds one OS thread, and the worker's other threads
serve on. Every wait on a socket is a ``poll`` on that socket and on the
waiting thread's own wake-up pipe, so another thread can end a connection
that waits on its client (``throw``: shedding, draining), as the green
engine does by raising into a green thread.

Who takes a thread, and when:

* The worker accepts a connection only when one of its threads is free for
  it, so a busy worker leaves new connections in the shared listen queue,
  to a worker that has a free thread. A new connection keeps its thread
  until its first request is answered (or it is shed, or idle_timeout ends
  it): that thread is what the worker accepted it for. One exception keeps
  a saturated server fair: when every thread is taken, a client waits in
  the listen queue, and a thread finishes a task with a round of work
  queued for every thread, the worker takes that one waiting client,
  queued behind the work it has; so a worker whose threads block takes
  nobody into its queue, and one that serves a steady stream of keep-alive
  requests still lets new clients in.
* An idle keep-alive connection does not keep a thread. It is *parked*: the
  worker's reactor thread watches it in a selector (gunicorn's gthread does
  the same), and hands it to a free thread when its next request arrives.
  A busy one does not keep its thread either while others wait for one:
  after each answer it goes to the back of the line, straight into the
  queue when its next request is already there, and that turn also lets
  one client waiting in the listen queue in (see below); so clients that
  always have a request ready cannot keep the others waiting.
  Parked connections still count against ``concurrent_per_worker``, are
  shed first when a new client needs room, and end after idle_timeout.
  So a thread is held only while there is something to do, and 8 threads
  serve hundreds of keep-alive clients. What this cannot do is move a
  parked connection to another process: its next request waits for a
  thread of its own worker, as with any server that keeps connections
  per process.

One lock guards the pool's counters and the task states; it is never held
while anything waits.
"""

from __future__ import annotations

import contextvars
import errno
import heapq
import logging
import os
import queue
import select
import selectors
import socket
import ssl
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from . import _sockets
from ._signalpipe import SignalPipe

__all__ = [
    "PREEMPTIVE",
    "Exit",
    "Parked",
    "Task",
    "ThreadConnections",
    "accept",
    "current",
    "install_signal_handlers",
    "kill",
    "lock",
    "make_pool",
    "recv",
    "recv_waiting",
    "sendall",
    "sendfile",
    "sleep",
    "spawn",
    "stacks",
    "throw",
    "tls_handshake",
    "wait_read",
]

#: The default of the ``threads`` option (see docs/wsgi.rst for why 8).
DEFAULT_THREADS = 8

#: Seconds a thread that just answered a keep-alive client waits for its next
#: request before parking the connection, when no other connection waits for
#: a thread. A client that sends requests back to back (most do, behind a
#: proxy or a connection pool) then costs no trip through the reactor.
LINGER = 0.002


class Exit(BaseException):
    """Raised in a task that kill() ended, at its next wait."""


#: Any OS thread can be stopped anywhere for another (see the engine interface).
PREEMPTIVE = True


class Parked(BaseException):
    """Raised out of recv_waiting(park=True) when the client has sent nothing yet,
    or when other connections wait for a thread (``ready`` if its bytes are here).

    The connection leaves its thread without closing; whoever catches it on
    the way out sets ``resume`` (what to call when the client sends more),
    and the pool parks the connection in its selector.
    """

    def __init__(self, sock: socket.socket, timeout: float | None, ready: bool = False) -> None:
        super().__init__()
        self.sock = sock
        self.timeout = timeout
        #: The client's next request is already here: back in the queue at once,
        #: no trip through the selector.
        self.ready = ready
        self.resume: Callable[[], None] | None = None


_lock = threading.Lock()
_here = threading.local()
#: The task each pool thread is running now, by thread ident (for stack dumps).
_running: dict[int, Task] = {}


class Task:
    """One line of work: a connection, or a spawned loop. What current() returns.

    A connection's task outlives its thread: parked and resumed, it runs on
    whichever pool thread is free, with its own context variables (its txn)
    throughout, as a green thread would.
    """

    __slots__ = (
        "args",
        "context",
        "deadline",
        "done",
        "fd",
        "fn",
        "parked",
        "pool",
        "resumed",
        "throwable",
        "thrown",
        "wake",
    )

    def __init__(self, fn: Callable[..., Any] | None, args: tuple[Any, ...] = ()) -> None:
        self.fn = fn
        self.args = args
        self.context = contextvars.Context()
        #: An exception another thread threw, raised at this task's next wait.
        self.thrown: type[BaseException] | BaseException | None = None
        #: True while it waits on its client where a throw may end it.
        self.throwable = False
        #: True while parked in its pool's selector.
        self.parked = False
        #: True from being handed back to a thread until its next read.
        self.resumed = False
        self.fd = -1
        self.deadline = 0.0
        #: The wake-up pipe of the thread running it now.
        self.wake = -1
        self.pool: ThreadConnections | None = None
        self.done = threading.Event()

    def wait(self) -> None:
        """Until the task has ended."""
        self.done.wait()


def _pipe() -> tuple[int, int]:
    """This thread's wake-up pipe (made on its first wait)."""
    pipe = getattr(_here, "pipe", None)
    if pipe is None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        pipe = _here.pipe = (r, w)
    return pipe


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except OSError:
        pass


def _poke(fd: int) -> None:
    try:
        os.write(fd, b"!")
    except OSError:
        pass  # full: a wake-up is already pending (or the thread is gone)


def current() -> Task:
    """The task the calling thread runs (a thread of its own if not a pool task)."""
    task = getattr(_here, "task", None)
    if task is None:
        task = _here.task = Task(None)
        task.wake = _pipe()[1]
    return task


def _raise_thrown(task: Task) -> None:
    with _lock:
        exc = task.thrown
        task.thrown = None
    if exc is not None:
        raise exc


def _wait(fd: int | None, mask: int, timeout: float | None, throwable: bool = False) -> bool:
    """Wait until fd is ready for mask (True), or timeout seconds pass (False).

    Raises what another thread threw: any time for Exit, and while
    ``throwable`` for the rest (a connection waiting on its client).
    """
    task = current()
    r = _pipe()[0]
    task.wake = _pipe()[1]
    poller = select.poll()
    if fd is not None:
        poller.register(fd, mask)
    poller.register(r, select.POLLIN)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _lock:
            if task.thrown is not None:
                exc = task.thrown
                task.thrown = None
                raise exc
            task.throwable = throwable
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            events = poller.poll(None if left is None else left * 1000)
        finally:
            if throwable:
                with _lock:
                    task.throwable = False
        woken = False
        for got, _ in events:
            if got == r:
                woken = True
            elif got == fd:
                _raise_thrown(task)  # thrown while it waited: that wins, as with green
                return True
        if woken:
            _drain(r)
            continue  # what was thrown is raised at the top
        if deadline is not None and time.monotonic() >= deadline:
            return False


def throw(thread: Any, exc: type[BaseException]) -> bool:
    """End a task that waits on its client by raising exc where it waits.

    False when it is not waiting on its client any more (its bytes came in
    the meantime): then nothing is thrown. Exit is thrown always.
    """
    task: Task = thread
    wake = -1
    requeue = None
    with _lock:
        if task.done.is_set():
            return False
        if task.parked:
            task.parked = False
            task.thrown = exc
            requeue = task.pool
        elif task.throwable or (isinstance(exc, type) and issubclass(exc, Exit)):
            task.thrown = exc
            wake = task.wake
        else:
            return False
    if requeue is not None:
        requeue.requeue(task)
    elif wake >= 0:
        _poke(wake)
    return True


def kill(thread: Any) -> None:
    """End a task at its next wait (a thread cannot be stopped anywhere else)."""
    throw(thread, Exit)


def sleep(seconds: float = 0) -> None:
    """Sleep; a kill() ends the sleep with Exit.

    0 (the yield a connection makes after each answer, for green threads
    that only switch when asked) returns at once: here each connection has
    a thread of its own, which the interpreter switches away from on its
    own, and one that has a request ready while others wait for a thread
    already goes to the back of the line (see :class:`Parked`). Giving up
    the GIL there (``time.sleep(0)``) cost a thread handover per request,
    about a third of a threads worker's CPU per request under load.
    """
    if seconds <= 0:
        return
    _wait(None, 0, seconds)


def spawn(fn: Callable[..., Any], *args: Any) -> Task:
    """Run fn(*args) on a new daemon thread; the returned task can wait() or be killed."""
    task = Task(fn, args)
    threading.Thread(target=_run_spawned, args=(task,), daemon=True,
                     name=getattr(fn, "__name__", "brim")).start()
    return task


def _run_spawned(task: Task) -> None:
    _here.task = task
    task.wake = _pipe()[1]
    try:
        assert task.fn is not None
        task.context.run(task.fn, *task.args)
    except Exit:
        pass
    finally:
        task.done.set()
        r, w = _here.pipe
        with _lock:
            task.wake = -1
        os.close(r)
        os.close(w)


def lock() -> Any:
    """A lock for what a worker's connections share (counters, the request log)."""
    return threading.Lock()


# ----- socket I/O ---------------------------------------------------------------

_WOULD_BLOCK_READ = (BlockingIOError, ssl.SSLWantReadError)


def _timed_out(ready: bool) -> None:
    if not ready:
        raise TimeoutError("timed out")


def recv(sock: socket.socket, size: int, timeout: float | None) -> bytes:
    """Receive up to size bytes from a non-blocking socket (b'' at its end).

    TimeoutError when nothing came within timeout seconds.
    """
    while True:
        try:
            return sock.recv(size)
        except _WOULD_BLOCK_READ:
            _timed_out(_wait(sock.fileno(), select.POLLIN, timeout))
        except ssl.SSLWantWriteError:
            _timed_out(_wait(sock.fileno(), select.POLLOUT, timeout))


def wait_read(fd: int, timeout: float | None = None) -> None:
    """Wait until fd is readable, as a connection waiting on its client.

    A throw (shedding) ends the wait, as in recv_waiting(); TimeoutError
    when nothing came within timeout seconds.
    """
    _timed_out(_wait(fd, select.POLLIN, timeout, throwable=True))


def recv_waiting(sock: socket.socket, size: int, timeout: float | None,
                 park: bool = False) -> bytes:
    """recv() for a connection listed as waiting on its client: a throw ends it.

    With ``park``, a client that has sent nothing yet raises Parked instead
    of holding the thread; the connection is resumed when bytes arrive, and
    a throw or the timeout meanwhile is raised here on resumption.
    """
    task = current()
    if task.thrown is not None:
        _raise_thrown(task)
    resumed, task.resumed = task.resumed, False
    if park and not resumed and task.pool is not None and not task.pool.idle_wanted() and not (
            isinstance(sock, ssl.SSLSocket) and sock.pending()):
        # Other connections wait for a thread: this one goes to the back of
        # the line even when its next request is already here (the selector
        # hands it over again at once). Else a client that always has its
        # next request ready (wrk, a proxy's pool) keeps its thread for good
        # while the rest wait: 32 connections queued behind 4 such threads
        # waited up to 1.6 s. Decrypted bytes an SSL socket holds are no
        # event for the selector, so such a socket reads them first; and a
        # connection just handed back reads the request it came back for.
        raise Parked(sock, timeout, ready=_readable(sock.fileno()))
    while True:
        try:
            return sock.recv(size)
        except _WOULD_BLOCK_READ:
            if park:
                pool = task.pool
                if (pool is None or not pool.idle_wanted()
                        or not _wait(sock.fileno(), select.POLLIN, LINGER, throwable=True)):
                    raise Parked(sock, timeout) from None
                park = False  # its next request came while it lingered
                continue
            _timed_out(_wait(sock.fileno(), select.POLLIN, timeout, throwable=True))
        except ssl.SSLWantWriteError:
            _timed_out(_wait(sock.fileno(), select.POLLOUT, timeout, throwable=True))


def _readable(fd: int) -> bool:
    """Whether fd has bytes (or an end) to read now, without waiting."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _wait_ready(fd: int, writing: bool, timeout: float | None) -> None:
    _timed_out(_wait(fd, select.POLLOUT if writing else select.POLLIN, timeout))


#: Send all of data, waiting while the kernel's buffer is full (TimeoutError).
sendall = _sockets.sender(_wait_ready)


def sendfile(sock: socket.socket, fd: int, offset: int, count: int,
             timeout: float | None) -> int:
    """Send count bytes of file fd from offset with os.sendfile; the bytes sent."""
    return _sockets.sendfile(sock, fd, offset, count, timeout, _wait_ready)


def tls_handshake(sock: ssl.SSLSocket, timeout: float | None) -> None:
    """A server-side TLS handshake; the connection counts as waiting for its first byte,
    so a throw (shedding, draining) ends it."""
    _sockets.tls_handshake(sock, timeout, _wait_client)


def _wait_client(fd: int, writing: bool, timeout: float | None) -> None:
    _timed_out(_wait(fd, select.POLLOUT if writing else select.POLLIN, timeout,
                     throwable=True))


def accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """Accept one connection from a non-blocking listener, waiting for one."""
    return _sockets.accept(sock, _wait_ready, sleep)


# ----- the pool -----------------------------------------------------------------

_LISTENER = object()


class ThreadConnections:
    """A worker's connections on ``size`` OS threads, up to ``connections`` open at once.

    A reactor thread accepts (only while a thread is free), watches parked
    keep-alive connections, and ends those idle past their timeout.
    """

    def __init__(self, size: int, connections: int) -> None:
        self.size = size
        self.connections = connections
        #: Tasks queued for a thread or running on one.
        self.busy = 0
        #: Connections open: running, queued or parked (not those held).
        self.live = 0
        self.accepting = False
        #: A client waits in the listen queue while every thread is taken.
        self._pending = False
        #: Connections the worker may take from the listen queue while every
        #: thread is taken (0 or 1): granted when a task finishes with a
        #: round of work queued for every thread (see _accept).
        self._credits = 0
        self._killed = False
        self._tasks: set[Task] = set()
        #: Connections accepted while the worker was full, waiting for a slot.
        self._held: deque[Task] = deque()
        self._parks: list[Task] = []
        self._requeued: list[Task] = []
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._ended = threading.Event()
        self._log = logging.getLogger("brim")

    # ----- the engine interface ---------------------------------------------

    def start(self, listener: socket.socket, handle: Callable[[socket.socket, Any], None],
              make_room: Callable[[], bool]) -> None:
        listener.setblocking(False)
        self.accepting = True
        for n in range(self.size):
            threading.Thread(target=self._work, name=f"brim-http-{n}", daemon=True).start()
        threading.Thread(target=self._react, args=(listener, handle, make_room),
                         name="brim-http-reactor", daemon=True).start()

    def stop_accepting(self) -> None:
        """Accept no more. Connections held for a slot stay: each was accepted, its
        request likely in its buffer, and closing it unread would make the
        kernel reset it; the reactor starts it when a slot frees, as before."""
        with _lock:
            self.accepting = False
            self._check_ended()
        _poke(self._wake_w)

    def wait(self) -> None:
        """Until accepting stopped and every connection ended (or kill_all)."""
        while not self._ended.wait(0.5):
            pass

    def kill_all(self) -> None:
        self._killed = True
        with _lock:
            held = list(self._held)
            self._held.clear()
            # (they are in _tasks too, and are never started now)
            self._tasks.difference_update(held)
        for task in held:
            try:
                task.args[0].close()
            except OSError:
                pass
        self.stop_accepting()
        with _lock:
            tasks = list(self._tasks)
        for task in tasks:
            throw(task, Exit)
        self._ended.set()

    def idle_wanted(self) -> bool:
        """Whether a thread may linger on its connection: no other connection, parked
        or still in the listen queue, waits for a thread."""
        return not self._pending and self._queue.empty()

    def requeue(self, task: Task) -> None:
        """Hand a parked task that was thrown an exception back to a thread."""
        with _lock:
            self._requeued.append(task)
        _poke(self._wake_w)

    # ----- threads ------------------------------------------------------------

    def _check_ended(self) -> None:
        if not self.accepting and not self.live and not self._held:
            self._ended.set()

    def _submit(self, task: Task) -> None:
        """Queue a task for a thread (the caller holds _lock)."""
        self.busy += 1
        self._queue.put(task)

    def _work(self) -> None:
        """One pool thread: run tasks until the process ends."""
        r, w = _pipe()
        me = threading.get_ident()
        while True:
            task = self._queue.get()
            if task is None:
                return
            task.wake = w
            _here.task = task
            _running[me] = task
            parked: Parked | None = None
            try:
                assert task.fn is not None
                task.context.run(task.fn, *task.args)
            except Parked as p:
                parked = p
            except Exit:
                pass
            except BaseException:
                self._log.exception("connection task failed")
            finally:
                _running.pop(me, None)
                _here.task = None
                _drain(r)
            poke = False
            with _lock:
                task.wake = -1
                self.busy -= 1
                if parked is not None and parked.resume is not None and not self._killed:
                    task.fn = parked.resume
                    task.resumed = True
                    task.args = ()
                    if parked.ready:  # to the back of the line, its request in hand
                        self._submit(task)
                    else:
                        task.fd = parked.sock.fileno()
                        task.deadline = time.monotonic() + (parked.timeout or 0.0)
                        task.parked = True
                        self._parks.append(task)
                        poke = True
                else:
                    if parked is not None:  # nobody set resume: end it here
                        try:
                            parked.sock.close()
                        except OSError:
                            pass
                    self.live -= 1
                    self._tasks.discard(task)
                    task.done.set()
                    poke = bool(self._held) or self.busy == self.size - 1 or not self.accepting
                if self._pending and not self._credits and (
                        self._queue.qsize() >= self.size
                        or (parked is not None and parked.ready)):
                    # Saturated, not blocked: this thread goes straight on to
                    # a queue of at least a round of work for every thread,
                    # or its connection just went to the back of the line
                    # with its next request (a request answered, work
                    # waiting), so one waiting client may queue up too. (A
                    # queue that holds only connections just handed over is
                    # no sign.) Without the second, clients that always have
                    # a request ready kept a new one out for seconds.
                    self._credits = 1
                    poke = True
                if not self.accepting:
                    self._check_ended()
            if poke:
                _poke(self._wake_w)

    def _react(self, listener: socket.socket, handle: Callable[[socket.socket, Any], None],
               make_room: Callable[[], bool]) -> None:
        """Accept while a thread is free; watch parked connections; end idle ones."""
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        listening = False
        deadlines: list[tuple[float, int, Task]] = []
        watched: dict[int, Task] = {}

        def unwatch(task: Task) -> None:
            if watched.get(task.fd) is task:
                del watched[task.fd]
                try:
                    sel.unregister(task.fd)
                except (KeyError, ValueError, OSError):
                    pass

        while True:
            with _lock:
                parks, self._parks = self._parks, []
                requeued, self._requeued = self._requeued, []
                for task in requeued:
                    unwatch(task)
                    self._submit(task)
                for task in parks:
                    if not task.parked:
                        continue  # thrown meanwhile: requeued above
                    watched[task.fd] = task
                    sel.register(task.fd, selectors.EVENT_READ, task)
                    heapq.heappush(deadlines, (task.deadline, id(task), task))
                if len(deadlines) > 2 * len(watched) + 64:
                    # Entries of tasks resumed since are skipped when they come
                    # due, idle_timeout later; under load that would be one per
                    # request served in the meantime. Keep the parked ones only.
                    deadlines = [(t.deadline, id(t), t) for t in watched.values()]
                    heapq.heapify(deadlines)
                while (self._held and self.live < self.connections
                       and self.busy < self.size):
                    self.live += 1
                    self._submit(self._held.popleft())
                # Full, the listener is still watched until a client is seen
                # waiting in it; from then threads stop lingering (see
                # idle_wanted), and the worker accepts when one is free.
                want = self.accepting and not self._held and (
                    self.busy < self.size or not self._pending or self._credits > 0)
            if want != listening:
                try:
                    if want:
                        sel.register(listener, selectors.EVENT_READ, _LISTENER)
                    else:
                        sel.unregister(listener)
                except (KeyError, ValueError, OSError):
                    want = False
                listening = want
            timeout = max(0.0, deadlines[0][0] - time.monotonic()) if deadlines else None
            for key, _ in sel.select(timeout):
                data = key.data
                if data is None:
                    _drain(self._wake_r)
                elif data is _LISTENER:
                    with _lock:
                        full = self.busy >= self.size and not self._credits
                        if full:
                            self._pending = True
                    if not full:
                        self._accept(listener, handle, make_room)
                else:
                    with _lock:
                        if not data.parked:
                            continue
                        data.parked = False
                        unwatch(data)
                        self._submit(data)
            now = time.monotonic()
            while deadlines and deadlines[0][0] <= now:
                deadline, _, task = heapq.heappop(deadlines)
                with _lock:
                    if not task.parked or task.deadline != deadline:
                        continue
                    task.parked = False
                    task.thrown = TimeoutError
                    unwatch(task)
                    self._submit(task)

    def _accept(self, listener: socket.socket, handle: Callable[[socket.socket, Any], None],
                make_room: Callable[[], bool]) -> None:
        while True:
            with _lock:
                if not self.accepting or self._held:
                    return
                if self.busy >= self.size:
                    # Every thread is taken, yet the worker is getting work
                    # done (a task finished and its thread went on to queued
                    # work): take one waiting client, behind the work queued,
                    # so a steady stream of keep-alive requests cannot keep
                    # new clients out for good. A worker whose threads block
                    # finishes nothing (or frees its threads), and takes
                    # nobody into its queue.
                    if not self._credits:
                        return
                    self._credits -= 1
            try:
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                with _lock:
                    self._pending = False
                    self._credits = 0
                return
            except OSError as err:
                if err.errno in (errno.EMFILE, errno.ENFILE):
                    time.sleep(0.01)
                if err.errno not in _sockets.TRANSIENT_ACCEPT:
                    with _lock:
                        self.accepting = False
                return
            conn.setblocking(False)
            task = Task(handle, (conn, addr))
            task.pool = self
            with _lock:
                self._tasks.add(task)
                full = self.live >= self.connections
                if not full:
                    self.live += 1
                    self._submit(task)
                    continue
                self._held.append(task)  # started once a connection ends
            make_room()  # shed the connection that waited longest on its client
            return


def make_pool(size: int, connections: int) -> ThreadConnections:
    """The engine interface's pool: ``size`` OS threads, ``connections`` open at most."""
    return ThreadConnections(size, connections)


# ----- signals and stack dumps ----------------------------------------------------

def install_signal_handlers(handlers: dict[int, Callable[[int], None]]) -> Callable[[], None]:
    """Install signal handlers that run on a thread of their own.

    The real handler only writes the signal number to a pipe (it runs on
    the main thread between any two bytecodes); a dispatcher thread reads
    the pipe and calls handler(signum), where it may take locks and close
    sockets. Returns a function that uninstalls them.
    """
    pipe = SignalPipe(handlers)

    def _dispatch() -> None:
        while True:
            try:
                data = os.read(pipe.rfd, 64)
            except OSError:
                return
            if not data:
                return
            pipe.dispatch(data)

    threading.Thread(target=_dispatch, name="brim-signals", daemon=True).start()

    def _uninstall() -> None:
        pipe.restore()
        pipe.close(read_end=False)  # the dispatcher reads end-of-file and returns

    return _uninstall


def stacks(note: Callable[[Any], str | None] | None = None, limit: int = 40) -> list[str]:
    """The stack of each pool thread serving a connection now, with its note (the txn).

    ``note(context)`` gets the connection's context variables. Runs in a
    signal handler: it takes no lock.
    """
    frames = sys._current_frames()
    names = {t.ident: t.name for t in list(getattr(threading, "_active", {}).values())}
    lines = []
    for ident, task in list(_running.items()):
        frame = frames.get(ident)
        if frame is None:
            continue
        words = None
        if note is not None:
            try:
                words = note(task.context)
            except Exception:
                words = None
        lines.append(f"thread {names.get(ident, '?')} ({ident})"
                     f"{' ' + words if words else ''}:")
        stack = traceback.extract_stack(frame, limit)
        lines.extend(line for entry in traceback.format_list(stack)
                     for line in entry.rstrip("\n").split("\n"))
    return lines
