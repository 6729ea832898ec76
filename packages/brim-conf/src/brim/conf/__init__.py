"""brim.conf: INI-style configuration for programs that run from a conf file.

It reads files in order (later ones override earlier ones option by option),
keeps where each value came from, and converts values only when asked, so
each part of a program reads just its own options with its own defaults, and
every error names the line a user has to fix.

>>> conf = Conf.from_string("[server]\\nport = 8080\\n")
>>> conf.get_int("server", "port", 80)
8080
"""

from ._conf import MAIN_SECTION, Conf
from ._errors import ConfError
from ._options import KINDS, Option, check_unknown, read_options
from ._parse import REPEATABLE_KINDS

__all__ = [
    "KINDS",
    "MAIN_SECTION",
    "REPEATABLE_KINDS",
    "Conf",
    "ConfError",
    "Option",
    "check_unknown",
    "read_options",
]
