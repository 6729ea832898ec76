"""How a daemonized master tells the command that started it whether it came up.

``brimd start`` (and ``restart``) fork, and the child daemonizes and becomes
the master; the command must not return before it knows the outcome, or an
app that cannot start would look like a success (exit 0, nothing printed).
The master writes one report into a pipe: ``ok`` and the lines to print
(one per subserver), or ``error`` and the text to show, the failing
worker's traceback. The command waits for it and exits 0 or 1 accordingly.

The report is framed (status line, length line, text) because the command
cannot wait for end of file: the workers forked before the report was
written hold copies of the pipe's write end for as long as they live.
"""

from __future__ import annotations

import os
import select
import time

__all__ = ["StartReport"]


class StartReport:
    """The pipe between the waiting command (reader) and the master (writer)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()

    # -- the master's side ----------------------------------------------------

    def in_master(self) -> StartReport:
        """Keep only the write end (call in the forked master)."""
        if self._read >= 0:
            os.close(self._read)
            self._read = -1
        return self

    @property
    def pending(self) -> bool:
        """True until the master has reported."""
        return self._write >= 0

    def succeeded(self, text: str) -> None:
        self._send("ok\n" + text)

    def failed(self, text: str) -> None:
        self._send("error\n" + text)

    def _send(self, text: str) -> None:
        if self._write < 0:
            return
        body = text.encode("utf-8", "replace")
        status, _, body = body.partition(b"\n")
        data = b"%s\n%d\n%s" % (status, len(body), body)
        try:
            while data:
                data = data[os.write(self._write, data):]
        except OSError:
            pass  # the command is gone (Ctrl-C): nobody to tell
        finally:
            os.close(self._write)
            self._write = -1

    # -- the command's side ---------------------------------------------------

    def in_command(self) -> StartReport:
        """Keep only the read end (call in the command, after the fork)."""
        if self._write >= 0:
            os.close(self._write)
            self._write = -1
        return self

    def wait(self, timeout: float) -> tuple[bool, str]:
        """(came up, text): the master's report, or failure at EOF or timeout."""
        data = b""
        deadline = time.monotonic() + timeout
        try:
            while not _complete(data):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False, f"brimd: no report from the master within {timeout:g}s"
                ready, _, _ = select.select([self._read], [], [], left)
                if not ready:
                    continue
                chunk = os.read(self._read, 65536)
                if not chunk:
                    return False, "brimd: the master exited before it started"
                data += chunk
        finally:
            os.close(self._read)
            self._read = -1
        status, _, rest = data.partition(b"\n")
        text = rest.partition(b"\n")[2].decode("utf-8", "replace")
        if status == b"ok":
            return True, text
        return False, text or "brimd: the master could not start (see its log)"


def _complete(data: bytes) -> bool:
    """Whether ``data`` holds a whole report: status, length, then that many bytes."""
    parts = data.split(b"\n", 2)
    if len(parts) < 3 or not parts[1].isdigit():
        return False
    return len(parts[2]) >= int(parts[1])
