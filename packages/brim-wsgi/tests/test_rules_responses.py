"""Attack tests for how the HTTP core sends what an app gives it (issue 19's findings).

Apps that stream without end to a HEAD (or under a bodiless status), that
leave a large body unread, that write after their response finished, that
hand over a bytes subclass lying about its length, or a file whose size says
0; clients that iterate wsgi.input, or wait for each streamed block. Every
case checks the answer, that the worker is the same process afterwards, and
that a normal request is served next.
"""

from __future__ import annotations

import os
import re
import threading
import time

import http_harness as H
import pytest

from brim.wsgi import green
from brim.wsgi.errors import AppError

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 5.0


class _Liar(bytes):
    """A bytes subclass whose len() says 2, whatever it holds."""

    def __len__(self) -> int:
        return 2


class _Endless:
    """A body that never ends; close() is counted, so a test sees it was closed."""

    def __init__(self, stats) -> None:
        self.stats = stats

    def __iter__(self):
        while True:
            green.sleep(0.01)
            yield b"x" * 100

    def close(self) -> None:
        self.stats.incr("app.closed")


def _endless_lazy(env, status):
    """A generator that calls start_response only when first iterated (a common shape)."""
    stats = env["brim.stats"]
    try:
        env["test.start"](status, [("Content-Type", "text/plain")])
        while True:
            yield b"Zq" * 50
            green.sleep(0.01)
    finally:
        stats.incr("app.closed")


def _app(env, start_response):
    path = env["PATH_INFO"]
    query = env["QUERY_STRING"]
    stats = env["brim.stats"]
    if path == "/pid":
        out = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    if path == "/endless":  # ?<status>
        start_response(query.replace("+", " "), [("Content-Type", "text/plain")])
        return _Endless(stats)
    if path == "/endless-lazy":
        env["test.start"] = start_response
        return _endless_lazy(env, query.replace("+", " "))
    if path == "/endless-write":
        write = start_response(query.replace("+", " "), [("Content-Type", "text/plain")])
        try:
            while True:
                write(b"Zq" * 50)
                green.sleep(0.01)
        finally:
            stats.incr("app.closed")
    if path == "/205":
        start_response("205 Reset Content", [("Content-Length", "5")])
        return [b"Zq123"]
    if path == "/ignore-body":  # ?<status>,<response bytes>
        status, size = query.split(",")
        start_response(status.replace("+", " "), [("Content-Length", size)])
        return [b"r" * int(size)]
    if path == "/late-write":  # chunked: a late chunk would read as part of the stream
        write = start_response("200 OK", [("Content-Type", "text/plain")])

        def late() -> None:
            green.sleep(0.1)
            try:
                write(b"STRAY")
            except AppError:
                stats.incr("app.refused")
        green.spawn_n(late)
        write(b"first")
        return []
    if path == "/liar":  # ?list, ?gen, ?write
        body = _Liar(b"hello world")
        if query == "write":
            start_response("200 OK", [("Content-Type", "text/plain")])(body)
            return []
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [body] if query == "list" else iter([body, _Liar(b"!")])
    if path == "/file":  # ?proc or ?wronly=<path>
        if query == "proc":
            f = open("/proc/self/status", "rb")  # noqa: SIM115 (the wrapper closes it)
        else:
            f = open(query.split("=", 1)[1], "wb")  # noqa: SIM115
        start_response("200 OK", [("Content-Type", "text/plain")])
        return env["wsgi.file_wrapper"](f)
    if path == "/lines":
        lines = list(env["wsgi.input"])
        out = b"|".join(lines)
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    if path == "/blocks":  # five blocks 200 ms apart, each stamped with when it was yielded
        start_response("200 OK", [("Content-Type", "text/plain")])

        def blocks():
            for i in range(5):
                if i:
                    green.sleep(0.2)
                yield b"%d %.6f\n" % (i, time.time())
        return blocks()
    start_response("404 Not Found", [("Content-Length", "0")])
    return []


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = H.start(_app, tmp_path_factory.mktemp("rules-responses"),
                      app_stats=(("app.closed", "sum"), ("app.refused", "sum")),
                      count_status_codes=(205, 404, 499, 500), client_timeout=2,
                      wsgi_input_iter_chunk_size=8)
    yield running
    running.kill()


@pytest.fixture
def small(tmp_path):
    """A worker with three slots, for tests that would fill them."""
    running = H.start(_app, tmp_path, app_stats=(("app.closed", "sum"), ("app.refused", "sum")),
                      count_status_codes=(499,), concurrent_per_worker=3, client_timeout=2)
    yield running
    running.kill()


def _pid_on(sock, reader, server) -> None:
    sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _headers, body = reader.response()
    assert (status, body) == (200, str(server.pid).encode())


def _worker_same_and_serving(server) -> None:
    """Same live worker, answering a normal request on a new connection."""
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0), "the worker died"
    sock = server.connect(timeout=TIMEOUT)
    try:
        _pid_on(sock, H.Reader(sock, TIMEOUT), server)
    finally:
        sock.close()
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0), "the worker died"


def _ask(server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """The response to raw on a kept-alive connection, checked by a /pid request behind it.

    A wrong length or a stray byte would desync that second response. Then
    the worker check on a new connection.
    """
    sock = server.connect(timeout=TIMEOUT)
    try:
        reader = H.Reader(sock, TIMEOUT)
        sock.sendall(raw)
        answer = reader.response()
        _pid_on(sock, reader, server)
        assert reader.buf == b"", reader.buf[:200]
    finally:
        sock.close()
    _worker_same_and_serving(server)
    return answer


def _head_only(sock) -> bytes:
    """Read one response head (up to its blank line)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        assert more, f"closed before a head: {data!r}"
        data += more
    return data


# ----- bodiless statuses never run an endless body --------------------------------------

BODYLESS = [("HEAD", "200+OK"), ("GET", "204+No+Content"), ("GET", "205+Reset+Content"),
            ("GET", "304+Not+Modified")]


@pytest.mark.parametrize("path", ["/endless", "/endless-lazy", "/endless-write"])
@pytest.mark.parametrize(("method", "status"), BODYLESS,
                         ids=[f"{m} {s.split('+')[0]}" for m, s in BODYLESS])
def test_endless_body_under_a_bodiless_status_is_closed(small, path, method, status):
    """Twice as many such requests as the worker has slots, each client leaving after its head.

    The head must come at once, the app's iterable must be closed (or its
    write() must fail), and the worker must still serve: nothing holds a slot.
    """
    n = 6
    for _ in range(n):
        sock = small.connect(timeout=TIMEOUT)
        try:
            sock.sendall(f"{method} {path}?{status} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            head = _head_only(sock)
            assert head.startswith(b"HTTP/1.1 " + status.split("+")[0].encode()), head
            assert b"Zq" not in head and b"xxx" not in head
            if status.startswith("205"):
                assert b"\r\nContent-Length: 0\r\n" in head, head
        finally:
            sock.close()
    small.wait_stat("app.closed", n)
    _worker_same_and_serving(small)


def test_205_drops_the_app_body_and_keeps_the_connection(server):
    status, headers, body = _ask(server, b"GET /205 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (status, headers["content-length"], body) == (205, "0", b"")


# ----- lingering close: a big unread body never costs the client its answer ---------------

@pytest.mark.parametrize(("status", "body_in", "body_out", "send_first"), [
    ("200+OK", 4 << 20, 2, True), ("404+Not+Found", 2 << 20, 3 << 20, False)],
    ids=["4 MB POST, small answer read after sending", "2 MB POST, 3 MB 404"])
def test_unread_body_over_the_discard_limit_lingers(server, status, body_in, body_out,
                                                    send_first):
    """The app reads none of the body; brim closes, but only after the client had its answer.

    A client that sends its whole body before it reads (as most do) finds the
    answer waiting, not a reset; one that reads while it sends gets the whole
    3 MB answer.
    """
    payload = b"u" * body_in
    for _ in range(12):
        sock = server.connect(timeout=TIMEOUT)
        sent = []

        def send(sock=sock, sent=sent):
            try:
                sock.sendall(b"POST /ignore-body?%s,%d HTTP/1.1\r\nHost: x\r\nContent-Length: "
                             b"%d\r\n\r\n" % (status.encode(), body_out, body_in) + payload)
                sent.append(True)
            except OSError as err:
                sent.append(err)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            if send_first:
                sender.join(TIMEOUT)
                assert sent == [True], sent  # brim read (and dropped) the whole body
            reader = H.Reader(sock, TIMEOUT)
            code, _headers, body = reader.response()  # a reset would raise here
            assert (code, len(body)) == (int(status[:3]), body_out)
        finally:
            sock.close()
            sender.join(TIMEOUT)
    _worker_same_and_serving(server)


# ----- output the app cannot get wrong ----------------------------------------------

def test_write_after_the_response_finished_is_refused(server):
    """A write() from another green thread, after finish(), must not land between responses."""
    refused = server.stat("app.refused")
    sock = server.connect(timeout=TIMEOUT)
    try:
        reader = H.Reader(sock, TIMEOUT)
        sock.sendall(b"GET /late-write HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.response()[::2] == (200, b"first")
        server.wait_stat("app.refused", refused + 1)
        server.wait_log("WSGI app called write() after its response finished")
        _pid_on(sock, reader, server)
        assert b"STRAY" not in reader.buf
    finally:
        sock.close()
    _worker_same_and_serving(server)


@pytest.mark.parametrize(("query", "want"), [("list", b"hello world"), ("gen", b"hello world!"),
                                             ("write", b"hello world")])
def test_a_bytes_subclass_is_counted_by_its_real_bytes(server, query, want):
    status, headers, body = _ask(server, b"GET /liar?%s HTTP/1.1\r\nHost: x\r\n\r\n"
                                 % query.encode())
    assert (status, body) == (200, want)
    assert headers.get("content-length", str(len(want))) == str(len(want))


def test_file_wrapper_sends_a_file_whose_size_says_0(server):
    status, _headers, body = _ask(server, b"GET /file?proc HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and b"Name:" in body and b"Pid:" in body, body[:200]


def test_file_wrapper_over_a_write_only_file_is_a_500(server, tmp_path):
    """The app's mistake, not a client that went away (499)."""
    before = server.stat("status_500_count"), server.stat("status_499_count")
    sock = server.connect(timeout=TIMEOUT)
    try:
        reader = H.Reader(sock, TIMEOUT)
        sock.sendall(b"GET /file?wronly=%s HTTP/1.1\r\nHost: x\r\n\r\n"
                     % str(tmp_path / "out").encode())
        assert reader.response()[0] == 500
    finally:
        sock.close()
    server.wait_stat("status_500_count", before[0] + 1)
    assert server.stat("status_499_count") == before[1]
    _worker_same_and_serving(server)


# ----- PEP 3333: wsgi.input iterates lines; each yielded block goes out at once -----------

def test_iterating_wsgi_input_yields_lines(server):
    """Lines, as a file gives them; one longer than wsgi_input_iter_chunk_size (8) in pieces."""
    body = b"a\nbb\n\nccc\n0123456789abc\ntail"
    status, _headers, out = _ask(server, b"POST /lines HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
    assert (status, out) == (200, b"a\n|bb\n|\n|ccc\n|01234567|89abc\n|tail")


def test_each_streamed_block_is_sent_as_it_is_yielded(server):
    """Five blocks 200 ms apart: the client sees each within 50 ms of its yield."""
    sock = server.connect(timeout=TIMEOUT)
    try:
        sock.sendall(b"GET /blocks HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        lags: list[float] = []
        while len(lags) < 5:
            more = sock.recv(65536)
            assert more, data
            now = time.time()
            data += more
            # Each block is "<i> <time of its yield>\n", inside its own chunk.
            stamps = re.findall(rb"(?m)^[0-4] ([0-9]+\.[0-9]+)$", data.partition(b"\r\n\r\n")[2])
            lags.extend(now - float(stamp) for stamp in stamps[len(lags):])
        assert all(lag < 0.05 for lag in lags), lags
        sock.settimeout(TIMEOUT)
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
        reader = H.Reader(sock, TIMEOUT)
        _pid_on(sock, reader, server)
    finally:
        sock.close()
    _worker_same_and_serving(server)

