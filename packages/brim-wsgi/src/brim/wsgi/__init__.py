"""brim.wsgi: serving chains of WSGI apps in brimd's worker processes.

The pieces, each in its own module:

* :mod:`brim.wsgi.chain`: chaining apps in each worker (the launcher loads
  them from its conf beforehand; brimd in :mod:`brim.server.apps`).
* :mod:`brim.wsgi.settings`: the options of a ``[wsgi]`` subconfig.
* :mod:`brim.wsgi.http`: the HTTP/1.1 server a worker runs, built from
  :mod:`~brim.wsgi.connection` (a socket and its buffer),
  :mod:`~brim.wsgi.exchange` (one request and its response),
  :mod:`~brim.wsgi.request` and :mod:`~brim.wsgi.body` (strict parsing),
  :mod:`~brim.wsgi.response` (what apps may send), :mod:`~brim.wsgi.state`
  (what a worker's connections share) and :mod:`~brim.wsgi.errors` (one
  exception per way a request fails).
* :mod:`brim.wsgi.file_wrapper`: ``wsgi.file_wrapper``, sent with sendfile.
* :mod:`brim.wsgi.requestlog`: the request log, one line per request; the
  rest of logging (sinks, formats, txn ids) is the brim-log package, :mod:`brim.log`.
* :mod:`brim.wsgi.engine`: what the HTTP core asks of a worker model, and
  its two engines: :mod:`brim.wsgi.green` (the only module that touches
  eventlet) and :mod:`brim.wsgi.threads` (a pool of OS threads).

Importing this package does not import eventlet; a green worker does, and
only through :mod:`brim.wsgi.green`.
"""

from .chain import ChainLink, NotFound, build_chain
from .settings import WSGI_OPTIONS, http_settings

__all__ = [
    "WSGI_OPTIONS",
    "ChainLink",
    "NotFound",
    "build_chain",
    "http_settings",
]
