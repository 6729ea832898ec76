"""``brimd top``: a live view of a running brimd's workers, one row each, every second.

Where the numbers come from: the master names its stats store in its status
file (beside the pid file); top maps that store read-only
(:meth:`brim.stats.StatsStore.attach`, through ``/proc/<master>/fd/<n>``)
and reads every worker's bucket directly, as the Stats app does, so it
needs no Stats app in the conf and sends no request that would count.
Reading another process' /proc fd takes the same user as the master (or
root). A reload makes a new store: top follows the status file to it.

Rates and latencies are over the last interval: req/s from the change in
``request_count``, p50/p99 from the change in the request-duration
histogram (interpolated within a bucket, as Prometheus' histogram_quantile
does), CPU% from the change in the process' CPU seconds. A worker whose pid
changed since the last sample starts over.

The screen is drawn with curses (stdlib), so it works in any terminal
(80 columns are enough) and over ssh. Keys pick the sort column; ``q``
quits with status 0.
"""

from __future__ import annotations

import curses
import time
from dataclasses import dataclass, field
from typing import Any

from brim.stats import HISTOGRAM_BOUNDS, StatsError, StatsStore, quantile

from .exits import restart_stat

REQUESTS = "request_count"
CONNECTIONS = "connection_count"
DURATION = "request_duration_seconds"
IN_FLIGHT = "requests_in_flight"

#: Sort keys: key -> (column title, what it sorts by, largest first).
SORTS: dict[str, tuple[str, str, bool]] = {
    "s": ("SUBSERVER", "sub", False),
    "p": ("PID", "pid", False),
    "a": ("AGE", "age", True),
    "r": ("REQ/S", "rate", True),
    "f": ("FLY", "in_flight", True),
    "5": ("P50", "p50", True),
    "9": ("P99", "p99", True),
    "m": ("RSS", "rss", True),
    "c": ("CPU%", "cpu", True),
    "t": ("RST", "restarts", True),
}

_WIDTHS = (12, 7, 5, 7, 4, 7, 7, 6, 5, 3)  # 72 columns with the separating spaces


@dataclass
class Sample:
    """One worker's numbers at one moment."""

    sub: str
    worker: int
    pid: int
    started: int
    requests: int
    buckets: list[int]
    in_flight: int
    rss: int | None
    cpu: float | None
    restarts: int


@dataclass
class Row:
    """What one line of the screen shows about a worker."""

    sub: str
    pid: int
    age: float
    rate: float
    in_flight: int
    p50: float | None
    p99: float | None
    rss: int | None
    cpu: float | None
    restarts: int
    buckets: list[int] = field(default_factory=list)


def take(store: StatsStore) -> list[Sample]:
    """Every started worker of every ``workers`` group with a request or connection count."""
    out = []
    for group in store.groups():
        if store.departed(group) is None:  # a daemon group
            continue
        for n, values in enumerate(store.values(group)):
            if not values.get("start_time"):
                continue
            hist = values.get(DURATION)
            buckets = _per_bucket(hist["buckets"]) if isinstance(hist, dict) else []
            out.append(Sample(
                sub=group, worker=n, pid=int(values.get("pid", 0)),
                started=int(values["start_time"]),
                requests=int(values.get(REQUESTS, values.get(CONNECTIONS, 0))),
                buckets=buckets, in_flight=int(values.get(IN_FLIGHT, 0)),
                rss=values.get("rss_bytes"), cpu=values.get("cpu_seconds"),
                restarts=int(values.get(restart_stat("crash"), 0))
                + int(values.get(restart_stat("hung"), 0))))
    return out


def _per_bucket(cumulative: dict[str, int]) -> list[int]:
    counts = list(cumulative.values())
    return [b - a for a, b in zip([0, *counts], counts, strict=False)]


def rows(before: list[Sample], now: list[Sample], seconds: float, at: float) -> list[Row]:
    """The rows for the interval between two samples ``seconds`` apart, at time ``at``."""
    earlier = {(s.sub, s.worker): s for s in before}
    out = []
    for s in now:
        old = earlier.get((s.sub, s.worker))
        same = old is not None and old.pid == s.pid and seconds > 0
        rate = (s.requests - old.requests) / seconds if same and old else 0.0
        delta = ([b - a for a, b in zip(old.buckets, s.buckets, strict=True)]
                 if same and old and len(old.buckets) == len(s.buckets) else [])
        cpu = (100 * (s.cpu - old.cpu) / seconds
               if same and old and s.cpu is not None and old.cpu is not None else None)
        out.append(Row(sub=s.sub, pid=s.pid, age=max(0.0, at - s.started), rate=max(0.0, rate),
                       in_flight=s.in_flight, p50=quantile(0.5, delta) if delta else None,
                       p99=quantile(0.99, delta) if delta else None, rss=s.rss, cpu=cpu,
                       restarts=s.restarts, buckets=delta))
    return out


def sort_rows(found: list[Row], key: str) -> list[Row]:
    """The rows in the order of the column ``key`` picks; rows with no value there last."""
    _, attr, largest_first = SORTS.get(key, SORTS["s"])
    known = [r for r in found if getattr(r, attr) is not None]
    known.sort(key=lambda r: (r.sub, r.pid))
    known.sort(key=lambda r: getattr(r, attr), reverse=largest_first)
    return known + sorted((r for r in found if getattr(r, attr) is None),
                          key=lambda r: (r.sub, r.pid))


def total(found: list[Row]) -> Row:
    """The totals line: rates, in flight, RSS, CPU and restarts added; latency over all."""
    buckets = [sum(col) for col in zip(*(r.buckets for r in found if r.buckets), strict=True)]
    return Row(sub="total", pid=len(found), age=max((r.age for r in found), default=0.0),
               rate=sum(r.rate for r in found), in_flight=sum(r.in_flight for r in found),
               p50=quantile(0.5, buckets) if buckets else None,
               p99=quantile(0.99, buckets) if buckets else None,
               rss=sum(r.rss for r in found if r.rss is not None),
               cpu=sum(r.cpu for r in found if r.cpu is not None),
               restarts=sum(r.restarts for r in found), buckets=buckets)


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 100:
        return f"{seconds}s"
    if seconds < 6000:
        return f"{seconds // 60}m"
    if seconds < 360000:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= HISTOGRAM_BOUNDS[-1]:
        return f">{HISTOGRAM_BOUNDS[-1]:g}s"
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return "-"  # pragma: no cover


def format_row(row: Row, *, is_total: bool = False) -> str:
    cells = (row.sub, f"{row.pid} wkr" if is_total else str(row.pid), _age(row.age),
             f"{row.rate:.1f}", str(row.in_flight), _ms(row.p50), _ms(row.p99),
             _bytes(row.rss), "-" if row.cpu is None else f"{row.cpu:.1f}", str(row.restarts))
    return " ".join(_fit(c, w, i) for i, (c, w) in enumerate(zip(cells, _WIDTHS, strict=True)))


def header(key: str) -> str:
    titles = [t for t, _, _ in SORTS.values()]
    sort_title = SORTS.get(key, SORTS["s"])[0]
    cells = [f"{t}*" if t == sort_title else t for t in titles]
    return " ".join(_fit(c, w, i) for i, (c, w) in enumerate(zip(cells, _WIDTHS, strict=True)))


def _fit(text: str, width: int, column: int) -> str:
    text = text[:width]
    return text.ljust(width) if column == 0 else text.rjust(width)


def screen_lines(master: int, found: list[Row], key: str, note: str = "") -> list[str]:
    """The whole screen as text lines (what curses draws; also what a test can check)."""
    keys = " ".join(f"{k}:{t.lower()}" for k, (t, _, _) in SORTS.items())
    lines = [f"brimd {master}  {time.strftime('%H:%M:%S')}  sort {keys}  q:quit"[:79],
             header(key)]
    lines += [format_row(r) for r in sort_rows(found, key)]
    lines.append(format_row(total(found), is_total=True))
    if note:
        lines.append(note)
    return lines


class Source:
    """The running brimd's store, found from its status file and followed across reloads."""

    def __init__(self, state: Any, master: int) -> None:
        #: Reads the status file again (a StatusFile's read).
        self.state = state
        self.master = master
        self.path: str | None = None
        self.store: StatsStore | None = None

    def current(self) -> StatsStore:
        record = self.state() or {}
        path = record.get("stats")
        if not path:
            raise StatsError("the running brimd's status file names no stats store "
                             "(is it an older brimd?)")
        if path != self.path or self.store is None:
            try:
                store = StatsStore.attach(path)
            except PermissionError:
                raise StatsError(f"cannot read {path}: run brimd top as the user brimd runs "
                                 "as, or as root") from None
            except FileNotFoundError:
                if self.store is not None:
                    return self.store  # the status file is being rewritten: keep the last
                raise
            if self.store is not None:
                self.store.close()
            self.store, self.path = store, path
        return self.store


def run(source: Source, interval: float = 1.0) -> int:
    """Draw the view every ``interval`` seconds until ``q``; the exit status (0)."""
    return curses.wrapper(_loop, source, interval)


def _loop(stdscr: Any, source: Source, interval: float) -> int:
    curses.curs_set(0)
    stdscr.timeout(int(interval * 1000))
    key = "s"
    store = source.current()
    before, taken = take(store), time.monotonic()
    found: list[Row] = rows(before, before, 0.0, time.time())
    while True:
        stdscr.erase()
        height, width = stdscr.getmaxyx()
        for y, line in enumerate(screen_lines(source.master, found, key)[:height]):
            stdscr.addnstr(y, 0, line, max(1, width - 1))
        stdscr.refresh()
        pressed = stdscr.getch()
        if pressed in (ord("q"), ord("Q")):
            return 0
        if pressed != -1 and chr(pressed) in SORTS:
            key = chr(pressed)
        if time.monotonic() - taken >= interval * 0.9:
            store = source.current()
            now, at = take(store), time.monotonic()
            found = rows(before, now, at - taken, time.time())
            before, taken = now, at
