"""The store shared by real forked processes: exact sums, rollups, restarts, live readers."""

from __future__ import annotations

import os
import time

from brim.stats import Group, StatsStore

# What a web server might declare for itself (brim-wsgi's own list is brim.wsgi.stats).
SERVER = [("start_count", "sum"), ("request_count", "sum"),
          *((f"status_{n}xx_count", "sum") for n in range(2, 6)),
          *((f"status_{c}_count", "sum") for c in (404, 408, 499, 501))]

INCREMENTS = 100_000


def _count(store: StatsStore, index: int) -> None:
    bucket = store.bucket("wsgi", index)
    bucket.mark_started()
    for _ in range(INCREMENTS):
        bucket.incr("request_count")


def test_four_processes_incrementing_at_once_sum_exactly(forker):
    store = StatsStore({"wsgi": (4, SERVER)})
    pids = [forker.start(_count, store, i, gated=True) for i in range(4)]
    forker.release(4)
    # Read while they write: the overall count only ever goes up.
    seen = [0]
    deadline = time.monotonic() + 30
    while seen[-1] < 4 * INCREMENTS and time.monotonic() < deadline:
        seen.append(store.snapshot("wsgi")["request_count"])
    assert seen == sorted(seen)
    assert [forker.wait(pid) for pid in pids] == [0, 0, 0, 0]
    snap = store.snapshot("wsgi")
    assert snap["request_count"] == 4 * INCREMENTS
    for i in range(4):
        assert snap[f"worker_{i}"]["request_count"] == INCREMENTS
        assert snap[f"worker_{i}"]["start_time"] >= store.start_time
    store.close()


def _rollup_worker(store: StatsStore, index: int) -> None:
    bucket = store.bucket("wsgi", index)
    bucket.mark_started(1000 + index)
    bucket.set("latency.min", 50 - index * 10)  # 50, 40, 30
    bucket.set("latency.max", 50 - index * 10)
    bucket.set("pid", os.getpid())
    for _ in range(index + 1):
        bucket.incr("hits")


def test_min_max_sum_worker_rollups_across_processes(forker):
    declared = [("latency.min", "min"), ("latency.max", "max"), ("pid", "worker"),
                ("hits", "sum")]
    store = StatsStore({"wsgi": (4, declared)}, start_time=999)
    pids = [forker.start(_rollup_worker, store, i) for i in range(3)]  # worker_3 never starts
    assert [forker.wait(pid) for pid in pids] == [0, 0, 0]
    snap = store.snapshot("wsgi")
    assert snap["start_time"] == 999
    assert snap["latency.min"] == 30  # worker_3 (never started, all zero) does not count
    assert snap["latency.max"] == 50
    assert snap["hits"] == 1 + 2 + 3
    assert "pid" not in snap  # worker-only stat
    assert {snap[f"worker_{i}"]["pid"] for i in range(3)} == set(pids)
    assert snap["worker_3"] == {"start_time": 0, "latency.min": 0, "latency.max": 0, "pid": 0,
                                "hits": 0}
    assert [snap[f"worker_{i}"]["start_time"] for i in range(4)] == [1000, 1001, 1002, 0]


def _restart(store: StatsStore, started: float) -> None:
    bucket = store.bucket("wsgi", 0)
    bucket.mark_started(started)
    for _ in range(10):
        bucket.incr("request_count")


def test_restarted_worker_keeps_counters_and_shows_later_start(forker):
    store = StatsStore({"wsgi": (2, SERVER)}, start_time=5000)
    assert forker.wait(forker.start(_restart, store, 5001)) == 0
    assert forker.wait(forker.start(_restart, store, 5100)) == 0  # the "restarted" worker
    snap = store.snapshot("wsgi")
    assert snap["request_count"] == 20
    assert snap["worker_0"]["start_time"] == 5100
    assert snap["start_time"] == 5000
    # Two starts of worker 0, none of worker 1: one restart shows.
    assert snap["worker_0"]["start_count"] == 2 and snap["worker_1"]["start_count"] == 0
    assert snap["start_count"] == 2


def _daemon(store: StatsStore) -> None:
    bucket = store.bucket("sampler", 0)
    bucket.mark_started(4242)
    bucket.set("last_run", 4243.9)
    bucket.incr("loops")


def test_daemon_bucket_written_by_its_own_process(forker):
    store = StatsStore([Group("web", 1, SERVER),
                        Group("sampler", 1, [("loops", "sum"), ("last_run", "max")],
                              kind="daemon", key="daemon_sample", reported_by_all=True)])
    assert forker.wait(forker.start(_daemon, store)) == 0
    assert store.report("web")["daemon_sample"] == {"start_time": 4242, "loops": 1,
                                                    "last_run": 4243}
