"""Workers' messages to their master: one pipe, one short line per message.

Why a pipe and not signals: a worker has several things to tell (it is up,
it wants to be recycled and why, the error it is dying of) and signals carry
no text. Why one pipe for all workers: the master already waits in one
``select``; the write end is inherited at fork, and a line shorter than
``PIPE_BUF`` is written atomically however many workers write at once.

A worker never blocks on it: the write end is non-blocking, and a message
that does not fit is dropped (the master also reads the worker's heartbeat
slot, so "up" is never lost; an error text is only ever a courtesy).
"""

from __future__ import annotations

import os
import select
from dataclasses import dataclass

__all__ = ["ControlChannel", "Message"]

#: The largest message text; with the pid and kind it stays under PIPE_BUF.
MAX_TEXT = 3500

#: The message kinds, and what the master does with each.
READY = "ready"  # the worker finished starting and serves
RECYCLE = "recycle"  # the worker asks to be replaced; the text is the reason
ERROR = "error"  # the worker is failing; the text is its last error (a traceback)
DUMPED = "dumped"  # the worker wrote its stack dump (the master may now kill it)
KINDS = (READY, RECYCLE, ERROR, DUMPED)


@dataclass(frozen=True)
class Message:
    pid: int
    kind: str
    text: str


class ControlChannel:
    """The pipe; the master reads ``fd_read``, every worker writes."""

    def __init__(self) -> None:
        self.fd_read, self.fd_write = os.pipe()
        for fd in (self.fd_read, self.fd_write):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._partial = b""

    # -- worker side ---------------------------------------------------------

    def send(self, kind: str, text: str = "") -> bool:
        """Tell the master something; False if it could not be written now."""
        if self.fd_write < 0:
            return False
        if len(text) > MAX_TEXT:
            text = "..." + text[-MAX_TEXT:]
        # Escaping newlines keeps one message per line (tracebacks have many).
        body = text.replace("\\", "\\\\").replace("\n", "\\n")
        line = f"{os.getpid()} {kind} {body}\n".encode("utf-8", "replace")
        try:
            return os.write(self.fd_write, line) == len(line)
        except OSError:
            return False

    def close_reader(self) -> None:
        """In a worker: the read end is the master's alone."""
        if self.fd_read >= 0:
            os.close(self.fd_read)
            self.fd_read = -1

    # -- master side ---------------------------------------------------------

    def receive(self) -> list[Message]:
        """Every complete message waiting in the pipe (never blocks)."""
        if self.fd_read < 0:
            return []
        data = self._partial
        while True:
            ready, _, _ = select.select([self.fd_read], [], [], 0)
            if not ready:
                break
            try:
                chunk = os.read(self.fd_read, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        *lines, self._partial = data.split(b"\n")
        messages = []
        for raw in lines:
            parts = raw.decode("utf-8", "replace").split(" ", 2)
            if len(parts) < 2 or not parts[0].isdigit() or parts[1] not in KINDS:
                continue
            text = _unescape(parts[2]) if len(parts) == 3 else ""
            messages.append(Message(int(parts[0]), parts[1], text))
        return messages

    def close(self) -> None:
        for fd in (self.fd_read, self.fd_write):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd_read = self.fd_write = -1


def _unescape(body: str) -> str:
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("\n" if nxt == "n" else nxt)
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
