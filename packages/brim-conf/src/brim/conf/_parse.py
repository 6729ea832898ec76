"""Turning the text of one conf file into sections of options.

Kept apart from :mod:`brim.conf._conf` so the rules of the syntax live in one
small place: comments, continuation lines, section headers and which sections
may repeat in one file (the last is the program's to say, in its
:class:`~brim.conf.Dialect`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._dialect import Dialect

_COMMENT_STARTS = ("#", ";")


@dataclass(frozen=True)
class Source:
    """Where a value was written: a file and a line in it."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path} line {self.line}"


@dataclass
class ParsedSection:
    """One section header of a file and the options written beneath it."""

    key: str
    """The name the section is stored under (``job#2`` for a repeated ``[job]``)."""
    header: str
    """The name as the user wrote it, used when reporting errors."""
    source: Source
    options: dict[str, tuple[str, Source]] = field(default_factory=dict)


class ParseError(ValueError):
    """A syntax error in one file; the reader turns it into a ConfError."""

    def __init__(self, message: str, source: Source | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source


def _check_section_name(name: str, source: Source) -> None:
    if not name:
        raise ParseError("empty section name", source)
    if any(ch.isspace() or ch in "[]" or not ch.isprintable() for ch in name):
        raise ParseError(f"bad section name [{name}]: no spaces or brackets allowed", source)
    if "#" in name:
        kind, _, sub = name.partition("#")
        if not kind or not sub or "#" in sub:
            raise ParseError(
                f"bad section name [{name}]: use [kind#name], with one '#' and text on both "
                "sides", source
            )


def _header_name(line: str, source: Source) -> str:
    """The name inside ``[...]``; a trailing comment after the bracket is allowed."""
    end = line.find("]")
    if end < 0:
        raise ParseError(f"section header {line!r} has no closing ']'", source)
    rest = line[end + 1 :].strip()
    if rest and not rest.startswith(_COMMENT_STARTS):
        raise ParseError(f"unexpected text after section header: {rest!r}", source)
    name = line[1:end].strip()
    _check_section_name(name, source)
    return name


def _split_option(line: str, source: Source) -> tuple[str, str]:
    positions = [pos for pos in (line.find("="), line.find(":")) if pos >= 0]
    if not positions:
        raise ParseError(f"expected 'option = value', got {line!r}", source)
    pos = min(positions)
    name = line[:pos].strip().lower()
    if not name:
        raise ParseError(f"option with no name: {line!r}", source)
    if any(ch.isspace() or not ch.isprintable() for ch in name):
        raise ParseError(f"bad option name {name!r}: no spaces allowed", source)
    return name, line[pos + 1 :].strip()


def _repeat_keys(headers: list[str], repeatable: tuple[str, ...]) -> list[str]:
    """Stored names for each header, numbering repeats of the repeatable kinds.

    Names the file spells out itself (``[wsgi#2]``) are never reused for an
    anonymous repeat, so the two can not collide.
    """
    taken = set(headers)
    counts: dict[str, int] = {}
    keys = []
    for header in headers:
        if header in repeatable and header in counts:
            counts[header] += 1
            while f"{header}#{counts[header]}" in taken:
                counts[header] += 1
            key = f"{header}#{counts[header]}"
            taken.add(key)
        else:
            counts.setdefault(header, 1)
            key = header
        keys.append(key)
    return keys


def parse_text(text: str, path: str, dialect: Dialect) -> list[ParsedSection]:
    """Parse the text of one conf file named ``path`` into its sections.

    Raises :class:`ParseError` for anything that is not valid syntax, for a
    section (other than the dialect's repeatable kinds) opened twice, and for
    an option set twice in one section.
    """
    sections: list[ParsedSection] = []
    current: ParsedSection | None = None
    last_option: str | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        source = Source(path, number)
        stripped = raw.strip()
        if not stripped:
            last_option = None
            continue
        if stripped.startswith(_COMMENT_STARTS):
            continue
        if raw[0] in " \t" and current is not None and last_option is not None:
            value, first = current.options[last_option]
            current.options[last_option] = (f"{value}\n{stripped}" if value else stripped, first)
            continue
        if stripped.startswith("["):
            name = _header_name(stripped, source)
            current = ParsedSection(dialect.canonical(name), name, source)
            sections.append(current)
            last_option = None
            continue
        if current is None:
            raise ParseError("option outside any section; add a [section] header above it", source)
        name, value = _split_option(stripped, source)
        if name in current.options:
            earlier = current.options[name][1]
            raise ParseError(
                f"[{current.header}] {name}: set twice (lines {earlier.line} and {number})", source
            )
        current.options[name] = (value, source)
        last_option = name
    _number_and_check_repeats(sections, dialect)
    return sections


def _number_and_check_repeats(sections: list[ParsedSection], dialect: Dialect) -> None:
    keys = _repeat_keys([s.key for s in sections], dialect.repeatable)
    seen: dict[str, ParsedSection] = {}
    for section, key in zip(sections, keys, strict=True):
        section.key = key
        if key in seen:
            first = seen[key]
            raise ParseError(
                f"section [{section.header}] appears twice (lines {first.source.line} and "
                f"{section.source.line}){dialect.repeat_hint()}",
                section.source,
            )
        seen[key] = section
