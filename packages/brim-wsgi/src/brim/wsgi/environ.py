"""The ``brim.*`` items every app is handed, built in this one place.

WSGI apps find them in their environ; brimd's TCP and UDP apps and daemons
get the same items in the env they are called with. Keeping one builder
means an item added here reaches every kind of app alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["brim_items"]


def brim_items(*, server: object = None, stats: Any = None, logger: Any = None,
               json_dumps: Callable[..., Any] = json.dumps,
               json_loads: Callable[..., Any] = json.loads) -> dict[str, Any]:
    """``brim.server``, ``brim.stats``, ``brim.logger``, ``brim.json_dumps`` and
    ``brim.json_loads``, and ``brim`` (the server again, under the name the
    Brim.Net Core docs give it) when a server object is given.

    PEP 3333 keeps dotless environ keys for CGI string values (and
    ``wsgiref.validate`` rejects an object there), so ``brim`` is set only
    for a launcher that promises it, as brimd does.
    """
    items: dict[str, Any] = {
        "brim.server": server,
        "brim.stats": stats,
        "brim.logger": logger,
        "brim.json_dumps": json_dumps,
        "brim.json_loads": json_loads,
    }
    if server is not None:
        items["brim"] = server
    return items
