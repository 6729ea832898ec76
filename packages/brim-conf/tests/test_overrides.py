"""Overrides: values from a command line and the environment over the files.

Each is kept with its origin, so errors and ``where`` name it as they name a
file's line; the environment's naming rule is checked for ``#`` and ``-`` in
section names, and a variable two sections could mean is refused.
"""

from __future__ import annotations

import pytest

from brim.conf import (
    Conf,
    ConfError,
    ConfProblems,
    Dialect,
    Option,
    env_name,
    environment_overrides,
    parse_override,
    read_options,
)

DIALECT = Dialect(defaults="settings", repeatable=("job",), shorthands={"jobs": ("queue",
                                                                                 "names")})
TEXT = "[settings]\nretries = 1\n\n[job#logs]\nat = 03:00\n\n[web-api]\nport = 80\n"


def parse(text: str = TEXT) -> Conf:
    return Conf.from_string(text, "j.conf", dialect=DIALECT)


def test_parse_override_splits_at_the_first_equals_and_the_last_dot():
    found = parse_override("job#logs.v2.At = a=b ", "--set job#logs.v2.At = a=b ")
    assert (found.section, found.option, found.value) == ("job#logs.v2", "at", "a=b")
    assert str(found) == "--set job#logs.v2.At = a=b "


@pytest.mark.parametrize("text", ["retries=2", "settings.=2", ".retries=2", "settings.retries",
                                  "set tings.retries=2"])
def test_parse_override_refuses_what_is_not_section_option_value(text):
    with pytest.raises(ConfError) as caught:
        parse_override(text, f"--set {text}")
    assert str(caught.value) == (f"--set {text}: expected section.option=value, such as "
                                 "server.port=8080")


def test_env_name_writes_hash_as_double_underscore_and_other_marks_as_one():
    assert env_name("APP_", "settings", "retries") == "APP_SETTINGS__RETRIES"
    assert env_name("APP_", "job#logs", "at") == "APP_JOB__LOGS__AT"
    assert env_name("APP_", "web-api", "port") == "APP_WEB_API__PORT"
    assert env_name("APP_", "job#logs") == "APP_JOB__LOGS"


def test_environment_overrides_match_the_conf_sections_by_env_name():
    conf = parse()
    environ = {"APP_JOB__LOGS__AT": "04:00", "APP_WEB_API__PORT": "8080",
               "APP_SETTINGS__RETRIES": "3", "APP_OWN": "not an override", "OTHER": "x"}
    found = environment_overrides(environ, "APP_", conf.sections())
    assert [(o.section, o.option, o.value) for o in found] == [
        ("job#logs", "at", "04:00"), ("settings", "retries", "3"), ("web-api", "port", "8080")]
    conf.apply(found)
    assert conf.get("job#logs", "at") == "04:00" and conf.get("web-api", "port") == "8080"
    assert conf.where("web-api", "port") == "environment variable APP_WEB_API__PORT"
    assert conf.where("job#logs", "at") == "environment variable APP_JOB__LOGS__AT"


def test_a_variable_naming_no_section_names_a_new_one_read_back():
    found = environment_overrides({"APP_JOB__NIGHT__AT": "1"}, "APP_", [])
    assert (found[0].section, found[0].option) == ("job#night", "at")


def test_a_variable_two_sections_could_mean_is_refused_naming_both():
    conf = parse(TEXT + "\n[web_api]\nport = 81\n")
    with pytest.raises(ConfError) as caught:
        environment_overrides({"APP_WEB_API__PORT": "1"}, "APP_", conf.sections())
    assert str(caught.value) == ("names both [web-api] and [web_api]; set the option on the "
                                 "command line instead (environment variable APP_WEB_API__PORT)")


def test_the_later_override_wins_and_errors_name_it():
    conf = parse()
    env = environment_overrides({"APP_SETTINGS__RETRIES": "2"}, "APP_", conf.sections())
    conf.apply([*env, parse_override("settings.retries=lots", "--set settings.retries=lots")])
    option = Option("retries", "int", 0, inherit=True)
    with pytest.raises(ConfError) as caught:
        read_options(conf, "job#logs", [option])
    assert str(caught.value) == ("[settings] retries: 'lots' is not an integer "
                                 "(--set settings.retries=lots)")


def test_an_override_may_add_only_the_sections_allowed_with_a_did_you_mean():
    conf = parse()
    bad = [parse_override("web-apj.port=1", "--set web-apj.port=1"),
           parse_override("queue.names=a", "--set queue.names=a")]
    with pytest.raises(ConfError) as caught:
        conf.apply(bad, sections=["settings"])
    assert caught.value.problems == (
        "[web-apj] port: unknown section (did you mean [web-api]?) (--set web-apj.port=1)",
        "[queue] names: unknown section (--set queue.names=a)")
    assert conf.get("web-api", "port") == "80"  # nothing applied
    conf.apply(bad[1:], sections=["queue"])
    assert conf.get("queue", "names") == "a"
    assert conf.error("queue", None, "no worker").problems == (
        "[queue] no worker (--set queue.names=a)",)


def test_an_overridden_shorthand_sets_what_it_stands_for():
    conf = Conf.from_string("[settings]\njobs = a\n", "j.conf", dialect=DIALECT)
    conf.apply([parse_override("settings.jobs=b c", "--set settings.jobs=b c")])
    assert conf.get_list("queue", "names") == ["b", "c"]
    assert conf.where("queue", "names") == "--set settings.jobs=b c"


def test_problems_are_gathered_in_order_each_once():
    problems = ConfProblems()
    for text in ("one", "two", "one"):
        with problems.check():
            raise ConfError(text)
    with problems.check():
        pass
    with pytest.raises(ConfError) as caught:
        problems.raise_any()
    assert caught.value.problems == ("one", "two")
    ConfProblems().raise_any()  # nothing gathered: nothing raised
