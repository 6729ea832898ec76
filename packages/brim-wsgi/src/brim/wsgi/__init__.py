"""brim.wsgi: serving chains of WSGI apps in brimd's worker processes.

The pieces, each in its own module:

* :mod:`brim.wsgi.chain`: loading apps from a conf (in the master, before
  fork) and chaining them (in each worker).
* :mod:`brim.wsgi.settings`: the options of a ``[wsgi]`` subconfig.
* :mod:`brim.wsgi.http`: the HTTP/1.1 server a worker runs.
* :mod:`brim.wsgi.log`: syslog/stderr logging with a transaction id per request.
* :mod:`brim.wsgi.green`: the only module that touches eventlet.

Importing this package does not import eventlet; only :mod:`brim.wsgi.http`
and :mod:`brim.wsgi.green` do.
"""

from .chain import AppSpec, NotFound, build_chain, load_apps, load_object
from .settings import WSGI_OPTIONS, http_settings

__all__ = [
    "WSGI_OPTIONS",
    "AppSpec",
    "NotFound",
    "build_chain",
    "http_settings",
    "load_apps",
    "load_object",
]
