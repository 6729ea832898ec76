"""brimd.conf-sample is generated from the option tables and must stay true to them.

The committed file must be exactly what ``sample_conf()`` prints (so a new
option cannot be forgotten), it must parse as it is, every option line in it
must be an option its section accepts, shown with its real default, and the
complete example at its end must be a conf brimd accepts.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

from brim.conf import Conf, check_unknown
from brim.server import Server
from brim.server.dialect import BRIMD_DIALECT, MAIN_SECTION, read_conf
from brim.server.options import SECTION_OPTIONS, reference_rst, sample_conf

SAMPLE = pathlib.Path(__file__).resolve().parents[1] / "brimd.conf-sample"

# "# [section]" and "# name = value" (or "# name =") lines, as a user would uncomment them.
_HEADER = re.compile(r"^# (\[[a-z#]+\])$")
_OPTION = re.compile(r"^# ([a-z_]+) =( .*)?$")
_KINDS = {"[brim]": MAIN_SECTION, "[wsgi]": "wsgi", "[tcp#echo]": "tcp", "[udp#echo]": "udp",
          "[daemons]": "daemons"}


def _uncommented_options() -> list[tuple[str, str, str]]:
    """(section, option, shown default) for every option line of the sample."""
    found, section = [], None
    for line in SAMPLE.read_text().splitlines():
        header = _HEADER.match(line)
        if header:
            section = header.group(1)
            continue
        option = _OPTION.match(line)
        if option and section is not None:
            found.append((section, option.group(1), (option.group(2) or "").strip()))
    return found


def test_committed_sample_is_what_the_tables_generate():
    assert SAMPLE.read_text() == sample_conf(), (
        "brimd.conf-sample is stale; regenerate it with "
        "python -m brim.server.options > packages/brimd/brimd.conf-sample"
    )


def test_module_prints_the_sample():
    run = subprocess.run([sys.executable, "-m", "brim.server.options"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == sample_conf()


def test_sample_as_it_is_parses_and_configures_nothing():
    conf = read_conf([str(SAMPLE)])
    assert conf.sections() == []


def test_every_option_is_in_the_sample_under_a_section_that_accepts_it():
    shown = _uncommented_options()
    by_section: dict[str, list[str]] = {}
    for header, name, _ in shown:
        by_section.setdefault(header, []).append(name)
    assert set(by_section) == set(_KINDS)
    for header, names in by_section.items():
        accepted = {o.name for o in SECTION_OPTIONS[_KINDS[header]]}
        assert set(names) <= accepted, header
    # Each option appears exactly once; inherited ones under [brim].
    all_names = [name for _, name, _ in shown]
    declared = {o.name for options in SECTION_OPTIONS.values() for o in options}
    assert sorted(set(all_names)) == sorted(declared)
    repeated = {name for name in all_names if all_names.count(name) > 1}
    # Per-subconfig options without a [brim] default: call in [tcp#echo] and
    # [udp#echo], socket_name in every listening subconfig.
    assert repeated == {"call", "socket_name"}


def test_uncommenting_every_option_gives_the_defaults():
    """Uncomment each section with the options that have a default: same values as unset."""
    text = []
    for header, name, value in _uncommented_options():
        if value:
            text.append(f"{header}\n{name} = {value}\n")
    merged: dict[str, list[str]] = {}
    for chunk in text:
        header, line = chunk.strip().split("\n")
        merged.setdefault(header, []).append(line)
    conf_text = "\n".join(f"{h}\n" + "\n".join(lines) + "\n" for h, lines in merged.items())
    conf = Conf.from_string(conf_text, "uncommented-sample", dialect=BRIMD_DIALECT)
    empty = Conf.from_string("", "empty", dialect=BRIMD_DIALECT)
    for header, kind in _KINDS.items():
        section = header[1:-1]
        if header not in merged:
            continue
        check_unknown(conf, section, [o.name for o in SECTION_OPTIONS[kind]])
        for declared in SECTION_OPTIONS[kind]:
            assert declared.read(conf, section) == declared.read(empty, section), (
                f"{header} {declared.name}: the sample does not show the default"
            )


def test_example_at_the_end_is_a_conf_brimd_accepts():
    lines = SAMPLE.read_text().splitlines()
    start = lines.index("#   [brim]")
    example = "\n".join(line[4:] for line in lines[start:] if line.startswith("#   "))
    conf = Conf.from_string(example, "sample-example", dialect=BRIMD_DIALECT)
    server = Server(conf)
    assert sorted(s.group for s in server.subservers) == [
        "daemon:sample", "tcp#echo", "udp#echo", "wsgi"]


def test_reference_names_every_option():
    text = reference_rst()
    for options in SECTION_OPTIONS.values():
        for declared in options:
            assert f".. describe:: {declared.name}" in text


@pytest.mark.parametrize("doc, escaped", [("a*b", r"a\*b"), ("x_y", r"x\_y"), ("`q`", r"\`q\`")])
def test_reference_escapes_markup(doc, escaped):
    from brim.server.options import _rst_text

    assert _rst_text(doc) == escaped
