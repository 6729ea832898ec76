"""Logging for brim servers: syslog, a file or stdout/stderr, text or JSON, txn ids.

brim logs to syslog by default (facility LOCAL0, name 'brim') and to stderr
when not daemonized; a conf can choose a file or stdout instead
(:mod:`brim.wsgi.sinks`). Every line logged while a request is being served
carries that request's txn id, so one request can be followed through a busy
log. The current txn lives in a context variable; greenlet gives each green
thread its own context, so concurrent requests in one worker never see each
other's txn.

The request log does not go through :mod:`logging`: a :class:`RequestLog`
formats each request's line once (text or JSON) and hands it to the sinks
straight away, which costs a fraction of a LogRecord and its handler locks.
App and server messages (``env['brim.logger']``, tracebacks) go through
logging and a :class:`SinkHandler` to the same sinks.
"""

from __future__ import annotations

import _thread
import contextvars
import json
import logging
import os
import sys
import time
from typing import Any

from .sinks import FileSink, Sink, StreamSink, SyslogSink, parse_facility

__all__ = [
    "LOG_FORMATS",
    "NOTICE",
    "REDACTED",
    "REDACTED_HEADERS",
    "RequestLog",
    "SinkHandler",
    "current_txn",
    "escape_text",
    "format_request_line",
    "log_quote",
    "new_txn",
    "reopen_logs",
    "request_log",
    "set_txn",
    "setup_logging",
    "txn_logger",
]

#: Between INFO and WARNING, as in syslog: routine but worth keeping. The
#: per-request log lines use it, so INFO-level chatter can be turned off
#: without losing the request log.
NOTICE: int = 25
logging.addLevelName(NOTICE, "NOTICE")

#: The values of the log_format option.
LOG_FORMATS = ("text", "json")

_txn: contextvars.ContextVar[str | None] = contextvars.ContextVar("brim_txn", default=None)

# Random bytes for txn ids, 16 to an id, refilled in blocks so a request
# costs no system call; each block gets the version 4 and variant bits of all
# its ids at once and is turned into hex whole, so an id is one slice of it.
# Emptied in a forked child, so no two processes ever hand out ids from the
# same bytes.
_TXN_IDS = 512
_TXN_BLOCK = 32 * _TXN_IDS  # hex digits
_txn_hex = ""
_txn_at = _TXN_BLOCK
# byte 6: version 4 in its high nibble; byte 8: variant 0b10 in its top bits.
_V4_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_V4_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
# A plain lock, never contended under green threads (nothing in new_txn waits).
_txn_lock = _thread.allocate_lock()


def _forget_txn_bytes() -> None:
    global _txn_at
    _txn_at = _TXN_BLOCK


os.register_at_fork(after_in_child=_forget_txn_bytes)


def new_txn() -> str:
    """A fresh txn id, as uuid.uuid4().hex: 32 hex digits with the version 4 and variant bits.

    Taken from a block of os.urandom bytes refilled every 512 ids, not one
    system call per request.
    """
    global _txn_hex, _txn_at
    with _txn_lock:  # OS threads (worker_model = threads) must not share an id
        at = _txn_at
        if at >= _TXN_BLOCK:
            block = bytearray(os.urandom(16 * _TXN_IDS))
            block[6::16] = block[6::16].translate(_V4_VERSION)
            block[8::16] = block[8::16].translate(_V4_VARIANT)
            _txn_hex = block.hex()
            at = 0
        _txn_at = at + 32
        return _txn_hex[at:at + 32]


def set_txn(txn: str | None) -> None:
    """Make txn the id carried by log lines from the current green thread."""
    _txn.set(txn)


def current_txn() -> str | None:
    """The txn id of the request the current green thread is serving, if any."""
    return _txn.get()


class _TxnFilter(logging.Filter):
    """Notes on a record the txn of the request in progress, as ``brim_txn``.

    Sits on brim's handlers, so it applies to every record they emit, whoever
    logged it; the handler writes it (' txn:<id>' in text, a field in JSON).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "brim_txn_done", False):
            record.brim_txn_done = True
            txn = _txn.get()
            if txn:
                record.brim_txn = txn
        return True


class _TxnAdapter(logging.LoggerAdapter):
    """The logger apps get as env['brim.logger'].

    Notes the current txn on each record for brim's handlers, and writes it
    into the message itself when the logger's handlers were not set up by
    brim, so the txn appears either way. Adds notice() for the NOTICE level.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        txn = _txn.get()
        extra = kwargs.get("extra")
        extra = dict(extra) if extra else {}
        extra["brim_txn_done"] = True
        if txn:
            extra["brim_txn"] = txn
            if not self._brim_handlers():
                msg = f"{msg} txn:{txn}"  # a foreign handler: tag the text itself
        kwargs["extra"] = extra
        return msg, kwargs

    def _brim_handlers(self) -> bool:
        logger = self.logger
        return isinstance(logger, logging.Logger) and any(
            isinstance(h, SinkHandler) for h in logger.handlers)

    def notice(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.log(NOTICE, msg, *args, **kwargs)


def txn_logger(logger: logging.Logger | logging.LoggerAdapter) -> logging.LoggerAdapter:
    """Wrap logger so every line it logs carries the current txn id."""
    if isinstance(logger, _TxnAdapter):
        return logger
    return _TxnAdapter(logger, {})


class _Clock:
    """Timestamps for log lines, with the seconds part formatted once a second.

    Under load the request log writes thousands of lines a second; strftime
    for each was a visible share of a request's cost.
    """

    def __init__(self) -> None:
        self._sec = -1
        self._text = ""
        self._iso = ""
        self._zone = ""
        self._ms = -1
        self._ms_text = ""

    def _refresh(self, sec: int) -> None:
        self._sec = sec
        local = time.localtime(sec)
        self._text = time.strftime("%Y-%m-%d %H:%M:%S", local)
        self._iso = time.strftime("%Y-%m-%dT%H:%M:%S", local)
        offset = time.strftime("%z", local)
        self._zone = offset[:3] + ":" + offset[3:] if offset else ""

    def text(self, now: float) -> str:
        """'2026-11-26 01:26:40,650', local time."""
        ms = int(now * 1000)
        if ms == self._ms:
            return self._ms_text
        sec = ms // 1000
        if sec != self._sec:
            self._refresh(sec)
        self._ms = ms
        self._ms_text = text = f"{self._text},{ms % 1000:03d}"
        return text

    def iso(self, now: float) -> str:
        """'2026-11-26T01:26:40.650+00:00', local time with its offset."""
        sec = int(now)
        if sec != self._sec:
            self._refresh(sec)
        return f"{self._iso}.{int((now - sec) * 1000):03d}{self._zone}"


_clock = _Clock()


class SinkHandler(logging.Handler):
    """Sends log records to a sink, as text or JSON lines, and flushes each one.

    Records are the rare lines (app messages, warnings, tracebacks), so each
    is delivered at once rather than waiting for the next flush.
    """

    def __init__(self, sink: Sink, name: str, fmt: str = "text") -> None:
        super().__init__()
        self.sink = sink
        self.fmt = fmt
        self.log_name = name
        self.brim_handler = True
        self.addFilter(_TxnFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            txn = getattr(record, "brim_txn", None)
            more: list[str] = []
            if record.exc_info:
                more.append(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                more.append(record.stack_info)
            if self.fmt == "json":
                if more:
                    message = "\n".join([message, *more])
                line = json.dumps({
                    "time": _clock.iso(record.created), "name": self.log_name,
                    "level": record.levelname, "message": message, "txn": txn})
            else:
                line = self._text(record, escape_text(message), txn, more)
            self.sink.write(line, record.levelno)
            self.sink.flush()
        except Exception:
            self.handleError(record)

    def _text(self, record: logging.LogRecord, message: str, txn: str | None,
              more: list[str]) -> str:
        """The record as text: its first line, then one continuation line per line of
        its traceback.

        Nothing in a message or a traceback (where an exception's text may
        hold a client's bytes) may start a line a reader takes for a record of
        its own: line breaks and control characters are escaped (see
        :func:`escape_text`), and each continuation line repeats the record's
        stamp and level, then ``txn:<id> |`` (``|`` alone without a txn).
        """
        if txn:
            message = f"{message} txn:{txn}"
        syslog = isinstance(self.sink, SyslogSink)
        stamp = "" if syslog else (f"{_clock.text(record.created)} {self.log_name} "
                                   f"{record.levelname} ")
        if not more:
            return stamp + message
        mark = f"{stamp}txn:{txn} | " if txn else f"{stamp}| "
        lines = [stamp + message]
        lines.extend(mark + escape_text(part) for text in more for part in text.splitlines())
        return "\n".join(lines)

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        try:
            self.sink.close()
        finally:
            super().close()


class RequestLog:
    """The request log: one line per request, formatted once, written to each sink.

    Made by :func:`request_log` from the handlers brim put on a logger. Text
    lines are the fields of :func:`format_request_line`; JSON lines carry
    the same fields by name, each value escaped by the JSON encoder.
    """

    def __init__(self, sinks: list[Sink], name: str, fmt: str = "text") -> None:
        self.sinks = sinks
        self.name = name
        self.fmt = fmt
        self._syslog = [isinstance(s, SyslogSink) for s in sinks]
        #: No sink is syslog's: every one takes the same stamped line.
        self._stamped_only = not any(self._syslog)
        # The start of a stamped line ('<time> <name> NOTICE '), for the
        # millisecond it was made in: many requests end within the same one.
        self._stamp_ms = -1
        self._stamp = ""
        #: Where a stamped line goes: straight to the one sink, as it usually is.
        self._emit = sinks[0].write if len(sinks) == 1 else self._to_every_sink

    def _to_every_sink(self, line: str, level: int = NOTICE) -> None:
        for sink in self.sinks:
            sink.write(line, level)

    def write(self, client: str, method: str | None, path: str | None, status: int,
              bytes_in: int, bytes_out: int, duration: float, txn: str,
              user_agent: str | None, referer: str | None, extra: list[str] | None = None,
              headers: list[tuple[str, str]] | None = None, now: float | None = None) -> None:
        """Log one request; now (time.time()) is when it ended, if the caller has it."""
        if now is None:
            now = time.time()
        if self.fmt == "json":
            fields: dict[str, Any] = {
                "time": _clock.iso(now), "name": self.name, "client": client,
                "method": method, "path": path, "status": status, "bytes_in": bytes_in,
                "bytes_out": bytes_out, "duration": round(duration, 5), "txn": txn,
                "user_agent": user_agent, "referer": referer, "extra": extra or []}
            if headers is not None:
                fields["headers"] = [[k, _shown(k, v)] for k, v in headers]
            line = json.dumps(fields)
            for sink in self.sinks:
                sink.write(line, NOTICE)
            return
        if self._stamped_only:
            # The usual case (a file, a stream): the line is built stamped, in one go.
            ms = int(now * 1000)
            if ms != self._stamp_ms:
                self._stamp_ms = ms
                self._stamp = f"{_clock.text(now)} {self.name} NOTICE "
            if extra or headers:
                line = format_request_line(client, method, path, status, bytes_in, bytes_out,
                                           duration, txn, user_agent, referer, extra,
                                           headers, self._stamp)
            else:
                # format_request_line's line, character for character, built
                # here: it is the line of nearly every request, and a call
                # less counts, as do the memos for numbers and durations.
                q = _quoted.get
                n = _numbers.get
                seconds: str | None = None
                if 0 < duration < 1000:
                    tens = duration * 100000  # the duration in 10 µs
                    rounded = round(tens)
                    if abs(tens - rounded) != 0.5:  # a tie is left to the format's rounding
                        seconds = _durations.get(rounded) or _duration_text(rounded)
                if seconds is None:
                    seconds = f"{duration:.5f}"
                line = (f"{self._stamp}{q(client) or _quote_field(client)} "
                        f"{q(method) or _quote_field(method)} {q(path) or _quote_field(path)} "
                        f"{n(status) or _number(status)} {n(bytes_in) or _number(bytes_in)} "
                        f"{n(bytes_out) or _number(bytes_out)} {seconds} {txn} "
                        f"{q(user_agent) or _quote_field(user_agent)} "
                        f"{q(referer) or _quote_field(referer)}")
            self._emit(line, NOTICE)
            return
        text = format_request_line(client, method, path, status, bytes_in, bytes_out,
                                   duration, txn, user_agent, referer, extra, headers)
        stamped = None
        for sink, syslog in zip(self.sinks, self._syslog, strict=True):
            if syslog:
                sink.write(text, NOTICE)
            else:
                if stamped is None:
                    stamped = f"{_clock.text(now)} {self.name} NOTICE {text}"
                sink.write(stamped, NOTICE)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()


class _RecordRequestLog(RequestLog):
    """The request log for a logger brim did not set up: one LogRecord per request."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__([], logger.name)
        self.logger = logger

    def write(self, client: str, method: str | None, path: str | None, status: int,
              bytes_in: int, bytes_out: int, duration: float, txn: str,
              user_agent: str | None, referer: str | None, extra: list[str] | None = None,
              headers: list[tuple[str, str]] | None = None, now: float | None = None) -> None:
        line = format_request_line(client, method, path, status, bytes_in, bytes_out,
                                   duration, txn, user_agent, referer, extra, headers)
        record = self.logger.makeRecord(self.logger.name, NOTICE, "", 0, line, (), None)
        record.brim_txn_done = True  # the txn is one of the line's fields already
        self.logger.handle(record)


def request_log(logger: logging.Logger) -> RequestLog | None:
    """The RequestLog for logger, or None when NOTICE lines are not logged.

    With brim's own handlers (setup_logging), lines go to their sinks
    directly; any other logger gets one LogRecord per request.
    """
    if not logger.isEnabledFor(NOTICE):
        return None
    handlers = [h for h in logger.handlers if isinstance(h, SinkHandler)]
    if handlers and len(handlers) == len(logger.handlers):
        return RequestLog([h.sink for h in handlers], handlers[0].log_name, handlers[0].fmt)
    return _RecordRequestLog(logger)


_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "NOTICE": NOTICE,
           "WARNING": logging.WARNING, "WARN": logging.WARNING, "ERROR": logging.ERROR,
           "CRITICAL": logging.CRITICAL}


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return _LEVELS[level.strip().upper()]
    except KeyError:
        raise ValueError(
            f'invalid log_level {level!r}; use one of {", ".join(_LEVELS)}') from None


def _parse_address(address: str) -> str | tuple[str, int]:
    """'/path' is a unix socket; 'host:port' is UDP syslog."""
    if address.startswith("/"):
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"invalid log address {address!r}; use /path/to/socket or host:port")
    return (host.strip("[]"), int(port))


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
    lvl = _parse_level(level)
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
                sys.stderr.write("brim: WARNING no syslog socket at /dev/log; logging to "
                                 "stderr instead\n")
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
        sinks.append(StreamSink(sys.stdout))
    if stderr:
        sinks.append(StreamSink(sys.stderr))
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


# What escape_text rewrites: every character some reader ends a line at (those
# str.splitlines breaks on: CR, LF, VT, FF, FS, GS, RS, NEL, U+2028, U+2029) and
# the other C0 and C1 controls but tab (a terminal would act on them), as
# Python writes them in a string literal.
_TEXT_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c != 0x09}
_TEXT_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_text(text: str) -> str:
    """text with line breaks and control characters escaped (``\\n``, ``\\x85``, ``\\u2028``).

    For every line of a text sink that may carry someone else's words (an
    app's message, an exception's text): one record must stay one line, or
    a client could write a line that reads as a record of its own. A
    backslash is left as it is, so paths and regexes read as written.
    """
    if text.isprintable():
        return text
    return text.translate(_TEXT_ESCAPES)


def _quote_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))


def log_quote(value: Any) -> str:
    """One log field: spaces, ``%`` and non-printables percent-encoded, '-' if empty.

    Request log lines are split on spaces by the tools that read them, so no
    field may contain one. ``%`` is written ``%25``, so the encoding can be
    undone: a path the client sent as ``/a%20b`` reads ``/a%2520b``, and one
    with a raw space (in a header, say) ``/a%20b``; an unquote gives each back.
    """
    if value is None:
        return "-"
    if not isinstance(value, str):
        value = str(value)
    if not value:
        return "-"
    if value.isascii() and value.isprintable() and " " not in value and "%" not in value:
        return value
    return "".join(ch if ("!" <= ch <= "~" and ch != "%") else _quote_char(ch) for ch in value)


# Request line fields already quoted, by value: a worker logs the same few
# clients, methods, paths and user agents over and over, so most fields cost
# one lookup. Only short values are kept, so the memo stays small.
_MAX_MEMO = 2048
_MAX_MEMO_LEN = 256
_quoted: dict[str | None, str] = {None: "-"}


def _quote_field(value: str | None) -> str:
    """log_quote(value), remembered in _quoted when value is a short str."""
    text = log_quote(value)
    if type(value) is str and len(value) <= _MAX_MEMO_LEN:
        if len(_quoted) >= _MAX_MEMO:
            _quoted.clear()
            _quoted[None] = "-"
        _quoted[value] = text
    return text


# Numbers as text, by value: statuses and sizes repeat, and str() of an int
# costs several lookups. Durations likewise, by their count of 10 µs (what
# '.5f' shows): the float-to-decimal conversion is the dearest part of a line.
_numbers: dict[int, str] = {}
_durations: dict[int, str] = {}


def _number(value: int) -> str:
    """str(value), remembered in _numbers."""
    text = str(value)
    if len(_numbers) >= _MAX_MEMO:
        _numbers.clear()
    _numbers[value] = text
    return text


def _duration_text(tens: int) -> str:
    """f'{seconds:.5f}' for a duration of tens * 10 µs, remembered in _durations."""
    text = f"{tens / 100000:.5f}"
    if len(_durations) >= _MAX_MEMO:
        _durations.clear()
    _durations[tens] = text
    return text


#: Header fields whose values log_headers never writes: credentials and
#: session keys, which anyone who can read the log could replay.
REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
#: What a redacted header's value is logged as.
REDACTED = "[redacted]"


def _shown(name: str, value: str) -> str:
    """A header's value as log_headers writes it: REDACTED for REDACTED_HEADERS."""
    return REDACTED if name.lower() in REDACTED_HEADERS else value


def format_request_line(client: str, method: str | None, path: str | None, status: int,
                        bytes_in: int,
                        bytes_out: int, duration: float, txn: str, user_agent: str | None,
                        referer: str | None, extra: list[str] | None = None,
                        headers: list[tuple[str, str]] | None = None, prefix: str = "") -> str:
    """The request log line: one string of space-separated, quoted fields, after prefix."""
    q = _quoted.get
    line = (f"{prefix}{q(client) or _quote_field(client)} {q(method) or _quote_field(method)} "
            f"{q(path) or _quote_field(path)} {status} {bytes_in} {bytes_out} "
            f"{duration:.5f} {txn} {q(user_agent) or _quote_field(user_agent)} "
            f"{q(referer) or _quote_field(referer)}")
    if extra:
        line += " " + " ".join(log_quote(word) for word in extra)
    if headers:
        line += " headers: " + " ".join(log_quote(f"{k}:{_shown(k, v)}") for k, v in headers)
    return line
