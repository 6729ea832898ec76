"""WSGI apps for test_watchdog_dump: one that waits (green), one that blocks its worker,
and one that blocks one OS thread (for worker_model = threads).

The test copies this file into the brimd's own directory, which is on the
workers' PYTHONPATH, and names the class in the conf (``call =
dump_apps.DumpTarget``). Nothing here is imported by the test process.

The function names are distinctive on purpose: the test looks for them in
the stack dump.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from brim.wsgi import green

HERE = os.path.dirname(os.path.abspath(__file__))


def _mark(name: str, env: dict) -> None:
    """Say (atomically, in a file next to this module) which worker and txn got here."""
    path = os.path.join(HERE, name)
    with open(path + ".tmp", "w") as f:
        json.dump({"pid": os.getpid(), "txn": env["brim.txn"]}, f)
    os.rename(path + ".tmp", path)


def waiting_green_for_the_test(env: dict) -> None:
    """Wait, without blocking the worker, until the test creates ``release``."""
    _mark("waiting.json", env)
    release = os.path.join(HERE, "release")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        green.sleep(0.02)


def sleeping_on_an_os_thread_for_the_test(env: dict) -> None:
    """Block one OS thread (worker_model = threads) in time.sleep until ``release``."""
    _mark("sleeping.json", env)
    release = os.path.join(HERE, "release")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)


def blocking_the_whole_worker(env: dict) -> None:
    """Block the worker's one OS thread: no green thread, heartbeat included, runs."""
    _mark("blocking.json", env)
    time.sleep(3600)  # brimd does not monkey-patch: this is the real time.sleep


class DumpTarget:
    """/wait waits green until released, /block blocks the worker, /pid says who answers."""

    def __init__(self, name: str, conf: dict, next_app: Callable) -> None:
        self.next_app = next_app

    def __call__(self, env: dict, start_response: Callable) -> Any:
        path = env["PATH_INFO"]
        if path == "/wait":
            waiting_green_for_the_test(env)
        elif path == "/block":
            blocking_the_whole_worker(env)
        elif path == "/sleep":
            sleeping_on_an_os_thread_for_the_test(env)
        elif path != "/pid":
            return self.next_app(env, start_response)
        body = json.dumps({"pid": os.getpid(), "txn": env["brim.txn"]}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
