"""Histograms, process usage, departed totals, carrying counters to a new store, attach."""

from __future__ import annotations

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from brim.stats import (
    HISTOGRAM_BOUNDS,
    Group,
    StatsError,
    StatsStore,
    prometheus_text,
    quantile,
)

STATS = [("pid", "worker"), ("start_count", "sum"), ("done_count", "sum"),
         ("busy", "sum"), ("took", "histogram", "Seconds a job took")]


def _store(count: int = 2, **kw: object) -> StatsStore:
    return StatsStore([Group("jobs", count, STATS, **kw)], start_time=100)  # type: ignore[arg-type]


def test_histogram_observe_counts_in_the_bucket_whose_bound_is_first_not_below():
    s = _store()
    h = s.bucket("jobs", 0).histogram("took")
    assert h is not None and s.bucket("jobs", 0).histogram("nope") is None
    for seconds in (0.0005, 0.001, 0.0011, 0.3, 61.0, -1.0):
        h.observe(seconds)
    took = s.values("jobs")[0]["took"]
    assert took["count"] == 6
    assert took["sum"] == pytest.approx(0.0005 + 0.001 + 0.0011 + 0.3 + 61.0, abs=1e-5)
    buckets = took["buckets"]
    assert list(buckets) == [repr(b) for b in HISTOGRAM_BOUNDS] + ["+Inf"]
    assert buckets["0.001"] == 3  # -1 (as 0), 0.0005 and exactly 0.001
    assert buckets["0.0025"] == 4 and buckets["0.25"] == 4 and buckets["0.5"] == 5
    assert buckets["60.0"] == 5 and buckets["+Inf"] == 6
    s.close()


def test_histogram_rolls_up_and_is_a_prometheus_histogram():
    s = _store()
    s.bucket("jobs", 0).histogram("took").observe(0.002)  # type: ignore[union-attr]
    s.bucket("jobs", 1).histogram("took").observe(2.0)  # type: ignore[union-attr]
    s.bucket("jobs", 1).histogram("took").observe(2.0)  # type: ignore[union-attr]
    assert s.snapshot("jobs")["took"]["count"] == 3
    families = {f.name: f for f in text_string_to_metric_families(prometheus_text(s))}
    took = families["brim_took"]
    assert took.type == "histogram"
    count = {s.labels["worker"]: s.value for s in took.samples if s.name == "brim_took_count"}
    assert count == {"0": 1, "1": 2, "departed": 0}
    for worker in ("0", "1"):
        les = [(s.labels["le"], s.value) for s in took.samples
               if s.name == "brim_took_bucket" and s.labels["worker"] == worker]
        values = [v for _, v in les]
        assert values == sorted(values) and les[-1] == ("+Inf", count[worker])
    assert families["brim_busy"].type == "gauge"
    s.close()


def test_quantile_interpolates_within_the_bucket():
    counts = [0] * (len(HISTOGRAM_BOUNDS) + 1)
    assert quantile(0.5, counts) is None
    counts[HISTOGRAM_BOUNDS.index(0.1)] = 10  # all in (0.05, 0.1]
    assert quantile(0.5, counts) == pytest.approx(0.075)
    counts[-1] = 90
    assert quantile(0.99, counts) == HISTOGRAM_BOUNDS[-1]


def test_pid_adds_process_usage_from_proc():
    s = _store()
    s.bucket("jobs", 0).mark_started()
    w0, w1 = s.values("jobs")
    assert w0["pid"] == os.getpid() and w0["rss_bytes"] > 1 << 20 and w0["cpu_seconds"] > 0
    assert "rss_bytes" not in w1  # never started
    text = prometheus_text(s)
    assert 'brim_process_resident_memory_bytes{group="jobs",worker="0"}' in text
    s.close()


def test_carry_from_keeps_each_series_and_folds_late_counts_into_departed():
    old = _store(3)
    for i in range(3):
        b = old.bucket("jobs", i)
        b.mark_started()
        for _ in range(i + 1):
            b.incr("done_count")
        b.incr("busy")
        b.histogram("took").observe(0.01)  # type: ignore[union-attr]
    new = _store(2)  # one worker fewer
    carry = new.carry_from(old)
    snap = new.snapshot("jobs")
    assert [snap[f"worker_{i}"]["done_count"] for i in range(2)] == [1, 2]
    assert snap["departed"]["done_count"] == 3  # worker 2's
    assert snap["done_count"] == 6 and snap["took"]["count"] == 3 and snap["start_count"] == 3
    assert snap["busy"] == 0  # gauges are not carried
    # The old workers drain and count on; fold() adds only what is new, once.
    old.bucket("jobs", 0).incr("done_count")
    carry.fold()
    carry.fold()
    assert new.snapshot("jobs")["done_count"] == 7
    old.close()
    carry.fold()  # a closed old store: nothing more to add
    assert new.snapshot("jobs")["done_count"] == 7
    new.close()


def test_attach_reads_another_process_store_by_its_proc_path():
    s = _store()
    s.bucket("jobs", 1).incr("done_count")
    assert s.path is not None and s.path.startswith(f"/proc/{os.getpid()}/fd/")
    seen = StatsStore.attach(s.path)
    assert seen.groups() == ["jobs"] and seen.start_time == 100
    assert seen.snapshot("jobs")["done_count"] == 1
    s.bucket("jobs", 1).incr("done_count")
    assert seen.snapshot("jobs")["worker_1"]["done_count"] == 2  # live, not a copy
    with pytest.raises((StatsError, TypeError)):
        seen.bucket("jobs", 0).incr("done_count")
    seen.close()
    s.close()


def test_attach_refuses_what_is_not_a_store(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\0" * 128)
    with pytest.raises(StatsError, match="not a brim stats store"):
        StatsStore.attach(str(path))
