"""A subconfig's chain of WSGI apps, built in each worker.

Each app is constructed as ``cls(name, parsed_conf, next_app)`` with the app
after it, the last one getting :class:`NotFound`; so a request goes down the
chain until an app answers it. What to construct (the class, its name and
its parsed conf) is loaded beforehand, in the launcher's master (brimd:
:mod:`brim.server.apps`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

WSGIApp = Callable[[dict, Callable], Any]


class ChainLink(Protocol):
    """What build_chain needs of each app: its class, name and parsed conf."""

    name: str
    cls: type
    conf: Any


class NotFound:
    """The end of every chain: whatever no app claimed is a 404."""

    body = b"404 Not Found\n"

    def __call__(self, env: dict, start_response: Callable) -> list[bytes]:
        start_response(
            "404 Not Found",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(self.body)))],
        )
        return [self.body]


def build_chain(specs: Sequence[ChainLink], last: WSGIApp | None = None) -> WSGIApp:
    """Construct the apps, last first, each given the next (worker side)."""
    app: WSGIApp = last if last is not None else NotFound()
    for spec in reversed(specs):
        app = spec.cls(spec.name, spec.conf, app)
    return app
