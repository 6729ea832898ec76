"""WSGI apps that block, for the worker model tests (test_worker_models).

The tests copy this file into the brimd's own directory, which is on the
workers' PYTHONPATH, and name the class in the conf (``call =
blocking_apps.Sleeper``). Nothing here is green: time.sleep blocks the
calling OS thread unless the worker patched it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any


class Sleeper:
    """``/sleep?S`` sleeps S seconds in time.sleep; every answer is the worker's pid.

    When the environment names a directory (BRIM_TEST_MARKS), a request
    for ``/sleep`` leaves a file there as it starts sleeping, so a test can
    wait for a worker to be blocked rather than guess how long that takes.
    """

    def __init__(self, name: str, conf: Any, next_app: Callable) -> None:
        self.marks = os.environ.get("BRIM_TEST_MARKS")

    def __call__(self, env: dict, start_response: Callable) -> Any:
        if env["PATH_INFO"] == "/sleep":
            if self.marks:
                path = os.path.join(self.marks, f"sleeping-{os.getpid()}-{time.monotonic()}")
                open(path, "w").close()
            time.sleep(float(env["QUERY_STRING"] or "1"))
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
