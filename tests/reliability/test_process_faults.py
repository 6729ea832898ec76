"""Process faults under load: killed, restarted, reloaded, hung and crash-looping workers.

Each scenario runs a real brimd and real HTTP clients on loopback, counts
every client outcome by kind, and records its figures (see conftest.py).
What they hold brimd to:

* a SIGKILLed worker costs only the requests in flight on it: the listening
  socket lives in the master and the other workers, so nothing is refused;
* restart and reload under load lose nothing at all;
* a worker stuck in a CPU loop or a blocking call is killed and replaced
  after ``worker_timeout`` while the other worker serves on;
* a daemon or app that dies at once is restarted with growing delays, and
  the rest of brimd serves on meanwhile.
"""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import socket
import threading
import time

import pytest
from brimd_harness import alive, free_port, get_json, wait_for

ECHO = """
    [wsgi]
    apps = echo stats
    workers = {workers}

    [echo]
    call = brim.wsgi_echo.WSGIEcho

    [stats]
    call = brim.stats.Stats
"""

#: Failures a client may see when the worker holding its connection is killed
#: mid-request (or between two requests on a keep-alive connection).
IN_FLIGHT = {"reset", "closed", "broken pipe"}


def _kind(err: BaseException) -> str:
    """Classify a client-side failure; a refusal is the one that must never happen."""
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, (http.client.RemoteDisconnected, http.client.IncompleteRead)):
        return "closed"  # before reset: RemoteDisconnected is a ConnectionResetError
    if isinstance(err, ConnectionResetError):
        return "reset"
    if isinstance(err, BrokenPipeError):
        return "broken pipe"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "timeout"
    return repr(err)


class _Client(threading.Thread):
    """POST /echo in a loop, on one keep-alive connection or a new one per request.

    Every outcome is counted in ``counts`` ("ok", "bad <status>" or a failure
    kind). The keep-alive client reconnects only after a response said
    ``Connection: close`` or after a failure. Bounded by ``stop``, a request
    cap and a deadline.
    """

    def __init__(self, port: int, keepalive: bool, stop: threading.Event,
                 limit: int = 200_000, seconds: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.port, self.keepalive, self.stop = port, keepalive, stop
        self.limit, self.deadline = limit, time.monotonic() + seconds
        self.counts: dict[str, int] = {}

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def run(self) -> None:
        conn = None
        sent = 0
        while not self.stop.is_set() and sent < self.limit and time.monotonic() < self.deadline:
            sent += 1
            body = b"ping %d" % sent
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/echo", body=body)
                response = conn.getresponse()
                got = response.read()
                ok = response.status == 200 and got == body
                self._count("ok" if ok else f"bad {response.status}")
                if response.will_close or not self.keepalive:
                    conn.close()
                    conn = None
            except Exception as err:
                self._count(_kind(err))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()


def _clients(port: int, stop: threading.Event, keepalive: int, new: int) -> list[_Client]:
    clients = [_Client(port, True, stop) for _ in range(keepalive)]
    clients += [_Client(port, False, stop) for _ in range(new)]
    for client in clients:
        client.start()
    return clients


def _total(clients: list[_Client]) -> dict[str, int]:
    out: dict[str, int] = {}
    for client in clients:
        for key, n in client.counts.items():
            out[key] = out.get(key, 0) + n
    return out


def _stop(clients: list[threading.Thread], stop: threading.Event) -> None:
    stop.set()
    for client in clients:
        client.join(15)
        assert not client.is_alive(), "a client thread did not finish"


class _LogClock(threading.Thread):
    """Stamps each syslog line with the monotonic time it arrived (to ~10 ms)."""

    def __init__(self, syslog) -> None:
        super().__init__(daemon=True)
        self.syslog = syslog
        self.stamped: list[tuple[float, str]] = []
        self.done = threading.Event()
        self.start()

    def run(self) -> None:
        seen = 0
        while not self.done.is_set():
            lines = self.syslog.lines
            now = time.monotonic()
            while seen < len(lines):
                self.stamped.append((now, lines[seen]))
                seen += 1
            time.sleep(0.01)

    def times(self, pattern: str) -> list[float]:
        return [t for t, line in list(self.stamped) if re.search(pattern, line)]

    def close(self) -> None:
        self.done.set()
        self.join(2)


def _stats(port: int) -> dict:
    return get_json(f"http://127.0.0.1:{port}/stats")


# --- 1. workers killed under load ---------------------------------------------


def test_killed_workers_cost_only_requests_in_flight(brimd, syslog, figures):
    """SIGKILL a random one of 4 workers every second for 30 s under steady load."""
    port = free_port()
    brimd.use(ECHO.format(workers=4), brimd.local(port=port))
    master = brimd.start()
    wait_for(lambda: len(brimd.workers("wsgi")) == 4, what="four workers")
    titles = set(brimd.workers("wsgi"))
    stop = threading.Event()
    clients = _clients(port, stop, keepalive=2, new=2)
    polls: list[tuple[int, int]] = []  # (request_count, start_count)
    poll_failures: dict[str, int] = {}

    def poll_stats() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                data = _stats(port)
                polls.append((data["request_count"], data["start_count"]))
            except Exception as err:
                kind = _kind(getattr(err, "reason", err))
                poll_failures[kind] = poll_failures.get(kind, 0) + 1
            time.sleep(0.1)

    poller = threading.Thread(target=poll_stats, daemon=True)
    poller.start()
    kills = 0
    rng = random.Random(7)
    started = time.monotonic()
    try:
        for second in range(1, 31):
            time.sleep(max(0.0, started + second - time.monotonic()))
            live = sorted(brimd.workers("wsgi").items())
            if not live:
                continue
            _title, victim = rng.choice(live)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills += 1
        back = wait_for(lambda: (w := brimd.workers("wsgi")) and set(w) == titles and w,
                        timeout=40, what="all four worker ids back")
        wait_for(lambda: _stats(port)["start_count"] == 4 + kills,
                 what=f"start_count == 4 + {kills}")
        time.sleep(0.5)  # some traffic on the healed set of workers
    finally:
        _stop([*clients, poller], stop)
    counts = _total(clients)
    failures = {k: n for k, n in counts.items() if k != "ok"}
    for kind, n in poll_failures.items():
        failures[f"stats {kind}"] = n
    failed = sum(failures.values())
    connections = len(clients) + 1  # the stats poller is a client too
    figures.update(requests=sum(counts.values()) + len(polls) + sum(poll_failures.values()),
                   failed=failed, kills=kills, failures=failures,
                   bound=kills * connections, stats_polls=len(polls),
                   seconds=round(time.monotonic() - started, 1))
    assert brimd.master_pid() == master and alive(master)
    assert all(alive(pid) for pid in back.values())
    assert kills >= 25
    assert counts.get("ok", 0) > 1000, counts
    assert not [k for k in failures if k.split()[-1] == "refused"], failures
    assert {k.removeprefix("stats ") for k in failures} <= IN_FLIGHT, failures
    assert failed <= kills * connections, (failed, kills, failures)
    request_counts = [r for r, _ in polls]
    assert len(polls) > 100
    assert request_counts == sorted(request_counts), "request_count went backwards"
    assert request_counts[-1] > request_counts[0]
    assert _stats(port)["start_count"] == 4 + kills
    syslog.wait_line("exited unexpectedly with signal SIGKILL")
