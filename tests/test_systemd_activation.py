"""brimd under socket activation, with systemd's own ``systemd-socket-activate``.

The tool binds the addresses itself, waits for the first connection (or
datagram) as a .socket unit does, then execs brimd with the sockets at fd 3
on and LISTEN_* set. Each conf names a port other than the activated one
wherever it can, so a reply proves the worker serves the socket systemd
passed, not one brimd bound.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from brimd_harness import (
    BRIMD,
    Brimd,
    alive,
    curl,
    echo_stats_conf,
    free_port,
    process_tree,
    wait_for,
)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
pytestmark = pytest.mark.skipif(
    SOCKET_ACTIVATE is None,
    reason="needs systemd-socket-activate (Debian package systemd; .ci/run installs it)")

TCP_ECHO = "[tcp#echo]\ncall = brim.tcp_echo.TCPEcho\n"
UDP_ECHO = "[udp#echo]\ncall = brim.udp_echo.UDPEcho\n"
#: Two WSGI subconfigs on one ip and port, told apart by their socket_names.
TWO_NAMED = """
[wsgi]
apps = echo
socket_name = web

[wsgi#admin]
apps = stats
socket_name = admin

[echo]
call = brim.wsgi_echo.WSGIEcho

[stats]
call = brim.stats.Stats
"""


def _activate(brimd: Brimd, listen: list[str], *, datagram: bool = False,
              pid_file: bool = False) -> subprocess.Popen:
    """systemd-socket-activate -l ... [--fdname=...] brimd -c CONF... -p - foreground.

    ``listen`` holds ``"PORT"`` or ``"PORT=NAME"`` items, each a -l on
    127.0.0.1. The process is brimd itself once the first client arrives
    (the tool execs it); teardown kills its whole tree by pid.
    """
    args = [SOCKET_ACTIVATE]
    if datagram:
        args.append("--datagram")
    for item in listen:
        port, _, name = item.partition("=")
        args += ["-l", f"127.0.0.1:{port}"]
        if name:
            args.append(f"--fdname={name}")
    command = [*BRIMD]
    for conf in brimd.confs:
        command += ["-c", str(conf)]
    command += ["-p", str(brimd.pid_file) if pid_file else "-", "foreground"]
    proc = subprocess.Popen([*args, *command], env=brimd.env, cwd=brimd.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    brimd.foreground.append(proc)
    return proc


def _first_post(port: int, body: bytes, timeout: float = 30.0) -> bytes:
    """POST /echo as the first client: retried only until the tool listens.

    Once connected, the request waits in the socket's queue while brimd
    starts, as a first request under a .socket unit does.
    """
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/echo", body=body)
            response = conn.getresponse()
            assert response.status == 200
            return response.read()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


@pytest.mark.timeout(90)
def test_wsgi_serves_the_socket_passed_under_its_socket_name(brimd):
    activated, configured = free_port(), free_port()
    brimd.use(echo_stats_conf(workers=2, socket_name="web"),
              brimd.local(port=configured))
    proc = _activate(brimd, [f"{activated}=web"])
    assert _first_post(activated, b"first") == b"first"
    assert curl("-s", f"http://127.0.0.1:{activated}/echo", "-d", "more").stdout == b"more"
    assert _refused(configured), "brimd bound the conf's port instead of using systemd's"
    tree = wait_for(lambda: len(process_tree(proc.pid)) == 3 and process_tree(proc.pid),
                    what="the master and two workers")
    # The workers' titles show where they really listen.
    titles = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in tree[1:]]
    assert all(f"127.0.0.1:{activated}".encode() in title for title in titles), titles
    _stop(proc)


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_reload_keeps_the_passed_socket_and_refuses_a_conf_that_drops_it(brimd, syslog):
    activated = free_port()
    conf = brimd.use(echo_stats_conf(socket_name="web"),
                     brimd.local(port=free_port(), log_sink="syslog"))
    proc = _activate(brimd, [f"{activated}=web"])
    url = f"http://127.0.0.1:{activated}/echo"
    assert _first_post(activated, b"x") == b"x"
    before = set(process_tree(proc.pid)[1:])

    # A good reload: new workers, same socket, another conf port even.
    conf[1].write_text(brimd.local(port=free_port(), log_sink="syslog"))
    proc.send_signal(signal.SIGHUP)
    syslog.wait_line("brimd reloaded", timeout=30)
    wait_for(lambda: not before & set(process_tree(proc.pid)[1:]), 30, what="new workers")
    assert curl("-s", url, "-d", "after").stdout == b"after"

    # A conf that no longer serves systemd's socket is refused; brimd runs on.
    conf[0].write_text(echo_stats_conf(socket_name="other"))
    proc.send_signal(signal.SIGHUP)
    line = syslog.wait_line("reload refused", timeout=30)
    assert "socket_name: systemd passed no socket named 'other'" in line
    assert curl("-s", url, "-d", "still").stdout == b"still"
    _stop(proc)


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_restart_of_the_foreground_master_reloads_it_on_the_passed_socket(brimd):
    activated = free_port()
    brimd.use(echo_stats_conf(socket_name="web"), brimd.local(port=free_port()))
    proc = _activate(brimd, [f"{activated}=web"], pid_file=True)
    assert _first_post(activated, b"x") == b"x"
    old = wait_for(lambda: brimd.pid_file.exists() and brimd.master_pid(), what="pid file")
    assert old == proc.pid
    before = set(process_tree(proc.pid)[1:])
    # The process systemd started (MAINPID) stays: restart reloads it in place.
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    assert "restarting it in place (reload)" in done.stderr
    assert brimd.master_pid() == old and proc.poll() is None
    for n in range(20):
        body = f"during {n}".encode()
        assert curl("-s", f"http://127.0.0.1:{activated}/echo", "--data-binary",
                    body.decode()).stdout == body
    wait_for(lambda: not before & set(process_tree(proc.pid)[1:]), 30, what="new workers")
    assert any(f"127.0.0.1:{activated}" in title for title in brimd.workers())
    _stop(proc)


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_tcp_subserver_takes_the_socket_with_its_address(brimd):
    port = free_port()
    # listen_retry 0: had brimd tried to bind the port itself (held by the
    # passed socket), it would fail at once instead of serving.
    brimd.use(TCP_ECHO + f"ip = 127.0.0.1\nport = {port}\nlisten_retry = 0\n",
              brimd.local())
    proc = _activate(brimd, [str(port)])
    deadline = time.monotonic() + 30
    while True:
        try:
            client = socket.create_connection(("127.0.0.1", port), timeout=30)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with client:
        client.sendall(b"over tcp")
        assert client.recv(100) == b"over tcp"
    _stop(proc)


@pytest.mark.timeout(90)
def test_udp_subserver_takes_the_socket_under_its_name(brimd):
    activated = free_port(socket.SOCK_DGRAM)
    brimd.use(UDP_ECHO + "socket_name = dns\n", brimd.local(port=free_port()))
    proc = _activate(brimd, [f"{activated}=dns"], datagram=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(0.5)
        deadline = time.monotonic() + 30
        answer = None
        while answer is None:
            assert time.monotonic() < deadline, "no echo from the activated UDP socket"
            client.sendto(b"ping", ("127.0.0.1", activated))
            try:
                answer = client.recv(100)
            except TimeoutError:
                continue
        assert answer == b"ping"
    _stop(proc)


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("names", "socket_name", "error"), [
    (["web", "extra"], "web",
     "systemd passed socket(s) no subconfig serves: 'extra' (tcp 127.0.0.1:{1})"),
    ([""], None,
     "[wsgi] systemd passed no socket for tcp 127.0.0.1:{conf} "
     "(it passed 'unknown' (tcp 127.0.0.1:{0}))"),
    (["web"], "api",
     "[wsgi] socket_name: systemd passed no socket named 'api' "
     "(it passed 'web' (tcp 127.0.0.1:{0}))"),
])
@pytest.mark.slow
def test_a_socket_or_subconfig_left_unmatched_is_a_clear_error(brimd, names, socket_name,
                                                               error):
    ports = [free_port() for _ in names]
    conf = free_port()
    extra = {"socket_name": socket_name} if socket_name else {}
    brimd.use(echo_stats_conf(**extra), brimd.local(port=conf))
    listen = [f"{port}={name}" if name else str(port) for port, name in zip(ports, names,
                                                                             strict=True)]
    proc = _activate(brimd, listen)
    deadline = time.monotonic() + 30
    while True:  # a first client makes the tool start brimd
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=5).close()
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = [line for line in stderr.splitlines()
             if not line.startswith(("Listening on", "Communication attempt", "Execing"))]
    assert len(lines) == 1 and lines[0].startswith(error.format(*ports, conf=conf)), stderr


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_notify_socket_hears_ready_reloading_and_stopping(brimd):
    """The master's lines on a NOTIFY_SOCKET the test binds, as systemd would."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        notify.bind(str(brimd.root / "notify"))
        notify.settimeout(30)
        brimd.use(echo_stats_conf(workers=2), brimd.local(port=free_port(), start_check=0.2))
        brimd.env["NOTIFY_SOCKET"] = str(brimd.root / "notify")
        proc = brimd.popen("foreground")

        seen: list[list[str]] = []

        def until(first: str) -> list[str]:
            """The next message that starts with ``first`` (STATUS= updates come between)."""
            while True:
                seen.append(notify.recv(4096).decode().split("\n"))
                if seen[-1][0] == first:
                    return seen[-1]

        ready = until("READY=1")
        assert ready[1:] == ["STATUS=wsgi 2/2"], seen
        proc.send_signal(signal.SIGHUP)
        reloading = until("RELOADING=1")
        assert reloading[1].startswith("MONOTONIC_USEC="), seen
        assert until("READY=1")[0] == "READY=1"
        proc.send_signal(signal.SIGTERM)
        assert until("STOPPING=1")[0] == "STOPPING=1"
        assert proc.wait(30) == 0
    finally:
        notify.close()


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_two_subconfigs_on_one_port_each_serve_their_named_socket(brimd):
    web, admin, configured = free_port(), free_port(), free_port()
    # Both subconfigs say the same ip and port; their socket_names tell them apart.
    brimd.use(brimd.local(port=configured) + TWO_NAMED)
    proc = _activate(brimd, [f"{web}=web", f"{admin}=admin"])
    assert _first_post(web, b"first") == b"first"
    # Each serves its own socket: the stats app on admin's, the echo on web's.
    assert b'"start_time"' in curl("-s", f"http://127.0.0.1:{admin}/stats").stdout
    assert curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "-d", "x",
                f"http://127.0.0.1:{admin}/echo").stdout == b"404"
    assert curl("-s", "-d", "y", f"http://127.0.0.1:{web}/echo").stdout == b"y"
    assert _refused(configured)
    _stop(proc)
    # Not socket-activated, the same conf would bind one address twice: refused at once.
    done = brimd.run("start", timeout=20)
    assert done.returncode != 0
    assert "[wsgi#admin] port: tcp port" in done.stderr and "already used by [wsgi]" in done.stderr


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_a_master_started_by_restart_keeps_the_activated_sockets(brimd):
    web, admin, configured = free_port(), free_port(), free_port()
    brimd.use(brimd.local(port=configured) + TWO_NAMED)
    # A daemonized brimd started by the tool: the master inherits its sockets.
    args = [SOCKET_ACTIVATE, "-l", f"127.0.0.1:{web}", "--fdname=web",
            "-l", f"127.0.0.1:{admin}", "--fdname=admin", *brimd.args("start")]
    proc = subprocess.Popen(args, env=brimd.env, cwd=brimd.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    brimd.foreground.append(proc)
    assert _first_post(web, b"first") == b"first"
    old = wait_for(lambda: brimd.pid_file.exists() and brimd.master_pid(), what="pid file")
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    new = brimd.master_pid()
    assert new != old
    wait_for(lambda: not alive(old), what="the old master to exit")
    assert curl("-s", "-d", "after", f"http://127.0.0.1:{web}/echo").stdout == b"after"
    assert b'"start_time"' in curl("-s", f"http://127.0.0.1:{admin}/stats").stdout
    assert _refused(configured)
    assert brimd.run("stop").returncode == 0


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_wsgi_takes_a_passed_unix_socket_by_its_path(brimd, tmp_path):
    path = tmp_path / "app.sock"
    brimd.use(brimd.local() + f"[wsgi]\nip = unix:{path}\napps = echo\n\n"
              "[echo]\ncall = brim.wsgi_echo.WSGIEcho\n")
    proc = subprocess.Popen([SOCKET_ACTIVATE, "-l", str(path), *BRIMD,
                             *[a for c in brimd.confs for a in ("-c", str(c))],
                             "-p", "-", "foreground"],
                            env=brimd.env, cwd=brimd.root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    brimd.foreground.append(proc)
    wait_for(path.exists, what="the tool to bind the socket")
    inode = path.stat().st_ino
    assert curl("-s", "--unix-socket", str(path), "-d", "hi", "http://brim/echo",
                timeout=30).stdout == b"hi"
    wait_for(lambda: len(process_tree(proc.pid)) == 2, what="the master and its worker")
    assert curl("-s", "--unix-socket", str(path), "-d", "again", "http://brim/echo"
                ).stdout == b"again"
    assert path.stat().st_ino == inode  # systemd's socket, not one brimd bound anew
    _stop(proc)
