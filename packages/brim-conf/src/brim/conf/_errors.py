"""The one exception brim-conf raises, and how its messages are shaped.

Every message tells a user what to edit: the section and option (as written in
the file), what is wrong with the value, and the file and line it came from.
"""

from __future__ import annotations


class ConfError(Exception):
    """A configuration problem a user can fix by editing a file.

    ``str(err)`` is a single line, ready to print as it is, for example
    ``[wsgi] port: 'eighty' is not an integer (brimd.conf line 3)``.
    """


def format_error(section: str | None, option: str | None, message: str, where: str = "") -> str:
    """Build the one-line message every ConfError carries."""
    if section is not None and option is not None:
        text = f"[{section}] {option}: {message}"
    elif section is not None:
        text = f"[{section}] {message}"
    else:
        text = message
    if where:
        text += f" ({where})"
    return text
