"""Extension methods reach the app; CONNECT and tokens that are no method stay 501.

Each case is raw bytes on a socket to a real brimd with one worker, and checks
the answer, that the same worker process answers afterwards, and that the
next normal request is served.
"""

from __future__ import annotations

import socket

import pytest
from brimd_harness import free_port

METHODS_APP = '''
import os


class Methods:
    """Answers every request with its method and this worker's pid."""

    def __init__(self, name, conf, next_app):
        pass

    def __call__(self, env, start_response):
        body = f"{env['REQUEST_METHOD']} {os.getpid()}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
'''


def _exchange(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _request(method: bytes, target: bytes = b"/") -> bytes:
    return method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from brimd_harness import Brimd, SyslogListener

    syslog = SyslogListener()
    brimd = Brimd(tmp_path_factory.mktemp("methods"), syslog)
    try:
        brimd.write("methods_app.py", METHODS_APP)
        port = free_port()
        brimd.use("[wsgi]\napps = methods\n\n[methods]\ncall = methods_app.Methods\n",
                  brimd.local(port=port, workers=1))
        brimd.start()
        data = _exchange(port, _request(b"GET"))
        pid = int(data.rpartition(b" ")[2])
        yield port, pid
    finally:
        brimd.kill_all()
        syslog.close()


def _same_worker_serves(port: int, pid: int) -> None:
    data = _exchange(port, _request(b"GET"))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(f"GET {pid}".encode()), "another worker answered: the old one died"


@pytest.mark.parametrize("method", [b"MKACTIVITY", b"BIND", b"LINK", b"PURGE-ALL", b"M-SEARCH",
                                    b"VERSION-CONTROL", b"X_PRIVATE2", b"PROPFIND"])
def test_extension_method_reaches_the_app(served, method):
    port, pid = served
    data = _exchange(port, _request(method))
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200]
    assert data.endswith(method + f" {pid}".encode())
    _same_worker_serves(port, pid)


@pytest.mark.parametrize(("method", "target"), [
    (b"CONNECT", b"example.com:443"),
    (b"CONNECT", b"/"),
    (b"get", b"/"),
    (b"Link", b"/"),
    (b"FR!B", b"/"),
    (b"1GET", b"/"),
])
def test_connect_and_non_methods_are_501_without_the_app(served, method, target):
    port, pid = served
    data = _exchange(port, _request(method, target))
    assert data.startswith(b"HTTP/1.1 501 Not Implemented\r\n"), data[:200]
    assert str(pid).encode() not in data  # the app never ran
    _same_worker_serves(port, pid)
