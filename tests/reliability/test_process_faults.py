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
import itertools
import os
import random
import re
import signal
import socket
import threading
import time

import pytest
from brimd_harness import (
    alive,
    echo_stats_conf,
    free_port,
    get_json,
    proc_title,
    process_tree,
    wait_for,
)

#: Every scenario here holds a load or waits out real restart delays. The load
#: generators run flat out, so they take turns on one worker ("faults" group, see
#: the root conftest.py) rather than starve each other and the timing-sensitive tests.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]

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


def _echo_once(port: int, body: bytes) -> str:
    """One POST /echo on a new connection: "ok", "bad <status>" or a failure kind."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/echo", body=body)
        response = conn.getresponse()
        got = response.read()
        return "ok" if response.status == 200 and got == body else f"bad {response.status}"
    except Exception as err:
        return _kind(err)
    finally:
        conn.close()


def _stats(port: int) -> dict:
    return get_json(f"http://127.0.0.1:{port}/stats")


# --- 1. workers killed under load ---------------------------------------------


def test_killed_workers_cost_only_requests_in_flight(brimd, syslog, figures):
    """SIGKILL a random one of 4 workers every second for 30 s under steady load."""
    port = free_port()
    brimd.use(echo_stats_conf(workers=4), brimd.local(port=port))
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
    killed: set[int] = set()
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
            killed.add(victim)
        last_kill = time.monotonic()
        # Every id back, on a live replacement: a victim may still be listed for
        # a moment after its SIGKILL, and must not count as its own replacement.
        back = wait_for(lambda: (w := brimd.workers("wsgi")) and set(w) == titles
                        and not killed & set(w.values()) and w,
                        timeout=40, step=0.02, what="all four worker ids back")
        heal = time.monotonic() - last_kill
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
                   bound=kills * connections, heal_seconds=round(heal, 2),
                   stats_polls=len(polls),
                   seconds=round(time.monotonic() - started, 1))
    assert brimd.master_pid() == master and alive(master)
    assert all(alive(pid) for pid in back.values())
    # Every kill found a live worker, and the ids were all back at once: a worker
    # killed after it ran a while is not crash-looping and gets no back-off.
    assert kills == 30
    assert heal < 5, heal
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


# --- 2. restart and reload under load -----------------------------------------


def _worker_pids(brimd, group: str) -> set[int]:
    """Every live worker of ``group`` under the current master, draining ones too.

    (``brimd.workers`` maps titles to pids, and a draining worker shares its
    title with its successor.)
    """
    master = brimd.master_pid()
    return {pid for pid in process_tree(master)[1:]
            if alive(pid) and f" {group} " in f" {proc_title(pid)} "}


@pytest.mark.timeout(300)  # 20 restarts and reloads; slow on a busy machine
def test_restart_and_reload_under_load_lose_nothing(brimd, figures):
    """10 restarts, then 10 reloads, while keep-alive and new-connection clients loop."""
    port = free_port()
    # start_check 0.25 (default 1): each restart and reload still waits for the
    # new workers to stay up before the old ones drain; 20 waits of a full second
    # made the test a minute long and proved nothing more.
    conf, _ = brimd.use(echo_stats_conf(workers=2), brimd.local(port=port, start_check=0.25))
    masters = [brimd.start()]
    wait_for(lambda: len(_worker_pids(brimd, "wsgi")) == 2, what="two workers")
    stop = threading.Event()
    clients = _clients(port, stop, keepalive=2, new=2)
    restart_times, reload_times = [], []
    started = time.monotonic()
    try:
        for _ in range(10):
            time.sleep(0.3)
            begun = time.monotonic()
            done = brimd.run("restart")
            assert done.returncode == 0, done.stderr
            restart_times.append(time.monotonic() - begun)
            masters.append(brimd.master_pid())
        for n in range(10):
            time.sleep(0.3)
            old = _worker_pids(brimd, "wsgi")
            # A harmless change, so the reload has something to re-read.
            conf.write_text(conf.read_text() + f"# reload {n}\n")
            begun = time.monotonic()
            done = brimd.run("reload")
            assert done.returncode == 0, done.stderr
            wait_for(lambda old=old: len(_worker_pids(brimd, "wsgi") - old) == 2,
                     step=0.02, what="two new workers after reload")
            reload_times.append(time.monotonic() - begun)
        time.sleep(0.3)
    finally:
        _stop(clients, stop)
    counts = _total(clients)
    per_kind = {"keepalive": _total(clients[:2]), "new": _total(clients[2:])}
    figures.update(requests=sum(counts.values()), failed=sum(counts.values()) - counts.get("ok", 0),
                   restarts=len(restart_times), reloads=len(reload_times),
                   keepalive_ok=per_kind["keepalive"].get("ok", 0),
                   new_connection_ok=per_kind["new"].get("ok", 0),
                   restart_seconds_max=round(max(restart_times), 2),
                   reload_seconds_max=round(max(reload_times), 2),
                   seconds=round(time.monotonic() - started, 1))
    assert len(set(masters)) == 11 and brimd.master_pid() == masters[-1]
    wait_for(lambda: not any(alive(p) for p in masters[:-1]), what="old masters gone")
    for kind, kind_counts in per_kind.items():
        assert set(kind_counts) == {"ok"}, (kind, kind_counts)
        assert kind_counts["ok"] > 500, (kind, kind_counts)


# --- 3. hung workers -------------------------------------------------------------

HANG_APP = """
import os
import time


class Hang:
    \"\"\"/spin loops on the CPU and /block sleeps for real: the whole process stops.

    Before it stops it writes its pid to hung.pid, next to this module.
    \"\"\"

    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, env, start_response):
        if env["PATH_INFO"] in ("/spin", "/block"):
            marker = os.path.join(os.path.dirname(__file__), "hung.pid")
            with open(marker + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(marker + ".tmp", marker)
        if env["PATH_INFO"] == "/spin":
            while True:
                pass
        if env["PATH_INFO"] == "/block":
            time.sleep(3600)
        return self.next_app(env, start_response)
"""


def _send_raw(port: int, request: bytes, timeout: float) -> str:
    """Send a request, read until the server closes; say how it ended."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError as err:
            return f"{_kind(err)} after {len(data)} bytes"
        return f"closed after {len(data)} bytes"


@pytest.mark.parametrize("path", ["/spin", "/block"])
def test_hung_worker_is_killed_and_replaced(brimd, syslog, figures, path):
    """worker_timeout = 2: a worker stuck in the CPU or a blocking call is replaced."""
    port = free_port()
    brimd.write("hangapp.py", HANG_APP)
    brimd.use(echo_stats_conf(apps="hang echo stats", workers=2)
              + "\n[hang]\ncall = hangapp.Hang\n",
              brimd.local(port=port, worker_timeout=2))
    brimd.start()
    before = wait_for(lambda: (w := _worker_pids(brimd, "wsgi")) and len(w) == 2 and w,
                      what="two workers")
    start_count = _stats(port)["start_count"]
    outcome: dict[str, str] = {}

    def hang() -> None:
        outcome["hung request"] = _send_raw(
            port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), timeout=15)

    sent = time.monotonic()
    thread = threading.Thread(target=hang, daemon=True)
    thread.start()
    # Only once the hung worker has its request: connections it accepted
    # in the same breath as that one are stuck with it (one process, one hub).
    marker = brimd.root / "hung.pid"
    victim = int(wait_for(lambda: marker.exists() and marker.read_text(), timeout=5,
                          step=0.01, what="the request to hang a worker"))
    assert victim in before
    served = failed = 0
    failures: dict[str, int] = {}
    replacement: set[int] = set()
    deadline = sent + 10
    while not replacement and time.monotonic() < deadline:
        # Meanwhile the other worker answers, on new connections.
        outcome_kind = _echo_once(port, b"still here")
        served += outcome_kind == "ok"
        if outcome_kind != "ok":
            failed += 1
            failures[outcome_kind] = failures.get(outcome_kind, 0) + 1
        time.sleep(0.05)
        replacement = _worker_pids(brimd, "wsgi") - before
    detected = time.monotonic() - sent
    thread.join(10)
    assert replacement, "no replacement worker within 10 s"
    assert before - _worker_pids(brimd, "wsgi") == {victim}
    line = syslog.wait_line(f"(pid {victim}) hung: no heartbeat for")
    syslog.wait_line(f"(pid {victim}) exited unexpectedly with signal SIGKILL")
    wait_for(lambda: _stats(port)["start_count"] == start_count + 1, what="start_count + 1")
    figures.update(detect_seconds=round(detected, 2), requests=served + failed + 1,
                   failed=failed, served_meanwhile=served,
                   hung_request=outcome.get("hung request"),
                   logged=line.split("hung: ")[1].strip("\0 "))
    # The heartbeat beats every second and the master looks every timeout/4 =
    # 0.5 s: the kill comes 1 to 2.5 s after the request, the new pid just after.
    assert 0.9 <= detected <= 2 + 2, detected
    assert failed == 0 and served >= 10, (served, failures)
    assert outcome["hung request"].endswith(" 0 bytes"), outcome
    assert len(_worker_pids(brimd, "wsgi")) == 2


# --- 4. crash-looping daemon or app ------------------------------------------------

CRASH_APP = """
class CrashDaemon:
    def __init__(self, name, conf):
        self.name = name

    def __call__(self, env):
        raise RuntimeError("daemon %s gives up at once" % self.name)


class CrashApp:
    def __init__(self, name, conf, next_app):
        raise RuntimeError("app %s cannot start" % name)
"""


@pytest.mark.parametrize("crasher", ["daemon", "wsgi_init"])
def test_crash_loop_backs_off_and_the_rest_serves(brimd, syslog, figures, crasher):
    """A daemon raising at once, or an app whose __init__ raises, restarts ever more slowly.

    ``start`` refuses a conf whose workers cannot stay up (test_native_service),
    so the crasher arrives by reload: reload reports that it cannot stay up,
    and brimd keeps restarting it with back-off while the rest serves.
    """
    web = free_port()
    if crasher == "daemon":
        extra, group, stats_key = (
            "[daemons]\ndaemons = crasher\n[crasher]\ncall = crashapp.CrashDaemon\n",
            "daemon:crasher", "daemon_crasher")
        cause = "RuntimeError: daemon crasher gives up at once"
    else:
        # The crashing subserver cannot serve its own stats; the main one
        # reports it too with all_subservers.
        extra, group, stats_key = (
            f"[wsgi#crash]\nport = {free_port()}\napps = boom\n[boom]\ncall = crashapp.CrashApp\n"
            "[stats]\nall_subservers = yes\n",
            "wsgi#crash", "wsgi#crash")
        cause = "RuntimeError: app boom cannot start"
    brimd.write("crashapp.py", CRASH_APP)
    clock = _LogClock(syslog)
    try:
        # The running brimd reloads the files it was started with: the same
        # three names, the middle one empty at first.
        brimd.use(echo_stats_conf(workers=2), "", brimd.local(port=web))
        brimd.start()
        brimd.use(echo_stats_conf(workers=2), extra, brimd.local(port=web))
        began = time.monotonic()
        reloaded = brimd.run("reload")
        assert reloaded.returncode == 1 and cause in reloaded.stderr, reloaded.stderr
        # The old workers of the healthy subserver serve on until their
        # replacements stayed up start_check seconds; once they are asked to
        # drain, only the new conf's workers (whose stats know the crasher)
        # take connections.
        syslog.wait_line("wsgi: 2 replaced worker(s) asked to drain")
        wait_for(lambda: stats_key in _stats(web), 10, what="the new workers' stats")
        served, failed, start_counts = 0, 0, []
        failures: dict[str, int] = {}
        for n in range(50):  # ~8 s of normal traffic while the crasher loops
            time.sleep(max(0.0, began + 0.6 + 0.16 * n - time.monotonic()))
            outcome = _echo_once(web, b"fine %d" % n)
            served += outcome == "ok"
            if outcome != "ok":
                failed += 1
                failures[outcome] = failures.get(outcome, 0) + 1
            if stats_key and n % 5 == 4:
                start_counts.append(_stats(web)[stats_key]["start_count"])
        elapsed = time.monotonic() - began
    finally:
        clock.close()
    pattern = re.escape(f"started worker {group} 0 (pid ")
    starts = clock.times(pattern)
    deaths = [line for _, line in clock.stamped
              if f"worker {group} 0 (pid" in line and "exited unexpectedly" in line]
    intervals = [round(b - a, 2) for a, b in itertools.pairwise(starts)]
    figures.update(requests=served + failed, failed=failed, seconds=round(elapsed, 1),
                   starts=len(starts), restart_intervals=intervals,
                   start_counts=start_counts or None)
    assert failed == 0 and served == 50, failures
    # Restarted at once, then after 0.5, 1, 2, 4 s: the intervals grow.
    assert 4 <= len(starts) <= 7, intervals
    assert intervals[1] >= 0.4, intervals
    assert all(b > a * 1.5 for a, b in itertools.pairwise(intervals[1:])), intervals
    assert deaths and all("exit code 1" in line for line in deaths), deaths
    assert "restarting in 0.50s" in deaths[1] and "restarting in 1.00s" in deaths[2], deaths
    syslog.wait_line(cause)
    if stats_key:
        assert start_counts == sorted(start_counts) and start_counts[-1] >= 4, start_counts
        assert start_counts[-1] == len(starts) or start_counts[-1] == len(starts) + 1
