"""Every example under packages/brimd/examples, run the way its docs page says.

Each test finds the page's ``brimd -c packages/brimd/examples/<name>.conf -p -
foreground`` line, runs it from the root of the repository with the page's
PYTHONPATH, adds one conf file that only moves the example onto a free port
(as a user would with a second ``-c``), talks to it as the page does, and
checks that the page shows the output the test got.
"""

from __future__ import annotations

import json
import re
import shlex
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from brimd_harness import BRIMD, curl, free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "packages" / "brimd" / "examples"
DOCS = ROOT / "docs"


def _doc(page: str) -> str:
    return " ".join((DOCS / page).read_text().split())


def _run_as_documented(brimd, page: str, conf: str, section: str, port: int
                       ) -> subprocess.Popen:
    """Start the example as ``page`` says, with ``[section] port`` moved to ``port``."""
    text = (DOCS / page).read_text()
    line = re.search(rf"^\s*\$ (.*brimd -c packages/brimd/examples/{re.escape(conf)} "
                     r"-p - foreground)( &)?$", text, re.M)
    assert line, f"{page} shows no command running {conf}"
    words = shlex.split(line.group(1))
    env = dict(brimd.env)
    while "=" in words[0]:  # VAR=value before the command
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "brimd"
    override = brimd.write("port.conf", f"[{section}]\nport = {port}\n")
    at = words.index("-p")
    argv = [*BRIMD, *words[1:at], "-c", str(override), *words[at:]]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    brimd.foreground.append(proc)
    return proc


def _stop(proc: subprocess.Popen) -> str:
    """SIGTERM, as Ctrl-C's twin; returns what brimd logged to stderr."""
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return err


def _tcp(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        reply = b""
        while chunk := s.recv(100):
            reply += chunk
    return reply


def _udp(port: int, data: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(data, ("127.0.0.1", port))
        try:
            return s.recvfrom(100)[0]
        except TimeoutError:
            return None


def _tcp_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_every_conf_the_docs_name_is_a_file():
    """Confs named by path, or by bare name where an example is run (a line that puts
    the examples folder on PYTHONPATH, or an example's own docstring)."""
    named = set()
    for page in [*DOCS.glob("*.rst"), *EXAMPLES.glob("*.py"), ROOT / "README.md",
                 *ROOT.glob("packages/*/README.md")]:
        text = page.read_text()
        named.update(re.findall(r"packages/brimd/examples/([\w.-]+\.conf)", text))
        for line in text.splitlines():
            if page.parent == EXAMPLES or "PYTHONPATH=packages/brimd/examples" in line:
                named.update(re.findall(r"-c ([\w.-]+\.conf)\b", line))
    assert named >= {"quickstart.conf", "helloworld.conf", "upper.conf", "lookup.conf",
                     "disk.conf", "tcp_echo.conf", "udp_echo.conf"}
    missing = sorted(n for n in named if not (EXAMPLES / n).is_file())
    assert not missing, f"confs the docs name but examples/ lacks: {missing}"


@pytest.mark.slow
def test_helloworld(brimd):
    port = free_port()
    proc = _run_as_documented(brimd, "wsgi.rst", "helloworld.conf", "brim", port)
    url = f"http://127.0.0.1:{port}/hello"
    wait_for(lambda: curl("-s", url).stdout == b"Hello World!\n", what="hello")
    assert "$ curl http://127.0.0.1:8080/hello Hello World!" in _doc("wsgi.rst")
    stats = json.loads(curl("-s", f"http://127.0.0.1:{port}/stats").stdout)
    assert stats["helloworld.requests"] >= 1
    _stop(proc)


def test_tcp_echo(brimd):
    port = free_port()
    proc = _run_as_documented(brimd, "tcp.rst", "tcp_echo.conf", "tcp#echo", port)
    wait_for(lambda: _tcp_up(port), what="tcp echo")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello tcp\n")
        reply = s.recv(100)
    assert reply == b"hello tcp\n"
    assert f'print(s.recv(100))" {reply!r}' in _doc("tcp.rst")
    _stop(proc)


@pytest.mark.slow
def test_line_upper(brimd):
    port = free_port()
    proc = _run_as_documented(brimd, "tcp.rst", "upper.conf", "tcp#upper", port)
    wait_for(lambda: _tcp_up(port), what="line upper")
    reply = _tcp(port, b"hello there\nsecond line\nQUIT\n")
    assert reply == b"HELLO THERE\nSECOND LINE\nBYE\n"
    assert f"print(reply) # {reply!r}" in _doc("tcp.rst")
    # max_line = 100: a longer line is refused, ended by a newline or not.
    assert _tcp(port, b"ok\n" + b"x" * 150 + b"\nnever answered\n") == (
        b"OK\nERROR line too long\n")
    assert _tcp(port, b"y" * 101) == b"ERROR line too long\n"
    assert _tcp(port, b"z" * 100 + b"\nQUIT\n") == b"Z" * 100 + b"\nBYE\n"
    err = _stop(proc)
    assert "WARNING tcp#upper: line over 100 bytes from 127.0.0.1 txn:" in err
    assert "ERROR line too long" in _doc("tcp.rst")


def test_udp_echo(brimd):
    port = free_port(socket.SOCK_DGRAM)
    proc = _run_as_documented(brimd, "udp.rst", "udp_echo.conf", "udp#echo", port)
    wait_for(lambda: _udp(port, b"hello udp") == b"hello udp", what="udp echo")
    assert "(b'hello udp', ('127.0.0.1', 8082))" in _doc("udp.rst")
    _stop(proc)


@pytest.mark.slow
def test_lookup(brimd):
    port = free_port(socket.SOCK_DGRAM)
    proc = _run_as_documented(brimd, "udp.rst", "lookup.conf", "udp#lookup", port)
    wait_for(lambda: _udp(port, b"www") is not None, what="lookup")
    replies = [_udp(port, key) for key in (b"www", b"mail", b"ftp")]
    assert replies == [b"192.0.2.10\n", b"192.0.2.25\n", b"?\n"]
    assert "# " + ", ".join(repr(r) for r in replies) in _doc("udp.rst")
    _stop(proc)


def test_disk_watch(brimd):
    port = free_port()
    proc = _run_as_documented(brimd, "daemons.rst", "disk.conf", "brim", port)
    url = f"http://127.0.0.1:{port}/stats"

    def disk() -> dict:
        done = curl("-s", url)
        return json.loads(done.stdout).get("daemon_disk", {}) if done.returncode == 0 else {}

    wait_for(lambda: disk().get("disk.checked"), what="the daemon's first check")
    seen = disk()
    assert seen["disk.free_bytes"] > 0 and seen["start_time"] > 0
    page = _doc("daemons.rst")
    assert '"daemon_disk": {' in page and '"disk.free_bytes":' in page
    _stop(proc)


@pytest.mark.parametrize("conf", sorted(p.name for p in EXAMPLES.glob("*.conf")))
def test_every_example_conf_is_shown_in_the_docs(conf):
    """Each conf file is what a page shows (included from the file, so it cannot drift)."""
    pages = [p for p in DOCS.glob("*.rst")
             if f"literalinclude:: ../packages/brimd/examples/{conf}" in p.read_text()]
    readmes = [p for p in [ROOT / "README.md", *ROOT.glob("packages/*/README.md")]
               if f"examples/{conf}" in p.read_text()]
    assert pages or readmes, f"{conf} is shown on no docs page"


@pytest.mark.slow
def test_quickstart_hint_log_sink_file_puts_the_log_in_that_file(brimd):
    """The quick-start conf's hint for a log file, as written: only the file moves."""
    text = (EXAMPLES / "quickstart.conf").read_text()
    hint = re.findall(r"^#\s+(log_sink = file|log_file = \S+)$", text, re.M)
    assert hint == ["log_sink = file", "log_file = /tmp/brimd.log"]
    log = brimd.root / "brimd.log"
    port = free_port()
    override = brimd.write("mine.conf", f"[brim]\nport = {port}\n{hint[0]}\nlog_file = {log}\n")
    brimd.confs = [EXAMPLES / "quickstart.conf", override]
    brimd.start()
    assert curl("-s", f"http://127.0.0.1:{port}/echo", "--data-binary", "x").stdout == b"x"
    wait_for(lambda: log.exists() and "POST /echo 200" in log.read_text(), what="the log line")
    assert brimd.run("stop").returncode == 0
