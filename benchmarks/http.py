#!/usr/bin/env python3
"""Request logging at wire speed: brimd against gunicorn and granian, driven by wrk.

    python3 benchmarks/http.py [--rounds 3] [--duration 10] [--connections 64]
                               [--wrk-threads 2] [--only brimd-file,granian,...]

Every row serves the same hello-world WSGI app (13-byte body, Content-Length
set) with 2 worker processes and keep-alive, under ``wrk -t2 -c64``:

* brimd-syslog: ``brimd start`` (daemonized, so it logs to syslog) with
  ``log_address`` pointing at a real rsyslogd that this script starts on a
  socket of its own, writing to a file;
* brimd-file: ``brimd foreground`` with ``log_sink = file`` and ``log_file``;
* brimd-off: ``brimd foreground`` with ``log_level = WARNING`` (no request log);
* gunicorn: gunicorn 23.0.0, ``-k eventlet -w 2 --access-logfile FILE``;
* granian: ``granian --interface wsgi --workers 2 --access-log``, its access
  logger sent to a file by ``--log-config``;
* brimd-threads: ``brimd foreground``, ``worker_model = threads``, 4 threads
  per worker, ``log_sink = file``;
* gunicorn-gthread: gunicorn 23.0.0, ``-k gthread -w 2 --threads 4
  --access-logfile FILE``;
* brimd-threads-sleep and gunicorn-gthread-sleep: the same two, serving an
  app that sleeps 10 ms (``time.sleep``, blocking) before it answers.

brimd-stderr (``brimd foreground`` with stderr going to a file, the way brimd
logged to a file before ``log_sink``) is only run when asked for with --only,
or in brimd-file's place when this brimd refuses ``log_sink``.

Each run also takes the CPU time (user + system, from /proc) of the server's
processes, master and workers, over the measured wrk run, and prints it per
request answered (``cpu us/req``): what logging costs the server, whatever
the machine's load does to req/s. For brimd-syslog it is brimd's CPU only,
not rsyslogd's.

Rows run one after another in each round, each after a 2-second warm-up; the
order rotates from round to round, so drift in the machine's load hits every
row alike. Each round and the medians print req/s, p99 and the ratios the
issue sets targets for; each run also counts the request lines the server
logged, against the requests wrk saw answered, to prove its log was on.

The script makes its own virtualenv under ~/.cache/brim-bench (or
$XDG_CACHE_HOME) with gunicorn==23.0.0, eventlet, granian and this
repository's packages, so every server runs on the same interpreter. It needs
wrk and rsyslog from the system: ``sudo apt-get install -y wrk rsyslog``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["brim-conf", "brim-log", "brim-stats", "brim-supervisor", "brim-wsgi", "brimd"]
#: What the venv gets from PyPI besides this repository's packages.
PEERS = ["gunicorn==23.0.0", "eventlet", "granian==2.8.7"]
WORKERS = 2
THREADS = 4  # per worker, in the threads rows (brimd and gunicorn gthread alike)
WARM_UP = 2  # seconds of wrk before each measured run

HELLO_APP = '''\
import time

BODY = b'Hello World!\\n'
HEADERS = [('Content-Type', 'text/plain'), ('Content-Length', str(len(BODY)))]


def app(env, start_response):
    """The app as gunicorn and granian run it."""
    start_response('200 OK', HEADERS)
    return [BODY]


class Hello:
    """The same app in brimd's chained form: (name, conf, next_app)."""

    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, env, start_response):
        start_response('200 OK', HEADERS)
        return [BODY]


def slow_app(env, start_response):
    """An app that blocks 10 ms per request (a query, a call to another service)."""
    time.sleep(0.01)
    start_response('200 OK', HEADERS)
    return [BODY]


class Slow(Hello):
    def __call__(self, env, start_response):
        time.sleep(0.01)
        start_response('200 OK', HEADERS)
        return [BODY]
'''

BRIMD_CONF = """\
[brim]
ip = 127.0.0.1
port = {port}
workers = {workers}
wsgi = hello
{extra}
[hello]
call = hello.{call}
"""

RSYSLOG_CONF = """\
global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
*.* action(type="omfile" file="{file}")
"""

#: A request line in any of the servers' logs: brim writes ``127.0.0.1 GET /
#: 200 ...``, gunicorn and granian ``"GET / HTTP/1.1" 200``.
REQUEST_LINE = re.compile(rb'(?:^|[ "])GET / ')

ROWS = ("brimd-syslog", "brimd-file", "brimd-off", "gunicorn", "granian", "brimd-threads",
        "gunicorn-gthread", "brimd-threads-sleep", "gunicorn-gthread-sleep")
EXTRA_ROWS = ("brimd-stderr",)
#: A row run in another's place when that one cannot run on this brimd yet.
STAND_INS = {"brimd-file": "brimd-stderr"}

#: (name, numerator, denominator, target): req/s ratios, each at least target.
RPS_TARGETS = (
    ("brimd-file / granian", "brimd-file", "granian", 1.5),
    ("brimd-file / brimd-off", "brimd-file", "brimd-off", 0.85),
    ("brimd-syslog / gunicorn", "brimd-syslog", "gunicorn", 2.2),
    ("brimd-threads / gunicorn-gthread", "brimd-threads", "gunicorn-gthread", 2.0),
    ("brimd-threads-sleep / gunicorn-gthread-sleep", "brimd-threads-sleep",
     "gunicorn-gthread-sleep", 1.0),
)
#: (numerator, denominator, target): CPU per request ratios, each at most target.
CPU_TARGETS = (("brimd-syslog", "brimd-file", 1.3),)
#: brimd's p99 in these rows is to be no higher than either peer's.
P99_ROWS = ("brimd-file", "brimd-syslog")
P99_PEERS = ("gunicorn", "granian")


class Skip(Exception):
    """A row cannot run here (its reason is the message)."""


# --- environment ------------------------------------------------------------

def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "brim-bench"


def ensure_venv() -> Path:
    """The benchmark's own venv; (re)installs the repo packages every time, cheaply."""
    venv = _cache_dir() / "venv"
    python = venv / "bin" / "python"
    stamp = venv / "brim-bench-peers.txt"
    if not python.exists():
        print(f"creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"],
                       check=True)
    wanted = "\n".join(PEERS) + "\n"
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f'installing {" ".join(PEERS)} into {venv}', flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS], check=True)
        stamp.write_text(wanted)
    # One -e per package: pip applies -e only to the path right after it.
    editable = [arg for p in PACKAGES for arg in ("-e", str(REPO / "packages" / p))]
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", *editable],
                   check=True)
    return python


def ensure_tools(rows: list[str]) -> dict[str, str]:
    """wrk, and rsyslogd when a row needs it; exits with the apt-get command if missing."""
    tools = {"wrk": shutil.which("wrk")}
    if "brimd-syslog" in rows:
        tools["rsyslogd"] = (shutil.which("rsyslogd")
                             or next((p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd")
                                      if os.access(p, os.X_OK)), None))
    missing = sorted(name for name, path in tools.items() if not path)
    if missing:
        packages = " ".join("rsyslog" if m == "rsyslogd" else m for m in missing)
        sys.exit(f'{" and ".join(missing)} not installed; on Debian/Ubuntu: '
                 f'sudo apt-get install -y {packages}')
    return tools  # type: ignore[return-value]


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def versions(python: Path, tools: dict[str, str]) -> str:
    code = ('import importlib.metadata as m; print(" ".join(f"{p} {m.version(p)}" '
            'for p in ("gunicorn", "eventlet", "granian")))')
    parts = [f"python {sys.version.split()[0]}", _first_line([str(python), "-c", code]),
             _first_line([tools["wrk"], "-v"]).split(" [")[0]]
    if "rsyslogd" in tools:
        parts.append(" ".join(_first_line([tools["rsyslogd"], "-v"]).split()[:2]))
        # How many datagrams a unix socket queues for its reader: past that a
        # non-blocking sender (brimd's syslog sink) drops lines. Linux's own
        # default is 10; systemd's sysctl.d raises it to 512.
        try:
            qlen = Path("/proc/sys/net/unix/max_dgram_qlen").read_text().strip()
        except OSError:
            qlen = "?"
        parts.append(f"net.unix.max_dgram_qlen {qlen}")
    return ", ".join(parts)


# --- processes ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return " | ".join(text.splitlines()[-lines:])


def _wait_port(port: int, proc: subprocess.Popen | None, errors: Path,
               timeout: float = 30.0) -> None:
    """Until port answers GET / with 200; Skip if proc exits first (its stderr is the why)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise Skip(f'exited with {proc.returncode}: {_tail(errors) or "no output"}')
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise Skip(f"did not answer on port {port} within {timeout:g}s: {_tail(errors)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM pid's process group (pid alone if it shares ours), SIGKILL if it lingers."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    own = pgid == os.getpgid(0)

    def send(signum: int) -> None:
        try:
            if own:
                os.kill(pid, signum)
            else:
                os.killpg(pgid, signum)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid) and (own or not _group_alive(pgid)):
            return
        time.sleep(0.05)
    send(signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a server we started in its own session, and reap it (SIGKILL after timeout)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a worker its master left behind
    except ProcessLookupError:
        pass


@dataclass
class Run:
    """The processes of one row's run and what to do to end them."""

    port: int
    logs: dict[str, Path]
    errors: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    #: Extra steps of the shutdown, run in order before the procs are killed.
    stoppers: list[Callable[[], None]] = field(default_factory=list)
    #: The server's top process (its CPU is counted with its descendants');
    #: None: the last process started.
    server_pid: int | None = None

    def cpu_times(self) -> Cpu:
        """CPU time so far of the server's processes (the top one and its descendants)."""
        root = self.server_pid if self.server_pid is not None else self.procs[-1].pid
        return Cpu(root, {pid: _cpu_of(pid) for pid in _tree(root)})

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        if "stderr" not in kw:
            kw["stderr"] = open(self.errors, "ab")  # noqa: SIM115 -- closed below
        try:
            proc = subprocess.Popen(cmd, start_new_session=True, **kw)
        finally:
            for stream in ("stdout", "stderr"):
                handle = kw.get(stream)
                if hasattr(handle, "close"):
                    handle.close()  # the child has its own copy
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """Every step runs, whatever the one before it did."""
        for step in self.stoppers:
            try:
                step()
            except Exception as err:  # cleanup goes on regardless
                print(f"  (cleanup: {err})", file=sys.stderr)
        for proc in reversed(self.procs):
            _stop(proc)


class Bench:
    def __init__(self, python: Path, tools: dict[str, str], tmp: Path):
        self.python = python
        self.tools = tools
        self.tmp = tmp
        self.env = dict(os.environ, PYTHONPATH=str(tmp))

    # -- brimd --

    def _brimd_conf(self, port: int, name: str, extra: str = "", call: str = "Hello") -> Path:
        conf = self.tmp / f"{name}.conf"
        conf.write_text(BRIMD_CONF.format(port=port, workers=WORKERS, extra=extra, call=call))
        return conf

    def _brimd(self, *args: str) -> list[str]:
        return [str(self.python), "-m", "brim.server", *args]

    def _brimd_foreground(self, run: Run, name: str, extra: str = "",
                          call: str = "Hello") -> None:
        """brimd foreground; its stderr (start-up errors too) goes to run.logs['stderr']."""
        conf = self._brimd_conf(run.port, name, extra, call)
        proc = run.popen(self._brimd("-c", str(conf), "-p", "-", "foreground"),
                         stderr=open(run.logs["stderr"], "ab"), env=self.env)  # noqa: SIM115
        _wait_port(run.port, proc, run.logs["stderr"])

    def brimd_file(self, run: Run) -> None:
        run.logs["file"] = self.tmp / "brimd-access.log"
        run.logs["stderr"] = self.tmp / "brimd-file.stderr"
        extra = f'log_sink = file\nlog_file = {run.logs["file"]}\n'
        try:
            self._brimd_foreground(run, "brimd-file", extra)
        except Skip as err:
            if re.search(r"log_(sink|file)\b.*unknown option", str(err)):
                raise Skip(f"this brimd has no log_sink/log_file yet ({err})") from None
            raise

    def _brimd_threads(self, run: Run, name: str, call: str) -> None:
        run.logs["file"] = self.tmp / f"{name}-access.log"
        run.logs["stderr"] = self.tmp / f"{name}.stderr"
        extra = (f"worker_model = threads\nthreads = {THREADS}\nlog_sink = file\n"
                 f'log_file = {run.logs["file"]}\n')
        self._brimd_foreground(run, name, extra, call)

    def brimd_threads(self, run: Run) -> None:
        self._brimd_threads(run, "brimd-threads", "Hello")

    def brimd_threads_sleep(self, run: Run) -> None:
        self._brimd_threads(run, "brimd-threads-sleep", "Slow")

    def brimd_stderr(self, run: Run) -> None:
        run.logs["stderr"] = self.tmp / "brimd-stderr.log"
        self._brimd_foreground(run, "brimd-stderr")

    def brimd_off(self, run: Run) -> None:
        run.logs["stderr"] = self.tmp / "brimd-off.stderr"
        self._brimd_foreground(run, "brimd-off", "log_level = WARNING\n")

    def brimd_syslog(self, run: Run) -> None:
        rdir = self.tmp / "rsyslog"
        rdir.mkdir(exist_ok=True)
        sock, pidfile = rdir / "log.sock", rdir / "rsyslogd.pid"
        run.logs["syslog"] = rdir / "messages.log"
        rconf = rdir / "rsyslog.conf"
        rconf.write_text(RSYSLOG_CONF.format(dir=rdir, socket=sock, file=run.logs["syslog"]))
        rsyslogd = run.popen([self.tools["rsyslogd"], "-n", "-f", str(rconf), "-i",
                              str(pidfile)])
        deadline = time.monotonic() + 10
        while not sock.exists():
            if rsyslogd.poll() is not None or time.monotonic() > deadline:
                raise Skip(f"rsyslogd did not open {sock}: {_tail(run.errors)}")
            time.sleep(0.05)

        conf = self._brimd_conf(run.port, "brimd-syslog", f"log_address = {sock}\n")
        brim_pid = self.tmp / "brimd-syslog.pid"
        brimd = ["-c", str(conf), "-p", str(brim_pid)]

        def stop_brimd() -> None:
            pid = _read_pid(brim_pid)
            if pid is None:
                return
            subprocess.run(self._brimd(*brimd, "stop"), env=self.env, timeout=60,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if _alive(pid):
                _kill_group(pid)

        def stop_rsyslogd() -> None:
            # SIGTERM lets it write out what it has queued before the lines are counted.
            rsyslogd.send_signal(signal.SIGTERM)
            try:
                rsyslogd.wait(15)
            except subprocess.TimeoutExpired:
                rsyslogd.kill()
                rsyslogd.wait(10)

        run.stoppers += [stop_brimd, stop_rsyslogd]
        with open(run.errors, "ab") as err:
            started = subprocess.run(self._brimd(*brimd, "start"), env=self.env,
                                     stdout=err, stderr=err, timeout=60)
        if started.returncode:
            raise Skip(f"brimd start exited with {started.returncode}: {_tail(run.errors)}")
        _wait_port(run.port, None, run.errors)
        run.server_pid = _read_pid(brim_pid)

    # -- peers --

    def gunicorn(self, run: Run) -> None:
        run.logs["file"] = self.tmp / "gunicorn-access.log"
        run.popen([str(self.python.parent / "gunicorn"), "-w", str(WORKERS), "-k", "eventlet",
                   "-b", f"127.0.0.1:{run.port}", "--access-logfile", str(run.logs["file"]),
                   "--chdir", str(self.tmp), "hello:app"],
                  stdout=open(run.errors, "ab"))  # noqa: SIM115
        _wait_port(run.port, run.procs[-1], run.errors)

    def _gunicorn_gthread(self, run: Run, name: str, app: str) -> None:
        run.logs["file"] = self.tmp / f"{name}-access.log"
        run.popen([str(self.python.parent / "gunicorn"), "-w", str(WORKERS), "-k", "gthread",
                   "--threads", str(THREADS), "-b", f"127.0.0.1:{run.port}",
                   "--access-logfile", str(run.logs["file"]), "--chdir", str(self.tmp),
                   f"hello:{app}"],
                  stdout=open(run.errors, "ab"))  # noqa: SIM115
        _wait_port(run.port, run.procs[-1], run.errors)

    def gunicorn_gthread(self, run: Run) -> None:
        self._gunicorn_gthread(run, "gunicorn-gthread", "app")

    def gunicorn_gthread_sleep(self, run: Run) -> None:
        self._gunicorn_gthread(run, "gunicorn-gthread-sleep", "slow_app")

    def granian(self, run: Run) -> None:
        # granian logs through Python's logging, to stdout unless --log-config
        # says otherwise: this one sends the access logger to a file.
        run.logs["file"] = self.tmp / "granian-access.log"
        log_conf = self.tmp / "granian-log.json"
        log_conf.write_text(json.dumps({
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"generic": {"format": "[%(levelname)s] %(message)s"},
                           "access": {"format": "%(message)s"}},
            "handlers": {
                "console": {"class": "logging.StreamHandler", "formatter": "generic",
                            "stream": "ext://sys.stderr"},
                "access": {"class": "logging.FileHandler", "formatter": "access",
                           "filename": str(run.logs["file"])},
            },
            "loggers": {
                "_granian": {"handlers": ["console"], "level": "INFO", "propagate": False},
                "granian.access": {"handlers": ["access"], "level": "INFO",
                                   "propagate": False},
            },
        }))
        run.popen([str(self.python.parent / "granian"), "--interface", "wsgi",
                   "--workers", str(WORKERS), "--host", "127.0.0.1", "--port", str(run.port),
                   "--access-log", "--log-config", str(log_conf), "--working-dir",
                   str(self.tmp), "hello:app"],
                  stdout=open(run.errors, "ab"))  # noqa: SIM115
        _wait_port(run.port, run.procs[-1], run.errors)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# --- measuring --------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name ([] if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _tree(root: int) -> list[int]:
    """root and every descendant of it, from /proc's parent pids."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _cpu_of(pid: int) -> float:
    """utime + stime of one process, in seconds (0.0 if it is gone)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class Cpu:
    """CPU seconds so far of each of a server's processes; ``root`` is its top one."""

    root: int
    by_pid: dict[int, float]

    def total(self) -> float:
        return sum(self.by_pid.values())

    def busiest_share(self, before: Cpu) -> float:
        """Of the CPU the server's other processes (its workers) used since before,
        the share of the busiest one: 1/workers when the load was spread evenly,
        1.0 when one worker served everything. Why it is printed: on a machine
        with as many cores as workers plus the load generator, a server whose
        accept loop lets one worker take every keep-alive connection shares
        fewer cores with wrk and scores higher req/s than one that spreads
        them, for the same CPU per request."""
        used = [t - before.by_pid.get(pid, 0.0) for pid, t in self.by_pid.items()
                if pid != self.root]
        return max(used) / sum(used) if used and sum(used) > 0 else 0.0


@dataclass
class Result:
    rps: float
    p99: float
    requests: int  # answered, warm-up and probe included
    lines: int  # request lines in the server's log
    trouble: str = ""  # socket errors or non-2xx answers, if wrk saw any
    cpu_us: float = 0.0  # the server's CPU time per request of the measured run, in µs
    busiest: float = 0.0  # the busiest worker's share of the workers' CPU in the measured run


def run_wrk(wrk: str, port: int, duration: int, connections: int,
            cpu: Callable[[], Cpu], threads: int = 2) -> tuple[Result, str]:
    """wrk's warm-up and measured run; ``cpu()`` (the server's CPU seconds) is read
    around the measured one."""
    url = f"http://127.0.0.1:{port}/"
    base = [wrk, f"-t{threads}", f"-c{connections}"]
    warm = subprocess.run([*base, f"-d{WARM_UP}s", url], capture_output=True, text=True,
                          check=True, timeout=WARM_UP + 60).stdout
    before = cpu()
    out = subprocess.run([*base, f"-d{duration}s", "--latency", url], capture_output=True,
                         text=True, check=True, timeout=duration + 60).stdout
    after = cpu()
    used = after.total() - before.total()
    measured = int(re.search(r"(\d+) requests in", out).group(1))
    answered = sum(int(re.search(r"(\d+) requests in", o).group(1)) for o in (warm, out))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    trouble = [m.group(0).strip() for m in
               re.finditer(r"^\s*(Socket errors:.*|Non-2xx or 3xx responses:.*)$", out, re.M)]
    cpu_us = used / measured * 1e6 if measured else 0.0
    return Result(rps, p99, answered + 1, 0, "; ".join(trouble), cpu_us,
                  after.busiest_share(before)), out


def count_lines(paths: dict[str, Path]) -> dict[str, int]:
    counts = {}
    for kind, path in paths.items():
        try:
            with open(path, "rb") as f:
                counts[kind] = sum(1 for line in f if REQUEST_LINE.search(line))
        except FileNotFoundError:
            counts[kind] = 0
    return counts


def _ratio_line(label: str, value: float | None, target: float, higher: bool) -> str:
    if value is None:
        return f"  {label:58s}    n/a"
    ok = value >= target if higher else value <= target
    sign = ">=" if higher else "<="
    return f'  {label:58s} x{value:5.2f}  target {sign} {target:<4g}  {"ok" if ok else "MISSED"}'


def print_ratios(med: dict[str, Result], stand_in: dict[str, str]) -> None:
    """The issue's ratios over med (row name -> result); rows missing are n/a."""
    def name(row: str) -> str:
        return f"{stand_in[row]} (for {row})" if row in stand_in else row

    for _, num, den, target in RPS_TARGETS:
        a, b = med.get(num), med.get(den)
        label = f"req/s {name(num)} / {den}"
        print(_ratio_line(label, a.rps / b.rps if a and b else None, target, True))
    for num, den, target in CPU_TARGETS:
        a, b = med.get(num), med.get(den)
        label = f"cpu/req {name(num)} / {den}"
        print(_ratio_line(label, a.cpu_us / b.cpu_us if a and b and b.cpu_us else None,
                          target, False))
    for row in P99_ROWS:
        for peer in P99_PEERS:
            a, b = med.get(row), med.get(peer)
            label = f"p99   {name(row)} / {peer}"
            print(_ratio_line(label, a.p99 / b.p99 if a and b else None, 1.0, False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--wrk-threads", type=int, default=2,
                    help="wrk's threads (-t); 1 leaves out the pairing of wrk threads "
                         "with workers that a 2-core machine rewards (see README)")
    ap.add_argument("--only", metavar="NAMES", default=",".join(ROWS),
                    help=f'comma-separated rows to run, of {", ".join(ROWS + EXTRA_ROWS)} '
                         f'(default: {",".join(ROWS)})')
    args = ap.parse_args()
    rows = [r.strip() for r in args.only.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS + EXTRA_ROWS]
    if unknown or not rows:
        ap.error(f'--only: unknown row(s) {", ".join(unknown) or "(none given)"}; '
                 f'choose from {", ".join(ROWS + EXTRA_ROWS)}')
    rows = list(dict.fromkeys(rows))
    tools = ensure_tools(rows)
    python = ensure_venv()
    print(f"versions: {versions(python, tools)}")
    print(f"{args.rounds} round(s) of {len(rows)} row(s): {WARM_UP}s warm-up + "
          f"{args.duration}s of wrk -t{args.wrk_threads} -c{args.connections}, "
          f"{WORKERS} workers each\n",
          flush=True)

    # A SIGTERM to the script unwinds like ^C does, through every finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, list[Result]] = {r: [] for r in rows}
    skipped: dict[str, str] = {}
    stand_in: dict[str, str] = {}  # row -> the row run in its place
    with tempfile.TemporaryDirectory(prefix="brim-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "hello.py").write_text(HELLO_APP)
        bench = Bench(python, tools, tmp)
        for n in range(args.rounds):
            active = [r for r in rows if r not in skipped]
            if not active:
                break
            shift = n % len(active)
            for row in active[shift:] + active[:shift]:
                result = one_run(bench, row, args)
                if isinstance(result, str):
                    skipped[row] = result
                    print(f"round {n + 1} {row:22s} skipped: {result}", flush=True)
                    alt = STAND_INS.get(row)
                    if not alt or alt in rows or "no log_sink" not in result:
                        continue
                    stand_in[row] = alt
                    rows.append(alt)
                    results[alt] = []
                    print(f"round {n + 1} {alt:22s} runs in place of {row}", flush=True)
                    row, result = alt, one_run(bench, alt, args)
                    if isinstance(result, str):
                        skipped[row] = result
                        print(f"round {n + 1} {row:22s} skipped: {result}", flush=True)
                        continue
                results[row].append(result)
                print_result(f"round {n + 1}", row, result)
            this_round = {r: rs[-1] for r, rs in results.items()
                          if len(rs) == n + 1}
            print_ratios(_with_stand_ins(this_round, stand_in), stand_in)
            print(flush=True)

    med = {r: Result(statistics.median(x.rps for x in rs), statistics.median(x.p99 for x in rs),
                     sum(x.requests for x in rs), sum(x.lines for x in rs),
                     cpu_us=statistics.median(x.cpu_us for x in rs),
                     busiest=statistics.median(x.busiest for x in rs))
           for r, rs in results.items() if rs}
    for row, res in med.items():
        print_result("median ", row, res)
    for row, why in skipped.items():
        print(f"skipped {row:22s} {why}")
    print_ratios(_with_stand_ins(med, stand_in), stand_in)
    return 0


def _with_stand_ins(res: dict[str, Result], stand_in: dict[str, str]) -> dict[str, Result]:
    out = dict(res)
    for row, alt in stand_in.items():
        if alt in res:
            out[row] = res[alt]
    return out


def print_result(prefix: str, row: str, res: Result) -> None:
    share = res.lines / res.requests if res.requests else 0.0
    # A request log that kept under 99% of the answered requests lost lines;
    # brimd-off is meant to have none.
    lost = "  LINES MISSING" if row != "brimd-off" and share < 0.99 else ""
    print(f"{prefix} {row:22s} {res.rps:9.0f} req/s  p99 {res.p99:7.2f} ms  "
          f"cpu {res.cpu_us:6.1f} us/req  busiest worker {100 * res.busiest:3.0f}%  "
          f"log lines {res.lines}/{res.requests} answered ({100 * share:5.1f}%){lost}"
          + (f"  [{res.trouble}]" if res.trouble else ""), flush=True)


def one_run(bench: Bench, row: str, args: argparse.Namespace) -> Result | str:
    """Start row's server, measure it, stop it, count its log: the Result or why it failed."""
    port = _free_port()
    run = Run(port=port, logs={}, errors=bench.tmp / f"{row}.errors")
    start = getattr(bench, row.replace("-", "_"))
    try:
        try:
            start(run)
            result, _ = run_wrk(bench.tools["wrk"], port, args.duration, args.connections,
                                run.cpu_times, args.wrk_threads)
        finally:
            run.stop()
    except Skip as err:
        return str(err)
    except (subprocess.SubprocessError, OSError, AttributeError) as err:
        return f"{type(err).__name__}: {err}"
    counts = count_lines(run.logs)
    result.lines = sum(counts.values())
    if sum(1 for c in counts.values() if c) > 1:  # say which file had which
        result.trouble = ", ".join(filter(None, [result.trouble] + [
            f"{kind} {c}" for kind, c in counts.items()]))
    for path in [*run.logs.values(), run.errors]:
        path.unlink(missing_ok=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
