"""``brimd serve``'s command line: the conf it builds, and errors that name the flag.

In process, through :func:`brim.server.main`: nothing here gets as far as binding a
port (tests/test_frameworks.py serves real apps with it).
"""

from __future__ import annotations

import os
import sys

import pytest

from brim.server import main
from brim.server.options import option
from brim.server.serve import FLAGS, parse_bind


@pytest.fixture(autouse=True)
def _keep_cwd_and_path(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))


def serve(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["serve", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_print_conf_is_the_conf_the_flags_make(capsys):
    code, out, err = serve(capsys, "brim.stats.Stats", "-w", "4", "-b", "[::1]:9000",
                           "--graceful-timeout", "5", "--log-level", "debug",
                           "--max-requests", "1000", "--print-conf")
    assert (code, err) == (0, "")
    assert out == ("[brim]\ngrace = 5\nlog_level = debug\n\n"
                   "[wsgi]\napps = app\nip = ::1\nport = 9000\nworkers = 4\nmax_requests = 1000\n\n"
                   "[app]\ncall = brim.stats.Stats\n")


def test_set_and_the_environment_win_over_the_flags(capsys, monkeypatch):
    monkeypatch.setenv("BRIMD_WSGI__WORKERS", "3")
    monkeypatch.setenv("BRIMD_WSGI__MAX_REQUESTS", "9")
    code, out, err = serve(capsys, "brim.stats.Stats", "-w", "4", "--max-requests", "5",
                           "--set", "wsgi.max_requests=7", "--set", "app.path=/s",
                           "--print-conf")
    assert (code, err) == (0, "")
    assert out == ("[wsgi]\napps = app\nip = 127.0.0.1\nport = 8000\nworkers = 3\n"
                   "max_requests = 7\n\n[app]\ncall = brim.stats.Stats\npath = /s\n")


def test_a_bad_set_is_named(capsys):
    assert serve(capsys, "brim.stats.Stats", "--set", "wsgi.workerz=2") == (
        1, "", "[wsgi] workerz: unknown option (did you mean 'workers'?) "
        "(--set wsgi.workerz=2)\n")


@pytest.mark.parametrize(
    ("args", "stderr"),
    [
        (["--workers", "0"], "--workers: 0 is too small (at least 1)"),
        (["-w", "many"], "--workers: 'many' is not an integer"),
        (["--timeout", "soon"], "--timeout: 'soon' is not a number"),
        (["--log-level", "chatty"], "--log-level: 'chatty' is not one of DEBUG, INFO, NOTICE, "
         "WARNING, ERROR, CRITICAL"),
        (["-b", "unix:/tmp/x.sock"], "--bind: 'unix:/tmp/x.sock': brimd serves TCP addresses, "
         "not unix sockets"),
        (["-b", "127.0.0.1:http"], "--bind: '127.0.0.1:http': the port must be a number from 0 "
         "to 65535"),
        (["-b", "::1:80"], "--bind: '::1:80': write an IPv6 address in brackets, as [::1]:8000"),
        (["--chdir", "/no/such/dir"], "--chdir: /no/such/dir: No such file or directory"),
    ],
)
def test_errors_name_the_flag(capsys, args, stderr):
    assert serve(capsys, "brim.stats.Stats", *args) == (1, "", stderr + "\n")


def test_app_errors_name_the_app_section(capsys):
    assert serve(capsys, "no_such_module:app") == (
        1, "", "[app] call: cannot import 'no_such_module': No module named 'no_such_module'\n")


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost", ("localhost", 8000)),
        ("*:80", ("*", 80)),
        (":80", ("*", 80)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::]", ("::", 8000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
    ],
)
def test_parse_bind(text, address):
    assert parse_bind(text) == address


def test_every_flag_sets_a_declared_option_once():
    """A flag's help is its option's doc, so a flag naming no option cannot be added."""
    assert len({(flag.section, flag.option) for flag in FLAGS}) == len(FLAGS)
    for flag in FLAGS:
        assert option(flag.section, flag.option).doc in flag.help().replace("%%", "%")
    names = [name for flag in FLAGS for name in flag.names]
    assert len(set(names)) == len(names)


def test_the_current_directory_comes_first_on_the_path(capsys, tmp_path):
    """As gunicorn does: the ``brimd`` script's own directory is on the path, not the cwd."""
    code, _, _ = serve(capsys, "here_app:app", "--print-conf")
    assert code == 0 and sys.path[0] == os.getcwd() == str(tmp_path)
