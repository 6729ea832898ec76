"""brim.supervisor: keep worker processes alive, the way a Unix daemon should.

A standalone, stdlib-only library (setproctitle is an optional extra) for
daemons that pre-fork workers:

* :class:`Supervisor` -- one master loop keeping named groups of forked
  workers alive: restarts with back-off, hung-worker kills, TERM/QUIT/HUP
  handling, socket hand-over to a successor.
* :class:`Recycling` -- when a group's workers are replaced on purpose.
* :class:`WorkerContext` -- what each worker's ``target(ctx)`` receives.
* :class:`PidFile` and :func:`status` -- atomic, stale-aware pid files with
  LSB status codes.
* :func:`daemonize`, :func:`drop_privileges`, :func:`set_process_title`.
* :func:`listen_tcp`, :func:`listen_unix`, :func:`listen_udp`,
  :func:`server_ssl_context`.
* :func:`fetch_sockets` and friends -- SCM_RIGHTS socket hand-over.
* :class:`Notifier` and :func:`activated_sockets` -- systemd's readiness
  notifications and socket activation, without libsystemd.
* :func:`install_dump_handler` and :func:`add_dump_source` -- a worker's
  stack dump on :data:`DUMP_SIGNAL`, sent before a hung worker is killed.
* :class:`SupervisorError` -- the one exception type.
"""

from brim.supervisor.daemon import (
    daemonize,
    drop_privileges,
    is_daemonized,
    parse_umask,
    user_ids,
)
from brim.supervisor.dump import (
    DUMP_SIGNAL,
    add_dump_source,
    install_dump_handler,
    remove_dump_source,
)
from brim.supervisor.errors import SupervisorError
from brim.supervisor.handover import (
    answer_handover,
    fetch_sockets,
    recv_sockets,
    release_handover,
    send_sockets,
    serve_handover,
)
from brim.supervisor.limits import raise_open_files_limit
from brim.supervisor.master import (
    DRAIN_SIGNAL,
    REOPEN_SIGNAL,
    Recycling,
    Supervisor,
    describe_status,
)
from brim.supervisor.output import LoggerWriter, capture_output
from brim.supervisor.pidfile import (
    STATUS_DEAD_PIDFILE_EXISTS,
    STATUS_NOT_RUNNING,
    STATUS_RUNNING,
    STATUS_UNKNOWN,
    PidFile,
    status,
    wait_gone,
)
from brim.supervisor.proctitle import can_set_process_title, get_process_title, set_process_title
from brim.supervisor.sockets import (
    format_address,
    listen_tcp,
    listen_udp,
    listen_unix,
    server_ssl_context,
)
from brim.supervisor.systemd import ActivatedSocket, Notifier, activated_sockets, describe_socket
from brim.supervisor.worker import WorkerContext

__all__ = [
    "DRAIN_SIGNAL",
    "DUMP_SIGNAL",
    "REOPEN_SIGNAL",
    "STATUS_DEAD_PIDFILE_EXISTS",
    "STATUS_NOT_RUNNING",
    "STATUS_RUNNING",
    "STATUS_UNKNOWN",
    "ActivatedSocket",
    "LoggerWriter",
    "Notifier",
    "PidFile",
    "Recycling",
    "Supervisor",
    "SupervisorError",
    "WorkerContext",
    "activated_sockets",
    "add_dump_source",
    "answer_handover",
    "can_set_process_title",
    "capture_output",
    "daemonize",
    "describe_socket",
    "describe_status",
    "drop_privileges",
    "fetch_sockets",
    "format_address",
    "get_process_title",
    "install_dump_handler",
    "is_daemonized",
    "listen_tcp",
    "listen_udp",
    "listen_unix",
    "parse_umask",
    "raise_open_files_limit",
    "recv_sockets",
    "release_handover",
    "remove_dump_source",
    "send_sockets",
    "serve_handover",
    "server_ssl_context",
    "set_process_title",
    "status",
    "user_ids",
    "wait_gone",
]
