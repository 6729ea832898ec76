"""A program's conf vocabulary, kept out of the reader itself.

The syntax (headers, options, comments, continuations) is the same for every
program, but which section holds the defaults, which sections may repeat,
which option pulls in more files and which options are shorthands for a
whole section differ from one program to the next. A :class:`Dialect` says
those things once, so brim-conf knows no program's words and a program's
words are written down in one place of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: The defaults section of a plain ``Conf()``: the name Python's own
#: configparser gives its defaults, so it surprises nobody.
DEFAULT_SECTION = "DEFAULT"


def _words(value: object, what: str) -> tuple[str, ...]:
    """``value`` as a tuple of names, refusing a lone string (it would split into letters)."""
    if isinstance(value, str):
        raise TypeError(f"Dialect {what}: give a tuple of names, not the string {value!r}")
    if not isinstance(value, (tuple, list, frozenset, set)):
        raise TypeError(f"Dialect {what}: give a tuple of names")
    words = tuple(value)
    for word in words:
        if not isinstance(word, str) or not word or "#" in word or any(
            ch.isspace() or ch in "[]" for ch in word
        ):
            raise ValueError(f"Dialect {what}: {word!r} is not a section name")
    return words


@dataclass(frozen=True)
class Dialect:
    """The words of one program's conf files.

    ``defaults``
        The section whose options a subconfig falls back to when an option
        is read with ``inherit``; ``None`` for no such section. A plain
        ``Dialect()`` uses ``DEFAULT``.
    ``aliases``
        Other spellings of the defaults section: with ``defaults="settings"``
        and ``aliases=("defaults",)``, ``[defaults]`` is ``[settings]``. A
        file may use only one spelling.
    ``repeatable``
        Section kinds whose header may repeat within one file, each repeat
        opening another subconfig (``[job]`` twice gives ``job`` and
        ``job#2``). Any other section repeated in one file is an error.
        None by default: repetition is usually a mistake.
    ``include``
        The option of the defaults section naming more files to read right
        after the one that names it, relative to its directory, globs
        allowed. ``None`` (the default) reads only the files given.
    ``shorthands``
        Options of the defaults section that stand for an option of another
        section: ``{"jobs": ("queue", "names")}`` makes ``jobs = a b`` in the
        defaults section mean ``names = a b`` in ``[queue]``. None by default.

    Every part needs a defaults section except ``repeatable``.
    """

    defaults: str | None = DEFAULT_SECTION
    aliases: tuple[str, ...] = ()
    repeatable: tuple[str, ...] = ()
    include: str | None = None
    shorthands: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.defaults is not None:
            _words((self.defaults,), "defaults")
        object.__setattr__(self, "aliases", _words(self.aliases, "aliases"))
        object.__setattr__(self, "repeatable", _words(self.repeatable, "repeatable"))
        if self.include is not None:
            # Option names are matched in lower case, as the reader stores them.
            object.__setattr__(self, "include", self.include.lower())
        shorthands = {}
        for option, target in dict(self.shorthands).items():
            if not isinstance(target, tuple) or len(target) != 2:
                raise TypeError(f"Dialect shorthands: {option!r} must map to (section, option)")
            _words((target[0],), "shorthands")
            shorthands[option.lower()] = (target[0], target[1].lower())
        # A copy of its own (so the caller's dict can change freely), kept a
        # plain dict so a Dialect pickles.
        object.__setattr__(self, "shorthands", shorthands)
        needing = [name for name, used in (("aliases", self.aliases), ("include", self.include),
                                           ("shorthands", shorthands)) if used]
        if self.defaults is None and needing:
            raise ValueError(f"Dialect {', '.join(needing)}: needs a defaults section")
        if self.defaults is not None and {self.defaults, *self.aliases} & set(self.repeatable):
            raise ValueError("Dialect repeatable: the defaults section can not repeat")

    def __hash__(self) -> int:
        return hash((self.defaults, self.aliases, self.repeatable, self.include,
                     tuple(sorted(self.shorthands.items()))))

    def canonical(self, name: str) -> str:
        """The name a section header is stored under (an alias becomes the defaults name)."""
        if self.defaults is not None and name in self.aliases:
            return self.defaults
        return name

    def repeat_hint(self) -> str:
        """The end of a "section appears twice" message: which sections may repeat."""
        kinds = [f"[{kind}]" for kind in self.repeatable]
        if not kinds:
            return ""
        if len(kinds) == 1:
            return f"; only {kinds[0]} may repeat"
        return f"; only {', '.join(kinds[:-1])} and {kinds[-1]} may repeat"
