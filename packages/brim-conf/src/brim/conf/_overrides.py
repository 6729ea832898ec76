"""Values set outside the conf files: on a command line, or in the environment.

Why in brim-conf: a program run by an orchestrator gets its settings from
the environment (a container's ``WORKERS``) or from one more flag, and
each such value must be checked, reported and shown like one from a file:
with where it came from. brim-conf knows no program's names, so the caller
chooses the prefix of its variables and what its command-line flag is
called; the naming rule is the same for every program.

The environment rule: ``PREFIX`` + the section's *env name* + ``__`` + the
option in capitals, such as ``APP_SERVER__PORT`` for ``[server] port``. A
section's env name is its name in capitals with ``#`` written as ``__`` and
every other character that is not a letter, digit or ``_`` (``-``, ``.``)
written as ``_``: ``[job#logs]`` is ``JOB__LOGS``, so ``APP_JOB__LOGS__AT``
sets ``at`` in ``[job#logs]``. The option is what follows the last ``__``.
A variable is matched against the sections the conf has (and those the
caller names): two sections with one env name (``[a-b]`` and ``[a_b]``)
make a variable naming them an error that names both, never a guess.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._errors import ConfError, format_error

__all__ = ["Override", "env_name", "environment_overrides", "parse_override"]

_NOT_WORD = re.compile(r"[^A-Z0-9_]")


@dataclass(frozen=True)
class Override:
    """One value set outside the files: ``[section] option = value``, and from where.

    ``origin`` is what a user reads in errors and in a listing of the
    effective conf, such as ``--set server.port=8080`` or ``environment
    variable APP_SERVER__PORT``; a Conf keeps it as the value's source.
    """

    section: str
    option: str
    value: str
    origin: str

    def __str__(self) -> str:
        return self.origin


def parse_override(text: str, origin: str | None = None) -> Override:
    """``section.option=value`` as an Override (the option is what follows the last dot).

    ``origin`` defaults to the text itself; a program passes its flag, as
    in ``--set server.port=8080``. A text that is not of that form is a
    ConfError saying what is expected.
    """
    name, equals, value = text.partition("=")
    section, dot, option = name.strip().rpartition(".")
    origin = origin or text
    if not equals or not dot or not section or not option or any(
            ch.isspace() or ch in "[]" for ch in section + option):
        raise ConfError(f"{origin}: expected section.option=value, such as "
                        "server.port=8080")
    return Override(section, option.lower(), value.strip(), origin)


def env_name(prefix: str, section: str, option: str | None = None) -> str:
    """The variable that sets ``[section] option`` (without ``option``: its section part)."""
    part = _NOT_WORD.sub("_", section.upper().replace("#", "__"))
    if option is None:
        return prefix + part
    return f"{prefix}{part}__{_NOT_WORD.sub('_', option.upper())}"


def environment_overrides(environ: Mapping[str, str], prefix: str,
                          sections: Iterable[str]) -> list[Override]:
    """The overrides the variables starting with ``prefix`` set, in name order.

    ``sections`` are the names a variable may mean (the conf's sections and
    any the program knows of); one whose env name matches no section names
    a new one, its part read back in lower case with ``__`` as ``#``.
    Variables with the prefix but no ``__`` after it are not overrides
    (a program may keep variables of its own under its prefix).
    """
    by_env: dict[str, list[str]] = {}
    for section in dict.fromkeys(sections):
        by_env.setdefault(env_name("", section), []).append(section)
    found: list[Override] = []
    problems: list[str] = []
    for var in sorted(environ):
        rest = var[len(prefix):]
        if not var.startswith(prefix) or "__" not in rest:
            continue
        part, _, option = rest.rpartition("__")
        origin = f"environment variable {var}"
        if not part or not option:
            problems.append(format_error(None, None, "expected PREFIX<SECTION>__<OPTION>",
                                         origin))
            continue
        matches = by_env.get(part.upper(), [])
        if len(matches) > 1:
            names = " and ".join(f"[{name}]" for name in matches)
            problems.append(format_error(None, None, f"names both {names}; set the option "
                                         "on the command line instead", origin))
            continue
        section = matches[0] if matches else part.lower().replace("__", "#")
        found.append(Override(section, option.lower(), environ[var].strip(), origin))
    if problems:
        raise ConfError(*problems)
    return found


def unknown_section(override: Override, known: Iterable[str]) -> str:
    """The error line for an override naming a section that is neither in the conf nor known."""
    close = difflib.get_close_matches(override.section, sorted(set(known)), n=1)
    hint = f" (did you mean [{close[0]}]?)" if close else ""
    return format_error(override.section, override.option, f"unknown section{hint}",
                        override.origin)
