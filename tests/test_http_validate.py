"""wsgiref.validate finds nothing in brimd's environ or start_response protocol.

One brimd (one worker) runs edge_apps.Validated: a well-behaved app wrapped
in wsgiref.validate.validator, with every WSGIWarning turned into an error.
The only thing taken out of the environ before the validator sees it is the
seed's documented env['brim'] (a dotless key holding the server object).
Whatever the validator rejects becomes a 500 (or a cut response) and a
traceback in brimd's log, so each request below must come back 200 with the
environ the app reported, and the log must stay free of tracebacks.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from brimd_harness import Brimd, SyslogListener, free_port, wait_for

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.timeout(60)

# Words that mean the validator (or brimd) complained somewhere in the log.
BAD_LOG_WORDS = ("Traceback", "AssertionError", "WSGIWarning", "unraisable", "broke a rule")


class _Server:
    def __init__(self, brimd: Brimd, port: int, workers: dict[str, int]) -> None:
        self.brimd = brimd
        self.port = port
        self.workers = workers

    def bad_log_lines(self, since: int = 0) -> list[str]:
        return [line for line in list(self.brimd.syslog.lines)[since:]
                if any(word in line for word in BAD_LOG_WORDS)]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[_Server]:
    syslog = SyslogListener()
    brimd = Brimd(tmp_path_factory.mktemp("validate"), syslog)
    try:
        shutil.copy(HERE / "edge_apps.py", brimd.root / "edge_apps.py")
        port = free_port()
        brimd.use("[wsgi]\napps = v\nworkers = 1\n\n[v]\ncall = edge_apps.Validated\n",
                  brimd.local(port=port))
        brimd.start()
        workers = wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 1 and w,
                           what="one wsgi worker")
        wait_for(lambda: _one(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200,
                 what="the validated app answering")
        yield _Server(brimd, port, workers)
    finally:
        brimd.kill_all()
        syslog.close()


# --- a small raw HTTP/1.1 client -------------------------------------------------------

class _Responses:
    """Reads responses one after another from a socket (pipelining-safe buffering)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unparsed {self.buf[:200]!r}")
        self.buf += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        """(status, headers with lower-case names, body) of the next response."""
        status_line = self._line()
        parts = status_line.split(b" ", 2)
        assert parts[0] in (b"HTTP/1.1", b"HTTP/1.0"), status_line
        status = int(parts[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    return status, headers, body
                body += self._exact(size)
                assert self._exact(2) == b"\r\n"
        if "content-length" in headers:
            return status, headers, self._exact(int(headers["content-length"]))
        # Delimited by close.
        body = self.buf
        self.buf = b""
        while data := self.sock.recv(65536):
            body += data
        return status, headers, body

    def at_eof(self, timeout: float = 3.0) -> bool:
        """True when the server closes with nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return not self.buf


def _many(port: int, raw: bytes, heads: list[bool]) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw at once, read one response per entry of heads (True: a HEAD's)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        reader = _Responses(sock)
        return [reader.read(head) for head in heads]


def _one(port: int, raw: bytes, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    return _many(port, raw, [head])[0]


def _report(response: tuple[int, dict[str, str], bytes]) -> dict:
    """The app's JSON report, once the response is checked to be its 200."""
    status, headers, body = response
    assert status == 200, (status, headers, body[:500])
    assert headers.get("content-type") == "application/json", headers
    return json.loads(body)


@pytest.fixture
def since(server) -> int:
    """Where this test's part of the log starts."""
    return len(server.brimd.syslog.lines)


def _check_clean(server: _Server, since: int) -> None:
    """No complaint logged since the test began (the tests run in any order).

    Log lines are UDP datagrams; a last request's own log line shows that
    what was logged before it has arrived.
    """
    probe = f"/probe-{uuid.uuid4().hex}"
    assert _one(server.port, b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % probe.encode())[0] == 200
    server.brimd.syslog.wait_line(f"GET {probe} 200", timeout=5)
    bad = server.bad_log_lines(since)
    assert not bad, bad[:3]


# --- the requests ------------------------------------------------------------------------

def test_get(server, since):
    got = _report(_one(server.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (got["method"], got["path_info"], got["script_name"]) == ("GET", "/", "")
    assert got["query_string"] == "" and got["content_length"] is None
    assert got["server_protocol"] == "HTTP/1.1" and got["http_host"] == "x"
    _check_clean(server, since)


def test_get_with_query(server, since):
    got = _report(_one(server.port, b"GET /q?a=1&b=%20two HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (got["path_info"], got["query_string"]) == ("/q", "a=1&b=%20two")
    assert got["request_uri"] == "/q?a=1&b=%20two"
    _check_clean(server, since)


def test_head_then_get_on_one_connection(server, since):
    raw = (b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /after-head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    (status, headers, body), after = _many(server.port, raw, [True, False])
    assert status == 200 and body == b"", (status, headers)
    assert int(headers["content-length"]) > 0  # the app's length, body withheld
    # The HEAD response carried no body bytes: the next response parses right after it.
    assert _report(after)["path_info"] == "/after-head"
    _check_clean(server, since)


def test_post_read_n(server, since):
    body = b"line one\nline two is longer than five\n\nlast without newline"
    raw = (b"POST /post HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    got = _report(_one(server.port, raw))
    assert got["body"].encode("latin-1") == body
    assert got["content_length"] == str(len(body))
    assert "CONTENT_TYPE" in got["cgi_keys"] and "HTTP_CONTENT_TYPE" not in got["cgi_keys"]
    _check_clean(server, since)


def test_post_readline_n(server, since):
    body = b"short\na line much longer than seven bytes\n\n\nxy\nno newline at the end"
    raw = (b"POST /readline HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
           % (len(body), body))
    got = _report(_one(server.port, raw))
    assert got["body"].encode("latin-1") == body
    _check_clean(server, since)


def test_post_empty_body(server, since):
    got = _report(_one(server.port, b"POST /empty HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 0\r\n\r\n"))
    assert (got["body"], got["content_length"]) == ("", "0")
    _check_clean(server, since)


def test_expect_100_continue(server, since):
    """The client holds its body until the server says 100 Continue (when the app reads)."""
    body = b"sent after 100"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /post HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
        reader = _Responses(sock)
        status, _headers, _body = reader.read()
        assert status == 100
        sock.sendall(body)
        got = _report(reader.read())
    assert got["body"].encode() == body
    _check_clean(server, since)


def test_chunked_post_with_trailer(server, since):
    raw = (b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    got = _report(_one(server.port, raw))
    assert got["body"] == "hello world"
    assert got["content_length"] is None and "CONTENT_LENGTH" not in got["cgi_keys"]
    assert "HTTP_X_TRAILER" not in got["cgi_keys"]  # trailers never reach the environ
    _check_clean(server, since)


def test_keep_alive_series(server, since):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        first_sock = None
        for n in range(12):
            method = ("GET", "POST", "HEAD")[n % 3]
            body = b"body %d" % n if method == "POST" else None
            conn.request(method, f"/ka/{n}", body=body)
            response = conn.getresponse()
            data = response.read()
            assert response.status == 200, (n, method, response.status, data[:300])
            if first_sock is None:
                first_sock = conn.sock
            assert conn.sock is first_sock, f"request {n} needed a new connection"
            if method == "HEAD":
                assert data == b""
            else:
                got = json.loads(data)
                assert (got["method"], got["path_info"]) == (method, f"/ka/{n}")
                assert got["body"].encode() == (body or b"")
    finally:
        conn.close()
    _check_clean(server, since)


def test_pipelined_requests(server, since):
    raw = (b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
           b"HEAD /p3 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /p4?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
           b"POST /p5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"2\r\nde\r\n0\r\n\r\n"
           b"GET /p6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(raw)
        reader = _Responses(sock)
        got = [reader.read(head=(n == 2)) for n in range(6)]
        closed = reader.at_eof()
    reports = [_report(r) for n, r in enumerate(got) if n != 2]
    assert got[2][0] == 200 and got[2][2] == b""
    assert [r["path_info"] for r in reports] == ["/p1", "/p2", "/p4", "/p5", "/p6"]
    assert (reports[1]["body"], reports[3]["body"]) == ("abc", "de")
    assert reports[2]["query_string"] == "x=1"
    assert closed, "the connection stayed open after Connection: close"
    _check_clean(server, since)


def test_absolute_form_target(server, since):
    got = _report(_one(server.port, b"GET http://example.test:8080/abs/path?q=1 HTTP/1.1\r\n"
                                    b"Host: x\r\n\r\n"))
    assert got["http_host"] == "example.test:8080"  # the target's authority wins
    assert (got["path_info"], got["query_string"]) == ("/abs/path", "q=1")
    empty = _report(_one(server.port, b"GET http://example.test HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (empty["path_info"], empty["http_host"]) == ("/", "example.test")
    _check_clean(server, since)


def test_options_asterisk(server, since):
    got = _report(_one(server.port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert (got["method"], got["path_info"], got["request_uri"]) == ("OPTIONS", "", "*")
    _check_clean(server, since)


def test_percent_encoded_path(server, since):
    got = _report(_one(server.port, b"GET /a%20b/%C3%A9%2Fx%25?k=%41 HTTP/1.1\r\n"
                                    b"Host: x\r\n\r\n"))
    # PEP 3333: PATH_INFO is the decoded bytes as latin-1; the query stays encoded.
    assert got["path_info"] == "/a b/\xc3\xa9/x%"
    assert got["query_string"] == "k=%41"
    _check_clean(server, since)


def test_http10_request(server, since):
    status, headers, body = _one(server.port, b"GET /ten HTTP/1.0\r\n\r\n")
    got = _report((status, headers, body))
    assert got["server_protocol"] == "HTTP/1.0" and got["path_info"] == "/ten"
    _check_clean(server, since)


def test_start_response_again_with_exc_info(server, since):
    got = _report(_one(server.port, b"GET /exc_info HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert got["path_info"] == "/exc_info"
    _check_clean(server, since)


def test_write_callable(server, since):
    got = _report(_one(server.port, b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert got["path_info"] == "/write"
    _check_clean(server, since)


def test_worker_never_restarted(server, since):
    """Whatever ran before (the tests run in any order), the first worker still serves."""
    _check_clean(server, since)
    assert server.brimd.workers("wsgi") == server.workers
