"""TCP and UDP apps against a hostile client (issue 19): an app made to raise SystemExit
or KeyboardInterrupt, and a flood of idle connections.

Real brimd, one worker per subserver, real sockets. Each attack is followed
by the three checks: what the attacker got, that the worker is the same
process, and that the next client is served.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
from brimd_harness import accept_queue, alive, free_port, wait_for

HERE = Path(__file__).resolve().parent


def _conf(brimd, tcp: int, udp: int, concurrent: int = 50) -> None:
    shutil.copy(HERE / "hostile_apps.py", brimd.root / "hostile_apps.py")
    brimd.use(f"""
        [tcp#lines]
        call = hostile_apps.LineExit
        port = {tcp}
        workers = 1
        concurrent_per_worker = {concurrent}

        [udp#datagrams]
        call = hostile_apps.DatagramExit
        port = {udp}
        workers = 1
        """, brimd.local())


def _line(conn: socket.socket, text: bytes) -> bytes:
    """Send one line, read one answer line (b'' if the connection was ended)."""
    conn.sendall(text + b"\n")
    return _read_line(conn)


def _read_line(conn: socket.socket) -> bytes:
    """Read one answer line (b'' if the connection was ended)."""
    answer = b""
    while not answer.endswith(b"\n"):
        chunk = conn.recv(100)
        if not chunk:
            break
        answer += chunk
    return answer


def _tcp(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _ask_tcp(port: int, text: bytes = b"hello") -> bytes:
    with _tcp(port) as conn:
        return _line(conn, text)


def _ask_udp(port: int, text: bytes, timeout: float = 5.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(text, ("127.0.0.1", port))
        try:
            return sock.recv(100)
        except TimeoutError:
            return None


def _pid(answer: bytes) -> int:
    assert answer.startswith(b"pid "), answer
    return int(answer.split()[1])


@pytest.mark.slow
def test_tcp_app_raising_systemexit_ends_only_its_connection(brimd, syslog):
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    _conf(brimd, tcp, udp)
    brimd.start()
    worker = _pid(wait_for(lambda: _ask_tcp(tcp), what="the TCP app answering"))
    for word, name in ((b"exit", "SystemExit"), (b"interrupt", "KeyboardInterrupt")):
        with _tcp(tcp) as bystander, _tcp(tcp) as attacker:
            assert _pid(_line(bystander, b"before")) == worker
            assert _line(attacker, word) == b""  # its connection is ended, nothing more
            # The worker lives on, and so does its other connection.
            assert _line(bystander, b"after") == b"pid %d after\n" % worker
        assert _pid(_ask_tcp(tcp, b"next")) == worker
        syslog.wait_line("[tcp#lines] app failed on connection from 127.0.0.1", name,
                         f"the client said {word!r}")


@pytest.mark.slow
def test_udp_app_raising_systemexit_drops_only_its_datagram(brimd, syslog):
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    _conf(brimd, tcp, udp)
    brimd.start()
    worker = _pid(wait_for(lambda: _ask_udp(udp, b"hello", 0.5), what="the UDP app answering"))
    for word, name in ((b"exit", "SystemExit"), (b"interrupt", "KeyboardInterrupt")):
        assert _ask_udp(udp, word, 0.5) is None  # no answer to that one
        assert _ask_udp(udp, b"next") == b"pid %d next\n" % worker
        syslog.wait_line("[udp#datagrams] app failed on datagram from 127.0.0.1", name,
                         f"the client said {word!r}")


def test_idle_tcp_connections_are_shed_for_new_clients(brimd):
    """50 idle connections to a worker with 5 slots: a new client is still served,
    and the connections shed were told (they read the end of the stream)."""
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    _conf(brimd, tcp, udp, concurrent=5)
    brimd.start()
    worker = _pid(wait_for(lambda: _ask_tcp(tcp), what="the TCP app answering"))
    idle = []
    try:
        for _ in range(50):
            idle.append(_tcp(tcp))
        assert _ask_tcp(tcp, b"newcomer") == b"pid %d newcomer\n" % worker
        # The oldest idle ones were shed: closed by brimd, not left hanging.
        idle[0].settimeout(5)
        assert idle[0].recv(10) == b""
        # The newest are among the five served, and still answer.
        assert _line(idle[-1], b"still here") == b"pid %d still here\n" % worker
    finally:
        for conn in idle:
            conn.close()
    assert _pid(_ask_tcp(tcp, b"next")) == worker


def test_a_connection_accepted_while_full_is_served_through_a_drain(brimd):
    """The one slot is busy (its app naps, not waiting on its client), so the
    next client is accepted and held for a slot. TERM then used to drop the
    held connection unread, and the kernel reset it; now the app gets it
    once the slot frees."""
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    _conf(brimd, tcp, udp, concurrent=1)
    master = brimd.start()
    worker = _pid(wait_for(lambda: _ask_tcp(tcp), what="the TCP app answering"))
    with _tcp(tcp) as busy:
        # The app says it naps: the slot is busy, not an idle one to shed.
        assert _line(busy, b"nap") == b"napping\n"
        held = _tcp(tcp)
        held.sendall(b"held\n")
        wait_for(lambda: accept_queue(tcp) == 0, what="the worker to accept the held client")
        os.kill(master, signal.SIGTERM)
        assert _read_line(busy) == b"pid %d nap\n" % worker
        busy.close()  # frees the slot
        with held:
            assert _read_line(held) == b"pid %d held\n" % worker
    wait_for(lambda: not alive(master), timeout=15, what="the master to exit")
