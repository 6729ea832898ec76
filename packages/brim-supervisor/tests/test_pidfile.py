"""Pid files: atomic writes, stale detection, LSB status, and a real start."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest
from supervisor_testlib import wait_for

from brim.supervisor import (
    STATUS_DEAD_PIDFILE_EXISTS,
    STATUS_NOT_RUNNING,
    STATUS_RUNNING,
    PidFile,
    SupervisorError,
    status,
)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


def test_write_read_and_running(tmp_path):
    pf = PidFile(tmp_path / "x.pid")
    assert pf.read() is None and not pf.is_running()
    assert status(pf.path) == STATUS_NOT_RUNNING
    pf.write()
    assert pf.read() == os.getpid()
    assert pf.is_running()
    assert status(pf.path) == STATUS_RUNNING
    # First line is the bare pid, as other tools expect; no temp file is left.
    assert (tmp_path / "x.pid").read_text().splitlines()[0] == str(os.getpid())
    assert os.listdir(tmp_path) == ["x.pid"]


def test_dead_process_is_stale(tmp_path):
    path = tmp_path / "x.pid"
    path.write_text(f"{_dead_pid()}\n")
    assert not PidFile(path).is_running()
    assert status(path) == STATUS_DEAD_PIDFILE_EXISTS


def test_reused_pid_is_recognised_by_start_time(tmp_path):
    # A pid file naming a live process (this one) but with another start time:
    # the pid was reused by a process that is not the one that wrote the file.
    path = tmp_path / "x.pid"
    path.write_text(f"{os.getpid()}\n1\n")
    assert not PidFile(path).is_running()
    assert status(path) == STATUS_DEAD_PIDFILE_EXISTS


def test_reused_pid_is_recognised_by_name_without_start_time(tmp_path):
    # A Python child, not this process: a test runner may retitle its own
    # processes (pytest-xdist does), and then "python" is not in our cmdline.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # Popen can return while the kernel is still laying out the new
        # program's arguments; /proc shows an empty command line until then.
        wait_for(lambda: pathlib.Path(f"/proc/{child.pid}/cmdline").read_bytes(), 5,
                 "the child's command line")
        path = tmp_path / "x.pid"
        path.write_text(f"{child.pid}\n")
        assert PidFile(path).is_running()
        assert PidFile(path, name="python").is_running()
        assert not PidFile(path, name="surely-not-this-program").is_running()
    finally:
        child.kill()
        child.wait(timeout=10)


def test_garbage_is_stale(tmp_path):
    path = tmp_path / "x.pid"
    path.write_text("not a pid\n")
    assert PidFile(path).read() is None
    assert status(path) == STATUS_DEAD_PIDFILE_EXISTS


def test_remove_only_removes_our_own_file(tmp_path):
    pf = PidFile(tmp_path / "x.pid")
    pf.write(1)
    assert not pf.remove()  # names pid 1, not us: a successor's file
    assert pf.exists()
    assert pf.remove(force=True)
    pf.write()
    assert pf.remove()
    assert not pf.exists()
    assert not pf.remove()


def test_remove_stale_removes_only_a_stale_file(tmp_path):
    pf = PidFile(tmp_path / "x.pid")
    assert pf.remove_stale() is False  # no file
    pf.write()  # names this live process
    assert pf.remove_stale() is False and pf.exists()
    (tmp_path / "x.pid").write_text(f"{_dead_pid()}\n")
    assert pf.remove_stale() is True and not pf.exists()


def test_unwritable_directory_is_a_clear_error(tmp_path):
    with pytest.raises(SupervisorError, match=r"cannot write pid file .*no-such-dir"):
        PidFile(tmp_path / "no-such-dir" / "x.pid").write()


@pytest.mark.parametrize("stale", ["dead", "reused"])
def test_stale_pid_file_does_not_block_a_start(run_prog, tmp_path, stale):
    path = tmp_path / "sup.pid"
    if stale == "dead":
        path.write_text(f"{_dead_pid()}\n")
    else:
        path.write_text(f"{os.getpid()}\n1\n")
    run = run_prog(groups={"w": 2}, pidfile=str(path))
    run.wait_workers(2)
    wait_for(lambda: PidFile(path).read() == run.master_pid, 5.0, "pid file rewritten")
    assert status(path) == STATUS_RUNNING
    # A second start sees the live one and refuses.
    second = subprocess.run(
        [sys.executable, run.proc.args[1],
         run.proc.args[2].replace(str(run.events_path), str(tmp_path / "e2.jsonl"))],
        timeout=20,
    )
    assert second.returncode == 2
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=5) == 0
    assert status(path) == STATUS_NOT_RUNNING
