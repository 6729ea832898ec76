"""A supervised program for the tests, configured by one JSON argument.

Workers record what happens to them as JSON lines appended to the events
file (one small O_APPEND write per line, so lines from different processes
never interleave). The master logs to the log file.

Worker modes:
  sleep        heartbeat every 50 ms forever (default dispositions)
  crash        exit with code 3 at once
  hang         heartbeat once, then never again
  drain        ignore SIGHUP, poll ctx.draining, record "drained", exit 0
               (after "drain_delay" seconds of pretend work)
  ignore_term  ignore SIGTERM, sleep forever
  report       record the signal dispositions it started with, then sleep
  print        print a line, then raise RuntimeError("boom")
  serve        accept on the listening socket, answer each connection with
               the master's pid; drain like "drain"
  fail_init    raise ValueError("cannot start: bad setting") at once
  recycle      like drain, but ask to be recycled after "recycle_after"
               seconds (once per process)
  leak         like sleep, growing by 4 MiB every 50 ms
  orphan       fork a grandchild that exits after 0.2 s, then sleep; the
               grandchild's pid is recorded ("orphan" event)
  dump         like hang, with a handler for the dump signal that records
               the name of the function it interrupted

Every mode but crash and fail_init calls ctx.ready() once started (after
"ready_delay" seconds). With "reload_modes" (a list), each SIGHUP replaces
the first group with one whose workers run in the next of those modes
(remove_group(when_replaced=True)).

With "inherit": PATH the listening socket is fetched from the master that
serves socket hand-over at PATH instead of being bound anew.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time

from brim.supervisor import (
    DUMP_SIGNAL,
    PidFile,
    Recycling,
    Supervisor,
    daemonize,
    fetch_sockets,
    listen_tcp,
)

CONF = json.loads(sys.argv[1])
LISTENER: socket.socket | None = None


def event(kind: str, **fields: object) -> None:
    fields.update(ev=kind, pid=os.getpid(), t=time.time())
    line = (json.dumps(fields) + "\n").encode()
    fd = os.open(CONF["events"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _disposition(sig: signal.Signals) -> str:
    handler = signal.getsignal(sig)
    if handler == signal.SIG_DFL:
        return "default"
    if handler == signal.SIG_IGN:
        return "ignore"
    return "handler"


def worker(ctx) -> int | None:
    mode = CONF["modes"][ctx.group]
    if mode in ("drain", "recycle"):
        # Before "start" is recorded: a test may send the drain signal as
        # soon as it sees that event.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    event("start", group=ctx.group, id=ctx.worker_id, ppid=os.getppid())
    if mode == "crash":
        return 3
    if mode == "fail_init":
        raise ValueError("cannot start: bad setting")
    time.sleep(CONF.get("ready_delay", 0))
    ctx.ready()
    if mode == "orphan":
        child = os.fork()
        if child == 0:
            time.sleep(0.2)
            os._exit(0)
        event("orphan", child=child)
    if mode == "dump":
        def on_dump(_signum: int, frame: object) -> None:
            event("dump", function=getattr(getattr(frame, "f_code", None), "co_name", None))

        signal.signal(DUMP_SIGNAL, on_dump)
        ctx.heartbeat()
        stuck_in_a_loop()
    if mode == "print":
        print(f"hello from worker {ctx.worker_id}")
        raise RuntimeError("boom")
    if mode == "report":
        event(
            "report",
            signals={s.name: _disposition(s) for s in (
                signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGINT, signal.SIGCHLD
            )},
            blocked=sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])),
            wakeup_fd=signal.set_wakeup_fd(-1),
        )
    if mode == "serve":
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        assert LISTENER is not None
        LISTENER.settimeout(0.05)
        answer = f"{ctx.master_pid}\n".encode()
        while not ctx.draining:
            ctx.heartbeat()
            try:
                conn, _ = LISTENER.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(answer)
        LISTENER.close()  # stop taking connections; the queue stays with the socket
        event("drained", group=ctx.group, id=ctx.worker_id)
        return 0
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "hang":
        ctx.heartbeat()
        while True:
            time.sleep(1)
    started = time.monotonic()
    asked = False
    hoard = []
    while not ctx.draining:
        ctx.heartbeat()
        time.sleep(0.05)
        if mode == "recycle" and not asked and time.monotonic() - started > CONF["recycle_after"]:
            ctx.request_recycle("asked by the test")
            asked = True
        if mode == "leak":
            hoard.append(bytearray(4 << 20))
    time.sleep(CONF.get("drain_delay", 0))
    event("drained", group=ctx.group, id=ctx.worker_id)
    return 0


def stuck_in_a_loop() -> None:
    while True:
        time.sleep(1)


def main() -> int:
    log = logging.getLogger("supervised")
    handler = logging.FileHandler(CONF["log"])
    handler.setFormatter(logging.Formatter("%(process)d %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    global LISTENER
    sock = None
    if CONF.get("inherit"):
        sock = fetch_sockets(CONF["inherit"])["tcp"]
    elif CONF.get("listen"):
        sock = listen_tcp("127.0.0.1", 0, backlog=64, retry=0)
    LISTENER = sock
    if CONF.get("daemonize"):
        keep = [handler.stream]
        if sock is not None:
            keep.append(sock)
        daemonize(keep_fds=keep)
    pidfile = PidFile(CONF["pidfile"]) if CONF.get("pidfile") else None
    if pidfile is not None:
        if pidfile.is_running():
            log.error("already running as pid %s", pidfile.read())
            return 2
        pidfile.write()
    def swap_groups(sup: Supervisor) -> None:
        # on_reload hook: retire the first group, start an "extra" one.
        first = next(iter(CONF["groups"]))
        sup.remove_group(first)
        sup.add_group("extra", 2, target=worker)
        event("reloaded")

    def replace_group(sup: Supervisor) -> None:
        # on_reload hook: the first group again, its workers now in the next
        # of CONF["reload_modes"]; the old ones kept until the new ones are up.
        first = next(iter(CONF["groups"]))
        sup.remove_group(first, when_replaced=True)
        CONF["modes"][first] = CONF["reload_modes"].pop(0)
        sup.add_group(first, CONF["groups"][first], target=worker, announces_ready=True)
        event("reloaded")

    def after_fork_child(ctx) -> None:
        event("after_fork", group=ctx.group, id=ctx.worker_id)

    def on_child_exit(group: str, worker_id: int, pid: int, status: int) -> None:
        event("child_exit", group=group, id=worker_id, child=pid, status=status)

    def on_started(sup: Supervisor) -> None:
        event("started", workers=len(sup.workers))

    def on_ready(sup: Supervisor) -> None:
        event("ready", status=sup.status_line())

    def on_start_failed(sup: Supervisor, group: str, worker_id: int, error: str) -> None:
        event("start_failed", group=group, id=worker_id, error=error)

    def on_recycle(group: str, worker_id: int, pid: int, reason: str) -> None:
        event("recycle", group=group, id=worker_id, child=pid, reason=reason)

    hooks = {"on_ready": on_ready, "on_start_failed": on_start_failed, "on_recycle": on_recycle}
    if CONF.get("reload_modes"):
        hooks["on_reload"] = replace_group
    if CONF.get("hooks"):
        hooks.update(on_reload=swap_groups, after_fork_child=after_fork_child,
                     on_child_exit=on_child_exit, on_started=on_started)
    sup = Supervisor(
        name=CONF.get("name", "supt"),
        logger=log,
        grace=CONF.get("grace", 2.0),
        timeout=CONF.get("timeout"),
        restart_delay=CONF.get("restart_delay", 0.1),
        restart_delay_max=CONF.get("restart_delay_max", 1.0),
        stable_after=CONF.get("stable_after", 5.0),
        capture_output=CONF.get("capture_output"),
        handover_path=CONF.get("handover_path"),
        handover_replace=bool(CONF.get("inherit")),
        start_check=CONF.get("start_check", 0.3),
        dump_wait=CONF.get("dump_wait", 1.0),
        reap_orphans=CONF.get("reap_orphans", False),
        **hooks,
    )
    if sock is not None:
        sup.add_socket("tcp", sock)
        host, port = sock.getsockname()[:2]
        event("listening", host=host, port=port, family=int(socket.AF_INET))
    for name, count in CONF["groups"].items():
        rules = CONF.get("recycling", {}).get(name)
        sup.add_group(name, count, target=worker, announces_ready=True,
                      recycling=Recycling(**rules) if rules else None,
                      max_workers=CONF.get("max_workers", {}).get(name))
    event("master", pid=os.getpid())
    try:
        return sup.run()
    finally:
        if pidfile is not None:
            pidfile.remove()
        event("master_exit")


if __name__ == "__main__":
    sys.exit(main())
