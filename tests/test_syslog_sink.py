"""The syslog sink: its framing and bursts on a socket the test reads, and brimd
logging every request of a few thousand to a real rsyslogd.

The unit tests drive :class:`brim.log.sinks.SyslogSink` against a unix
datagram socket the test binds and reads itself. The end-to-end test runs
the Debian package's ``rsyslogd`` with its own conf, socket and output file
in a temporary directory (no system daemon, no /dev/log), points a daemonized
brimd at it, and checks that each request's txn arrives exactly once.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from brimd_harness import Brimd, alive, free_port, get_json, process_tree, wait_for

from brim.log.sinks import MAX_SYSLOG_MESSAGE, SyslogSink, syslog_priority

HERE = Path(__file__).resolve().parent
LOCAL0 = 16
NOTICE = 25


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short directory for unix socket paths (at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bsy", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Reader:
    """A unix datagram socket the test binds: the syslog daemon, read by hand."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def read(self) -> list[bytes]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def reader(short_dir) -> Iterator[Reader]:
    r = Reader(short_dir / "log")
    yield r
    r.close()


# --- framing and bursts -------------------------------------------------------------------

@pytest.mark.timeout(10)
def test_each_line_is_one_datagram_with_its_priority_and_name(reader):
    sink = SyslogSink(reader.path, LOCAL0, "brim")
    sink.write("first line", NOTICE)
    sink.write("an error", 40)
    sink.write("é and \udcff", NOTICE)  # not encodable as is: replaced, not refused
    sink.flush()
    got = reader.read()
    assert got == [b"<133>brim: first line", f"<{syslog_priority(LOCAL0, 40)}>brim: an error"
                   .encode(), "<133>brim: é and ?".encode()]
    sink.close()


@pytest.mark.timeout(10)
def test_lines_wait_for_a_burst_or_a_flush_and_keep_their_order(reader):
    sink = SyslogSink(reader.path, LOCAL0, "brim")
    assert 1 <= sink.batch <= SyslogSink.BATCH
    for n in range(sink.batch - 1):
        sink.write(f"line {n}")
    assert reader.read() == [], "a burst went out before it was full"
    sink.write(f"line {sink.batch - 1}")
    assert reader.read() == [f"<133>brim: line {n}".encode() for n in range(sink.batch)]
    sink.write("alone")
    assert reader.read() == []
    sink.flush()
    assert reader.read() == [b"<133>brim: alone"]
    sink.close()


@pytest.mark.timeout(10)
def test_a_long_line_is_clipped_to_one_datagram(reader):
    sink = SyslogSink(reader.path, LOCAL0, "brim")
    sink.write("x" * (MAX_SYSLOG_MESSAGE * 2))
    sink.flush()
    (got,) = reader.read()
    assert len(got) == MAX_SYSLOG_MESSAGE + len(b"...(clipped)")
    assert got.endswith(b"x...(clipped)")
    sink.close()


@pytest.mark.timeout(20)
def test_a_full_daemon_queue_keeps_lines_and_counts_only_what_overflows(reader):
    """The reader stops reading: lines wait in memory, none lost up to MAX_PENDING;
    once it reads again everything arrives in order; past MAX_PENDING the oldest
    are dropped and counted."""
    sink = SyslogSink(reader.path, LOCAL0, "brim")
    sink.MAX_PENDING = 300  # type: ignore[misc]
    total = 250
    for n in range(total):
        sink.write(f"n{n}")  # never blocks: the queue (net.unix.max_dgram_qlen) is small
    got: list[bytes] = []
    for _ in range(200):
        got += reader.read()
        sink.flush()
        if len(got) == total:
            break
    got += reader.read()
    assert got == [f"<133>brim: n{n}".encode() for n in range(total)]
    assert sink.dropped == 0

    for n in range(1000):
        sink.write(f"m{n}")
    sink.flush()
    # Kept: MAX_PENDING, the lines the socket holds, and what came since the last trim.
    assert 1000 - 300 - 4 * sink.batch - 20 <= sink.dropped <= 1000 - 300
    kept = []
    for _ in range(400):
        kept += reader.read()
        sink.flush()
    kept += reader.read()
    assert len(kept) + sink.dropped == 1000
    # In order: the first lines (already in the socket's queue), then the newest.
    numbers = [int(line.rsplit(b"m", 1)[1]) for line in kept]
    gap = next(i for i in range(1, len(numbers)) if numbers[i] != numbers[i - 1] + 1)
    assert numbers[:gap] == list(range(gap))
    assert numbers[gap:] == list(range(1000 - len(numbers) + gap, 1000))
    sink.close()


@pytest.mark.timeout(10)
def test_no_daemon_then_a_daemon(short_dir):
    """Lines written while nothing listens wait; the sink connects again (after a
    second at most) and delivers them."""
    path = short_dir / "log"
    sink = SyslogSink(str(path), LOCAL0, "brim")
    sink.write("early")
    sink.flush()
    r = Reader(path)
    try:
        got: list[bytes] = []

        def arrived() -> bool:
            sink.flush()
            got.extend(r.read())
            return bool(got)

        wait_for(arrived, timeout=5, what="the waiting line delivered")
        assert got == [b"<133>brim: early"]
    finally:
        r.close()
        sink.close()


@pytest.mark.timeout(10)
def test_backlog_counts_only_what_the_daemon_had_no_room_for(reader):
    """Lines waiting for their burst are no backlog; lines a full queue left are,
    until a flush gets the last of them out."""
    sink = SyslogSink(reader.path, LOCAL0, "brim")
    sink.write("one")
    assert sink.backlog() == 0
    for n in range(200):
        sink.write(f"n{n}")  # the reader reads nothing meanwhile
    assert 0 < sink.backlog() <= 201
    got: list[bytes] = []
    for _ in range(200):
        got += reader.read()
        sink.flush()
        if not sink.backlog():
            break
    got += reader.read()
    assert sink.backlog() == 0 and len(got) == 201
    sink.close()


# --- a real rsyslogd ----------------------------------------------------------------------

RSYSLOG_CONF = """\
global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}" RateLimit.Interval="0")
template(name="msgonly" type="string" string="%syslogtag%%msg%\\n")
*.* action(type="omfile" file="{out}" template="msgonly")
"""


def rsyslogd_path() -> str:
    found = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None)
    assert found, "rsyslogd is not installed (.ci/run installs the rsyslog package)"
    return found


@contextlib.contextmanager
def running_rsyslogd(short_dir: Path) -> Iterator[tuple[Path, Path]]:
    """A real rsyslogd on a socket in short_dir; yields (socket, output file)."""
    sock, out = short_dir / "log.sock", short_dir / "messages.log"
    conf = short_dir / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(dir=short_dir, socket=sock, out=out))
    proc = subprocess.Popen([rsyslogd_path(), "-n", "-f", str(conf), "-i",
                             str(short_dir / "rsyslogd.pid")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(short_dir / "rsyslogd.err", "wb"))  # noqa: SIM115
    try:
        wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=10,
                 what="rsyslogd listening")
        assert proc.poll() is None, (short_dir / "rsyslogd.err").read_text()
        yield sock, out
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def rsyslogd(short_dir) -> Iterator[tuple[Path, Path]]:
    with running_rsyslogd(short_dir) as found:
        yield found


def _logged_txns(out: Path, wanted: set[str]) -> Counter:
    """How often each wanted txn is in rsyslogd's output file so far."""
    with contextlib.suppress(FileNotFoundError):
        text = out.read_text(encoding="utf-8", errors="replace")
        return Counter(word for line in text.splitlines() if " /load/" in line
                       for word in line.split() if word in wanted)
    return Counter()


def _start_txn_echo(brimd: Brimd, port: int, sock: Path) -> int:
    """A daemonized brimd, 2 workers answering each request with its txn and logging
    to the syslog socket sock (which may not exist yet); returns once both serve."""
    shutil.copy(HERE / "log_apps.py", brimd.root / "log_apps.py")
    brimd.use("[wsgi]\napps = stats t\nworkers = 2\n\n[stats]\ncall = brim.stats.Stats\n\n"
              "[t]\ncall = log_apps.TxnEcho\n",
              f"[brim]\nip = 127.0.0.1\nport = {port}\ngrace = 5\nlog_address = {sock}\n")
    master = brimd.start()

    def ready() -> bool:
        data = get_json(f"http://127.0.0.1:{port}/stats", timeout=2)
        return all(data.get(f"worker_{n}", {}).get("start_time") for n in range(2))

    wait_for(ready, timeout=15, what="brimd serving with both workers")
    return master


def _load(port: int, count: int, threads: int, txns: list[str], errors: list[str]) -> None:
    """count requests over threads keep-alive connections; each answer is its txn."""
    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            for i in range(n):
                conn.request("GET", f"/load/{i}")
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status != 200:
                    errors.append(f"{resp.status} {body}")
                else:
                    txns.append(body)
        except OSError as err:
            errors.append(repr(err))
        finally:
            conn.close()

    workers = [threading.Thread(target=client, args=(count // threads,)) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(60)


@pytest.mark.timeout(120)
@pytest.mark.slow
@pytest.mark.xdist_group("load")  # drives a load flat out: one at a time
def test_every_request_line_reaches_a_real_rsyslogd(brimd: Brimd, rsyslogd):
    sock, out = rsyslogd
    port = free_port()
    tree: list[int] = []
    try:
        master = _start_txn_echo(brimd, port, sock)
        txns: list[str] = []
        errors: list[str] = []
        _load(port, 4000, 4, txns, errors)
        assert not errors, errors[:5]
        assert len(txns) == 4000
        tree = process_tree(master)
        done = brimd.run("stop", timeout=30)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not any(alive(pid) for pid in tree), timeout=15,
                 what="brimd and its workers gone")
    finally:
        brimd.kill_all()

    wanted = set(txns)

    def logged() -> Counter:
        return _logged_txns(out, wanted)

    # rsyslogd writes its file in its own time: wait until every txn is there.
    with contextlib.suppress(AssertionError, pytest.fail.Exception):
        wait_for(lambda: len(logged()) == len(wanted), timeout=20,
                 what=f"{len(wanted)} request lines in rsyslogd's file")
    counts = logged()
    assert len(counts) == len(wanted), f"{len(wanted) - len(counts)} lines missing"
    assert set(counts) == wanted
    assert not [t for t, n in counts.items() if n > 1], "a request logged twice"
    text = out.read_text(encoding="utf-8", errors="replace")
    first = next(line for line in text.splitlines() if " /load/" in line)
    assert first.startswith("brim: 127.0.0.1 GET /load/"), first


@pytest.mark.timeout(120)
@pytest.mark.slow
@pytest.mark.xdist_group("load")  # drives a load flat out: one at a time
def test_lines_kept_while_the_daemon_was_down_drain_at_its_pace(brimd: Brimd, short_dir):
    """brimd serves 4,000 requests while no syslog daemon listens: each worker
    keeps its lines (2,000 or so, under MAX_PENDING). Then rsyslogd starts, and
    no request comes: the flush timer alone must deliver the backlog. At one
    daemon queue (net.unix.max_dgram_qlen, 10 here) per 100 ms flush that took
    about 20 s; flushing every FLUSH_BACKLOG_EVERY while a backlog is left, it
    takes the second the sink waits to connect again, and little more."""
    port = free_port()
    sock = short_dir / "log.sock"
    try:
        _start_txn_echo(brimd, port, sock)
        txns: list[str] = []
        errors: list[str] = []
        _load(port, 4000, 4, txns, errors)
        assert not errors, errors[:5]
        wanted = set(txns)
        assert len(wanted) == 4000
        with running_rsyslogd(short_dir) as (_, out):
            up = time.monotonic()
            with contextlib.suppress(pytest.fail.Exception):
                wait_for(lambda: len(_logged_txns(out, wanted)) == len(wanted), timeout=15,
                         what="the backlog in rsyslogd's file")
            took = time.monotonic() - up
            counts = _logged_txns(out, wanted)
    finally:
        brimd.kill_all()
    print(f"backlog of {len(wanted)} lines delivered in {took:.2f}s after rsyslogd started; "
          f"{len(counts)} arrived")
    assert len(counts) == len(wanted), f"{len(wanted) - len(counts)} lines missing"
    assert not [t for t, n in counts.items() if n > 1], "a request logged twice"
    assert took < 5.0, f"the backlog took {took:.1f}s to drain"
