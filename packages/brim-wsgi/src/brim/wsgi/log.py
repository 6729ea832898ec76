"""Logging for brim servers: syslog or stderr, a NOTICE level, txn ids.

brim logs to syslog by default (facility LOCAL0, name 'brim') and to stderr
when not daemonized. Every line logged while a request is being served
carries that request's txn id, so one request can be followed through a busy
log. The current txn lives in a context variable; greenlet gives each green
thread its own context, so concurrent requests in one worker never see each
other's txn.
"""

from __future__ import annotations

import contextvars
import logging
import logging.handlers
import os
import sys
import time
import warnings
from os import urandom
from typing import Any

__all__ = [
    'NOTICE', 'current_txn', 'format_request_line', 'log_quote', 'set_txn', 'setup_logging',
    'txn_logger',
]

#: Between INFO and WARNING, as in syslog: routine but worth keeping. The
#: per-request log lines use it, so INFO-level chatter can be turned off
#: without losing the request log.
NOTICE: int = 25
logging.addLevelName(NOTICE, 'NOTICE')

_txn: contextvars.ContextVar[str | None] = contextvars.ContextVar('brim_txn', default=None)


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_txn() -> str:
    """A fresh txn id: uuid.uuid4().hex, without building a UUID object (a third
    of the cost, and it is paid on every request)."""
    return '%032x' % ((int.from_bytes(urandom(16), 'big') & _V4_CLEAR) | _V4_SET)


def set_txn(txn: str | None) -> None:
    """Make txn the id carried by log lines from the current green thread."""
    _txn.set(txn)


def current_txn() -> str | None:
    """The txn id of the request the current green thread is serving, if any."""
    return _txn.get()


class _TxnFilter(logging.Filter):
    """Appends ' txn:<id>' to a record's message when a request is in progress.

    Sits on brim's handlers, so it applies to every record they emit, whoever
    logged it. A record is tagged once, however many handlers see it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, 'brim_txn_done', False):
            record.brim_txn_done = True
            txn = _txn.get()
            if txn:
                record.msg = f'{record.msg} txn:{txn}'
        return True


class _TxnAdapter(logging.LoggerAdapter):
    """The logger apps get as env['brim.logger'].

    Tags each message with the current txn itself, so the txn appears even
    when the underlying logger's handlers were not set up by brim. Adds
    notice() for the NOTICE level.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        txn = _txn.get()
        extra = kwargs.get('extra')
        extra = dict(extra) if extra else {}
        extra['brim_txn_done'] = True
        kwargs['extra'] = extra
        if txn:
            msg = f'{msg} txn:{txn}'
        return msg, kwargs

    def notice(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(NOTICE, msg, *args, **kwargs)


def txn_logger(logger: logging.Logger | logging.LoggerAdapter) -> logging.LoggerAdapter:
    """Wrap logger so every line it logs carries the current txn id."""
    if isinstance(logger, _TxnAdapter):
        return logger
    return _TxnAdapter(logger, {})


#: Longest message sent to syslog, in characters (at most 4 bytes each in
#: UTF-8, so a message always fits one UDP datagram).
MAX_SYSLOG_MESSAGE = 16000


class _SysLogHandler(logging.handlers.SysLogHandler):
    """SysLogHandler that maps NOTICE to syslog's notice priority and clips long lines.

    Why clip: a datagram over the transport's limit is not sent at all
    (EMSGSIZE), and logging then prints a traceback to stderr instead of
    the line. A client controls the length of request-log fields (a 414's
    path, a User-Agent), so without a clip it could make its own request
    vanish from the log.
    """

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if len(text) > MAX_SYSLOG_MESSAGE:
            text = text[:MAX_SYSLOG_MESSAGE] + '...(clipped)'
        return text

    def mapPriority(self, levelName: str) -> str:
        if levelName == 'NOTICE':
            return 'notice'
        return super().mapPriority(levelName)


class _Formatter(logging.Formatter):
    """A Formatter that formats the timestamp once per second, not once per line.

    Under load the request log writes thousands of lines a second; strftime
    for each was a visible share of a request's cost.
    """

    _sec = -1
    _stamp = ''

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        sec = int(record.created)
        if sec != self._sec:
            self._stamp = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(sec))
            self._sec = sec
        return f'{self._stamp},{int(record.msecs):03d}'


_LEVELS = {'DEBUG': logging.DEBUG, 'INFO': logging.INFO, 'NOTICE': NOTICE,
           'WARNING': logging.WARNING, 'WARN': logging.WARNING, 'ERROR': logging.ERROR,
           'CRITICAL': logging.CRITICAL}


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().upper()]
    except KeyError:
        raise ValueError(
            f'invalid log_level {level!r}; use one of {", ".join(_LEVELS)}') from None


def _parse_facility(facility: str) -> int:
    name = facility.strip().lower()
    if name.startswith('log_'):
        name = name[4:]
    try:
        return logging.handlers.SysLogHandler.facility_names[name]
    except KeyError:
        names = ', '.join(n.upper() for n in logging.handlers.SysLogHandler.facility_names)
        raise ValueError(f'invalid log_facility {facility!r}; use one of {names}') from None


def _parse_address(address: str) -> str | tuple[str, int]:
    """'/path' is a unix socket; 'host:port' is UDP syslog."""
    if address.startswith('/'):
        return address
    host, sep, port = address.rpartition(':')
    if not sep or not host or not port.isdigit():
        raise ValueError(f'invalid log address {address!r}; use /path/to/socket or host:port')
    return (host.strip('[]'), int(port))


_warned_no_dev_log = False


def setup_logging(name: str = 'brim', level: str = 'INFO', facility: str = 'LOCAL0', *,
                  address: str | None = None, stderr: bool = False,
                  syslog: bool = True) -> logging.Logger:
    """Configure and return the logger called name.

    Replaces the handlers brim put on it before (so a reload does not double
    the output). syslog goes to address ('/dev/log' when it exists and no
    address is given); without a syslog socket there is a one-time warning
    and the lines go to stderr instead. ValueError on a bad level, facility or
    address, with a message naming the option.
    """
    global _warned_no_dev_log
    lvl = _parse_level(level)
    fac = _parse_facility(facility)
    logger = logging.getLogger(name)
    logger.setLevel(lvl)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, 'brim_handler', False):
            logger.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    if syslog:
        target: str | tuple[str, int] | None
        if address:
            target = _parse_address(address)
        elif os.path.exists('/dev/log'):
            target = '/dev/log'
        else:
            target = None
            if not _warned_no_dev_log:
                _warned_no_dev_log = True
                warnings.warn('no syslog socket at /dev/log; logging to stderr instead',
                              RuntimeWarning, stacklevel=2)
            stderr = True
        if target is not None:
            handler = _SysLogHandler(address=target, facility=fac)
            handler.setFormatter(logging.Formatter(f'{name}: %(message)s'))
            handlers.append(handler)
    if stderr:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(f'%(asctime)s {name} %(levelname)s %(message)s'))
        handlers.append(handler)
    txn_filter = _TxnFilter()
    for handler in handlers:
        handler.brim_handler = True  # type: ignore[attr-defined]
        handler.addFilter(txn_filter)
        logger.addHandler(handler)
    return logger


def _quote_char(ch: str) -> str:
    return ''.join(f'%{b:02X}' for b in ch.encode('utf-8', 'surrogateescape'))


def log_quote(value: Any) -> str:
    """One log field: spaces and non-printables percent-encoded, '-' if empty.

    Request log lines are split on spaces by the tools that read them, so no
    field may contain one. '%' itself is left alone: paths arrive
    percent-encoded already and should read as the client sent them.
    """
    if value is None:
        return '-'
    if not isinstance(value, str):
        value = str(value)
    if not value:
        return '-'
    if value.isascii() and value.isprintable() and ' ' not in value:
        return value
    return ''.join(ch if ('!' <= ch <= '~') else _quote_char(ch) for ch in value)


def format_request_line(client: str, method: str | None, path: str | None, status: int,
                        bytes_in: int,
                        bytes_out: int, duration: float, txn: str, user_agent: str | None,
                        referer: str | None, extra: list[str] | None = None,
                        headers: list[tuple[str, str]] | None = None) -> str:
    """The request log line: one string of space-separated, quoted fields."""
    line = (f'{log_quote(client)} {log_quote(method)} {log_quote(path)} {status} '
            f'{bytes_in} {bytes_out} {duration:.5f} {txn} {log_quote(user_agent)} '
            f'{log_quote(referer)}')
    if extra:
        line += ' ' + ' '.join(log_quote(word) for word in extra)
    if headers:
        line += ' headers: ' + ' '.join(log_quote(f'{k}:{v}') for k, v in headers)
    return line
