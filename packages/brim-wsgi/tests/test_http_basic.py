"""The worker serving well-formed requests: PEP 3333, keep-alive, chunking, HEAD, 1.0."""

from __future__ import annotations

import gc
import http.client
import json
import subprocess
import wsgiref.validate

import http_harness as H
import pytest

# Every test runs on each worker model (conftest.py: worker_model).
pytestmark = pytest.mark.usefixtures("worker_model")


def _echo_app(env, start_response):
    """Echoes method, path, query and body; reads the body the validator's way."""
    if env.get("CONTENT_LENGTH"):
        body = env["wsgi.input"].read(int(env["CONTENT_LENGTH"]))
    else:
        body = b"".join(iter(lambda: env["wsgi.input"].read(1000), b""))
    info = {"method": env["REQUEST_METHOD"], "path": env["PATH_INFO"],
            "query": env["QUERY_STRING"], "body": body.decode("latin-1"),
            "protocol": env["SERVER_PROTOCOL"],
            "content_length": env.get("CONTENT_LENGTH"),
            "brim": sorted(k for k in env if k.startswith("brim.")),
            "txn": env["brim.txn"], "ua": env.get("HTTP_USER_AGENT")}
    out = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture
def validated(tmp_path):
    server = H.start(wsgiref.validate.validator(_echo_app), tmp_path)
    yield server
    server.kill()


def test_validator_get_post_chunked_head_keepalive(validated):
    conn = http.client.HTTPConnection("127.0.0.1", validated.port, timeout=H.WAIT)
    conn.request("GET", "/a%20b/c?x=1&y=2", headers={"User-Agent": "tester"})
    resp = conn.getresponse()
    info = json.loads(resp.read())
    assert resp.status == 200
    assert info["path"] == "/a b/c"
    assert info["query"] == "x=1&y=2"
    assert info["protocol"] == "HTTP/1.1"
    assert info["ua"] == "tester"
    assert len(info["txn"]) == 32
    assert info["brim"] == sorted([
        "brim.server", "brim.start", "brim.logger", "brim.txn", "brim.additional_request_log_info",
        "brim.stats", "brim.json_dumps", "brim.json_loads"])

    conn.request("POST", "/post", body=b"hello body")
    resp = conn.getresponse()
    info = json.loads(resp.read())
    assert (resp.status, info["body"], info["content_length"]) == (200, "hello body", "10")

    conn.request("POST", "/chunked", body=iter([b"abc", b"defgh", b"", b"ij"]),
                 encode_chunked=True, headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    info = json.loads(resp.read())
    assert (resp.status, info["body"], info["content_length"]) == (200, "abcdefghij", None)

    conn.request("HEAD", "/head")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b""
    assert int(resp.getheader("Content-Length")) > 0

    for i in range(5):  # the same connection keeps serving
        conn.request("GET", f"/again/{i}")
        resp = conn.getresponse()
        assert json.loads(resp.read())["path"] == f"/again/{i}"
    conn.close()
    log = validated.wait_log("/again/4")
    assert "Traceback" not in log
    assert "AssertionError" not in log
    assert validated.stat("request_count") == 9
    assert validated.stat("status_2xx_count") == 9


def _seed_hello(env, start_response):
    """The seed document's app, Python 2 style: a str body and str headers."""
    body = "Hello World!\n"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return body


def test_seed_app_returning_str_works_with_curl(tmp_path):
    server = H.start(_seed_hello, tmp_path)
    try:
        out = subprocess.run(["curl", "-si", "--max-time", "5",
                              f"http://127.0.0.1:{server.port}/helloworld"],
                             capture_output=True, timeout=H.WAIT, check=True).stdout
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert b"Content-Length: 13" in head
        assert b"Date: " in head
        assert body == b"Hello World!\n"
    finally:
        server.kill()


def _stream(env, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    n = int(env["QUERY_STRING"] or 0)
    if env["PATH_INFO"] == "/text":
        yield "caf\u00e9 "  # str pieces break PEP 3333: refused with a 500
        return
    for i in range(n):
        yield b"%06d\n" % i


def _streams(env, start_response):
    """Bodies without Content-Length: a small list gets a length; generators are chunked."""
    if env["PATH_INFO"] == "/list":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%06d\n" % i for i in range(int(env["QUERY_STRING"]))]
    return _stream(env, start_response)


def test_output_lists_joined_generators_chunked(tmp_path):
    server = H.start(_streams, tmp_path, wsgi_output_iter_chunk_size=1000)
    try:
        sock = server.connect()
        reader = H.Reader(sock)
        sock.sendall(b"GET /list?3 HTTP/1.1\r\nHost: x\r\n\r\n")
        _status, headers, body = reader.response()
        assert headers.get("content-length") == "21"
        assert "transfer-encoding" not in headers
        assert body == b"000000\n000001\n000002\n"
        sock.sendall(b"GET /small?3 HTTP/1.1\r\nHost: x\r\n\r\n")
        _status, headers, body = reader.response()
        assert headers["transfer-encoding"] == "chunked"  # streamed: each block as yielded
        assert body == b"000000\n000001\n000002\n"
        sock.sendall(b"GET /big?2000 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(H.WAIT)
        _status, headers, body = reader.response()
        assert headers["transfer-encoding"] == "chunked"
        assert body == b"".join(b"%06d\n" % i for i in range(2000))
        sock.sendall(b"GET /text HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _body = reader.response()
        assert (status, headers["connection"]) == (500, "close")
        server.wait_log("broke a rule: body piece is str, not bytes")
        sock.close()
        sock = server.connect()
        reader = H.Reader(sock)
        sock.sendall(b"GET /big?300 HTTP/1.0\r\n\r\n")  # 1.0: no chunks; close ends it
        _status, headers, body = reader.response()
        assert "transfer-encoding" not in headers
        assert body == b"".join(b"%06d\n" % i for i in range(300))
        sock.close()
    finally:
        server.kill()


def _hello(env, start_response):
    start_response("200 OK", [("Content-Length", "5"), ("Content-Type", "text/plain")])
    return [b"hello"]


@pytest.fixture
def hello(tmp_path):
    server = H.start(_hello, tmp_path)
    yield server
    server.kill()


def test_pipelined_requests_answered_in_order(hello):
    sock = hello.connect()
    sock.sendall(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                 b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reader = H.Reader(sock)
    for _ in range(3):
        assert reader.response()[:1] == (200,)
    assert H.recv_all(sock) == b""
    text = hello.wait_log(" /3 ")
    assert text.index(" /1 ") < text.index(" /2 ") < text.index(" /3 ")


def test_http10_keepalive_only_when_asked(hello):
    sock = hello.connect()
    sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    reader = H.Reader(sock)
    status, headers, body = reader.response()
    assert headers["connection"] == "keep-alive"
    sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
    status, headers, body = reader.response()
    assert (status, headers["connection"], body) == (200, "close", b"hello")
    assert H.recv_all(sock) == b""


def test_expect_100_continue(tmp_path):
    server = H.start(_echo_app, tmp_path)
    try:
        sock = server.connect()
        sock.sendall(b"PUT /up HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        reader = H.Reader(sock)
        assert reader._line() == b"HTTP/1.1 100 Continue"
        assert reader._line() == b""
        sock.sendall(b"data")
        _status, _headers, body = reader.response()
        assert json.loads(body)["body"] == "data"
        sock.close()
    finally:
        server.kill()


def test_curl_post_and_keepalive(hello):
    url = f"http://127.0.0.1:{hello.port}/x"
    out = subprocess.run(["curl", "-sv", "--max-time", "5", url, url, "--data-binary", "abc"],
                         capture_output=True, timeout=H.WAIT, check=True)
    assert out.stdout == b"hellohello"
    assert b"Re-using existing connection" in out.stderr or b"Reusing" in out.stderr


class _FakeBrimd:
    """Stands for brimd's Server object: the worker hands it to apps as env['brim']."""

    label = "the-server"


def _uses_server(env, start_response):
    out = env["brim"].label.encode() + b" " + str(env["brim.server"] is env["brim"]).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


def test_env_brim_is_the_server_object(tmp_path):
    server = H.start(_uses_server, tmp_path, server_obj=_FakeBrimd())
    try:
        sock = server.connect()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert H.Reader(sock).response()[2] == b"the-server True"
    finally:
        server.kill()


def _input_app(env, start_response):
    """Reads wsgi.input every way PEP 3333 offers, per the query string."""
    stream = env["wsgi.input"]
    how = env["QUERY_STRING"]
    if how == "lines":
        parts = [stream.readline(), stream.readline(3), stream.readline(), *stream.readlines()]
    else:
        parts = list(stream)
    out = json.dumps([p.decode() for p in parts]).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


@pytest.mark.parametrize("chunked", [False, True])
def test_wsgi_input_readline_readlines_and_iteration(tmp_path, chunked):
    body = b"first\nsecond line\nthird\nno newline at the end"
    server = H.start(_input_app, tmp_path, wsgi_input_iter_chunk_size=10)
    try:
        for how in ("lines", "iter"):
            sock = server.connect()
            if chunked:
                framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7])
                                  for i in range(0, len(body), 7)) + b"0\r\n\r\n"
                head = b"Transfer-Encoding: chunked\r\n"
            else:
                framed, head = body, b"Content-Length: %d\r\n" % len(body)
            sock.sendall(b"POST /in?" + how.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head
                         + b"\r\n" + framed)
            status, _headers, out = H.Reader(sock).response()
            sock.close()
            parts = json.loads(out)
            assert status == 200
            assert "".join(parts) == body.decode()
            if how == "lines":
                assert parts[:4] == ["first\n", "sec", "ond line\n", "third\n"]
                assert parts[4:] == ["no newline at the end"]
            else:
                # Iteration hands out pieces of wsgi_input_iter_chunk_size bytes.
                assert all(len(p) <= 10 for p in parts) and len(parts) >= 5
    finally:
        server.kill()


def _collect_app(env, start_response):
    """GET /collect runs the cyclic garbage collector and answers how many objects it freed."""
    body = str(gc.collect()).encode() if env["PATH_INFO"] == "/collect" else b"ok"
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def test_a_connection_that_ends_is_freed_at_once_not_left_to_the_collector(tmp_path):
    """No reference cycle keeps a finished connection alive until a gc pass.

    Behind a proxy without keep-alive every request is a connection; one
    that ends in a cycle (it held its body object, which held it) is freed
    only by the cyclic collector, whose passes then come every few hundred
    connections and, for the oldest generation, take ~15 ms.
    """
    server = H.start(_collect_app, tmp_path)
    try:
        def get(path: str) -> bytes:
            with server.connect() as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                             .encode())
                return H.recv_all(sock).partition(b"\r\n\r\n")[2]

        get("/collect")  # whatever starting up left behind
        for _ in range(300):
            assert get("/") == b"ok"
        freed = int(get("/collect"))
        # With the cycle: about 4 objects a connection, 544 here (the passes
        # the collector made on its own meanwhile freed the rest); the
        # allowance is for the odd object the engine's machinery leaves.
        assert freed < 60
    finally:
        server.kill()
