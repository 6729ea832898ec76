"""What an app may ask to send, checked: status, header fields, and the Date line.

PEP 3333 leaves it to the server to refuse what would break HTTP on the
wire, and every rule here closes a hole seen in the wild: a CR/LF in a status
or a value is response splitting; a header name that is not a token, or two
Content-Lengths, make a proxy read the response differently than the client;
a 1xx as the final status makes the next pipelined response answer the wrong
request. :func:`check_start` turns what ``start_response`` got into a
:class:`ResponseHead` or raises :class:`~brim.wsgi.errors.AppError` naming
the rule.
"""

from __future__ import annotations

import email.utils
import re
from dataclasses import dataclass
from typing import Any

from .errors import AppError

__all__ = ["HOP_BY_HOP", "ResponseHead", "check_start", "date_field", "date_line",
           "error_response"]

_STATUS = re.compile(r"([1-5][0-9][0-9]) [\t\x20-\x7e\x80-\xff]*")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# A value brim may send: HTAB, SP, VCHAR, obs-text; no CR, LF, NUL, DEL or
# other control byte (RFC 9110 5.5).
_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
_DIGITS = re.compile(r"[0-9]{1,18}")

#: Connection-specific fields (RFC 9110 7.6.1). The framing and persistence of
#: a connection are brim's to decide, so these are dropped from what an app
#: sends; ``Connection: close`` still closes the connection after the response.
HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
    "upgrade",
))


@dataclass(slots=True)
class ResponseHead:
    """A checked ``start_response``: the parts of the head that are the app's."""

    code: int
    #: The status as the app gave it ('200 OK').
    status: str
    #: The app's field lines, each 'Name: value\r\n', minus hop-by-hop fields.
    lines: list[str]
    #: The app's Content-Length, if it sent one.
    content_length: int | None
    has_date: bool
    #: The app sent 'Connection: close'.
    close: bool
    #: The status line and the app's field lines, as they go on the wire.
    head: bytes = b""


# Statuses and (name, value) pairs already found good. Apps send the same few
# over and over, so most responses are checked with a dict lookup each. An
# app may echo what a client sent (a Host, a cookie) into its headers, so
# each cache is bounded by the size of one entry as well as by its count.
_MAX_CACHED = 4096
_MAX_CACHED_STATUS = 64
_MAX_CACHED_PAIR = 512
_good_statuses: dict[str, int] = {}
_good_pairs: dict[tuple[str, str], tuple[str, str]] = {}
# Whole start_response calls already found good, and the ResponseHead each
# gave: most apps answer with a few fixed (status, headers) pairs, so the
# common response costs one lookup. A ResponseHead is never changed once made.
# Fewer are kept than pairs: an app whose headers vary (an ETag, a cookie)
# makes a new one each response, and each holds its whole head (at most
# _MAX_CACHED_HEAD bytes of it).
_MAX_CACHED_STARTS = 1024
_MAX_CACHED_HEAD = 2048
_good_starts: dict[tuple[str, tuple[Any, ...]], ResponseHead] = {}


def check_start(status: Any, headers: Any) -> ResponseHead:
    """A ResponseHead from start_response's arguments, or AppError naming the broken rule."""
    key: tuple[str, tuple[Any, ...]] | None = None
    if type(status) is str and type(headers) is list:
        key = (status, tuple(headers))
        try:
            response = _good_starts.get(key)
        except TypeError:  # an unhashable item: not a good header, as checked below
            key = response = None
        if response is not None:
            return response
    code = _good_statuses.get(status) if type(status) is str else None
    if code is None:
        code = _check_status(status)
    if type(headers) is not list:
        raise AppError(f"headers must be a list, not {type(headers).__name__}")
    lines: list[str] = []
    length: int | None = None
    has_date = close = False
    for item in headers:
        try:
            lname, value = _good_pairs[item]
        except (KeyError, TypeError):
            lname, value = _check_pair(item)
        if lname in HOP_BY_HOP:
            if lname == "connection" and "close" in (t.strip(" \t").lower()
                                                     for t in value.split(",")):
                close = True
            continue
        if lname == "content-length":
            if length is not None:
                raise AppError("more than one Content-Length header")
            if _DIGITS.fullmatch(value) is None:
                raise AppError(f"Content-Length {value!r} is not plain digits")
            length = int(value)
            if code == 204 or code == 205:
                continue  # RFC 9110 8.6: never on a 204; a 205's is brim's (always 0)
            value = str(length)
        elif lname == "date":
            has_date = True
        lines.append(f"{item[0]}: {value}\r\n")
    head = "".join(("HTTP/1.1 ", status, "\r\n", *lines)).encode("latin-1")
    response = ResponseHead(code, status, lines, length, has_date, close, head)
    if key is not None and len(head) <= _MAX_CACHED_HEAD:
        if len(_good_starts) >= _MAX_CACHED_STARTS:
            _good_starts.clear()  # an app whose headers vary: keep the recent ones
        _good_starts[key] = response
    return response


def _check_status(status: Any) -> int:
    """The code of a status line the app gave, or AppError."""
    if type(status) is not str:
        raise AppError(f"status must be a str, not {type(status).__name__}")
    match = _STATUS.fullmatch(status)
    if match is None:
        raise AppError(f"status {status!r} is not three digits (100-599), a space and a "
                       f"reason without control characters")
    code = int(match.group(1))
    if code < 200:
        raise AppError(f"status {status!r}: a 1xx status cannot be the final response")
    if len(_good_statuses) < _MAX_CACHED and len(status) <= _MAX_CACHED_STATUS:
        _good_statuses[status] = code
    return code


def _check_pair(item: Any) -> tuple[str, str]:
    """(lowercase name, value without surrounding whitespace) of one header, or AppError."""
    if type(item) is not tuple or len(item) != 2:
        raise AppError(f"header {item!r} is not a (name, value) tuple")
    name, value = item
    if type(name) is not str or type(value) is not str:
        raise AppError(f"header {item!r}: name and value must both be str")
    if _TOKEN.fullmatch(name) is None:
        raise AppError(f"header name {name!r} is not a token")
    if _VALUE.fullmatch(value) is None:
        raise AppError(f"header {name} value {value!r} holds a control character or "
                       f"a character outside latin-1")
    checked = name.lower(), value.strip(" \t")
    if len(_good_pairs) < _MAX_CACHED and len(name) + len(value) <= _MAX_CACHED_PAIR:
        _good_pairs[item] = checked
    return checked


_date_sec = 0
_date_line = ""
_date_field = b""


def date_line(now: float) -> str:
    """'Date: ...\\r\\n' for now, formatted once a second rather than once a response."""
    global _date_sec, _date_line, _date_field
    sec = int(now)
    if sec != _date_sec:
        _date_line = "Date: " + email.utils.formatdate(sec, usegmt=True) + "\r\n"
        _date_field = _date_line.encode("ascii")
        _date_sec = sec
    return _date_line


def date_field(now: float) -> bytes:
    """date_line(now) as bytes, for a head assembled as bytes."""
    if int(now) != _date_sec:
        date_line(now)
    return _date_field


def error_response(status: int, title: str, detail: str | None,
                   now: float) -> tuple[bytes, int]:
    """A complete text/plain answer that closes the connection, and its body's length.

    detail (why the request was refused) is included for client errors; a
    500 says nothing of the app's internals.
    """
    text = f"{status} {title}: {detail}\n" if detail else f"{status} {title}\n"
    body = text.encode("latin-1", "replace")
    head = (f"HTTP/1.1 {status} {title}\r\nContent-Type: text/plain; charset=latin-1\r\n"
            f"Content-Length: {len(body)}\r\n{date_line(now)}Connection: close\r\n\r\n")
    return head.encode("latin-1") + body, len(body)
