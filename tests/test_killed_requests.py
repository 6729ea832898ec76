"""Requests a killed worker had in flight get a request-log line each, from the master.

Real brimd on a free 127.0.0.1 port, logging to a file the test owns
(``log_sink = file``); apps from dump_apps.py (``/wait`` waits green until
released, ``/block`` blocks the whole worker, so its heartbeat stops). See
brim.server.killed for the statuses: 504 for a worker killed as hung, 503
for one killed when ``grace`` ran out.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import threading
from pathlib import Path

import pytest
from brimd_harness import Brimd, alive, wait_for
from test_watchdog_dump import _get, _lines, _marker, _setup, _who_answers, free_port


def _send(port: int, path: str) -> threading.Thread:
    """A request in its own thread; the worker is killed under it, so no answer is expected."""
    def run() -> None:
        try:
            _get(port, path, timeout=30)
        except (OSError, http.client.HTTPException, ValueError):
            pass

    client = threading.Thread(target=run, daemon=True)
    client.start()
    return client


def _in_flight(brimd: Brimd, port: int, path: str, marker: str) -> str:
    """Send a request and wait until the app has it: its txn."""
    (brimd.root / marker).unlink(missing_ok=True)
    _send(port, path)
    return _marker(brimd, marker)["txn"]


def _lines_of(log: Path, txns: list[str]) -> dict[str, str]:
    found = {}
    for line in _lines(log):
        for txn in txns:
            if f" {txn} " in line and "NOTICE" in line:
                found[txn] = line
    return found


def _check_lost(log: Path, txns: list[str], path: str, status: int, why: str,
                pid: int) -> None:
    """Each txn has one request line ``<path>=<n> <status> 0 0 ...`` saying ``why``; the
    master's warning names the worker and the count."""
    lines = _lines_of(log, txns)
    assert len(lines) == len(txns), _lines(log)[-10:]
    for n, txn in enumerate(txns, 1):
        assert re.search(rf' "?{path}={n}"? {status} 0 0 [\d.]+ {txn} .*{why}', lines[txn]), \
            lines[txn]
    assert any(f"(pid {pid}) went with {len(txns)} request(s) in flight" in line
               for line in _lines(log)), _lines(log)[-5:]


@pytest.mark.slow  # a hang takes worker_timeout (2 s) plus the dump wait to be killed
@pytest.mark.timeout(60)
def test_hung_and_grace_killed_workers_leave_a_line_per_request(brimd):
    port = free_port()
    log = _setup(brimd, port, worker_timeout=2)
    brimd.confs[-1].write_text(brimd.confs[-1].read_text().replace("grace = 5", "grace = 1"))
    master = brimd.start()
    pid = wait_for(lambda: _who_answers(port), timeout=15, what="the worker answering")

    # Hung: two requests waiting green, then one blocking the worker: 3 in flight.
    hung = [_in_flight(brimd, port, f"/wait?hung={n}", "waiting.json") for n in (1, 2)]
    hung.append(_in_flight(brimd, port, "/block?hung=3", "blocking.json"))
    wait_for(lambda: len(_lines_of(log, hung)) == 3, timeout=20,
             what="a line for each request of the hung worker")
    _check_lost(log, hung, r"/(wait|block)\?hung", 504, "killed:hung", pid)
    new = wait_for(lambda: (p := _who_answers(port)) != pid and p, timeout=20,
                   what="a new worker answering")
    assert not alive(pid)
    stats = _get(port, "/stats")[1]
    assert stats["killed_requests_count"] == 3, stats
    assert stats["restart_hung_count"] == 1, stats

    # Grace: two slow requests while the master is told to stop (TERM, grace = 1).
    graced = [_in_flight(brimd, port, f"/wait?grace={n}", "waiting.json") for n in (1, 2)]
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: not alive(master), timeout=20, what="the master to stop")
    _check_lost(log, graced, r"/wait\?grace", 503, "killed:grace", new)
    # Each killed request has exactly one line: none was logged twice.
    text = "\n".join(_lines(log))
    assert all(text.count(f" {txn} ") == 1 for txn in hung + graced), text[-2000:]


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_threads_worker_killed_past_grace_logs_each_thread_request(brimd):
    """worker_model = threads: two OS threads of one worker each hold a row of the table."""
    port = free_port()
    log = _setup(brimd, port, worker_model="threads", threads=4)
    brimd.confs[-1].write_text(brimd.confs[-1].read_text().replace("grace = 5", "grace = 1"))
    master = brimd.start()
    pid = wait_for(lambda: _who_answers(port), timeout=15, what="the worker answering")
    slow = [_in_flight(brimd, port, f"/sleep?n={n}", "sleeping.json") for n in (1, 2)]
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: not alive(master), timeout=20, what="the master to stop")
    _check_lost(log, slow, r"/sleep\?n", 503, "killed:grace", pid)
