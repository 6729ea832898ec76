"""The request log: one line per request, formatted once, written straight to the sinks.

The request log does not go through :mod:`logging`: a :class:`RequestLog`
formats each request's line once (text or JSON) and hands it to the sinks of
the logger :func:`brim.log.setup_logging` made, which costs a fraction of a
LogRecord and its handler locks. App and server messages go through
logging and :class:`brim.log.SinkHandler` to the same sinks. The rest of
logging (sinks, formats, txn ids, reopen) is :mod:`brim.log`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from brim.log.levels import NOTICE
from brim.log.records import SinkHandler, clock
from brim.log.sinks import Sink, SyslogSink

__all__ = [
    "REDACTED",
    "REDACTED_HEADERS",
    "RequestLog",
    "format_request_line",
    "log_quote",
    "request_log",
]


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
                "time": clock.iso(now), "name": self.name, "client": client,
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
                self._stamp = f"{clock.text(now)} {self.name} NOTICE "
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
                    stamped = f"{clock.text(now)} {self.name} NOTICE {text}"
                sink.write(stamped, NOTICE)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def backlog(self) -> int:
        """Lines that a sink holds for want of room at its destination."""
        return sum(sink.backlog() for sink in self.sinks)


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
