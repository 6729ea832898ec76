"""Loading apps from a conf (brim.server.apps) and chaining them, with the errors a user
would see."""

from __future__ import annotations

import io
import textwrap

import pytest

from brim.conf import Conf, ConfError, load_object
from brim.server.apps import load_apps
from brim.wsgi import NotFound, build_chain

# The seed's HelloWorld, exactly as its development guide writes it (Python 2
# habits included: the body is a str).
SEED_APPS = """
from time import time


class HelloWorld(object):

    def __init__(self, name, conf, next_app):
        self.name = name
        self.path = conf
        self.next_app = next_app

    def __call__(self, env, start_response):
        if env['PATH_INFO'] != self.path:
            return self.next_app(env, start_response)
        # Here's where we update the stats.
        env['brim.stats'].incr('%s.requests' % self.name)
        env['brim.stats'].set('%s.last_called' % self.name, time())
        body = 'Hello World!\\n'
        start_response('200 OK', [('Content-Length', str(len(body)))])
        return body

    @classmethod
    def parse_conf(cls, name, conf):
        path = conf.get(name, 'path')
        if not path:
            raise Exception('[%s] you must configure a path to serve.' % name)
        return path

    @classmethod
    def stats_conf(cls, name, conf):
        return [('%s.requests' % name, 'sum'),
                ('%s.last_called' % name, 'max')]


class BadStats(object):
    def __init__(self, name, conf, next_app):
        pass

    @classmethod
    def stats_conf(cls, name, conf):
        return [('x', 'average')]


class Plain(object):
    def __init__(self, name, conf, next_app):
        self.conf = conf
        self.next_app = next_app

    def __call__(self, env, start_response):
        return self.next_app(env, start_response)

NOT_CALLABLE = 3
"""


@pytest.fixture
def mypackage(tmp_path, monkeypatch):
    (tmp_path / "seedapps.py").write_text(SEED_APPS)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "seedapps"


# Plain confs: load_apps reads ``apps`` from the section it is given, whatever
# the program's dialect. The seed's own ``[brimd] wsgi = ...`` shorthand is
# brimd's, tested with brimd (packages/brimd/tests, tests/test_seed_examples.py).
def conf(text: str) -> Conf:
    return Conf.from_string(textwrap.dedent(text), "apps.conf")


def test_seed_helloworld_without_path_refuses_with_its_message(mypackage):
    c = conf("""
        [wsgi]
        apps = helloworld

        [helloworld]
        call = seedapps.HelloWorld
    """)
    with pytest.raises(ConfError) as info:
        load_apps(c, "wsgi")
    assert str(info.value) == "[helloworld] you must configure a path to serve."


def test_seed_helloworld_loads_with_path_and_stats(mypackage):
    c = conf("""
        [wsgi]
        apps = helloworld stats

        [helloworld]
        call = seedapps.HelloWorld
        path = /here

        [stats]
        call = seedapps.Plain
    """)
    hello, stats = load_apps(c, "wsgi")
    assert hello.conf == "/here"
    assert hello.stats == [("helloworld.requests", "sum"), ("helloworld.last_called", "max")]
    assert stats.conf is c and stats.stats == []
    app = build_chain([hello, stats])
    assert app.path == "/here"
    assert isinstance(app.next_app.next_app, NotFound)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[wsgi]\n", "[wsgi] apps: no apps listed"),
        ("[wsgi]\napps = nosection\n", "[wsgi] apps: 'nosection' has no [nosection] section (apps.conf line 2)"),
        ("[wsgi]\napps = a\n[a]\n", "[a] call: missing; set it to a class"),
        ("[wsgi]\napps = a\n[a]\ncall = nodots\n", "[a] call: 'nodots' is not a dotted name"),
        ("[wsgi]\napps = a\n[a]\ncall = no_such_mod.App\n", "[a] call: cannot import 'no_such_mod': No module named 'no_such_mod' (apps.conf line 4)"),
        ("[wsgi]\napps = a\n[a]\ncall = seedapps.Nope\n", "[a] call: module 'seedapps' has no attribute 'Nope'"),
        ("[wsgi]\napps = a\n[a]\ncall = seedapps.NOT_CALLABLE\n", "[a] call: 'seedapps.NOT_CALLABLE' is not a class or callable"),
        ("[wsgi]\napps = a\n[a]\ncall = broken.App\n", "[a] call: importing 'broken' failed: RuntimeError: boom at import"),
        ("[wsgi]\napps = a\n[a]\ncall = seedapps.BadStats\n", "[a] stats_conf: stat 'x' has unknown type 'average' (expected one of worker, sum, min, max)"),
    ],
)
def test_bad_chains_are_one_line_conf_errors(mypackage, text, message):
    with pytest.raises(ConfError) as info:
        load_apps(Conf.from_string(text, "apps.conf"), "wsgi")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_load_object():
    assert load_object("os.path.join") is __import__("os").path.join
    with pytest.raises(ImportError):
        load_object("")


def test_not_found_is_a_valid_wsgi_response():
    seen = {}
    body = NotFound()({"PATH_INFO": "/x", "wsgi.input": io.BytesIO()},
                      lambda status, headers: seen.update(status=status, headers=headers))
    assert seen["status"] == "404 Not Found"
    assert b"".join(body) == b"404 Not Found\n"


# -- bundled apps declare their options: typos are refused like brimd's own --------

BUNDLED = """
[brim]
ip = 127.0.0.1
port = 0

[wsgi]
apps = echo stats

[echo]
call = brim.wsgi_echo.WSGIEcho

[stats]
call = brim.stats.Stats

[tcp#echo]
call = brim.tcp_echo.TCPEcho
workers = 2

[udp#echo]
call = brim.udp_echo.UDPEcho
max_datagram_size = 512

[daemons]
daemons = sample

[sample]
call = brim.daemon_sample.DaemonSample
"""


def _server(extra: dict[str, str]):
    from brim.server import Server
    from brim.server.dialect import BRIMD_DIALECT

    text = BUNDLED.lstrip("\n")
    for section, line in extra.items():
        text = text.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
    return Server(Conf.from_string(text, "b.conf", dialect=BRIMD_DIALECT))


def test_bundled_apps_with_their_real_options_load():
    server = _server({"echo": "max_echo = 10", "stats": "all_subservers = yes",
                      "tcp#echo": "chunk_read = 7", "sample": "interval = 2"})
    assert [s.section for s in server.subservers] == ["wsgi", "tcp#echo", "udp#echo", "sample"]
    assert server.subservers[1].conf == {"chunk_read": 7, "idle_timeout": 60.0}


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("echo", "maxecho = 10", "[echo] maxecho: unknown option (did you mean 'max_echo'?) (b.conf line 9)"),
        ("stats", "pth = /s", "[stats] pth: unknown option (did you mean 'path'?) (b.conf line 12)"),
        ("tcp#echo", "chunk_reed = 7", "[tcp#echo] chunk_reed: unknown option (did you mean 'chunk_read'?) (b.conf line 15)"),
        ("tcp#echo", "max_echo = 7", "[tcp#echo] max_echo: unknown option"),
        ("udp#echo", "backlog = 7", "[udp#echo] backlog: unknown option"),
        ("sample", "intervall = 2", "[sample] intervall: unknown option (did you mean 'interval'?) (b.conf line 26)"),
        ("echo", "path = echo", "[echo] path: 'echo' must start with '/' (b.conf line 9)"),
        ("brim", "apps = echo", "[brim] apps: unknown option here (it belongs in [wsgi]; or write 'wsgi = <apps>' here, short for a [wsgi] section) (b.conf line 2)"),
        ("brim", "daemons = sample", "[brim] daemons: unknown option here (it belongs in [daemons]) (b.conf line 2)"),
        ("wsgi", "user = nobody", "[wsgi] user: unknown option here (it belongs in [brim]) (b.conf line 6)"),
        ("brim", "wokers = 2", "[brim] wokers: unknown option (did you mean 'workers'?) (b.conf line 2)"),
    ],
)
def test_bundled_apps_refuse_unknown_options_and_misplaced_ones_are_told_where(
        section, line, message):
    with pytest.raises(ConfError) as info:
        _server({section: line})
    assert str(info.value).startswith(message)


def test_apps_without_a_declared_list_are_not_checked(mypackage):
    """Third-party apps that read options of their own keep working unchanged."""
    from brim.server.apps import parse_app_conf

    c = conf("[a]\ncall = seedapps.HelloWorld\npath = /x\nanything = 1\n")
    assert parse_app_conf(load_object("seedapps.HelloWorld"), "a", c) == "/x"
