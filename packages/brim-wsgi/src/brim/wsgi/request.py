"""Request heads: the request line and field section, parsed strictly.

brim reads HTTP/1.1 itself rather than through a lenient C parser, so every
rule of RFC 9112's grammar is a line here that a test can point at: one
space between the parts of the request line, tokens for methods and field
names, no bare CR or LF, no control bytes in values, one Host, framing
fields that cannot be read two ways. Whatever a request breaks, the result is
one of the typed errors of :mod:`brim.wsgi.errors`, raised before any app
sees the request.

The parse also builds the CGI part of the environ (``HTTP_*``,
``CONTENT_TYPE``, ``CONTENT_LENGTH``, ``PATH_INFO`` ...), so a request's
fields are walked once.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from .errors import (
    BadRequest,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    HTTPError,
    MethodNotImplemented,
    URITooLong,
    VersionNotSupported,
)

if TYPE_CHECKING:
    from .settings import HTTPSettings

__all__ = ["EXTENSION_METHOD", "KNOWN_METHODS", "HeadScan", "Request", "has_bare_cr_lf",
           "parse_fields", "parse_head"]

#: The registered methods brim knows: RFC 9110's, PATCH (RFC 5789), WebDAV's
#: (RFC 4918), REPORT and MKCALENDAR (RFC 3253, 4791), SEARCH (RFC 5323), the
#: QUERY method and the PURGE that caches use. They reach the app, and so does
#: any extension method written as EXTENSION_METHOD says (MKACTIVITY, BIND,
#: PURGE-ALL): the app decides what it implements, as behind gunicorn or nginx.
#: Other tokens are 501 (RFC 9110 9.1); methods are case-sensitive, so 'get'
#: is too. CONNECT is known but refused with 501: brim is not a proxy.
KNOWN_METHODS = frozenset((
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "PROPFIND",
    "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "MKCALENDAR", "SEARCH",
    "QUERY", "PURGE", "CONNECT",
))

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
#: The extension methods that reach the app: upper-case letters, digits, '-'
#: and '_', starting with a letter. A lower-case 'get' or a 'G!T' is no
#: method anyone registers, and most likely a client's or a proxy's mistake.
EXTENSION_METHOD = re.compile(r"[A-Z][A-Z0-9_\-]*")
# RFC 9112 3: method SP request-target SP HTTP-version, nothing else. The
# target is printable ASCII; obs-text and controls have no place in a URI.
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# An HTTP/0.9 request: a method and a target, no version.
_SIMPLE_REQUEST = re.compile(_TOKEN + rb" [\x21-\x7e]+")
# RFC 9112 5: field-name ":" OWS field-value OWS; the value is HTAB, SP,
# VCHAR and obs-text only (no NUL, no other control, no DEL).
_FIELD = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)")
_CONTENT_LENGTH = re.compile(r"[0-9]{1,18}")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
# Printable bytes RFC 3986 leaves out of every part of a URI (it has them only
# in its "unwise" list): an app or a proxy behind brim may split or quote
# them differently, so a target holding one is refused rather than passed on.
_NOT_IN_URI = re.compile(rb'[\\"<>{|}^`]')
# A bare CR (not before LF) or bare LF (not after CR).
_BARE_CR_LF = re.compile(rb"\r(?!\n)|(?<!\r)\n")
# Bytes that cannot appear in a request line (before its CRLF).
_NOT_LINE = re.compile(rb"[^\x21-\x7e \r]")
# scheme "://" authority path-abempty [ "?" query ] (RFC 9112 3.2.2).
_ABSOLUTE = re.compile(rb"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?]*)([^?]*)(\?.*)?", re.S)
# uri-host [ ":" port ]: an IP literal or a reg-name. Commas are refused too,
# though a reg-name allows them: a comma is how two Host fields merge.
_AUTHORITY = re.compile(
    rb"(?:\[([0-9A-Fa-f:.]+)\]|((?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})+))(?::([0-9]*))?")

#: Fields a request may carry once (RFC 9110 5.3: not list-valued). Two of
#: them would give two apps, or a proxy and an app, two different answers.
SINGLETON_KEYS = frozenset((
    "HTTP_HOST", "CONTENT_LENGTH", "CONTENT_TYPE", "HTTP_AUTHORIZATION",
    "HTTP_PROXY_AUTHORIZATION", "HTTP_RANGE", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_FROM",
    "HTTP_MAX_FORWARDS", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE",
    "HTTP_DATE", "HTTP_CONTENT_LOCATION", "HTTP_CONTENT_RANGE",
))

# Fields that must not come in a chunked body's trailer section: they decide
# framing or routing, which was settled by the header section.
_NOT_IN_TRAILERS = frozenset(("CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_HOST"))

# Every cache below is keyed by what clients send, so each is bounded twice:
# by its count of entries and by the size of one entry. A client sending
# distinct large values (8 KB names, lines, Hosts) gets no entry at all, and
# the memory a worker can spend on these caches stays a few MB.

# Field names -> environ keys, cached: most requests repeat the same names.
_HEADER_KEYS: dict[bytes, str | None] = {}
_MAX_HEADER_KEYS = 1024
_MAX_CACHED_NAME = 64


def _header_key(name: bytes) -> str | None:
    """The environ key for a field name, or None to drop the field.

    Names with '_' are dropped: after the CGI translation they would be
    indistinguishable from the '-' form, which lets a client forge a field a
    proxy in front believed it had removed.
    """
    try:
        return _HEADER_KEYS[name]
    except KeyError:
        pass
    text = name.decode("ascii")
    key: str | None
    if "_" in text:
        key = None
    else:
        key = text.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
    if len(_HEADER_KEYS) < _MAX_HEADER_KEYS and len(name) <= _MAX_CACHED_NAME:
        _HEADER_KEYS[name] = key
    return key


class Request:
    """One request head, checked: what the exchange builds the environ from."""

    __slots__ = ("cgi", "chunked", "content_length", "environ", "expect_continue", "fields",
                 "keep_alive", "method", "path", "query", "recorded", "referer", "target",
                 "user_agent", "version")

    def __init__(self, method: str, target: str, version: str) -> None:
        self.method = method
        #: The request-target as sent (REQUEST_URI), latin-1 text.
        self.target = target
        #: '1.0' or '1.1' (a later HTTP/1.x minor is served as 1.1).
        self.version = version
        #: Field lines as sent: (name, value without surrounding whitespace).
        self.fields: list[tuple[bytes, bytes]] = []
        #: The CGI items: HTTP_*, CONTENT_TYPE, CONTENT_LENGTH.
        self.environ: dict[str, str] = {}
        self.path = ""
        self.query = ""
        self.keep_alive = True
        self.chunked = False
        self.content_length: int | None = None
        self.expect_continue = False
        #: environ plus the request line's own items (REQUEST_METHOD, PATH_INFO ...):
        #: all of the PEP 3333 environ that comes from the head, merged once.
        self.cgi: dict[str, str] = {}
        #: The two fields every request log line shows, looked up once per head.
        self.user_agent: str | None = None
        self.referer: str | None = None
        #: Method and target as the in-flight table stores them (brim.wsgi.inflight),
        #: encoded by the first exchange of this head and reused by the next.
        self.recorded: tuple[bytes, bytes] | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def _merge_cgi(self) -> None:
        cgi = self.environ.copy()
        cgi["REQUEST_METHOD"] = self.method
        cgi["PATH_INFO"] = self.path
        cgi["QUERY_STRING"] = self.query
        cgi["REQUEST_URI"] = cgi["RAW_PATH_INFO"] = self.target
        cgi["SERVER_PROTOCOL"] = "HTTP/" + self.version
        self.cgi = cgi
        self.user_agent = cgi.get("HTTP_USER_AGENT")
        self.referer = cgi.get("HTTP_REFERER")


def has_bare_cr_lf(buf: bytes | bytearray, start: int = 0) -> bool:
    """Whether buf (from start on) holds a CR not before LF, or an LF not after CR.

    A CR as the very last byte is not counted: its LF may be in the next read.
    """
    bare = _BARE_CR_LF.search(buf, start)
    return bare is not None and not (bare.start() == len(buf) - 1 and buf[-1] == 13)


class HeadScan:
    """Early checks on a head that is still arriving, each byte scanned once.

    Waiting for the rest of a head that is already wrong (a bare LF, a
    request line of binary noise, a line over its limit) would only tie the
    connection up until client_timeout. A head that trickles in a byte at a
    time is scanned once in all, not once per byte.
    """

    __slots__ = ("line_end", "scanned", "settings")

    def __init__(self, settings: HTTPSettings) -> None:
        self.settings = settings
        self.scanned = 0
        self.line_end = -1

    def check(self, buf: bytes | bytearray) -> None:
        """Raise the error the incomplete head in buf has already earned, if any."""
        settings = self.settings
        start = max(0, self.scanned - 1)
        if has_bare_cr_lf(buf, start):
            raise BadRequest("bare CR or LF in the request head (lines end with CRLF)")
        if self.line_end < 0:
            line_end = buf.find(b"\r\n", start)
            stop = len(buf) if line_end < 0 else line_end
            if stop > settings.max_request_line:
                raise URITooLong(
                    f"request line over max_request_line ({settings.max_request_line})")
            if _NOT_LINE.search(buf, start, stop) is not None:
                raise BadRequest("control or non-ASCII byte in the request line")
            if line_end >= 0:
                self.line_end = line_end
                _parse_request_line(bytes(buf[:line_end]))
        if self.line_end >= 0 and len(buf) - self.line_end - 2 > settings.max_header_size + 2:
            raise HeaderFieldsTooLarge(
                f"header section over max_header_size ({settings.max_header_size})")
        self.scanned = len(buf)


def _parse_request_line(line: bytes) -> tuple[str, bytes, str]:
    """(method, target, version) of a request line, or the error it earns."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        if _SIMPLE_REQUEST.fullmatch(line):
            raise VersionNotSupported("HTTP/0.9 request (no version)")
        raise BadRequest("malformed request line")
    method_b, target, major, minor = match.groups()
    method = method_b.decode("ascii")
    if major != b"1":
        err: HTTPError = VersionNotSupported(f"HTTP/{major.decode()}.{minor.decode()}")
    elif method not in KNOWN_METHODS and not EXTENSION_METHOD.fullmatch(method):
        err = MethodNotImplemented(f"unknown method {method!r}")
    elif method == "CONNECT":
        err = MethodNotImplemented("CONNECT: brim is not a proxy")
    else:
        return method, target, "1.0" if minor == b"0" else "1.1"
    err.method = method
    err.target = target.decode("latin-1")
    raise err


def parse_fields(section: bytes, settings: HTTPSettings, *, trailers: bool = False,
                 fields: list[tuple[bytes, bytes]] | None = None) -> dict[str, str]:
    """The environ items of a field section (header or trailer), every line checked.

    Appends each (name, value) to ``fields`` when given. Repeated list fields
    are joined with ',' (Cookie with '; '); a repeated singleton is a 400,
    except identical Content-Length values, which are one.
    """
    env: dict[str, str] = {}
    if not section:
        return env
    what = "trailer" if trailers else "header"
    if len(section) > settings.max_header_size:
        raise HeaderFieldsTooLarge(
            f"{what} section over max_header_size ({settings.max_header_size})")
    lines = section.split(b"\r\n")
    if len(lines) > settings.max_headers:
        raise HeaderFieldsTooLarge(f"more than max_headers ({settings.max_headers}) {what}s")
    max_field = settings.max_header_field_size
    good = _good_lines
    for line in lines:
        if len(line) > max_field:
            raise HeaderFieldsTooLarge(
                f"{what} field over max_header_field_size ({max_field})")
        checked = good.get(line)
        if checked is None:
            checked = _check_field(line, what)
        name, value, key, text = checked
        if fields is not None:
            fields.append((name, value))
        if key is None:
            continue
        if trailers and key in _NOT_IN_TRAILERS:
            raise BadRequest(f"{name.decode()} in a trailer section")
        old = env.get(key)
        if old is None:
            env[key] = text
        elif key in SINGLETON_KEYS:
            if key == "CONTENT_LENGTH" and old == text:
                continue
            raise BadRequest(f"more than one {name.decode()} field")
        else:
            env[key] = old + ("; " if key == "HTTP_COOKIE" else ",") + text
    return env


# Field lines already found good, with what they give: most requests repeat
# the same lines (Host, User-Agent, Accept ...), so most lines cost one lookup.
# A browser's User-Agent or Accept line fits in the size bound.
_good_lines: dict[bytes, tuple[bytes, bytes, str | None, str]] = {}
_MAX_GOOD_LINES = 4096
_MAX_CACHED_LINE = 512


def _check_field(line: bytes, what: str) -> tuple[bytes, bytes, str | None, str]:
    """(name, value, environ key or None, value as text) of one field line, or BadRequest."""
    match = _FIELD.fullmatch(line)
    if match is None:
        raise BadRequest(_field_problem(line, what))
    name = match.group(1)
    value = match.group(2).strip(b" \t")
    checked = name, value, _header_key(name), value.decode("latin-1")
    if len(_good_lines) < _MAX_GOOD_LINES and len(line) <= _MAX_CACHED_LINE:
        _good_lines[line] = checked
    return checked


def _field_problem(line: bytes, what: str) -> str:
    """Why a field line failed the grammar, in words a log reader can act on."""
    if line[:1] in (b" ", b"\t"):
        return f"obsolete line folding in the {what} section"
    name, colon, _value = line.partition(b":")
    if not colon:
        return f"{what} line without a colon"
    if not name:
        return f"empty {what} field name"
    if name.rstrip(b" \t") != name:
        return f"whitespace before the colon of a {what} field"
    if re.fullmatch(_TOKEN, name) is None:
        return f"{what} field name is not a token"
    return f"control byte in a {what} field value"


#: Heads at most this long are kept in a parse cache (see parse_head).
MAX_CACHED_HEAD = 4096
#: Heads a parse cache holds before it starts afresh.
MAX_CACHED_HEADS = 512


def parse_head(head: bytes, settings: HTTPSettings,
               cache: dict[bytes, Request] | None = None) -> Request:
    """A checked Request from a complete head (request line and fields, no blank line).

    With a cache (one per server, so one set of limits), a head already
    parsed is answered by the Request it gave: a client on a keep-alive
    connection, or a load balancer's health check, sends the same head over
    and over, and a Request is never changed once parsed. Only heads that
    passed every rule are kept, so a refusal is always worked out afresh.
    """
    if cache is not None:
        req = cache.get(head)
        if req is not None:
            return req
    line_end = head.find(b"\r\n")
    line = head if line_end < 0 else head[:line_end]
    if len(line) > settings.max_request_line:
        raise URITooLong(f"request line over max_request_line ({settings.max_request_line})")
    method, target, version = _parse_request_line(line)
    req = Request(method, target.decode("latin-1"), version)
    try:
        if line_end >= 0:
            req.environ = parse_fields(head[line_end + 2:], settings, fields=req.fields)
        _check_framing(req)
        _split_target(req, target)
    except HTTPError as err:
        err.method = method
        err.target = req.target
        raise
    req._merge_cgi()
    if cache is not None and len(head) <= MAX_CACHED_HEAD:
        if len(cache) >= MAX_CACHED_HEADS:
            cache.clear()  # the heads of a while ago; the current ones come back at once
        cache[head] = req
    return req


def _check_framing(req: Request) -> None:
    """Host, Content-Length, Transfer-Encoding, Connection and Expect (RFC 9112 6, 9)."""
    env = req.environ
    host = env.get("HTTP_HOST")
    if host is None:
        if req.version == "1.1":
            raise BadRequest("HTTP/1.1 request without a Host field")
    else:
        check_authority(host, "Host")
    te = env.get("HTTP_TRANSFER_ENCODING")
    length = env.get("CONTENT_LENGTH")
    if te is not None:
        if length is not None:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if req.version == "1.0":
            raise BadRequest("Transfer-Encoding on an HTTP/1.0 request (faulty framing)")
        # RFC 9110 5.6.1: empty list elements (", chunked", "chunked,") are ignored.
        codings = [c for c in _tokens(te) if c]
        if not codings or codings[-1] != "chunked":
            raise BadRequest("Transfer-Encoding does not end in chunked")
        if len(codings) > 1:
            if "chunked" in codings[:-1]:
                raise BadRequest("chunked applied more than once")
            raise MethodNotImplemented(f"transfer coding {te!r} (only chunked is implemented)")
        req.chunked = True
    elif length is not None:
        if _CONTENT_LENGTH.fullmatch(length) is None:
            raise BadRequest(f"invalid Content-Length {length!r}")
        req.content_length = int(length)
    connection = _tokens(env.get("HTTP_CONNECTION", ""))
    if req.version == "1.1":
        req.keep_alive = "close" not in connection
        expect = env.get("HTTP_EXPECT")
        if expect is not None:
            req.expect_continue = _expects_continue(expect)
    else:
        # RFC 9112 9.3: close wins, whatever else the field says.
        req.keep_alive = "keep-alive" in connection and "close" not in connection
    # RFC 9110 10.1.1: an HTTP/1.0 client's Expect is ignored (the field is 1.1's).


def _expects_continue(value: str) -> bool:
    """Whether an HTTP/1.1 Expect value asks for 100 Continue; 417 for any other expectation.

    Expect is a list (repeated fields are joined with ','), so
    '100-continue, 100-continue' is one expectation said twice, and empty
    elements are nothing. Anything else (an extension, a parameter) is an
    expectation brim does not understand, and RFC 9110 10.1.1 answers that
    with 417 rather than leaving both sides waiting.
    """
    members = {m for m in _tokens(value) if m}
    if members - {"100-continue"}:
        raise ExpectationFailed(f"expectation {value!r} not understood (only 100-continue is)")
    return bool(members)


def _tokens(value: str) -> list[str]:
    return [t.strip(" \t").lower() for t in value.split(",")]


# Host values already found good: a server sees the same few all day. A DNS
# name is at most 253 bytes; with a port, an authority worth keeping fits 300.
_good_authorities: set[str] = set()
_MAX_GOOD_AUTHORITIES = 1024
_MAX_CACHED_AUTHORITY = 300


def check_authority(value: str, what: str) -> None:
    """Refuse a Host value (or a target's authority) that is not uri-host [":" port]."""
    if value in _good_authorities:
        return
    raw = value.encode("latin-1")
    match = _AUTHORITY.fullmatch(raw)
    if match is None:
        raise BadRequest(f"{what} {value!r} is not a valid authority")
    literal, _name, port = match.groups()
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal.decode("ascii"))
        except ValueError:
            raise BadRequest(f"{what} {value!r} has an invalid IPv6 literal") from None
    if port and (len(port) > 5 or int(port) > 65535):
        raise BadRequest(f"{what} {value!r} has a port out of range")
    if len(_good_authorities) < _MAX_GOOD_AUTHORITIES and len(value) <= _MAX_CACHED_AUTHORITY:
        _good_authorities.add(value)


def _split_target(req: Request, target: bytes) -> None:
    """PATH_INFO and QUERY_STRING from the request-target, by its form (RFC 9112 3.2)."""
    if b"#" in target:
        raise BadRequest("fragment (#) in the request target")
    if _NOT_IN_URI.search(target) is not None:
        raise BadRequest("request target holds a byte RFC 3986 leaves out of URIs "
                         '(\\ " < > { | } ^ `)')
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
    elif target == b"*":
        if req.method != "OPTIONS":
            raise BadRequest("only OPTIONS may target '*'")
        path = query = b""
    else:
        match = _ABSOLUTE.fullmatch(target)
        if match is None:
            raise BadRequest("request target is not origin-, absolute- or asterisk-form")
        scheme, authority, path, query = match.groups()
        if scheme.lower() not in (b"http", b"https"):
            raise BadRequest(f"unsupported scheme {scheme.decode()!r} in the request target")
        if b"@" in authority:
            raise BadRequest("userinfo in the request target")
        check_authority(authority.decode("latin-1"), "target authority")
        # RFC 9112 3.2.2: the target's authority wins over the Host field.
        req.environ["HTTP_HOST"] = authority.decode("latin-1")
        path = path or b"/"
        query = query[1:] if query else b""
    if b"%" in path:
        if _BAD_ESCAPE.search(path) is not None:
            raise BadRequest("invalid percent-escape in the request path")
        path = _unquote(path)
    req.path = path.decode("latin-1")
    req.query = query.decode("latin-1")


def _unquote(path: bytes) -> bytes:
    """Percent-decode a path whose escapes were checked (PEP 3333: bytes as latin-1)."""
    parts = path.split(b"%")
    out = [parts[0]]
    for part in parts[1:]:
        out.append(bytes((int(part[:2], 16),)) + part[2:])
    return b"".join(out)
