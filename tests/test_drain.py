"""Stopping without resets, and the readiness app (issue 20, "drain without resets").

A real brimd with one worker kept busy by a request whose app blocks the
worker's whole process (a plain ``time.sleep``), so nothing else is
accepted: 200 connections, each with its request sent, wait in the listen
backlog when the master gets TERM. Every one must get a complete response
(200, served before the worker let go) or a complete 503, and none a reset
or an empty reply: before this, the kernel reset them when the master
closed the last copy of the listening socket.

With ``drain_delay``, brim.server.health.Health answers 503 on its
readiness path from TERM on, while the other apps are still served, and
the master stops only after the delay.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from brimd_harness import BRIMD, accept_queue, alive, free_port, wait_for

SLOW_APP = '''
import time


class Slow:
    """Blocks the whole worker (no green sleep) for the seconds the query names."""

    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, env, start_response):
        if env["PATH_INFO"] != "/slow":
            return self.next_app(env, start_response)
        time.sleep(float(env["QUERY_STRING"] or 1))
        start_response("200 OK", [("Content-Length", "5")])
        return [b"slow\\n"]
'''


def _conf(brimd, port: int, **brim: object) -> None:
    brimd.write("slow_app.py", SLOW_APP)
    brimd.use(brimd.local(**brim) + f"""
[wsgi]
port = {port}
workers = 1
concurrent_per_worker = 4
backlog = 1024
apps = health slow echo

[health]
call = brim.server.health.Health

[slow]
call = slow_app.Slow

[echo]
call = brim.wsgi_echo.WSGIEcho
""")


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _read_answer(sock: socket.socket) -> str:
    """'200', '503', or what went wrong: 'reset', 'empty', 'timeout', 'partial'."""
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    finally:
        sock.close()
    if not data:
        return "empty"
    head, sep, body = data.partition(b"\r\n\r\n")
    fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    length = int(fields.get(b"Content-Length", b"-1"))
    if not sep or len(body) != length:
        return "partial"
    return head.split(b" ", 2)[1].decode()


@pytest.mark.slow
def test_term_answers_every_queued_connection_none_reset(brimd):
    port = free_port()
    _conf(brimd, port)
    master = brimd.start()
    assert _get(port, "/readyz")[0] == 200
    # The worker takes the slow request and blocks: nothing more is accepted.
    busy = socket.create_connection(("127.0.0.1", port), timeout=15)
    busy.sendall(b"GET /slow?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)  # let the worker pick it up before the crowd queues
    queued = []
    for n in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(f"GET /echo?{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        queued.append(sock)
    os.kill(master, signal.SIGTERM)
    outcomes: dict[str, int] = {}
    for sock in queued:
        what = _read_answer(sock)
        outcomes[what] = outcomes.get(what, 0) + 1
    assert set(outcomes) <= {"200", "503"}, outcomes
    print("outcomes of the 200 queued connections:", outcomes)
    assert _read_answer(busy) == "200"  # the request in flight is finished
    wait_for(lambda: not alive(master), timeout=15, what="the master to exit")
    brimd.syslog.wait_line("queued connection(s) with a refusal")


@pytest.mark.slow
def test_shutdown_answers_the_queued_connections_too(brimd):
    port = free_port()
    _conf(brimd, port)
    master = brimd.start()
    busy = socket.create_connection(("127.0.0.1", port), timeout=15)
    busy.sendall(b"GET /slow?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)  # let the worker pick it up before the crowd queues
    queued = []
    for n in range(50):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(f"GET /echo?{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        queued.append(sock)
    done = brimd.run("shutdown")
    assert done.returncode == 0, done.stderr
    outcomes = {_read_answer(sock) for sock in queued}
    assert outcomes <= {"200", "503"}, outcomes
    assert _read_answer(busy) == "200"
    wait_for(lambda: not alive(master), timeout=10, what="the master to exit")


@pytest.mark.slow
def test_drain_delay_readiness_says_503_while_everything_is_served(brimd):
    port = free_port()
    _conf(brimd, port, drain_delay=2)
    master = brimd.start()
    assert _get(port, "/readyz") == (200, b"ready\n")
    assert _get(port, "/livez") == (200, b"alive\n")
    os.kill(master, signal.SIGTERM)
    began = time.monotonic()
    answer = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(
        _get(port, "/readyz")), timeout=2, what="readiness to say 503")
    assert answer == (503, b"going away\n")
    # Within the delay: other apps are still served, liveness still 200,
    # and the master is still there.
    assert _get(port, "/echo")[0] == 200
    assert _get(port, "/livez")[0] == 200
    assert time.monotonic() - began < 2
    assert alive(master)
    wait_for(lambda: not alive(master), timeout=10, what="the master to exit")
    assert time.monotonic() - began >= 2 - 0.1


def test_second_term_skips_the_drain_delay(brimd):
    port = free_port()
    _conf(brimd, port, drain_delay=30)
    master = brimd.start()
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: _get(port, "/readyz")[0] == 503, timeout=5, what="going away")
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: not alive(master), timeout=5, what="the master to exit at once")


@pytest.mark.slow
def test_health_app_paths_and_head(brimd):
    port = free_port()
    _conf(brimd, port)
    brimd.start()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("HEAD", "/readyz")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert response.getheader("Cache-Control") == "no-store"
    conn.close()
    assert _get(port, "/echo")[0] == 200  # other paths go down the chain


def _kubernetes_conf() -> str:
    """The conf of docs/kubernetes.rst: the example file the page includes."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "kubernetes.rst").read_text()
    assert "literalinclude:: ../packages/brimd/examples/kubernetes.conf" in page
    return (root / "packages" / "brimd" / "examples" / "kubernetes.conf").read_text()


def test_the_kubernetes_page_conf_serves_probes_and_stops_on_a_second_term(brimd):
    conf = _kubernetes_conf()
    assert "drain_delay = 5" in conf and "call = brim.server.health.Health" in conf
    brimd.write("myproject/__init__.py", "")
    brimd.write("myproject/wsgi.py", """
        def application(env, start_response):
            start_response("200 OK", [("Content-Length", "3")])
            return [b"app"]
        """)
    brimd.use(conf)
    port = free_port()
    # The page's port and address are the container's: here, a free one on loopback.
    proc = subprocess.Popen(
        [*BRIMD, "-c", str(brimd.confs[0]), "--set", "brim.ip=127.0.0.1",
         "--set", f"brim.port={port}", "-p", "-", "foreground"],
        env=brimd.env, cwd=brimd.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    brimd.foreground.append(proc)
    wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout=20, what="readiness")
    assert _get(port, "/livez")[0] == 200
    assert _get(port, "/anything") == (200, b"app")
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: _get(port, "/readyz")[0] == 503, timeout=4, what="going away")
    assert _get(port, "/anything") == (200, b"app")  # still served in the delay
    proc.send_signal(signal.SIGTERM)  # skips the rest of the five seconds
    assert proc.wait(10) == 0


# ----- no-daemon: the one process drains as the master does ------------------------


def _queue(port: int, count: int, slow: float) -> tuple[socket.socket, list[socket.socket]]:
    """A request that blocks the one serving process, and ``count`` queued behind it."""
    busy = socket.create_connection(("127.0.0.1", port), timeout=15)
    busy.sendall(f"GET /slow?{slow} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                 .encode())
    time.sleep(0.3)  # let it be picked up before the crowd queues
    queued = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(f"GET /echo?{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        queued.append(sock)
    return busy, queued


def test_no_daemon_term_answers_every_queued_connection_none_reset(brimd):
    """Before no-daemon drained, this gave {'200': 1, 'reset': 99}: the process
    exited and the kernel reset its backlog. Now each is served (the worker
    accepts until it sees the drain) or answered 503 by the stop."""
    port = free_port()
    _conf(brimd, port)
    proc = brimd.popen("no-daemon")
    wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout=20, what="no-daemon serving")
    busy, queued = _queue(port, 100, 2)
    proc.send_signal(signal.SIGTERM)
    outcomes: dict[str, int] = {}
    for sock in queued:
        what = _read_answer(sock)
        outcomes[what] = outcomes.get(what, 0) + 1
    print("no-daemon: outcomes of the 100 queued connections:", outcomes)
    assert set(outcomes) <= {"200", "503"}, outcomes
    assert _read_answer(busy) == "200"  # the request in flight is finished
    assert proc.wait(15) == 0
    err = proc.stderr.read()
    assert "no-daemon: stopping: finishing the requests in flight" in err
    if outcomes.get("503"):
        assert f"answered {outcomes['503']} queued connection(s) with a refusal" in err


def test_no_daemon_drain_delay_readiness_says_503_while_everything_is_served(brimd):
    port = free_port()
    _conf(brimd, port, drain_delay=2)
    proc = brimd.popen("no-daemon")
    wait_for(lambda: _get(port, "/readyz") == (200, b"ready\n"), timeout=20,
             what="no-daemon serving")
    proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    wait_for(lambda: _get(port, "/readyz")[0] == 503, timeout=2, what="readiness to say 503")
    assert _get(port, "/echo")[0] == 200  # still served in the delay
    assert time.monotonic() - began < 2 and proc.poll() is None
    assert proc.wait(10) == 0
    assert time.monotonic() - began >= 2 - 0.1


def test_no_daemon_connections_arriving_during_the_drain_get_503(brimd):
    """While a request holds the drain (its body half sent), the listener stays
    open in no-daemon's own hands: late connections queue, and are answered 503
    when the stop ends (a second TERM ends it at once), none reset."""
    port = free_port()
    _conf(brimd, port)
    proc = brimd.popen("no-daemon")
    wait_for(lambda: _get(port, "/readyz")[0] == 200, timeout=20, what="no-daemon serving")
    holding = socket.create_connection(("127.0.0.1", port), timeout=15)
    holding.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the drain has begun: the worker accepts no more
    late = []
    for n in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(f"GET /echo?{n} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        late.append(sock)
    proc.send_signal(signal.SIGTERM)
    outcomes = [_read_answer(sock) for sock in late]
    assert outcomes == ["503"] * 20, outcomes
    holding.close()
    assert proc.wait(10) == 0
    assert "answered 20 queued connection(s) with a refusal" in proc.stderr.read()


# ----- a connection the worker took while full -----------------------------------


@pytest.mark.parametrize("model", ["green", "threads"])
def test_a_connection_accepted_while_the_worker_was_full_is_answered_not_reset(brimd, model):
    """A worker with one connection slot, taken by a request in progress, still
    accepts the next client (the green acceptor, or the threads reactor,
    holds it until a slot frees). When the drain came then, the held
    connection was dropped with its request unread: the kernel reset it.
    Now it is served once the slot frees, its answer saying
    ``Connection: close``."""
    port = free_port()
    brimd.write("slow_app.py", SLOW_APP)
    brimd.use(brimd.local() + f"""
[wsgi]
port = {port}
workers = 1
worker_model = {model}
monkey_patch = true
threads = 2
concurrent_per_worker = 1
apps = slow echo

[slow]
call = slow_app.Slow

[echo]
call = brim.wsgi_echo.WSGIEcho
""")
    master = brimd.start()
    assert _get(port, "/echo")[0] == 200
    busy = socket.create_connection(("127.0.0.1", port), timeout=15)
    busy.sendall(b"GET /slow?1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)  # the slot is taken
    held = socket.create_connection(("127.0.0.1", port), timeout=15)
    held.sendall(b"GET /echo?held HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: accept_queue(port) == 0, what="the worker to accept the held client")
    time.sleep(0.1)  # and read what it can (the threads reactor: nothing until a slot frees)
    os.kill(master, signal.SIGTERM)
    assert _read_answer(busy) == "200"
    assert _read_answer(held) == "200"  # the worker took it: it serves it
    wait_for(lambda: not alive(master), timeout=15, what="the master to exit")
