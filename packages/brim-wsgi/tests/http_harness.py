"""Shared by the test_http* files: run a real HTTPServer in a forked child.

The parent binds 127.0.0.1:0 and builds the shared-memory StatsStore before
forking, as brimd's master does, so a test can read the worker's counters
directly. The child logs to a file; the parent kills it by pid.
(Imported by the test files; conftest.py puts this folder on sys.path.)

The worker model the server runs on (green or threads) is the one
:func:`use_model` last chose: conftest.py's ``worker_model`` fixture runs
every test of a module that uses it once per model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from brim.stats import StatsStore
from brim.wsgi.stats import server_stats

WAIT = 10.0

#: Every worker model, as the worker_model option names them.
MODELS = ("green", "threads")
_model = "green"


def use_model(model: str) -> None:
    """Serve the next start()ed servers on this worker model."""
    global _model
    _model = model


def model() -> str:
    """The worker model servers start on now (in the child: the one it runs)."""
    return _model


def app_sleep(seconds: float) -> None:
    """Sleep in an app without blocking other requests, on either model."""
    if _model == "green":
        from brim.wsgi import green

        green.sleep(seconds)
    else:
        time.sleep(seconds)


@dataclass
class Running:
    pid: int
    port: int
    store: StatsStore
    log_path: str
    exit_status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def stat(self, name: str) -> int:
        return self.store.bucket("wsgi", 0).get(name)

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def mark(self) -> int:
        """The log's length once every counted request's line is in it.

        Request lines are flushed every 100 ms, so a line of the previous
        request may still be coming. Once the log holds a request line for
        each request the worker counted, nothing more is due: return at once
        (most calls, well under 100 ms). Otherwise (a test whose requests are
        not all logged as from 127.0.0.1) wait until the log stopped growing
        for 0.25 s, as before.
        """
        text = self.log()
        size = len(text)
        deadline = time.monotonic() + WAIT
        next_look = time.monotonic() + 0.25
        while time.monotonic() < deadline:
            if text.count(" NOTICE 127.0.0.1 ") >= self.stat("request_count"):
                return len(text)
            time.sleep(0.01)
            text = self.log()
            if time.monotonic() >= next_look:
                if len(text) == size:
                    break
                size, next_look = len(text), time.monotonic() + 0.25
        return size

    def wait_log(self, needle: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            if needle in text:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} never appeared in the log:\n{text}")
            time.sleep(0.02)

    def wait_stat(self, name: str, value: int, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.stat(name) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} is {self.stat(name)}, not {value}")
            time.sleep(0.01)

    def wait_exit(self, timeout: float = WAIT) -> int:
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_status = os.waitstatus_to_exitcode(status)
                return self.exit_status
            if time.monotonic() > deadline:
                raise AssertionError("server process did not exit")
            time.sleep(0.01)

    def kill(self) -> None:
        if self.exit_status is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.exit_status = -9

    def connect(self, timeout: float = WAIT) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)


def start(app: Any, tmp_path: Any, *, app_stats: tuple = (), log_headers: bool = False,
          server_obj: Any = None, **settings: Any) -> Running:
    """Fork a worker serving app; returns once it accepts connections."""
    from brim.wsgi.http import HTTPSettings

    settings.setdefault("worker_model", _model)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    codes = settings.get("count_status_codes", (404, 408, 499, 501))
    store = StatsStore({"wsgi": (1, [*server_stats(codes), *app_stats])})
    log_path = str(tmp_path / f"server-{port}.log")
    open(log_path, "w").close()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            code = _child(listener, app, HTTPSettings(log_headers=log_headers, **settings),
                          store, log_path, server_obj)
        finally:
            os._exit(code)
    listener.close()
    running = Running(pid, port, store, log_path)
    deadline = time.monotonic() + WAIT
    while True:  # ready when the worker has marked its bucket started
        if store.bucket("wsgi", 0).get("start_time"):
            break
        if time.monotonic() > deadline:
            running.kill()
            raise AssertionError("server did not start")
        time.sleep(0.01)
    return running


def _child(listener: socket.socket, app: Any, settings: Any, store: StatsStore,
           log_path: str, server_obj: Any) -> int:  # pragma: no cover - runs in the child
    from brim.log.configure import setup_logging
    from brim.wsgi.http import HTTPServer

    sys.stderr = open(log_path, "a", buffering=1)  # noqa: SIM115
    logger = setup_logging("brim", "DEBUG", stderr=True, syslog=False)
    bucket = store.bucket("wsgi", 0)
    server = HTTPServer(listener, app, settings, stats=bucket, logger=logger, server=server_obj)
    server.engine.install_signal_handlers({signal.SIGUSR1: lambda s: server.drain(),
                                   signal.SIGUSR2: lambda s: server.stop()})
    bucket.mark_started()
    server.serve_forever()
    logger.info("serve_forever returned")
    return 0


def recv_all(sock: socket.socket, timeout: float = WAIT) -> bytes:
    """Read until the server closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


class Reader:
    """Reads responses one at a time off a socket, keeping what follows (pipelining)."""

    def __init__(self, sock: socket.socket, timeout: float = WAIT) -> None:
        self.sock = sock
        self.buf = b""
        sock.settimeout(timeout)

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line = self._line()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = self._line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or status in (204, 304) or status < 200:
            return status, headers, b""
        if "content-length" in headers:
            return status, headers, self._exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, headers, body
                body += self._exactly(size)
                assert self._exactly(2) == b"\r\n"
        while True:
            try:
                self._more()
            except EOFError:
                body, self.buf = self.buf, b""
                return status, headers, body
