"""Declaring a program's options once: name, type, default, doc.

A program lists its options as :class:`Option` values; validation, defaults,
"unknown option" errors (with a did-you-mean), a sample conf and reference
docs can all be derived from that one list, so they never drift apart.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._conf import Conf

#: The value types an Option may declare, each read by the Conf getter of that name.
KINDS = ("str", "bool", "int", "float", "path", "list")


@dataclass(frozen=True)
class Option:
    """One option a program understands.

    ``inherit`` options fall back to ``[brim]`` when a section does not set
    them. ``choices`` (for ``str``) are compared case-insensitively and the
    value is returned as the declared spelling.
    """

    name: str
    kind: str
    default: Any
    doc: str
    inherit: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: kind must be one of {', '.join(KINDS)}")

    def read(self, conf: Conf, section: str) -> Any:
        """This option's value in ``section``, typed, or its default."""
        if self.kind == "int":
            return conf.get_int(
                section, self.name, self.default, inherit=self.inherit,
                minimum=self.minimum, maximum=self.maximum,  # type: ignore[arg-type]
            )
        if self.kind == "float":
            return conf.get_float(
                section, self.name, self.default, inherit=self.inherit,
                minimum=self.minimum, maximum=self.maximum,
            )
        if self.kind == "bool":
            return conf.get_bool(section, self.name, self.default, inherit=self.inherit)
        if self.kind == "path":
            return conf.get_path(section, self.name, self.default, inherit=self.inherit)
        if self.kind == "list":
            return conf.get_list(section, self.name, self.default, inherit=self.inherit)
        value = conf.get(section, self.name, self.default, inherit=self.inherit)
        if self.choices and value is not None:
            for choice in self.choices:
                if value.strip().lower() == choice.lower():
                    return choice
            found = section if conf.get(section, self.name) is not None else "brim"
            raise conf.error(
                found, self.name, f"{value!r} is not one of {', '.join(self.choices)}"
            )
        return value

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


def read_options(conf: Conf, section: str, options: Iterable[Option]) -> dict[str, Any]:
    """Every declared option's value in ``section``; raises ConfError on a bad one."""
    return {option.name: option.read(conf, section) for option in options}


def check_unknown(
    conf: Conf, section: str, known: Iterable[str] | Mapping[str, Any]
) -> None:
    """Raise ConfError for the first option in ``section`` that is not in ``known``.

    The message suggests the closest known name, since most unknown options
    are typos of real ones.
    """
    names = set(known)
    for option in conf.options(section):
        if option in names:
            continue
        close = difflib.get_close_matches(option, sorted(names), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise conf.error(section, option, f"unknown option{hint}")
