"""TLS options on a real brimd: client certificates (mTLS), minimum version, ALPN, and
certificates renewed on reload. The CA and certificates are made with openssl."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from brimd_harness import free_port, wait_for

APP = """
import json

def app(env, start_response):
    keys = ("SSL_CLIENT_VERIFY", "SSL_CLIENT_S_DN", "SSL_CLIENT_I_DN", "SSL_PROTOCOL",
            "wsgi.url_scheme")
    body = json.dumps({k: env.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def _make_pki(root: Path) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all from the CA."""
    paths = {name: str(root / f"{name}.pem") for name in (
        "ca", "ca_key", "server", "server_key", "client", "client_key", "other", "other_key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-days", "1", "-subj", "/O=Brim Test/CN=Brim Test CA",
             "-keyout", paths["ca_key"], "-out", paths["ca"])
    for name, subj, ext in (
            ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"),
            ("client", "/C=DE/O=Brim Test/CN=alice, the tester", "extendedKeyUsage=clientAuth"),
            ("other", "/CN=127.0.0.1/OU=renewed", "subjectAltName=IP:127.0.0.1")):
        csr = str(root / f"{name}.csr")
        _openssl("req", "-new", *ec, "-subj", subj, "-keyout", paths[f"{name}_key"],
                 "-out", csr)
        extfile = root / f"{name}.ext"
        extfile.write_text(ext + "\n")
        _openssl("x509", "-req", "-in", csr, "-CA", paths["ca"], "-CAkey", paths["ca_key"],
                 "-CAcreateserial", "-days", "1", "-extfile", str(extfile), "-out", paths[name])
    return paths


def _client(pki: dict[str, str], cert: bool = True,
            max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=pki["ca"])
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if cert:
        ctx.load_cert_chain(pki["client"], pki["client_key"])
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def _get(port: int, ctx: ssl.SSLContext) -> tuple[dict, str | None, dict]:
    """GET / over TLS: the app's JSON, the ALPN protocol chosen and the server's certificate."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        alpn = tls.selected_alpn_protocol()
        peer = tls.getpeercert()
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return json.loads(body), alpn, peer


def _refused(port: int, ctx: ssl.SSLContext) -> bool:
    """Whether the server refuses this client: the handshake or the first read fails."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.recv(65536) == b""  # TLS 1.3 reports a refused cert on the first read
    except (ssl.SSLError, ConnectionError):
        return True


@pytest.fixture
def pki(tmp_path) -> dict[str, str]:
    return _make_pki(tmp_path)


_APP_SECTION = "[app]\ncall = tlsapp:app\n"


@pytest.mark.slow
def test_tls_conf_errors_are_named(brimd, pki):
    brimd.write("tlsapp.py", APP)
    tls = {"port": free_port(), "certfile": pki["server"], "keyfile": pki["server_key"]}
    brimd.use(brimd.local(**tls, client_cert="required"), "[wsgi]\napps = app\n", _APP_SECTION)
    done = brimd.run("start")
    assert done.returncode == 1 and "[brim] client_cert: needs cafile" in done.stderr
    brimd.use(brimd.local(**tls, cafile=pki["ca"], client_cert="optional",
                          ciphers="NOPE-NOTHING"), "[wsgi]\napps = app\n", _APP_SECTION)
    done = brimd.run("start")
    assert done.returncode == 1 and "[wsgi] ciphers:" in done.stderr


@pytest.mark.slow
def test_mtls_required_and_optional_min_version_alpn(brimd, pki):
    brimd.write("tlsapp.py", APP)
    strict, relaxed = free_port(), free_port()
    brimd.use(brimd.local(certfile=pki["server"], keyfile=pki["server_key"], cafile=pki["ca"],
                          start_check=0),
              f"[wsgi#strict]\napps = app\nport = {strict}\nclient_cert = required\n"
              "tls_min_version = TLSv1.3\n",
              f"[wsgi#relaxed]\napps = app\nport = {relaxed}\nclient_cert = optional\n",
              _APP_SECTION)
    brimd.start()
    worker = wait_for(lambda: brimd.workers("wsgi#strict"), what="a worker")
    env, alpn, _peer = _get(strict, _client(pki))
    assert env["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert env["SSL_CLIENT_S_DN"] == "CN=alice\\, the tester,O=Brim Test,C=DE"
    assert env["SSL_CLIENT_I_DN"] == "CN=Brim Test CA,O=Brim Test"
    assert env["SSL_PROTOCOL"] == "TLSv1.3" and env["wsgi.url_scheme"] == "https"
    assert alpn == "http/1.1"
    # No client certificate, or TLS 1.2 only: refused; the worker lives on and serves.
    assert _refused(strict, _client(pki, cert=False))
    assert _refused(strict, _client(pki, max_version=ssl.TLSVersion.TLSv1_2))
    assert _get(strict, _client(pki))[0]["SSL_CLIENT_VERIFY"] == "SUCCESS"
    assert brimd.workers("wsgi#strict") == worker
    # Optional: served without a certificate; a verified one is still shown.
    assert _get(relaxed, _client(pki, cert=False))[0]["SSL_CLIENT_VERIFY"] == "NONE"
    env = _get(relaxed, _client(pki, max_version=ssl.TLSVersion.TLSv1_2))[0]
    assert env["SSL_CLIENT_S_DN"].startswith("CN=alice") and env["SSL_PROTOCOL"] == "TLSv1.2"


@pytest.mark.slow
def test_reload_serves_a_renewed_certificate(brimd, pki):
    brimd.write("tlsapp.py", APP)
    port = free_port()
    brimd.use(brimd.local(port=port, certfile=pki["server"], keyfile=pki["server_key"],
                          start_check=0), "[wsgi]\napps = app\n", _APP_SECTION)
    brimd.start()

    def serves(ou: str | None) -> bool:
        subject = _get(port, _client(pki, cert=False))[2]["subject"]
        return (("organizationalUnitName", ou) in [p for rdn in subject for p in rdn]) == bool(ou)

    assert serves(None)
    # Renew the certificate in place; reload serves the new one.
    Path(pki["server"]).write_bytes(Path(pki["other"]).read_bytes())
    Path(pki["server_key"]).write_bytes(Path(pki["other_key"]).read_bytes())
    assert brimd.run("reload").returncode == 0
    wait_for(lambda: serves("renewed"), what="the renewed certificate")
