"""Attack tests for the request rules of the strict HTTP/1.1 core (docs: the behaviour contract).

Every case sends raw bytes over its own connection and checks three things:

1. the answer: the exact status line, ``Connection: close``, a text/plain body,
   the connection closed, one request-log line with that status, the request
   counted, and the app never run (or, for served cases, what the app saw);
2. the worker is the same process afterwards, and still alive;
3. a normal request on a NEW connection is answered afterwards.

The cases are data tables: (name, raw bytes, expected status) for refusals,
(name, raw bytes, what the app must see) for requests that must be served.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import warnings
from wsgiref.validate import validator

import http_harness as H
import pytest

# Every test runs on each worker model (conftest.py: worker_model).
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("worker_model")]

REASONS = {
    400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long",
    417: "Expectation Failed", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported",
}
CODES = (400, 408, 414, 417, 431, 500, 501, 505)

# Small limits so the oversize cases stay small; large enough for a 9 KB head.
MAX_REQUEST_LINE = 1024
MAX_HEADER_SIZE = 16384
MAX_FIELD = 4096
MAX_HEADERS = 30
KNOWN_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
                 "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
                 "REPORT", "MKCALENDAR", "SEARCH", "QUERY", "PURGE")


# ----- the app ----------------------------------------------------------------

def _plain(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


_VALIDATED = validator(_plain)


def _validated(env, start_response):
    """wsgiref.validate on the environ brim built: any complaint is a 500."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _VALIDATED(env, start_response)
        body = b"".join(result)
        result.close()
    if caught:
        raise AssertionError("wsgiref.validate warned: "
                             + "; ".join(str(w.message) for w in caught))
    return [body]


def _http_keys(env):
    return sorted(k for k in env if k.startswith("HTTP_"))


def _app(env, start_response):
    path = env["PATH_INFO"]
    if path == "/pid":
        out = str(os.getpid()).encode()
    else:
        env["brim.stats"].incr("app.calls")
        if path == "/validate":
            return _validated(env, start_response)
        keys_before = _http_keys(env)
        body = env["wsgi.input"].read()
        info = {
            "method": env["REQUEST_METHOD"], "path": path, "query": env.get("QUERY_STRING"),
            "uri": env.get("REQUEST_URI"), "host": env.get("HTTP_HOST"),
            "protocol": env["SERVER_PROTOCOL"], "content_length": env.get("CONTENT_LENGTH"),
            "keys_before_read": keys_before, "keys": _http_keys(env),
            "headers": {k: env[k] for k in _http_keys(env)},
            "body_len": len(body), "body": body[:256].decode("latin-1"),
        }
        out = b"APP-RAN " + json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture(scope="module")
def server(tmp_path_factory, worker_model):
    running = H.start(_app, tmp_path_factory.mktemp("rules-requests"),
                      app_stats=(("app.calls", "sum"),), count_status_codes=CODES,
                      client_timeout=1, idle_timeout=2, max_request_line=MAX_REQUEST_LINE,
                      max_header_size=MAX_HEADER_SIZE, max_header_field_size=MAX_FIELD,
                      max_headers=MAX_HEADERS)
    yield running
    running.kill()


# ----- helpers ----------------------------------------------------------------

def _exchange(server, raw: bytes, timeout: float = H.WAIT) -> bytes:
    """Send raw on a new connection, read until the server closes it."""
    sock = server.connect(timeout=timeout)
    try:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return H.recv_all(sock, timeout)
    finally:
        sock.close()


def _responses(data: bytes, bodyless: tuple[int, ...] = ()) -> list:
    """Split what came back into (status line, headers, body) responses; raises on junk."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"a response head that never ends: {data[:300]!r}"
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), f"not a response: {data[:300]!r}"
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.decode("latin-1").partition(":")
            assert colon, f"bad response header line {line!r}"
            headers.setdefault(name.lower(), value.strip())
        if len(out) in bodyless:
            body, data = b"", rest
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body, data = rest[:n], rest[n:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if not size:
                    while True:
                        line, _, rest = rest.partition(b"\r\n")
                        if not line:
                            break
                    break
                body += rest[:size]
                assert rest[size:size + 2] == b"\r\n"
                rest = rest[size + 2:]
            data = rest
        else:
            body, data = rest, b""
        out.append((lines[0], headers, body))
    return out


def _notices(text: str) -> list[list[str]]:
    """The request-log lines in text, each as its fields (client, method, path, status...)."""
    return [line.split(" NOTICE ", 1)[1].split() for line in text.splitlines()
            if " NOTICE 127.0.0.1 " in line]


def _worker_same_and_serving(server) -> None:
    """Checks (2) and (3): same live worker, answering a normal request on a new connection."""
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0), "the worker died"
    data = _exchange(server, b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    [(status, _headers, body)] = _responses(data)
    assert status == b"HTTP/1.1 200 OK", data[:300]
    assert body == str(server.pid).encode(), "a different process answered"
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0), "the worker died"


def _refused(server, raw: bytes, status: int, *, app_may_run: bool = False) -> bytes:
    """The refusal triple for one raw request; returns what came back."""
    mark = server.mark()
    count = server.stat("request_count")
    code_count = server.stat(f"status_{status}_count")
    calls = server.stat("app.calls")
    data = _exchange(server, raw)  # returns only once the server closed the connection
    # (1) the answer
    assert data.startswith(b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status].encode())), data[:300]
    [(_line, headers, _body)] = _responses(data)  # exactly one response, nothing after it
    assert headers.get("connection", "").lower() == "close", headers
    assert headers.get("content-type", "").startswith("text/plain"), headers
    assert b"APP-RAN" not in data
    server.wait_stat("request_count", count + 1)
    server.wait_stat(f"status_{status}_count", code_count + 1)
    if not app_may_run:
        assert server.stat("app.calls") == calls, "the app ran"
    # (2) and (3)
    _worker_same_and_serving(server)
    server.wait_stat("request_count", count + 2)
    deadline = time.monotonic() + H.WAIT
    while True:
        lines = [f for f in _notices(server.log()[mark:]) if f[2] != "/pid"]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(lines) == 1, f"want one request-log line, got {lines}"
    assert lines[0][3] == str(status), lines[0]
    return data


def _served(server, raw: bytes) -> dict:
    """The served triple for one raw request (which says Connection: close); returns its info."""
    count = server.stat("request_count")
    data = _exchange(server, raw)
    [(status, _headers, body)] = _responses(data)
    assert status == b"HTTP/1.1 200 OK", data[:300]
    assert body.startswith(b"APP-RAN "), body[:300]
    server.wait_stat("request_count", count + 1)
    _worker_same_and_serving(server)
    return json.loads(body[8:])


HOST = b"Host: x\r\n"
CLOSE = b"Connection: close\r\n"


def _get(target: bytes = b"/echo", version: bytes = b"HTTP/1.1", headers: bytes = HOST,
         method: bytes = b"GET") -> bytes:
    return method + b" " + target + b" " + version + b"\r\n" + headers + CLOSE + b"\r\n"


def _post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST /echo HTTP/1.1\r\n" + HOST + headers + CLOSE + b"\r\n" + body


def _chunked(body: bytes) -> bytes:
    return _post(b"Transfer-Encoding: chunked\r\n", body)


def _cl(value: bytes, body: bytes = b"hello") -> bytes:
    return _post(b"Content-Length: " + value + b"\r\n", body)


def _te(value: bytes, body: bytes = b"5\r\nhello\r\n0\r\n\r\n") -> bytes:
    return _post(b"Transfer-Encoding: " + value + b"\r\n", body)


def _fields(n: int, size: int = 1, name: bytes = b"X-F") -> bytes:
    return b"".join(b"%s-%d: %s\r\n" % (name, i, b"v" * size) for i in range(n))


SINGLETONS = [
    (b"Content-Type", b"text/plain"), (b"Authorization", b"Basic eDp5"),
    (b"Proxy-Authorization", b"Basic eDp5"), (b"Range", b"bytes=0-1"),
    (b"Referer", b"http://r/"), (b"User-Agent", b"ua/1"), (b"From", b"a@b.example"),
    (b"Max-Forwards", b"3"), (b"If-Modified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT"),
    (b"If-Unmodified-Since", b"Sun, 06 Nov 1994 08:49:37 GMT"), (b"If-Range", b'"e"'),
    (b"Date", b"Sun, 06 Nov 1994 08:49:37 GMT"), (b"Content-Location", b"/c"),
    (b"Content-Range", b"bytes 0-1/2"),
]

# ----- refusals: (name, raw bytes, status); the app never runs -----------------

REFUSED: list[tuple[str, bytes, int]] = [
    # request line
    ("two spaces after method", b"GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("two spaces before version", b"GET /echo  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("tab after method", b"GET\t/echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("tab before version", b"GET /echo\tHTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("trailing space after version", b"GET /echo HTTP/1.1 \r\nHost: x\r\n\r\n", 400),
    ("leading space", b" GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("extra word after version", b"GET /echo HTTP/1.1 x\r\nHost: x\r\n\r\n", 400),
    ("empty target", b"GET  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("garbage line", b"HELLO\r\n\r\n", 400),
    ("method only", b"GET\r\n\r\n", 400),
    ("method with paren", _get(method=b"G(T"), 400),
    ("method with quote", _get(method=b'GE"T'), 400),
    ("method with slash", _get(method=b"GE/T"), 400),
    ("method with colon", _get(method=b"GET:"), 400),
    ("method with non-ASCII", _get(method=b"G\xc9T"), 400),
    ("method with DEL", _get(method=b"GET\x7f"), 400),
    ("NUL before method", b"\x00" + _get(), 400),
    ("CR inside request line", b"GET /echo\rHTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("bare CR ends request line", b"GET /echo HTTP/1.1\rHost: x\r\n\r\n", 400),
    ("bare LF ends request line", b"GET /echo HTTP/1.1\nHost: x\r\n\r\n", 400),
    ("bare LF line endings", b"GET /echo HTTP/1.1\nHost: x\n\n", 400),
    # versions
    *[(f'version {v.decode("latin-1")!r}', _get(version=v), 400)
      for v in (b"HTTP/1", b"HTTP/1.10", b"HTTP/10.1", b"HTTP/1.1.1", b"http/1.1", b"HTTP/a.b",
                b"HTTPS/1.1", b"HTTP/-1.1", b"HTTP/", b"HTTP/1.", b"HTTP/1.1\x00", b"HTCPCP/1.0")],
    *[(f"version {v.decode()!r}", _get(version=v), 505)
      for v in (b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.9", b"HTTP/0.9", b"HTTP/0.1")],
    ("HTTP/0.9 request, no version", b"GET /echo\r\n\r\n", 505),
    # methods
    ("method with punctuation FR!B", _get(method=b"FR!B"), 501),
    ("lowercase get", _get(method=b"get"), 501),
    ("mixed case Get", _get(method=b"Get"), 501),
    ("method starting with a digit", _get(method=b"1GET"), 501),
    ("CONNECT origin-form", _get(method=b"CONNECT"), 501),
    ("CONNECT authority-form", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
                               b"\r\n", 501),
    ("CONNECT asterisk", _get(b"*", method=b"CONNECT"), 501),
    # header syntax
    ("header line without colon", _get(headers=HOST + b"NoColon\r\n"), 400),
    ("space before colon", _get(headers=HOST + b"X-A : v\r\n"), 400),
    ("tab before colon", _get(headers=HOST + b"X-A\t: v\r\n"), 400),
    ("space before colon in Host", _get(headers=b"Host : x\r\n"), 400),
    ("empty header name", _get(headers=HOST + b": v\r\n"), 400),
    *[(f"header name with {c!r}", _get(headers=HOST + b"X" + c + b"A: v\r\n"), 400)
      for c in (b"(", b")", b'"', b"/", b"[", b"]", b"@", b",", b"{", b"=", b"\\", b"\xc3\xa9",
                b"\x00", b"\x01", b"\x7f")],
    ("obs-fold with space", _get(headers=HOST + b"X-A: a\r\n b\r\n"), 400),
    ("obs-fold with tab", _get(headers=HOST + b"X-A: a\r\n\tb\r\n"), 400),
    ("space line before first header", b"GET /echo HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("folded Content-Length", _post(b"Content-Length:\r\n 5\r\n", b"hello"), 400),
    *[(f"CTL {c!r} in a field value", _get(headers=HOST + b"X-A: a" + c + b"b\r\n"), 400)
      for c in (b"\x00", b"\x01", b"\x07", b"\x08", b"\x0b", b"\x0c", b"\x1b", b"\x1f",
                b"\x7f")],
    ("BEL in User-Agent", _get(headers=HOST + b"User-Agent: a\x07\r\n"), 400),
    ("DEL in Host", _get(headers=b"Host: x\x7f\r\n"), 400),
    ("bare CR in a field value", _get(headers=HOST + b"X-A: a\rb\r\n"), 400),
    ("bare CR between fields", _get(headers=b"Host: x\rX-A: v\r\n"), 400),
    ("bare LF between fields", _get(headers=b"Host: x\nX-A: v\r\n"), 400),
    ("bare LF ends the head", b"GET /echo HTTP/1.1\r\nHost: x\r\n\n", 400),
    ("CR LF CR ends the head", b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\r\n", 400),
    # Host
    ("no Host on HTTP/1.1", b"GET /echo HTTP/1.1\r\n\r\n", 400),
    ("no Host on a POST", b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", 400),
    ("no Host with absolute-form", _get(b"http://x/echo", headers=b""), 400),
    ("two identical Host", _get(headers=b"Host: x\r\nHost: x\r\n"), 400),
    ("two different Host", _get(headers=b"Host: a\r\nHost: b\r\n"), 400),
    *[(f"Host {v!r}", _get(headers=b"Host: " + v + b"\r\n"), 400)
      for v in (b"", b"a, b", b"a,b", b"a b", b"x/y", b"u@h", b"u:p@h", b"x:65536", b"x:99999",
                b"x:8o", b"x:-1", b"x:+80", b"x:1:2", b"h\xc3\xa9", b"\xff", b"[::1", b"x?y",
                b"x#y", b"x\\y")],
    # duplicate singletons
    *[(f"two {n.decode()}", _get(headers=HOST + n + b": " + v + b"\r\n" + n + b": " + v
                                 + b"\r\n"), 400)
      for n, v in SINGLETONS],
    ("two Content-Type, different", _post(b"Content-Type: a/b\r\nContent-Type: c/d\r\n"
                                          b"Content-Length: 0\r\n"), 400),
    ("two Content-Length, different", _post(b"Content-Length: 5\r\nContent-Length: 6\r\n",
                                            b"hello!"), 400),
    ("Content-Length then an empty one", _post(b"Content-Length: 5\r\nContent-Length:\r\n",
                                               b"hello"), 400),
    # Content-Length values
    *[(f"Content-Length {v!r}", _cl(v), 400)
      for v in (b"abc", b"-1", b"-0", b"+5", b"1.5", b"0x5", b"5e0", b"", b"5 5", b"3, 5",
                b"5\x00", b"0000000000000000005", b"99999999999999999999")],
    # framing
    ("CL then TE", _post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                         b"0\r\n\r\n"), 400),
    ("TE then CL", _post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                         b"0\r\n\r\n"), 400),
    ("TE on HTTP/1.0", b"POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n0\r\n\r\n", 400),
    ("TE on HTTP/1.0 with CL", b"POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    *[(f"TE {v!r}", _te(v), 400)
      for v in (b"chunked, gzip", b"gzip", b"identity", b"xchunked", b"chunkedx",
                b'"chunked"', b"chunked, identity", b"", b"chunked, chunked",
                b"chunked\x0b", b"chunked-false")],
    ("two TE fields, chunked twice", _post(b"Transfer-Encoding: chunked\r\n"
                                           b"Transfer-Encoding: chunked\r\n",
                                           b"5\r\nhello\r\n0\r\n\r\n"), 400),
    ("two TE fields, chunked then gzip", _post(b"Transfer-Encoding: chunked\r\n"
                                               b"Transfer-Encoding: gzip\r\n",
                                               b"5\r\nhello\r\n0\r\n\r\n"), 400),
    *[(f"TE {v!r}", _te(v), 501)
      for v in (b"gzip, chunked", b"deflate, chunked", b"compress, chunked",
                b"x-custom, chunked")],
    ("two TE fields, gzip then chunked", _post(b"Transfer-Encoding: gzip\r\n"
                                               b"Transfer-Encoding: chunked\r\n",
                                               b"5\r\nhello\r\n0\r\n\r\n"), 501),
    # request targets
    *[(f"target {t!r}", _get(t), 400)
      for t in (b"echo", b"*", b"ftp://x/echo", b"ws://x/echo", b"http:/x/echo", b"http//x/echo",
                b"mailto:a@b", b"http://u@h/echo", b"http://u:p@h/echo", b"http://@h/echo",
                b"http:///echo", b"http://", b"https://", b"http://h:99999/echo",
                b"http://h:8o/echo", b"http://a,b/echo", b"http://[::1/echo",
                b"/a\x7f", b"/a\x01", b"/a\x80", b"/a\xff", b"/a\x1b[2J", b"/echo#frag",
                b"/echo?q=1#frag", b"/a%A", b"/a%+A", b"/a%zz", b"/%", b"/a%2", b"/a%G1",
                b"/a%%41", b"/a%-1")],
    ("asterisk-form with POST", b"POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400),
    # RFC 3986 leaves these out of every part of a URI: path, query, authority
    *[(f"target with {c!r} in the path", _get(b"/a" + c + b"b"), 400)
      for c in (b"\\", b'"', b"<", b">", b"{", b"|", b"}", b"^", b"`")],
    *[(f"target with {c!r} in the query", _get(b"/a?q=" + c), 400) for c in (b'"', b"|")],
    ("target with '<' in an absolute-form path", _get(b"http://x/a<"), 400),
    # Expect: only 100-continue is understood (RFC 9110 10.1.1), body pending or not
    *[(f"Expect {v!r}", _post(b"Expect: " + v + b"\r\nContent-Length: 5\r\n"), 417)
      for v in (b"100-continue, x-foo", b"x-foo, 100-continue", b"x-foo", b"100-continue;a=b",
                b"101-continue")],
    ("two Expect fields, one unknown", _post(b"Expect: 100-continue\r\nExpect: x-foo\r\n"
                                             b"Content-Length: 5\r\n"), 417),
    ("Expect unknown on a GET", _get(headers=HOST + b"Expect: x-foo\r\n"), 417),
    # sizes
    ("request line over limit", _get(b"/echo?" + b"a" * MAX_REQUEST_LINE), 414),
    ("request line never ends", b"GET /" + b"a" * (5 * MAX_REQUEST_LINE), 414),
    ("one field line over limit", _get(headers=HOST + b"X-Big: " + b"b" * (MAX_FIELD + 100)
                                       + b"\r\n"), 431),
    ("one long field name", _get(headers=HOST + b"X" * (MAX_FIELD + 100) + b": v\r\n"), 431),
    ("header section over limit", _get(headers=HOST + _fields(5, MAX_FIELD - 100)), 431),
    ("too many fields", _get(headers=HOST + _fields(MAX_HEADERS)), 431),
    ("head never ends", b"GET /echo HTTP/1.1\r\nX-A: " + b"a" * (2 * MAX_HEADER_SIZE), 431),
]

# Body errors: the app is running (it reads the body) when the bytes arrive.
BODY_REFUSED: list[tuple[str, bytes, int]] = [
    *[(f"chunk size {s!r}", _chunked(s + b"\r\nhello\r\n0\r\n\r\n"), 400)
      for s in (b"zz", b"0x5", b"-5", b"+5", b" 5", b"", b"5 5", b"00000000000000005",
                b"10000000000000000", b"fffffffffffffffffff")],
    ("chunk extension with space in name", _chunked(b"5;a b=c\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension with empty name", _chunked(b"5;=x\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension, unterminated quote", _chunked(b'5;a="x\r\nhello\r\n0\r\n\r\n'), 400),
    ("chunk extension with NUL", _chunked(b"5;a\x00b\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension with bare CR", _chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension with bare LF", _chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk extension with empty value", _chunked(b"5;a=\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk data missing CRLF", _chunked(b"5\r\nhelloX0\r\n\r\n"), 400),
    ("chunk data longer than size", _chunked(b"3\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk data ends with bare LF", _chunked(b"5\r\nhello\n0\r\n\r\n"), 400),
    ("chunk data ends with bare CR", _chunked(b"5\r\nhello\r0\r\n\r\n"), 400),
    ("chunk size line ends with bare LF", _chunked(b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk size line ends with bare CR", _chunked(b"5\rhello\r\n0\r\n\r\n"), 400),
    ("last chunk with bare LF", _chunked(b"5\r\nhello\r\n0\n\r\n"), 400),
    ("trailer section ends with bare LF", _chunked(b"5\r\nhello\r\n0\r\nX-T: t\r\n\n"), 400),
    ("trailer line without colon", _chunked(b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n"), 400),
    ("trailer with NUL", _chunked(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n"), 400),
    ("trailer with DEL", _chunked(b"5\r\nhello\r\n0\r\nX-T: a\x7fb\r\n\r\n"), 400),
    ("trailer with obs-fold", _chunked(b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"), 400),
    ("trailer with space before colon", _chunked(b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n"), 400),
    ("trailer with bad name", _chunked(b"5\r\nhello\r\n0\r\nX(T): a\r\n\r\n"), 400),
    ("last chunk then garbage", _chunked(b"5\r\nhello\r\n0\r\n\x01\x02\r\n\r\n"), 400),
    ("Content-Length in trailer", _chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"),
     400),
    ("Transfer-Encoding in trailer", _chunked(b"5\r\nhello\r\n0\r\n"
                                              b"Transfer-Encoding: chunked\r\n\r\n"), 400),
    ("Host in trailer", _chunked(b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n"), 400),
    ("too many trailer fields", _chunked(b"5\r\nhello\r\n0\r\n" + _fields(MAX_HEADERS + 1)
                                         + b"\r\n"), 431),
    ("one trailer line over limit", _chunked(b"5\r\nhello\r\n0\r\nX-T: "
                                             + b"t" * (MAX_FIELD + 100) + b"\r\n\r\n"), 431),
    ("trailer section over limit", _chunked(b"5\r\nhello\r\n0\r\n"
                                            + _fields(5, MAX_FIELD - 100) + b"\r\n"), 431),
]


def _ids(rows):
    return [row[0] for row in rows]


@pytest.mark.parametrize(("name", "raw", "status"), REFUSED, ids=_ids(REFUSED))
def test_refused(server, name, raw, status):
    _refused(server, raw, status)


@pytest.mark.parametrize(("name", "raw", "status"), BODY_REFUSED, ids=_ids(BODY_REFUSED))
def test_bad_body_refused(server, name, raw, status):
    data = _refused(server, raw, status, app_may_run=True)
    assert b"hello" not in data


# ----- served: (name, raw bytes, what the app saw) -------------------------------

SERVED: list[tuple[str, bytes, dict]] = [
    ("HTAB in a field value", _get(headers=HOST + b"X-A: a\tb\r\n"),
     {"headers": {"HTTP_X_A": "a\tb"}}),
    ("obs-text in a field value", _get(headers=HOST + b"X-A: caf\xe9\r\n"),
     {"headers": {"HTTP_X_A": "caf\xe9"}}),
    ("OWS around a field value", _get(headers=HOST + b"X-A: \t v \t\r\n"),
     {"headers": {"HTTP_X_A": "v"}}),
    ("HTTP/1.0 without Host", b"GET /echo HTTP/1.0\r\n\r\n",
     {"protocol": "HTTP/1.0", "host": None}),
    ("identical Content-Length fields merged",
     _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
     {"body": "hello", "content_length": "5"}),
    ("18-digit Content-Length", _cl(b"000000000000000005"), {"body": "hello"}),
    ("Content-Length with OWS", _post(b"Content-Length:  5 \r\n", b"hello"),
     {"body": "hello", "content_length": "5"}),
    ("no Content-Length, no CONTENT_LENGTH", _get(), {"content_length": None, "body": ""}),
    ("chunked body, no CONTENT_LENGTH", _chunked(b"5\r\nhello\r\n0\r\n\r\n"),
     {"content_length": None, "body": "hello"}),
    ("chunk extensions", _chunked(b'2;a=b\r\nhe\r\n3;a="x y";b\r\nllo\r\n0;z=1\r\n\r\n'),
     {"body": "hello"}),
    ("16-digit chunk size", _chunked(b"0000000000000005\r\nhello\r\n0\r\n\r\n"),
     {"body": "hello"}),
    ("uppercase hex chunk size", _chunked(b"A\r\nhellohello\r\n0\r\n\r\n"),
     {"body": "hellohello"}),
    ("absolute-form, other Host", _get(b"http://other.example:8080/p/q?x=1"),
     {"host": "other.example:8080", "path": "/p/q", "query": "x=1"}),
    ("absolute-form, empty path", _get(b"http://other.example"),
     {"host": "other.example", "path": "/"}),
    ("absolute-form https, IPv6", _get(b"https://[::1]:8443/a"),
     {"host": "[::1]:8443", "path": "/a"}),
    ("asterisk-form OPTIONS", _get(b"*", method=b"OPTIONS"),
     {"method": "OPTIONS", "path": "", "uri": "*"}),
    ("valid percent-escapes decoded", _get(b"/a%20b%2Fc%7e%41?q=%20"),
     {"path": "/a b/c~A", "uri": "/a%20b%2Fc%7e%41?q=%20", "query": "q=%20"}),
    ("query is not decoded nor checked", _get(b"/echo?q=%zz&r=%"),
     {"path": "/echo", "query": "q=%zz&r=%"}),
    ("percent-escaped UTF-8 as latin-1", _get(b"/caf%C3%A9"), {"path": "/caf\xc3\xa9"}),
    ("underscore header names dropped",
     _get(headers=HOST + b"X_Under: 1\r\nX-Dash: 2\r\n"),
     {"headers": {"HTTP_X_DASH": "2"}, "absent": ["HTTP_X_UNDER"]}),
    ("leading empty lines skipped", b"\r\n\r\n" + _get(), {"path": "/echo"}),
    ("Host with port", _get(headers=b"Host: x:8080\r\n"), {"host": "x:8080"}),
    ("Host port 65535", _get(headers=b"Host: x:65535\r\n"), {"host": "x:65535"}),
    ("Host IPv6", _get(headers=b"Host: [::1]:80\r\n"), {"host": "[::1]:80"}),
    ("Host IPv4", _get(headers=b"Host: 127.0.0.1\r\n"), {"host": "127.0.0.1"}),
    ("Host IDNA", _get(headers=b"Host: xn--caf-dma.example\r\n"),
     {"host": "xn--caf-dma.example"}),
    ("field count at the limit", _get(headers=HOST + _fields(MAX_HEADERS - 2)),
     {"path": "/echo"}),
    ("field line near the limit", _get(headers=HOST + b"X-Big: " + b"b" * (MAX_FIELD - 100)
                                       + b"\r\n"), {"path": "/echo"}),
    ("repeated non-singleton field", _get(headers=HOST + b"Accept: a/b\r\nAccept: c/d\r\n"),
     {"path": "/echo"}),
    # RFC 9110 5.6.1: empty list elements are ignored
    *[(f"TE {v!r}", _te(v), {"body": "hello", "content_length": None})
      for v in (b", chunked", b"chunked,", b" ,chunked , ", b",,chunked")],
    ("URI sub-delims and gen-delims served", _get(b"/a:b@c!$&'()*+,;=-._~?q=/?:@[]"),
     {"path": "/a:b@c!$&'()*+,;=-._~", "query": "q=/?:@[]"}),
]


@pytest.mark.parametrize(("name", "raw", "want"), SERVED, ids=_ids(SERVED))
def test_served(server, name, raw, want):
    want = dict(want)
    absent = want.pop("absent", [])
    headers = want.pop("headers", {})
    info = _served(server, raw)
    for key, value in want.items():
        assert info[key] == value, (key, info)
    for key, value in headers.items():
        assert info["headers"].get(key) == value, (key, info["headers"])
    for key in absent:
        assert key not in info["keys"], info["keys"]


@pytest.mark.parametrize("method", KNOWN_METHODS)
def test_known_methods_are_served(server, method):
    raw = _get(method=method.encode())
    count = server.stat("request_count")
    data = _exchange(server, raw)
    [(status, _headers, body)] = _responses(data, bodyless=(0,) if method == "HEAD" else ())
    assert status == b"HTTP/1.1 200 OK", data[:300]
    if method == "HEAD":
        assert data.endswith(b"\r\n\r\n")  # no body on the wire
    else:
        assert json.loads(body[8:])["method"] == method
    server.wait_stat("request_count", count + 1)
    _worker_same_and_serving(server)


def test_http_1_2_is_served_as_http_1_1(server):
    """RFC 9110 2.5: a higher minor version is served as 1.1, keep-alive by default."""
    sock = server.connect()
    try:
        reader = H.Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET /echo HTTP/1.2\r\nHost: x\r\n\r\n")
            status, headers, body = reader.response()
            assert status == 200 and headers.get("connection") != "close"
            assert json.loads(body[8:])["protocol"] == "HTTP/1.1"
    finally:
        sock.close()
    _worker_same_and_serving(server)


# ----- special cases ----------------------------------------------------------

TRAILER_HEAD = (b"POST /echo HTTP/1.1\r\nHost: x\r\nX-A: head\r\nTransfer-Encoding: chunked\r\n"
                + CLOSE + b"\r\n")
TRAILERS = (b"X-Trailer: t\r\nX-A: trailer\r\nAuthorization: Basic eDp5\r\n"
            b"X-Forwarded-For: 6.6.6.6\r\nCookie: s=evil\r\n\r\n")


@pytest.mark.parametrize("packets", [
    [TRAILER_HEAD + b"5\r\nhello\r\n0\r\n" + TRAILERS],
    [TRAILER_HEAD, b"5\r\nhello\r\n0\r\n", TRAILERS],
    [TRAILER_HEAD + b"5\r\nhello\r\n", b"0\r\n" + TRAILERS[:10], TRAILERS[10:]],
], ids=["head, body and trailers in one packet", "trailers in their own packet",
        "trailers split"])
def test_trailers_never_reach_the_environ(server, packets):
    sock = server.connect()
    try:
        for packet in packets:
            sock.sendall(packet)
            time.sleep(0.05)
        data = H.recv_all(sock)
    finally:
        sock.close()
    [(status, _headers, body)] = _responses(data)
    assert status == b"HTTP/1.1 200 OK", data[:300]
    info = json.loads(body[8:])
    assert info["body"] == "hello"
    allowed = {"HTTP_HOST", "HTTP_X_A", "HTTP_TRANSFER_ENCODING", "HTTP_CONNECTION"}
    for keys in (info["keys_before_read"], info["keys"]):
        assert "HTTP_HOST" in keys and set(keys) <= allowed, keys
    assert info["headers"]["HTTP_X_A"] == "head"
    _worker_same_and_serving(server)


@pytest.mark.parametrize("value", [b"keep-alive, close", b"close, keep-alive",
                                   b"Keep-Alive,Close"])
def test_http_1_0_connection_close_wins_over_keep_alive(server, value):
    """RFC 9112 9.3: a close option closes, whatever else Connection says."""
    raw = (b"GET /echo HTTP/1.0\r\nConnection: " + value + b"\r\n\r\n"
           b"GET /second HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    mark = server.mark()
    data = _exchange(server, raw)  # returns once the server closed the connection
    [(status, headers, body)] = _responses(data)
    assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close", data[:300]
    assert json.loads(body[8:])["path"] == "/echo"
    _worker_same_and_serving(server)
    assert "/second" not in server.log()[mark:]


@pytest.mark.parametrize("expect", [b"Expect: 100-continue, 100-continue\r\n",
                                    b"Expect: 100-continue\r\nExpect: 100-Continue\r\n",
                                    b"Expect: , 100-continue\r\n"],
                         ids=["one field, twice", "two fields", "empty element"])
def test_expect_100_continue_said_twice_gets_100(server, expect):
    """The client holds its body back until 100 Continue: it must come."""
    sock = server.connect()
    try:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n" + expect
                     + CLOSE + b"\r\n")
        reader = H.Reader(sock, timeout=5)
        assert reader._line() == b"HTTP/1.1 100 Continue"
        assert reader._line() == b""
        sock.sendall(b"hello")
        status, _headers, body = reader.response()
    finally:
        sock.close()
    assert status == 200 and json.loads(body[8:])["body"] == "hello"
    _worker_same_and_serving(server)


def test_te_on_http_1_0_keep_alive_with_a_pipelined_request(server):
    """400 and close: the request behind it is never read as a request."""
    raw = (b"POST /echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
           b"GET /second HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    mark = server.mark()
    _refused(server, raw, 400)  # one response, nothing after it
    assert "/second" not in server.log()[mark:]


def test_smuggled_request_behind_cl_and_te_is_never_served(server):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"
           b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    mark = server.mark()
    _refused(server, raw, 400)
    assert "/smuggled" not in server.log()[mark:]


def _big_head(target: bytes) -> bytes:
    """A normal head of about 9 KB: three fields of 3000 bytes."""
    return (b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 3000) for i in range(3)))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_big_head_pipelined_after_a_large_body_is_served(server, framing):
    """The head limits count only the current head, never a previous request's body."""
    body = b"b" * 102400
    if framing == "chunked":
        first = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"".join(b"1000\r\n" + body[i:i + 4096] + b"\r\n"
                            for i in range(0, len(body), 4096)) + b"0\r\n\r\n")
    else:
        first = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 102400\r\n\r\n" + body
    second = _big_head(b"/second") + CLOSE + b"\r\n"
    data = _exchange(server, first + second)
    [(s1, _h1, b1), (s2, _h2, b2)] = _responses(data)
    assert s1 == s2 == b"HTTP/1.1 200 OK", data[:300]
    assert json.loads(b1[8:])["body_len"] == len(body)
    info = json.loads(b2[8:])
    assert info["path"] == "/second" and "HTTP_X_PAD_2" in info["keys"]
    _worker_same_and_serving(server)


def test_pipelined_heads_are_limited_one_by_one(server):
    """Two heads that are each under the limits, but not together, are both served."""
    one = (_big_head(b"/one") + _fields(MAX_HEADERS - 5) + b"\r\n")
    two = (_big_head(b"/two") + _fields(MAX_HEADERS - 5) + CLOSE + b"\r\n")
    data = _exchange(server, one + two)
    [(s1, _h1, b1), (s2, _h2, b2)] = _responses(data)
    assert s1 == s2 == b"HTTP/1.1 200 OK", data[:300]
    assert json.loads(b1[8:])["path"] == "/one" and json.loads(b2[8:])["path"] == "/two"
    _worker_same_and_serving(server)


def test_empty_lines_between_pipelined_requests_are_skipped(server):
    """RFC 9112 2.2: the CRLF some clients send after a POST body is not a request."""
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\r\n\r\n"
           + _get(b"/second"))
    data = _exchange(server, raw)
    [(s1, _h1, b1), (s2, _h2, b2)] = _responses(data)
    assert s1 == s2 == b"HTTP/1.1 200 OK", data[:300]
    assert json.loads(b1[8:])["body"] == "hello" and json.loads(b2[8:])["path"] == "/second"
    _worker_same_and_serving(server)


def test_unread_body_under_1_mib_is_dropped_and_the_connection_kept(server):
    body = b"u" * 100000
    raw = (b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
           + _get(b"/after"))
    data = _exchange(server, raw)
    [(s1, _h1, b1), (s2, _h2, b2)] = _responses(data)
    assert s1 == s2 == b"HTTP/1.1 200 OK", data[:300]
    assert b1 == str(server.pid).encode()
    assert json.loads(b2[8:])["path"] == "/after"
    _worker_same_and_serving(server)


def test_unread_body_over_1_mib_closes_the_connection(server):
    """The request behind a 2 MiB unread body is never answered."""
    body = b"u" * (2 << 20)
    raw = (b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body
           + _get(b"/after"))
    sock = server.connect()

    def send():
        try:
            sock.sendall(raw)
        except OSError:
            pass

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        data = H.recv_all(sock)
    finally:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # wakes the sender if it is still sending
        sock.close()
        sender.join(5)
    [(status, _headers, body_out)] = _responses(data)
    assert status == b"HTTP/1.1 200 OK" and body_out == str(server.pid).encode()
    _worker_same_and_serving(server)


@pytest.mark.parametrize("raw", [
    _get(b"/validate"),
    _get(b"/validate?a=b&c=%20", method=b"DELETE"),
    b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n" + CLOSE + b"\r\nhi",
    b"POST /validate HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
], ids=["GET", "DELETE with query", "POST", "HTTP/1.0 POST"])
def test_environ_passes_wsgiref_validate(server, raw):
    data = _exchange(server, raw)
    [(status, _headers, body)] = _responses(data)
    assert (status, body) == (b"HTTP/1.1 200 OK", b"ok"), data[:300]
    _worker_same_and_serving(server)
