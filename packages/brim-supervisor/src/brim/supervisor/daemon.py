"""Turning the current process into a daemon, and dropping root privileges.

Both are meant to be called once, early, by a launcher: bind the privileged
ports as root, :func:`daemonize`, write the pid file, :func:`drop_privileges`,
then start the :class:`~brim.supervisor.Supervisor`.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from collections.abc import Iterable
from typing import Any

from brim.supervisor.errors import SupervisorError

_daemonized = False


def is_daemonized() -> bool:
    """Whether :func:`daemonize` has run in this process (or an ancestor fork)."""
    return _daemonized


def mark_daemonized() -> None:
    """Say this process was daemonized: one that re-executed itself (``execv``)
    after :func:`daemonize` is still detached, but its new image forgot."""
    global _daemonized
    _daemonized = True


def _fd_of(obj: Any) -> int:
    return obj if isinstance(obj, int) else obj.fileno()


def daemonize(keep_fds: Iterable[Any] | None = None, keep_std: bool = False) -> None:
    """Detach from the terminal and the caller: double fork, setsid, chdir /.

    The calling process exits (status 0) in both forks; only the grandchild
    returns from this call, as a session-less process that cannot reacquire a
    controlling terminal.

    * stdin, stdout and stderr (fds 0-2) are pointed at /dev/null unless
      *keep_std* is true (useful to see early output while debugging).
    * *keep_fds*: None (the default) leaves every other open fd alone. An
      iterable of fds or objects with ``fileno()`` means "keep exactly these":
      every other fd above 2 is closed. Pass the listening sockets and any log
      file or syslog socket you still need.
    * The umask is left as it is; set it with :func:`drop_privileges`.
    """
    global _daemonized
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    try:
        pid = os.fork()
    except OSError as err:
        raise SupervisorError(f"cannot daemonize: fork failed: {err.strerror}") from None
    if pid:
        # Reap the intermediate child so the caller leaves no zombie, then go.
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        os._exit(0)
    os.setsid()
    try:
        pid = os.fork()
    except OSError:
        os._exit(1)
    if pid:
        os._exit(0)
    os.chdir("/")
    if keep_fds is not None:
        keep = sorted({_fd_of(f) for f in keep_fds if _fd_of(f) > 2})
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, _max_fd())
    if not keep_std:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if null > 2:
            os.close(null)
    _daemonized = True


def _max_fd() -> int:
    try:
        return os.sysconf("SC_OPEN_MAX")
    except (ValueError, OSError):
        return 4096


def parse_umask(value: int | str) -> int:
    """An umask from an int or an octal string such as ``"022"`` or ``"0o027"``."""
    if isinstance(value, int):
        mask = value
    else:
        text = str(value).strip().lower().removeprefix("0o")
        try:
            mask = int(text, 8)
        except ValueError:
            raise SupervisorError(f"invalid umask {value!r}: expected octal like 022") from None
    if not 0 <= mask <= 0o777:
        raise SupervisorError(f"invalid umask {value!r}: must be between 000 and 777")
    return mask


def _lookup_user(user: str | int) -> pwd.struct_passwd:
    try:
        if isinstance(user, int) or str(user).isdigit():
            return pwd.getpwuid(int(user))
        return pwd.getpwnam(str(user))
    except KeyError:
        raise SupervisorError(f"cannot switch to user {user!r}: no such user") from None


def _lookup_group(group: str | int) -> int:
    try:
        if isinstance(group, int) or str(group).isdigit():
            return grp.getgrgid(int(group)).gr_gid
        return grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise SupervisorError(f"cannot switch to group {group!r}: no such group") from None


def user_ids(user: str | int | None = None,
             group: str | int | None = None) -> tuple[int | None, int | None]:
    """The uid and gid that :func:`drop_privileges` would switch to (None: unchanged).

    For files the master creates before it drops privileges (log files, say)
    and must hand to the user its workers will run as.
    """
    pw = _lookup_user(user) if user is not None else None
    gid = _lookup_group(group) if group is not None else (pw.pw_gid if pw else None)
    return (pw.pw_uid if pw else None), gid


def drop_privileges(
    user: str | int | None = None,
    group: str | int | None = None,
    umask: int | str | None = None,
) -> None:
    """Run from now on as *user* / *group*, with *umask*; None leaves each as is.

    With a *user*, the group defaults to the user's primary group and the
    supplementary groups are set from the group database (``os.initgroups``);
    with only a *group*, the supplementary groups become just that group.
    Switching needs root: a non-root caller asking for a different user or
    group gets a :class:`SupervisorError`, as does an unknown user or group.
    Asking for the identity the process already has is a no-op.
    """
    mask = parse_umask(umask) if umask is not None else None
    pw = _lookup_user(user) if user is not None else None
    gid = _lookup_group(group) if group is not None else (pw.pw_gid if pw else None)
    uid = pw.pw_uid if pw else None
    same_user = uid is None or uid == os.geteuid() == os.getuid()
    same_group = gid is None or gid == os.getegid() == os.getgid()
    if mask is not None:
        os.umask(mask)
    if same_user and same_group:
        return
    if os.geteuid() != 0:
        who = f"user {user!r}" if not same_user else f"group {group!r}"
        raise SupervisorError(f"cannot switch to {who}: not running as root")
    try:
        if gid is not None:
            if pw is not None:
                os.initgroups(pw.pw_name, gid)
            else:
                os.setgroups([gid])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
    except OSError as err:
        raise SupervisorError(
            f"cannot switch to user {user!r} group {group!r}: {err.strerror or err}"
        ) from None
