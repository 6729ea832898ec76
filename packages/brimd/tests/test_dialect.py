"""brimd's dialect: its confs read as they always have, with the same error texts."""

from __future__ import annotations

import textwrap

import pytest

from brim.conf import Conf, ConfError
from brim.server import options
from brim.server.dialect import BRIMD_DIALECT, MAIN_SECTION, read_conf


def brimd_conf(text: str) -> Conf:
    return Conf.from_string(textwrap.dedent(text).lstrip("\n"), "brimd.conf", dialect=BRIMD_DIALECT)


def test_the_words_of_brimd():
    assert BRIMD_DIALECT.defaults == MAIN_SECTION == "brim"
    assert BRIMD_DIALECT.aliases == ("brimd",)
    assert BRIMD_DIALECT.repeatable == ("wsgi", "tcp", "udp")
    assert BRIMD_DIALECT.include == "additional_confs"
    assert dict(BRIMD_DIALECT.shorthands) == {"wsgi": ("wsgi", "apps")}


def test_seed_helloworld_conf():
    conf = brimd_conf("""
        [brimd]
        wsgi = helloworld stats
        port = 8080

        [helloworld]
        call = mypackage.mymodule.HelloWorld
    """)
    assert conf.subconfigs("wsgi") == ["wsgi"]
    assert conf.get_list("wsgi", "apps") == ["helloworld", "stats"]
    assert options.value(conf, "wsgi", "wsgi", "port") == 8080


def test_repeated_listeners_and_the_message_for_other_repeats():
    conf = brimd_conf("""
        [wsgi]
        [wsgi]
        port = 81
        [tcp#echo]
        [udp]
        [udp]
    """)
    assert conf.subconfigs("wsgi") == ["wsgi", "wsgi#2"]
    assert conf.subconfigs("udp") == ["udp", "udp#2"]
    with pytest.raises(ConfError) as info:
        brimd_conf("[echo]\ncall = a\n[echo]\ncall = b\n")
    assert str(info.value) == ("section [echo] appears twice (lines 1 and 3); only [wsgi], [tcp] "
                               "and [udp] may repeat (brimd.conf line 3)")


def test_error_texts_brimd_users_see():
    conf = brimd_conf("""
        [brim]
        workers = 2
        [wsgi]
        port = eighty
        prot = 2
    """)
    with pytest.raises(ConfError) as info:
        options.value(conf, "wsgi", "wsgi", "port")
    assert str(info.value) == "[wsgi] port: 'eighty' is not an integer (brimd.conf line 4)"
    with pytest.raises(ConfError) as info:
        options.check_sections(conf)
    assert str(info.value) == "[wsgi] prot: unknown option (did you mean 'port'?) (brimd.conf line 5)"
    bad_default = brimd_conf("[brimd]\nlog_level = loud\n[wsgi]\n")
    with pytest.raises(ConfError) as info:
        options.value(bad_default, "wsgi", "wsgi", "log_level")
    assert str(info.value).startswith("[brimd] log_level: 'loud' is not one of DEBUG, INFO")


def test_shorthand_conflict():
    with pytest.raises(ConfError) as info:
        brimd_conf("[brim]\nwsgi = a\n[wsgi]\napps = b\n")
    assert str(info.value) == ("[brim] wsgi: conflicts with 'apps' in [wsgi]; set it in one "
                               "place only (brimd.conf line 2)")


def test_read_conf_follows_additional_confs(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "port.conf").write_text("[brim]\nport = 81\n")
    main = tmp_path / "brimd.conf"
    main.write_text("[brimd]\nadditional_confs = conf.d/*.conf\nwsgi = echo\n")
    conf = read_conf([str(main)])
    assert len(conf.files) == 2
    assert options.value(conf, "wsgi", "wsgi", "port") == 81
    assert conf.get_list("wsgi", "apps") == ["echo"]
    assert read_conf([str(tmp_path / "none.conf")], missing_ok=True).files == []
