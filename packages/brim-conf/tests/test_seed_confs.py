"""Every conf in the seed document parses, in brimd's dialect, to what a reader would expect."""

from __future__ import annotations

import textwrap

from conf_testlib import BRIMD

from brim.conf import Conf


def parse(text: str) -> Conf:
    return Conf.from_string(textwrap.dedent(text), "brimd.conf", dialect=BRIMD)


def test_wsgi_usage_example():
    conf = parse("""
        [wsgi]
        apps = echo stats

        [echo]
        call = brim.wsgi_echo.WSGIEcho

        [stats]
        call = brim.stats.Stats
    """)
    assert conf.subconfigs("wsgi") == ["wsgi"]
    assert conf.get_list("wsgi", "apps") == ["echo", "stats"]
    assert conf.get("echo", "call") == "brim.wsgi_echo.WSGIEcho"
    assert conf.get("stats", "call") == "brim.stats.Stats"
    assert conf.get("stats", "path") is None


def test_multi_config_example_gives_two_wsgi_subconfigs():
    conf = parse("""
        [wsgi]
        apps = echo stats

        [wsgi]
        port = 81
        apps = echo2 stats

        [echo]
        call = brim.wsgi_echo.WSGIEcho

        [stats]
        call = brim.stats.Stats

        [echo2]
        call = brim.wsgi_echo.WSGIEcho
        path = /echo2
    """)
    first, second = conf.subconfigs("wsgi")
    assert conf.get_list(first, "apps") == ["echo", "stats"]
    assert conf.get_int(first, "port", 80, inherit=True) == 80
    assert conf.get_list(second, "apps") == ["echo2", "stats"]
    assert conf.get_int(second, "port", 80, inherit=True) == 81
    assert conf.get("echo2", "path") == "/echo2"
    assert conf.where(second, "port") == "brimd.conf line 6"


def test_daemon_example():
    conf = parse("""
        [daemons]
        daemons = sample

        [sample]
        call = brim.daemon_sample.DaemonSample
    """)
    assert conf.get_list("daemons", "daemons") == ["sample"]
    assert conf.get("sample", "call") == "brim.daemon_sample.DaemonSample"
    assert conf.subconfigs("wsgi") == []


def test_helloworld_example_uses_brimd_section_and_wsgi_shorthand():
    conf = parse("""
        [brimd]
        wsgi = helloworld

        [helloworld]
        call = mypackage.mymodule.HelloWorld
    """)
    assert conf.has_section("brim") and conf.has_section("brimd")
    assert conf.subconfigs("wsgi") == ["wsgi"]
    assert conf.get_list("wsgi", "apps") == ["helloworld"]
    # parse_conf in the seed reads an unset path and must see a false value.
    assert not conf.get("helloworld", "path")


def test_helloworld_with_path():
    conf = parse("""
        [brimd]
        wsgi = helloworld

        [helloworld]
        call = mypackage.mymodule.HelloWorld
        path = /here
    """)
    assert conf.get("helloworld", "path") == "/here"
    assert conf.get("brim", "wsgi") == "helloworld"


def test_helloworld_with_stats():
    conf = parse("""
        [brimd]
        wsgi = helloworld stats

        [helloworld]
        call = mypackage.mymodule.HelloWorld
        path = /here

        [stats]
        call = brim.stats.Stats
    """)
    assert conf.get_list("wsgi", "apps") == ["helloworld", "stats"]
    assert conf.get("stats", "call") == "brim.stats.Stats"


def test_server_stats_example_with_commented_options():
    conf = parse("""
        [brim]
        wsgi = stats
        workers = 4

        [stats]
        call = brim.stats.Stats
        # path = <path>
        #   The request path to match and serve; any other paths will be passed on
        #   to the next WSGI app in the chain. This can serve as a basic
        #   restriction to accessing the stats by setting it to a hard to guess
        #   value. Default: /stats
    """)
    assert conf.get_int("wsgi", "workers", 1, inherit=True) == 4
    assert conf.options("stats") == {"call": "brim.stats.Stats"}
    assert conf.get_list("wsgi", "apps") == ["stats"]
