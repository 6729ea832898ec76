"""Options from outside the conf files, ``brimd check`` and ``brimd show-conf``, with
the real brimd.

``--set`` and ``BRIMD_<SECTION>__<OPTION>`` variables change what a real
start runs (workers counted in /proc) and survive a reload (the master
re-executes itself); ``show-conf`` says where each value came from;
``brimd check`` names every fault of a conf at once, passes every example
conf, and binds nothing (the test holds the port meanwhile).
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from brimd_harness import BRIMD, echo_stats_conf, free_port, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "packages" / "brimd" / "examples"


#: Three faults: a typo'd option, an app that cannot be imported, a parse_conf error.
FAULTY = """\
[wsgi]
apps = echo broken stats
workerz = 2

[echo]
call = brim.wsgi_echo.WSGIEcho
max_echo = lots

[broken]
call = h20_no_such_module.App

[stats]
call = brim.stats.Stats
"""


def _run(brimd, command: str, *extra: str, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess:
    """``brimd -c ... -p ... COMMAND EXTRA...`` (options after the command are fine)."""
    done = subprocess.run([*brimd.args(command), *extra], capture_output=True, text=True,
                          timeout=60, env=env or brimd.env, cwd=brimd.root)
    brimd._remember()
    return done


def _workers(brimd, group: str) -> set[int]:
    return set(brimd.workers(group).values())


@pytest.mark.slow
def test_check_names_every_fault_and_binds_nothing(brimd):
    """A typo'd option, an app that fails to import and a parse_conf error: all three,
    exit 1; fixed, exit 0; each time with the port held by the test itself."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        brimd.use(brimd.local(port=port), FAULTY)
        done = _run(brimd, "check")
        assert done.returncode == 1, done.stderr
        problems = done.stderr.strip().splitlines()
        assert problems == [
            "[wsgi] workerz: unknown option (did you mean 'workers'?) "
            f"({brimd.confs[1]} line 3)",
            f"[echo] max_echo: 'lots' is not an integer ({brimd.confs[1]} line 7)",
            "[broken] call: cannot import 'h20_no_such_module': No module named "
            f"'h20_no_such_module' ({brimd.confs[1]} line 10)",
        ], done.stderr
        brimd.use(brimd.local(port=port), echo_stats_conf())
        done = _run(brimd, "check")
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"[wsgi] wsgi at 127.0.0.1:{port}, 1 worker\n"
        assert not brimd.pid_file.exists()  # nothing was started either


def _brimd_confs() -> list[Path]:
    """The example confs that are brimd's: the proxy examples also hold nginx's
    ``.conf`` (no ``[section]`` anywhere), which is nginx's to check."""
    return sorted(path for path in EXAMPLES.glob("**/*.conf")
                  if any(line.startswith("[") for line in path.read_text().splitlines()))


def test_the_example_confs_found_include_each_kind():
    names = {path.name for path in _brimd_confs()}
    assert {"quickstart.conf", "kubernetes.conf", "behind_nginx.conf"} <= names
    assert "nginx-site.conf" not in names


@pytest.mark.parametrize("conf", _brimd_confs(), ids=lambda p: p.name)
@pytest.mark.slow
def test_check_passes_every_example_conf(brimd, conf):
    # kubernetes.conf serves the user's own project (myproject.wsgi:application):
    # here a real module of that name, as docs/kubernetes.rst's image would have.
    brimd.write("myproject/__init__.py", "")
    brimd.write("myproject/wsgi.py", """
        def application(env, start_response):
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        """)
    env = dict(brimd.env, PYTHONPATH=os.pathsep.join(
        [str(conf.parent), str(brimd.root), brimd.env["PYTHONPATH"]]))
    done = subprocess.run([*BRIMD, "-c", str(conf), "-p", "-", "check"], capture_output=True,
                          text=True, timeout=60, env=env, cwd=conf.parent)
    assert done.returncode == 0, done.stderr
    assert "the conf is valid" in done.stderr


def test_unknown_names_in_overrides_get_the_errors_a_file_gets(brimd):
    brimd.use(brimd.local(port=free_port()), echo_stats_conf())
    env = dict(brimd.env, BRIMD_WSGI__WORKRES="2")
    done = _run(brimd, "check", "--set", "wsgii.workers=3", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == ("[wsgii] workers: unknown section (did you mean [wsgi]?) "
                                   "(--set wsgii.workers=3)")
    done = _run(brimd, "check", env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == ("[wsgi] workres: unknown option (did you mean 'workers'?) "
                                   "(environment variable BRIMD_WSGI__WORKRES)")


def _shown(setting: str, source: str) -> str:
    """A line of show-conf: the option, then its source in a column."""
    return f"{setting.ljust(40)}  # {source}"


TWO_LISTENERS = """\
[wsgi]
apps = echo
workers = 1

[wsgi#b]
port = 0
apps = echo
workers = 1

[echo]
call = brim.wsgi_echo.WSGIEcho
"""


@pytest.mark.slow  # a start and a reload: about 6 s on a quiet machine
def test_environment_and_set_change_workers_and_survive_reload(brimd):
    """Files say 1 worker each. A variable gives [wsgi#b] 2, --set gives [wsgi] 3 over a
    variable's 5: a real start runs that, show-conf says why, and a reload (the master
    re-executes itself, told nothing) keeps it."""
    port = free_port()
    brimd.use(brimd.local(port=port, start_check=0.2), TWO_LISTENERS)
    env = dict(brimd.env, BRIMD_WSGI__B__WORKERS="2", BRIMD_WSGI__WORKERS="5")
    shown = _run(brimd, "show-conf", "--set", "wsgi.workers=3", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    wsgi, wsgi_b = lines[lines.index("[wsgi]"):], lines[lines.index("[wsgi#b]"):]
    assert _shown("workers = 3", "--set wsgi.workers=3") in wsgi, shown.stdout
    assert _shown("workers = 2", "environment variable BRIMD_WSGI__B__WORKERS") in wsgi_b
    assert _shown("port = 0", f"{brimd.confs[1]} line 6") in wsgi_b
    assert _shown(f"port = {port}", f"via [brim], {brimd.confs[0]} line 5") in wsgi
    assert _shown("idle_timeout = 75.0", "default") in wsgi

    done = _run(brimd, "start", "--set", "wsgi.workers=3", env=env)
    assert done.returncode == 0, done.stderr
    assert len(_workers(brimd, "wsgi")) == 3 and len(_workers(brimd, "wsgi#b")) == 2
    before = _workers(brimd, "wsgi") | _workers(brimd, "wsgi#b")
    master = brimd.master_pid()
    done = _run(brimd, "reload")  # no --set, no variables: the master carries them
    assert done.returncode == 0, done.stderr

    def replaced() -> bool:
        a, b = _workers(brimd, "wsgi"), _workers(brimd, "wsgi#b")
        return len(a) == 3 and len(b) == 2 and not (a | b) & before

    wait_for(replaced, timeout=30, what="3 and 2 new workers after the reload")
    assert brimd.master_pid() == master
