"""Dialects: a plain Conf knows no program's words; a program's dialect adds its own."""

from __future__ import annotations

import pickle

import pytest
from conf_testlib import BRIMD

from brim.conf import DEFAULT_SECTION, Conf, ConfError, Dialect

JOBS = Dialect(
    defaults="settings",
    aliases=("defaults",),
    repeatable=("job",),
    include="also_read",
    shorthands={"commands": ("batch", "run")},
)


def test_plain_conf_has_a_default_section_and_nothing_else_special():
    assert Conf().dialect == Dialect()
    assert DEFAULT_SECTION == "DEFAULT"
    conf = Conf.from_string(
        "[DEFAULT]\nport = 80\nwsgi = a b\nadditional_confs = x.conf\n[server]\n[brimd]\nport = 1\n",
        "p.conf",
    )
    assert conf.get_int("server", "port", inherit=True) == 80
    assert conf.get_int("server", "port") is None
    # brimd's words are plain sections and options here.
    assert conf.sections() == ["DEFAULT", "server", "brimd"]
    assert not conf.has_section("brim")
    assert not conf.has_section("wsgi")
    assert conf.files == []


@pytest.mark.parametrize("kind", ["wsgi", "tcp", "udp", "job"])
def test_plain_conf_repeats_nothing(kind):
    with pytest.raises(ConfError) as info:
        Conf.from_string(f"[{kind}]\n[{kind}]\n", "p.conf")
    assert str(info.value) == f"section [{kind}] appears twice (lines 1 and 2) (p.conf line 2)"


def test_plain_conf_without_defaults_section_inherits_nothing():
    conf = Conf.from_string("[DEFAULT]\nport = 80\n[server]\n", dialect=Dialect(defaults=None))
    assert conf.get_int("server", "port", 1, inherit=True) == 1


def test_own_defaults_section_and_its_alias():
    conf = Conf.from_string("[defaults]\nretries = 2\n[job]\n[DEFAULT]\nretries = 9\n", "j.conf",
                            dialect=JOBS)
    assert conf.sections() == ["settings", "job", "DEFAULT"]
    assert conf.get_int("job", "retries", inherit=True) == 2
    assert conf.found_in("job", "retries", inherit=True) == "settings"
    assert conf.found_in("job", "retries") is None
    # Errors name the section as the user spelled it.
    bad = Conf.from_string("[defaults]\nretries = x\n[job]\n", "j.conf", dialect=JOBS)
    with pytest.raises(ConfError, match=r"^\[defaults\] retries: 'x' is not an integer \(j.conf line 2\)$"):
        bad.get_int("job", "retries", inherit=True)


def test_own_repeatable_kind():
    conf = Conf.from_string("[job]\nrun = a\n[job]\nrun = b\n[job#x]\n[job]\n", dialect=JOBS)
    assert conf.subconfigs("job") == ["job", "job#2", "job#x", "job#3"]
    assert conf.get("job#2", "run") == "b"
    with pytest.raises(ConfError, match=r"section \[batch\] appears twice \(lines 1 and 2\); only \[job\] may repeat"):
        Conf.from_string("[batch]\n[batch]\n", dialect=JOBS)


def test_own_include_option(tmp_path):
    (tmp_path / "more.conf").write_text("[job]\nrun = more\n")
    main = tmp_path / "main.conf"
    main.write_text("[settings]\nalso_read = more.conf\n")
    assert Conf.read(main, dialect=JOBS).get("job", "run") == "more"
    # Without the dialect, also_read is just an option: nothing more is read.
    plain = Conf.read(main)
    assert plain.files == [str(main)] and not plain.has_section("job")
    (tmp_path / "main.conf").write_text("[settings]\nalso_read = main.conf\n")
    with pytest.raises(ConfError, match="also_read include cycle"):
        Conf.read(main, dialect=JOBS)
    (tmp_path / "main.conf").write_text("[settings]\nalso_read = gone.conf\n")
    with pytest.raises(ConfError, match=r"gone.conf: conf file not found \(named by also_read, .*main.conf line 2\)"):
        Conf.read(main, dialect=JOBS)


def test_include_option_is_read_only_in_the_defaults_section(tmp_path):
    (tmp_path / "more.conf").write_text("[job]\nrun = more\n")
    main = tmp_path / "main.conf"
    main.write_text("[job]\nalso_read = more.conf\n")
    assert Conf.read(main, dialect=JOBS).options("job") == {"also_read": "more.conf"}


def test_own_shorthand():
    conf = Conf.from_string("[settings]\ncommands = a b\n", "j.conf", dialect=JOBS)
    assert conf.get_list("batch", "run") == ["a", "b"]
    assert conf.where("batch", "run") == "j.conf line 2"
    with pytest.raises(ConfError, match=r"^\[settings\] commands: conflicts with 'run' in \[batch\]; set it in one place only"):
        Conf.from_string("[settings]\ncommands = a\n[batch]\nrun = b\n", dialect=JOBS)
    # The same words mean nothing without the dialect.
    assert not Conf.from_string("[settings]\ncommands = a b\n").has_section("batch")


def test_shorthand_in_a_conf_built_from_a_dict():
    conf = Conf({"defaults": {"Commands": "x"}}, dialect=JOBS)
    assert conf.get("batch", "run") == "x"


def test_brimd_like_dialect_keeps_brimd_words():
    conf = Conf.from_string("[brimd]\nwsgi = a\n[tcp]\n[tcp]\n", "b.conf", dialect=BRIMD)
    assert conf.get("wsgi", "apps") == "a"
    assert conf.subconfigs("tcp") == ["tcp", "tcp#2"]
    with pytest.raises(ConfError) as info:
        Conf.from_string("[echo]\n[echo]\n", "b.conf", dialect=BRIMD)
    assert str(info.value) == (
        "section [echo] appears twice (lines 1 and 2); only [wsgi], [tcp] and [udp] may repeat "
        "(b.conf line 2)"
    )


@pytest.mark.parametrize(
    ("kinds", "hint"),
    [((), ""), (("a",), "; only [a] may repeat"), (("a", "b"), "; only [a] and [b] may repeat")],
)
def test_repeat_hint(kinds, hint):
    assert Dialect(repeatable=kinds).repeat_hint() == hint


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"repeatable": "job"}, TypeError, "not the string 'job'"),
        ({"aliases": "brimd"}, TypeError, "not the string 'brimd'"),
        ({"repeatable": ("a b",)}, ValueError, "is not a section name"),
        ({"repeatable": ("job#2",)}, ValueError, "is not a section name"),
        ({"defaults": ""}, ValueError, "is not a section name"),
        ({"defaults": None, "include": "more"}, ValueError, "include: needs a defaults section"),
        ({"defaults": None, "aliases": ("x",)}, ValueError, "aliases: needs a defaults section"),
        ({"defaults": None, "shorthands": {"a": ("b", "c")}}, ValueError, "needs a defaults section"),
        ({"shorthands": {"a": "b"}}, TypeError, "must map to (section, option)"),
        ({"repeatable": ("DEFAULT",)}, ValueError, "the defaults section can not repeat"),
    ],
)
def test_dialect_refuses_what_it_cannot_mean(kwargs, error, message):
    with pytest.raises(error) as info:
        Dialect(**kwargs)
    assert message in str(info.value)


def test_dialect_is_a_value():
    same = Dialect(defaults="settings", aliases=["defaults"], repeatable=["job"],  # type: ignore[arg-type]
                   include="also_read", shorthands={"Commands": ("batch", "Run")})
    assert same == JOBS
    assert hash(JOBS) == hash(Dialect(**{f: getattr(JOBS, f) for f in
                                         ("defaults", "aliases", "repeatable", "include",
                                          "shorthands")}))
    assert pickle.loads(pickle.dumps(Dialect(repeatable=("job",)))) == Dialect(repeatable=("job",))
    with pytest.raises(AttributeError):
        JOBS.defaults = "x"  # type: ignore[misc]
