"""Options: required ones, validators and converters, and every error of a section at once."""

from __future__ import annotations

import pickle

import pytest

from brim.conf import Conf, ConfError, Dialect, Option, check_unknown, read_options

DIALECT = Dialect(defaults="settings", repeatable=("job",))


def parse(text: str) -> Conf:
    return Conf.from_string(text, "j.conf", dialect=DIALECT)


def even(value: int) -> None:
    if value % 2:
        raise ValueError(f"{value} is odd; use an even number")


def octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal number") from None


OPTIONS = [
    Option("command", required=True, doc="What to run."),
    Option("workers", "int", 2, "Processes.", inherit=True, minimum=1, validator=even),
    Option("umask", "str", "022", "Octal umask.", converter=octal),
    Option("hosts", "list", (), "Where.", inherit=True, required=False),
]


def test_required_option_set_reads():
    assert read_options(parse("[job]\ncommand = go\n"), "job", OPTIONS) == {
        "command": "go", "workers": 2, "umask": 0o22, "hosts": [],
    }


def test_missing_required_names_section_and_option():
    with pytest.raises(ConfError) as info:
        read_options(parse("[settings]\n[job]\nworkers = 4\n"), "job", OPTIONS)
    assert str(info.value) == "[job] command: required but not set (j.conf line 2)"


def test_required_in_a_section_that_is_not_there_at_all():
    with pytest.raises(ConfError) as info:
        read_options(parse(""), "job", OPTIONS)
    assert str(info.value) == "[job] command: required but not set"


@pytest.mark.parametrize("kind", ["str", "path", "list"])
def test_required_but_empty(kind):
    option = Option("where", kind, required=True)
    with pytest.raises(ConfError, match=r"^\[job\] where: required but empty \(j.conf line 2\)$"):
        option.read(parse("[job]\nwhere =  \n"), "job")


def test_required_inherited_from_the_defaults_section():
    option = Option("owner", required=True, inherit=True)
    assert option.read(parse("[settings]\nowner = ops\n[job]\n"), "job") == "ops"
    with pytest.raises(ConfError, match=r"^\[job\] owner: required but not set \(j.conf line 1\)$"):
        option.read(parse("[job]\n"), "job")


def test_validator_refuses_with_its_message_and_the_line():
    with pytest.raises(ConfError) as info:
        read_options(parse("[job]\ncommand = go\nworkers = 3\n"), "job", OPTIONS)
    assert str(info.value) == "[job] workers: 3 is odd; use an even number (j.conf line 3)"


def test_validator_of_an_inherited_value_names_the_defaults_section():
    with pytest.raises(ConfError) as info:
        read_options(parse("[settings]\nworkers = 5\n[job]\ncommand = go\n"), "job", OPTIONS)
    assert str(info.value) == "[settings] workers: 5 is odd; use an even number (j.conf line 2)"


def test_validator_runs_after_the_kind_and_its_bounds():
    with pytest.raises(ConfError, match=r"workers: 'x' is not an integer"):
        OPTIONS[1].read(parse("[job]\nworkers = x\n"), "job")
    with pytest.raises(ConfError, match=r"workers: -1 is too small"):
        OPTIONS[1].read(parse("[job]\nworkers = -1\n"), "job")


def test_validator_with_no_message():
    def refuse(value: str) -> None:
        raise ValueError

    option = Option("name", validator=refuse)
    with pytest.raises(ConfError, match=r"^\[job\] name: 'x' is not valid \(j.conf line 2\)$"):
        option.read(parse("[job]\nname = x\n"), "job")


def test_validator_is_not_run_on_the_default():
    option = Option("workers", "int", 3, validator=even)
    assert option.read(parse("[job]\n"), "job") == 3


def test_converter_turns_value_and_default():
    option = OPTIONS[2]
    assert option.read(parse("[job]\numask = 077\n"), "job") == 0o77
    assert option.read(parse("[job]\n"), "job") == 0o22
    with pytest.raises(ConfError) as info:
        option.read(parse("[job]\numask = 9\n"), "job")
    assert str(info.value) == "[job] umask: '9' is not an octal number (j.conf line 2)"


def test_converter_gets_the_validated_value():
    seen = []
    option = Option("n", "int", 2, validator=seen.append, converter=lambda n: n * 10)
    assert option.read(parse("[job]\nn = 4\n"), "job") == 40
    assert seen == [4]


def test_a_default_the_converter_refuses_is_the_programs_bug():
    option = Option("umask", "str", "999", converter=octal)
    with pytest.raises(ValueError, match="its converter refuses the default '999'") as info:
        option.read(parse("[job]\n"), "job")
    assert not isinstance(info.value, ConfError)


def test_blank_path_is_the_default_and_converted():
    option = Option("log", "path", "/var/log/x", converter=str.upper)
    assert option.read(parse("[job]\nlog =\n"), "job") == "/VAR/LOG/X"


def test_every_error_of_a_section_is_reported_together():
    conf = parse("[settings]\nworkers = 0\n[job]\nhosts = a\numask = 8\ncomand = go\n")
    with pytest.raises(ConfError) as info:
        read_options(conf, "job", OPTIONS, reject_unknown=True)
    assert info.value.problems == (
        "[job] comand: unknown option (did you mean 'command'?) (j.conf line 6)",
        "[job] command: required but not set (j.conf line 3)",
        "[settings] workers: 0 is too small (at least 1) (j.conf line 2)",
        "[job] umask: '8' is not an octal number (j.conf line 5)",
    )
    assert str(info.value) == "\n".join(info.value.problems)


def test_unknown_options_are_allowed_unless_rejected():
    conf = parse("[job]\ncommand = go\nextra = 1\n")
    assert read_options(conf, "job", OPTIONS)["command"] == "go"


def test_check_unknown_names_every_unknown_option():
    conf = parse("[job]\ncomand = a\nworkerz = 2\nzzz = 3\ncommand = b\n")
    with pytest.raises(ConfError) as info:
        check_unknown(conf, "job", [o.name for o in OPTIONS])
    assert info.value.problems == (
        "[job] comand: unknown option (did you mean 'command'?) (j.conf line 2)",
        "[job] workerz: unknown option (did you mean 'workers'?) (j.conf line 3)",
        "[job] zzz: unknown option (j.conf line 4)",
    )


def test_check_unknown_says_where_a_misplaced_option_belongs():
    conf = parse("[job]\nschedule = daily\ncomand = a\n")
    with pytest.raises(ConfError) as info:
        check_unknown(conf, "job", [o.name for o in OPTIONS],
                      hints={"schedule": "it belongs in [calendar]"})
    assert info.value.problems == (
        "[job] schedule: unknown option here (it belongs in [calendar]) (j.conf line 2)",
        "[job] comand: unknown option (did you mean 'command'?) (j.conf line 3)",
    )


def test_choices_error_names_the_defaults_section_it_came_from():
    option = Option("level", choices=("low", "high"), inherit=True)
    assert option.read(parse("[settings]\nlevel = HIGH\n[job]\n"), "job") == "high"
    with pytest.raises(ConfError, match=r"^\[settings\] level: 'loud' is not one of low, high \(j.conf line 2\)$"):
        option.read(parse("[settings]\nlevel = loud\n[job]\n"), "job")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "complex"}, "kind must be one of str, bool, int, float, path, list"),
        ({"required": True, "default": "x"}, "a required option has no default"),
        ({"kind": "int", "choices": ("1",)}, "choices are for str options only"),
    ],
)
def test_option_refuses_a_declaration_that_cannot_work(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Option("x", **kwargs)


def test_sample_line_of_a_required_option_has_no_value():
    assert OPTIONS[0].sample() == "# command ="
    assert OPTIONS[1].sample() == "# workers = 2"


def test_conf_error_keeps_its_problems_through_pickle():
    err = ConfError("[a] b: one", "[a] c: two")
    again = pickle.loads(pickle.dumps(err))
    assert again.problems == err.problems
    assert str(again) == "[a] b: one\n[a] c: two"
    assert ConfError.joined([err, ConfError("[d] e: three")]).problems == (
        "[a] b: one", "[a] c: two", "[d] e: three")
