"""Worker recycling and run-time worker counts, under real load (wrk) on a real brimd.

What a user asks of recycling: workers replaced often under load, and not
one request failing for it; a leaking app's worker replaced once it grows
past max_worker_rss; SIGTTIN/SIGTTOU resizing a busy subserver with no
failed request either.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import pytest
from brimd_harness import free_port, get_json, wait_for

LEAKY_APP = '''
HOARD = []


class Leaky:
    """Keeps 1 MiB per request forever: the leak max_worker_rss is for."""

    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, env, start_response):
        if env["PATH_INFO"] != "/leak":
            return self.next_app(env, start_response)
        HOARD.append(b"\x01" * (1 << 20))  # written, so resident
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
'''


def _wrk(url: str, seconds: int, connections: int = 16) -> dict[str, int]:
    """Run the real wrk; its request count and every kind of failure it reports."""
    exe = shutil.which("wrk")
    if exe is None:
        pytest.fail("wrk is not installed (.ci/run installs it)")
    run = subprocess.run([exe, "-t2", f"-c{connections}", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 30)
    out = run.stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests,
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "output": out,
    }


def _conf(brimd, port: int, **wsgi: object) -> None:
    lines = "\n".join(f"{k} = {v}" for k, v in wsgi.items())
    brimd.use(brimd.local(port=port), f"""
        [wsgi]
        apps = echo stats
        workers = 2
        {lines}

        [echo]
        call = brim.wsgi_echo.WSGIEcho

        [stats]
        call = brim.stats.Stats
    """.replace("\n        ", "\n"))


@pytest.mark.timeout(120)
@pytest.mark.slow
@pytest.mark.xdist_group("load")  # drives a load flat out: one at a time
def test_max_requests_recycles_often_under_load_and_no_request_fails(brimd):
    port = free_port()
    _conf(brimd, port, max_requests=1000, max_requests_jitter=200)
    brimd.start()
    result = _wrk(f"http://127.0.0.1:{port}/echo", 30)
    stats = get_json(f"http://127.0.0.1:{port}/stats")
    print(f"\n{result['requests']} requests, {stats['recycle_count']} recycles")
    assert result["socket_errors"] == 0, result["output"]
    assert result["non_2xx"] == 0, result["output"]
    assert stats["recycle_count"] >= 50, stats
    assert stats["recycle_max_requests_count"] == stats["recycle_count"], stats
    assert brimd.syslog.wait_line("recycled (max_requests: served")
    # After the load the subserver is whole again: two workers serving.
    wait_for(lambda: len(brimd.workers("wsgi")) == 2, what="two workers")
    assert brimd.run("stop").returncode == 0


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_max_worker_rss_recycles_a_leaking_worker(brimd):
    port = free_port()
    brimd.write("leaky.py", LEAKY_APP)
    brimd.use(brimd.local(port=port), """
        [wsgi]
        apps = leaky stats
        workers = 1
        max_worker_rss = 120

        [leaky]
        call = leaky.Leaky

        [stats]
        call = brim.stats.Stats
    """)
    brimd.start()
    first = next(iter(brimd.workers("wsgi").values()))
    url = f"http://127.0.0.1:{port}/leak"

    def recycled() -> str | None:
        return next((x for x in list(brimd.syslog.lines)
                     if "recycling worker wsgi 0" in x and "max_worker_rss" in x), None)

    served = 0
    while not recycled() and served < 400:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
        served += 1
        time.sleep(0.02)  # ~50 a second: the master reads RSS once a second
    line = recycled()
    assert line and f"(pid {first})" in line and "MiB over 120 MiB" in line, line
    # Each request leaked 1 MiB: the worker went past 120 MiB within ~120 of
    # them (less its own size), and was caught within about a second more.
    assert served < 250, served
    wait_for(lambda: first not in brimd.workers("wsgi").values(), what="the leaker gone")
    stats = get_json(f"http://127.0.0.1:{port}/stats")
    assert (stats["recycle_count"], stats["recycle_rss_count"]) == (1, 1), stats
    # The replacement starts small again and serves.
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200


@pytest.mark.timeout(120)
@pytest.mark.slow
@pytest.mark.xdist_group("load")  # drives a load flat out: one at a time
def test_ttin_and_ttou_under_load_fail_no_request(brimd):
    port = free_port()
    _conf(brimd, port, max_workers=4)
    master = brimd.start()
    counts: list[int] = []

    def resize() -> None:
        for sig in (signal.SIGTTIN, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTTIN,
                    signal.SIGTTOU, signal.SIGTTOU, signal.SIGTTOU):
            time.sleep(1.5)
            os.kill(master, sig)
            time.sleep(1.0)
            counts.append(len(brimd.workers("wsgi")))

    changer = threading.Thread(target=resize)
    changer.start()
    result = _wrk(f"http://127.0.0.1:{port}/echo", 20)
    changer.join(timeout=30)
    assert result["socket_errors"] == 0, result["output"]
    assert result["non_2xx"] == 0, result["output"]
    # 2 -> 3 -> 4 -> 3 -> 4 -> 3 -> 2 -> 1 (retiring workers may linger a moment).
    assert max(counts) >= 4 and counts[-1] <= 2, counts
    wait_for(lambda: len(brimd.workers("wsgi")) == 1, what="one worker left")
    status = brimd.run("status")
    assert "1 up" in status.stdout, status.stdout
