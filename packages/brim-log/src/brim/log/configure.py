"""Setting up a brim logger (its sinks, level and format) and reopening log files.

One function for every process brimd runs, the master and each WSGI, TCP,
UDP or daemon worker alike: :func:`setup_logging` replaces the handlers it
put on a logger before, so a reload does not double the output, and keeps
each sink it opens so :func:`reopen_logs` (SIGUSR1) can reach them all.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

from .levels import LOG_FORMATS, parse_level
from .records import SinkHandler
from .sinks import FileSink, Sink, StreamSink, SyslogSink, parse_facility
from .stream import LogStream

__all__ = ["reopen_logs", "setup_logging"]


def _parse_address(address: str) -> str | tuple[str, int]:
    """'/path' is a unix socket; 'host:port' is UDP syslog."""
    if address.startswith("/"):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"invalid log address {address!r}; use /path/to/socket or host:port")
    return (host.strip("[]"), int(port))


def _real(stream: TextIO | None, original: TextIO | None) -> TextIO:
    """The stream a StreamSink may write to: never a LogStream (it would log its own lines)."""
    if stream is None or isinstance(stream, LogStream):
        stream = original
    if stream is None:
        raise ValueError("no stream to log to")
    return stream


_warned_no_dev_log = False
_open_sinks: list[Sink] = []


def setup_logging(name: str = "brim", level: str = "INFO", facility: str = "LOCAL0", *,
                  address: str | None = None, stderr: bool = False, syslog: bool = True,
                  stdout: bool = False, file: str | None = None,
                  fmt: str = "text") -> logging.Logger:
    """Configure and return the logger called name, writing to the sinks asked for.

    syslog goes to address ('/dev/log' when it exists and no address is
    given); without a syslog socket there is a one-time warning and the
    lines go to stderr instead. file appends to that path (reopened by
    :func:`reopen_logs`); stdout and stderr write to those streams. The
    handlers brim put on the logger before are replaced, so a reload does not
    double the output. ValueError on a bad level, facility, address or
    format, with a message naming the option.
    """
    global _warned_no_dev_log
    lvl = parse_level(level)
    fac = parse_facility(facility)
    if fmt not in LOG_FORMATS:
        raise ValueError(f"invalid log_format {fmt!r}; use text or json")
    target: str | tuple[str, int] | None = None
    if syslog:
        if address:
            target = _parse_address(address)
        elif os.path.exists("/dev/log"):
            target = "/dev/log"
        else:
            if not _warned_no_dev_log:
                _warned_no_dev_log = True
                _real(sys.stderr, sys.__stderr__).write(
                    "brim: WARNING no syslog socket at /dev/log; logging to stderr instead\n")
            stderr = True
    logger = logging.getLogger(name)
    logger.setLevel(lvl)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "brim_handler", False):
            logger.removeHandler(handler)
            handler.close()
            if isinstance(handler, SinkHandler) and handler.sink in _open_sinks:
                _open_sinks.remove(handler.sink)
    sinks: list[Sink] = []
    if target is not None:
        sinks.append(SyslogSink(target, fac, name))
    if file:
        sinks.append(FileSink(file))
    if stdout:
        sinks.append(StreamSink(_real(sys.stdout, sys.__stdout__)))
    if stderr:
        sinks.append(StreamSink(_real(sys.stderr, sys.__stderr__)))
    for sink in sinks:
        _open_sinks.append(sink)
        logger.addHandler(SinkHandler(sink, name, fmt))
    return logger


def reopen_logs() -> None:
    """Have every log file of this process reopened at its next flush (brimd: on SIGUSR1).

    Safe from a signal handler: it only sets a flag on each sink.
    """
    for sink in list(_open_sinks):
        sink.reopen()
