"""brim.log: logging for every process brimd runs (sinks, formats, txn ids, reopen).

One place for it, used alike by WSGI, TCP and UDP workers, daemons and the
master. brim logs to syslog by default (facility LOCAL0, name 'brim') and to
stderr when not daemonized; a conf can choose a file or stdout instead.
Every line logged while a request is being served carries that request's txn
id, so one request can be followed through a busy log.

The modules, one concept each:

* :mod:`brim.log.levels`: the NOTICE level, level names, the formats;
* :mod:`brim.log.txn`: txn ids and the context that carries them;
* :mod:`brim.log.sinks`: where lines go (syslog, a file, a stream);
* :mod:`brim.log.records`: records as text or JSON lines (:class:`SinkHandler`);
* :mod:`brim.log.configure`: :func:`setup_logging` and :func:`reopen_logs`;
* :mod:`brim.log.stream`: :class:`LogStream`, text written to a stream as records.

The names most callers need are here too.
"""

from __future__ import annotations

from .configure import reopen_logs, setup_logging
from .levels import LOG_FORMATS, NOTICE
from .records import SinkHandler, escape_text
from .stream import LogStream, capture_std_streams
from .txn import current_txn, new_txn, set_txn, txn_logger

__all__ = [
    "LOG_FORMATS",
    "NOTICE",
    "LogStream",
    "SinkHandler",
    "capture_std_streams",
    "current_txn",
    "escape_text",
    "new_txn",
    "reopen_logs",
    "set_txn",
    "setup_logging",
    "txn_logger",
]
