"""Txn ids: their format, and no id handed out twice (OS threads, refills, fork)."""

from __future__ import annotations

import os
import threading
import uuid

import pytest

from brim.log import new_txn


def test_an_id_is_a_uuid4_in_hex() -> None:
    for _ in range(1500):  # across a refill (512 ids to a block)
        txn = new_txn()
        parsed = uuid.UUID(hex=txn)
        assert parsed.hex == txn
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@pytest.mark.timeout(30)
def test_os_threads_never_share_an_id() -> None:
    """Eight threads racing through several refills each get ids no other got."""
    per_thread = 4000
    got: list[list[str]] = [[] for _ in range(8)]
    go = threading.Barrier(8)

    def take(out: list[str]) -> None:
        go.wait()
        for _ in range(per_thread):
            out.append(new_txn())

    threads = [threading.Thread(target=take, args=(out,)) for out in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    ids = [txn for out in got for txn in out]
    assert len(ids) == 8 * per_thread
    assert len(set(ids)) == len(ids)


@pytest.mark.timeout(30)
def test_a_forked_child_draws_from_its_own_bytes() -> None:
    new_txn()  # the parent has a block part-used
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        try:
            os.write(write, "".join(new_txn() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    os.waitpid(pid, 0)
    child = {data[i:i + 32].decode() for i in range(0, len(data), 32)}
    assert len(child) == 100
    parent = {new_txn() for _ in range(100)}
    assert not child & parent
