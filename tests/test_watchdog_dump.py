"""Stack dumps of WSGI workers on SIGUSR2: asked for by hand, and before a hung worker dies.

Real brimd processes on free 127.0.0.1 ports, logging to a file the test
owns (``log_sink = file``); apps from dump_apps.py. A dump is logged one
line per record, each line ``dump <worker title> (pid N): ...``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from brimd_harness import Brimd, alive, echo_stats_conf, free_port, wait_for

HERE = Path(__file__).resolve().parent


def _setup(brimd: Brimd, port: int, **brim: object) -> Path:
    """One worker running dump_apps.DumpTarget before echo and stats; the log in a file."""
    shutil.copy(HERE / "dump_apps.py", brimd.root / "dump_apps.py")
    log = brimd.root / "brim.log"
    brimd.use(echo_stats_conf(apps="dump echo stats", workers=1)
              + "\n[dump]\ncall = dump_apps.DumpTarget\n",
              brimd.local(port=port, log_sink="file", log_file=log, **brim))
    return log


def _get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _who_answers(port: int) -> int:
    status, body = _get(port, "/pid", timeout=2)
    return body["pid"] if status == 200 else 0


def _marker(brimd: Brimd, name: str) -> dict:
    path = brimd.root / name
    return json.loads(wait_for(lambda: path.exists() and path.read_text(), timeout=10,
                               step=0.02, what=f"the app to write {name}"))


def _lines(log: Path) -> list[str]:
    try:
        return log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _dump_of(lines: list[str], pid: int) -> list[str]:
    """The lines of pid's dump, from its first 'stack dump' line to 'end of stack dump'."""
    mine = [line for line in lines if f"(pid {pid}): " in line and " dump " in line]
    starts = [n for n, line in enumerate(mine) if "stack dump, " in line]
    ends = [n for n, line in enumerate(mine) if line.split("): ", 1)[1].startswith(
        "end of stack dump")]
    assert starts and ends, mine
    return mine[starts[0]:ends[0] + 1]


@pytest.mark.timeout(60)
def test_usr2_logs_the_waiting_request_and_the_worker_serves_on(brimd):
    port = free_port()
    log = _setup(brimd, port)
    brimd.start()
    pid = wait_for(lambda: _who_answers(port), timeout=15, what="the worker answering")
    assert list(brimd.workers("wsgi").values()) == [pid]
    answer: dict[str, object] = {}

    def waiting_request() -> None:
        answer["status"], answer["body"] = _get(port, "/wait?x=1", timeout=30)

    client = threading.Thread(target=waiting_request, daemon=True)
    client.start()
    waiting = _marker(brimd, "waiting.json")
    assert waiting["pid"] == pid
    txn = waiting["txn"]

    signal_sent = len(_lines(log))
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: any(f"(pid {pid}): end of stack dump" in line
                         for line in _lines(log)[signal_sent:]),
             timeout=10, what="the end of the stack dump in the log")
    dump = _dump_of(_lines(log)[signal_sent:], pid)
    text = "\n".join(dump)
    # Who: the worker's title on every line; what: the waiting app, its request.
    assert all("dump wsgi worker 0" in line for line in dump), dump
    assert "(on SIGUSR2)" in dump[0]
    assert "running now, in thread MainThread:" in text
    assert "in waiting_green_for_the_test" in text
    assert "green.sleep(0.02)" in text
    assert f"txn:{txn}" in text  # the green thread's header names its request
    assert re.search(rf"  GET /wait\?x=1 txn:{txn} for \d+\.\d\ds from 127\.0\.0\.1", text), text

    # The worker lives on: the request finishes, the next is served by the same pid.
    brimd.root.joinpath("release").touch()
    client.join(15)
    assert answer.get("status") == 200 and answer["body"] == {"pid": pid, "txn": txn}
    assert _who_answers(port) == pid
    assert alive(pid) and list(brimd.workers("wsgi").values()) == [pid]
    assert not [line for line in _lines(log) if "Traceback" in line]


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_usr2_on_threads_logs_each_os_thread_with_its_txn(brimd):
    """worker_model = threads: a request blocking its OS thread in time.sleep is shown
    under its thread, with its txn; heartbeats go on, and the worker serves on."""
    port = free_port()
    log = _setup(brimd, port, worker_model="threads", threads=2, worker_timeout=3)
    brimd.start()
    pid = wait_for(lambda: _who_answers(port), timeout=15, what="the worker answering")
    answer: dict[str, object] = {}

    def sleeping_request() -> None:
        answer["status"], answer["body"] = _get(port, "/sleep", timeout=30)

    client = threading.Thread(target=sleeping_request, daemon=True)
    client.start()
    sleeping = _marker(brimd, "sleeping.json")
    assert sleeping["pid"] == pid
    txn = sleeping["txn"]
    assert _who_answers(port) == pid  # the other thread serves meanwhile

    signal_sent = len(_lines(log))
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: any(f"(pid {pid}): end of stack dump" in line
                         for line in _lines(log)[signal_sent:]),
             timeout=10, what="the end of the stack dump in the log")
    text = "\n".join(_dump_of(_lines(log)[signal_sent:], pid))
    assert re.search(rf"thread brim-http-\d \(\d+\) txn:{txn}:", text), text
    assert "in sleeping_on_an_os_thread_for_the_test" in text
    assert re.search(rf"  GET /sleep txn:{txn} for \d+\.\d\ds from 127\.0\.0\.1", text), text

    # Past worker_timeout: its heartbeat (a thread of its own) kept it alive.
    blocked_since = brimd.root.joinpath("sleeping.json").stat().st_mtime
    wait_for(lambda: time.time() > blocked_since + 3.5, timeout=10,
             what="worker_timeout to pass")
    brimd.root.joinpath("release").touch()
    client.join(15)
    assert answer.get("status") == 200 and answer["body"] == {"pid": pid, "txn": txn}
    assert alive(pid) and list(brimd.workers("wsgi").values()) == [pid]
    assert not [line for line in _lines(log) if "Traceback" in line or "hung" in line]


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_hung_worker_logs_its_stack_before_the_master_kills_it(brimd):
    port = free_port()
    log = _setup(brimd, port, worker_timeout=2)
    brimd.start()
    pid = wait_for(lambda: _who_answers(port), timeout=15, what="the worker answering")

    def hanging_request() -> None:
        try:
            _get(port, "/block", timeout=30)
        except (OSError, http.client.HTTPException):
            pass  # the worker is killed under it

    client = threading.Thread(target=hanging_request, daemon=True)
    client.start()
    blocking = _marker(brimd, "blocking.json")
    assert blocking["pid"] == pid
    txn = blocking["txn"]

    kill = re.compile(rf"\(pid {pid}\) hung: .*, killing it$")

    def kill_line() -> int | None:
        return next((n for n, line in enumerate(_lines(log)) if kill.search(line)), None)

    at = wait_for(kill_line, timeout=20, what="the master's hung ... killing it line")
    before = _lines(log)[:at]
    dump = _dump_of(before, pid)
    text = "\n".join(dump)
    # The blocking code is what ran when the signal came: first in the dump.
    running = text.split("running now, in thread MainThread:", 1)[1]
    assert "in blocking_the_whole_worker" in running.split(" thread ", 1)[0], text
    assert "time.sleep(3600)" in text
    assert re.search(rf"  GET /block txn:{txn} for \d+\.\d\ds from 127\.0\.0\.1", text), text

    # A new worker takes the old one's place and serves.
    new = wait_for(lambda: (p := _who_answers(port)) != pid and p, timeout=20,
                   what="a new worker answering")
    assert new != pid and not alive(pid)
    client.join(10)
    # The master counted it as a hung restart, not a crash.
    stats = _get(port, "/stats")[1]
    assert (stats["restart_hung_count"], stats["restart_crash_count"]) == (1, 0), stats


@pytest.mark.timeout(60)
def test_usr2_to_a_daemon_logs_its_thread_and_it_runs_on(brimd):
    """Daemons are plain processes: the dump shows the daemon's own code, blocked."""
    log = brimd.root / "brim.log"
    brimd.use("[daemons]\ndaemons = sample\n\n[sample]\n"
              "call = brim.daemon_sample.DaemonSample\ninterval = 60\n",
              brimd.local(log_sink="file", log_file=log))
    brimd.start()
    pid = wait_for(lambda: list(brimd.workers("sample").values()), timeout=15,
                   what="the daemon running")[0]
    wait_for(lambda: any("sample" in line for line in _lines(log)), timeout=10,
             what="the daemon's first line")
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: any(f"(pid {pid}): end of stack dump" in line for line in _lines(log)),
             timeout=10, what="the daemon's stack dump")
    dump = _dump_of(_lines(log), pid)
    assert all("dump daemon sample" in line for line in dump), dump
    running = "\n".join(dump).split("running now, in thread MainThread:", 1)[1]
    assert "daemon_sample.py" in running and "time.sleep(self.interval)" in running
    assert "green threads" not in "\n".join(dump)
    assert alive(pid) and list(brimd.workers("sample").values()) == [pid]
