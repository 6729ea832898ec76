"""``brimd check``: the conf and every app loaded and checked, nothing started.

What ``gunicorn --check-config`` is for: a deploy (or a CI job, or an
operator before ``reload``) learns whether a conf would start, without
binding a port or forking a worker, so it can run beside the brimd that
serves. The check is the very load a start does (a :class:`Server`:
options, imports, ``parse_conf``, ``stats_conf``, the apps' shapes, which
collects every problem of every section and app), plus what a start does
later but needs no port for: the TLS certificates are loaded.
"""

from __future__ import annotations

import argparse
import sys

from brim.conf import ConfError, ConfProblems
from brim.supervisor import SupervisorError, server_ssl_context

from .core import Server
from .subservers import WSGISubserver

__all__ = ["check_tls", "cmd_check"]


def check_tls(server: Server) -> None:
    """Load every WSGI subserver's certificate and key, as binding would; ConfError
    naming each that fails."""
    problems = ConfProblems()
    for sub in server.subservers:
        if isinstance(sub, WSGISubserver) and sub.certfile:
            with problems.check():
                try:
                    server_ssl_context(sub.certfile, sub.keyfile)
                except SupervisorError as err:
                    raise ConfError(f"[{sub.section}] certfile: {err}") from None
    problems.raise_any()


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 and say what would run, or 1 with every problem (one a line, on stderr)."""
    server = Server.from_files(args.conf, overrides=args.set or ())
    check_tls(server)
    for sub in server.subservers:
        what = getattr(sub, "address", None)
        workers = f"{sub.workers} worker{'s' if sub.workers != 1 else ''}"
        print(f"[{sub.section}] {sub.kind}" + (f" at {what}" if what else "") + f", {workers}")
    files = ", ".join(server.conf.files) or "no file"
    print(f"brimd check: the conf is valid ({files}); nothing was started", file=sys.stderr)
    return 0
