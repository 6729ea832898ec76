"""reload (SIGHUP): re-read the conf and replace every worker gracefully.

The new conf is validated completely before anything changes; if it is bad,
the error is logged and brimd keeps running as it was. Listening sockets
whose address is unchanged are kept (so no connection is refused); new
addresses are bound, and ports no longer configured are closed. Old workers
are asked to drain while new ones start. ``user`` and ``group`` cannot change
without a restart, since privileges were dropped at start.
"""

from __future__ import annotations

import argparse
from typing import Any

from brim.conf import ConfError
from brim.supervisor import SupervisorError

from .core import Server


def reload_server(old: Server, sup: Any, args: argparse.Namespace) -> Server:
    """Build the new Server from the conf files and swap it into ``sup``."""
    log = old.logger
    try:
        new = Server.from_files(args.reload_conf, output=old.output)
        unused = new.bind(old.sockets)
    except (ConfError, SupervisorError) as err:
        log.error("reload refused, still running the previous conf: %s", err)
        return old
    if (new.user, new.group) != (old.user, old.group):
        log.warning("reload: user and group changes take effect on restart, not reload")
    new.allocate_stats()
    new.setup_logging(stderr=old.log_to_stderr, syslog=old.log_to_syslog)
    for group in list(sup.groups):
        sup.remove_group(group)
    sup.set_sockets(new.sockets)
    for sock in unused.values():
        try:
            sock.close()
        except OSError:
            pass
    new.add_groups(sup)
    if old.stats is not None:
        old.stats.close()
    new.logger.info("brimd reloaded: %s",
                    ", ".join(f"{s.group} x{s.workers}" for s in new.subservers))
    return new
