"""5,000 idle connections do not keep a live client waiting (the issue's acceptance test).

brimd runs 2 workers with default settings (concurrent_per_worker 1024,
client_timeout 60) but idle_timeout 10 (the default is 75 s, longer than this
test should wait), and the echo app. The test opens 5,000
TCP connections that send nothing: more than the two workers' 2,048 green
threads, so the rest wait in the listen backlog. A worker whose threads are
all busy sheds its longest-idle connection when it accepts a new one, so a
new client's 100 requests (a fresh connection each) must all be answered,
p99 under 100 ms; and every held connection must be closed (quietly, or
with a 408) within idle_timeout and a margin, by workers that never died.

The 100 measured requests start once the workers have taken the listen
backlog (shedding as they go); one probe request sent straight after the
flood, behind the whole backlog, must be answered too, and its latency is
recorded. The figures (connected, p50/p99, closes by time) are printed: run
with -s (or -rP) to see them.

How the flood meets the workers is timing: when a worker keeps up, its
accept() often finds the backlog empty and yields. The second test takes
the timing out: both workers are stopped while 3,000 idle connections queue,
so on SIGCONT each accepts more than its 1,024 slots back to back, and the
same promises must hold.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import math
import os
import resource
import selectors
import signal
import socket
import time
from collections import Counter

import pytest
from brimd_harness import accept_queue, echo_stats_conf, free_port, get_json, proc_net_tcp, wait_for

HELD = 5000
REQUESTS = 100
BURST = 3000  # queued at once: more than one worker's 1024 threads, within the backlog
IDLE_TIMEOUT = 10.0  # set in the conf (the default, 75 s, is for behind load balancers)
# Seconds after the last connect by which every held connection must be closed:
# idle_timeout from its accept, and accepts end within ~1 s (the backlog drain).
CLOSE_BY = IDLE_TIMEOUT + 5.0
# Watched this much longer when some are still open, to report when they close.
WATCH_MORE = 10.0
P99_LIMIT = 0.100


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"needs {need} open files for {HELD} connections; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (need if hard == resource.RLIM_INFINITY else hard, hard))


def _syn_recv(port: int) -> int:
    """Server-side half-open connections (SYN_RECV): the client thinks it is connected
    but its final ACK was dropped (a full queue), so the kernel retries the SYN-ACK."""
    return sum(fields[3] == "03" for fields in proc_net_tcp(port))


def _percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (for 100 values, p99 is the second largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * pct / 100) - 1)]


class _Held:
    """HELD non-blocking connections that send nothing, watched on one selector.

    poll() records when each finished connecting, what the server sent it (a
    408 at most) and when it saw EOF or a reset.
    """

    def __init__(self, port: int, count: int = HELD) -> None:
        self.selector = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.state = ["pending"] * count
        self.connected_at: list[float | None] = [None] * count
        self.closed_at: list[float | None] = [None] * count
        self.received = [b""] * count
        self.connect_errors: Counter = Counter()
        for n in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            self.socks.append(sock)
            err = sock.connect_ex(("127.0.0.1", port))
            if err == 0:
                self._connected(n)
            elif err in (errno.EINPROGRESS, errno.EAGAIN):
                self.selector.register(sock, selectors.EVENT_WRITE, n)
            else:
                self._failed(n, err)

    def _connected(self, n: int) -> None:
        self.state[n] = "open"
        self.connected_at[n] = time.monotonic()
        with contextlib.suppress(KeyError):
            self.selector.unregister(self.socks[n])
        self.selector.register(self.socks[n], selectors.EVENT_READ, n)

    def _failed(self, n: int, err: int) -> None:
        self.state[n] = "failed"
        self.connect_errors[errno.errorcode.get(err, str(err))] += 1
        with contextlib.suppress(KeyError):
            self.selector.unregister(self.socks[n])

    def poll(self, wait: float = 0.0) -> None:
        for key, _mask in self.selector.select(wait):
            n = key.data
            sock = self.socks[n]
            if self.state[n] == "pending":
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._failed(n, err)
                else:
                    self._connected(n)
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:  # a reset is a close too
                data = b""
            if data:
                self.received[n] += data
                continue
            self.state[n] = "closed"
            self.closed_at[n] = time.monotonic()
            self.selector.unregister(sock)

    def count(self, state: str) -> int:
        return self.state.count(state)

    def connect_all(self, within: float = 15.0) -> None:
        began = time.monotonic()
        while self.count("pending") and time.monotonic() - began < within:
            self.poll(0.05)

    def watch_until_closed(self, since: float, seconds: float) -> None:
        while self.count("open") and time.monotonic() - since < seconds:
            self.poll(0.1)

    def close(self) -> None:
        self.selector.close()
        for sock in self.socks:
            sock.close()


def _request(port: int, n: int) -> tuple[float, str]:
    """One POST /echo on a new connection: (seconds, 'ok' or what went wrong)."""
    body = b"live client %d" % n
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/echo", body=body)
        response = conn.getresponse()
        got = response.read()
        outcome = "ok" if (response.status, got) == (200, body) else f"{response.status}"
    except Exception as err:
        outcome = type(err).__name__
    finally:
        conn.close()
    return time.perf_counter() - start, outcome


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_idle_flood_does_not_delay_a_live_client(brimd, syslog):
    _raise_nofile(HELD + 1000)
    port = free_port()
    brimd.use(echo_stats_conf(workers=2, idle_timeout=IDLE_TIMEOUT), brimd.local(port=port))
    brimd.start()
    workers = wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 2 and w,
                       what="two wsgi workers")
    before = wait_for(lambda: get_json(f"http://127.0.0.1:{port}/stats"), what="stats")
    figures: dict[str, object] = {"held": HELD}
    held = None
    log_from = len(syslog.lines)
    try:
        began = time.monotonic()
        held = _Held(port)
        held.connect_all()
        connected_by = time.monotonic()
        figures.update(
            connect_s=round(connected_by - began, 2),
            connected=held.count("open") + held.count("closed"),
            connect_pending=held.count("pending"), connect_failed=dict(held.connect_errors),
            backlog_after_connect=accept_queue(port), syn_recv_after_connect=_syn_recv(port))
        # One probe at once, queued behind the whole backlog: answered, and how fast
        # (a figure only; the 100 measured requests come once the backlog is taken).
        probe_s, probe = _request(port, -1)
        figures.update(probe_during_backlog_ms=round(probe_s * 1000, 1), probe=probe)
        # Let the workers take what the listen backlog holds (shedding as they go),
        # watching the held connections meanwhile; at most 5 s.
        while (accept_queue(port) or 0) > 0 and time.monotonic() - connected_by < 5:
            held.poll(0.05)
        held.poll(0)
        figures.update(backlog_drained_s=round(time.monotonic() - connected_by, 2),
                       backlog_left=accept_queue(port),
                       closed_before_client=held.count("closed"))

        latencies: list[float] = []
        outcomes: Counter = Counter()
        for n in range(REQUESTS):
            if time.monotonic() - connected_by > 30:  # keep a failing run short
                outcomes["not sent (30 s budget spent)"] += REQUESTS - n
                break
            took, outcome = _request(port, n)
            latencies.append(took)
            outcomes[outcome] += 1
            held.poll(0)
        client_done = time.monotonic()
        figures.update(
            client_s=round(client_done - connected_by, 2), outcomes=dict(outcomes),
            p50_ms=round(_percentile(latencies, 50) * 1000, 1),
            p99_ms=round(_percentile(latencies, 99) * 1000, 1),
            max_ms=round(max(latencies) * 1000, 1),
            open_after_client=held.count("open"))

        # Every held connection must now be let go: idle_timeout from its accept.
        held.watch_until_closed(connected_by, CLOSE_BY)
        open_at_deadline = held.count("open")
        held.watch_until_closed(connected_by, CLOSE_BY + WATCH_MORE)
        try:
            after = get_json(f"http://127.0.0.1:{port}/stats")
        except Exception as err:  # a saturated server: report the rest, fail below
            after = {"request_count": -1, "status_408_count": -1, "start_count": -1,
                     "error": repr(err)}
        closes = [t - connected_by for t in held.closed_at if t is not None]
        answers = Counter("none" if not data else data[:12].decode("latin-1")
                          for data in held.received)
        figures.update(
            open_at_deadline=open_at_deadline, still_open=held.count("open"),
            closed=len(closes),
            closed_by_s={s: sum(t <= s for t in closes) for s in (1, 5, 9, 10, 11, 12, 15, 25)},
            last_close_s=round(max(closes), 2) if closes else None,
            late_closes=[(n, round(t - connected_by, 2)) for n, t in enumerate(held.closed_at)
                         if t is not None and t - connected_by > CLOSE_BY][:10],
            answers=dict(answers), request_count_delta=after["request_count"]
            - before["request_count"], status_408_count=after["status_408_count"],
            start_count=after["start_count"], stats_error=after.get("error"))
    finally:
        if held is not None:
            held.close()
        print(f"\nidle flood figures: {json.dumps(figures, sort_keys=True)}")
    log_lines = [line for line in syslog.lines[log_from:] if "POST /echo 200" not in line
                 and "GET /stats 200" not in line]
    figures["other_log_lines"] = len(log_lines)
    print(f"other log lines ({len(log_lines)}): {log_lines[:5]}")

    assert figures["connected"] == HELD, figures
    assert outcomes == Counter(ok=REQUESTS) and probe == "ok", figures
    assert _percentile(latencies, 99) < P99_LIMIT, figures
    assert open_at_deadline == 0, figures
    # Nothing was asked on the held connections: a quiet close, at most a 408.
    assert set(answers) <= {"none", "HTTP/1.1 408"}, figures
    n408 = answers.get("HTTP/1.1 408", 0)
    # Idle connections closed quietly are neither counted nor logged one by one.
    # Counted: the probe, the 100, and the first /stats (counted once it was answered).
    assert figures["request_count_delta"] - n408 == REQUESTS + 2, figures
    assert len(log_lines) - n408 < 10, log_lines[:10]
    assert brimd.workers("wsgi") == workers and after["start_count"] == 2, figures


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_burst_queued_while_workers_are_busy_is_shed(brimd):
    """The same promise when the idle connections arrive faster than a worker accepts.

    Both workers are held (SIGSTOP) while BURST connections that send nothing
    queue in the listen backlog, as during a burst that comes in while the
    workers are busy; then they go on (SIGCONT). Each worker now finds more
    than its 1024 slots' worth waiting and accepts them back to back: the
    longest-idle must be shed as it goes, so a new client is answered at once
    and every idle connection is closed within idle_timeout.
    """
    _raise_nofile(BURST + 1000)
    port = free_port()
    brimd.use(echo_stats_conf(workers=2, idle_timeout=IDLE_TIMEOUT), brimd.local(port=port))
    brimd.start()
    workers = wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 2 and w,
                       what="two wsgi workers")
    wait_for(lambda: get_json(f"http://127.0.0.1:{port}/stats"), what="stats")
    figures: dict[str, object] = {"burst": BURST}
    held = None
    try:
        for pid in workers.values():
            os.kill(pid, signal.SIGSTOP)
        try:
            held = _Held(port, BURST)
            held.connect_all()
            figures.update(connected=held.count("open"), backlog=accept_queue(port))
        finally:
            for pid in workers.values():
                os.kill(pid, signal.SIGCONT)
        resumed = time.monotonic()
        latencies: list[float] = []
        outcomes: Counter = Counter()
        for n in range(REQUESTS):
            if time.monotonic() - resumed > 30:  # keep a failing run short
                outcomes["not sent (30 s budget spent)"] += REQUESTS - n
                break
            took, outcome = _request(port, n)
            latencies.append(took)
            outcomes[outcome] += 1
            held.poll(0)
        figures.update(
            outcomes=dict(outcomes), first_ms=round(latencies[0] * 1000, 1),
            p50_ms=round(_percentile(latencies, 50) * 1000, 1),
            p99_ms=round(_percentile(latencies, 99) * 1000, 1),
            max_ms=round(max(latencies) * 1000, 1),
            backlog_after_client=accept_queue(port), closed_after_client=held.count("closed"))
        held.watch_until_closed(resumed, CLOSE_BY)
        open_at_deadline = held.count("open")
        held.watch_until_closed(resumed, CLOSE_BY + WATCH_MORE)
        closes = [t - resumed for t in held.closed_at if t is not None]
        answers = Counter("none" if not data else data[:12].decode("latin-1")
                          for data in held.received)
        figures.update(
            open_at_deadline=open_at_deadline, still_open=held.count("open"),
            closed_by_s={s: sum(t <= s for t in closes) for s in (1, 5, 10, 11, 12, 15, 25)},
            last_close_s=round(max(closes), 2) if closes else None, answers=dict(answers))
    finally:
        if held is not None:
            held.close()
        print(f"\nburst figures: {json.dumps(figures, sort_keys=True)}")
    assert figures["connected"] == BURST, figures
    assert outcomes == Counter(ok=REQUESTS), figures
    # The first request waits behind the burst being taken (and shed): well under
    # a second here, never anything like idle_timeout.
    assert _percentile(latencies, 99) < P99_LIMIT and latencies[0] < 3.0, figures
    assert open_at_deadline == 0, figures
    assert set(answers) <= {"none", "HTTP/1.1 408"}, figures
    assert brimd.workers("wsgi") == workers, figures
