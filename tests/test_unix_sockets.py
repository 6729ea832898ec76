"""WSGI and TCP over Unix domain sockets (``ip = unix:/path``), issue 20.

Real brimd processes serve a socket file in the test's directory; clients
are the real curl (``--unix-socket``) and raw AF_UNIX sockets. A client
loop runs through ``brimd restart`` (sockets handed to a new master) and
``brimd reload`` (the master re-executes itself keeping them): not one
request may fail.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading

import pytest
from brimd_harness import curl, wait_for


def _conf(brimd, path, **extra: object) -> None:
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    brimd.use(brimd.local() + f"""
[wsgi]
ip = unix:{path}
workers = 2
apps = echo
{lines}
[echo]
call = brim.wsgi_echo.WSGIEcho
""")


def _post(path, body: str) -> bytes:
    done = curl("-s", "--max-time", "10", "--unix-socket", str(path), "http://brim/echo",
                "--data-binary", body)
    return done.stdout


class _ClientLoop:
    """Requests one after another over the Unix socket until stopped; counts failures."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = f"req {n}".encode()
            request = (b"POST /echo HTTP/1.1\r\nHost: brim\r\nConnection: close\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body)) + body
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(10)
                    sock.connect(self.path)
                    sock.sendall(request)
                    data = b""
                    while chunk := sock.recv(65536):
                        data += chunk
            except OSError as err:
                self.failed.append(f"{n}: {err!r}")
                continue
            if data.startswith(b"HTTP/1.1 200") and data.endswith(body):
                self.ok += 1
            else:
                self.failed.append(f"{n}: {data[:80]!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.mark.slow
def test_serves_over_a_unix_socket_through_restart_and_reload(brimd, tmp_path):
    path = tmp_path / "app.sock"
    _conf(brimd, path, socket_mode="0660")
    first = brimd.start()
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert _post(path, "hello") == b"hello"
    assert f"unix:{path}" in brimd.run("status").stdout
    loop = _ClientLoop(path)
    try:
        wait_for(lambda: loop.ok >= 5, what="the client loop to get going")
        done = brimd.run("restart")
        assert done.returncode == 0, done.stderr
        second = brimd.master_pid()
        assert second != first
        count = loop.ok
        wait_for(lambda: loop.ok >= count + 5, what="requests after the restart")
        done = brimd.run("reload")
        assert done.returncode == 0, done.stderr
        assert brimd.master_pid() == second
        count = loop.ok
        wait_for(lambda: loop.ok >= count + 5, what="requests after the reload")
    finally:
        loop.stop()
    assert loop.failed == [], loop.failed[:5]
    assert _post(path, "after") == b"after"


@pytest.mark.slow
def test_stale_socket_file_is_replaced_a_live_one_or_a_file_is_refused(brimd, tmp_path):
    path = tmp_path / "app.sock"
    # A socket file nobody listens on (its process died): removed, then bound.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    _conf(brimd, path)
    brimd.start()
    assert _post(path, "fresh") == b"fresh"
    # A second brimd on the same path: refused, and the first one still serves.
    other = tmp_path / "other.pid"
    args = brimd.args("start")
    args[args.index(str(brimd.pid_file))] = str(other)
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=brimd.env,
                          cwd=brimd.root)
    assert done.returncode != 0
    assert "address already in use (a process listens on it)" in done.stderr
    assert _post(path, "still") == b"still"
    assert brimd.run("stop").returncode == 0
    # A plain file at the path is never deleted.
    path.unlink()
    path.write_text("not a socket")
    done = brimd.run("start")
    assert done.returncode != 0
    assert "the path exists and is not a socket" in done.stderr
    assert path.read_text() == "not a socket"


@pytest.mark.slow
def test_tcp_subserver_over_a_unix_socket(brimd, tmp_path):
    path = tmp_path / "tcp.sock"
    brimd.use(brimd.local() + f"""
[tcp#echo]
call = brim.tcp_echo.TCPEcho
ip = unix:{path}
""")
    brimd.start()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"ping\n")
        assert sock.recv(100) == b"ping\n"


@pytest.mark.slow
def test_udp_over_a_unix_socket_is_a_clear_conf_error(brimd, tmp_path):
    brimd.use(brimd.local() + f"""
[udp#echo]
call = brim.udp_echo.UDPEcho
ip = unix:{tmp_path}/udp.sock
""")
    done = brimd.run("start")
    assert done.returncode != 0
    assert "a Unix socket is for WSGI and TCP subconfigs" in done.stderr


WHO = """
import json

def app(env, start_response):
    out = json.dumps({k: env.get(k) for k in ("REMOTE_ADDR", "wsgi.url_scheme")}).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]
"""


def test_unix_socket_peers_are_trusted_proxies_by_default(brimd, tmp_path, syslog):
    """The default trusted_proxies (127.0.0.1 ::1 unix) believes a proxy on a Unix
    socket; a listener whose list lacks ``unix`` does not, headers or preamble."""
    trusting, untrusting = tmp_path / "trusting.sock", tmp_path / "untrusting.sock"
    brimd.write("who.py", WHO)
    brimd.use(brimd.local(),
              f"[wsgi#trusting]\nip = unix:{trusting}\napps = who\nproxy_protocol = yes\n",
              f"[wsgi#untrusting]\nip = unix:{untrusting}\napps = who\nproxy_protocol = yes\n"
              "trusted_proxies = 127.0.0.1 ::1\n",
              "[who]\ncall = who:app\n")
    brimd.start()
    headers = ["-H", "X-Forwarded-For: 198.51.100.7", "-H", "X-Forwarded-Proto: https"]

    def who(path, *args: str) -> dict:
        done = curl("-s", "--fail", "--unix-socket", str(path), *args, "http://brim/who")
        assert done.returncode == 0, done
        return json.loads(done.stdout)

    assert who(trusting, *headers) == {"REMOTE_ADDR": "198.51.100.7",
                                       "wsgi.url_scheme": "https"}
    syslog.wait_line("198.51.100.7 GET /who 200")
    # A PROXY v1 preamble over the socket, as HAProxy sends to a unix@ server.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(trusting))
        sock.sendall(b"PROXY TCP4 192.0.2.9 192.0.2.1 40000 80\r\n"
                     b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and b'"REMOTE_ADDR": "192.0.2.9"' in data
    assert who(untrusting, *headers) == {"REMOTE_ADDR": "", "wsgi.url_scheme": "http"}
    refused = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "--haproxy-protocol",
                   "--unix-socket", str(untrusting), "http://brim/who")
    assert refused.stdout == b"400"
