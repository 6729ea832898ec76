"""Linux-only process controls reached through ctypes (no compiled code).

Kept apart so the rest of the package reads as portable POSIX; every function
here degrades to a harmless no-op (returning False) where it is unavailable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

_libc = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:  # pragma: no cover - a Linux without a loadable libc
        _libc = None


def _prctl(option: int, arg: int) -> bool:
    if _libc is None:
        return False
    return _libc.prctl(option, arg, 0, 0, 0) == 0


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send *signum* to this process when its parent dies.

    Why: a worker must not outlive a master that was killed with SIGKILL. The
    setting is cleared by a change of credentials, so call it again after a
    privilege drop.
    """
    return _prctl(_PR_SET_PDEATHSIG, signum)


def set_child_subreaper(enabled: bool = True) -> bool:
    """Make this process adopt (and so be able to reap) orphaned descendants."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1 if enabled else 0)


def process_start_time(pid: int) -> int | None:
    """The start time of *pid* in clock ticks since boot, or None if unknown.

    Why: (pid, start time) names one process for its whole life, so a pid file
    that stores both can tell its own process from a later one that was given
    the same pid.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after
    # the last ')'. Field 22 (starttime) is then the 20th field of the rest.
    rest = data[data.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def process_rss(pid: int) -> int | None:
    """The resident set size of *pid* in bytes, or None if unknown.

    Why /proc/<pid>/statm: the master checks each worker against
    ``max_rss`` about once a second, and one small read is all it costs.
    """
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * _PAGE_SIZE


def who_listens(port: int, udp: bool = False) -> tuple[int, str] | None:
    """(pid, command name) of a process holding *port* (TCP listening, or UDP bound).

    Why: "address in use" alone leaves the operator guessing; naming the
    holder tells them whether it is an old brimd or something else. Found
    through /proc/net and the processes' descriptors, so only processes this
    user may inspect are seen; None when nothing visible holds it.
    """
    inodes = set()
    for table in (("udp", "udp6") if udp else ("tcp", "tcp6")):
        try:
            with open(f"/proc/net/{table}") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            listening = udp or fields[3] == "0A"  # TCP_LISTEN
            if local_port == port and listening:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                    with open(f"/proc/{entry}/comm") as f:
                        return int(entry), f.read().strip()
            except OSError:
                continue
    return None
