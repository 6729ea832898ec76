"""brim.supervisor.draining on real sockets: queued connections answered, never reset.

Clients connect to a listening socket nobody accepts on (they wait in its
backlog), send their bytes, and then the socket's queue is refused: each
must read the whole answer and a clean end of stream. The control case
closes the listener instead, and the kernel resets them, which is what
the refusal is for.
"""

from __future__ import annotations

import os
import socket

import pytest

from brim.supervisor import SupervisorError
from brim.supervisor.draining import is_listening_stream, refuse_queued
from brim.supervisor.sockets import listen_tcp, listen_unix

ANSWER = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"


def _queue(listener: socket.socket, count: int, payload: bytes) -> list[socket.socket]:
    family = listener.family
    address = listener.getsockname()
    clients = []
    for _ in range(count):
        client = socket.socket(family, socket.SOCK_STREAM)
        client.settimeout(5)
        client.connect(address)
        client.sendall(payload)
        clients.append(client)
    return clients


def _read_all(client: socket.socket) -> bytes | str:
    data = b""
    try:
        while chunk := client.recv(65536):
            data += chunk
    except ConnectionResetError:
        return "reset"
    finally:
        client.close()
    return data


@pytest.mark.timeout(20)
def test_queued_tcp_connections_get_the_answer_and_a_clean_close():
    listener = listen_tcp("127.0.0.1", 0, backlog=64, retry=0)
    try:
        clients = _queue(listener, 20, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 5000)
        assert refuse_queued(listener, ANSWER, linger=2.0) == 20
        assert [_read_all(c) for c in clients] == [ANSWER] * 20
        # The listener is still open and still takes connections.
        assert is_listening_stream(listener)
        assert refuse_queued(listener, ANSWER) == 0
    finally:
        listener.close()


@pytest.mark.timeout(20)
def test_closing_the_listener_instead_resets_them():
    listener = listen_tcp("127.0.0.1", 0, backlog=64, retry=0)
    clients = _queue(listener, 5, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    listener.close()
    assert {_read_all(c) for c in clients} == {"reset"}


@pytest.mark.timeout(20)
def test_unix_listener_and_an_empty_answer(tmp_path):
    listener = listen_unix(str(tmp_path / "s.sock"), backlog=16)
    try:
        clients = _queue(listener, 3, b"hello")
        assert refuse_queued(listener, b"", linger=2.0) == 3
        assert [_read_all(c) for c in clients] == [b""] * 3
    finally:
        listener.close()


def test_only_listening_stream_sockets_count(tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert not is_listening_stream(udp)
        assert not is_listening_stream(tcp)  # not listening
    finally:
        udp.close()
        tcp.close()


def test_listen_unix_refuses_a_live_socket_and_a_plain_file(tmp_path):
    path = str(tmp_path / "live.sock")
    live = listen_unix(path)
    try:
        with pytest.raises(SupervisorError, match="a process listens on it"):
            listen_unix(path)
    finally:
        live.close()
    # Closed, the file stays: stale now, so it is replaced.
    assert os.path.exists(path)
    listen_unix(path, mode=0o600).close()
    assert os.stat(path).st_mode & 0o777 == 0o600
    plain = tmp_path / "plain"
    plain.write_text("keep me")
    with pytest.raises(SupervisorError, match="not a socket"):
        listen_unix(str(plain))
    assert plain.read_text() == "keep me"
