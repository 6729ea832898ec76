"""Typed HTTP errors: one exception per way a request can be refused or lost.

Each carries the status it is answered (or counted) with and a reason for the
log. The request path raises them where a rule is broken; the exchange that
catches one answers it, counts it and logs it in its single ``finish()``, so
no refusal can skip the count or the log line.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AppError", "AppFailed", "BadRequest", "ClientError", "ClientGone", "ExpectationFailed",
    "HTTPError", "HeaderFieldsTooLarge", "MethodNotImplemented", "PayloadTooLarge",
    "RequestTimeout", "URITooLong", "VersionNotSupported",
]


class HTTPError(Exception):
    """A request that cannot be served as asked.

    ``status`` is what the client is answered with (or, for :class:`ClientGone`,
    what the request is counted as); ``reason`` says which rule it broke.
    ``method`` and ``target`` are filled in when the request line was read
    before the error, so the log line can name them.
    """

    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad Request"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.method: str | None = None
        self.target: str | None = None
        #: Read what the client still sends for a moment before closing, so
        #: the answer is not lost to a reset (False when the worker is full).
        self.linger = True


class BadRequest(HTTPError):
    """400: the bytes break HTTP/1.1's grammar or framing rules."""

    status = 400
    title = "Bad Request"


class RequestTimeout(HTTPError):
    """408: the client stopped sending mid-request, or sent too slowly."""

    status = 408
    title = "Request Timeout"


class URITooLong(HTTPError):
    """414: the request line is over ``max_request_line``."""

    status = 414
    title = "URI Too Long"


class PayloadTooLarge(HTTPError):
    """413: the request body is (or is declared) over ``max_body_size``."""

    status = 413
    title = "Content Too Large"


class HeaderFieldsTooLarge(HTTPError):
    """431: a field line, the field section or the field count is over its limit."""

    status = 431
    title = "Request Header Fields Too Large"


class MethodNotImplemented(HTTPError):
    """501: a method or transfer coding brim does not implement (RFC 9110 9.1, 15.6.2)."""

    status = 501
    title = "Not Implemented"


class ExpectationFailed(HTTPError):
    """417: an Expect field asks for something other than 100-continue (RFC 9110 10.1.1)."""

    status = 417
    title = "Expectation Failed"


class VersionNotSupported(HTTPError):
    """505: an HTTP major version other than 1."""

    status = 505
    title = "HTTP Version Not Supported"


class ClientGone(HTTPError):
    """499 (counted, never sent): the client closed or reset the connection."""

    status = 499
    title = "Client Closed Request"


class AppError(HTTPError):
    """500: the app broke a rule of PEP 3333 or of HTTP in what it asked to send."""

    status = 500
    title = "Internal Server Error"


class AppFailed(AppError):
    """500: the app raised (anything but a green-thread kill); its traceback is logged."""


class ClientError(OSError):
    """What an app sees when the client side of its request fails.

    Raised by ``wsgi.input`` when the body cannot be read (400, 408, 431,
    499) and
    by ``write()`` when the response cannot be sent (408, 499). An OSError,
    so apps that guard their I/O the usual way catch it; the HTTP error
    behind it is ``error``. The exchange has recorded that error already, so
    an app swallowing this exception still cannot make the request look
    healthy.
    """

    def __init__(self, error: HTTPError) -> None:
        super().__init__(error.reason)
        self.error = error
        self.status = error.status
