"""SCM_RIGHTS socket hand-over, between real processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest

from brim.supervisor import (
    SupervisorError,
    fetch_sockets,
    listen_tcp,
    listen_udp,
    recv_sockets,
    send_sockets,
    serve_handover,
)


def test_send_and_receive_keep_names_and_kinds():
    tcp = listen_tcp("127.0.0.1", 0, retry=0)
    udp = listen_udp("127.0.0.1", 0, retry=0)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        send_sockets(a, {"tcp main": tcp, "udp stats": udp})
        got = recv_sockets(b)
        assert list(got) == ["tcp main", "udp stats"]
        assert got["tcp main"].type == socket.SOCK_STREAM
        assert got["udp stats"].type == socket.SOCK_DGRAM
        assert got["tcp main"].getsockname() == tcp.getsockname()
        assert got["udp stats"].getsockname() == udp.getsockname()
        assert got["tcp main"].fileno() != tcp.fileno()
        for s in got.values():
            s.close()
    finally:
        for s in (tcp, udp, a, b):
            s.close()


_SERVER = textwrap.dedent(
    """
    import sys
    from brim.supervisor import listen_tcp, serve_handover, answer_handover
    sock = listen_tcp("127.0.0.1", 0, retry=0)
    server = serve_handover(sys.argv[1])
    print(sock.getsockname()[1], flush=True)
    while not answer_handover(server, {"tcp": sock}):
        pass
    """
)


def test_fetch_from_another_process(tmp_path):
    path = str(tmp_path / "h.sock")
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, path], stdout=subprocess.PIPE,
                            text=True)
    try:
        port = int(proc.stdout.readline())
        got = fetch_sockets(path, timeout=5)
        assert proc.wait(timeout=5) == 0  # the giver has exited: only our copy is left
        listener = got["tcp"]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            listener.settimeout(5)
            conn, _ = listener.accept()
            client.sendall(b"x")
            assert conn.recv(1) == b"x"
            conn.close()
        listener.close()
    finally:
        proc.kill()
        proc.wait(timeout=5)


def test_fetch_without_a_master_is_a_clear_error(tmp_path):
    with pytest.raises(SupervisorError, match=r"^cannot fetch sockets from .*: no such file"):
        fetch_sockets(str(tmp_path / "absent.sock"), timeout=1)


def test_serve_replaces_a_dead_socket_file_but_not_a_live_one(tmp_path):
    path = str(tmp_path / "h.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()  # the file stays, nobody listens: what a crashed master leaves
    live = serve_handover(path)
    try:
        with pytest.raises(SupervisorError, match="already in use"):
            serve_handover(path)
    finally:
        live.close()
