"""Attack tests for the resource rules of the strict HTTP/1.1 core.

idle_timeout (a connection waiting for its first byte, or idle between
keep-alive requests, is closed quietly: no response, not counted, not
logged), client_timeout (a silent or trickled head, a silent body: 408),
min_body_rate (a body slower than the rate, after a grace of client_timeout
seconds of waiting: 408; time the app spends between reads does not count),
and shedding when a worker's concurrent_per_worker connection slots are all
taken (the longest-idle connection first, then the oldest head in progress
gets a 408, and only when every connection is in a request does a new one
wait).

Each case checks the answer, that the worker is the same live process
afterwards, and that a normal request on a new connection is answered.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import ssl
import subprocess
import time

import http_harness as H
import pytest

# Every test runs on each worker model (conftest.py: worker_model).
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("worker_model")]

IDLE = 0.6  # idle_timeout of the module's server
CLIENT = 1.5  # client_timeout of the module's server: also min_body_rate's grace
RATE = 1024  # min_body_rate of the module's server


def _app(env, start_response):
    path = env["PATH_INFO"]
    inp = env["wsgi.input"]
    if path == "/pid":
        out = str(os.getpid()).encode()
    elif path == "/sleep":
        H.app_sleep(float(env["QUERY_STRING"]))
        out = b"slept"
    elif path == "/slowread":  # reads in small pieces, taking its time between reads
        total = 0
        while True:
            piece = inp.read(100)
            if not piece:
                break
            total += len(piece)
            H.app_sleep(0.3)
        out = b"read %d" % total
    else:
        out = b"read %d" % len(inp.read())
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]


CODES = (408, 499)


@pytest.fixture(scope="module")
def server(tmp_path_factory, worker_model):
    running = H.start(_app, tmp_path_factory.mktemp("rules-resources"), count_status_codes=CODES,
                      client_timeout=CLIENT, idle_timeout=IDLE, min_body_rate=RATE)
    yield running
    running.kill()


@pytest.fixture
def small(tmp_path):
    """A worker of two connection slots; timeouts long enough never to be what closes."""
    running = H.start(_app, tmp_path, count_status_codes=CODES, concurrent_per_worker=2,
                      client_timeout=30, idle_timeout=30)
    yield running
    running.kill()


# ----- helpers ----------------------------------------------------------------

def _exchange(server, raw: bytes) -> bytes:
    sock = server.connect()
    try:
        sock.sendall(raw)
        return H.recv_all(sock)
    finally:
        sock.close()


def _worker_same_and_serving(server, tls: ssl.SSLContext | None = None) -> None:
    """Checks (2) and (3): same live worker, answering a normal request on a new connection."""
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0), "the worker died"
    if tls is None:
        data = _exchange(server, b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
        body = data.partition(b"\r\n\r\n")[2]
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=tls,
                                           timeout=H.WAIT)
        try:
            conn.request("GET", "/pid")
            resp = conn.getresponse()
            assert resp.status == 200
            body = resp.read()
        finally:
            conn.close()
    assert body == str(server.pid).encode(), "a different process answered"
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0), "the worker died"


def _notices(server, mark: int) -> list[list[str]]:
    """Request-log lines written since mark, as fields (client, method, path, status...).

    Waits for the log to settle first: request lines are flushed every 100 ms.
    """
    server.mark()
    return [line.split(" NOTICE ", 1)[1].split() for line in server.log()[mark:].splitlines()
            if " NOTICE 127.0.0.1 " in line]


def _snapshot(server) -> tuple[int, int, int]:
    return server.mark(), server.stat("request_count"), server.stat("status_408_count")


def _quietly_closed(sock, within: float) -> float:
    """Seconds until the server closed sock, having sent nothing at all."""
    start = time.monotonic()
    data = H.recv_all(sock, within)
    took = time.monotonic() - start
    assert data == b"", f"expected a quiet close, got {data[:200]!r}"
    return took


def _is_408(data: bytes) -> None:
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), data[:300]
    head = data.partition(b"\r\n\r\n")[0].lower()
    assert b"\r\nconnection: close" in head and b"\r\ncontent-type: text/plain" in head, head


def _pid_request(sock, reader) -> None:
    sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _headers, _body = reader.response()
    assert status == 200


# ----- idle_timeout -------------------------------------------------------------

def test_silent_new_connection_is_closed_quietly_after_idle_timeout(server):
    mark, count, c408 = _snapshot(server)
    sock = server.connect()
    try:
        took = _quietly_closed(sock, 5)
    finally:
        sock.close()
    assert IDLE - 0.2 <= took < CLIENT - 0.2, f"closed after {took:.2f}s"
    time.sleep(0.1)
    assert (server.stat("request_count"), server.stat("status_408_count")) == (count, c408)
    assert _notices(server, mark) == [], "a quiet close was logged"
    _worker_same_and_serving(server)


def test_idle_keep_alive_connection_is_closed_quietly(server):
    mark, count, c408 = _snapshot(server)
    sock = server.connect()
    try:
        reader = H.Reader(sock)
        _pid_request(sock, reader)
        took = _quietly_closed(sock, 5)
    finally:
        sock.close()
    assert IDLE - 0.2 <= took < CLIENT - 0.2, f"closed after {took:.2f}s"
    time.sleep(0.1)
    assert (server.stat("request_count"), server.stat("status_408_count")) == (count + 1, c408)
    assert [f[2] for f in _notices(server, mark)] == ["/pid"]
    _worker_same_and_serving(server)


def test_idle_timeout_restarts_with_each_request(server):
    """Requests 0.4 s apart for 2 s on one connection: idle_timeout is per wait, not in total."""
    sock = server.connect()
    try:
        reader = H.Reader(sock)
        for _ in range(5):
            _pid_request(sock, reader)
            time.sleep(IDLE - 0.2)
    finally:
        sock.close()
    _worker_same_and_serving(server)


@pytest.fixture
def tls(tmp_path):
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    client.check_hostname = False
    return ctx, client


def test_idle_timeout_covers_the_tls_handshake(tmp_path, tls):
    server_ctx, client_ctx = tls
    running = H.start(_app, tmp_path, count_status_codes=CODES, ssl_context=server_ctx,
                      client_timeout=5, idle_timeout=IDLE)
    try:
        count = running.stat("request_count")
        sock = running.connect()  # a TCP connection that never starts its handshake
        try:
            took = _quietly_closed(sock, 4)
        finally:
            sock.close()
        assert took < 3, f"closed after {took:.2f}s: not idle_timeout"
        assert running.stat("request_count") == count
        _worker_same_and_serving(running, client_ctx)
    finally:
        running.kill()


def _client_hello(client_ctx: ssl.SSLContext) -> bytes:
    """The bytes of a real ClientHello, made without a socket."""
    tls = client_ctx.wrap_bio(ssl.MemoryBIO(), out := ssl.MemoryBIO())
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return out.read()


def test_a_dribbled_client_hello_is_closed_after_idle_timeout(tmp_path, tls):
    """A byte of ClientHello every 0.4 s never lets one wait reach idle_timeout (1 s):
    the handshake as a whole must still end by it."""
    server_ctx, client_ctx = tls
    running = H.start(_app, tmp_path, count_status_codes=CODES, ssl_context=server_ctx,
                      client_timeout=5, idle_timeout=1)
    try:
        hello = _client_hello(client_ctx)
        sock = running.connect()
        sock.settimeout(0.4)
        start = time.monotonic()
        closed = False
        try:
            for byte in hello:
                sock.sendall(bytes((byte,)))
                try:
                    closed = sock.recv(4096) == b""
                except TimeoutError:
                    pass  # still open: 0.4 s passed, send the next byte
                except ConnectionResetError:
                    closed = True
                if closed or time.monotonic() - start > 4:
                    break
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        finally:
            took = time.monotonic() - start
            sock.close()
        assert closed and took < 2.0, f"open after {took:.2f}s (closed: {closed})"
        _worker_same_and_serving(running, client_ctx)
    finally:
        running.kill()


def _endless_writer(env, start_response):
    """write()s forever; under HEAD nothing goes out, so only a probe can find the client gone."""
    if env["PATH_INFO"] == "/pid":
        return _app(env, start_response)
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        while True:
            write(b"Zq" * 50)
            H.app_sleep(0.01)
    finally:
        env["brim.stats"].incr("app.closed")


def test_head_to_an_endless_writer_ends_when_a_tls_client_says_close_notify(tmp_path, tls):
    """A TLS client that leaves with close_notify: the raw socket then holds an alert, not
    an end of stream, so the check must read through TLS to see the client went."""
    server_ctx, client_ctx = tls
    running = H.start(_endless_writer, tmp_path, count_status_codes=CODES,
                      ssl_context=server_ctx, app_stats=(("app.closed", "sum"),))
    try:
        for n in range(1, 4):
            tcp = running.connect()
            sock = client_ctx.wrap_socket(tcp)
            sock.sendall(b"HEAD /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                more = sock.recv(4096)
                assert more, head
                head += more
            assert head.startswith(b"HTTP/1.1 200 ") and b"Zq" not in head, head
            sock.settimeout(0.3)
            with contextlib.suppress(OSError):
                sock.unwrap()  # sends close_notify; brim never answers it
            tcp.close()
            running.wait_stat("app.closed", n)
        _worker_same_and_serving(running, client_ctx)
    finally:
        running.kill()


# ----- caches keyed by what clients send stay small -----------------------------------

def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _echo_app(env, start_response):
    """Echoes client values into its response headers, as many apps do (a Host, a token)."""
    out = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(out))),
                              ("X-Host", env.get("HTTP_HOST", "")),
                              ("X-Line", env.get("HTTP_X_LINE", ""))])
    return [out]


def test_distinct_large_heads_do_not_grow_the_worker(tmp_path):
    """1,200 requests, each with a new 8 KB field line, field name and Host value.

    Every value reaches a validation cache (request fields, names, Hosts) and
    the app echoes two into its response headers (response caches): the
    worker's RSS must grow by under 30 MB, and the worker must serve on.
    """
    running = H.start(_echo_app, tmp_path, count_status_codes=CODES)
    try:
        sock = running.connect()
        reader = H.Reader(sock)

        def send(i: int) -> None:
            pad = b"%06d" % i
            sock.sendall(b"GET /%d HTTP/1.1\r\nHost: h%s%s\r\nX-Line: %s%s\r\n"
                         b"X-%s%s: v\r\n\r\n" % (i, pad, b"h" * 8000, pad, b"l" * 8000,
                                                 pad, b"n" * 8000))
            status, headers, _body = reader.response()
            assert status == 200 and headers["x-host"].startswith("h" + pad.decode()), status

        for i in range(50):  # warm up: the worker's usual allocations are made
            send(i)
        before = _rss_kb(running.pid)
        for i in range(50, 1250):
            send(i)
        grown = (_rss_kb(running.pid) - before) / 1024
        sock.close()
        assert grown < 30, f"worker RSS grew by {grown:.1f} MB"
        assert os.waitpid(running.pid, os.WNOHANG) == (0, 0), "the worker died"
        data = _exchange(running, b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert data.partition(b"\r\n\r\n")[2] == str(running.pid).encode()
    finally:
        running.kill()


# ----- client_timeout: heads and bodies -------------------------------------------

@pytest.mark.parametrize("partial", [b"GE", b"GET /echo HTTP/1.1\r\n",
                                     b"GET /echo HTTP/1.1\r\nHost: x\r\n"],
                         ids=["in the method", "after the request line", "after a field"])
@pytest.mark.slow
def test_head_silent_for_client_timeout_gets_408(server, partial):
    mark, count, c408 = _snapshot(server)
    sock = server.connect()
    try:
        sock.sendall(partial)
        start = time.monotonic()
        data = H.recv_all(sock)
        took = time.monotonic() - start
    finally:
        sock.close()
    _is_408(data)
    assert CLIENT - 0.3 <= took < CLIENT + 2, f"408 after {took:.2f}s"  # not idle_timeout
    server.wait_stat("status_408_count", c408 + 1)
    server.wait_stat("request_count", count + 1)
    server.wait_log(" 408 ")
    assert [f[3] for f in _notices(server, mark)] == ["408"]
    _worker_same_and_serving(server)


def test_trickled_head_hits_the_head_deadline(server):
    """One byte every 0.3 s keeps the head from being silent; its deadline still ends it."""
    c408 = server.stat("status_408_count")
    sock = server.connect()
    data = b""
    try:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        start = time.monotonic()
        sock.settimeout(0.3)
        while time.monotonic() - start < CLIENT + 4:
            try:
                sock.sendall(b"x")
            except OSError:
                break
            try:
                more = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not more:
                break
            data += more
        took = time.monotonic() - start
        sock.settimeout(2)
        try:
            data += H.recv_all(sock, 2)
        except OSError:
            pass
    finally:
        sock.close()
    _is_408(data)
    assert CLIENT - 0.3 <= took < CLIENT + 2, f"408 after {took:.2f}s"
    server.wait_stat("status_408_count", c408 + 1)
    _worker_same_and_serving(server)


def test_body_silent_for_client_timeout_gets_408(server):
    mark, _count, c408 = _snapshot(server)
    sock = server.connect()
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        start = time.monotonic()
        data = H.recv_all(sock)
        took = time.monotonic() - start
    finally:
        sock.close()
    _is_408(data)
    assert CLIENT - 0.3 <= took < CLIENT + 2, f"408 after {took:.2f}s"
    server.wait_stat("status_408_count", c408 + 1)
    server.wait_log(" POST /echo 408 ")
    assert [f[1:4] for f in _notices(server, mark)] == [["POST", "/echo", "408"]]
    _worker_same_and_serving(server)


# ----- min_body_rate --------------------------------------------------------------

def _trickle(server, path: bytes, length: int, piece: int, every: float,
             limit: float) -> tuple[bytes, float]:
    """Send a body of length bytes, piece bytes every `every` s; what came back, and when."""
    sock = server.connect()
    data = b""
    try:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % (path, length))
        start = time.monotonic()
        sent = 0
        sock.settimeout(every)
        while time.monotonic() - start < limit:
            if sent < length:
                try:
                    sock.sendall(b"b" * min(piece, length - sent))
                except OSError:
                    break
                sent += piece
            try:
                more = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not more:
                break
            data += more
        took = time.monotonic() - start
        try:
            data += H.recv_all(sock, 2)
        except OSError:
            pass
    finally:
        sock.close()
    return data, took


def test_body_slower_than_min_body_rate_gets_408(server):
    """100 bytes every 0.25 s (400 B/s): each piece within client_timeout, the rate too low."""
    c408 = server.stat("status_408_count")
    data, took = _trickle(server, b"/echo", 100_000, 100, 0.25, CLIENT + 5)
    _is_408(data)
    assert CLIENT - 0.3 <= took < CLIENT + 3, f"408 after {took:.2f}s (grace {CLIENT}s)"
    server.wait_stat("status_408_count", c408 + 1)
    _worker_same_and_serving(server)


@pytest.mark.slow
def test_body_at_a_good_rate_is_served(server):
    """1000 bytes every 0.25 s (4000 B/s) for 3 s, well past the grace."""
    data, _took = _trickle(server, b"/echo", 12_000, 1000, 0.25, 10)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
    assert data.endswith(b"read 12000")
    _worker_same_and_serving(server)


@pytest.mark.slow
def test_time_the_app_spends_between_reads_does_not_count(server):
    """The whole body is there at once; the app reads it over 3 s (333 B/s wall-clock)."""
    c408 = server.stat("status_408_count")
    data = _exchange(server, b"POST /slowread HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                             b"Connection: close\r\n\r\n" + b"b" * 1000)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
    assert data.endswith(b"read 1000")
    assert server.stat("status_408_count") == c408
    _worker_same_and_serving(server)


def test_min_body_rate_0_turns_the_rate_check_off(tmp_path):
    running = H.start(_app, tmp_path, count_status_codes=CODES, client_timeout=CLIENT,
                      idle_timeout=IDLE, min_body_rate=0)
    try:
        data, _took = _trickle(running, b"/echo", 250, 50, 0.5, 10)  # 100 B/s for 2.5 s
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
        assert data.endswith(b"read 250")
        _worker_same_and_serving(running)
    finally:
        running.kill()


# ----- shedding when the worker is full ---------------------------------------------

def _still_open(sock) -> bool:
    sock.settimeout(0.3)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except OSError:
        return False


def test_full_worker_sheds_its_longest_idle_connection(small):
    mark, _count, c408 = _snapshot(small)
    a = small.connect()  # idle keep-alive, the longest idle
    b = c = None
    try:
        reader = H.Reader(a)
        _pid_request(a, reader)
        time.sleep(0.2)
        b = small.connect()  # waiting for its first byte, idle for less long
        time.sleep(0.2)
        c = small.connect()  # the worker is full: this one needs a slot
        start = time.monotonic()
        c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = H.recv_all(c, 5)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
        assert time.monotonic() - start < 2, "the new connection waited"
        _quietly_closed(a, 2)  # shed: closed, nothing sent
        assert _still_open(b), "the newer idle connection was shed too"
        b.settimeout(5)
        b.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert H.recv_all(b, 5).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in (a, b, c):
            if sock is not None:
                sock.close()
    assert small.stat("status_408_count") == c408
    assert sorted(f[3] for f in _notices(small, mark)) == ["200", "200", "200"]
    _worker_same_and_serving(small)


def test_idle_connection_is_shed_before_a_head_in_progress(small):
    a = small.connect()
    b = c = None
    try:
        reader = H.Reader(a)
        _pid_request(a, reader)  # a: idle keep-alive
        b = small.connect()
        b.sendall(b"GET /pid HTTP/1.1\r\nHo")  # b: receiving a head
        time.sleep(0.2)
        c = small.connect()
        c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert H.recv_all(c, 5).startswith(b"HTTP/1.1 200 OK\r\n")
        _quietly_closed(a, 2)
        b.sendall(b"st: x\r\nConnection: close\r\n\r\n")  # b finishes its head and is served
        assert H.recv_all(b, 5).startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        for sock in (a, b, c):
            if sock is not None:
                sock.close()
    assert small.stat("status_408_count") == 0
    _worker_same_and_serving(small)


def test_full_worker_without_idle_connections_408s_its_oldest_head_in_progress(small):
    c408 = small.stat("status_408_count")
    a = small.connect()
    b = c = None
    try:
        a.sendall(b"GET /sleep?2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")  # in a request
        time.sleep(0.2)
        b = small.connect()
        b.sendall(b"GET /pid HTTP/1.1\r\nHo")  # receiving a head
        time.sleep(0.2)
        c = small.connect()
        start = time.monotonic()
        c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = H.recv_all(c, 5)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
        assert time.monotonic() - start < 1.3, "the new connection waited for the sleeper"
        _is_408(H.recv_all(b, 5))
        data = H.recv_all(a, 5)  # the request in progress is untouched
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"slept"), data[:300]
    finally:
        for sock in (a, b, c):
            if sock is not None:
                sock.close()
    small.wait_stat("status_408_count", c408 + 1)
    small.wait_log(" 408 ")
    _worker_same_and_serving(small)


def test_new_connection_waits_when_every_connection_is_in_a_request(small):
    sleepers = [small.connect(), small.connect()]
    c = None
    try:
        for sock in sleepers:
            sock.sendall(b"GET /sleep?1.5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)
        c = small.connect()
        start = time.monotonic()
        c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = H.recv_all(c, 5)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:300]
        assert time.monotonic() - start > 0.9, "a request in progress was shed"
        for sock in sleepers:
            data = H.recv_all(sock, 5)
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"slept")
    finally:
        for sock in [*sleepers, c]:
            if sock is not None:
                sock.close()
    assert small.stat("status_408_count") == 0
    _worker_same_and_serving(small)
