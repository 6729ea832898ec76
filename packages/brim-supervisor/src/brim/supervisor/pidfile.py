"""Pid files that are written atomically and know a stale one when they see it.

The file holds the pid on its first line (what every other tool expects) and,
where /proc exists, the process's start time on the second line. A pid file is
*stale* when its process is gone, or when the pid now belongs to a different
process (the start time differs, or — for files without a start time — the
command line does not contain the expected ``name``). A stale file never
blocks a start.

:func:`status` maps this onto the LSB init-script exit codes.
"""

from __future__ import annotations

import errno
import os
import time

from brim.supervisor._linux import process_start_time
from brim.supervisor.errors import SupervisorError
from brim.supervisor.files import open_replacing, replace_file

#: LSB ``status`` exit codes.
STATUS_RUNNING = 0
STATUS_DEAD_PIDFILE_EXISTS = 1
STATUS_NOT_RUNNING = 3
STATUS_UNKNOWN = 4


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just is not ours to signal
    return True


def _cmdline(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


class PidFile:
    """One pid file at *path*.

    *name*, when given, is a fallback identity check for files that carry no
    start time (written by another tool, or on a system without /proc): the
    process's command line must contain it for the pid to count as ours.
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = os.fspath(path)
        self.name = name
        self._fd: int | None = None  # see keep_open

    def __repr__(self) -> str:
        return f"PidFile({self.path!r})"

    def _read_lines(self) -> list[str] | None:
        try:
            with open(self.path, encoding="ascii", errors="replace") as f:
                return f.read(4096).split()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise SupervisorError(
                f"cannot read pid file {self.path}: {err.strerror or err}"
            ) from None

    def read(self) -> int | None:
        """The pid in the file, or None when there is no file or no valid pid."""
        lines = self._read_lines()
        if not lines:
            return None
        try:
            pid = int(lines[0])
        except ValueError:
            return None
        return pid if pid > 0 else None

    def exists(self) -> bool:
        """Whether the file itself is there (stale or not)."""
        return os.path.lexists(self.path)

    def is_running(self) -> bool:
        """Whether the process the file names is alive *and* is the one that wrote it."""
        lines = self._read_lines()
        if not lines:
            return False
        try:
            pid = int(lines[0])
        except ValueError:
            return False
        if pid <= 0 or not _pid_exists(pid):
            return False
        if len(lines) > 1:
            current = process_start_time(pid)
            if current is not None:
                try:
                    return int(lines[1]) == current
                except ValueError:
                    return False
        if self.name is not None:
            cmdline = _cmdline(pid)
            if cmdline is not None:
                return self.name in cmdline
        return True

    def running_pid(self) -> int | None:
        """The pid of the live process this file names, or None (no file, or stale)."""
        return self.read() if self.is_running() else None

    def signal_and_wait(self, signum: int, timeout: float) -> int | None:
        """Send *signum* to the running process and wait up to *timeout* s for it to end.

        Returns None when nothing ran, else the pid; raises SupervisorError
        naming the pid if it is still alive at the deadline. What an init
        script's ``stop`` does, in one call.
        """
        pid = self.running_pid()
        if pid is None:
            return None
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return pid
        if not wait_gone(pid, timeout):
            raise SupervisorError(f"pid {pid} did not end within {timeout:g}s")
        return pid

    def remove_stale(self) -> bool:
        """Remove the file if it names no running process; return whether it did.

        What ``stop`` does with a pid file left by a process that died
        without cleaning up: a file naming a live process is never touched.
        The file is read again just before the unlink, so one rewritten by a
        process starting meanwhile is left alone.
        """
        lines = self._read_lines()
        if lines is None or self.is_running() or self._read_lines() != lines:
            return False
        return self._unlink()

    def write(self, pid: int | None = None) -> None:
        """Write *pid* (default: this process) atomically: temp file, then rename.

        A reader therefore sees either the old file or the whole new one, never
        a half-written pid; a symbolic link at the path is replaced, never
        written through (see :mod:`brim.supervisor.files`). The directory
        must exist.
        """
        pid = os.getpid() if pid is None else pid
        start = process_start_time(pid)
        text = f"{pid}\n" if start is None else f"{pid}\n{start}\n"
        if self._fd is not None:
            self._rewrite(self._fd, text)
            return
        try:
            replace_file(self.path, text.encode("ascii"))
        except OSError as err:
            raise SupervisorError(
                f"cannot write pid file {self.path}: {err.strerror or err}"
            ) from None

    def keep_open(self) -> None:
        """Open the file now, so that :meth:`write` can rewrite it in place later.

        For a process that will drop privileges and only then write the
        file: it may no longer create files in the directory (or even reach
        it), but a descriptor opened before keeps working. Such a rewrite is
        in place (write, then truncate), not atomic. What stands at the path
        and is not a plain file (a symbolic link, say) is replaced first, so
        the rewrite can only reach a file of this process's own.
        """
        if self._fd is None:
            try:
                self._fd = open_replacing(self.path)
            except OSError as err:
                raise SupervisorError(
                    f"cannot open pid file {self.path}: {err.strerror or err}"
                ) from None

    def close(self) -> None:
        """Let go of the descriptor :meth:`keep_open` opened (in a forked child, say)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _rewrite(self, fd: int, text: str) -> None:
        data = text.encode("ascii")
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except OSError as err:
            raise SupervisorError(
                f"cannot write pid file {self.path}: {err.strerror or err}"
            ) from None

    def remove(self, force: bool = False) -> bool:
        """Remove the file if it names this process (or always, with *force*).

        Why the check: after a hand-over restart the new master has rewritten
        the file, and the old master must not delete it on its way out.
        Returns whether a file was removed.
        """
        if not force and self.read() != os.getpid():
            return False
        return self._unlink()

    def _unlink(self) -> bool:
        """Remove the file; False if it was already gone."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            return False
        except OSError as err:
            if err.errno == errno.ENOENT:
                return False
            raise SupervisorError(
                f"cannot remove pid file {self.path}: {err.strerror or err}"
            ) from None
        return True


def status(path: str | os.PathLike[str], name: str | None = None) -> int:
    """LSB status of the process named by the pid file at *path*.

    0: running; 1: dead but the pid file exists (stale); 3: not running
    (no pid file); 4: unknown (the file cannot be read).
    """
    pidfile = PidFile(path, name=name)
    try:
        if pidfile.is_running():
            return STATUS_RUNNING
    except SupervisorError:
        return STATUS_UNKNOWN
    if pidfile.exists():
        return STATUS_DEAD_PIDFILE_EXISTS
    return STATUS_NOT_RUNNING


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to *timeout* seconds for *pid* to end; whether it did.

    A zombie counts as gone: it has finished and only waits for its parent.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_exists(pid) or _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False
