"""The proxy examples of docs/proxy.rst, run: real nginx and real HAProxy in front of brimd.

Each example is the file under packages/brimd/examples/proxy/ that the page
includes. The test renders the proxy's file into its own directory with
only what must change here replaced (ports the OS chose, the socket path, a
certificate made with openssl, pid file and logs in the test's directory),
starts the proxy in the foreground, and starts brimd with the example conf
plus one conf that moves it onto a free port or a socket in the test's
directory and logs to the test's syslog listener.

The client connects from 127.0.0.2, so its address differs from the
proxy's (127.0.0.1, or a Unix socket peer), and sends a forged
``X-Forwarded-For``. The app (whoami.py) must see the real client, never
the forged one, and brimd's request log must name the real client too.

nginx and HAProxy are system programs (``.ci/run`` installs them; they live
in /usr/sbin, which a non-root PATH may lack). Where one is missing the
tests for it are skipped, except under CI (``CI`` set), where that fails.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from brimd_harness import alive, free_port, process_tree, wait_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "packages" / "brimd" / "examples" / "proxy"
#: The client's own address: not the proxy's, and not a trusted proxy.
CLIENT = "127.0.0.2"
FORGED = "203.0.113.66"


def _tool(name: str) -> str:
    """The program's path; missing, a skip here and a failure under CI."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    exe = shutil.which(name, path=path)
    if exe is None:
        message = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return exe


def _render(example: str, replace: dict[str, str]) -> str:
    """The example's text with each ``old`` replaced by ``new``; each must be there,
    so an example that changes under the test is noticed, not silently untested."""
    text = (EXAMPLES / example).read_text()
    for old, new in replace.items():
        assert old in text, f"{example} no longer has {old!r}"
        text = text.replace(old, new)
    return text


class _Proxy:
    """One proxy process in the foreground, killed by pid (its whole tree) at the end."""

    def __init__(self, argv: list[str], log: Path, port: int) -> None:
        self.log = log
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: self._listening(port), timeout=15, what=f"{argv[0]} listening")

    def _listening(self, port: int) -> bool:
        if self.proc.poll() is not None:
            out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
            logged = self.log.read_text() if self.log.exists() else ""
            pytest.fail(f"proxy exited {self.proc.returncode}: {out}\n{logged}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        pids = process_tree(self.proc.pid)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def proxies():
    started: list[_Proxy] = []
    yield started
    for proxy in started:
        proxy.stop()


def _start_brimd(brimd, conf: str, transport: str, **brim: object) -> str:
    """brimd on the example conf, moved onto a free port or a socket here; returns
    the upstream address for the proxy (``127.0.0.1:port`` or the socket's path)."""
    if transport == "unix":
        where = str(brimd.root / "app.sock")
        lines = {"ip": f"unix:{where}"}
    else:
        port = free_port()
        where = f"127.0.0.1:{port}"
        lines = {"ip": "127.0.0.1", "port": str(port)}
    lines.update({k: str(v) for k, v in brim.items()})
    lines["log_address"] = f"127.0.0.1:{brimd.syslog.port}"
    override = brimd.write("here.conf", "[brim]\n" + "".join(
        f"{k} = {v}\n" for k, v in lines.items()))
    brimd.confs = [EXAMPLES / conf, override]
    brimd.env["PYTHONPATH"] = os.pathsep.join([str(EXAMPLES), brimd.env["PYTHONPATH"]])
    brimd.start()
    return where


def _ask(port: int, tag: str, tls: bool = False) -> tuple[dict, int]:
    """GET /whoami/<tag> from CLIENT, with a forged X-Forwarded-For; the app's answer
    and the client's own source port."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, source_address=(CLIENT, 0), context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                          source_address=(CLIENT, 0))
    try:
        conn.request("GET", f"/whoami/{tag}", headers={
            "Host": "shop.example", "X-Forwarded-For": FORGED})
        source_port = conn.sock.getsockname()[1]
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
        return json.loads(body), source_port
    finally:
        conn.close()


def _wait_up(port: int, tls: bool = False) -> None:
    """Until brimd answers through the proxy (a proxy may still be checking it)."""
    wait_for(lambda: _ask(port, "up", tls), timeout=20, step=0.2,
             what="brimd answering through the proxy")


# ----- nginx -----------------------------------------------------------------

@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for shop.example, made with the real openssl."""
    cert, key = tmp_path / "shop.pem", tmp_path / "shop.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=shop.example", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _nginx(tmp_path: Path, port: int, upstream: str, certificate: tuple[Path, Path]
           ) -> list[str]:
    """nginx's argv: a main conf of our own around the example site, rendered."""
    server = f"server unix:{upstream};" if upstream.startswith("/") else f"server {upstream};"
    site = _render("nginx-site.conf", {
        "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
        "server unix:/run/brimd/app.sock;": server,
        "/etc/ssl/certs/shop.example.pem": str(certificate[0]),
        "/etc/ssl/private/shop.example.key": str(certificate[1]),
    })
    (tmp_path / "site.conf").write_text(site)
    temp = "".join(f"    {kind}_temp_path {tmp_path}/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # One process (master_process off): it stays root here, so it may reach the
    # socket in the test's directory, and the pid we started is all there is.
    (tmp_path / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/nginx-access.log;
{temp}    include {tmp_path}/site.conf;
}}
""")
    return [_tool("nginx"), "-p", str(tmp_path), "-e", str(tmp_path / "nginx-error.log"),
            "-c", str(tmp_path / "nginx.conf")]


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_nginx_example_passes_the_real_client(brimd, proxies, tmp_path, certificate,
                                              transport):
    _tool("nginx")
    upstream = _start_brimd(brimd, "behind_nginx.conf", transport)
    port = free_port()
    proxies.append(_Proxy(_nginx(tmp_path, port, upstream, certificate),
                          tmp_path / "nginx-error.log", port))
    _wait_up(port, tls=True)
    seen, _ = _ask(port, f"nginx-{transport}", tls=True)
    assert seen["REMOTE_ADDR"] == CLIENT, seen
    assert seen["REMOTE_PORT"] == ""  # X-Forwarded-For carries no port
    assert seen["wsgi.url_scheme"] == "https"  # X-Forwarded-Proto, from nginx's $scheme
    assert seen["HTTP_HOST"] == "shop.example"
    # The forged entry is still there for apps that want the chain, but did not count.
    assert seen["HTTP_X_FORWARDED_FOR"] == f"{FORGED}, {CLIENT}"
    brimd.syslog.wait_line(f"{CLIENT} GET /whoami/nginx-{transport} 200")
    assert not any(f"{FORGED} GET" in line for line in brimd.syslog.lines)


# ----- HAProxy ---------------------------------------------------------------

def _haproxy(tmp_path: Path, example: str, port: int, upstream: str) -> list[str]:
    """haproxy's argv: the example, rendered, run in the foreground (-db)."""
    cfg = _render(example, {
        "bind :80": f"bind 127.0.0.1:{port}",
        "10.0.1.11:8080": upstream,
        "10.0.1.12:8080": upstream,
    })
    path = tmp_path / "haproxy.cfg"
    path.write_text(cfg)
    return [_tool("haproxy"), "-db", "-f", str(path), "-p", str(tmp_path / "haproxy.pid")]


@pytest.mark.parametrize("transport", ["unix", "tcp"])
@pytest.mark.parametrize(("example", "version"), [("haproxy-http.cfg", 2),
                                                 ("haproxy-tcp.cfg", 1)])
def test_haproxy_example_passes_the_real_client(brimd, proxies, tmp_path, example, version,
                                                transport):
    _tool("haproxy")
    assert f"send-proxy{'-v2' if version == 2 else ''} " in (EXAMPLES / example).read_text()
    # HAProxy runs on this host here, not on the example's 10.0.0.0/24.
    upstream = _start_brimd(brimd, "behind_haproxy.conf", transport,
                            trusted_proxies="127.0.0.1 unix")
    port = free_port()
    proxies.append(_Proxy(_haproxy(tmp_path, example, port, upstream),
                          tmp_path / "haproxy.log", port))
    _wait_up(port)
    tag = f"haproxy-v{version}-{transport}"
    seen, source_port = _ask(port, tag)
    # The preamble names the client and its port; the forged header, sent on
    # as the client wrote it, counts for nothing: the client is not a proxy.
    assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == (CLIENT, str(source_port)), seen
    assert seen["HTTP_X_FORWARDED_FOR"] == FORGED
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["HTTP_HOST"] == "shop.example"
    brimd.syslog.wait_line(f"{CLIENT} GET /whoami/{tag} 200")
    assert not any(f"{FORGED} GET" in line for line in brimd.syslog.lines)


def test_a_preamble_from_an_untrusted_proxy_is_refused(brimd, proxies, tmp_path):
    """The example as written trusts 10.0.0.0/24 only: HAProxy here gets a 400."""
    _tool("haproxy")
    upstream = _start_brimd(brimd, "behind_haproxy.conf", "tcp")
    port = free_port()
    proxies.append(_Proxy(_haproxy(tmp_path, "haproxy-tcp.cfg", port, upstream),
                          tmp_path / "haproxy.log", port))
    deadline = time.monotonic() + 20
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                          source_address=(CLIENT, 0))
        try:
            conn.request("GET", "/whoami/refused")
            response = conn.getresponse()
            status, body = response.status, response.read()
        except (OSError, http.client.HTTPException):
            status, body = 0, b""  # HAProxy may not have found brimd up yet
        finally:
            conn.close()
        if status == 400 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 400, (status, body)
    assert b"trusted_proxies" in body
