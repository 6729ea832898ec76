"""The store's layout and snapshots (single process; test_fork.py does the multi-process part)."""

from __future__ import annotations

import pytest

from brim.stats import Group, StatsError, StatsStore

# What a web server might declare for itself (brim-wsgi's own list is brim.wsgi.stats).
SERVER = [("start_count", "sum"), ("request_count", "sum"),
          *((f"status_{n}xx_count", "sum") for n in range(2, 6)),
          *((f"status_{c}_count", "sum") for c in (404, 408, 499, 501))]


def test_layout_pads_buckets_to_cache_lines():
    # header (64 bytes) + wsgi 3 buckets and the departed one x 11 stats -> 16 words each
    # + other 1 bucket and its departed one x 2 -> 8 words each; then the layout text
    s = StatsStore({"wsgi": (3, SERVER), "other": (1, [("x", "sum")])})
    words = 64 + 4 * 128 + 2 * 64
    assert s._words.nbytes == words
    assert s.size > words and bytes(s._raw[words:words + 2]) == b'{"'
    s.close()


def test_groups_and_buckets():
    s = StatsStore({"wsgi": (2, []), "wsgi#admin": (1, []), "daemon:a": (1, [])}, start_time=7.9)
    assert s.groups() == ["wsgi", "wsgi#admin", "daemon:a"]
    # a mapping gives plain groups of workers, whatever their names look like
    assert s.group("daemon:a") == Group("daemon:a", 1, (("start_time", "worker"),),
                                        labels={"group": "daemon:a"}, key="daemon:a")
    assert s.start_time == 7
    assert s.bucket_count("wsgi") == 2
    assert s.bucket("wsgi", 1) is s.bucket("wsgi", 1)
    with pytest.raises(StatsError, match=r"group 'wsgi' has buckets 0\.\.1; there is no bucket 2"):
        s.bucket("wsgi", 2)
    with pytest.raises(StatsError, match="there is no bucket -1"):
        s.bucket("wsgi", -1)
    with pytest.raises(StatsError, match="no stats group 'tcp#x'"):
        s.bucket("tcp#x", 0)
    with pytest.raises(StatsError, match="no stats group"):
        s.snapshot("nope")
    s.close()


def test_snapshot_shape_and_rollups():
    s = StatsStore({"wsgi": (3, [*SERVER, ("lo", "min"), ("hi", "max"),
                                 ("mine", "worker")])}, start_time=100)
    for i, (lo, hi) in enumerate([(5, 1), (3, 9), (8, 4)]):
        b = s.bucket("wsgi", i)
        b.mark_started(200 + i)
        b.set("lo", lo)
        b.set("hi", hi)
        b.set("mine", i * 10)
        for _ in range(i + 1):
            b.incr("request_count")
    snap = s.snapshot("wsgi")
    assert list(snap)[:3] == ["start_time", "start_count", "request_count"]
    assert list(snap)[-4:] == ["worker_0", "worker_1", "worker_2", "departed"]
    assert snap["start_time"] == 100
    assert snap["request_count"] == 6
    assert snap["lo"] == 3
    assert snap["hi"] == 9
    assert "mine" not in snap
    assert snap["worker_2"] == {**dict.fromkeys(n for n, _ in s.declared("wsgi")),
                                **snap["worker_2"]}
    assert snap["worker_1"]["mine"] == 10
    assert snap["worker_1"]["start_time"] == 201
    s.close()


def test_max_of_all_zero_is_zero_and_min_over_all_when_none_started():
    s = StatsStore({"wsgi": (3, [("lo", "min"), ("hi", "max")])})
    snap = s.snapshot("wsgi")
    assert (snap["lo"], snap["hi"]) == (0, 0)
    s.bucket("wsgi", 0).set("lo", 4)  # nobody called mark_started: min is over every bucket
    assert s.snapshot("wsgi")["lo"] == 0
    s.bucket("wsgi", 0).mark_started(1)  # now only started buckets count
    assert s.snapshot("wsgi")["lo"] == 4
    s.close()


def test_daemon_group_is_its_bucket_as_it_is():
    s = StatsStore([Group("web", 2), Group("d", 1, [("n", "sum")], kind="daemon")],
                   start_time=50)
    s.bucket("d", 0).mark_started(60)
    s.bucket("d", 0).incr("n")
    assert s.snapshot("d") == {"start_time": 60, "n": 1}  # its own start, no worker_0
    assert s.values("d") == [{"start_time": 60, "n": 1}]
    assert s.values("web") == [{"start_time": 0}, {"start_time": 0}]
    s.close()


def test_report_covers_the_group_and_those_reported_by_all():
    s = StatsStore([
        Group("web", 2, [("hits", "sum")]),
        Group("admin", 1, [("hits", "sum")], labels={"listener": "admin"}),
        Group("pool", 2, [("jobs", "sum")], key="job pool", reported_by_all=True),
        Group("cron", 1, [("runs", "sum")], kind="daemon", key="daemon_cron",
              reported_by_all=True),
    ], start_time=9)
    s.bucket("pool", 1).incr("jobs")
    s.bucket("cron", 0).incr("runs")
    assert s.report_groups("web") == ["web", "pool", "cron"]
    assert s.report_groups("admin") == ["admin", "pool", "cron"]
    assert s.report_groups("admin", everything=True) == ["admin", "web", "pool", "cron"]
    report = s.report("web")
    assert list(report) == ["start_time", "hits", "worker_0", "worker_1", "departed",
                            "job pool", "daemon_cron"]
    assert report["job pool"]["jobs"] == 1 and report["job pool"]["worker_1"]["jobs"] == 1
    assert report["daemon_cron"] == {"start_time": 0, "runs": 1}
    assert "admin" in s.report("web", everything=True)
    with pytest.raises(StatsError, match="no stats group 'nope'"):
        s.report_groups("nope")
    s.close()
