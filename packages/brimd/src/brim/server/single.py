"""no-daemon mode: all of brimd in one foreground process, for debugging.

Every subserver runs as worker 0 in green threads of this one process and
every daemon in a thread, so a debugger or a print() sees all of it, and
Ctrl-C ends it. Nothing is forked, nothing is restarted. It stops as a
master does, without resetting a queued connection (see
:mod:`.single_stop`).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from brim.supervisor import WorkerContext
from brim.supervisor.dump import install_dump_handler

from .core import Server
from .single_stop import SingleStop


def run_single(server: Server) -> int:
    from brim.log.configure import reopen_logs
    from brim.wsgi import green

    logger = server.setup_logging(stderr=True, syslog=False)
    hubs = [s.hub for s in server.subservers if s.kind != "daemons" and s.hub]
    green.use_hub(hubs[0] if hubs else None)
    _patch(server, logger)
    for sub in server.subservers:
        if sub.kind == "daemons":
            thread = threading.Thread(target=_run_daemon, args=(sub, server, logger),
                                      name=sub.group, daemon=True)
            thread.start()
    # Ctrl-C and TERM stop the process through a signal handler that runs as
    # a green thread, not as a KeyboardInterrupt raised wherever the signal
    # lands: an exchange treats any exception from app code, KeyboardInterrupt
    # included, as the app's failure and serves on. The stop drains as a
    # master's does (drain_delay, requests finished, queued connections
    # answered); a second signal hurries it.
    serving = [sub for sub in server.subservers if sub.kind != "daemons"]
    contexts = {sub: _context(sub) for sub in serving}
    # What the readiness app asks (server.going_away): one context stands for
    # the process, marked with the rest.
    server.worker = WorkerContext.detached("no-daemon", supervisor_name="brimd")
    stop = SingleStop(server, [server.worker, *contexts.values()], green, logger)
    done = stop.asked
    green.install_signal_handlers({signal.SIGINT: lambda _: stop.signalled(),
                                   signal.SIGTERM: lambda _: stop.signalled(),
                                   signal.SIGUSR1: lambda _: reopen_logs()})
    # SIGUSR2 logs what every thread and green thread is doing (a plain
    # handler, so it works even when an app blocks the loop).
    install_dump_handler(logger, "brimd no-daemon")
    running = []
    on_threads: list[threading.Thread] = []
    for sub in serving:
        if _on_threads(sub):
            # Its pool of OS threads waits on OS primitives: on a green
            # thread that would block every other subserver.
            thread = threading.Thread(target=sub.run, args=(contexts[sub], server),
                                      name=sub.group, daemon=True)
            thread.start()
            on_threads.append(thread)
        else:
            running.append(green.spawn(sub.run, contexts[sub], server))
    if running:
        def _all_returned() -> None:
            for thread in running:
                thread.wait()
            if not done.ready():
                done.send(False)

        green.spawn(_all_returned)
    logger.info("brimd running in the foreground (no-daemon); Ctrl-C ends it")
    if done.wait():
        stop.run(lambda: all(t.dead for t in running)
                 and not any(t.is_alive() for t in on_threads))
        logger.info("brimd no-daemon: interrupted, exiting")
    else:
        stop.refuse()
    return 0


def _run_daemon(sub: Any, server: Server, logger: Any) -> None:
    try:
        sub.run(_context(sub), server)
    except Exception:
        logger.exception("daemon %s failed (no-daemon mode does not restart it)", sub.section)


def _context(sub: Any) -> WorkerContext:
    """Worker 0 of its group, in this process: no master watches or signals it."""
    return WorkerContext.detached(sub.group, supervisor_name="brimd")


def _on_threads(sub: Any) -> bool:
    settings = getattr(sub, "settings", None)
    return getattr(settings, "worker_model", "green") == "threads"


def _patch(server: Server, logger: Any) -> None:
    """Patch this one process as its green subservers ask (monkey_patch, or an app's
    own eventlet.monkey_patch() at import); never under a threads subserver."""
    from brim.wsgi import green

    wanted = green.patching_asked() or any(
        getattr(getattr(sub, "settings", None), "monkey_patch", False)
        for sub in server.subservers)
    if not wanted:
        return
    if any(_on_threads(sub) for sub in server.subservers):
        logger.warning("no-daemon: not patching the standard library with eventlet: a "
                       "threads subserver shares this process")
        return
    green.monkey_patch()
    green.apply_deferred_patching()
