"""Where log lines go: syslog, a file, or stdout/stderr.

A sink takes finished lines (already formatted, one per call) and delivers
them without the per-record machinery of :mod:`logging`: the request log
writes to a sink directly, and app and server messages reach the same sink
through :class:`brim.log.records.SinkHandler`.

What a sink promises:

* It never stops a request: a syslog line is one non-blocking send (kept in a
  bounded queue while the daemon's socket is full or the daemon is being
  restarted), a file write that fails drops the buffer; a failing sink gives
  one warning, then one a minute at most.
* A file or stream sink buffers lines and is flushed at 64 KiB, by
  :meth:`FileSink.flush` (which brim's HTTP worker calls every 100 ms), and
  on close; so a killed worker loses at most its last 100 ms of lines.
* A file sink reopens its path on :meth:`reopen` (SIGUSR1 in brimd), so
  logrotate can move the file away and have the next line start a new one.
"""

from __future__ import annotations

import collections
import errno
import logging.handlers
import os
import select
import socket
import sys
import time
from typing import Any, TextIO

from brim.supervisor.files import open_regular

__all__ = ["FLUSH_AT", "FLUSH_BACKLOG_EVERY", "FLUSH_EVERY", "FileSink", "Sink", "StreamSink",
           "SyslogSink", "syslog_priority"]

#: A buffered sink writes once this many bytes are waiting.
FLUSH_AT = 64 * 1024
#: Seconds between flushes of buffered sinks in an HTTP worker.
FLUSH_EVERY = 0.1
#: Seconds between flushes while a sink holds lines its destination had no
#: room for (a syslog daemon back from a restart, with the lines of its
#: outage waiting): each flush sends only what the daemon's queue takes.
FLUSH_BACKLOG_EVERY = 0.005
#: Seconds between two warnings about the same failing sink.
WARN_EVERY = 60.0
#: Longest message sent to syslog, in bytes; longer lines are clipped so the
#: datagram is never refused for its size (a client controls a path's length).
MAX_SYSLOG_MESSAGE = 16000


# When each destination (by label) was last warned about, for the rate limit.
_warned_at: dict[str, float] = {}


def syslog_priority(facility: int, level: int) -> int:
    """The <PRI> number for a facility code and a logging level."""
    if level >= logging.CRITICAL:
        severity = 2
    elif level >= logging.ERROR:
        severity = 3
    elif level >= logging.WARNING:
        severity = 4
    elif level >= 25:  # NOTICE
        severity = 5
    elif level >= logging.INFO:
        severity = 6
    else:
        severity = 7
    return facility * 8 + severity


class Sink:
    """A destination for finished log lines."""

    #: What the sink is, for warnings ('file /var/log/brim.log').
    label = "log"

    def __init__(self) -> None:
        #: Lines dropped because the destination failed or was full.
        self.dropped = 0

    def write(self, line: str, level: int = 25) -> None:
        """Deliver one line (no trailing newline)."""
        raise NotImplementedError

    def flush(self) -> None:
        """Deliver what is buffered."""

    def backlog(self) -> int:
        """Lines held because the destination had no room for them (0 when it keeps up).

        A caller that flushes on a timer flushes more often while this is not
        0, so a backlog drains at the destination's pace, not the timer's.
        """
        return 0

    def reopen(self) -> None:
        """Let go of the destination and open it again (log rotation).

        Only asks: the reopen happens at the next flush, so calling this from
        a signal handler cannot cut into a write that is under way.
        """

    def close(self) -> None:
        self.flush()

    def _warn(self, what: str) -> None:
        """Say on stderr that the sink fails: once, then once a minute at most.

        The times are kept per destination in this module, so workers forked
        after their master warned about a file do not warn about it again.
        """
        now = time.monotonic()
        if now - _warned_at.get(self.label, -WARN_EVERY) < WARN_EVERY:
            return
        _warned_at[self.label] = now
        stream = sys.__stderr__
        if stream is None:
            return
        dropped = f"; {self.dropped} log lines dropped so far" if self.dropped else ""
        try:
            stream.write(f"brim: WARNING {self.label}: {what}{dropped} (said at most once "
                         f"a minute)\n")
            stream.flush()
        except (OSError, ValueError):
            pass


class SyslogSink(Sink):
    """Datagrams to a syslog daemon, on a unix socket (default /dev/log) or UDP.

    One line is one datagram (RFC 3164 framing: a datagram socket has no
    other way to tell where a line ends), but lines are sent in small
    bursts: :meth:`write` queues the line, and once BATCH lines wait (fewer
    when the daemon's socket holds fewer: net.unix.max_dgram_qlen) they go
    out one non-blocking send after another. The daemon is woken once per
    burst instead of once per line, which is most of what a line cost
    brimd. :meth:`flush` (every 100 ms in an HTTP worker, and after every
    record) sends what waits, so a line waits 100 ms at most.

    A send never blocks. When the daemon's queue is full, the rest of the
    burst waits in memory and is tried again with the next line (or BATCH
    lines later if the daemon took none) and at the next flush, which may
    wait up to FLUSH_WAIT for room (see :meth:`flush`); an HTTP worker
    flushes every FLUSH_BACKLOG_EVERY while :meth:`backlog` is not 0, so
    lines kept while the daemon was down reach it at its pace. Up to MAX_PENDING
    lines wait; only beyond that are the oldest dropped, counted in
    :attr:`dropped` and warned about. When the
    daemon is restarted its socket is new, so sends fail until the sink
    connects again, which it tries at most once a second.
    """

    #: Lines kept while the daemon's queue is full; older ones are dropped.
    MAX_PENDING = 8192
    #: Most lines sent in one burst.
    BATCH = 16
    #: Longest wait in flush() for a full daemon queue to take the lines left.
    FLUSH_WAIT = 0.05

    def __init__(self, address: str | tuple[str, int], facility: int, name: str) -> None:
        super().__init__()
        self.address = address
        self.facility = facility
        self.prefix = f"{name}: "
        self.label = f"syslog {address}"
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._pending: collections.deque[bytes] = collections.deque()
        #: '<pri>name: ' by logging level, made once per level.
        self._heads: dict[int, str] = {}
        #: Whether flush() waits for a full queue (False after a wait that ended
        #: with lines left; True again once every line is sent).
        self._patient = True
        #: Lines waiting that make write() send a burst.
        self._send_at = self.batch = self.BATCH
        #: Whether the last push left lines behind (the daemon had no room).
        self._behind = False
        # A host name is looked up once, here: a lookup on a reconnect would
        # block the worker's event loop for as long as DNS takes.
        self._family = socket.AF_UNIX
        self._target: str | tuple[Any, ...] = address if isinstance(address, str) else ""
        if isinstance(address, str):
            self.batch = self._send_at = max(1, min(self.BATCH, _unix_dgram_queue()))
        else:
            try:
                info = socket.getaddrinfo(address[0], address[1], type=socket.SOCK_DGRAM)[0]
                self._family, self._target = info[0], info[4]
            except OSError as err:
                self._warn(f"cannot resolve the syslog address: {err}")
        self._connect()

    def _connect(self) -> bool:
        self._retry_at = time.monotonic() + 1.0
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if not self._target:
            return False
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.connect(self._target)
        except OSError as err:
            sock.close()
            self._warn(f"cannot reach the syslog daemon: {err}")
            return False
        sock.setblocking(False)
        self._sock = sock
        return True

    def write(self, line: str, level: int = 25) -> None:
        head = self._heads.get(level)
        if head is None:
            head = self._heads[level] = f"<{syslog_priority(self.facility, level)}>{self.prefix}"
        data = f"{head}{line}".encode("utf-8", "replace")
        if len(data) > MAX_SYSLOG_MESSAGE:
            data = data[:MAX_SYSLOG_MESSAGE] + b"...(clipped)"
        pending = self._pending
        pending.append(data)
        if len(pending) >= self._send_at:
            self._push()
            excess = len(pending) - self.MAX_PENDING
            if excess > 0:
                for _ in range(excess):
                    pending.popleft()
                self.dropped += excess
                self._warn("the syslog daemon does not keep up; oldest lines dropped")

    def flush(self) -> None:
        """Send the lines that wait; if the daemon's queue is full, wait for it a little.

        Called every 100 ms in an HTTP worker, after each record, and last
        before a worker exits, when lines left behind would be lost: so when
        the queue is full, this waits until the daemon reads (at most
        FLUSH_WAIT in all) and sends on. A daemon that does not take every
        line in that time is behind: flush() does not wait again until the
        queue in memory has emptied, so a slow or stuck daemon costs one
        wait, not one per flush.
        """
        self._push()
        if not self._pending or not self._patient:
            return
        deadline = time.monotonic() + self.FLUSH_WAIT
        while self._pending:
            left = deadline - time.monotonic()
            waiting = len(self._pending)
            if left <= 0 or not self._writable(left):
                self._patient = False
                return
            self._push()
            if len(self._pending) >= waiting:  # room, yet no line went: the daemon is gone
                self._patient = False
                return

    def backlog(self) -> int:
        # Lines waiting for their burst are not a backlog; lines a send left are.
        return len(self._pending) if self._behind else 0

    def _push(self) -> None:
        """Send what waits, until the daemon's queue is full.

        Each line is taken off the queue before it is sent and put back if
        the send fails, so two threads flushing at once never send a line
        twice. When some are left, the next try comes with the next line if
        this one sent any (the daemon is reading: keep up with it), else
        BATCH lines later (a daemon that reads nothing costs one failed send
        per burst, not one per line).
        """
        pending = self._pending
        send = self._send
        sent = 0
        while pending:
            try:
                data = pending.popleft()
            except IndexError:  # another thread took the last one
                break
            if not send(data):
                pending.appendleft(data)
                self._send_at = len(pending) + (1 if sent else self.batch)
                self._behind = True
                return
            sent += 1
        self._send_at = self.batch
        self._patient = True
        self._behind = False

    def _writable(self, timeout: float) -> bool:
        """Wait until the daemon's queue has room (a connected datagram socket polls
        writable then); False on a timeout or without a socket."""
        sock = self._sock
        if sock is None:
            return False
        try:
            return bool(select.select([], [sock], [], timeout)[1])
        except (OSError, ValueError):  # closed meanwhile, or a descriptor past FD_SETSIZE
            return False

    def _send(self, data: bytes) -> bool:
        """One non-blocking send; False when the line should wait (queue full, no daemon)."""
        sock = self._sock
        if sock is None:
            if time.monotonic() < self._retry_at or not self._connect():
                return False
            sock = self._sock
            assert sock is not None
        try:
            sock.send(data)
            return True
        except BlockingIOError:
            return False
        except OSError as err:
            # ECONNREFUSED / ENOTCONN / ENOENT: the daemon went away or was
            # restarted with a new socket. Connect again, then send once more.
            if time.monotonic() >= self._retry_at and self._connect():
                try:
                    self._sock.send(data)  # type: ignore[union-attr]
                    return True
                except OSError:
                    pass
            self._warn(f"cannot send to the syslog daemon: {err}")
            return False

    def close(self) -> None:
        self.flush()
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _BufferedSink(Sink):
    """Lines gathered in memory and written in blocks."""

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._size = 0

    def write(self, line: str, level: int = 25) -> None:
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        text = "\n".join(self._lines) + "\n"
        count = len(self._lines)
        self._lines = []
        self._size = 0
        try:
            self._write_all(text)
        except (OSError, ValueError) as err:
            self.dropped += count
            self._warn(f"write failed: {err}")

    def _write_all(self, text: str) -> None:
        raise NotImplementedError


class FileSink(_BufferedSink):
    """A log file, appended to; reopened on reopen() for log rotation.

    A symbolic link (or a FIFO, or a hard link) at the path is refused, not
    followed: the master opens its log as root, in a directory others may
    write to (see :mod:`brim.supervisor.files`).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.label = f"file {path}"
        self._fd = -1
        self._reopen_wanted = False
        self._open()

    def _open(self) -> bool:
        try:
            self._fd = open_regular(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except OSError as err:
            self._fd = -1
            self._warn(f"cannot open: {err.strerror}")
            return False
        return True

    def _write_all(self, text: str) -> None:
        if self._fd < 0 and not self._open():
            raise OSError(errno.EBADF, "the log file is not open")
        view = memoryview(text.encode("utf-8", "replace"))
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def reopen(self) -> None:
        self._reopen_wanted = True

    def flush(self) -> None:
        if self._reopen_wanted:
            # Before writing: whatever is written from now on belongs in the
            # file at the path, not in the one logrotate moved away.
            self._reopen_wanted = False
            old = self._fd
            if self._open() and old >= 0:
                os.close(old)
            elif old >= 0 and self._fd < 0:
                self._fd = old  # keep writing where we could rather than nowhere
        super().flush()

    def close(self) -> None:
        self.flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class StreamSink(_BufferedSink):
    """stdout or stderr, for containers and systemd's journal."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.label = f'stream {getattr(stream, "name", stream)}'

    def _write_all(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _unix_dgram_queue() -> int:
    """How many datagrams a unix socket queues for its reader (net.unix.max_dgram_qlen).

    The kernel takes one more than the setting before a send fails; a burst
    no longer than the setting fits when the daemon has read the last one.
    """
    try:
        with open("/proc/sys/net/unix/max_dgram_qlen") as f:
            return int(f.read())
    except (OSError, ValueError):
        return SyslogSink.BATCH


def parse_facility(facility: str) -> int:
    """A syslog facility name (LOCAL0, LOG_DAEMON ...) as its code; ValueError if unknown."""
    name = facility.strip().lower()
    if name.startswith("log_"):
        name = name[4:]
    try:
        return logging.handlers.SysLogHandler.facility_names[name]
    except KeyError:
        names = ", ".join(n.upper() for n in logging.handlers.SysLogHandler.facility_names)
        raise ValueError(f"invalid log_facility {facility!r}; use one of {names}") from None
