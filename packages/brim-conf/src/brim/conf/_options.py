"""Declaring a program's options once: name, kind, default, doc, checks.

A program lists its options as :class:`Option` values; reading and checking
them, defaults, "unknown option" errors (with a did-you-mean), a sample conf
and reference docs can all be derived from that one list, so they never drift
apart. Reading a section reports every mistake in it at once, since a user
would rather fix a conf in one go than once per run.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._conf import Conf
from ._errors import ConfError

#: The value kinds an Option may declare, each read by the Conf getter of that name:
#: ``str`` as written, ``bool`` (yes/no, true/false, on/off, 1/0), ``int``,
#: ``float`` (finite), ``path`` (``~`` expanded) and ``list`` (words split on
#: white space and new lines).
KINDS = ("str", "bool", "int", "float", "path", "list")


@dataclass(frozen=True)
class Option:
    """One option a program understands.

    ``inherit`` options fall back to the dialect's defaults section when a
    section does not set them. ``minimum`` and ``maximum`` bound ``int`` and
    ``float`` values. ``choices`` (for ``str``) are compared
    case-insensitively and the value is returned as the declared spelling.

    A ``required`` option has no default: leaving it unset (or empty) is an
    error naming the section and the option.

    A value the user wrote is read by its kind, then bounds and choices are
    checked, then ``validator(value)`` runs and may refuse it by raising
    ``ValueError("what is wrong")``; last, ``converter(value)`` turns it into
    what the program works with (it may raise ``ValueError`` too). The
    default is written as it would be in a conf file (so a sample conf can
    show it) and goes through the converter but not the validator: the
    program vouches for its own defaults.
    """

    name: str
    kind: str = "str"
    default: Any = None
    doc: str = ""
    inherit: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    required: bool = False
    validator: Callable[[Any], object] | None = None
    converter: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {', '.join(KINDS)}")
        if self.required and self.default is not None:
            raise ValueError(f"option {self.name}: a required option has no default")
        if self.choices and self.kind != "str":
            raise ValueError(f"option {self.name}: choices are for str options only")

    def read(self, conf: Conf, section: str) -> Any:
        """This option's value in ``section``: checked and converted, or its default.

        Raises :class:`ConfError` naming the section, the option and the
        line to fix.
        """
        found = conf.found_in(section, self.name, inherit=self.inherit)
        if found is None:
            if self.required:
                raise conf.error(section, self.name, "required but not set")
            return self._converted_default()
        value = self._typed(conf, section, found)
        if self.required and (value is None or value == "" or value == []):
            raise conf.error(found, self.name, "required but empty")
        if value is None:  # a blank path is the same as none
            return self._converted_default()
        if self.validator is not None:
            self._apply(self.validator, conf, found, value)
        if self.converter is not None:
            value = self._apply(self.converter, conf, found, value)
        return value

    def _apply(self, step: Callable[[Any], Any], conf: Conf, found: str, value: Any) -> Any:
        """``step(value)``, its ValueError turned into a ConfError pointing at the line."""
        try:
            return step(value)
        except ValueError as err:
            raise conf.error(found, self.name, str(err) or f"{value!r} is not valid") from None

    def _typed(self, conf: Conf, section: str, found: str) -> Any:
        """The value by its kind, bounds and choices checked; None for a blank path."""
        if self.kind == "int":
            return conf.get_int(
                section, self.name, inherit=self.inherit,
                minimum=self.minimum, maximum=self.maximum,
            )
        if self.kind == "float":
            return conf.get_float(
                section, self.name, inherit=self.inherit,
                minimum=self.minimum, maximum=self.maximum,
            )
        if self.kind == "bool":
            return conf.get_bool(section, self.name, inherit=self.inherit)
        if self.kind == "path":
            return conf.get_path(section, self.name, inherit=self.inherit)
        if self.kind == "list":
            return conf.get_list(section, self.name, inherit=self.inherit)
        value = conf.get(section, self.name, "", inherit=self.inherit) or ""
        if self.choices:
            for choice in self.choices:
                if value.strip().lower() == choice.lower():
                    return choice
            raise conf.error(found, self.name, f"{value!r} is not one of {', '.join(self.choices)}")
        return value

    def _converted_default(self) -> Any:
        """The default as the program gets it: a list kind's as a new list, converted."""
        default = self.default
        if self.kind == "list" and default is not None:
            default = list(default)  # the program may change it; the declaration stays
        if self.converter is None or default is None:
            return default
        try:
            return self.converter(default)
        except ValueError as err:
            raise ValueError(
                f"option {self.name}: its converter refuses the default {self.default!r}: {err}"
            ) from None

    def sample(self) -> str:
        """The option as a commented line for a sample conf file."""
        if self.default is None or self.default == "":
            shown = ""
        elif self.kind == "bool":
            shown = "yes" if self.default else "no"
        elif self.kind == "list":
            shown = " ".join(str(item) for item in self.default)
        else:
            shown = str(self.default)
        return f"# {self.name} = {shown}".rstrip()


def read_options(
    conf: Conf, section: str, options: Iterable[Option], *, reject_unknown: bool = False
) -> dict[str, Any]:
    """Every declared option's value in ``section``, by name.

    Every problem in the section is reported at once, in one ConfError with
    a line per problem. With ``reject_unknown``, options the section sets
    but ``options`` does not declare are among them (see :func:`check_unknown`).
    """
    declared = list(options)
    problems: list[ConfError] = []
    if reject_unknown:
        try:
            check_unknown(conf, section, [o.name for o in declared])
        except ConfError as err:
            problems.append(err)
    values: dict[str, Any] = {}
    for option in declared:
        try:
            values[option.name] = option.read(conf, section)
        except ConfError as err:
            problems.append(err)
    if problems:
        raise ConfError.joined(problems)
    return values


def check_unknown(
    conf: Conf, section: str, known: Iterable[str] | Mapping[str, Any],
    hints: Mapping[str, str] | None = None,
) -> None:
    """Raise one ConfError naming every option in ``section`` that is not in ``known``.

    Each suggests the closest known name, since most unknown options are
    typos of real ones. ``hints`` says, by option name, where an option
    that is real but misplaced belongs instead (``{"apps": "it belongs in
    [web]"}``); a hint replaces the did-you-mean.
    """
    names = set(known)
    problems = []
    for option in conf.options(section):
        if option in names:
            continue
        if hints and option in hints:
            problems.append(conf.error(section, option, f"unknown option here ({hints[option]})"))
            continue
        close = difflib.get_close_matches(option, sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(conf.error(section, option, f"unknown option{hint}"))
    if problems:
        raise ConfError.joined(problems)
