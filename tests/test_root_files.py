"""Files brimd opens as root never follow a link a less privileged user planted (issue 19).

The attack: whoever may write the directory of brimd's log file, pid file or
status file (the service user, ``nobody`` here) replaces the file with a
symbolic link to a root-owned 0600 file. brimd, started as root, must not
append to it, truncate it or hand it over (fchown): the target keeps its
owner, mode and contents. A log file is refused with a clear error; the pid
and status files, written atomically or opened by brimd itself, replace the
link. Each test then checks brimd serves (and with the same worker).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
from pathlib import Path

import pytest
from brimd_harness import curl, echo_stats_conf, free_port, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the attack needs brimd run as root")

HERE = Path(__file__).resolve().parent
SECRET = b"root:only:this\n"


def _secret(path: Path) -> Path:
    """A root-owned 0600 file, what the links point at."""
    path.write_bytes(SECRET)
    os.chmod(path, 0o600)
    os.chown(path, 0, 0)
    return path


def _untouched(path: Path) -> None:
    info = os.lstat(path)
    assert stat.S_ISREG(info.st_mode)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (0, 0, 0o600)
    assert path.read_bytes() == SECRET


def _nobody_dir(path: Path) -> Path:
    """A directory the service user may write to (and plant links in)."""
    path.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return path


def _echo(port: int, body: str) -> bytes:
    return curl("-s", "-D", "-", f"http://127.0.0.1:{port}/echo", "-d", body).stdout


def _worker_pid(brimd) -> int:
    return wait_for(lambda: sorted(brimd.workers("wsgi").values()), what="the worker")[0]


@pytest.mark.slow
def test_log_file_link_is_refused_with_a_clear_error(brimd, tmp_path):
    secret = _secret(tmp_path / "secret")
    logs = _nobody_dir(tmp_path / "logs")
    (logs / "brim.log").symlink_to(secret)
    port = free_port()
    brimd.use(echo_stats_conf(workers=1),
              brimd.local(port=port, user="nobody", log_sink="file",
                          log_file=logs / "brim.log"))
    done = brimd.run("start")
    assert done.returncode != 0
    assert f"] log_file: {logs / 'brim.log'} is a symbolic link; not followed" in done.stderr
    _untouched(secret)
    assert curl("-s", f"http://127.0.0.1:{port}/echo", "-d", "x").returncode != 0
    # With the link gone, the same conf starts, and the file is the user's.
    (logs / "brim.log").unlink()
    brimd.start()
    worker = _worker_pid(brimd)
    assert _echo(port, "y").endswith(b"y")
    assert (logs / "brim.log").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    # Planted again while brimd runs: a reload is refused and the workers serve
    # on. A reload re-executes the master, which runs as nobody now: where nobody
    # may run this Python, its check refuses the link, naming the file; where it
    # may not (the suite's environment under /root), the reload is refused for
    # that, saying so. Either way nothing is written through the link.
    (logs / "brim.log").unlink()
    (logs / "brim.log").symlink_to(secret)
    done = brimd.run("reload")
    assert done.returncode != 0
    assert (f"log_file: {logs / 'brim.log'} is a symbolic link" in done.stderr
            or "must be able to run this Python" in done.stderr), done.stderr
    assert _echo(port, "z").endswith(b"z")
    assert _worker_pid(brimd) == worker
    _untouched(secret)


@pytest.mark.slow
def test_log_file_link_planted_before_a_reload_is_refused_by_its_check(brimd, tmp_path):
    """A master that keeps root (no user): the reload's check reads the conf and
    refuses the planted link, naming it; the workers serve on, the target is
    untouched."""
    secret = _secret(tmp_path / "secret")
    logs = _nobody_dir(tmp_path / "logs")
    port = free_port()
    brimd.use(echo_stats_conf(workers=1),
              brimd.local(port=port, log_sink="file", log_file=logs / "brim.log"))
    brimd.start()
    worker = _worker_pid(brimd)
    (logs / "brim.log").unlink()
    (logs / "brim.log").symlink_to(secret)
    done = brimd.run("reload")
    assert done.returncode != 0
    assert f"log_file: {logs / 'brim.log'} is a symbolic link" in done.stderr, done.stderr
    assert _echo(port, "z").endswith(b"z")
    assert _worker_pid(brimd) == worker
    _untouched(secret)


def test_log_file_replaced_by_a_link_before_a_reopen_is_not_followed(brimd, tmp_path):
    """brimd running as root throughout (no user): a logrotate-time swap of the file
    for a link, then SIGUSR1. Master and worker keep writing where they were."""
    secret = _secret(tmp_path / "secret")
    logs = _nobody_dir(tmp_path / "logs")
    log = logs / "brim.log"
    port = free_port()
    brimd.use(echo_stats_conf(workers=1),
              brimd.local(port=port, log_sink="file", log_file=log))
    master = brimd.start()
    worker = _worker_pid(brimd)
    assert _echo(port, "a").endswith(b"a")
    log.rename(logs / "brim.log.1")
    log.symlink_to(secret)
    os.kill(master, signal.SIGUSR1)
    wait_for(lambda: "reopening log files" in (logs / "brim.log.1").read_text(),
             what="the master's reopen line")
    assert _echo(port, "after-reopen").endswith(b"after-reopen")
    wait_for(lambda: "POST /echo 200 12" in (logs / "brim.log.1").read_text(),
             what="the request line, in the file brimd had")
    _untouched(secret)
    assert _worker_pid(brimd) == worker
    assert _echo(port, "b").endswith(b"b")


@pytest.mark.slow
def test_pid_and_status_file_links_are_replaced_not_written_through(brimd, tmp_path):
    secret = _secret(tmp_path / "secret")
    other = _secret(tmp_path / "other")
    brimd.pid_file.symlink_to(secret)
    status = Path(f"{brimd.pid_file}.status")
    status.symlink_to(other)
    port = free_port()
    brimd.use(echo_stats_conf(workers=1), brimd.local(port=port, user="nobody"))
    master = brimd.start()
    for path in (brimd.pid_file, status):
        assert not path.is_symlink() and path.stat().st_uid == 0
    assert brimd.pid_file.read_text().split()[0] == str(master)
    assert f'"pid": {master}' in status.read_text()
    _untouched(secret)
    _untouched(other)
    worker = _worker_pid(brimd)
    assert _echo(port, "x").endswith(b"x")
    done = brimd.run("status")
    assert done.returncode == 0 and "1 up" in done.stdout, done.stdout
    assert _worker_pid(brimd) == worker


@pytest.mark.slow
def test_status_file_link_planted_before_a_restart_is_replaced(brimd, tmp_path):
    """The successor opens the status file as root while its predecessor runs."""
    other = _secret(tmp_path / "other")
    port = free_port()
    brimd.use(echo_stats_conf(workers=1), brimd.local(port=port, user="nobody"))
    old = brimd.start()
    status = Path(f"{brimd.pid_file}.status")
    status.unlink()
    status.symlink_to(other)
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    new = brimd.master_pid()
    assert new != old
    _untouched(other)
    assert not status.is_symlink()
    wait_for(lambda: f'"pid": {new}' in status.read_text(), what="the new status")
    assert _echo(port, "x").endswith(b"x")
    done = brimd.run("status")
    assert done.returncode == 0 and "1 up" in done.stdout, done.stdout


@pytest.mark.slow
def test_restart_takes_no_environment_but_systemd_s_from_the_status_file(brimd):
    """The status file carries systemd's variables to a restart's successor; one
    rewritten by someone else must not put other names in root's environment."""
    shutil.copy(HERE / "hostile_apps.py", brimd.root / "hostile_apps.py")
    port = free_port()
    brimd.use("[wsgi]\napps = app\nworkers = 1\n\n[app]\ncall = hostile_apps.RaisePath\n",
              brimd.local(port=port))
    old = brimd.start()
    url = f"http://127.0.0.1:{port}/env/BRIM_PLANTED"
    assert curl("-s", url).stdout == b"-"
    status = Path(f"{brimd.pid_file}.status")
    state = json.loads(status.read_text())
    state["notify"] = {"BRIM_PLANTED": "1", "LD_PRELOAD": "/tmp/evil.so"}
    status.write_text(json.dumps(state))
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    assert brimd.master_pid() != old
    assert curl("-s", url).stdout == b"-"
    assert curl("-s", f"http://127.0.0.1:{port}/env/LD_PRELOAD").stdout == b"-"
