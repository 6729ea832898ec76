"""brim.supervisor.files: what a root process refuses to open, and what it replaces."""

from __future__ import annotations

import os
import stat

import pytest

from brim.supervisor.files import (
    UnsafeFileError,
    check_regular,
    open_regular,
    open_replacing,
    replace_file,
)
from brim.supervisor.pidfile import PidFile

APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "target"
    path.write_bytes(b"keep me\n")
    os.chmod(path, 0o600)
    return path


def _kept(path) -> None:
    assert path.read_bytes() == b"keep me\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("kind", ["symlink", "dangling symlink", "hard link", "fifo"])
def test_open_regular_refuses_what_is_not_a_plain_file(tmp_path, target, kind):
    path = tmp_path / "log"
    if kind == "symlink":
        path.symlink_to(target)
    elif kind == "dangling symlink":
        path.symlink_to(tmp_path / "nothing-yet")
    elif kind == "hard link":
        os.link(target, path)
    else:
        os.mkfifo(path)  # no reader: a plain open would block for ever
    with pytest.raises(UnsafeFileError) as info:
        open_regular(str(path), APPEND)
    assert info.value.filename == str(path)
    with pytest.raises(UnsafeFileError):
        check_regular(str(path))
    _kept(target)
    assert not (tmp_path / "nothing-yet").exists()


def test_open_regular_opens_and_creates_plain_files(tmp_path):
    path = tmp_path / "new.log"
    check_regular(str(path))  # missing is fine
    fd = open_regular(str(path), APPEND, 0o640)
    try:
        assert os.get_blocking(fd) and os.get_inheritable(fd) is False
        os.write(fd, b"one\n")
    finally:
        os.close(fd)
    assert path.read_bytes() == b"one\n"
    assert stat.S_IMODE(path.stat().st_mode) & 0o777 <= 0o640


def test_replace_file_and_open_replacing_replace_a_link(tmp_path, target):
    path = tmp_path / "state"
    path.symlink_to(target)
    replace_file(str(path), b"new\n", 0o644)
    assert not path.is_symlink() and path.read_bytes() == b"new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state", "target"]
    path.unlink()
    path.symlink_to(target)
    fd = open_replacing(str(path))
    os.close(fd)
    assert not path.is_symlink() and path.read_bytes() == b""
    path.write_bytes(b"kept\n")
    os.close(open_replacing(str(path)))  # a plain file is opened as it is
    assert path.read_bytes() == b"kept\n"
    _kept(target)


def test_pid_file_kept_open_over_a_link_rewrites_its_own_file(tmp_path, target):
    path = tmp_path / "app.pid"
    path.symlink_to(target)
    pidfile = PidFile(path)
    pidfile.keep_open()
    try:
        pidfile.write(os.getpid())
    finally:
        pidfile.close()
    assert not path.is_symlink()
    assert pidfile.read() == os.getpid()
    _kept(target)
