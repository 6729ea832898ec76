"""The :class:`Conf` object: files read in order, sections, typed getters.

A Conf is a plain mapping of section name to option name to string value,
remembering where each value was written so that every error can point at the
line to fix. Typed getters turn strings into values at the moment a program
asks, with the program's own default, so one Conf can serve many readers that
each know only their own options. What the program calls its defaults
section, which sections repeat and so on comes from its
:class:`~brim.conf.Dialect`, never from here.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeAlias, TypeVar

from ._dialect import Dialect
from ._errors import ConfError, format_error
from ._overrides import Override, unknown_section
from ._parse import ParseError, Source, parse_text

T = TypeVar("T")
_N = TypeVar("_N", int, float)

#: What :meth:`Conf.read` accepts: one path, or several in the order to read them.
PathArg: TypeAlias = str | os.PathLike[str]
Paths: TypeAlias = PathArg | Iterable[PathArg]

_PLAIN = Dialect()

_TRUE = frozenset(("yes", "true", "on", "1"))
_FALSE = frozenset(("no", "false", "off", "0"))
_GLOB_CHARS = frozenset("*?[")


class Conf:
    """Configuration read from one or more INI-style files.

    ``store`` maps section names to ``{option: value}`` dicts of strings, for
    building a Conf in code; most programs use :meth:`read` instead.
    ``dialect`` holds the program's own words (its defaults section, the
    sections that may repeat, ...); without one, the defaults section is
    ``[DEFAULT]`` and nothing else is special. Option names are
    case-insensitive (stored lower case); section names are not.
    """

    def __init__(
        self,
        store: Mapping[str, Mapping[str, str]] | None = None,
        files: Sequence[str] = (),
        *,
        dialect: Dialect | None = None,
    ) -> None:
        self.dialect: Dialect = dialect if dialect is not None else _PLAIN
        self.store: dict[str, dict[str, str]] = {}
        self.files: list[str] = list(files)
        self._where: dict[tuple[str, str], Source | Override] = {}
        self._headers: dict[str, tuple[str, Source | Override | None]] = {}
        for section, options in (store or {}).items():
            key = self.dialect.canonical(section)
            target = self.store.setdefault(key, {})
            self._headers.setdefault(key, (key, None))
            for name, value in options.items():
                target[name.lower()] = str(value)
        self._apply_shorthands()

    # -- building ---------------------------------------------------------

    @classmethod
    def read(
        cls, paths: Paths, *, missing_ok: bool = False, dialect: Dialect | None = None
    ) -> Conf:
        """Read one path, or several in order; a later file overrides an earlier one
        option by option.

        With ``missing_ok`` (for a program's default locations) a file that
        does not exist is skipped; otherwise it is a :class:`ConfError`, as is
        a file that cannot be read, is a directory, or is not UTF-8. If the
        dialect has an include option, the files it names in a file's
        defaults section are read right after that file, relative to its
        directory.
        """
        conf = cls(dialect=dialect)
        # A lone path is one file, never a sequence of one-letter file names.
        every = [paths] if isinstance(paths, (str, bytes, os.PathLike)) else list(paths)
        for path in every:
            name = os.fsdecode(os.fspath(path))
            conf._read_file(os.path.expanduser(name), missing_ok=missing_ok, chain=())
        conf._apply_shorthands()
        return conf

    @classmethod
    def from_string(
        cls, text: str, name: str = "<string>", *, dialect: Dialect | None = None
    ) -> Conf:
        """Build a Conf from the text of one file (its includes are relative to the cwd)."""
        conf = cls(dialect=dialect)
        conf._merge_text(text, name, chain=(), base=os.getcwd())
        conf._apply_shorthands()
        return conf

    def _read_file(self, path: str, *, missing_ok: bool, chain: tuple[str, ...]) -> None:
        real = os.path.realpath(path)
        if real in chain:
            cycle = " -> ".join([*chain, real])
            raise ConfError(f"{path}: {self.dialect.include} include cycle ({cycle})")
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            if missing_ok:
                return
            raise ConfError(f"{path}: conf file not found") from None
        except IsADirectoryError:
            raise ConfError(f"{path}: is a directory, not a conf file") from None
        except PermissionError:
            raise ConfError(f"{path}: permission denied reading conf file") from None
        except OSError as err:
            raise ConfError(f"{path}: cannot read conf file: {err.strerror or err}") from None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise ConfError(
                f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} on line {line})"
            ) from None
        self.files.append(path)
        self._merge_text(text, path, chain=(*chain, real), base=os.path.dirname(real))

    def _merge_text(self, text: str, path: str, *, chain: tuple[str, ...], base: str) -> None:
        try:
            sections = parse_text(text, path, self.dialect)
        except ParseError as err:
            where = f" ({err.source})" if err.source else ""
            raise ConfError(f"{err.message}{where}") from None
        includes: tuple[str, Source] | None = None
        include = self.dialect.include
        defaults = self.dialect.defaults
        for section in sections:
            target = self.store.setdefault(section.key, {})
            if section.key not in self._headers or self._headers[section.key][1] is None:
                self._headers[section.key] = (section.header, section.source)
            for name, (value, source) in section.options.items():
                target[name] = value
                self._where[(section.key, name)] = source
                if name == include and section.key == defaults:
                    includes = (value, source)
        if includes:
            for pattern in includes[0].split():
                self._include(pattern, base, includes[1], chain)

    def _include(self, pattern: str, base: str, source: Source, chain: tuple[str, ...]) -> None:
        pattern = os.path.join(base, os.path.expanduser(pattern))
        if _GLOB_CHARS & set(pattern):
            for match in sorted(glob.glob(pattern)):
                self._read_file(match, missing_ok=False, chain=chain)
            return
        try:
            self._read_file(pattern, missing_ok=False, chain=chain)
        except ConfError as err:
            raise ConfError(f"{err} (named by {self.dialect.include}, {source})") from None

    def _apply_shorthands(self) -> None:
        """Copy each shorthand set in the defaults section to the option it stands for.

        With the shorthand ``{"jobs": ("queue", "names")}``, ``jobs = a b``
        in the defaults section becomes ``names = a b`` in ``[queue]``,
        remembering the line it came from. Setting both, to different
        values, is an error rather than a silent choice.
        """
        defaults = self.dialect.defaults
        if defaults is None:
            return
        for short, (target, option) in self.dialect.shorthands.items():
            value = self.store.get(defaults, {}).get(short)
            if value is None:
                continue
            section = self.store.setdefault(target, {})
            existing = section.get(option)
            if existing is not None and existing != value:
                raise self.error(
                    defaults,
                    short,
                    f"conflicts with {option!r} in [{target}]; set it in one place only",
                )
            section[option] = value
            where = self._where.get((defaults, short))
            if where is not None:
                self._where[(target, option)] = where
            self._headers.setdefault(target, (target, where))

    def apply(self, overrides: Iterable[Override], *,
              sections: Iterable[str] | None = None) -> None:
        """Set each override's value over what the files say, in order (the last wins).

        For values set outside the files (:func:`parse_override` for a
        command line, :func:`environment_overrides` for the environment):
        each is kept with its origin, so errors and :meth:`where` name it
        as they name a file's line. An override may add a section the
        files lack only if it is among ``sections`` (None: any), since a
        misspelt one would otherwise be ignored in silence; the others are
        one ConfError, with a did-you-mean. A shorthand of the defaults
        section sets the option it stands for too, overriding it.
        """
        every = list(overrides)
        allowed = None if sections is None else {self.dialect.canonical(s) for s in sections}
        problems = []
        for override in every:
            key = self.dialect.canonical(override.section)
            if allowed is not None and key not in self.store and key not in allowed:
                problems.append(unknown_section(override, [*self.store, *allowed]))
        if problems:
            raise ConfError(*problems)
        for override in every:
            key = self.dialect.canonical(override.section)
            self._set(key, override.option.lower(), override.value, override)
            short = self.dialect.shorthands.get(override.option.lower())
            if short is not None and key == self.dialect.defaults:
                self._set(short[0], short[1], override.value, override)

    def _set(self, section: str, option: str, value: str, source: Source | Override) -> None:
        self.store.setdefault(section, {})[option] = value
        self._where[(section, option)] = source
        self._headers.setdefault(section, (section, source))

    # -- looking things up ------------------------------------------------

    def sections(self) -> list[str]:
        """Every section name, in the order first seen."""
        return list(self.store)

    def has_section(self, section: str) -> bool:
        return self.dialect.canonical(section) in self.store

    def options(self, section: str) -> dict[str, str]:
        """A copy of a section's options (empty if the section is absent)."""
        return dict(self.store.get(self.dialect.canonical(section), {}))

    def subconfigs(self, kind: str) -> list[str]:
        """Sections of one kind: ``kind`` itself, its repeats, and ``kind#name`` ones."""
        prefix = f"{kind}#"
        return [name for name in self.store if name == kind or name.startswith(prefix)]

    def where(self, section: str, option: str) -> str:
        """Where the value was set: ``'app.conf line 3'`` for a file's, an override's
        origin (``'--set server.port=8080'``), or ``''`` when neither is known."""
        source = self._where.get((self.dialect.canonical(section), option.lower()))
        return str(source) if source else ""

    def error(self, section: str, option: str | None, message: str) -> ConfError:
        """A ConfError about ``[section] option`` that names where it was set.

        Programs use this for their own checks, so their messages look like
        brim-conf's: ``[server] port: 'eighty' is not an integer (app.conf line 3)``.
        With no such option set, it names the line of the section's header.
        """
        key = self.dialect.canonical(section)
        header, header_source = self._headers.get(key, (key, None))
        where = self.where(key, option) if option else ""
        if not where and header_source is not None:
            where = str(header_source)
        return ConfError(format_error(header, option, message, where))

    def found_in(self, section: str, option: str, *, inherit: bool = False) -> str | None:
        """The section ``option`` is read from: ``section``, the defaults section
        (with ``inherit``), or None when it is set in neither.

        For a program's own checks of an inherited value, so its error names
        the section the user has to edit.
        """
        value, found = self._raw(section, option, inherit)
        return None if value is None else found

    def _raw(self, section: str, option: str, inherit: bool) -> tuple[str | None, str]:
        key = self.dialect.canonical(section)
        option = option.lower()
        value = self.store.get(key, {}).get(option)
        defaults = self.dialect.defaults
        if value is None and inherit and defaults is not None and key != defaults:
            value = self.store.get(defaults, {}).get(option)
            if value is not None:
                return value, defaults
        return value, key

    def get(
        self, section: str, option: str, default: T | None = None, *, inherit: bool = False
    ) -> str | T | None:
        """The option's string value, or ``default`` when it is not set.

        With ``inherit``, an option missing from ``section`` is looked up in
        the dialect's defaults section (``[DEFAULT]`` unless the program
        names another), where the values every section shares are kept.
        """
        value, _ = self._raw(section, option, inherit)
        return default if value is None else value

    def get_bool(
        self, section: str, option: str, default: bool = False, *, inherit: bool = False
    ) -> bool:
        """yes/no, true/false, on/off or 1/0, in any case."""
        value, found = self._raw(section, option, inherit)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise self.error(
            found, option, f"{value!r} is not a boolean (use yes/no, true/false, on/off or 1/0)"
        )

    def get_int(
        self,
        section: str,
        option: str,
        default: int | None = None,
        *,
        inherit: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> int | None:
        value, found = self._raw(section, option, inherit)
        if value is None:
            return default
        try:
            number = int(value.strip(), 10)
        except ValueError:
            raise self.error(found, option, f"{value!r} is not an integer") from None
        return self._bounded(found, option, number, minimum, maximum)

    def get_float(
        self,
        section: str,
        option: str,
        default: float | None = None,
        *,
        inherit: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        value, found = self._raw(section, option, inherit)
        if value is None:
            return default
        try:
            number = float(value.strip())
        except ValueError:
            raise self.error(found, option, f"{value!r} is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise self.error(found, option, f"{value!r} is not a finite number")
        return self._bounded(found, option, number, minimum, maximum)

    def get_path(
        self, section: str, option: str, default: str | None = None, *, inherit: bool = False
    ) -> str | None:
        """A filesystem path with ``~`` expanded."""
        value, _ = self._raw(section, option, inherit)
        if value is None or not value.strip():
            return default
        return os.path.expanduser(value.strip())

    def get_list(
        self,
        section: str,
        option: str,
        default: Sequence[str] = (),
        *,
        inherit: bool = False,
    ) -> list[str]:
        """Words separated by spaces (or new lines, for long lists)."""
        value, _ = self._raw(section, option, inherit)
        if value is None:
            return list(default)
        return value.split()

    def _bounded(self, section: str, option: str, number: _N, minimum: float | None,
                 maximum: float | None) -> _N:
        if minimum is not None and number < minimum:
            raise self.error(section, option, f"{number} is too small (at least {minimum})")
        if maximum is not None and number > maximum:
            raise self.error(section, option, f"{number} is too large (at most {maximum})")
        return number

    def __repr__(self) -> str:
        return f"Conf(files={self.files!r}, sections={self.sections()!r})"
