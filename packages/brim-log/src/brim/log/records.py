"""Log records as lines: the timestamp, text escaping, and :class:`SinkHandler`.

App and server messages (``env['brim.logger']``, tracebacks, what an app
writes to ``wsgi.errors``) go through :mod:`logging`; a SinkHandler turns
each record into one line of text or one JSON object and hands it to a
sink. A record is always one record to whoever reads the log: in JSON, one
line whatever it holds; in text, one line, followed by continuation lines
for a traceback or a multi-line message, each marked as belonging to it.
"""

from __future__ import annotations

import json
import logging
import time

from .sinks import Sink, SyslogSink
from .txn import TxnFilter

__all__ = ["MULTILINE", "Clock", "SinkHandler", "clock", "escape_text"]

#: The record attribute that asks a SinkHandler to keep the message's own
#: line breaks as continuation lines instead of escaping them (set by
#: :class:`brim.log.stream.LogStream`, whose text is a block such as a
#: traceback an app wrote itself).
MULTILINE = "brim_multiline"


class Clock:
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


#: The process's one clock, shared by records and the request log.
clock = Clock()


class SinkHandler(logging.Handler):
    """Sends log records to a sink, as text or JSON lines, and flushes each one.

    Records are the rare lines (app messages, warnings, tracebacks), so each
    is delivered at once rather than waiting for the next flush. The flush
    also writes the request lines buffered before it, so one worker's lines
    stay in the order they were made.
    """

    def __init__(self, sink: Sink, name: str, fmt: str = "text") -> None:
        super().__init__()
        self.sink = sink
        self.fmt = fmt
        self.log_name = name
        self.brim_handler = True
        self.addFilter(TxnFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            txn = getattr(record, "brim_txn", None)
            more: list[str] = []
            if getattr(record, MULTILINE, False) and self.fmt != "json":
                message, *rest = message.splitlines() or [""]
                more.extend(rest)
            if record.exc_info:
                more.append(logging.Formatter().formatException(record.exc_info))
            if record.stack_info:
                more.append(record.stack_info)
            if self.fmt == "json":
                if more:
                    message = "\n".join([message, *more])
                line = json.dumps({
                    "time": clock.iso(record.created), "name": self.log_name,
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
        its traceback (or of a multi-line message from a LogStream).

        Nothing in a message or a traceback (where an exception's text may
        hold a client's bytes) may start a line a reader takes for a record of
        its own: line breaks and control characters are escaped (see
        :func:`escape_text`), and each continuation line repeats the record's
        stamp and level, then ``txn:<id> |`` (``|`` alone without a txn).
        """
        if txn:
            message = f"{message} txn:{txn}"
        syslog = isinstance(self.sink, SyslogSink)
        stamp = "" if syslog else (f"{clock.text(record.created)} {self.log_name} "
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
