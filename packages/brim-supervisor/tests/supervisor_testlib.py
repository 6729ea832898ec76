"""Helpers for the brim-supervisor tests: /proc inspection, polling, program runs.

Everything a run starts is recorded and killed by pid in teardown. All
waiting is polling with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROGS = Path(__file__).parent / "progs"


def proc_state(pid: int) -> str | None:
    """The /proc state letter of *pid* ('R', 'S', 'Z', ...), None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def alive(pid: int) -> bool:
    """Running (a zombie has finished: it only waits to be reaped)."""
    state = proc_state(pid)
    return state is not None and state != "Z"


def children_of(ppid: int) -> list[int]:
    """Live processes whose parent is *ppid*, from a scan of /proc/*/stat."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            data = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        if int(fields[1]) == ppid and fields[0] != b"Z":
            found.append(int(entry))
    return found


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


class Run:
    """One run of supervised.py."""

    def __init__(self, tmp: Path, conf: dict[str, Any]) -> None:
        self.tmp = tmp
        self.events_path = tmp / "events.jsonl"
        self.log_path = tmp / "master.log"
        conf = {"events": str(self.events_path), "log": str(self.log_path), **conf}
        conf.setdefault("modes", dict.fromkeys(conf["groups"], "sleep"))
        self.conf = conf
        self.proc = subprocess.Popen(
            [sys.executable, str(PROGS / "supervised.py"), json.dumps(conf)],
            stdin=subprocess.DEVNULL,
        )
        self.master_pid = self.proc.pid

    def events(self, kind: str | None = None, **match: Any) -> list[dict[str, Any]]:
        try:
            lines = self.events_path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            ev = json.loads(line)
            if kind is not None and ev["ev"] != kind:
                continue
            if all(ev.get(k) == v for k, v in match.items()):
                out.append(ev)
        return out

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except FileNotFoundError:
            return ""

    def current_workers(self) -> dict[tuple[str, int], int]:
        """(group, id) -> pid of the latest start of each id whose process lives."""
        latest: dict[tuple[str, int], int] = {}
        for ev in self.events("start"):
            latest[(ev["group"], ev["id"])] = ev["pid"]
        return {k: p for k, p in latest.items() if alive(p)}

    def wait_workers(self, count: int, timeout: float = 5.0) -> dict[tuple[str, int], int]:
        return wait_for(
            lambda: (w := self.current_workers()) and len(w) == count and w,
            timeout,
            f"{count} live workers",
        )

    def all_pids(self) -> set[int]:
        return {ev["pid"] for ev in self.events()} | {self.master_pid}

    def kill_all(self) -> None:
        for pid in self.all_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.kill()
            self.proc.wait(timeout=5)


