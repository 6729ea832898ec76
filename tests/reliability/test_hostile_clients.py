"""Hostile clients against a real brimd: slow and idle connections, malformed requests.

Two threats a public HTTP server meets every day. Slowloris-style clients
open many connections and dribble out a request head a byte at a time (or
send nothing), hoping to use up the server's connection slots; a green
thread per connection should make them cheap, and client_timeout should
bound how long each one lasts. Malformed and smuggling-shaped requests try
to confuse the parser; each must be refused with a 4xx (505 for versions)
or a plain close, never reach an app as something else, never cost a
worker its life.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import re
import resource
import selectors
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from brimd_harness import (
    Brimd,
    SyslogListener,
    echo_stats_conf,
    free_port,
    get_json,
    wait_for,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from malformed_corpus import CORPUS, TOLERATED

SLOW = 1000  # slow connections, of which IDLE send nothing at all
IDLE = 200
SLOW_HEAD = b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: "


def _raise_nofile(need: int) -> None:
    """Lift this process's open-files soft limit to the hard limit when need is above it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"this test needs {need} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _sockets_of(pid: int) -> int:
    """How many sockets a process holds open, from /proc."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
    return count


def _baseline_sockets(pids: list[int]) -> int:
    """The workers' own sockets (listeners, log), once any probe connection is let go."""
    samples = []
    for _ in range(5):
        samples.append(sum(_sockets_of(pid) for pid in pids))
        time.sleep(0.1)
    return min(samples)


def _start(brimd: Brimd, **extra: object) -> tuple[int, dict[str, int]]:
    port = free_port()
    brimd.use(echo_stats_conf(workers=2, **extra), brimd.local(port=port))
    brimd.start()
    workers = wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 2 and w,
                       what="two wsgi workers")
    wait_for(lambda: get_json(f"http://127.0.0.1:{port}/stats"), what="stats answering")
    return port, workers


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class _SlowClients:
    """SLOW connections; all but IDLE of them send one byte of a head every period s.

    Everything runs on one thread with non-blocking sockets. Each tick
    collects whatever the server sent (a response, an EOF) so the test can
    tell a dropped connection from a held one and how long it lasted.
    """

    def __init__(self, port: int, period: float) -> None:
        self.period = period
        self.socks: list[socket.socket] = []
        self.selector = selectors.DefaultSelector()
        began = time.monotonic()
        for n in range(SLOW):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setblocking(False)
            self.socks.append(sock)
            self.selector.register(sock, selectors.EVENT_READ, n)
        now = time.monotonic()
        rng = random.Random(7)
        # Idle connections never send; the rest start at a random phase.
        self.next_send = [None if n < IDLE else now + rng.uniform(0, period)
                          for n in range(SLOW)]
        self.first_byte: list[float | None] = [None] * SLOW
        self.opened = now
        self.open_seconds = now - began
        self.received = [b""] * SLOW
        self.closed_at: list[float | None] = [None] * SLOW
        self.sends = 0
        self.send_errors = 0

    def tick(self, wait: float = 0.0) -> None:
        for key, _events in self.selector.select(wait):
            n = key.data
            try:
                data = self.socks[n].recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            self.received[n] += data
            if not data:
                self.closed_at[n] = time.monotonic()
                self.next_send[n] = None
                self.selector.unregister(self.socks[n])
        now = time.monotonic()
        for n, due in enumerate(self.next_send):
            if due is None or due > now:
                continue
            try:
                self.socks[n].send(SLOW_HEAD if self.first_byte[n] is None else b"a")
            except OSError:
                self.send_errors += 1
                self.next_send[n] = None
                continue
            self.sends += 1
            if self.first_byte[n] is None:
                self.first_byte[n] = now
            self.next_send[n] = due + self.period

    def run(self, seconds: float, stop: threading.Event,
            sample: Callable[[], object] | None = None) -> None:
        """Dribble until seconds pass, stop is set or every connection is closed.

        sample, if given, is called about every half second along the way.
        """
        deadline = time.monotonic() + seconds
        next_sample = 0.0
        while time.monotonic() < deadline and not stop.is_set():
            self.tick(wait=0.05)
            if all(t is not None for t in self.closed_at):
                return
            if sample is not None and time.monotonic() >= next_sample:
                sample()
                next_sample = time.monotonic() + 0.5

    def close(self) -> None:
        self.selector.close()
        for sock in self.socks:
            sock.close()


def _good_requests(port: int, count: int, pause: float) -> tuple[list[float], Counter]:
    """count sequential POSTs, each on a new connection; latencies and outcomes."""
    latencies: list[float] = []
    outcomes: Counter = Counter()
    for n in range(count):
        body = b"ping %d" % n
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("POST", "/echo", body=body)
            response = conn.getresponse()
            got = response.read()
            outcomes["ok" if response.status == 200 and got == body
                     else f"bad {response.status}"] += 1
        except Exception as err:
            outcomes[repr(err)] += 1
        finally:
            conn.close()
        latencies.append(time.monotonic() - start)
        time.sleep(pause)
    return latencies, outcomes


@pytest.mark.slow
@pytest.mark.xdist_group("load")  # 1,000 connections: one load at a time
def test_slow_and_idle_clients_do_not_starve_a_good_one(brimd, figures):
    """1000 slowloris connections for ~16 s; 150 good requests all answered quickly."""
    _raise_nofile(SLOW + 200)
    port, workers = _start(brimd, idle_timeout=10)  # idle ones must be closed within the test
    before = _baseline_sockets(list(workers.values()))
    slow = _SlowClients(port, period=3.0)
    stop = threading.Event()
    dribbler = threading.Thread(target=slow.run, args=(25.0, stop), daemon=True)
    started = time.monotonic()
    dribbler.start()
    try:
        held = wait_for(
            lambda: (n := sum(_sockets_of(pid) for pid in workers.values()) - before) >= SLOW
            and n, timeout=10, what=f"the workers to hold {SLOW} slow connections")
        latencies, outcomes = _good_requests(port, 150, pause=0.11)
        per_worker = [_sockets_of(pid) for pid in sorted(workers.values())]
        peak = max(held, sum(per_worker) - before)
    finally:
        stop.set()
        dribbler.join(10)
    dribbled = time.monotonic() - started
    slow.tick()
    still_open = sum(t is None for t in slow.closed_at)
    answered = sum(bool(r) for r in slow.received)
    slow.close()
    stats = get_json(f"http://127.0.0.1:{port}/stats")
    figures.update(
        slow_connections=SLOW, idle_connections=IDLE, open_s=round(slow.open_seconds, 2),
        dribble_s=round(dribbled, 1),
        slow_sends=slow.sends, server_sockets_held=peak,
        sockets_per_worker=per_worker, good_requests=len(latencies),
        good_ok=outcomes["ok"], good_failed=len(latencies) - outcomes["ok"],
        p50_ms=round(_percentile(latencies, 50) * 1000, 1),
        p99_ms=round(_percentile(latencies, 99) * 1000, 1),
        max_ms=round(max(latencies) * 1000, 1), slow_still_open=still_open,
        restarts=stats["start_count"] - 2)
    assert outcomes == Counter(ok=150), outcomes
    assert _percentile(latencies, 99) < 1.0, figures
    assert dribbled >= 15.0
    # client_timeout is 60 s: no dribbling head may have been dropped yet. The
    # IDLE connections that never sent a byte were closed quietly after
    # idle_timeout (10 s here), with no answer: nothing was asked.
    idle_closed = [slow.closed_at[n] for n in range(IDLE)]
    assert all(t is not None and t - slow.opened < 10 + 3 for t in idle_closed), figures
    assert (still_open, answered, slow.send_errors) == (SLOW - IDLE, 0, 0), figures
    assert brimd.workers("wsgi") == workers and stats["start_count"] == 2


@pytest.mark.slow
@pytest.mark.xdist_group("load")  # 1,000 connections: one load at a time
def test_client_timeout_drops_slow_heads_with_408(brimd, figures):
    """client_timeout = 3: every slow head gets 408; idle_timeout = 3 closes the idle quietly."""
    _raise_nofile(SLOW + 200)
    port, workers = _start(brimd, client_timeout=3, idle_timeout=3)
    before = _baseline_sockets(list(workers.values()))
    slow = _SlowClients(port, period=1.0)
    held: list[int] = []
    good: list[tuple[list[float], Counter]] = []
    # A good client is served all the while the server times the slow ones out.
    client = threading.Thread(target=lambda: good.append(_good_requests(port, 20, pause=0.2)),
                              daemon=True)
    try:
        client.start()
        # Idle connections are timed from accept: dribbling and watching
        # start at once, and how many the workers held at a time is sampled.
        slow.run(15.0, threading.Event(), sample=lambda: held.append(
            sum(_sockets_of(pid) for pid in workers.values()) - before))
    finally:
        client.join(30)
        slow.close()
    _latencies, outcomes = good[0]
    statuses = Counter(
        (m.group(1).decode() if (m := re.match(rb"HTTP/1\.1 (\d{3}) ", r)) else "none")
        for r in slow.received)
    lasted = [closed - (first if first is not None else slow.opened)
              for closed, first in zip(slow.closed_at, slow.first_byte, strict=True)
              if closed is not None]
    sockets_after = wait_for(
        lambda: (n := sum(_sockets_of(pid) for pid in workers.values())) <= before and n,
        timeout=10, what="the workers to let go of the slow connections")
    stats = wait_for(lambda: (s := get_json(f"http://127.0.0.1:{port}/stats"))
                     ["status_408_count"] >= SLOW - IDLE and s, what="408s counted")
    figures.update(
        slow_connections=SLOW, idle_connections=IDLE, client_timeout_s=3,
        open_s=round(slow.open_seconds, 2), server_sockets_held_max=max(held),
        dropped=len(lasted), responses=dict(statuses),
        lasted_median_s=round(_percentile(lasted, 50), 2) if lasted else None,
        lasted_max_s=round(max(lasted), 2) if lasted else None,
        status_408_count=stats["status_408_count"], server_sockets_after=sockets_after,
        good_ok=outcomes["ok"], restarts=stats["start_count"] - 2)
    # The slow heads are answered 408; the idle connections asked nothing and
    # are closed without an answer.
    assert statuses == Counter({"408": SLOW - IDLE, "none": IDLE}), statuses
    assert max(held) >= SLOW // 2, f"the workers never held many at once: {held}"
    assert len(lasted) == SLOW
    # Each head had 3 s from its first byte; allow for ticks and a busy machine.
    assert max(lasted) < 3 + 3, figures
    assert stats["status_408_count"] == SLOW - IDLE
    assert outcomes == Counter(ok=20), outcomes
    assert brimd.workers("wsgi") == workers and stats["start_count"] == 2


# --- the malformed corpus ----------------------------------------------------------------

class _CorpusServer:
    """One brimd shared by every corpus entry, plus what each entry got back."""

    def __init__(self, brimd: Brimd, port: int, workers: dict[str, int]) -> None:
        self.brimd = brimd
        self.port = port
        self.workers = workers
        self.outcomes: dict[str, tuple[list[int], bool, float]] = {}

    def exchange(self, raw: bytes, deadline: float = 8.0) -> tuple[bytes, bool, float]:
        """Send raw, read to EOF; (data, closed, seconds). closed False means a hang."""
        start = time.monotonic()
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=deadline)
        data = b""
        closed = False
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(raw)
            while time.monotonic() - start < deadline:
                sock.settimeout(max(0.01, deadline - (time.monotonic() - start)))
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    closed = True
                    break
                except TimeoutError:
                    break
                if not chunk:
                    closed = True
                    break
                data += chunk
        finally:
            sock.close()
        return data, closed, time.monotonic() - start

    def outcome(self, name: str, raw: bytes) -> tuple[list[int], bool, float]:
        if name not in self.outcomes:
            data, closed, took = self.exchange(raw)
            statuses = [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]
            self.outcomes[name] = (statuses, closed, took)
        return self.outcomes[name]


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory) -> Iterator[_CorpusServer]:
    syslog = SyslogListener()
    brimd = Brimd(tmp_path_factory.mktemp("corpus"), syslog)
    try:
        # client_timeout 2: an entry the server must wait on (a head that
        # might still be completed) costs 2 s, then a 408.
        port, workers = _start(brimd, client_timeout=2)
        yield _CorpusServer(brimd, port, workers)
    finally:
        brimd.kill_all()
        syslog.close()


@pytest.mark.parametrize(("name", "raw"), CORPUS, ids=[name for name, _ in CORPUS])
@pytest.mark.slow
def test_malformed_request_is_refused(corpus_server, name, raw):
    statuses, closed, _took = corpus_server.outcome(name, raw)
    assert closed, f"{name}: no answer and no close within 8 s (got {statuses})"
    # One refusal or a plain close; a second status would be a smuggled request.
    assert len(statuses) <= 1, f"{name}: several responses {statuses}"
    if statuses:
        status = statuses[0]
        assert 400 <= status < 600 and status != 500, f"{name}: answered {status}"
        assert status != 404, f"{name}: reached an app (404), was not refused"


@pytest.mark.parametrize(("name", "raw", "body"), TOLERATED, ids=[n for n, _, _ in TOLERATED])
def test_tolerated_oddity_is_answered_once(corpus_server, name, raw, body):
    data, closed, _took = corpus_server.exchange(raw)
    assert closed and data.startswith(b"HTTP/1.1 200 OK\r\n"), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1 and data.endswith(b"\r\n\r\n" + body), data[-200:]


def test_corpus_left_every_worker_running(corpus_server, figures):
    """After the whole corpus: same workers, no restarts, no tracebacks, still serving."""
    for name, raw in CORPUS:  # entries a -k selection skipped are sent here
        corpus_server.outcome(name, raw)
    port = corpus_server.port
    stats = get_json(f"http://127.0.0.1:{port}/stats")
    by_status = Counter(str(s[0]) if s else "closed" for s, _c, _t in
                        corpus_server.outcomes.values())
    log = corpus_server.brimd.syslog.lines
    figures.update(
        corpus=len(CORPUS), responses=dict(sorted(by_status.items())),
        closed_without_response=by_status["closed"],
        slowest_s=round(max(t for _s, _c, t in corpus_server.outcomes.values()), 2),
        restarts=stats["start_count"] - 2, status_5xx_count=stats["status_5xx_count"])
    assert len(CORPUS) >= 100
    assert corpus_server.brimd.workers("wsgi") == corpus_server.workers
    assert stats["start_count"] == 2
    assert not [line for line in log if "Traceback" in line or "Logging error" in line
                or "handler failed" in line][:3]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/echo", body=b"still here")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"still here")
    finally:
        conn.close()
