"""Memory: a worker's RSS stays flat over 200,000 requests.

A long-running worker that keeps a little of every request (a cache that
never stops growing, a leaked connection object, a log record held on to)
dies slowly, and no short test sees it. Here two workers serve 200,000
requests of a realistic mix (GETs, POST bodies with Content-Length and
chunked, 404s) with the request log on, and each worker's resident size
after all of them must be within 10% of its size after the first 10,000,
by which point imports, caches and allocator arenas have settled.

The client is raw sockets: keep-alive connections, each sending a batch of
100 pipelined requests at a time and reading the 100 responses back, on
several threads at once; that is fast enough for 200,000 requests in well
under a minute on two cores, so the server, not the client, is the bound.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
from brimd_harness import echo_stats_conf, free_port, get_json, wait_for

#: 200,000 requests, flat out: one load at a time ("load" group, see the root conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("load")]

ECHO = echo_stats_conf(workers=2)


WARM = 10_000
TOTAL = 200_000
BATCH = 100  # requests per send
THREADS = 4
RECONNECT = 20  # batches per connection, so connections spread over both workers

_GET = b"GET /echo?n=%d HTTP/1.1\r\nHost: x\r\nUser-Agent: memtest\r\n\r\n"
_POST = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\nsixteen bytes!!\n"
_CHUNKED = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: text/plain\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
_MISSING = b"GET /nothing/here HTTP/1.1\r\nHost: x\r\nReferer: http://x/\r\n\r\n"


def _batch() -> tuple[bytes, int, int]:
    """100 pipelined requests: 85 GETs, 8 POSTs, 4 chunked POSTs, 3 that get 404."""
    parts = []
    for n in range(BATCH):
        if n % 33 == 32:
            parts.append(_MISSING)
        elif n % 25 == 7:
            parts.append(_CHUNKED)
        elif n % 12 == 5:
            parts.append(_POST)
        else:
            parts.append(_GET % n)
    missing = parts.count(_MISSING)
    return b"".join(parts), BATCH - missing, missing


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def _settled(read, timeout: float = 3.0) -> int:
    """read() once it stops changing for 0.3 s (or at timeout)."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = read()
        if now == last:
            break
        last = now
    return last


class _LogSink:
    """Receives brimd's log datagrams and only counts them (200,000 lines, kept cheap).

    UDP may drop lines when this thread falls behind; the count is a figure,
    not a check. What matters is that brimd formatted and sent every one.
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                self.sock.recv(65536)
            except OSError:
                continue
            self.count += 1

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class _Load:
    """Sends batches from THREADS threads until a phase's quota of batches is used."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.batch, self.ok_per_batch, self.missing_per_batch = _batch()
        self.expect_len = self._learn_response_length()
        self.lock = threading.Lock()
        self.left = 0
        self.done = 0
        self.errors: list[str] = []

    def _learn_response_length(self) -> int:
        """Read one batch's responses by parsing them; later batches just count bytes.

        Every response here has a Content-Length and a fixed-width Date, so
        a batch's responses always add up to the same length; a response
        that differs (an error) changes the length or the status counts,
        and the check after each batch catches it.
        """
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(self.batch)
            data = b""
            seen = 0
            while seen < BATCH:
                data += sock.recv(1 << 20)
                seen, end = 0, 0
                while True:
                    head_end = data.find(b"\r\n\r\n", end)
                    if head_end < 0:
                        break
                    length = re.search(rb"Content-Length: (\d+)", data[end:head_end])
                    stop = head_end + 4 + int(length.group(1))
                    if stop > len(data):
                        break
                    seen, end = seen + 1, stop
        self._check(data)
        return len(data)

    def _check(self, data: bytes) -> None:
        ok = data.count(b"HTTP/1.1 200 OK\r\n")
        missing = data.count(b"HTTP/1.1 404 ")
        if (ok, missing) != (self.ok_per_batch, self.missing_per_batch):
            raise AssertionError(f"batch answered {ok} 200s and {missing} 404s")

    def _take(self) -> bool:
        with self.lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True

    def _worker(self) -> None:
        want = self.expect_len
        buf = bytearray(want + 65536)
        view = memoryview(buf)
        try:
            while True:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                    for _ in range(RECONNECT):
                        if not self._take():
                            return
                        sock.sendall(self.batch)
                        got = 0
                        while got < want:
                            n = sock.recv_into(view[got:])
                            if not n:
                                raise ConnectionError("server closed the connection")
                            got += n
                        if got != want:
                            raise AssertionError(f"batch answered {got} bytes, not {want}")
                        self._check(buf[:got])
                        with self.lock:
                            self.done += BATCH
        except Exception as err:
            self.errors.append(repr(err))

    def run(self, requests: int) -> float:
        """Send requests (a multiple of BATCH); seconds taken."""
        self.left = requests // BATCH
        start = time.monotonic()
        threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(90)
        assert not any(t.is_alive() for t in threads), "load threads did not finish"
        return time.monotonic() - start


def test_worker_rss_is_flat_over_200k_requests(brimd, syslog, figures):
    sink = _LogSink()
    try:
        port = free_port()
        conf = brimd.local(port=port).replace(f"127.0.0.1:{syslog.port}",
                                              f"127.0.0.1:{sink.port}")
        brimd.use(ECHO, conf)
        brimd.start()
        workers = wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 2 and w,
                           what="two wsgi workers")
        pids = sorted(workers.values())
        load = _Load(port)
        load.run(WARM - BATCH)  # the learning batch was the first hundred
        rss_warm = {pid: _rss_kb(pid) for pid in pids}
        took = load.run(TOTAL - WARM)
        rss_end = {pid: _rss_kb(pid) for pid in pids}
        stats = get_json(f"http://127.0.0.1:{port}/stats")
        logged = _settled(lambda: sink.count)
    finally:
        sink.close()
    growth = {pid: (rss_end[pid] - rss_warm[pid]) * 100 / rss_warm[pid] for pid in pids}
    workers_stats = [stats[k] for k in sorted(stats) if k.startswith("worker_")]
    figures.update(
        requests=load.done + BATCH, failed_batches=len(load.errors),
        requests_per_worker=[w["request_count"] for w in workers_stats],
        rss_kb_10k=[rss_warm[pid] for pid in pids], rss_kb_200k=[rss_end[pid] for pid in pids],
        growth_pct=[round(growth[pid], 2) for pid in pids],
        req_per_s=round((TOTAL - WARM) / took), log_lines=logged,
        restarts=stats["start_count"] - 2)
    assert not load.errors, load.errors[:3]
    assert load.done + BATCH == TOTAL
    assert stats["request_count"] >= TOTAL
    assert stats["status_404_count"] == TOTAL // BATCH * load.missing_per_batch
    # Both workers did real work, so both measurements mean something.
    assert min(w["request_count"] for w in workers_stats) > TOTAL // 10, figures
    assert all(abs(g) <= 10 for g in growth.values()), (
        f"RSS grew {figures['growth_pct']}% from {figures['rss_kb_10k']} kB at 10k requests "
        f"to {figures['rss_kb_200k']} kB at 200k")
    assert sorted(brimd.workers("wsgi").values()) == pids and stats["start_count"] == 2
