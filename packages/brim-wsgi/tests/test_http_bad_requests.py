"""Raw malformed, oversized, ambiguous and slow requests: each gets its 4xx or a close."""

from __future__ import annotations

import socket
import time

import http_harness as H
import pytest


def _app(env, start_response):
    body = env["wsgi.input"].read()
    out = b"ok:" + body
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = H.start(_app, tmp_path_factory.mktemp("bad"), client_timeout=0.5, idle_timeout=0.5,
                      max_request_line=200, max_header_size=1000, max_headers=10)
    yield running
    running.kill()


def _exchange(server, raw: bytes) -> bytes:
    sock = server.connect()
    try:
        sock.sendall(raw)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = H.recv_all(sock)
    sock.close()
    return data


def _still_serving(server) -> None:
    data = _exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK"), data
    assert data.endswith(b"ok:")


BAD = [
    ("garbage request line", b"HELLO\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /\r\n\r\n", 505),
    ("bad version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    ("space in header name", b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    ("bad chunk size", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nabc\r\n0\r\n\r\n", 400),
    ("chunk size overflow", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"ffffffffffffffffffff\r\nabc\r\n", 400),
    ("CL and TE", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE and CL", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("two Content-Lengths", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                            b"Content-Length: 5\r\n\r\nabcde", 400),
    ("Content-Length list", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 5\r\n\r\nabcde",
     400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n",
     400),
    ("TE not ending in chunked", b"POST / HTTP/1.1\r\nHost: x\r\n"
                                 b"Transfer-Encoding: chunked, gzip\r\n\r\nabc", 400),
    ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("long request line", b"GET /" + b"a" * 300 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("big headers", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n", 431),
    ("many headers", b"GET / HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(20))
     + b"\r\n", 431),
]


@pytest.mark.parametrize(("what", "raw", "status"), BAD, ids=[b[0] for b in BAD])
def test_bad_request_gets_its_status_and_a_close(server, what, raw, status):
    data = _exchange(server, raw)
    assert data.startswith(b"HTTP/1.1 %d " % status), (what, data)
    assert b"Connection: close" in data
    assert b"ok:" not in data  # the app never saw it
    _still_serving(server)


def test_huge_header_flood_is_cut_off(server):
    """A head that never ends: the server stops reading at the limit."""
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    status = None
    try:
        for _ in range(200):
            sock.sendall(b"X-Flood-Header: " + b"f" * 1000 + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = H.recv_all(sock)
    status = data[:12]
    assert status == b"HTTP/1.1 431" or data == b"", data[:100]
    _still_serving(server)


def test_smuggled_request_after_bad_framing_is_never_served(server):
    # The carrier's own path marks its line: other tests' connections (a slow
    # client's 408) may be counted meanwhile, so the count alone cannot say
    # that this request's line, and any after it, has been logged.
    carrier = f"/carrier-{time.monotonic_ns()}"
    raw = (f"POST {carrier} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
           ).encode()
    data = _exchange(server, raw)
    assert data.count(b"HTTP/1.1 ") == 1 and data.startswith(b"HTTP/1.1 400")
    line = next(x for x in server.wait_log(f" {carrier} ").splitlines() if carrier in x)
    assert " POST " in line and " 400 " in line, line
    server.mark()  # every counted request's line is in: a served /smuggled would be too
    assert "/smuggled" not in server.log()


def test_slow_client_gets_408_and_is_counted(server):
    before = server.stat("status_408_count")
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and nothing more
    start = time.monotonic()
    data = H.recv_all(sock)
    assert time.monotonic() - start < 5
    assert data.startswith(b"HTTP/1.1 408 ")
    server.wait_stat("status_408_count", before + 1)
    _still_serving(server)


def test_slowloris_trickle_still_times_out(server):
    """One header byte at a time, each within the idle timeout: the head has a deadline."""
    sock = server.connect()
    sock.sendall(b"GET / HTTP/1.1\r\n")
    start = time.monotonic()
    closed = False
    while time.monotonic() - start < 4:
        try:
            sock.sendall(b"X")
            sock.settimeout(0.2)
            if sock.recv(100).startswith(b"HTTP/1.1 408"):
                closed = True
                break
        except TimeoutError:
            continue
        except OSError:
            closed = True
            break
    assert closed
    _still_serving(server)


def _settled(server, stat: str = "request_count") -> int:
    """A counter once other tests' connections on this shared server have ended.

    The tests run in any order, and one may leave a slow connection that is
    answered (and counted) up to client_timeout later.
    """
    count = server.stat(stat)
    deadline = time.monotonic() + H.WAIT
    while time.monotonic() < deadline:
        time.sleep(1.0)  # twice client_timeout and idle_timeout
        now = server.stat(stat)
        if now == count:
            break
        count = now
    return count


def test_silent_new_connection_is_closed_quietly(server):
    """Nothing asked, nothing answered: closed after idle_timeout, not counted."""
    before = _settled(server)
    sock = server.connect()
    start = time.monotonic()
    assert H.recv_all(sock) == b""
    assert time.monotonic() - start < 3
    time.sleep(0.1)
    assert server.stat("request_count") == before


def test_idle_keepalive_closes_without_a_408(server):
    sock = server.connect()
    reader = H.Reader(sock)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert reader.response()[0] == 200
    before = _settled(server, "status_408_count")
    assert H.recv_all(sock) == b""  # dropped after idle_timeout
    time.sleep(0.1)
    assert server.stat("status_408_count") == before


def test_slow_body_is_408(server):
    before = server.stat("status_408_count")
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    H.recv_all(sock)
    server.wait_stat("status_408_count", before + 1)
    server.wait_log(" POST / 408 3 ")


def test_client_gone_mid_body_is_499(server):
    before = server.stat("status_499_count")
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    time.sleep(0.05)
    sock.close()
    server.wait_stat("status_499_count", before + 1)


def test_half_a_bad_chunked_body_read_by_the_app_is_400(server):
    sock = server.connect()
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    time.sleep(0.05)
    sock.sendall(b"xyz\r\n")
    data = H.recv_all(sock)
    assert data.startswith(b"HTTP/1.1 400"), data
    _still_serving(server)


def test_raw_socket_reset_mid_request_does_not_hurt(server):
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.sendall(b"GET / HTTP/1.1\r\nHo")
    sock.close()  # RST
    _still_serving(server)
