"""Typed getters, defaults, the defaults-section fallback and the messages of their errors."""

from __future__ import annotations

import os

import pytest
from conf_testlib import BRIMD

from brim.conf import Conf, ConfError, Option, check_unknown, read_options

TEXT = """[brim]
port = 80
workers = 4
log_headers = on
client_timeout = 2.5
[wsgi]
port = eighty
count_status_codes = 404 408
  499
flag = maybe
ratio = fast
home = ~/x
small = -3
nan = nan
"""


@pytest.fixture
def conf() -> Conf:
    return Conf.from_string(TEXT, "brimd.conf", dialect=BRIMD)


def test_missing_options_give_defaults(conf):
    assert conf.get("wsgi", "nothing") is None
    assert conf.get("wsgi", "nothing", "d") == "d"
    assert conf.get("nosuchsection", "x", 1) == 1
    assert conf.get_int("wsgi", "nothing", 7) == 7
    assert conf.get_bool("wsgi", "nothing", True) is True
    assert conf.get_list("wsgi", "nothing", ["a"]) == ["a"]
    assert conf.get_path("wsgi", "nothing") is None


def test_inherit_falls_back_to_brim_only_when_asked(conf):
    assert conf.get_int("wsgi", "workers", 1) == 1
    assert conf.get_int("wsgi", "workers", 1, inherit=True) == 4
    assert conf.get_float("wsgi", "client_timeout", 60.0, inherit=True) == 2.5
    assert conf.get_bool("wsgi", "log_headers", False, inherit=True) is True


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.get_int("wsgi", "port"), "[wsgi] port: 'eighty' is not an integer (brimd.conf line 7)"),
        (lambda c: c.get_bool("wsgi", "flag"), "[wsgi] flag: 'maybe' is not a boolean"),
        (lambda c: c.get_float("wsgi", "ratio"), "[wsgi] ratio: 'fast' is not a number"),
        (lambda c: c.get_float("wsgi", "nan"), "[wsgi] nan: 'nan' is not a finite number"),
        (lambda c: c.get_int("wsgi", "small", minimum=0), "[wsgi] small: -3 is too small (at least 0)"),
        (lambda c: c.get_int("brim", "port", maximum=10), "[brim] port: 80 is too large (at most 10)"),
    ],
)
def test_bad_values_say_what_to_fix(conf, call, message):
    with pytest.raises(ConfError) as info:
        call(conf)
    assert str(info.value).startswith(message)


def test_inherited_bad_value_names_brim_section():
    conf = Conf.from_string("[brim]\nworkers = x\n[wsgi]\n", "b.conf", dialect=BRIMD)
    with pytest.raises(ConfError, match=r"^\[brim\] workers: 'x' is not an integer \(b.conf line 2\)"):
        conf.get_int("wsgi", "workers", 1, inherit=True)


@pytest.mark.parametrize("word", ["yes", "TRUE", "On", "1"])
def test_true_words(word):
    assert Conf({"s": {"o": word}}).get_bool("s", "o") is True


@pytest.mark.parametrize("word", ["no", "False", "OFF", "0"])
def test_false_words(word):
    assert Conf({"s": {"o": word}}).get_bool("s", "o", True) is False


def test_list_and_path(conf):
    assert conf.get_list("wsgi", "count_status_codes") == ["404", "408", "499"]
    assert conf.get_path("wsgi", "home") == os.path.expanduser("~/x")


def test_repeated_wsgi_error_points_at_its_own_header():
    conf = Conf.from_string("[wsgi]\n[wsgi]\nport = x\n", "b.conf", dialect=BRIMD)
    with pytest.raises(ConfError, match=r"^\[wsgi\] port: 'x' is not an integer \(b.conf line 3\)"):
        conf.get_int("wsgi#2", "port")


def test_options_table_reads_and_rejects_unknown():
    options = [
        Option("port", "int", 80, "Port to listen on.", inherit=True, minimum=0, maximum=65535),
        Option("log_level", "str", "INFO", "Level.", inherit=True, choices=("DEBUG", "INFO")),
        Option("apps", "list", (), "Apps."),
    ]
    conf = Conf.from_string("[brim]\nport = 81\nlog_level = debug\n[wsgi]\napps = a\nprot = 2\n", "c", dialect=BRIMD)
    assert read_options(conf, "wsgi", options) == {"port": 81, "log_level": "DEBUG", "apps": ["a"]}
    with pytest.raises(ConfError, match=r"^\[wsgi\] prot: unknown option \(did you mean 'port'\?\) \(c line 6\)"):
        check_unknown(conf, "wsgi", [o.name for o in options])
    bad = Conf.from_string("[brim]\nlog_level = loud\n", "c", dialect=BRIMD)
    with pytest.raises(ConfError, match=r"\[brim\] log_level: 'loud' is not one of DEBUG, INFO"):
        read_options(bad, "wsgi", options)
    assert options[0].sample() == "# port = 80"


def test_option_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        Option("x", "complex", 0, "doc")
