"""daemonize() and drop_privileges(), each in a real child process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from supervisor_testlib import PROGS, alive, wait_for

from brim.supervisor import SupervisorError, drop_privileges, parse_umask

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def run_daemonized(tmp_path):
    reports: list[dict] = []

    def run(**conf):
        out = tmp_path / f"report{len(reports)}.json"
        conf["out"] = str(out)
        proc = subprocess.run(
            [sys.executable, str(PROGS / "daemonized.py"), json.dumps(conf)],
            cwd=tmp_path, timeout=30, stdin=subprocess.DEVNULL,
        )
        report = wait_for(lambda: _load(out), 10, "report")
        report["returncode"] = proc.returncode
        report["stop"] = str(out) + ".stop"
        reports.append(report)
        return report

    yield run
    for report in reports:
        Path(report["stop"]).touch()
        if report["pid"] != report["parent_pid"]:
            with contextlib.suppress(OSError):
                wait_for(lambda r=report: not alive(r["pid"]), 3, "daemon exit")
            with contextlib.suppress(OSError):
                os.kill(report["pid"], signal.SIGKILL)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_daemonize_detaches(run_daemonized):
    report = run_daemonized(daemonize=True)
    assert report["returncode"] == 0  # the caller's process exited at once
    assert report["pid"] != report["parent_pid"]
    assert report["daemonized"] is True
    assert report["sid"] != report["pid"]  # not a session leader: no tty can be acquired
    assert report["pgid"] == report["sid"]
    assert report["cwd"] == "/"
    assert report["std"] == ["/dev/null"] * 3
    assert report["kept_open"] is True and report["dropped_open"] is False
    assert alive(report["pid"])


def test_daemonize_can_keep_std(run_daemonized):
    report = run_daemonized(daemonize=True, keep_std=True)
    assert report["std"][0] == "/dev/null"  # the test gave it /dev/null as stdin
    assert report["std"][1] != "/dev/null" or report["std"][2] != "/dev/null"


@root_only
def test_drop_to_a_user_sets_groups_and_umask(run_daemonized):
    report = run_daemonized(drop={"user": "nobody", "umask": "027"})
    assert "error" not in report
    import grp
    import pwd
    pw = pwd.getpwnam("nobody")
    expected = sorted({pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if "nobody" in g.gr_mem})
    assert (report["uid"], report["euid"]) == (pw.pw_uid, pw.pw_uid)
    assert (report["gid"], report["egid"]) == (pw.pw_gid, pw.pw_gid)
    assert report["groups"] == expected
    assert report["umask"] == 0o027


@root_only
def test_drop_to_a_group_only(run_daemonized):
    import grp
    gid = grp.getgrnam("nogroup").gr_gid if _has_group("nogroup") else 65534
    report = run_daemonized(drop={"group": gid})
    assert "error" not in report
    assert report["uid"] == 0 and report["gid"] == gid and report["groups"] == [gid]


@root_only
def test_not_root_is_a_clear_error(run_daemonized):
    report = run_daemonized(first_drop={"user": "nobody"}, drop={"user": "root"})
    assert report["error"] == "cannot switch to user 'root': not running as root"


def _has_group(name: str) -> bool:
    import grp
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def test_unknown_user_or_group_is_a_clear_error_and_changes_nothing():
    mask = os.umask(0o022)
    os.umask(mask)
    with pytest.raises(SupervisorError, match=r"^cannot switch to user 'no-such-user-zz': no such"):
        drop_privileges("no-such-user-zz", umask="077")
    with pytest.raises(SupervisorError, match=r"^cannot switch to group 'no-such-grp-zz': no such"):
        drop_privileges(group="no-such-grp-zz")
    current = os.umask(mask)
    assert current == mask  # the umask was not touched by the failed call


def test_umask_parsing():
    assert parse_umask("022") == 0o022
    assert parse_umask("0o27") == 0o027
    assert parse_umask(0o077) == 0o077
    with pytest.raises(SupervisorError, match="invalid umask '99'"):
        parse_umask("99")
    with pytest.raises(SupervisorError, match="between 000 and 777"):
        parse_umask(0o1777)
