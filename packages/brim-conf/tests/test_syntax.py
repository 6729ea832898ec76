"""The conf syntax: comments, continuations, sections, repeats and their errors."""

from __future__ import annotations

import textwrap

import pytest
from conf_testlib import BRIMD

from brim.conf import Conf, ConfError


def parse(text: str) -> Conf:
    return Conf.from_string(textwrap.dedent(text).lstrip("\n"), "brimd.conf", dialect=BRIMD)


def test_comments_whitespace_and_both_separators():
    conf = parse("""
        # a comment
        ; another
        [brim]
          port   =   8080
        user: nobody
        Log_Level = debug
    """)
    assert conf.options("brim") == {"port": "8080", "user": "nobody", "log_level": "debug"}
    assert conf.get("brim", "LOG_LEVEL") == "debug"


def test_continuation_lines_join_with_newlines():
    conf = parse("""
        [wsgi]
        apps = one
            two
            three
        port = 81
    """)
    assert conf.get("wsgi", "apps") == "one\ntwo\nthree"
    assert conf.get_list("wsgi", "apps") == ["one", "two", "three"]
    assert conf.get_int("wsgi", "port") == 81


def test_value_keeps_equals_and_colons():
    conf = parse("""
        [x]
        url = http://host:80/a=b
    """)
    assert conf.get("x", "url") == "http://host:80/a=b"


def test_named_subconfigs_and_repeats_keep_file_order():
    conf = parse("""
        [wsgi]
        port = 80
        [wsgi#admin]
        port = 8081
        [wsgi]
        port = 81
        [tcp#echo]
        port = 7
        [udp]
        port = 9
        [udp]
        port = 10
    """)
    assert conf.subconfigs("wsgi") == ["wsgi", "wsgi#admin", "wsgi#2"]
    assert conf.subconfigs("tcp") == ["tcp#echo"]
    assert conf.subconfigs("udp") == ["udp", "udp#2"]


def test_repeat_numbering_skips_names_spelled_out():
    conf = parse("""
        [wsgi]
        [wsgi]
        port = 2
        [wsgi#2]
        port = 3
    """)
    assert conf.subconfigs("wsgi") == ["wsgi", "wsgi#3", "wsgi#2"]
    assert conf.get("wsgi#3", "port") == "2"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[echo]\ncall = a\n[echo]\ncall = b\n", "section [echo] appears twice (lines 1 and 3)"),
        ("[brim]\n[brimd]\n", "section [brimd] appears twice (lines 1 and 2)"),
        ("[wsgi#a]\n[wsgi#a]\n", "section [wsgi#a] appears twice"),
        ("port = 80\n", "option outside any section"),
        ("[brim]\nport 80\n", "expected 'option = value'"),
        ("[brim]\n = 80\n", "option with no name"),
        ("[brim\n", "has no closing ']'"),
        ("[]\n", "empty section name"),
        ("[a b]\n", "bad section name [a b]"),
        ("[wsgi#]\n", "use [kind#name]"),
        ("[brim] junk\n", "unexpected text after section header"),
        ("[brim]\nport = 1\nport = 2\n", "[brim] port: set twice (lines 2 and 3)"),
    ],
)
def test_syntax_errors_name_the_problem_and_line(text, message):
    with pytest.raises(ConfError) as info:
        Conf.from_string(text, "brimd.conf", dialect=BRIMD)
    assert message in str(info.value)
    assert "brimd.conf line" in str(info.value)
    assert "\n" not in str(info.value)


def test_header_may_carry_a_trailing_comment():
    conf = parse("""
        [brim]  # main section
        port = 1
    """)
    assert conf.get_int("brim", "port") == 1


def test_shorthand_conflicting_with_wsgi_apps_is_an_error():
    with pytest.raises(ConfError, match=r"\[brim\] wsgi: conflicts with 'apps' in \[wsgi\]"):
        parse("""
            [brim]
            wsgi = a
            [wsgi]
            apps = b
        """)


def test_shorthand_agreeing_with_wsgi_section_is_fine():
    conf = parse("""
        [brim]
        wsgi = a
        [wsgi]
        port = 81
    """)
    assert conf.options("wsgi") == {"port": "81", "apps": "a"}


def test_conf_built_from_a_dict():
    conf = Conf({"brimd": {"Port": 80, "wsgi": "a b"}}, dialect=BRIMD)
    assert conf.get_int("brim", "port") == 80
    assert conf.get_list("wsgi", "apps") == ["a", "b"]
    assert "brimd.conf" not in str(conf.error("brim", "port", "bad"))
