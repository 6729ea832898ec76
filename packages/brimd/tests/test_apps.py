"""Loading apps from a conf (brim.server.apps) and chaining them, with the errors a user
would see."""

from __future__ import annotations

import io
import sys
import textwrap

import pytest

from brim.conf import Conf, ConfError, load_object
from brim.server.apps import Reference, load_apps, load_class, parse_reference
from brim.wsgi import NotFound

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
    apps = load_apps(c, "wsgi")
    hello, stats = apps.links
    assert apps.end is None
    assert hello.conf == "/here"
    assert hello.stats == [("helloworld.requests", "sum"), ("helloworld.last_called", "max")]
    assert stats.conf is c and stats.stats == []
    assert apps.stats == hello.stats
    app = apps.build()
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
        ("[wsgi]\napps = a\n[a]\ncall = seedapps.NOT_CALLABLE\n", "[a] call: 'seedapps.NOT_CALLABLE' is not callable (its type is int); expected a brim app class taking (name, conf, next_app)"),
        ("[wsgi]\napps = a\n[a]\ncall = broken.App\n", "[a] call: importing 'broken' failed: RuntimeError: boom at import"),
        ("[wsgi]\napps = a\n[a]\ncall = seedapps.BadStats\n", "[a] stats_conf: stat 'x' has unknown type 'average' (expected one of worker, sum, min, max, histogram)"),
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


# -- plain WSGI apps: call = package.module:name and package.module:factory() ---

PLAIN_APPS = """
CALLS = []


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain " + environ["PATH_INFO"].encode()]


class Handler:
    def __call__(self, environ, start_response):
        return app(environ, start_response)


handler = Handler()


def create_app(greeting="hello", *, times=1):
    CALLS.append((greeting, times))

    def made(environ, start_response):
        start_response("200 OK", [])
        return [greeting.encode() * times]
    return made


def make_nothing():
    return None


def failing_factory():
    raise RuntimeError("database\\nunreachable")


def exiting_factory():
    import sys
    sys.exit("no DATABASE_URL set")


class Middleware:
    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, environ, start_response):
        if environ["PATH_INFO"] == "/mw":
            start_response("200 OK", [])
            return [b"middleware"]
        return self.next_app(environ, start_response)


NOT_CALLABLE = 3
"""


@pytest.fixture
def plainapps(tmp_path, monkeypatch):
    (tmp_path / "plainapps.py").write_text(PLAIN_APPS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield __import__("plainapps")
    sys.modules.pop("plainapps", None)


def _get(app, path):
    seen = {}
    body = app({"PATH_INFO": path}, lambda status, headers: seen.setdefault("status", status))
    return seen["status"], b"".join(body)


def _one_app(call: str) -> Conf:
    return conf(f"""
        [wsgi]
        apps = a

        [a]
        call = {call}
    """)


@pytest.mark.parametrize("call", ["plainapps:app", "plainapps:handler", "plainapps : app"])
def test_plain_wsgi_app_by_module_colon_name(plainapps, call):
    apps = load_apps(_one_app(call), "wsgi")
    assert apps.links == [] and apps.end is not None
    assert _get(apps.build(), "/x") == ("200 OK", b"plain /x")


def test_attribute_path_after_the_colon(plainapps):
    apps = load_apps(_one_app("plainapps:handler.__call__"), "wsgi")
    assert _get(apps.build(), "/y") == ("200 OK", b"plain /y")


def test_factory_called_once_in_the_master_with_literal_arguments(plainapps):
    apps = load_apps(_one_app("plainapps:create_app('hi', times=2)"), "wsgi")
    assert plainapps.CALLS == [("hi", 2)]
    app = apps.build()
    assert _get(app, "/") == ("200 OK", b"hihi")
    apps.build()
    assert plainapps.CALLS == [("hi", 2)]  # building in a worker calls nothing again
    load_apps(_one_app("plainapps:create_app()"), "wsgi")
    assert plainapps.CALLS[-1] == ("hello", 1)


def test_plain_app_last_in_a_chain_behind_a_brim_app(plainapps):
    c = conf("""
        [wsgi]
        apps = mw flask

        [mw]
        call = plainapps.Middleware

        [flask]
        call = plainapps:app
    """)
    apps = load_apps(c, "wsgi")
    assert [link.name for link in apps.links] == ["mw"]
    app = apps.build()
    assert _get(app, "/mw") == ("200 OK", b"middleware")
    assert _get(app, "/other") == ("200 OK", b"plain /other")


W = "(apps.conf line 6)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # The crash loop: a WSGI app object named as a brim class.
        ("plainapps.app", "[a] call: 'plainapps.app' takes (environ, start_response); "
         "expected a brim app class taking (name, conf, next_app); it looks like a plain "
         f"WSGI app: name it with a colon, call = plainapps:app {W}"),
        ("plainapps.handler", "[a] call: 'plainapps.handler' takes (environ, start_response); "
         "expected a brim app class taking (name, conf, next_app); it looks like a plain "
         f"WSGI app: name it with a colon, call = plainapps:handler {W}"),
        ("plainapps:Middleware", "[a] call: 'plainapps:Middleware' takes (name, conf, "
         "next_app); expected a WSGI app taking (environ, start_response); it looks like a "
         f"brim app class: name it with a dot, call = plainapps.Middleware {W}"),
        ("plainapps:make_nothing", "[a] call: 'plainapps:make_nothing' takes (); expected a "
         "WSGI app taking (environ, start_response); if it is a factory, call it: "
         f"plainapps:make_nothing() {W}"),
        ("plainapps:make_nothing()", "[a] call: 'plainapps:make_nothing()' is not callable "
         f"(its type is NoneType); expected a WSGI app taking (environ, start_response) {W}"),
        ("plainapps:NOT_CALLABLE", "[a] call: 'plainapps:NOT_CALLABLE' is not callable (its "
         f"type is int); expected a WSGI app taking (environ, start_response) {W}"),
        ("plainapps:NOT_CALLABLE()", "[a] call: 'plainapps:NOT_CALLABLE' is not callable "
         f"(its type is int), so it is no factory {W}"),
        ("plainapps:failing_factory()", "[a] call: 'plainapps:failing_factory()' failed: "
         f"RuntimeError: database unreachable {W}"),
        ("plainapps:exiting_factory()", "[a] call: 'plainapps:exiting_factory()' failed: "
         f"SystemExit: no DATABASE_URL set {W}"),
        ("plainapps:create_app(1, 2)", "[a] call: 'plainapps:create_app(1, 2)' failed: "
         "TypeError: create_app() takes from 0 to 1 positional arguments but 2 were given "
         f"{W}"),
        ("plainapps:create_app(greeting)", "[a] call: 'plainapps:create_app(greeting)': a "
         "factory's arguments must be literals (strings, numbers, tuples, lists, dicts, "
         f"True, False, None) {W}"),
        ("plainapps:create_app(__import__('os').getpid())", "[a] call: "
         "\"plainapps:create_app(__import__('os').getpid())\": a factory's arguments must be "
         f"literals (strings, numbers, tuples, lists, dicts, True, False, None) {W}"),
        ("plainapps:create_app(*x)", "[a] call: 'plainapps:create_app(*x)': a factory's "
         f"arguments are written out, not unpacked with * or ** {W}"),
        ("plainapps.create_app()", "[a] call: 'plainapps.create_app()': a factory is called "
         f"after a colon, as in package.module:create_app() {W}"),
        ("plainapps:app[0]", "[a] call: 'plainapps:app[0]' is not package.module:name or "
         f"package.module:factory(literal arguments) {W}"),
        ("plainapps:", "[a] call: 'plainapps:' is not package.module:name or "
         f"package.module:factory(literal arguments) {W}"),
        ("plainapps:nope", f"[a] call: module 'plainapps' has no attribute 'nope' {W}"),
        ("plainapps:handler.nope", f"[a] call: plainapps:handler has no attribute 'nope' {W}"),
        ("no_such_mod:app", "[a] call: cannot import 'no_such_mod': No module named "
         f"'no_such_mod' {W}"),
    ],
)
def test_wrongly_shaped_calls_are_one_line_naming_the_section(plainapps, call, message):
    with pytest.raises(ConfError) as info:
        load_apps(_one_app(call), "wsgi")
    assert str(info.value) == message


def test_plain_app_must_be_last(plainapps):
    c = conf("""
        [wsgi]
        apps = flask mw

        [flask]
        call = plainapps:app

        [mw]
        call = plainapps.Middleware
    """)
    with pytest.raises(ConfError) as info:
        load_apps(c, "wsgi")
    assert str(info.value) == (
        "[wsgi] apps: 'flask' is a plain WSGI app (call = plainapps:app), which passes no "
        "request on, so it must be the last app listed (apps.conf line 3)")


def test_plain_app_section_takes_no_other_option(plainapps):
    c = conf("""
        [wsgi]
        apps = a

        [a]
        call = plainapps:app
        path = /here
    """)
    with pytest.raises(ConfError) as info:
        load_apps(c, "wsgi")
    assert str(info.value) == "[a] path: unknown option (apps.conf line 7)"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("plainapps:app", "[a] call: 'plainapps:app' names a plain WSGI app, which only a "
         "[wsgi] chain serves; here call names a class, like package.module.Class"),
        ("plainapps.Middleware", "[a] call: 'plainapps.Middleware' takes (name, conf, "
         "next_app); expected a brim app class taking (name, conf)"),
    ],
)
def test_tcp_udp_and_daemon_classes_are_checked_too(plainapps, call, message):
    c = conf(f"""
        [a]
        call = {call}
    """)
    with pytest.raises(ConfError) as info:
        load_class(c, "a", referrer=("daemons", "daemons"))
    assert str(info.value) == f"{message} (apps.conf line 3)"


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("a.b.C", Reference("a.b", ("C",), plain=False)),
        ("a.b:app", Reference("a.b", ("app",), plain=True)),
        ("a:app.wsgi_app", Reference("a", ("app", "wsgi_app"), plain=True)),
        ("a:make()", Reference("a", ("make",), plain=True, args=())),
        ("a:make('x', 2, n=[1, {'k': None}], flag=True, neg=-1.5)",
         Reference("a", ("make",), plain=True, args=("x", 2),
                   kwargs={"n": [1, {"k": None}], "flag": True, "neg": -1.5})),
    ],
)
def test_parse_reference(text, ref):
    assert parse_reference(text) == ref
