"""Scraping a real brimd's Prometheus output: sum() over a counter is the true count.

The brimd runs 2 WSGI workers, a TCP subserver of 2 workers and a daemon,
so the scrape has series from per-worker groups, a socket group with no
listener of its own, and a one-process group side by side.
"""

from __future__ import annotations

import http.client
import socket
import time

import pytest
from brimd_harness import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

from brim.wsgi.stats import server_stats

ECHOES = 17
MISSES = 5
TCP_CONNECTIONS = 3


def _get(port: int, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request on a fresh connection, so each is answered (and counted) on its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST" if body is not None else "GET", path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _total(families: dict, name: str) -> float:
    return sum(s.value for s in families[name].samples)


@pytest.mark.slow
def test_sum_of_request_counter_is_the_number_of_requests(brimd):
    web, tcp = free_port(), free_port()
    brimd.use(f"""
        [wsgi]
        port = {web}
        workers = 2
        apps = echo stats
        [echo]
        call = brim.wsgi_echo.WSGIEcho
        [stats]
        call = brim.stats.Stats

        [tcp#echo]
        call = brim.tcp_echo.TCPEcho
        port = {tcp}
        workers = 2

        [daemons]
        daemons = sample
        [sample]
        call = brim.daemon_sample.DaemonSample
        interval = 0.2
    """, brimd.local())
    brimd.start()
    # The listening sockets are bound before start returns, so nothing is lost
    # while the workers come up; every request below is answered and counted.
    for n in range(ECHOES):
        assert _get(web, "/echo", f"hello {n}".encode()) == (200, f"hello {n}".encode())
    for _ in range(MISSES):
        assert _get(web, "/nothing-here")[0] == 404
    for _ in range(TCP_CONNECTIONS):
        with socket.create_connection(("127.0.0.1", tcp), timeout=5) as conn:
            conn.sendall(b"ping")
            assert conn.recv(100) == b"ping"
    wait_for(lambda: brimd.workers("daemon"), what="the daemon")

    # A request is counted just after its answer is sent, so a scrape never
    # counts itself and may just miss the one before it: scrape again until
    # the earlier requests (the N, and the scrapes before this one) all show.
    requests = ECHOES + MISSES
    scrapes = 0
    deadline = time.monotonic() + 10
    while True:
        status, body = _get(web, "/stats?format=prometheus")
        assert status == 200
        families = _families(body.decode())
        counted = _total(families, "brim_request_count")
        expected = requests + scrapes
        scrapes += 1
        assert counted <= expected
        if counted == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert counted == expected

    # One series per WSGI worker and the departed one, nothing rolled up beside them.
    samples = families["brim_request_count"].samples
    assert sorted(tuple(sorted(s.labels.items())) for s in samples) == [
        (("subserver", "wsgi"), ("worker", w)) for w in ("0", "1", "departed")]
    assert _total(families, "brim_status_2xx_count") + _total(
        families, "brim_status_4xx_count") == expected
    assert _total(families, "brim_status_404_count") == MISSES

    # The TCP subserver (no listener of its own) is in the scrape, per worker too.
    connections = families["brim_connection_count"].samples
    assert {s.labels["worker"] for s in connections} == {"0", "1", "departed"}
    assert {s.labels["subserver"] for s in connections} == {"tcp#echo"}
    assert _total(families, "brim_connection_count") == TCP_CONNECTIONS

    # The daemon is one series per stat, labelled by its name alone.
    assert families["brim_sample_iterations"].samples[0].labels == {"daemon": "sample"}
    assert len(families["brim_sample_iterations"].samples) == 1

    # Every sample names its worker or daemon, except the store's own start time.
    for family in families.values():
        for s in family.samples:
            if family.name != "brim_store_start_time":
                assert "worker" in s.labels or "daemon" in s.labels, s

    # HELP comes from the declarations: brim-wsgi's own, brimd's, or the plain default.
    helps = {name: f.documentation for name, f in families.items()}
    declared = {decl[0]: decl[2] for decl in server_stats()}
    assert helps["brim_request_count"] == declared["request_count"]
    assert helps["brim_connection_count"] == "Connections accepted and handed to the app"
    assert helps["brim_sample_iterations"] == (
        "sample.iterations (sum stat; declared without a description)")
    assert all(helps.values())
