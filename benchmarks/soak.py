#!/usr/bin/env python3
"""Soak brimd: hours of load with faults mixed in, and what it cost.

    python3 benchmarks/soak.py [--minutes 10] [--workers 4] [--clients 4]
                               [--kill-every 5] [--restart-every 60] [--reload-every 45]

Starts a real brimd (daemonized, on a free loopback port, with the echo and
stats apps), drives it with client threads that loop POST /echo (half on
keep-alive connections, half on a new connection per request), and while it
runs: SIGKILLs a random worker every --kill-every seconds, runs ``brimd
restart`` every --restart-every seconds and ``brimd reload`` every
--reload-every seconds (0 turns any of them off). Every request's outcome is
counted; /stats is polled each second to check that request_count never goes
backwards; each worker's RSS is sampled each minute.

At the end it prints the totals: requests, failures by kind, kills,
restarts, reloads, the stats counters, RSS per worker over time, and exits
non-zero if anything a user would call a failure happened (a refused or
reset connection outside a killed worker's in-flight requests, a request
count that went backwards, brimd gone). Loopback only; it stops by itself.

Needs the repository's packages installed (see the README) and runs brimd
with the current Python (``python -m brim.server``).
"""

from __future__ import annotations

import os
import sys

# benchmarks/http.py would shadow the standard library's http package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

CONF = """\
[brim]
ip = 127.0.0.1
port = {port}
workers = {workers}
grace = 10
log_address = 127.0.0.1:{syslog}

[wsgi]
apps = echo stats

[echo]
call = brim.wsgi_echo.WSGIEcho
# generation = {generation}

[stats]
call = brim.stats.Stats
"""


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Soak:
    """One soak run: brimd, its clients, its faults and the tallies."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.port = _free_port()
        self.conf = workdir / "soak.conf"
        self.pid_file = workdir / "brimd.pid"
        self.syslog = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.syslog.bind(("127.0.0.1", 0))  # a sink for brimd's log; drained by a thread
        self.generation = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: dict[str, int] = {}
        self.kill_times: list[float] = []
        self.events = {"kills": 0, "restarts": 0, "reloads": 0, "failed_commands": 0}
        self.count_backwards = 0
        self.last_count = 0
        self.rss: dict[str, list[int]] = {}

    # -- brimd ---------------------------------------------------------------

    def write_conf(self) -> None:
        self.conf.write_text(CONF.format(port=self.port, workers=self.args.workers,
                                         syslog=self.syslog.getsockname()[1],
                                         generation=self.generation))

    def brimd(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "brim.server", "-c", str(self.conf), "-p",
             str(self.pid_file), command], capture_output=True, text=True, timeout=120)

    def master(self) -> int:
        return int(self.pid_file.read_text().split()[0])

    def workers(self) -> dict[str, int]:
        master = self.master()
        out = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[1]) != master or fields[0] == b"Z":
                    continue
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    title = f.read().replace(b"\0", b" ").decode().strip()
            except (OSError, ValueError, IndexError):
                continue
            out[title] = int(entry)
        return out

    # -- the threads -----------------------------------------------------------

    def count(self, key: str) -> None:
        with self.lock:
            self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def client(self, keepalive: bool) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
                conn.request("POST", "/echo", body=b"soak")
                response = conn.getresponse()
                ok = response.status == 200 and response.read() == b"soak"
                self.count("ok" if ok else f"bad status {response.status}")
                if response.will_close or not keepalive:
                    conn.close()
                    conn = None
            except Exception as err:
                recent_kill = any(time.monotonic() - t < 2.0 for t in self.kill_times[-3:])
                self.count(f"{type(err).__name__}{' (worker killed)' if recent_kill else ''}")
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def drain_syslog(self) -> None:
        self.syslog.settimeout(0.5)
        while not self.stop.is_set():
            try:
                self.syslog.recv(65536)
            except OSError:
                pass

    def poll_stats(self) -> None:
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.port}/stats", timeout=10) as response:
                    count = json.loads(response.read())["request_count"]
            except Exception:
                continue
            # A restart or reload starts a new stats store: counts begin again.
            if count < self.last_count and not self.recent_swap():
                self.count_backwards += 1
            self.last_count = count

    def recent_swap(self) -> bool:
        return time.monotonic() - getattr(self, "swapped_at", 0.0) < 5.0

    def sample_rss(self) -> None:
        for title, pid in sorted(self.workers().items()):
            try:
                with open(f"/proc/{pid}/status") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
            except (OSError, StopIteration):
                continue
            self.rss.setdefault(title, []).append(kb)

    # -- the run -----------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        self.write_conf()
        started = self.brimd("start")
        if started.returncode:
            print(started.stderr, file=sys.stderr)
            return 2
        threads = [threading.Thread(target=self.client, args=(n % 2 == 0,), daemon=True)
                   for n in range(args.clients)]
        threads += [threading.Thread(target=self.poll_stats, daemon=True),
                    threading.Thread(target=self.drain_syslog, daemon=True)]
        for thread in threads:
            thread.start()
        begin = time.monotonic()
        end = begin + args.minutes * 60
        due = {"kill": begin + args.kill_every, "restart": begin + args.restart_every,
               "reload": begin + args.reload_every, "rss": begin + 5.0}
        try:
            while time.monotonic() < end:
                now = time.monotonic()
                if args.kill_every and now >= due["kill"]:
                    due["kill"] = now + args.kill_every
                    self.kill_one()
                if args.restart_every and now >= due["restart"]:
                    due["restart"] = now + args.restart_every
                    self.command("restart", "restarts")
                if args.reload_every and now >= due["reload"]:
                    due["reload"] = now + args.reload_every
                    self.generation += 1
                    self.write_conf()
                    self.command("reload", "reloads")
                if now >= due["rss"]:
                    due["rss"] = now + 60.0
                    self.sample_rss()
                time.sleep(0.1)
            self.sample_rss()
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(20)
            alive = self.brimd("status").returncode == 0
            self.brimd("stop")
        return self.report(alive, time.monotonic() - begin)

    def kill_one(self) -> None:
        workers = list(self.workers().values())
        if not workers:
            return
        self.kill_times.append(time.monotonic())
        try:
            os.kill(random.choice(workers), signal.SIGKILL)
            self.events["kills"] += 1
        except ProcessLookupError:
            pass

    def command(self, name: str, tally: str) -> None:
        self.swapped_at = time.monotonic()
        done = self.brimd(name)
        self.events[tally] += 1
        if done.returncode:
            self.events["failed_commands"] += 1
            print(f"brimd {name} failed: {done.stderr.strip()}", file=sys.stderr)

    def report(self, alive: bool, seconds: float) -> int:
        total = sum(self.outcomes.values())
        ok = self.outcomes.get("ok", 0)
        excused = sum(v for k, v in self.outcomes.items() if k.endswith("(worker killed)"))
        unexcused = total - ok - excused
        print(f"soak: {seconds:.0f}s, {self.args.workers} workers, {self.args.clients} clients")
        print(f"requests: {total} ({total / seconds:.0f}/s), ok {ok}, failed {total - ok} "
              f"({excused} in flight on a killed worker, {unexcused} otherwise)")
        for key, value in sorted(self.outcomes.items()):
            if key != "ok":
                print(f"  {key}: {value}")
        print("events: " + ", ".join(f"{k} {v}" for k, v in self.events.items()))
        print(f"request_count went backwards {self.count_backwards} times; brimd alive at the "
              f"end: {alive}")
        for title, samples in self.rss.items():
            print(f"RSS {title}: " + " ".join(f"{kb}k" for kb in samples))
        bad = unexcused or self.count_backwards or not alive or self.events["failed_commands"]
        print("result: " + ("FAIL" if bad else "ok"))
        return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--kill-every", type=float, default=5.0)
    ap.add_argument("--restart-every", type=float, default=60.0)
    ap.add_argument("--reload-every", type=float, default=45.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="brim-soak-") as tmp:
        return Soak(args, Path(tmp)).run()


if __name__ == "__main__":
    sys.exit(main())
