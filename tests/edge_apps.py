"""WSGI apps for the end-to-end HTTP edge tests (test_http_validate, test_http_file_wrapper).

The tests copy this file into the brimd's own directory, which is on the
workers' PYTHONPATH, and name the classes in the conf (``call =
edge_apps.Validated``). Nothing here is imported by the test process.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import WSGIWarning, validator

# --- wsgiref.validate ------------------------------------------------------------------

_last_logger: list[Any] = [logging.getLogger("brim")]


def _log_unraisable(unraisable: Any) -> None:
    """Log what a __del__ raised (validate's "Iterator garbage collected without being
    closed" is an AssertionError in IteratorWrapper.__del__) so the test sees it in syslog."""
    _last_logger[0].error(
        "unraisable AssertionError-or-other in the edge app: %s: %s (%s)",
        getattr(unraisable.exc_type, "__name__", unraisable.exc_type),
        unraisable.exc_value, unraisable.err_msg)


def _inner(env: dict, start_response: Callable) -> Any:
    """A well-behaved app: reads the body as asked, answers a JSON report of the environ."""
    path = env["PATH_INFO"]
    body = b""
    if path == "/readline":
        # readline(n) until EOF; validate's InputWrapper allows readline() with 0 or 1 args.
        while True:
            line = env["wsgi.input"].readline(7)
            if not line:
                break
            body += line
    elif env["REQUEST_METHOD"] in ("POST", "PUT", "PATCH"):
        # read(n) until EOF; validate's InputWrapper demands exactly one argument.
        while True:
            piece = env["wsgi.input"].read(5)
            if not piece:
                break
            body += piece
    report = {
        "method": env["REQUEST_METHOD"],
        "path_info": env["PATH_INFO"],
        "script_name": env["SCRIPT_NAME"],
        "query_string": env.get("QUERY_STRING"),
        "request_uri": env.get("REQUEST_URI"),
        "http_host": env.get("HTTP_HOST"),
        "server_protocol": env["SERVER_PROTOCOL"],
        "content_length": env.get("CONTENT_LENGTH"),
        "body": body.decode("latin-1"),
        "cgi_keys": sorted(k for k in env if "." not in k),
    }
    out = json.dumps(report, sort_keys=True).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
    if path == "/exc_info":
        # PEP 3333: an app may call start_response again with exc_info before the
        # head went out, and the server must use the second status and headers.
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        try:
            raise ValueError("replaced before the head went out")
        except ValueError:
            start_response("200 OK", headers, sys.exc_info())
        return [out]
    write = start_response("200 OK", headers)
    if path == "/write":
        # The legacy write() callable, then an empty iterable.
        write(out[:10])
        write(out[10:])
        return []
    return _Body([out[: len(out) // 2], out[len(out) // 2 :]])


class _Body:
    """A body iterable with close(), as many real apps return."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self):
        return iter(self.pieces)

    def close(self) -> None:
        self.pieces = []


class Validated:
    """Every request goes through wsgiref.validate.validator around a well-behaved app."""

    def __init__(self, name: str, conf: Any, next_app: Callable) -> None:
        self.checked = validator(_inner)
        # Every WSGIWarning (status without a reason, QUERY_STRING missing, unknown
        # method...) becomes an exception, so brimd answers 500 and logs it. Only
        # that category: eventlet's own warnings must not break the worker.
        warnings.simplefilter("error", WSGIWarning)
        sys.unraisablehook = _log_unraisable

    def __call__(self, env: dict, start_response: Callable) -> Any:
        _last_logger[0] = env.get("brim.logger", _last_logger[0])
        # The one documented exception: brimd sets the dotless key env['brim'] to its
        # server object (the seed's API), which validate rejects since dotless keys
        # must be CGI str values. Remove that key, and only that one.
        env.pop("brim", None)
        return self.checked(env, start_response)


# --- wsgi.file_wrapper -------------------------------------------------------------------

class _Reader:
    """A file-like with only read() and close(): no fileno, no seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def close(self) -> None:
        self.closed = True


class _CountingFile(io.FileIO):
    """A real file (fileno, tell, seek) that counts read() calls: none means sendfile."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "rb")
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return super().read(size)


class Files:
    """Serves the file named by the conf's ``file`` through env['wsgi.file_wrapper'].

    Query: ``id`` names the request, so ``/closed?id=...`` can say later
    whether the file-like given to the wrapper was closed; ``cl=1`` sets
    Content-Length; ``start``/``len`` seek and cut (``/file`` only).
    Paths: /file (open(path, 'rb')), /bytesio (io.BytesIO), /reader (no fileno),
    /blksize (the wrapper's blksize argument passed explicitly), /counted (a
    real file counting its read() calls), /closed and /reads (about an earlier
    request's file-like).
    """

    def __init__(self, name: str, conf: Any, next_app: Callable) -> None:
        self.path = conf.get(name, "file")
        self.next_app = next_app
        self.handed: dict[str, Any] = {}
        with open(self.path, "rb") as f:
            self.data = f.read()

    def __call__(self, env: dict, start_response: Callable) -> Any:
        query = {k: v[0] for k, v in parse_qs(env.get("QUERY_STRING", "")).items()}
        path = env["PATH_INFO"]
        size = len(self.data)
        if path in ("/closed", "/reads"):
            filelike = self.handed.get(query.get("id", ""))
            if filelike is None:
                state = "unknown"
            elif path == "/reads":
                state = str(filelike.reads)
            else:
                state = "yes" if filelike.closed else "no"
            out = state.encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(out)))])
            return [out]
        if path == "/sha":
            out = hashlib.sha256(self.data).hexdigest().encode()
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(out)))])
            return [out]
        start = int(query.get("start", 0))
        length = int(query["len"]) if "len" in query else size - start
        if path in ("/file", "/blksize"):
            filelike = open(self.path, "rb")  # noqa: SIM115 - closed by the server
            if start:
                filelike.seek(start)
        elif path == "/counted":
            filelike = _CountingFile(self.path)
        elif path == "/bytesio":
            filelike = io.BytesIO(self.data)
        elif path == "/reader":
            filelike = _Reader(self.data)
        else:
            return self.next_app(env, start_response)
        self.handed[query.get("id", "")] = filelike
        headers = [("Content-Type", "application/octet-stream")]
        if query.get("cl") == "1":
            headers.append(("Content-Length", str(length)))
        start_response("200 OK", headers)
        wrapper = env["wsgi.file_wrapper"]
        if path == "/blksize":
            return wrapper(filelike, 8192)
        return wrapper(filelike)
