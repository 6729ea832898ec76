"""Harness for end-to-end tests: real brimd processes, real ports, real logs.

Each test gets its own directory, free ports from the OS, a syslog listener
it owns (brimd is pointed at it with log_address) and a :class:`Brimd` that
runs the real ``brimd`` command. Whatever a test started is killed by pid in
teardown, whole process tree included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

BRIMD = [sys.executable, "-m", "brim.server"]


def echo_stats_conf(apps: str = "echo stats", **wsgi_options: object) -> str:
    """The conf most end-to-end tests run: [wsgi] with the echo and stats apps.

    ``wsgi_options`` (workers, client_timeout, ...) go into the [wsgi] section.
    """
    lines = [f"apps = {apps}", *(f"{k} = {v}" for k, v in wsgi_options.items())]
    return ("[wsgi]\n" + "\n".join(lines) + "\n\n[echo]\ncall = brim.wsgi_echo.WSGIEcho\n\n"
            "[stats]\ncall = brim.stats.Stats\n")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port the OS says is free right now on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_net_tcp(port: int) -> list[list[str]]:
    """The /proc/net/tcp rows whose local address is 127.0.0.1:port."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return [fields for line in f.readlines()[1:] if (fields := line.split())[1] == local]


def accept_queue(port: int) -> int | None:
    """Connections waiting in the listen backlog of 127.0.0.1:port (rx_queue of the
    LISTEN socket), None if not found: 0 once a worker has accepted them all."""
    for fields in proc_net_tcp(port):
        if fields[3] == "0A":
            return int(fields[4].split(":")[1], 16)
    return None


def wait_for(check: Callable[[], object], timeout: float = 10.0, step: float = 0.05,
             what: str = "condition"):
    """Poll ``check`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as err:  # keep polling; report the last error
            last = err
        else:
            if last:
                return last
        time.sleep(step)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class SyslogListener:
    """A UDP syslog server the test owns; collects every line brimd logs."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            self.lines.append(data.decode("utf-8", "replace"))

    def wait_line(self, *needles: str, timeout: float = 10.0) -> str:
        def found():
            return next((x for x in list(self.lines) if all(n in x for n in needles)), None)

        return wait_for(found, timeout, what=f"a log line with {needles}")

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def proc_title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Brimd:
    """One brimd under test: its directory, confs, pid file and commands."""

    def __init__(self, root: Path, syslog: SyslogListener) -> None:
        self.root = root
        self.syslog = syslog
        self.pid_file = root / "brimd.pid"
        self.confs: list[Path] = []
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.started: set[int] = set()
        self.foreground: list[subprocess.Popen] = []

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def use(self, *texts: str) -> list[Path]:
        """Write the confs (in order) this brimd will be run with."""
        self.confs = [self.write(f"conf{n}.conf", text) for n, text in enumerate(texts)]
        return self.confs

    def local(self, **extra: object) -> str:
        """A [brim] conf that keeps brimd on loopback and logging to our listener.

        ``start_check`` is 0.25 s unless a test gives its own (brimd's default
        is 1 s): start, restart and reload still wait for every new worker to
        be up and stay up, and a worker that cannot start (its app raising at
        load) still fails the check, since it never gets up at all; a full
        second per start, hundreds of times over, only made the suite slower.
        """
        options: dict[str, object] = {**extra}
        options.setdefault("start_check", 0.25)  # last: a test's own lines keep their numbers
        lines = ["[brim]", "ip = 127.0.0.1", f"log_address = 127.0.0.1:{self.syslog.port}",
                 "grace = 5"]
        lines += [f"{k} = {v}" for k, v in options.items()]
        return "\n".join(lines) + "\n"

    def args(self, command: str) -> list[str]:
        out = [*BRIMD]
        for conf in self.confs:
            out += ["-c", str(conf)]
        return [*out, "-p", str(self.pid_file), command]

    def run(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        done = subprocess.run(self.args(command), capture_output=True, text=True,
                              timeout=timeout, env=self.env, cwd=self.root)
        self._remember()
        return done

    def start(self) -> int:
        done = self.run("start")
        assert done.returncode == 0, done.stderr
        return self.master_pid()

    def master_pid(self) -> int:
        pid = int(self.pid_file.read_text().split()[0])
        self.started.add(pid)
        return pid

    def _remember(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.master_pid()

    def workers(self, group: str | None = None) -> dict[str, int]:
        """Process title to pid for the master's live children."""
        master = self.master_pid()
        out = {}
        for pid in process_tree(master)[1:]:
            title = proc_title(pid)
            if alive(pid) and (group is None or f" {group} " in f" {title} "):
                out[title] = pid
        return out

    def popen(self, command: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(self.args(command), env=self.env, cwd=self.root,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                **kwargs)
        self.foreground.append(proc)
        return proc

    def kill_all(self) -> None:
        """Teardown: SIGKILL every process any brimd of this test started."""
        pids = set()
        for master in self.started | {p.pid for p in self.foreground}:
            pids.update(process_tree(master))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.foreground:
            with contextlib.suppress(Exception):
                proc.communicate(timeout=5)


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def curl(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    """Run the real curl, as the seed's examples do."""
    exe = shutil.which("curl")
    if exe is None:
        pytest.fail("curl is not installed (the end-to-end tests need it)")
    return subprocess.run([exe, *args], capture_output=True, timeout=timeout)
