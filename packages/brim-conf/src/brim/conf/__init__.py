"""brim.conf: INI-style configuration for programs that run from a conf file.

It reads files in order (later ones override earlier ones option by option),
keeps where each value came from, and converts values only when asked, so
each part of a program reads just its own options with its own defaults, and
every error names the line a user has to fix. A program's own words (its
defaults section, the sections that may repeat, an include option,
shorthands) are given as a :class:`Dialect`; brim-conf has none of its own.

>>> conf = Conf.from_string("[server]\\nport = 8080\\n")
>>> conf.get_int("server", "port", 80)
8080
"""

from ._conf import Conf
from ._dialect import DEFAULT_SECTION, Dialect
from ._errors import ConfError, ConfProblems
from ._objects import load_object
from ._options import KINDS, Option, check_unknown, read_options
from ._overrides import Override, env_name, environment_overrides, parse_override

__all__ = [
    "DEFAULT_SECTION",
    "KINDS",
    "Conf",
    "ConfError",
    "ConfProblems",
    "Dialect",
    "Option",
    "Override",
    "check_unknown",
    "env_name",
    "environment_overrides",
    "load_object",
    "parse_override",
    "read_options",
]
