"""Real forked processes for the brim-stats tests: start, release together, wait with a deadline."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator

import pytest


class Forker:
    """Forks children that run a function and exit; every child is killed by pid at teardown."""

    def __init__(self) -> None:
        self.pids: list[int] = []
        self._gate_r, self._gate_w = os.pipe()

    def start(self, fn: Callable[..., object], *args: object, gated: bool = False) -> int:
        """Fork a child running fn(*args); with gated, it waits for release() first."""
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            code = 1
            try:
                if gated:
                    os.read(self._gate_r, 1)
                fn(*args)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        self.pids.append(pid)
        return pid

    def release(self, n: int) -> None:
        """Let n gated children go at once."""
        os.write(self._gate_w, b"x" * n)

    def wait(self, pid: int, timeout: float = 30.0) -> int:
        """The child's exit code; fails the test if it is not done within timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                pytest.fail(f"child {pid} still running after {timeout}s")
            time.sleep(0.005)

    def close_one(self, pid: int, timeout: float = 10.0) -> int:
        """Stop one child with SIGTERM (a server loop) and reap it."""
        os.kill(pid, signal.SIGTERM)
        return self.wait(pid, timeout)

    def close(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pids.clear()
        os.close(self._gate_r)
        os.close(self._gate_w)


@pytest.fixture
def forker() -> Iterator[Forker]:
    f = Forker()
    try:
        yield f
    finally:
        f.close()
