"""Apps that misbehave the way a client can make them, for the issue 19 tests
(test_socket_apps_hardening, test_log_forging).

The tests copy this file into the brimd's own directory, which is on the
workers' PYTHONPATH, and name the classes in the conf (``call =
hostile_apps.LineExit``). Nothing here is imported by the test process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: What a client line or datagram makes the socket apps raise.
RAISES: dict[bytes, type[BaseException]] = {
    b"exit": SystemExit, b"interrupt": KeyboardInterrupt, b"error": ValueError,
}


def _answer(line: bytes) -> bytes:
    """``pid <worker pid> <line>``: which worker answered, and what it was sent."""
    word = line.strip()
    exc = RAISES.get(word)
    if exc is not None:
        raise exc(f"the client said {word!r}")
    if word == b"nap":  # hold the connection's slot a while, busy (not waiting on it)
        import eventlet
        eventlet.sleep(1.5)
    return b"pid %d %s\n" % (os.getpid(), word)


class LineExit:
    """A TCP app answering each line with ``_answer``; no timeout of its own, so an idle
    client holds its slot until brimd sheds it."""

    def __init__(self, name: str, conf: Any) -> None:
        self.name = name

    def __call__(self, sock: Any, address: Any, env: dict[str, Any]) -> None:
        reader = sock.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            if line.strip() == b"nap":  # say so first: the nap has begun
                sock.sendall(b"napping\n")
            sock.sendall(_answer(line))


class DatagramExit:
    """A UDP app answering each datagram with ``_answer``."""

    def __init__(self, name: str, conf: Any) -> None:
        self.name = name

    def __call__(self, sock: Any, datagram: bytes, address: Any, env: dict[str, Any]) -> None:
        sock.sendto(_answer(datagram), address)


class RaisePath:
    """A WSGI app that logs PATH_INFO and raises an exception holding it: what a
    client puts in the path reaches a message and a traceback. The path is
    decoded as UTF-8 first, as frameworks do, so %e2%80%a8 is U+2028.
    ``/env/NAME`` answers the worker's value of that environment variable."""

    def __init__(self, name: str, conf: Any, next_app: Callable) -> None:
        self.next_app = next_app

    def __call__(self, env: dict, start_response: Callable) -> Any:
        path = env["PATH_INFO"].encode("latin-1").decode("utf-8", "replace")
        if path.startswith("/raise"):
            env["brim.logger"].warning("about to fail on %s", path)
            raise ValueError(f"no such thing: {path}")
        if path.startswith("/env/"):  # what a variable is in this worker
            body = os.environ.get(path[5:], "-").encode()
        else:
            body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
