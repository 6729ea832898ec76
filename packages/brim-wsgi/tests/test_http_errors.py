"""App failures, client disconnects, status counting, close(), the request log, drain/stop, TLS."""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import subprocess
import time

import http_harness as H
import pytest

# Every test runs on each worker model (conftest.py: worker_model).
pytestmark = pytest.mark.usefixtures("worker_model")


class _Body:
    """An app iterable whose close() is counted in the shared stats."""

    def __init__(self, env, pieces, fail_at=None, pause=0.0):
        self.env = env
        self.pieces = pieces
        self.fail_at = fail_at
        self.pause = pause

    def __iter__(self):
        for i, piece in enumerate(self.pieces):
            if i == self.fail_at:
                raise RuntimeError("failed mid-body")
            if i and self.pause:
                H.app_sleep(self.pause)
            yield piece

    def close(self):
        self.env["brim.stats"].incr("app.closed")


def _app(env, start_response):
    path = env["PATH_INFO"]
    env["brim.logger"].info("handling %s", path)
    if path == "/boom":
        raise ValueError("the app broke")
    if path == "/missing":
        start_response("404 Not Found", [("Content-Length", "0")])
        return _Body(env, [])
    if path == "/notimpl":
        start_response("501 Not Implemented", [("Content-Length", "0")])
        return _Body(env, [])
    if path == "/midfail":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body(env, [b"a" * 100] * 5, fail_at=2)
    if path == "/slow":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _Body(env, [b"x" * 100] * 50, pause=0.05)
    if path == "/info":
        env["brim.additional_request_log_info"].extend(["myapp:", "two words", "caf\u00e9"])
    if path == "/badheader":
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: x=1")])
        return _Body(env, [b"no"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return _Body(env, [b"ok"])


@pytest.fixture
def server(tmp_path):
    running = H.start(_app, tmp_path, app_stats=(("app.closed", "sum"),),
                      wsgi_output_iter_chunk_size=10, log_headers=True)
    yield running
    running.kill()


def _get(server, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=H.WAIT)
    conn.request("GET", path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def test_app_exception_is_500_with_traceback_and_txn(server):
    status, body = _get(server, "/boom")
    assert status == 500
    assert b"Traceback" not in body and b"broke" not in body  # nothing leaks to the client
    log = server.wait_log(" GET /boom 500 ")
    line = next(x for x in log.splitlines() if " GET /boom 500 " in x)
    txn = line.split()[line.split().index("500") + 4]
    assert f"WSGI app failed txn:{txn}" in log
    assert "ValueError: the app broke" in log
    assert f"handling /boom txn:{txn}" in log  # env['brim.logger'] lines carry it
    assert _get(server, "/ok") == (200, b"ok")  # and the worker serves on
    assert server.stat("status_5xx_count") == 1


def test_failure_after_headers_closes_and_calls_close(server):
    sock = server.connect()
    sock.sendall(b"GET /midfail HTTP/1.1\r\nHost: x\r\n\r\n")
    data = H.recv_all(sock)
    assert data.startswith(b"HTTP/1.1 200 OK")
    assert b"Transfer-Encoding: chunked" in data
    assert not data.endswith(b"0\r\n\r\n")  # the body was cut short, not ended cleanly
    server.wait_log("failed after the response started")
    server.wait_stat("app.closed", 1)


def test_status_counting_and_close_always_called(server):
    for path in ("/ok", "/ok", "/missing", "/notimpl", "/boom"):
        _get(server, path)
    server.wait_stat("request_count", 5)
    assert server.stat("status_2xx_count") == 2
    assert server.stat("status_4xx_count") == 1
    assert server.stat("status_404_count") == 1
    assert server.stat("status_5xx_count") == 2
    assert server.stat("status_501_count") == 1
    assert server.stat("app.closed") == 4  # /boom raised: no iterable to close


def test_disconnect_mid_response_is_499(server):
    sock = server.connect()
    sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    sock.close()
    server.wait_stat("status_499_count", 1)
    server.wait_stat("app.closed", 1)
    server.wait_log(" GET /slow 499 ")


def test_bad_response_header_is_refused(server):
    status, _body = _get(server, "/badheader")
    assert status == 500
    server.wait_log("control character")


def test_request_log_line(server):
    _get(server, "/info?q=a%20b", headers={"User-Agent": "my agent/1.0",
                                           "Referer": "http://r/"})
    # '%' is escaped as %25: the client's literal '%20' reads apart from the
    # escaped spaces of the user agent.
    log = server.wait_log(" /info?q=a%2520b ")
    line = next(x for x in log.splitlines() if "NOTICE" in x and "/info" in x)
    fields = line.split(" NOTICE ", 1)[1].split()
    assert fields[:5] == ["127.0.0.1", "GET", "/info?q=a%2520b", "200", "0"]
    assert fields[5] == "2"  # bytes out
    float(fields[6])  # duration
    assert len(fields[7]) == 32  # txn
    assert fields[8:13] == ["my%20agent/1.0", "http://r/", "myapp:", "two%20words",
                            "caf%C3%A9"]
    assert "headers:" in fields and "User-Agent:my%20agent/1.0" in fields
    assert line.count("txn:") == 0  # the txn is a field already, not appended again


@pytest.mark.slow
def test_drain_finishes_inflight_and_exits(server):
    idle = server.connect()
    reader = H.Reader(idle)
    idle.sendall(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reader.response()[0] == 200
    busy = server.connect()
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)
    os.kill(server.pid, signal.SIGUSR1)
    assert H.recv_all(idle) == b""  # the idle keep-alive connection is closed
    data = H.recv_all(busy)  # the in-flight one completes
    _head, _, body = data.partition(b"\r\n\r\n")
    assert body.endswith(b"0\r\n\r\n") and body.count(b"x") == 5000
    assert server.wait_exit() == 0
    assert "serve_forever returned" in server.log()
    with pytest.raises(ConnectionRefusedError):
        server.connect(timeout=1)


def test_stop_drops_everything(server):
    busy = server.connect()
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    assert busy.recv(10)
    os.kill(server.pid, signal.SIGUSR2)
    assert server.wait_exit() == 0
    assert H.recv_all(busy).partition(b"\r\n\r\n")[2].count(b"x") < 5000


@pytest.fixture
def tls_context(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


def test_tls(tmp_path, tls_context):
    ctx, cert = tls_context
    server = H.start(_app, tmp_path, app_stats=(("app.closed", "sum"),), ssl_context=ctx)
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("localhost", server.port, context=client_ctx,
                                           timeout=H.WAIT)
        for n in range(3):
            if n == 2:
                time.sleep(0.1)  # an idle keep-alive client: parked, with threads
            conn.request("GET", "/ok")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"ok")
        conn.close()
        plain = server.connect()  # a plain-text client on the TLS port is just dropped
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        H.recv_all(plain)
        out = subprocess.run(["curl", "-s", "--max-time", "5", "--cacert", str(cert),
                              f"https://localhost:{server.port}/ok"],
                             capture_output=True, timeout=H.WAIT, check=True).stdout
        assert out == b"ok"
    finally:
        server.kill()
