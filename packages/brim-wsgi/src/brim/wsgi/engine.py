"""The engine a worker serves on: what the HTTP core asks of green threads or OS threads.

The HTTP core (connection, exchange, body, state, http) never imports
eventlet or threading. It is handed one engine per worker, chosen by the
``worker_model`` option, and asks it to spawn, sleep, wait on a socket,
time out, accept, end a waiting connection (``throw``) and list what runs.
Two engines plug in here, each one module:

* :mod:`brim.wsgi.green` (``green``): eventlet green threads, one per
  connection. An app that blocks the process blocks its worker, unless the
  worker patches the standard library (``monkey_patch``).
* :mod:`brim.wsgi.threads` (``threads``): a pool of OS threads per worker,
  nothing patched. Idle keep-alive connections wait in a selector, not on a
  thread.

A module is its own engine: :func:`load` returns the module, typed as
:class:`Engine`, so a call on the request path costs what a call to a module
function did before there was a choice.
"""

from __future__ import annotations

import importlib
import socket
import ssl
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["MODELS", "Engine", "Pool", "load"]

#: The worker models, as the ``worker_model`` option names them.
MODELS = ("green", "threads")


class Pool(Protocol):
    """The connections of one worker, and the loop that accepts them.

    ``size`` is how many connections may run at once (green threads, or OS
    threads); ``connections`` how many may be open at once, idle ones
    included. A new connection beyond ``connections`` first asks
    ``make_room()`` to shed one that waits on its client.
    """

    def start(self, listener: socket.socket, handle: Callable[[socket.socket, Any], None],
              make_room: Callable[[], bool]) -> None: ...

    def stop_accepting(self) -> None: ...

    def wait(self) -> None: ...

    def kill_all(self) -> None: ...


class Engine(Protocol):
    """What every engine module provides (see :mod:`brim.wsgi.green` for each one's why)."""

    #: Raised inside a connection that kill()/stop ends; never an app's failure.
    Exit: type[BaseException]
    #: Raised out of recv_waiting(park=True) by an engine that parks idle
    #: connections off their thread; the connection leaves and is resumed later.
    Parked: type[BaseException]
    #: Whether one connection's thread can be stopped anywhere for another's
    #: (OS threads): state they share then needs lock(). Green threads switch
    #: only where they wait, so a run of code without a wait needs none.
    PREEMPTIVE: bool

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Any: ...

    def kill(self, thread: Any) -> None: ...

    def sleep(self, seconds: float = 0) -> None: ...

    def current(self) -> Any: ...

    def throw(self, thread: Any, exc: type[BaseException]) -> bool: ...

    def recv(self, sock: socket.socket, size: int, timeout: float | None) -> bytes: ...

    def wait_read(self, fd: int, timeout: float | None = None) -> None: ...

    def recv_waiting(self, sock: socket.socket, size: int, timeout: float | None,
                     park: bool = False) -> bytes: ...

    def sendall(self, sock: socket.socket, data: bytes | memoryview,
                timeout: float | None) -> None: ...

    def sendfile(self, sock: socket.socket, fd: int, offset: int, count: int,
                 timeout: float | None) -> int: ...

    def tls_handshake(self, sock: ssl.SSLSocket, timeout: float | None) -> None: ...

    def make_pool(self, size: int, connections: int) -> Pool: ...

    def lock(self) -> Any: ...

    def install_signal_handlers(
            self, handlers: dict[int, Callable[[int], None]]) -> Callable[[], None]: ...

    def stacks(self, note: Callable[[Any], str | None] | None = None,
               limit: int = 40) -> list[str]: ...


def load(model: str) -> Engine:
    """The engine module for a worker model (``green`` or ``threads``).

    Imported only when asked for, so a threads worker never imports eventlet
    just to serve.
    """
    if model not in MODELS:
        raise ValueError(f"unknown worker_model {model!r}; choose from {', '.join(MODELS)}")
    module: Any = importlib.import_module(f"brim.wsgi.{model}")
    return module
