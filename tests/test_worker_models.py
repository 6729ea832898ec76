"""Apps that block, on both worker models (issue 18): real brimd, real sockets.

``worker_model = threads`` serves a blocking app on a pool of OS threads per
worker; ``worker_model = green`` with ``monkey_patch = yes`` patches
time.sleep and friends so a blocking call lets the worker's other green
threads run. Either way a worker that is blocked leaves new connections to
a worker that is free, and an app that calls ``eventlet.monkey_patch()``
itself breaks neither the master nor the workers.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from brimd_harness import alive, free_port, wait_for

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve().parent


def _conf(brimd, port: int, app: str = "blocking_apps.Sleeper", **options: object) -> None:
    for name in ("blocking_apps.py", "patching_app.py"):
        shutil.copy(HERE / name, brimd.root / name)
    marks = brimd.root / "marks"
    marks.mkdir(exist_ok=True)
    brimd.env["BRIM_TEST_MARKS"] = str(marks)
    lines = [f"{k} = {v}" for k, v in options.items()]
    brimd.use(brimd.local(port=port, workers=2),
              "[wsgi]\napps = block\n" + "\n".join(lines) + f"\n\n[block]\ncall = {app}\n")


def _get(port: int, path: str, timeout: float = 20.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _up(brimd, port: int, workers: int = 2) -> int:
    master = brimd.start()
    wait_for(lambda: len(brimd.workers("wsgi")) == workers, what=f"{workers} workers")
    wait_for(lambda: _get(port, "/")[0] == 200, what="a first answer")
    return master


def _burst(port: int, count: int, path: str = "/sleep?1",
           answers: list[bytes] | None = None) -> list[float]:
    """count requests at once, each on its own connection: seconds until each was
    answered (and, into answers if given, each answer's body: the worker's pid)."""
    start = time.monotonic()
    took: list[float] = []
    failed: list[BaseException] = []

    def one() -> None:
        try:
            status, body = _get(port, path)
            assert status == 200, status
            took.append(time.monotonic() - start)
            if answers is not None:
                answers.append(body)
        except BaseException as err:
            failed.append(err)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not failed, failed
    assert len(took) == count
    return sorted(took)


@pytest.mark.slow
def test_threads_serve_8_blocking_requests_at_once(brimd):
    """2 workers x 4 threads: 8 requests that each block 1 s in time.sleep end within 1.5 s."""
    port = free_port()
    _conf(brimd, port, worker_model="threads", threads=4)
    _up(brimd, port)
    took = _burst(port, 8)
    assert took[-1] < 1.5, f"answered after {[round(t, 2) for t in took]} s"


@pytest.mark.slow
def test_threads_serve_40_blocking_requests_in_5_rounds(brimd):
    """40 such requests on 8 threads: 5 rounds of 1 s, all within 6 s."""
    port = free_port()
    _conf(brimd, port, worker_model="threads", threads=4)
    _up(brimd, port)
    took = _burst(port, 40)
    assert took[-1] < 6, f"answered after {[round(t, 2) for t in took]} s"


@pytest.mark.slow
def test_green_with_monkey_patch_serves_8_blocking_requests_at_once(brimd):
    port = free_port()
    _conf(brimd, port, worker_model="green", monkey_patch="yes")
    _up(brimd, port)
    took = _burst(port, 8)
    assert took[-1] < 1.5, f"answered after {[round(t, 2) for t in took]} s"


@pytest.mark.slow
def test_unpatched_green_workers_share_a_burst_of_blocking_requests(brimd):
    """Unpatched, a green worker blocks whole while its app sleeps. 8 such requests of
    1 s at once on 2 workers then end as on gunicorn's sync workers, at 1, 1, 2, 2,
    3, 3, 4, 4 s, 4 on each: a worker lets each connection it accepts reach its app
    before it takes another from the shared queue, so it never holds connections the
    other worker could serve. (A worker that accepted all that were queued in one go
    ended them at up to 5 to 7 s.)"""
    port = free_port()
    _conf(brimd, port, worker_model="green")
    _up(brimd, port)
    answers: list[bytes] = []
    took = _burst(port, 8, answers=answers)
    assert took[-1] < 4.7, f"answered after {[round(t, 2) for t in took]} s"
    assert sorted(Counter(answers).values()) == [4, 4], Counter(answers)


@pytest.mark.parametrize("options", [{"worker_model": "threads", "threads": 1},
                                     {"worker_model": "green"}],
                         ids=["threads", "green-unpatched"])
@pytest.mark.slow
def test_a_blocked_worker_leaves_new_connections_to_the_idle_one(brimd, options):
    """One worker blocks (its only thread, or its whole process); new clients meanwhile
    are all answered at once, by the other worker."""
    port = free_port()
    _conf(brimd, port, **options)
    _up(brimd, port)
    marks = Path(brimd.env["BRIM_TEST_MARKS"])
    for old in marks.iterdir():
        old.unlink()
    blocked: dict[str, object] = {}
    sleeper = threading.Thread(target=lambda: blocked.update(got=_get(port, "/sleep?1.5")))
    sleeper.start()
    try:
        mark = wait_for(lambda: next(marks.iterdir(), None), what="a worker blocked")
        blocked_pid = mark.name.split("-")[1]
        start = time.monotonic()
        for _ in range(6):
            status, body = _get(port, "/", timeout=5)
            assert status == 200
            assert body.decode() != blocked_pid, "the blocked worker took a new connection"
        assert time.monotonic() - start < 1.5, "new clients waited for the blocked worker"
    finally:
        sleeper.join(10)
    assert blocked["got"] == (200, blocked_pid.encode())


@pytest.mark.parametrize("model", ["green", "threads"])
@pytest.mark.slow
def test_an_app_that_calls_monkey_patch_itself(brimd, model):
    """The master and the workers start, serve and stop on TERM cleanly; green workers
    come out patched (4 blocking requests on one worker overlap), threads ones are not."""
    port = free_port()
    _conf(brimd, port, app="patching_app.Sleeper", worker_model=model, workers=1)
    master = _up(brimd, port, workers=1)
    if model == "green":
        brimd.syslog.wait_line("patched the standard library with eventlet, as an app asked")
        took = _burst(port, 4, "/sleep?0.5")
        assert took[-1] < 1.4, f"time.sleep was not patched: {[round(t, 2) for t in took]}"
    else:
        brimd.syslog.wait_line("a threads worker patches nothing")
        assert _get(port, "/sleep?0.1")[0] == 200
    workers = list(brimd.workers("wsgi").values())
    done = brimd.run("stop")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: not alive(master) and not any(alive(p) for p in workers),
             what="master and workers gone")
    lines = list(brimd.syslog.lines)
    assert not [x for x in lines if "crashed" in x or "Traceback" in x or "failed" in x], lines
    assert [x for x in lines if "exited with exit code 0" in x], lines
    assert not [x for x in lines if "main thread" in x], lines


def _hog(port: int, stop: threading.Event, served: list[int]) -> None:
    """A client whose next request is always waiting at the server: it pipelines
    two, and sends one more for each answer, until stop is set."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    marker = b"HTTP/1.1 200 OK"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request * 2)
        tail = b""
        while not stop.is_set():
            data = sock.recv(65536)
            if not data:
                return
            tail += data
            answered = tail.count(marker)
            if answered:
                tail = tail[tail.rfind(marker) + len(marker):]
                served.append(answered)
                sock.sendall(request * answered)
            tail = tail[-(len(marker) - 1):]


@pytest.mark.slow
def test_clients_whose_next_request_is_always_ready_do_not_keep_the_threads(brimd):
    """One worker, 2 threads, 2 clients that pipeline: a thread that answered one of
    them always finds its next request there. Taking it at once would keep both
    threads on these two for as long as they go on, and a third client, new or
    keep-alive, would wait as long (it did: 32 wrk connections queued behind 4
    such threads for up to 1.6 s). Each answer sends a connection with others
    waiting to the back of the line, so the third is answered within moments,
    and the two go on being served."""
    port = free_port()
    shutil.copy(HERE / "blocking_apps.py", brimd.root / "blocking_apps.py")
    brimd.use(brimd.local(port=port, workers=1),
              "[wsgi]\napps = block\nworker_model = threads\nthreads = 2\n\n"
              "[block]\ncall = blocking_apps.Sleeper\n")
    _up(brimd, port, workers=1)
    (pid,) = brimd.workers("wsgi").values()
    stop = threading.Event()
    served: list[list[int]] = [[], []]
    hogs = [threading.Thread(target=_hog, args=(port, stop, s)) for s in served]
    for t in hogs:
        t.start()
    try:
        wait_for(lambda: all(sum(s) > 200 for s in served), timeout=10,
                 what="both pipelining clients served")
        took = []
        for _ in range(5):  # new connections
            start = time.monotonic()
            assert _get(port, "/", timeout=5) == (200, str(pid).encode())
            took.append(time.monotonic() - start)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for _ in range(5):  # one keep-alive connection
            start = time.monotonic()
            conn.request("GET", "/")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, str(pid).encode())
            took.append(time.monotonic() - start)
        conn.close()
        before = [sum(s) for s in served]
        time.sleep(0.3)
        assert all(sum(s) > b for s, b in zip(served, before, strict=True)), "a pipelining client stalled"
    finally:
        stop.set()
        for t in hogs:
            t.join(15)
    assert max(took) < 0.5, [round(t, 3) for t in took]
    assert list(brimd.workers("wsgi").values()) == [pid]
