"""The master's state in a small JSON file beside its pid file.

Why a file: ``brimd reload`` signals the master and must then learn whether
the new conf came up, and ``brimd status`` shows how many workers each
subserver has up; a signal carries no answer back, while a file the master
rewrites on every change can be read by any
command. ``generation`` counts start checks: 1 for the start, one more per
reload, so a reload waits for the generation after the one it saw.
"""

from __future__ import annotations

import json
import os
from typing import Any

from brim.supervisor.files import open_replacing

__all__ = ["StatusFile", "status_path"]


def status_path(pid_path: str) -> str:
    return pid_path + ".status"


class StatusFile:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def write(self, state: dict[str, Any]) -> None:
        """Replace the file's content with ``state``.

        Rewritten in place, through a descriptor opened on first use, rather
        than renamed into place: after a privilege drop the master may no
        longer create files in the pid file's directory (/var/run) or even
        reach it. A reader that catches it half-written sees invalid JSON and
        reads again. The descriptor is on a file of the master's own (see
        :meth:`open`), so a link planted at the path later is not written
        through.
        """
        self.open()
        assert self._fd is not None
        data = json.dumps(state).encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))

    def open(self) -> None:
        """Open (create) the file now: before a privilege drop, so writes work after it.

        Opened as root, in a directory others may write to: a symbolic link
        (or anything else but a plain file) at the path is replaced by a new
        file rather than followed.
        """
        if self._fd is None:
            self._fd = open_replacing(self.path)

    def fileno(self) -> int | None:
        """The open descriptor, if any (a reload's exec keeps it: see brim.server.reexec)."""
        return self._fd

    def adopt(self, fd: int) -> None:
        """Write through ``fd``, this file opened by the image before a reload's exec."""
        self._fd = fd

    def read(self) -> dict[str, Any] | None:
        try:
            with open(self.path) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def close(self) -> None:
        """Let go of the descriptor (a forked worker must not keep the master's)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
