"""Chaining apps in a worker: each constructed with the next, the last one NotFound."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

from brim.wsgi import NotFound, build_chain


class Prefix:
    """Answers paths under its prefix, passes the rest on."""

    def __init__(self, name: str, conf: Any, next_app: Any) -> None:
        self.name, self.prefix, self.next_app = name, conf, next_app

    def __call__(self, env: dict, start_response: Any) -> list[bytes]:
        if not env["PATH_INFO"].startswith(self.prefix):
            return self.next_app(env, start_response)
        start_response("200 OK", [("Content-Length", str(len(self.name)))])
        return [self.name.encode()]


@dataclass
class Link:
    name: str
    cls: type
    conf: Any


def _call(app: Any, path: str) -> tuple[str, bytes]:
    seen = {}
    body = app({"PATH_INFO": path, "wsgi.input": io.BytesIO()},
               lambda status, headers: seen.update(status=status))
    return seen["status"], b"".join(body)


def test_requests_go_down_the_chain_in_order_until_one_answers():
    app = build_chain([Link("first", Prefix, "/a"), Link("second", Prefix, "/")])
    assert _call(app, "/a/x") == ("200 OK", b"first")
    assert _call(app, "/b") == ("200 OK", b"second")
    assert isinstance(app.next_app.next_app, NotFound)


def test_what_no_app_claims_is_404():
    app = build_chain([Link("only", Prefix, "/mine")])
    assert _call(app, "/other") == ("404 Not Found", b"404 Not Found\n")
    assert _call(build_chain([]), "/") == ("404 Not Found", b"404 Not Found\n")
