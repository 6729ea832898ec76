"""A process' resident memory and CPU time, read from /proc when a report is made.

Why at report time and not counted by the process: reading /proc costs a
file read per process, so it is done only when somebody asks (a scrape,
``brimd top``), never on a request's path. Linux only; elsewhere, and for a
process that is gone, there is nothing to report.
"""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_BOOT: float | None = None


def usage(pid: int, started: int = 0) -> tuple[int, float] | None:
    """``(rss_bytes, cpu_seconds)`` of ``pid`` (user + system), or None if not readable.

    ``started`` (seconds since the epoch, 0: unknown) is when the process
    meant said it started (after its fork): a process with that pid that
    began well after it is another one, which took a pid freed by its death.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    try:
        utime, stime = int(fields[11]), int(fields[12])
        begun = int(fields[19]) / _TICKS
        rss = int(fields[21]) * _PAGE
    except (IndexError, ValueError):
        return None
    boot = _boot_time()
    if started and boot is not None and boot + begun > started + 2:
        return None
    return rss, (utime + stime) / _TICKS


def _boot_time() -> float | None:
    global _BOOT
    if _BOOT is None:
        try:
            with open("/proc/stat", "rb") as f:
                for line in f:
                    if line.startswith(b"btime "):
                        _BOOT = float(line.split()[1])
                        break
        except OSError:
            return None
    return _BOOT
