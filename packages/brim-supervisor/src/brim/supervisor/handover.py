"""Passing listening sockets from a running master to its successor.

Why: a zero-downtime restart needs the *same* listening sockets in the new
master, not new ones bound after the old are closed (that leaves a moment
with no listener, and connections queued on the old socket are reset).

The mechanism is SCM_RIGHTS over a unix stream socket:

* The running master serves a unix socket at a path it is given
  (``Supervisor(handover_path=...)``, created mode 0600). Anyone who connects
  — and whose peer uid is root or the master's own uid — is sent every
  registered listening socket, each under its name, and the connection is
  closed. The master keeps its own copies and goes on serving.
* The new master calls :func:`fetch_sockets` with that path and gets a
  ``{name: socket}`` dict. Names are chosen by the caller; something like
  ``"tcp 127.0.0.1:8080"`` lets the new master look up the address it is
  configured for and bind anew only for addresses it did not receive.
* The new master serves the same path (``handover_replace=True`` renames
  its own socket over the old one) and starts its workers, then asks the
  old one to shut down gracefully (SIGQUIT): the old workers finish their connections while the
  new ones already accept. Connections waiting in the listen backlog belong
  to the shared socket and are not lost.

Wire format of one hand-over: a 4-byte big-endian length, then that many
bytes of UTF-8 JSON ``{"names": [...]}``; the fds travel as ancillary data
with the first bytes, in the same order as the names.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
from collections.abc import Mapping

from brim.supervisor.errors import SupervisorError

#: The kernel refuses more than 253 fds in one SCM_RIGHTS message.
MAX_SOCKETS = 250

_HEADER = struct.Struct("!I")


def send_sockets(conn: socket.socket, sockets: Mapping[str, socket.socket]) -> None:
    """Send *sockets* (name to socket) over the connected unix socket *conn*."""
    if len(sockets) > MAX_SOCKETS:
        raise SupervisorError(f"cannot hand over {len(sockets)} sockets: at most {MAX_SOCKETS}")
    names = list(sockets)
    body = json.dumps({"names": names}).encode()
    payload = _HEADER.pack(len(body)) + body
    fds = [sockets[n].fileno() for n in names]
    sent = socket.send_fds(conn, [payload], fds)
    if sent < len(payload):
        conn.sendall(payload[sent:])


def recv_sockets(conn: socket.socket) -> dict[str, socket.socket]:
    """Receive what :func:`send_sockets` sent: a ``{name: socket}`` dict."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, MAX_SOCKETS + 3)
    try:
        while len(data) < _HEADER.size:
            more = conn.recv(65536)
            if not more:
                raise SupervisorError("socket hand-over: connection closed before the header")
            data += more
        (length,) = _HEADER.unpack_from(data)
        while len(data) < _HEADER.size + length:
            more = conn.recv(65536)
            if not more:
                raise SupervisorError("socket hand-over: connection closed mid-message")
            data += more
        names = json.loads(data[_HEADER.size : _HEADER.size + length])["names"]
        if len(names) != len(fds):
            raise SupervisorError(
                f"socket hand-over: {len(names)} names but {len(fds)} descriptors received"
            )
    except (ValueError, KeyError, TypeError) as err:
        for fd in fds:
            os.close(fd)
        raise SupervisorError(f"socket hand-over: malformed message ({err})") from None
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return {name: socket.socket(fileno=fd) for name, fd in zip(names, fds, strict=True)}


def fetch_sockets(path: str | os.PathLike[str], timeout: float = 5.0) -> dict[str, socket.socket]:
    """Connect to a master's hand-over socket at *path* and take its sockets.

    Raises :class:`SupervisorError` when nothing listens there (no running
    master to take over from) or the exchange fails.
    """
    path = os.fspath(path)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        try:
            conn.connect(path)
            return recv_sockets(conn)
        except TimeoutError:
            raise SupervisorError(
                f"cannot fetch sockets from {path}: no answer in {timeout:g}s"
            ) from None
        except OSError as err:
            raise SupervisorError(
                f"cannot fetch sockets from {path}: {(err.strerror or str(err)).lower()}"
            ) from None
    finally:
        conn.close()


def serve_handover(path: str | os.PathLike[str], replace: bool = False) -> socket.socket:
    """A listening unix socket at *path* (mode 0600) for :func:`answer_handover`.

    A leftover socket file at *path* (from a master that died) is replaced.
    A live one (a master answers there) is refused, unless *replace* is true:
    that is the successor's case, which binds beside it and renames its own
    socket over the path, so the path always answers. Use
    :func:`release_handover` to remove the file only while it is still ours.
    """
    path = os.fspath(path)
    live = False
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
            live = True
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(path)
        finally:
            probe.close()
    if live and not replace:
        raise SupervisorError(f"cannot serve socket hand-over at {path}: already in use")
    bind_path = f"{path}.{os.getpid()}.new" if live else path
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The mode comes from the umask at bind(): a chmod by path afterwards
    # could be sent through a link planted there in between.
    old_umask = os.umask(0o177)
    try:
        with contextlib.suppress(FileNotFoundError):
            if live:
                os.unlink(bind_path)
        server.bind(bind_path)
        if live:
            os.replace(bind_path, path)
    except OSError as err:
        server.close()
        raise SupervisorError(
            f"cannot serve socket hand-over at {path}: {(err.strerror or str(err)).lower()}"
        ) from None
    finally:
        os.umask(old_umask)
    server.listen(8)
    return server


def release_handover(server: socket.socket, path: str | os.PathLike[str], inode: int) -> None:
    """Close *server* and remove *path* if it is still the socket we bound (*inode*).

    Why the check: after a hand-over the successor's socket sits at the same
    path, and the old master must not delete it on its way out.
    """
    server.close()
    path = os.fspath(path)
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass


def _peer_uid(conn: socket.socket) -> int | None:
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return None
    creds = conn.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def answer_handover(server: socket.socket, sockets: Mapping[str, socket.socket]) -> bool:
    """Accept one waiting connection on *server* and send it *sockets*.

    Only root or this process's own uid is served (checked with SO_PEERCRED
    where the platform has it). Returns whether sockets were sent.
    """
    try:
        conn, _ = server.accept()
    except (BlockingIOError, InterruptedError):
        return False
    with conn:
        conn.settimeout(5.0)
        uid = _peer_uid(conn)
        if uid is not None and uid not in (0, os.geteuid()):
            return False
        try:
            send_sockets(conn, sockets)
        except OSError:
            return False
    return True


class HandoverPoint:
    """A master's end of the hand-over: the unix socket at *path*, served and answered.

    One object for the socket's life in the master: :meth:`serve` binds it
    (or :meth:`adopt` takes one this process bound before it re-executed
    itself), :meth:`answer` serves one waiting successor, :meth:`close`
    removes the file only while it is still ours, and :meth:`close_in_child`
    lets a forked worker drop its copy without touching the file.
    """

    def __init__(self, path: str, replace: bool = False) -> None:
        self.path = path
        self.replace = replace
        self.sock: socket.socket | None = None
        self._inode = 0

    def serve(self) -> None:
        if self.sock is None:
            self.adopt(serve_handover(self.path, self.replace))

    def adopt(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._inode = os.stat(self.path).st_ino

    def answer(self, sockets: Mapping[str, socket.socket]) -> bool:
        """Serve one waiting connection, if any; whether sockets were sent."""
        return self.sock is not None and answer_handover(self.sock, sockets)

    def close(self) -> None:
        if self.sock is not None:
            release_handover(self.sock, self.path, self._inode)
            self.sock = None

    def close_in_child(self) -> None:
        if self.sock is not None:
            self.sock.close()  # our fd only; the socket file stays the master's
            self.sock = None
