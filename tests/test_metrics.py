"""A real brimd's latency and load metrics, scraped and parsed as Prometheus would.

Two WSGI workers serve the echo and stats apps. The checks: the request
histogram counts every request (and its buckets add up), the in-flight,
connection and slot gauges follow requests that are held open by a body not
yet sent, and no counter goes backwards across a reload or a kill -9.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket

import pytest
from brimd_harness import alive, echo_stats_conf, free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

from brim.server.statusfile import StatusFile, status_path
from brim.server.top import Source, take

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _scrape(port: int) -> dict:
    status, body = _get(port, "/stats?format=prometheus")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _total(families: dict, name: str, sample: str | None = None) -> float:
    return sum(s.value for s in families[name].samples if sample is None or s.name == sample)


def _counters(families: dict) -> Samples:
    """Every counter and histogram sample, by name and labels."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in families.values() if f.type in ("counter", "histogram") for s in f.samples}


def _not_lower(before: Samples, after: Samples) -> list[str]:
    return [f"{name}{dict(labels)}: {value} -> {after.get((name, labels))}"
            for (name, labels), value in before.items()
            if after.get((name, labels), -1) < value]


def _start(brimd, **options: object) -> int:
    port = free_port()
    brimd.use(echo_stats_conf(workers=2, **options), brimd.local(port=port, start_check=0.3))
    brimd.start()
    wait_for(lambda: len(brimd.workers("wsgi")) == 2, what="two workers")
    return port


def test_histogram_counts_every_request_and_gauges_follow_slow_ones(brimd):
    port = _start(brimd)
    made = 0
    for n in range(24):
        assert _get(port, "/echo" if n % 3 else "/missing")[0] == (200 if n % 3 else 404)
        made += 1

    # A scrape is counted once answered: the earlier ones show in the next.
    scrapes = 0

    def all_counted():
        nonlocal scrapes
        families = _scrape(port)
        scrapes += 1
        return families if _total(families, "brim_request_count") == made + scrapes - 1 else None

    families = wait_for(all_counted, what="every request counted")
    hist = families["brim_request_duration_seconds"]
    assert hist.type == "histogram"
    assert _total(families, "brim_request_duration_seconds",
                  "brim_request_duration_seconds_count") == made + scrapes - 1
    series = {s.labels["worker"] for s in hist.samples}
    assert series == {"0", "1", "departed"}
    for worker in series:
        buckets = [(s.labels["le"], s.value) for s in hist.samples
                   if s.name.endswith("_bucket") and s.labels["worker"] == worker]
        count = next(s.value for s in hist.samples
                     if s.name.endswith("_count") and s.labels["worker"] == worker)
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        assert buckets[-1] == ("+Inf", count)
    # Both workers served some, and each reports its process' memory and CPU.
    rss = {s.labels["worker"]: s.value
           for s in families["brim_process_resident_memory_bytes"].samples}
    assert set(rss) == {"0", "1"} and min(rss.values()) > 1 << 20
    assert {s.labels["worker"] for s in families["brim_process_cpu_seconds"].samples} == {
        "0", "1"}

    # Three requests held open: heads sent, bodies not yet.
    held = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n")
        held.append(sock)

    def gauges():
        f = _scrape(port)  # this scrape is itself in flight while it is rendered
        return (_total(f, "brim_requests_in_flight"), _total(f, "brim_busy_slots"),
                _total(f, "brim_connections_open"), _total(f, "brim_connections_idle"))

    wait_for(lambda: gauges() == (4, 4, 4, 0), what="3 slow requests (and the scrape) in flight")
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    wait_for(lambda: gauges() == (4, 5, 5, 1), what="an idle connection counted")
    for sock in held:
        sock.sendall(b"ping")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    idle.close()
    wait_for(lambda: gauges() == (1, 1, 1, 0), what="the gauges back down")


@pytest.mark.slow  # a reload re-executes the master and checks the new conf first: ~5 s
def test_counters_never_go_back_across_reload_and_kill_9(brimd):
    port = _start(brimd)
    for _ in range(10):
        _get(port, "/")
    before = _counters(_scrape(port))
    old = set(brimd.workers("wsgi").values())
    # What brimd top reads: the store the status file names, mapped from outside.
    source = Source(StatusFile(status_path(str(brimd.pid_file))).read, brimd.master_pid())
    assert {s.pid for s in take(source.current())} == old

    assert brimd.run("reload").returncode == 0
    wait_for(lambda: not any(alive(p) for p in old), what="the old workers drained")
    wait_for(lambda: len(brimd.workers("wsgi")) == 2, what="two new workers")
    # The re-executed master has a new store, and the reader follows it there.
    assert {s.pid for s in take(source.current())} == set(brimd.workers("wsgi").values())
    for _ in range(5):
        _get(port, "/")
    after_reload = _counters(_scrape(port))
    assert _not_lower(before, after_reload) == []
    reloads = {k: v for k, v in after_reload.items() if k[0] == "brim_recycle_reload_count_total"}
    assert sum(reloads.values()) == 2
    # A worker counts a request just after its answer has gone: let the last
    # answers be counted before a worker is killed, or the kill may rightly
    # take a count with it. Each scrape sees the requests before it.
    scrapes = [2]

    def counted_so_far() -> bool:
        counted = _total(_scrape(port), "brim_request_count") == 10 + 5 + scrapes[0]
        scrapes[0] += 1
        return counted

    wait_for(counted_so_far, what="the requests so far counted")

    title, victim = sorted(brimd.workers("wsgi").items())[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: brimd.workers("wsgi").get(title) not in (None, victim),
             what="the killed worker replaced")
    for _ in range(5):
        _get(port, "/")
    after_kill = _counters(_scrape(port))
    assert _not_lower(after_reload, after_kill) == []
    crashes = sum(v for k, v in after_kill.items() if k[0] == "brim_restart_crash_count_total")
    assert crashes == 1
    # Nothing was lost either: every request and every earlier scrape is counted.
    scrapes[0] += 1  # after_kill's

    def all_counted():
        families = _scrape(port)
        scrapes[0] += 1
        return _total(families, "brim_request_count") == 10 + 5 + 5 + scrapes[0] - 1

    wait_for(all_counted, what="every request counted")
