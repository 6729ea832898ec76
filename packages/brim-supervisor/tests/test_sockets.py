"""Listening sockets and the TLS context, with real sockets on loopback."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from brim.supervisor import SupervisorError, listen_tcp, listen_udp, server_ssl_context


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_tcp_on_ipv4_loopback_accepts():
    sock = listen_tcp("127.0.0.1", 0, backlog=8, retry=0)
    with sock:
        port = sock.getsockname()[1]
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = sock.accept()
            client.sendall(b"hi")
            assert conn.recv(2) == b"hi"
            conn.close()


def test_star_is_dual_stack():
    sock = listen_tcp("*", 0, retry=0)
    with sock:
        port = sock.getsockname()[1]
        targets = [("127.0.0.1", socket.AF_INET)]
        if sock.family == socket.AF_INET6:
            assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0
            if _has_ipv6_loopback():
                targets.append(("::1", socket.AF_INET6))
        else:
            assert sock.getsockname()[0] == "0.0.0.0"
        sock.settimeout(5)
        for host, family in targets:
            with socket.socket(family, socket.SOCK_STREAM) as client:
                client.settimeout(5)
                client.connect((host, port))
                conn, _ = sock.accept()
                conn.close()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_ipv6_literal(host):
    with listen_tcp(host, 0, retry=0) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockname()[0] == "::1"


def test_address_in_use_is_retried_until_free():
    holder = listen_tcp("127.0.0.1", 0, retry=0)
    port = holder.getsockname()[1]
    timer = threading.Timer(0.6, holder.close)
    timer.start()
    try:
        started = time.monotonic()
        sock = listen_tcp("127.0.0.1", port, retry=5.0)
        took = time.monotonic() - started
        sock.close()
    finally:
        timer.cancel()
        holder.close()
    assert 0.5 < took < 3.0


def test_address_in_use_gives_a_clear_error_after_the_retry_time():
    with listen_tcp("127.0.0.1", 0, retry=0) as holder:
        port = holder.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(SupervisorError) as info:
            listen_tcp("127.0.0.1", port, retry=0.5)
        assert 0.4 < time.monotonic() - started < 2.0
    assert str(info.value).startswith(f"cannot bind 127.0.0.1:{port}: address already in use")


@pytest.mark.parametrize(
    ("host", "port", "message"),
    [
        ("192.0.2.1", 0, "cannot bind 192.0.2.1:0: cannot assign requested address"),
        ("no-such-host.invalid", 80, "cannot bind no-such-host.invalid:80: unknown host"),
        ("127.0.0.1", 70000, "cannot bind 127.0.0.1:70000: invalid port"),
    ],
)
def test_bad_addresses_fail_at_once_with_a_clear_message(host, port, message):
    started = time.monotonic()
    with pytest.raises(SupervisorError, match="^" + message):
        listen_tcp(host, port, retry=10)
    assert time.monotonic() - started < 5


def test_udp_round_trip():
    with listen_udp("127.0.0.1", 0, retry=0) as sock:
        sock.settimeout(5)
        port = sock.getsockname()[1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"datagram", ("127.0.0.1", port))
            data, _addr = sock.recvfrom(100)
        assert data == b"datagram"


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=other", "-keyout", str(d / "other.pem"), "-out", str(d / "other.crt")],
        check=True, capture_output=True, timeout=60,
    )
    return d


def test_tls_context_serves_a_real_handshake(cert_pair):
    ctx = server_ssl_context(str(cert_pair / "cert.pem"), str(cert_pair / "key.pem"))
    with listen_tcp("127.0.0.1", 0, retry=0) as sock:
        port = sock.getsockname()[1]
        result = {}

        def serve():
            conn, _ = sock.accept()
            with ctx.wrap_socket(conn, server_side=True) as tls:
                result["got"] = tls.recv(5)
                tls.sendall(b"world")

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        client_ctx = ssl.create_default_context(cafile=str(cert_pair / "cert.pem"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello")
            assert tls.recv(5) == b"world"
        t.join(5)
        assert result["got"] == b"hello"


def test_tls_errors_are_clear(cert_pair, tmp_path):
    cert, key = str(cert_pair / "cert.pem"), str(cert_pair / "key.pem")
    with pytest.raises(SupervisorError, match=r"^cannot load TLS certificate .*nope.pem: no such"):
        server_ssl_context(str(tmp_path / "nope.pem"), key)
    with pytest.raises(SupervisorError, match=r"^cannot load TLS key .*nokey.pem: no such"):
        server_ssl_context(cert, str(tmp_path / "nokey.pem"))
    with pytest.raises(SupervisorError, match="key does not match the certificate"):
        server_ssl_context(cert, str(cert_pair / "other.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SupervisorError, match=r"^cannot load TLS certificate and key"):
        server_ssl_context(str(junk), key)
