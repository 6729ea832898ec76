"""Talking to systemd: readiness notifications and socket activation.

Both halves are plain protocols over the environment and file descriptors,
so this module needs nothing but the standard library (no libsystemd, no
python-systemd) and works the same under systemd, under
``systemd-socket-activate`` and in tests that play systemd's part.

Notifications (``Type=notify`` and ``Type=notify-reload`` units)
    systemd puts the path of a datagram socket in ``NOTIFY_SOCKET``; the
    service sends it newline-separated ``NAME=value`` lines: ``READY=1``
    once it serves, ``RELOADING=1`` when a reload begins, ``STOPPING=1``,
    ``STATUS=`` free text for ``systemctl status``, ``WATCHDOG=1`` pings and
    ``MAINPID=`` when another process takes over as the main one.
    :class:`Notifier` sends them. Built from an environment without
    ``NOTIFY_SOCKET`` it is a no-op, so callers never need to ask whether
    they run under systemd.

Socket activation (``.socket`` units)
    systemd binds the listening sockets itself and passes them from fd 3
    on, with ``LISTEN_FDS`` (how many), ``LISTEN_PID`` (which process they
    are for) and ``LISTEN_FDNAMES`` (their ``FileDescriptorName=``).
    :func:`activated_sockets` turns them into :class:`socket.socket`
    objects.

The environment is cleaned after reading, by default: a master that forks
workers must keep the right to speak for the service to itself. A worker
that inherited ``NOTIFY_SOCKET`` could (through some library's sd_notify)
report ``READY=1`` before the service as a whole is ready, and one that
inherited ``LISTEN_FDS`` with a stale ``LISTEN_PID`` would at best ignore
it. The master keeps what it read in the :class:`Notifier` object; a
successor it starts itself can be given :meth:`Notifier.environment`.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from collections.abc import MutableMapping
from typing import NamedTuple

from brim.supervisor.errors import SupervisorError

#: The first fd systemd passes (after stdin, stdout and stderr).
LISTEN_FDS_START = 3

#: The name systemd reports for a passed fd that was given none.
UNKNOWN_FD_NAME = "unknown"

_NOTIFY_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_LISTEN_VARS = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

#: How long one notification may wait on a full receive queue. systemd reads
#: its notify socket promptly; a service must not hang because it did not.
_SEND_TIMEOUT = 1.0

_log = logging.getLogger("brim.supervisor")


class Notifier:
    """Sends state changes to systemd's notify socket (see ``sd_notify(3)``).

    Build it with :meth:`from_environment` in the main process, before it
    forks: with no ``NOTIFY_SOCKET`` every method does nothing. Sending never
    blocks for more than a second and never raises: the service matters
    more than its report, so the first failure is logged as a warning on
    *logger* and later ones silently dropped (until a send succeeds again).

    *address* is ``NOTIFY_SOCKET`` as systemd spells it: an absolute path,
    or ``@name`` for a socket in the abstract namespace. *watchdog_usec* is
    ``WATCHDOG_USEC`` when the watchdog is meant for this process.
    """

    def __init__(
        self,
        address: str | None,
        *,
        logger: logging.Logger | None = None,
        watchdog_usec: int | None = None,
    ) -> None:
        self._log = logger or _log
        self._address = address or None
        self._target: str | bytes | None = None
        if self._address is not None:
            if self._address.startswith("@"):
                # Linux's abstract namespace: a leading NUL instead of the "@".
                self._target = "\0" + self._address[1:]
            elif self._address.startswith("/"):
                self._target = self._address
            else:
                self._log.warning(
                    "NOTIFY_SOCKET=%r is neither a path nor @name; not notifying systemd",
                    self._address)
                self._address = None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        self._failing = False

    @classmethod
    def from_environment(
        cls,
        logger: logging.Logger | None = None,
        *,
        unset: bool = True,
        environ: MutableMapping[str, str] | None = None,
    ) -> Notifier:
        """The notifier systemd asked for in the environment (a no-op one if none).

        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is unset or is
        this process: systemd sets it for the main process, and a child
        that inherited it must not think the watchdog is its own.

        With *unset* (the default) the three variables are removed from
        *environ* (``os.environ`` by default), so processes forked or
        spawned later do not inherit them: only the process holding this
        notifier speaks for the service.
        """
        env = os.environ if environ is None else environ
        log = logger or _log
        address = env.get("NOTIFY_SOCKET") or None
        watchdog = _watchdog_usec(env, log)
        if unset:
            for name in _NOTIFY_VARS:
                env.pop(name, None)
        return cls(address, logger=logger, watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        """Whether notifications go anywhere (``NOTIFY_SOCKET`` was set and usable)."""
        return self._target is not None

    @property
    def address(self) -> str | None:
        """``NOTIFY_SOCKET`` as it was given, or None."""
        return self._address

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds within which systemd expects :meth:`watchdog`, or None if it does not.

        This is ``WatchdogSec=`` of the unit; ping at least twice per
        interval (every half of it, as systemd advises) so one late ping
        does not get the service killed.
        """
        return self._watchdog_usec / 1_000_000 if self._watchdog_usec else None

    def environment(self) -> dict[str, str]:
        """The variables to give a successor process that should notify in our place.

        For a new main process started by this one (a restart that hands
        the sockets over): after sending :meth:`mainpid` for it, it may
        build its own notifier from these. Empty when notifications are off.
        """
        if self._address is None:
            return {}
        env = {"NOTIFY_SOCKET": self._address}
        if self._watchdog_usec:
            env["WATCHDOG_USEC"] = str(self._watchdog_usec)
        return env

    @staticmethod
    def adopt_environment(values: object) -> None:
        """Put a predecessor's :meth:`environment` into ``os.environ`` (where unset).

        Only ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``, and only string values:
        *values* comes from a file (a status file beside the pid file) that
        someone else may have written, and a name such as ``LD_PRELOAD`` must
        never reach a root process's environment this way.
        """
        if not isinstance(values, dict):
            return
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC"):
            value = values.get(name)
            if isinstance(value, str):
                os.environ.setdefault(name, value)

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup (or a reload) is finished and the service serves."""
        return self.notify("READY=1", *_status_line(status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC``, as ``Type=notify-reload`` requires.

        systemd compares the timestamp with the moment it asked for the
        reload, so it knows this is the answer to it. Send :meth:`ready`
        when the reload is done.
        """
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now}", *_status_line(status))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: the service is shutting down (systemd stops waiting for READY)."""
        return self.notify("STOPPING=1", *_status_line(status))

    def status(self, text: str) -> bool:
        """``STATUS=text``: one line that ``systemctl status`` shows."""
        return self.notify(*_status_line(text))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping that ``WatchdogSec=`` expects."""
        return self.notify("WATCHDOG=1")

    def mainpid(self, pid: int) -> bool:
        """``MAINPID=pid``: another process now is the service's main process."""
        if not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"MAINPID must be a positive process id, not {pid!r}")
        return self.notify(f"MAINPID={pid}")

    def notify(self, *lines: str) -> bool:
        """Send *lines* (``NAME=value`` each) as one datagram.

        Returns whether it was sent; False when notifications are off or the
        send failed. Never raises for a failed send.
        """
        if self._target is None or not lines:
            return False
        for line in lines:
            if "\n" in line or "=" not in line:
                raise ValueError(f"not a NAME=value notification line: {line!r}")
        data = "\n".join(lines).encode()
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.settimeout(_SEND_TIMEOUT)
                self._sock = sock
            self._sock.sendto(data, self._target)
        except OSError as err:
            if not self._failing:
                self._failing = True
                self._log.warning("cannot notify systemd at %s: %s (further failures "
                                  "are not logged)", self._address, err.strerror or err)
            return False
        self._failing = False
        return True

    def close(self) -> None:
        """Close the socket notifications go through (a later send opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self) -> str:
        where = self._address or "off"
        return f"<brim.supervisor.Notifier {where}>"


def _status_line(text: str | None) -> list[str]:
    """``["STATUS=text"]`` with line breaks flattened, since a break ends a field."""
    if text is None:
        return []
    return ["STATUS=" + " ".join(str(text).splitlines())]


def _watchdog_usec(env: MutableMapping[str, str], log: logging.Logger) -> int | None:
    text = env.get("WATCHDOG_USEC")
    if not text:
        return None
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != os.getpid():
                return None  # meant for the process we inherited it from
        except ValueError:
            log.warning("WATCHDOG_PID=%r is not a process id; ignoring the watchdog", owner)
            return None
    try:
        usec = int(text)
    except ValueError:
        usec = 0
    if usec <= 0:
        log.warning("WATCHDOG_USEC=%r is not a positive number of microseconds; "
                    "ignoring the watchdog", text)
        return None
    return usec


class ActivatedSocket(NamedTuple):
    """One socket systemd passed: its ``FileDescriptorName=`` and the socket."""

    name: str
    sock: socket.socket


def activated_sockets(
    *,
    unset: bool = True,
    environ: MutableMapping[str, str] | None = None,
) -> list[ActivatedSocket]:
    """The sockets systemd passed to this process, in the order it passed them.

    Empty when the process was not socket-activated: no ``LISTEN_FDS``, no
    ``LISTEN_PID``, or a ``LISTEN_PID`` that is another process (the
    variables were inherited, the fds are not ours to take). Each fd from 3
    on becomes a :class:`socket.socket` whose family, type and protocol are
    read from the fd itself, named from ``LISTEN_FDNAMES`` (``"unknown"``
    without it, as systemd does). Each is made blocking, like a socket a
    program binds itself whatever ``NonBlocking=`` said, and not
    inheritable, so a program the service runs later does not keep the
    listener open (forked workers still share it).

    With *unset* (the default) the ``LISTEN_*`` variables are removed from
    *environ* (``os.environ`` by default) whatever the outcome, so nothing
    started later mistakes them for its own.

    Raises :class:`SupervisorError` naming the variable or fd at fault for
    values systemd would never set: a count or pid that is not a number,
    names that do not match the count, an fd that is closed or no socket.
    """
    env = os.environ if environ is None else environ
    try:
        return _take_sockets(env)
    finally:
        if unset:
            for name in _LISTEN_VARS:
                env.pop(name, None)


def _take_sockets(env: MutableMapping[str, str]) -> list[ActivatedSocket]:
    count_text, pid_text = env.get("LISTEN_FDS"), env.get("LISTEN_PID")
    if count_text is None or pid_text is None:
        return []
    try:
        pid = int(pid_text)
    except ValueError:
        raise SupervisorError(
            f"socket activation: LISTEN_PID={pid_text!r} is not a process id") from None
    if pid <= 0:
        raise SupervisorError(f"socket activation: LISTEN_PID={pid_text!r} is not a process id")
    if pid != os.getpid():
        return []
    try:
        count = int(count_text)
    except ValueError:
        count = -1
    if count < 0:
        raise SupervisorError(
            f"socket activation: LISTEN_FDS={count_text!r} is not a count of sockets")
    if count == 0:
        return []
    names_text = env.get("LISTEN_FDNAMES")
    if names_text is None:
        names = [UNKNOWN_FD_NAME] * count
    else:
        names = names_text.split(":")
        if len(names) != count:
            raise SupervisorError(
                f"socket activation: LISTEN_FDNAMES={names_text!r} names {len(names)} "
                f"fd(s) but LISTEN_FDS={count}")
    fds = range(LISTEN_FDS_START, LISTEN_FDS_START + count)
    # Check every fd before wrapping any, so an error leaves them all untouched.
    for fd, name in zip(fds, names, strict=True):
        try:
            mode = os.fstat(fd).st_mode
        except OSError as err:
            raise SupervisorError(
                f"socket activation: fd {fd} ({name!r}) from LISTEN_FDS={count} is not "
                f"open ({err.strerror})") from None
        if not stat.S_ISSOCK(mode):
            raise SupervisorError(
                f"socket activation: fd {fd} ({name!r}) is not a socket; only sockets "
                "can be served (not ListenFIFO= or other fds)")
    passed = []
    for fd, name in zip(fds, names, strict=True):
        sock = socket.socket(fileno=fd)
        sock.setblocking(True)
        sock.set_inheritable(False)
        passed.append(ActivatedSocket(name, sock))
    return passed


def describe_socket(sock: socket.socket) -> str:
    """``tcp 127.0.0.1:8080``, ``udp [::]:53`` or ``unix /run/x.sock``, for messages."""
    kind = {socket.SOCK_STREAM: "tcp", socket.SOCK_DGRAM: "udp"}.get(sock.type, "socket")
    try:
        addr = sock.getsockname()
    except OSError:
        addr = None
    if sock.family == socket.AF_UNIX:
        kind = {"tcp": "unix stream", "udp": "unix datagram"}.get(kind, "unix")
        if isinstance(addr, bytes):
            addr = "@" + addr[1:].decode(errors="replace") if addr[:1] == b"\0" else addr.decode()
        return f"{kind} {addr or '(unnamed)'}"
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
        return f"{kind} {host}:{addr[1]}"
    return f"{kind} fd {sock.fileno()}"


__all__ = [
    "LISTEN_FDS_START",
    "UNKNOWN_FD_NAME",
    "ActivatedSocket",
    "Notifier",
    "activated_sockets",
    "describe_socket",
]
