"""The in-flight table: rows claimed and released, what a reader finds, overflow, threads."""

from __future__ import annotations

import mmap
import os
import signal
import threading

from brim.wsgi.inflight import (
    MAX_ROWS,
    TARGET_BYTES,
    InFlightTable,
    LostRequest,
    read_in_flight,
    table_size,
)


def _table(rows: int) -> tuple[mmap.mmap, InFlightTable]:
    buf = mmap.mmap(-1, table_size(rows))
    return buf, InFlightTable(buf)


def test_rows_claimed_are_read_back_oldest_first_and_released_rows_are_gone():
    buf, table = _table(4)
    a = table.claim(200.0, "a" * 32, b"GET", b"/a?x=1", b"10.0.0.1")
    b = table.claim(100.0, "b" * 32, b"POST", b"/b", b"10.0.0.2")
    table.claim(300.0, "c" * 32, b"PUT", b"/c", b"10.0.0.3")
    assert a != b and -1 not in (a, b)
    table.release(a)
    lost, overflow = read_in_flight(bytes(buf))
    assert lost == [LostRequest(100.0, "b" * 32, "POST", "10.0.0.2", "/b"),
                    LostRequest(300.0, "c" * 32, "PUT", "10.0.0.3", "/c")]
    assert overflow == 0


def test_a_full_table_counts_what_it_could_not_record_and_reuses_freed_rows():
    buf, table = _table(2)
    rows = [table.claim(1.0 + n, f"{n:032d}", b"GET", b"/", b"c") for n in range(3)]
    assert rows[2] == -1
    table.release(rows[2])  # a request that found no row ends: nothing to clear
    table.release(rows[0])
    assert table.claim(9.0, "f" * 32, b"GET", b"/again", b"c") == rows[0]
    lost, overflow = read_in_flight(bytes(buf))
    assert [r.txn for r in lost] == [f"{1:032d}", "f" * 32] and overflow == 1


def test_long_targets_are_cut_and_the_size_is_capped():
    buf, table = _table(1)
    table.claim(1.0, "t" * 32, b"GET", b"/" + b"x" * 1000, b"c")
    (lost,), _ = read_in_flight(bytes(buf))
    assert lost.target == "/" + "x" * (TARGET_BYTES - 1)
    assert table_size(10**6) == table_size(MAX_ROWS)
    assert read_in_flight(b"") == ([], 0) and read_in_flight(bytes(64)) == ([], 0)


def test_os_threads_of_one_worker_never_share_a_row():
    buf, table = _table(64)
    seen: list[list[int]] = []

    def serve(n: int) -> None:
        mine = []
        for i in range(500):
            at = table.claim(1.0, f"{n:02d}{i:030d}", b"GET", b"/", b"c")
            mine.append(at)
            table.release(at)
        held = table.claim(1.0, f"{n:02d}" + "h" * 30, b"GET", b"/held", b"c")
        mine.append(held)
        seen.append(mine)

    threads = [threading.Thread(target=serve, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    lost, overflow = read_in_flight(bytes(buf))
    assert overflow == 0
    assert sorted(r.txn[:2] for r in lost) == [f"{n:02d}" for n in range(8)]
    assert len({mine[-1] for mine in seen}) == 8


def test_the_table_outlives_a_killed_process():
    """What the master relies on: a worker's rows are still there after SIGKILL."""
    buf, table = _table(4)
    pid = os.fork()
    if pid == 0:  # the "worker": records a request, then dies without a word
        table.claim(5.0, "k" * 32, b"GET", b"/hung", b"127.0.0.1")
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    assert read_in_flight(bytes(buf)) == (
        [LostRequest(5.0, "k" * 32, "GET", "127.0.0.1", "/hung")], 0)
