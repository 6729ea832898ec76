"""Typed settings records, each read once from the option tables.

Why records: an option is declared once (its type, default, limits and
validator in :mod:`brim.server.options`) and read once, here, into a frozen
dataclass whose field names are the option names; the rest of brimd reads
attributes and never re-checks a value. Reading a record reads all of its
options together, so every mistake in a section is reported at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TypeVar

from brim.conf import Conf, read_options
from brim.supervisor import Recycling

from . import options

__all__ = ["ListenSettings", "MasterSettings", "RecycleSettings", "read_record"]

R = TypeVar("R")


def read_record(record: type[R], conf: Conf, kind: str, section: str) -> R:
    """``record`` filled from ``section`` (a section of ``kind``).

    Fields whose option ``kind`` does not declare keep their dataclass
    default (UDP has no ``backlog``, say).
    """
    declared = [options.option(kind, f.name) for f in fields(record)  # type: ignore[arg-type]
                if options.declares(kind, f.name)]
    return record(**read_options(conf, section, declared))


@dataclass(frozen=True)
class MasterSettings:
    """The master process's own options, from [brim]."""

    user: str | None
    group: str | None
    umask: str
    pid_file: str | None
    grace: float
    drain_delay: float
    worker_timeout: float
    start_check: float


@dataclass(frozen=True)
class ListenSettings:
    """Where a WSGI, TCP or UDP subserver listens, and how its workers take work."""

    ip: str
    port: int
    socket_name: str | None
    workers: int
    listen_retry: float
    concurrent_per_worker: int
    backlog: int = 0
    socket_mode: str | None = None
    socket_owner: str | None = None

    @property
    def unix_path(self) -> str | None:
        """The path of ``ip = unix:/path``, or None for an IP address."""
        return self.ip[len("unix:"):] if self.ip.startswith("unix:") else None


@dataclass(frozen=True)
class RecycleSettings:
    """When a subserver's processes are replaced on purpose."""

    max_worker_lifetime: float
    max_worker_rss: int
    recycle_concurrency: int
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_workers: int = 0

    def recycling(self) -> Recycling:
        """The supervisor's view: seconds and bytes, None for "no limit"."""
        return Recycling(max_lifetime=self.max_worker_lifetime or None,
                         max_rss=self.max_worker_rss * 2**20 or None,
                         concurrency=self.recycle_concurrency)
