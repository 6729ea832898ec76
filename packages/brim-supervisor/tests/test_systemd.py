"""systemd's protocols, spoken for real: a notify socket the test binds and
reads itself, and sockets passed by systemd's own ``systemd-socket-activate``.

Nothing is mocked: notifications travel as datagrams over a unix socket, and
the activated program is a separate process that got its fds the way a
service started by systemd does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from brim.supervisor import ActivatedSocket, Notifier, SupervisorError, activated_sockets

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None,
    reason="needs systemd-socket-activate (Debian package systemd; .ci/run installs it)")


# -- notifications -------------------------------------------------------------


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket bound at a path, playing systemd's NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield path, sock
    sock.close()


def _lines(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


@pytest.mark.timeout(30)
def test_every_message_arrives_as_exact_lines(notify_path):
    path, sock = notify_path
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000", "OTHER": "kept"}
    notifier = Notifier.from_environment(environ=env)
    assert env == {"OTHER": "kept"}, "the variables are taken out of the environment"
    assert notifier.enabled and notifier.address == path
    assert notifier.watchdog_interval == 4.0
    assert notifier.environment() == {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}

    assert notifier.ready()
    assert _lines(sock) == ["READY=1"]
    assert notifier.ready("serving: wsgi 2/2")
    assert _lines(sock) == ["READY=1", "STATUS=serving: wsgi 2/2"]

    before = _monotonic_usec()
    assert notifier.reloading()
    after = _monotonic_usec()
    first, stamp = _lines(sock)
    assert first == "RELOADING=1"
    name, _, value = stamp.partition("=")
    assert name == "MONOTONIC_USEC" and before <= int(value) <= after

    assert notifier.stopping("draining")
    assert _lines(sock) == ["STOPPING=1", "STATUS=draining"]
    assert notifier.status("two\nlines")
    assert _lines(sock) == ["STATUS=two lines"]
    assert notifier.watchdog()
    assert _lines(sock) == ["WATCHDOG=1"]
    assert notifier.mainpid(4242)
    assert _lines(sock) == ["MAINPID=4242"]
    with pytest.raises(ValueError):
        notifier.mainpid(0)
    notifier.close()


@pytest.mark.timeout(30)
def test_abstract_namespace_address():
    name = f"brim-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environment(environ={"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert _lines(sock) == ["READY=1", "STATUS=up"]
        notifier.close()


def test_without_notify_socket_every_method_is_a_quiet_no_op():
    env: dict[str, str] = {}
    notifier = Notifier.from_environment(environ=env)
    assert not notifier.enabled and notifier.address is None
    assert notifier.watchdog_interval is None and notifier.environment() == {}
    for call in (notifier.ready, notifier.reloading, notifier.stopping, notifier.watchdog):
        assert call() is False
    assert notifier.status("x") is False and notifier.mainpid(1) is False


def test_a_relative_notify_socket_is_refused_with_a_warning(caplog):
    logger = logging.getLogger("test.systemd.relative")
    with caplog.at_level(logging.WARNING, logger=logger.name):
        notifier = Notifier.from_environment(logger, environ={"NOTIFY_SOCKET": "relative"})
    assert not notifier.enabled and notifier.ready() is False
    assert "neither a path nor @name" in caplog.text


@pytest.mark.timeout(30)
def test_a_failing_send_warns_once_and_never_raises(tmp_path, caplog):
    logger = logging.getLogger("test.systemd.gone")
    missing = str(tmp_path / "nobody-listens")
    notifier = Notifier.from_environment(logger, environ={"NOTIFY_SOCKET": missing})
    with caplog.at_level(logging.WARNING, logger=logger.name):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.stopping() is False
    warnings = [r for r in caplog.records if r.name == logger.name]
    assert len(warnings) == 1 and missing in warnings[0].getMessage()
    notifier.close()


@pytest.mark.timeout(60)
def test_a_reader_that_never_reads_does_not_hang_the_sender(notify_path, caplog):
    path, _sock = notify_path  # bound, never read: its queue fills up
    logger = logging.getLogger("test.systemd.full")
    notifier = Notifier(path, logger=logger)
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for _ in range(10_000):
            started = time.monotonic()
            if not notifier.status("x" * 1000):
                break
        else:
            pytest.fail("the receive queue never filled")
        assert time.monotonic() - started < 3.0
    assert sum(r.name == logger.name for r in caplog.records) == 1
    notifier.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "2500000"}, 2.5),
        ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "{me}"}, 2.5),
        ({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_only_ours_when_watchdog_pid_says_so(env, interval):
    env = {k: v.format(me=os.getpid()) for k, v in env.items()}
    env["NOTIFY_SOCKET"] = "/nonexistent/notify"
    notifier = Notifier.from_environment(environ=env)
    assert notifier.watchdog_interval == interval
    assert env == {}


_CHILD_SEES = """
import json, os, sys
from brim.supervisor import Notifier
notifier = Notifier.from_environment()
notifier.ready("parent")
pid = os.fork()
if pid == 0:
    keys = sorted(k for k in os.environ if k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"))
    print(json.dumps({"child_env": keys}), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
spawned = os.popen("env").read()
print(json.dumps({"spawned_has_notify": "NOTIFY_SOCKET" in spawned,
                  "interval": notifier.watchdog_interval}), flush=True)
"""


@pytest.mark.timeout(60)
def test_workers_and_spawned_programs_do_not_inherit_the_variables(notify_path):
    path, sock = notify_path
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="1000000")
    env.pop("WATCHDOG_PID", None)
    done = subprocess.run([sys.executable, "-c", _CHILD_SEES], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert _lines(sock) == ["READY=1", "STATUS=parent"]
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert first == {"child_env": []}
    assert second == {"spawned_has_notify": False, "interval": 1.0}


# -- socket activation: malformed values ---------------------------------------


def test_not_activated_means_no_sockets():
    assert activated_sockets(environ={}) == []
    env = {"LISTEN_FDS": "2", "LISTEN_PID": "1", "LISTEN_FDNAMES": "a:b"}
    assert activated_sockets(environ=env) == [], "LISTEN_PID is another process"
    assert env == {}, "the variables are removed either way"
    env = {"LISTEN_FDS": "0", "LISTEN_PID": str(os.getpid())}
    assert activated_sockets(environ=env) == []
    env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
    assert activated_sockets(environ=env, unset=False) == []
    assert env == {"LISTEN_FDS": "1", "LISTEN_PID": "1"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LISTEN_FDS": "two", "LISTEN_PID": "{me}"}, "LISTEN_FDS='two' is not a count"),
        ({"LISTEN_FDS": "-1", "LISTEN_PID": "{me}"}, "LISTEN_FDS='-1' is not a count"),
        ({"LISTEN_FDS": "1", "LISTEN_PID": "me"}, "LISTEN_PID='me' is not a process id"),
        ({"LISTEN_FDS": "2", "LISTEN_PID": "{me}", "LISTEN_FDNAMES": "only-one"},
         "LISTEN_FDNAMES='only-one' names 1 fd(s) but LISTEN_FDS=2"),
    ],
)
def test_malformed_values_are_clear_errors(env, message):
    env = {k: v.format(me=os.getpid()) for k, v in env.items()}
    with pytest.raises(SupervisorError) as caught:
        activated_sockets(environ=env)
    assert message in str(caught.value)
    assert env == {}


_REPORT = """
import json, os, socket, sys
from brim.supervisor import SupervisorError, activated_sockets
try:
    passed = activated_sockets()
except SupervisorError as err:
    print(json.dumps({"error": str(err)}), flush=True)
    sys.exit(3)
report = []
for name, sock in passed:
    report.append({
        "name": name, "fd": sock.fileno(),
        "family": socket.AddressFamily(sock.family).name,
        "type": socket.SocketKind(sock.type).name,
        "address": list(sock.getsockname()),
        "inheritable": sock.get_inheritable(), "blocking": sock.getblocking(),
    })
left = sorted(k for k in os.environ if k.startswith("LISTEN_"))
print(json.dumps({"sockets": report, "left": left}), flush=True)
# Prove they are the real, listening sockets: answer each with its name.
for name, sock in passed:
    sock.settimeout(20)
    if sock.type == socket.SOCK_STREAM:
        conn, _ = sock.accept()
        conn.sendall(name.encode())
        conn.close()
    else:
        data, peer = sock.recvfrom(100)
        sock.sendto(name.encode() + b" " + data, peer)
"""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; killed by pid (and their group) in teardown."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.communicate(timeout=5)


def _activate(launched: list[subprocess.Popen], tmp_path: Path, *args: str,
              program: str = _REPORT) -> subprocess.Popen:
    script = tmp_path / "report.py"
    script.write_text(textwrap.dedent(program))
    proc = subprocess.Popen([SOCKET_ACTIVATE, *args, sys.executable, str(script)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    launched.append(proc)
    return proc


def _connect(port: int, timeout: float = 10.0) -> socket.socket:
    """Connect once systemd-socket-activate listens (it binds after it starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(100):
        chunks.append(chunk)
    return b"".join(chunks)


@needs_activate
@pytest.mark.timeout(60)
def test_named_tcp_sockets_from_systemd_socket_activate(tmp_path, launched):
    web, admin = _free_port(), _free_port()
    proc = _activate(launched, tmp_path, "-l", f"127.0.0.1:{web}", "--fdname=web",
                     "-l", f"127.0.0.1:{admin}", "--fdname=admin")
    # Like systemd, the tool starts the program on the first connection.
    with _connect(web) as first, _connect(admin) as second:
        first.settimeout(20)
        second.settimeout(20)
        assert _read_all(first) == b"web"
        assert _read_all(second) == b"admin"
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    report = json.loads(out.splitlines()[0])
    assert report["left"] == [], "LISTEN_* are unset after reading"
    assert report["sockets"] == [
        {"name": "web", "fd": 3, "family": "AF_INET", "type": "SOCK_STREAM",
         "address": ["127.0.0.1", web], "inheritable": False, "blocking": True},
        {"name": "admin", "fd": 4, "family": "AF_INET", "type": "SOCK_STREAM",
         "address": ["127.0.0.1", admin], "inheritable": False, "blocking": True},
    ]


@needs_activate
@pytest.mark.timeout(60)
def test_unnamed_udp_socket_from_systemd_socket_activate(tmp_path, launched):
    port = _free_port(socket.SOCK_DGRAM)
    proc = _activate(launched, tmp_path, "-d", "-l", f"127.0.0.1:{port}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.5)
        deadline = time.monotonic() + 20
        answer = None
        while answer is None and time.monotonic() < deadline:
            client.sendto(b"ping", ("127.0.0.1", port))  # the first one starts it
            with contextlib.suppress(TimeoutError):
                answer = client.recv(100)
        # The first datagram stays queued on the socket for the program to read.
        assert answer == b"unknown ping"
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    (sock,) = json.loads(out.splitlines()[0])["sockets"]
    assert sock["name"] == "unknown", "systemd's name for an fd given none"
    assert (sock["type"], sock["family"], sock["fd"]) == ("SOCK_DGRAM", "AF_INET", 3)
    assert sock["address"] == ["127.0.0.1", port]


# Plays systemd's part by hand: puts a file or a socket at fd 3, sets
# LISTEN_PID to its own pid and execs the reporting program (same pid).
_LAUNCHER = """
import os, socket, sys
kind, count, program = sys.argv[1:]
held = open(program) if kind == "file" else socket.socket()
if held.fileno() != 3:
    os.dup2(held.fileno(), 3)
os.set_inheritable(3, True)  # it may already be fd 3, and then dup2 leaves it CLOEXEC
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=count)
os.execv(sys.executable, [sys.executable, program])
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("kind", "count", "message"), [
    ("file", "1", "fd 3 ('unknown') is not a socket"),
    ("socket", "2", "fd 4 ('unknown') from LISTEN_FDS=2 is not open"),
])
def test_an_fd_that_is_no_socket_or_not_open_is_refused(tmp_path, kind, count, message):
    script = tmp_path / "report.py"
    script.write_text(textwrap.dedent(_REPORT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, kind, count, str(script)],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 3, done.stderr
    assert message in json.loads(done.stdout)["error"]


def test_activated_socket_is_a_name_and_a_socket():
    with socket.socket() as sock:
        passed = ActivatedSocket("web", sock)
        name, got = passed
        assert (name, got) == ("web", sock) and passed.sock is sock
