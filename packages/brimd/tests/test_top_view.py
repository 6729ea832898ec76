"""brimd top's numbers and lines, from a real store written by this process."""

from __future__ import annotations

import os

from brim.server import top
from brim.stats import Group, StatsStore

STATS = [("pid", "worker"), ("request_count", "sum"), ("requests_in_flight", "sum"),
         ("request_duration_seconds", "histogram"), ("restart_crash_count", "sum"),
         ("restart_hung_count", "sum")]


def _store() -> StatsStore:
    return StatsStore([Group("wsgi", 2, STATS, labels={"subserver": "wsgi"}),
                       Group("daemon:x", 1, [("pid", "worker")], kind="daemon")])


def test_rows_rate_and_latency_come_from_the_interval_only():
    store = _store()
    b0, b1 = store.bucket("wsgi", 0), store.bucket("wsgi", 1)
    for b in (b0, b1):
        b.mark_started()
    slow = b0.histogram("request_duration_seconds")
    assert slow is not None
    for _ in range(50):  # before the interval: not in its p50
        b0.incr("request_count")
        slow.observe(4.0)
    before = top.take(store)
    assert [(s.sub, s.worker, s.pid) for s in before] == [("wsgi", 0, os.getpid()),
                                                          ("wsgi", 1, os.getpid())]
    for _ in range(20):
        b0.incr("request_count")
        slow.observe(0.02)
    b1.incr("restart_hung_count")
    found = top.rows(before, top.take(store), 2.0, at=store.start_time + 5)
    r0, r1 = found
    assert r0.rate == 10.0 and r1.rate == 0.0
    assert 0.01 < r0.p50 <= 0.025 and r1.p50 is None  # type: ignore[operator]
    assert r1.restarts == 1 and r0.rss and r0.rss > 0
    total = top.total(found)
    assert total.rate == 10.0 and total.restarts == 1 and total.pid == 2
    store.close()


def test_a_new_pid_starts_over_and_the_lines_fit_80_columns():
    store = _store()
    store.bucket("wsgi", 0).mark_started()
    before = top.take(store)
    before[0].pid += 1  # as if the worker had been replaced since
    store.bucket("wsgi", 0).incr("request_count")
    found = top.rows(before, top.take(store), 1.0, at=store.start_time)
    assert found[0].rate == 0.0 and len(found) == 1  # worker 1 never started: no row
    lines = top.screen_lines(1234, found * 3, "r")
    assert all(len(line) < 80 for line in lines)
    assert "REQ/S*" in lines[1] and lines[-1].startswith("total")
    store.close()


def test_sorting_puts_the_largest_first_and_missing_values_last():
    rows = [top.Row("a", 3, 1, 5.0, 0, None, None, 10, 1.0, 0),
            top.Row("b", 1, 1, 9.0, 0, 0.1, 0.2, 30, None, 0),
            top.Row("a", 2, 1, 1.0, 0, 0.3, 0.4, 20, 2.0, 0)]
    assert [r.pid for r in top.sort_rows(rows, "r")] == [1, 3, 2]
    assert [r.pid for r in top.sort_rows(rows, "5")] == [2, 1, 3]
    assert [r.pid for r in top.sort_rows(rows, "c")] == [2, 3, 1]
    assert [r.pid for r in top.sort_rows(rows, "s")] == [2, 3, 1]
    assert [r.pid for r in top.sort_rows(rows, "p")] == [1, 2, 3]
