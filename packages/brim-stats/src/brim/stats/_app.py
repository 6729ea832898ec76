"""Stats: the WSGI app that reports the server's stats as JSON or Prometheus text.

It answers only on its own path and passes every other request down the
chain, so it can sit in front of any app. It reads the store through the
worker's own bucket (``env['brim.stats']``), which knows its store and group:
the report is that group's stats plus those of every group the program
described as ``reported_by_all`` (see :class:`~brim.stats.Group`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qs

from . import _prometheus
from ._declare import StatsError

_JSON_TYPE = "application/json"
_ALLOWED = "GET, HEAD"


_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


class StatsConf(NamedTuple):
    """What Stats.parse_conf read: the path served and whether to report every group."""

    path: str
    all_subservers: bool


class _ConfLike(Protocol):
    def get(self, section: str, option: str) -> Any: ...


class Stats:
    """WSGI app serving the stats at ``path`` (default ``/stats``).

    ``GET``/``HEAD`` only (other methods: 405 with ``Allow``). JSON by
    default, encoded with ``env['brim.json_dumps']`` when the server provides
    one; Prometheus text with ``?format=prometheus`` or when the ``Accept``
    header asks for ``text/plain; version=0.0.4`` or OpenMetrics (answered in
    the 0.0.4 text format, which Prometheus accepts in either case).
    """

    def __init__(
        self, name: str, conf: str | StatsConf | _ConfLike,
        next_app: Callable[..., Iterable[bytes]],
    ) -> None:
        self.name = name
        if isinstance(conf, str):  # a bare path, as older callers pass
            conf = StatsConf(conf, False)
        elif not isinstance(conf, StatsConf):
            conf = self.parse_conf(name, conf)
        self.path = conf.path
        self.all_subservers = conf.all_subservers
        self.next_app = next_app

    #: The options of its section (besides ``call``); a server that checks
    #: app sections (brimd does) refuses any other.
    conf_options = ("path", "all_subservers")

    @classmethod
    def parse_conf(cls, name: str, conf: _ConfLike) -> StatsConf:
        """``path`` (default /stats) and ``all_subservers`` (default no), checked now.

        ``all_subservers = yes`` adds every other group of the store to the
        report, under its key; without it the report has the app's own group
        and the groups described as ``reported_by_all`` (in brimd: the TCP,
        UDP and daemon ones, which have no listener of their own). A group
        that cannot serve its own stats, say one crash-looping, is then still
        visible from another.
        """
        path = conf.get(name, "path")
        if path is None or path == "":
            path = "/stats"
        if not isinstance(path, str) or not path.startswith("/"):
            raise StatsError(f'[{name}] path: must start with "/", got {path!r}')
        word = conf.get(name, "all_subservers")
        word = "no" if word is None else str(word).strip().lower()
        if word not in _TRUE + _FALSE:
            raise StatsError(f"[{name}] all_subservers: {word!r} is not yes or no")
        return StatsConf(path, word in _TRUE)

    @classmethod
    def stats_conf(cls, name: str, conf: _ConfLike) -> list[tuple[str, str]]:
        """Stats declares no stats of its own."""
        return []

    def __call__(self, env: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if env.get("PATH_INFO") != self.path:
            return self.next_app(env, start_response)
        method = env.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", "text/plain; charset=utf-8",
                          f"{method} not allowed on {self.path}\n".encode(), method,
                          [("Allow", _ALLOWED)])
        bucket = env.get("brim.stats")
        if bucket is None or not hasattr(bucket, "store"):
            return _reply(start_response, "503 Service Unavailable", "text/plain; charset=utf-8",
                          b'no stats store in this server (env["brim.stats"] is missing)\n',
                          method)
        fmt = _wanted_format(env)
        if fmt is None:
            return _reply(start_response, "400 Bad Request", "text/plain; charset=utf-8",
                          b"format must be json or prometheus\n", method)
        store, group = bucket.store, bucket.group
        if fmt == "prometheus":
            groups = store.report_groups(group, everything=self.all_subservers)
            body = _prometheus.render(store, groups).encode("utf-8")
            return _reply(start_response, "200 OK", _prometheus.CONTENT_TYPE, body, method)
        report = store.report(group, everything=self.all_subservers)
        dumps = env.get("brim.json_dumps") or json.dumps
        dumped = dumps(report)
        body = dumped.encode("utf-8") if isinstance(dumped, str) else dumped
        return _reply(start_response, "200 OK", _JSON_TYPE, body, method)


def _wanted_format(env: dict[str, Any]) -> str | None:
    """'json', 'prometheus', or None for a format we do not offer."""
    query = parse_qs(env.get("QUERY_STRING", ""))
    if "format" in query:
        fmt = query["format"][-1].lower()
        return fmt if fmt in ("json", "prometheus") else None
    for media_range in env.get("HTTP_ACCEPT", "").split(","):
        parts = [p.strip().lower() for p in media_range.split(";")]
        if parts[0] == "application/openmetrics-text":
            return "prometheus"
        if parts[0] == "text/plain" and "version=0.0.4" in (p.replace(" ", "") for p in parts):
            return "prometheus"
    return "json"


def _reply(
    start_response: Callable[..., Any],
    status: str,
    content_type: str,
    body: bytes,
    method: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if extra:
        headers.extend(extra)
    start_response(status, headers)
    return [] if method == "HEAD" else [body]
