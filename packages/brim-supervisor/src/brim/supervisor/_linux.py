"""Linux-only process controls reached through ctypes (no compiled code).

Kept apart so the rest of the package reads as portable POSIX; every function
here degrades to a harmless no-op (returning False) where it is unavailable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

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
