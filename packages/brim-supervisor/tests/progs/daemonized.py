"""Daemonize and/or drop privileges as told by one JSON argument, then report.

The report (JSON) is written to conf["out"], opened before any privilege
drop. A daemonized run then waits up to 30 s for conf["out"] + ".stop" to
appear before it exits; a plain run exits at once.
"""

from __future__ import annotations

import json
import os
import sys
import time

from brim.supervisor import SupervisorError, daemonize, drop_privileges, is_daemonized

CONF = json.loads(sys.argv[1])


def _fd_target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


def main() -> int:
    out = open(CONF["out"], "w")  # noqa: SIM115 - written after the privilege drop
    kept = os.open(os.devnull, os.O_RDONLY)
    dropped = os.open(os.devnull, os.O_RDONLY)
    report: dict[str, object] = {"parent_pid": os.getpid()}
    try:
        if CONF.get("daemonize"):
            daemonize(keep_fds=[kept, out], keep_std=CONF.get("keep_std", False))
        if CONF.get("first_drop"):
            drop_privileges(**CONF["first_drop"])
        if "drop" in CONF:
            drop_privileges(**CONF["drop"])
    except SupervisorError as err:
        report["error"] = str(err)
    umask = os.umask(0)
    os.umask(umask)
    report.update(
        pid=os.getpid(), ppid=os.getppid(), sid=os.getsid(0), pgid=os.getpgid(0),
        cwd=os.getcwd(), std=[_fd_target(fd) for fd in (0, 1, 2)],
        kept_open=_fd_target(kept) is not None, dropped_open=_fd_target(dropped) is not None,
        daemonized=is_daemonized(), uid=os.getuid(), euid=os.geteuid(), gid=os.getgid(),
        egid=os.getegid(), groups=sorted(os.getgroups()), umask=umask,
    )
    with out:
        json.dump(report, out)
    if not CONF.get("daemonize"):
        return 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not os.path.exists(CONF["out"] + ".stop"):
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
