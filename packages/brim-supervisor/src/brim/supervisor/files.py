"""Opening and writing files safely in a process that runs as root.

Why: a daemon started as root writes its log, pid and state files in
directories other users may be able to write to (a log directory handed to
the service user, say). If such a user plants a symbolic link where one of
those files should be, a plain ``open(path, O_CREAT)`` follows it, and root
appends to, truncates or hands over (``fchown``) whatever the link points
at (/etc/shadow): a privilege escalation. So every such file goes through here:

* :func:`open_regular` opens without following a symbolic link at the end of
  the path (``O_NOFOLLOW``), without blocking on a FIFO or taking a terminal,
  and refuses anything that is not a regular file with exactly one link (a
  hard link to another user's file is as bad as a symbolic one). The caller
  then works on the descriptor it got (``fchown``, ``fstat``), never on the
  path again.
* :func:`replace_file` writes a whole file atomically: a new file in the same
  directory, then ``rename`` over the path. A symbolic link there is replaced,
  not written through.
* :func:`open_replacing` opens a file to rewrite in place later; what stands
  at the path that :func:`open_regular` refuses is replaced by a new empty file.

Only the last component of the path is protected: the directories above it
are the administrator's to choose, as for any daemon.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile

__all__ = ["UnsafeFileError", "check_regular", "open_regular", "open_replacing", "replace_file"]


class UnsafeFileError(OSError):
    """What stands at the path is not a plain file this process may write to."""


def open_regular(path: str, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags, mode)``, for a regular file reached without a symbolic link.

    ``O_NOFOLLOW``, ``O_CLOEXEC`` and ``O_NOCTTY`` are added to *flags*. Raises
    :class:`UnsafeFileError` (an OSError naming the path) for a symbolic
    link, anything but a regular file, or a file with more than one hard
    link; other OSErrors (no permission, no directory) as ``os.open`` does.
    The descriptor returned is blocking, as a plain open's would be.
    """
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, mode)
    except OSError as err:
        if os.path.islink(path):  # ELOOP (Linux), EMLINK (FreeBSD), EFTYPE (NetBSD)
            raise UnsafeFileError(err.errno, "is a symbolic link; not followed",
                                  path) from None
        if err.errno == errno.ENXIO:  # a FIFO (or socket) nobody reads
            raise UnsafeFileError(err.errno, "is not a regular file", path) from None
        raise
    try:
        _refuse_unsafe(os.fstat(fd), path)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_regular(path: str) -> None:
    """Raise :class:`UnsafeFileError` if what stands at *path* is not a plain file.

    Nothing when the path does not exist yet; IsADirectoryError for a
    directory, which no open could write to either. For a clear error early (when
    a conf is read), before anything opens the file: the opens themselves
    must still go through :func:`open_regular`, as the path may change.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeFileError(0, "is a symbolic link; not followed", path)
    _refuse_unsafe(info, path)


def _refuse_unsafe(info: os.stat_result, path: str) -> None:
    if stat.S_ISDIR(info.st_mode):  # not unsafe, just not writable: as os.open says
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeFileError(0, "is not a regular file", path)
    if info.st_nlink > 1:
        raise UnsafeFileError(0, f"has {info.st_nlink} hard links; refused", path)


def replace_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write *data* as the whole file at *path*, atomically, replacing whatever is there.

    A reader sees the old file or the whole new one. The new file is made
    with ``mkstemp`` (never an existing file) beside *path*, given *mode*
    through its descriptor, synced, and renamed over *path*: a symbolic link
    at *path* is replaced, its target left alone. Needs write permission on
    the directory. OSError on failure, with nothing left behind.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=directory)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_replacing(path: str, mode: int = 0o644) -> int:
    """A write descriptor on a regular file at *path*, its content kept if it is one.

    For a file the caller rewrites in place through the descriptor (after
    a privilege drop, when it can no longer create files beside it). A
    symbolic link, FIFO or hard link at *path* is first replaced by an empty
    file (see :func:`replace_file`); if what stands there still is not a
    plain file then (someone races us), :class:`UnsafeFileError`.
    """
    try:
        return open_regular(path, os.O_WRONLY | os.O_CREAT, mode)
    except UnsafeFileError:
        replace_file(path, b"", mode)
    return open_regular(path, os.O_WRONLY | os.O_CREAT, mode)
