"""The one exception brim-conf raises, and how its messages are shaped.

Every message tells a user what to edit: the section and option (as written in
the file), what is wrong with the value, and the file and line it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class ConfError(Exception):
    """One or more configuration problems a user can fix by editing a file.

    Each problem is one line, ready to print as it is, for example
    ``[server] port: 'eighty' is not an integer (app.conf line 3)``.
    ``str(err)`` is those lines joined by new lines, so a single problem
    prints as a single line; :attr:`problems` holds them one by one.
    Reporting every problem of a section at once saves a user one run of
    the program per mistake.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)

    @classmethod
    def joined(cls, errors: Iterable[ConfError]) -> ConfError:
        """One ConfError holding the problems of several, in order."""
        return cls(*(problem for error in errors for problem in error.problems))


def format_error(section: str | None, option: str | None, message: str, where: str = "") -> str:
    """Build the one-line message every ConfError problem is."""
    if section is not None and option is not None:
        text = f"[{section}] {option}: {message}"
    elif section is not None:
        text = f"[{section}] {message}"
    else:
        text = message
    if where:
        text += f" ({where})"
    return text


class ConfProblems:
    """The problems of independent checks, gathered to be raised as one ConfError.

    Why: a check that stops at the first bad section makes a user run the
    program once per mistake. Each independent check (a section, an app)
    runs inside :meth:`check`; :meth:`raise_any` then raises them all, in
    order, each line once (two sections that inherit one bad value report
    the same line).
    """

    def __init__(self) -> None:
        self._lines: dict[str, None] = {}

    @contextmanager
    def check(self) -> Iterator[None]:
        """Run the block; a ConfError it raises is kept instead of propagated."""
        try:
            yield
        except ConfError as err:
            self.add(err)

    def add(self, err: ConfError) -> None:
        for problem in err.problems:
            self._lines.setdefault(problem)

    def __bool__(self) -> bool:
        return bool(self._lines)

    def raise_any(self) -> None:
        """Raise every problem kept, as one ConfError; nothing if there is none."""
        if self._lines:
            raise ConfError(*self._lines)
