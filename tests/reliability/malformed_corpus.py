"""Malformed and hostile raw HTTP requests, as data.

Each entry is ``(name, raw bytes)``; test_hostile_clients.py sends every one
on its own connection to a real brimd. Every request aims at ``/echo`` (the
echo app), so a server that wrongly accepted one would answer 200 and be
caught, instead of hiding behind an app's 404.

Why data and not code: the list is the thing worth reviewing. A new way to
confuse an HTTP parser (a CVE in some other server, a smuggling write-up) is
one more line here, with no test logic to touch.

The entries are grouped: request lines and versions, header syntax,
framing (Content-Length / Transfer-Encoding) and smuggling forms, chunked
bodies and trailers, oversize fields, control bytes, request-target forms,
and things that are not HTTP/1.x at all.
"""

from __future__ import annotations

#: brim-wsgi's default limits (HTTPSettings); the oversize entries exceed them.
MAX_REQUEST_LINE = 8190
MAX_HEADER_SIZE = 65536
MAX_HEADERS = 100

H = b"Host: x\r\n"


def _get(target: bytes = b"/echo", version: bytes = b"HTTP/1.1", headers: bytes = H) -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + headers + b"\r\n"


def _post(headers: bytes, body: bytes = b"") -> bytes:
    return b"POST /echo HTTP/1.1\r\n" + H + headers + b"\r\n" + body


def _chunked(body: bytes) -> bytes:
    return _post(b"Transfer-Encoding: chunked\r\n", body)


_REQUEST_LINES: list[tuple[str, bytes]] = [
    ("garbage line", b"HELLO\r\n\r\n"),
    ("method only", b"GET\r\n\r\n"),
    ("method and target only, with headers", b"GET /echo\r\nHost: x\r\n\r\n"),
    ("tab as separator", b"GET\t/echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("two spaces after method", b"GET  /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("two spaces before version", b"GET /echo  HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("leading space", b" GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("extra word after version", b"GET /echo HTTP/1.1 extra\r\nHost: x\r\n\r\n"),
    ("trailing space after version", b"GET /echo HTTP/1.1 \r\nHost: x\r\n\r\n"),
    ("empty target", b"GET  HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("lowercase method", b"get /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("method that is no extension method", b"FR!B /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("method with a space", b"GE T /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("method with non-ASCII", b"G\xc9T /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("NUL before method", b"\x00GET /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("bare CR ends request line", b"GET /echo HTTP/1.1\rHost: x\r\n\r\n"),
    ("CR inside request line", b"GET /echo\rHTTP/1.1\r\nHost: x\r\n\r\n"),
]

_VERSIONS: list[tuple[str, bytes]] = [
    (f"version {v.decode()!r}", _get(version=v))
    for v in (b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.9", b"HTTP/1", b"HTTP/1.1.1",
              b"HTTP/01.1", b"HTTP/1.10", b"HTTP/a.b", b"http/1.1", b"HTTPS/1.1", b"HTTP /1.1",
              b"HTTP/-1.1", b"HTTP/1.1\x00", b"HTCPCP/1.0", b"HTTP/0.9", b"HTTP/")
] + [
    ("HTTP/0.9 simple request", b"GET /echo\r\n"),
    ("HTTP/0.9 simple request, blank line", b"GET /echo\r\n\r\n"),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    ("HTTP/2 preface then SETTINGS frame",
     b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
]

_HEADERS: list[tuple[str, bytes]] = [
    # RFC 9112 3.2: an HTTP/1.1 request names exactly one Host.
    ("no Host header", b"GET /echo HTTP/1.1\r\n\r\n"),
    ("two different Host headers", _get(headers=b"Host: a\r\nHost: b\r\n")),
    ("two identical Host headers", _get(headers=b"Host: x\r\nHost: x\r\n")),
    ("no Host on a POST with a body", b"POST /echo HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
    ("space before colon", _get(headers=b"Host : x\r\n")),
    ("tab before colon", _get(headers=H + b"X-A\t: v\r\n")),
    ("space in header name", _get(headers=H + b"Bad Name: v\r\n")),
    ("header line without colon", _get(headers=H + b"NoColon\r\n")),
    ("empty header name", _get(headers=H + b": v\r\n")),
    ("obs-fold with space", _get(headers=H + b"X-A: a\r\n b\r\n")),
    ("obs-fold with tab", _get(headers=H + b"X-A: a\r\n\tb\r\n")),
    ("whitespace line before first header", b"GET /echo HTTP/1.1\r\n Host: x\r\n\r\n"),
    ("folded Content-Length", _post(b"Content-Length:\r\n 5\r\n", b"hello")),
    ("folded Transfer-Encoding",
     _post(b"Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n")),
    ("parenthesis in header name", _get(headers=H + b"X(A): v\r\n")),
    ("at sign in header name", _get(headers=H + b"X@A: v\r\n")),
    ("quote in header name", _get(headers=H + b'X"A: v\r\n')),
    ("slash in header name", _get(headers=H + b"X/A: v\r\n")),
    ("brackets in header name", _get(headers=H + b"X[A]: v\r\n")),
    ("non-ASCII header name", _get(headers=H + b"X-\xc3\xa9: v\r\n")),
    ("lone LF line endings", b"GET /echo HTTP/1.1\nHost: x\n\n"),
    ("lone LF after request line", b"GET /echo HTTP/1.1\nHost: x\r\n\r\n"),
    ("lone LF ends the head", b"GET /echo HTTP/1.1\r\nHost: x\r\n\n"),
    ("lone LF between headers", _get(headers=b"Host: x\nX-A: v\r\n")),
    ("lone CR between headers", _get(headers=b"Host: x\rX-A: v\r\n")),
    ("lone CR in header value", _get(headers=H + b"X-A: a\rb\r\n")),
]

_CONTENT_LENGTH: list[tuple[str, bytes]] = [
    (f"Content-Length {v!r}", _post(b"Content-Length: " + v + b"\r\n", b"hello"))
    for v in (b"abc", b"-1", b"1.5", b"+5", b"0x5", b"5 5", b"5,6", b"", b"5\x00",
              b"99999999999999999999999999")
] + [
    ("differing duplicate Content-Length",
     _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    ("duplicate Content-Length, leading zero",
     _post(b"Content-Length: 5\r\nContent-Length: 05\r\n", b"hello")),
    ("Content-Length then an empty one", _post(b"Content-Length: 5\r\nContent-Length:\r\n",
                                               b"hello")),
    ("space before colon in Content-Length",
     _post(b"Content-Length : 5\r\n", b"hello")),
]

_SMUGGLING: list[tuple[str, bytes]] = [
    ("CL then TE", _post(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
                         b"0\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n")),
    ("TE then CL", _post(b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
                         b"0\r\n\r\nGET /echo HTTP/1.1\r\nHost: x\r\n\r\n")),
    ("TE chunked, identity", _post(b"Transfer-Encoding: chunked, identity\r\n",
                                   b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE identity", _post(b"Transfer-Encoding: identity\r\n", b"hello")),
    ("TE xchunked", _post(b"Transfer-Encoding: xchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE chunkedx", _post(b"Transfer-Encoding: chunkedx\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE chunked-false", _post(b"Transfer-Encoding: chunked-false\r\n", b"hello")),
    ("TE quoted chunked", _post(b'Transfer-Encoding: "chunked"\r\n', b"5\r\nhello\r\n0\r\n\r\n")),
    ("two TE headers, chunked first", _post(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE chunked then xchunked header", _post(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    ("space before colon in TE", _post(b"Transfer-Encoding : chunked\r\n",
                                       b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE name with trailing tab", _post(b"Transfer-Encoding\t: chunked\r\n",
                                        b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE with vertical tab", _post(b"Transfer-Encoding:\x0bchunked\r\n",
                                   b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE with form feed", _post(b"Transfer-Encoding: chunked\x0c\r\n",
                                b"5\r\nhello\r\n0\r\n\r\n")),
    ("TE on HTTP/1.0 with CL", b"POST /echo HTTP/1.0\r\nHost: x\r\nContent-Length: 5\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
] + [
    (f"CL with TE {te!r}", _post(b"Content-Length: 5\r\nTransfer-Encoding: " + te + b"\r\n",
                                 b"0\r\n\r\nX"))
    for te in (b"Chunked", b"CHUNKED", b"cHuNkEd", b" chunked ", b"\tchunked", b"chunked\t",
               b"chunked, identity", b"identity, chunked", b"xchunked", b"gzip, chunked")
] + [
    (f"TE {te!r} with CL", _post(b"Transfer-Encoding: " + te + b"\r\nContent-Length: 5\r\n",
                                 b"0\r\n\r\nX"))
    for te in (b"Chunked", b" chunked", b"chunked, identity")
]

_CHUNKED: list[tuple[str, bytes]] = [
    ("chunk size not hex", _chunked(b"zz\r\nhello\r\n0\r\n\r\n")),
    ("chunk size with 0x", _chunked(b"0x5\r\nhello\r\n0\r\n\r\n")),
    ("chunk size negative", _chunked(b"-5\r\nhello\r\n0\r\n\r\n")),
    ("chunk size with plus", _chunked(b"+5\r\nhello\r\n0\r\n\r\n")),
    ("chunk size with leading space", _chunked(b" 5\r\nhello\r\n0\r\n\r\n")),
    ("chunk size empty", _chunked(b"\r\nhello\r\n0\r\n\r\n")),
    ("chunk size overflow", _chunked(b"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
    ("chunk size just over 64 bits", _chunked(b"10000000000000000\r\nhello\r\n0\r\n\r\n")),
    ("chunk data missing CRLF", _chunked(b"5\r\nhelloX0\r\n\r\n")),
    ("chunk data longer than size", _chunked(b"3\r\nhello\r\n0\r\n\r\n")),
    ("chunk data ends with lone LF", _chunked(b"5\r\nhello\n0\r\n\r\n")),
    ("chunk size line ends with lone LF", _chunked(b"5\nhello\r\n0\r\n\r\n")),
    ("chunk size line ends with lone CR", _chunked(b"5\rhello\r\n0\r\n\r\n")),
    ("chunk extension with lone CR", _chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n")),
    ("chunk extension with lone LF", _chunked(b"5;a\nb\r\nhello\r\n0\r\n\r\n")),
    ("chunk extension with NUL", _chunked(b"5;a\x00b\r\nhello\r\n0\r\n\r\n")),
    ("chunk extension unterminated quote", _chunked(b'5;a="x\r\nhello\r\n0\r\n\r\n')),
    ("chunk extension with space in name", _chunked(b"5;a b=c\r\nhello\r\n0\r\n\r\n")),
    ("chunk extension with empty name", _chunked(b"5;=x\r\nhello\r\n0\r\n\r\n")),
    ("trailer line without colon", _chunked(b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n")),
    ("trailer with NUL", _chunked(b"5\r\nhello\r\n0\r\nX-T: a\x00b\r\n\r\n")),
    ("trailer with obs-fold", _chunked(b"5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n")),
    ("trailer with space before colon", _chunked(b"5\r\nhello\r\n0\r\nX-T : a\r\n\r\n")),
    ("Content-Length in trailer", _chunked(b"5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n")),
    ("last chunk with lone LF", _chunked(b"5\r\nhello\r\n0\n\r\n")),
    ("last chunk then garbage", _chunked(b"5\r\nhello\r\n0\r\n\x01\x02\r\n\r\n")),
]

_OVERSIZE: list[tuple[str, bytes]] = [
    ("request line over limit", _get(target=b"/echo?" + b"a" * MAX_REQUEST_LINE)),
    ("request line far over limit", _get(target=b"/echo?" + b"a" * (4 * MAX_HEADER_SIZE))),
    ("method far over limit", b"G" * (2 * MAX_REQUEST_LINE) + b" /echo HTTP/1.1\r\n" + H
     + b"\r\n"),
    ("one header over limit", _get(headers=H + b"X-Big: " + b"b" * MAX_HEADER_SIZE + b"\r\n")),
    ("header name over limit", _get(headers=H + b"X" * (MAX_HEADER_SIZE + 10) + b": v\r\n")),
    ("too many headers", _get(headers=H + b"".join(b"X-H%d: v\r\n" % i
                                                   for i in range(MAX_HEADERS + 1)))),
    ("far too many headers", _get(headers=H + b"X: v\r\n" * (20 * MAX_HEADERS))),
    ("headers over limit in total", _get(headers=H + b"".join(
        b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEADERS - 10)))),
    ("head with no line end", b"GET /echo HTTP/1.1\r\nX-A: " + b"a" * (2 * MAX_HEADER_SIZE)),
    ("request line with no line end", b"GET /" + b"a" * (2 * MAX_HEADER_SIZE)),
]

_CONTROL_BYTES: list[tuple[str, bytes]] = [
    ("NUL in method", b"GE\x00T /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("DEL in method", b"GET\x7f /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("NUL in path", _get(target=b"/ec\x00ho")),
    ("SOH in path", _get(target=b"/ec\x01ho")),
    ("ESC in path", _get(target=b"/echo\x1b[2J")),
    ("DEL in path", _get(target=b"/echo\x7f")),
    ("LF in path", _get(target=b"/ec\nho")),
    ("NUL in query", _get(target=b"/echo?a=\x00")),
    ("NUL in header name", _get(headers=H + b"X-\x00A: v\r\n")),
    ("SOH in header name", _get(headers=H + b"X-\x01A: v\r\n")),
    ("NUL in header value", _get(headers=H + b"X-A: a\x00b\r\n")),
    ("SOH in header value", _get(headers=H + b"X-A: a\x01b\r\n")),
    ("ESC in header value", _get(headers=H + b"X-A: \x1b[31mred\r\n")),
    ("DEL in header value", _get(headers=H + b"X-A: a\x7fb\r\n")),
    ("NUL in Host", _get(headers=b"Host: x\x00y\r\n")),
    ("NUL in Content-Length value", _post(b"Content-Length: \x005\r\n", b"hello")),
]

_TARGETS: list[tuple[str, bytes]] = [
    ("relative target", _get(target=b"echo")),
    ("absolute-form, empty authority and path", _get(target=b"http://")),
    ("absolute-form, no scheme", _get(target=b"://x/echo")),
    ("absolute-form, unclosed IPv6", _get(target=b"http://[::1/echo")),
    ("absolute-form, NUL in host", _get(target=b"http://h\x00st/echo")),
    ("absolute-form, space in host", _get(target=b"http://a b/echo")),
    ("absolute-form, port too big", _get(target=b"http://x:99999999999999999999/echo")),
    ("absolute-form, bad port", _get(target=b"http://x:port/echo")),
    ("absolute-form, userinfo only", _get(target=b"http://@/echo")),
    ("asterisk-form with GET", _get(target=b"*")),
    ("asterisk-form with POST", b"POST * HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    ("CONNECT, origin-form", b"CONNECT /echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("CONNECT, no port", b"CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    ("CONNECT, absolute-form", b"CONNECT http://x/echo HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("CONNECT, asterisk", b"CONNECT * HTTP/1.1\r\nHost: x\r\n\r\n"),
]

_NOT_HTTP: list[tuple[str, bytes]] = [
    ("TLS ClientHello", bytes.fromhex("16030100a5010000a10303") + bytes(32)
     + bytes.fromhex("000004c02fc0300100")),
    ("SSH banner", b"SSH-2.0-OpenSSH_9.0\r\n"),
    ("SMTP HELO", b"HELO example.com\r\n"),
    ("binary noise", bytes(range(256))),
    ("all NULs", bytes(1024)),
    ("all 0xff", b"\xff" * 1024),
    ("JSON body with no head", b'{"a": 1}\r\n\r\n'),
    ("status line sent as request", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
]

#: The whole corpus, in a stable order (names are unique; tests are named by them).
CORPUS: list[tuple[str, bytes]] = [
    *_REQUEST_LINES, *_VERSIONS, *_HEADERS, *_CONTENT_LENGTH, *_SMUGGLING, *_CHUNKED,
    *_OVERSIZE, *_CONTROL_BYTES, *_TARGETS, *_NOT_HTTP,
]

#: Odd but valid, and served: RFC 9110 section 2.5 has a server answer a
#: higher HTTP/1.x minor version as the highest it implements (HTTP/1.1).
#: Each must be answered once, as the request it plainly is, and ask for the
#: close itself so the answer ends the exchange: (name, raw bytes, expected
#: response body).
TOLERATED: list[tuple[str, bytes, bytes]] = [
    ("version 'HTTP/1.2'", _get(version=b"HTTP/1.2", headers=H + b"Connection: close\r\n"),
     b""),
]

assert len({name for name, _ in CORPUS}) == len(CORPUS), "corpus names must be unique"
