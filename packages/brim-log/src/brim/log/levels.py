"""Log levels and formats: the NOTICE level brim adds, and reading a level's name.

Its own module because every other part of :mod:`brim.log` (and the request
log in brim-wsgi) needs NOTICE, and nothing here needs them.
"""

from __future__ import annotations

import logging

__all__ = ["LEVELS", "LOG_FORMATS", "NOTICE", "parse_level"]

#: Between INFO and WARNING, as in syslog: routine but worth keeping. The
#: per-request log lines use it, so INFO-level chatter can be turned off
#: without losing the request log.
NOTICE: int = 25
logging.addLevelName(NOTICE, "NOTICE")

#: The values of the log_format option.
LOG_FORMATS = ("text", "json")

#: The names log_level takes, and their numbers.
LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "NOTICE": NOTICE,
          "WARNING": logging.WARNING, "WARN": logging.WARNING, "ERROR": logging.ERROR,
          "CRITICAL": logging.CRITICAL}


def parse_level(level: str | int) -> int:
    """A level's number from its name (any case) or the number itself; ValueError if unknown."""
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().upper()]
    except KeyError:
        raise ValueError(
            f'invalid log_level {level!r}; use one of {", ".join(LEVELS)}') from None
