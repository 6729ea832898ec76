"""Behind a proxy, over real sockets: forwarding headers, PROXY preambles, max_body_size.

Each server is a real worker (http_harness); the test connects from
127.0.0.1, which it makes a trusted proxy or not with trusted_proxies.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import struct
import subprocess

import http_harness as H
import pytest

from brim.wsgi.proxy import PROXY_V2, TrustedProxies

_KEYS = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST", "SERVER_NAME",
         "SERVER_PORT", "HTTP_X_FORWARDED_FOR")


def _app(env, start_response):
    if env["PATH_INFO"] == "/read":
        body = env["wsgi.input"].read()
        out = b"read %d" % len(body)
    else:
        out = json.dumps({k: env.get(k) for k in _KEYS}).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]


@pytest.fixture(scope="module")
def trusting(tmp_path_factory):
    running = H.start(_app, tmp_path_factory.mktemp("trusting"), proxy_protocol=True,
                      max_body_size=1000, client_timeout=2.0)
    yield running
    running.kill()


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory):
    running = H.start(_app, tmp_path_factory.mktemp("untrusting"), proxy_protocol=True,
                      trusted_proxies=TrustedProxies([]))
    yield running
    running.kill()


def _ask(server, raw: bytes) -> tuple[int, bytes]:
    sock = server.connect()
    try:
        sock.sendall(raw)
        status, _headers, body = H.Reader(sock).response()
    finally:
        sock.close()
    return status, body


def _env(server, headers: bytes = b"", preamble: bytes = b"") -> dict:
    status, body = _ask(server, preamble + b"GET /env HTTP/1.1\r\nHost: app.local:8080\r\n"
                        + headers + b"Connection: close\r\n\r\n")
    assert status == 200, body
    return json.loads(body)


def _lives_on(server) -> None:
    """The worker that refused is the one that serves the next request."""
    assert os.waitpid(server.pid, os.WNOHANG) == (0, 0)
    assert _env(server)["REMOTE_ADDR"] == "127.0.0.1"


def test_trusted_x_forwarded_headers_set_the_client_scheme_and_host(trusting):
    env = _env(trusting, b"X-Forwarded-For: 198.51.100.23, 127.0.0.1\r\n"
               b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: shop.example\r\n")
    assert env["REMOTE_ADDR"] == "198.51.100.23" and env["REMOTE_PORT"] == ""
    assert env["wsgi.url_scheme"] == "https"
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == (
        "shop.example", "shop.example", "443")
    trusting.wait_log("NOTICE 198.51.100.23 GET /env 200")


def test_trusted_forwarded_header(trusting):
    mark = trusting.mark()
    env = _env(trusting, b'Forwarded: for="[2001:db8::9]:4711";proto=https;host=a.example\r\n')
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::9", "4711")
    assert env["wsgi.url_scheme"] == "https" and env["HTTP_HOST"] == "a.example"
    trusting.wait_log("NOTICE 2001:db8::9 GET /env 200")
    assert "2001:db8::9" in trusting.log()[mark:]


def test_untrusted_peer_forwarding_headers_are_left_as_they_came(untrusting):
    mark = untrusting.mark()
    env = _env(untrusting, b"X-Forwarded-For: 198.51.100.23\r\nX-Forwarded-Proto: https\r\n"
               b"Forwarded: for=192.0.2.1;proto=https\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "198.51.100.23"
    assert env["HTTP_HOST"] == "app.local:8080"
    # Malformed forwarding headers are nothing to an untrusted peer's request either.
    env = _env(untrusting, b"X-Forwarded-For: not an address\r\n")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    untrusting.wait_log("NOTICE 127.0.0.1 GET /env 200")
    untrusting.mark()
    assert "198.51.100.23" not in untrusting.log()[mark:]


@pytest.mark.parametrize("header", [
    b"X-Forwarded-For: 198.51.100.23, nonsense\r\n",
    b"X-Forwarded-Proto: ftp\r\n",
    b'Forwarded: for="unterminated\r\n',
    b"X-Forwarded-Host: a/b\r\n",
])
def test_trusted_malformed_forwarding_header_is_400(trusting, header):
    status, body = _ask(trusting, b"GET /env HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
    assert status == 400 and b"REMOTE_ADDR" not in body
    _lives_on(trusting)


def _v2(src: str, sport: int) -> bytes:
    family = 0x11 if ipaddress.ip_address(src).version == 4 else 0x21
    dst = "10.0.0.1" if family == 0x11 else "2001:db8::1"
    block = (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
             + struct.pack("!HH", sport, 80))
    return PROXY_V2 + bytes([0x21, family]) + struct.pack("!H", len(block)) + block


def test_proxy_v1_and_v2_preambles_set_the_client(trusting):
    mark = trusting.mark()
    env = _env(trusting, preamble=b"PROXY TCP4 203.0.113.50 10.0.0.1 40001 80\r\n")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.50", "40001")
    env = _env(trusting, preamble=_v2("2001:db8::77", 40002))
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("2001:db8::77", "40002")
    # v2 LOCAL (the proxy's own health check): the peer stands.
    env = _env(trusting, preamble=PROXY_V2 + b"\x20\x00\x00\x00")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    # The preamble's client is untrusted, so its X-Forwarded-For does not count.
    env = _env(trusting, b"X-Forwarded-For: 192.0.2.99\r\n",
               preamble=b"PROXY TCP4 203.0.113.51 10.0.0.1 40003 80\r\n")
    assert env["REMOTE_ADDR"] == "203.0.113.51"
    trusting.wait_log("NOTICE 203.0.113.51 GET /env 200")
    log = trusting.log()[mark:]
    assert "203.0.113.50" in log and "2001:db8::77" in log


def test_proxy_protocol_listener_serves_plain_requests_too(trusting):
    assert _env(trusting)["REMOTE_ADDR"] == "127.0.0.1"
    status, body = _ask(trusting, b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                        b"Connection: close\r\n\r\nabc")
    assert (status, body) == (200, b"read 3")
    sock = trusting.connect()  # several requests behind one preamble
    sock.sendall(b"PROXY TCP4 203.0.113.52 10.0.0.1 1 80\r\n"
                 + b"GET /env HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
    reader = H.Reader(sock)
    for _ in range(2):
        status, _h, body = reader.response()
        assert status == 200 and json.loads(body)["REMOTE_ADDR"] == "203.0.113.52"
    sock.close()


@pytest.mark.parametrize("preamble", [
    b"PROXY TCP4 203.0.113.50 10.0.0.1 40001\r\n",
    b"PROXY TCP9 1 2 3 4\r\n",
    b"PROXY TCP4 203.0.113.50 10.0.0.1 40001 80\n",
    b"PROXY " + b"9" * 200,
    PROXY_V2 + b"\x31\x11\x00\x0c" + b"\0" * 12,
    PROXY_V2 + b"\x21\x11\x00\x02\0\0",
], ids=["v1-short", "v1-family", "v1-bare-lf", "v1-long", "v2-version", "v2-short-block"])
def test_malformed_preamble_is_400_and_the_worker_lives_on(trusting, preamble):
    status, _body = _ask(trusting, preamble + b"GET /env HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400
    _lives_on(trusting)


def test_preamble_from_an_untrusted_peer_is_400(untrusting):
    for preamble in (b"PROXY TCP4 203.0.113.50 10.0.0.1 40001 80\r\n", _v2("192.0.2.8", 9)):
        status, body = _ask(untrusting, preamble + b"GET /env HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 400 and b"203.0.113.50" not in body
        _lives_on(untrusting)
    untrusting.wait_log("not%20in%20trusted_proxies")


def test_declared_body_over_max_body_size_is_413_before_the_app(trusting):
    status, body = _ask(trusting, b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n"
                        b"\r\n" + b"x" * 1001)
    assert status == 413 and b"read" not in body
    status, body = _ask(trusting, b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                        b"Connection: close\r\n\r\n" + b"x" * 1000)
    assert (status, body) == (200, b"read 1000")
    _lives_on(trusting)


def test_chunked_body_growing_over_max_body_size_is_413(trusting):
    chunks = b"".join(b"190\r\n" + b"y" * 400 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    status, body = _ask(trusting, b"POST /read HTTP/1.1\r\nHost: x\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + chunks)
    assert status == 413 and b"read" not in body
    trusting.wait_log("chunked%20body%20over%20max_body_size")
    ok = b"".join(b"190\r\n" + b"y" * 400 + b"\r\n" for _ in range(2)) + b"0\r\n\r\n"
    status, body = _ask(trusting, b"POST /read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n" + ok)
    assert (status, body) == (200, b"read 800")
    _lives_on(trusting)


def test_preamble_before_the_tls_handshake(tmp_path):
    """The preamble comes in the clear; not a byte past it is read, so TLS starts intact."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    client_ctx.check_hostname = False
    running = H.start(_app, tmp_path, proxy_protocol=True, ssl_context=server_ctx)
    try:
        for preamble, client in ((b"PROXY TCP4 203.0.113.60 10.0.0.1 40100 443\r\n",
                                  "203.0.113.60"),
                                 (_v2("2001:db8::60", 40101), "2001:db8::60"), (b"", "127.0.0.1")):
            raw = running.connect()
            raw.sendall(preamble)
            with client_ctx.wrap_socket(raw) as sock:
                sock.sendall(b"GET /env HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                status, _h, body = H.Reader(sock).response()
            assert status == 200 and json.loads(body)["REMOTE_ADDR"] == client
            assert json.loads(body)["wsgi.url_scheme"] == "https"
    finally:
        running.kill()
