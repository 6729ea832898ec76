"""What brimd's commands tell a user: help per command, mistakes named as typed,
a line for each stop and shutdown, and no guessing without a pid file."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest
from brimd_harness import BRIMD, alive, curl, echo_stats_conf, free_port, process_tree, wait_for

from brim.server.cli import COMMAND_DOCS

ECHO = echo_stats_conf()


def _brimd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BRIMD, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("argv", [("--config", "x.conf", "foreground"),
                                  ("foreground", "--config", "x.conf"),
                                  ("foreground", "--config=x.conf")])
def test_a_misspelt_option_is_named_before_or_after_the_command(argv):
    done = _brimd(*argv)
    assert done.returncode == 2
    assert "unrecognized option --config (did you mean --conf?)" in done.stderr
    assert "invalid choice" not in done.stderr  # x.conf is not taken for the command


def test_an_unknown_command_is_named_with_the_closest_one():
    done = _brimd("-c", "x.conf", "stpo")
    assert done.returncode == 2
    assert "unknown command 'stpo' (did you mean stop?" in done.stderr


@pytest.mark.parametrize("command", sorted(COMMAND_DOCS))
def test_each_command_has_its_own_help(command):
    done = _brimd(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: brimd {command} [options]\n")
    first_words = " ".join(COMMAND_DOCS[command].split()[:4])
    assert first_words in " ".join(done.stdout.split())
    assert "commands:" not in done.stdout  # not the global list
    assert "--pid-file" in done.stdout


def test_global_help_still_lists_every_command():
    done = _brimd("--help")
    assert done.returncode == 0
    for command in COMMAND_DOCS:
        assert re.search(rf"^  {re.escape(command)}\s", done.stdout, re.M), command


@pytest.mark.slow
def test_stop_and_shutdown_without_a_pid_file_refuse_to_guess(brimd):
    """A foreground brimd run with -p - cannot be found by stop: it says so, exits 1,
    and the brimd serves on."""
    port = free_port()
    conf = brimd.use(ECHO, brimd.local(port=port))
    args = [*BRIMD, *(w for c in conf for w in ("-c", str(c))), "-p", "-"]
    proc = subprocess.Popen([*args, "foreground"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=brimd.root)
    brimd.foreground.append(proc)
    url = f"http://127.0.0.1:{port}/echo"
    wait_for(lambda: curl("-s", url, "-d", "up").stdout == b"up", what="serving")
    tree = process_tree(proc.pid)
    for command in ("stop", "shutdown"):
        done = subprocess.run([*args, command], capture_output=True, text=True, timeout=30,
                              cwd=brimd.root)
        assert done.returncode == 1
        assert "no pid file (-p -)" in done.stderr
        assert "Ctrl-C or SIGTERM" in done.stderr
        assert "not running" not in done.stdout + done.stderr
    assert all(alive(pid) for pid in tree)
    assert curl("-s", url, "-d", "still").stdout == b"still"


@pytest.mark.slow
def test_stop_says_it_stopped_and_shutdown_says_it_shut_down(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    master = brimd.start()
    done = brimd.run("stop")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"brimd stopped (pid {master})\n"
    assert not alive(master)
    master = brimd.start()
    done = brimd.run("shutdown")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"brimd shut down (pid {master})")
    assert not alive(master)
    done = brimd.run("stop")
    assert done.returncode == 0
    assert done.stdout == f"brimd is not running (no pid file {brimd.pid_file})\n"


@pytest.mark.slow
def test_stop_with_a_stale_pid_file_says_so_and_removes_it(brimd):
    brimd.use(ECHO, brimd.local(port=free_port()))
    gone = subprocess.Popen(["true"])
    gone.wait(10)
    brimd.pid_file.write_text(f"{gone.pid}\n")
    done = brimd.run("stop")
    assert done.returncode == 0
    assert done.stdout == (f"brimd is not running (removed the stale pid file "
                           f"{brimd.pid_file})\n")
    assert not brimd.pid_file.exists()
    assert brimd.run("status").returncode == 3


@pytest.mark.slow
def test_foreground_fails_at_once_on_a_busy_port_naming_its_holder(brimd):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        brimd.use(ECHO, brimd.local(port=port))
        began = time.monotonic()
        proc = brimd.popen("foreground")
        _, err = proc.communicate(timeout=20)
        took = time.monotonic() - began
    assert proc.returncode == 1
    assert f"cannot bind 127.0.0.1:{port}: address already in use" in err
    assert "retrying" not in err
    assert took < 10  # the daemon's 30 s of retries would be far over this
    # listen_retry set in the conf is still honoured in the foreground.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        brimd.use(ECHO, brimd.local(port=port, listen_retry=0.6))
        proc = brimd.popen("foreground")
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "retrying for 0.6s" in err and "after retrying for 0.6s" in err
