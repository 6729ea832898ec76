"""Reload that loads new code: the master re-executes itself in place.

Why ``execv`` of the master, rather than importing apps only in workers:
brimd loads every app in the master before any fork, so a bad conf or app
stops a start before anything runs, whatever ``parse_conf`` loads is shared
copy-on-write by every worker, and a privilege drop cannot leave a worker
unable to read its own code. Python cannot unload a module, so a master
that holds the apps can only load new code as a new process image; ``execv``
gives it one under the same pid, which is what systemd
(``Type=notify-reload``), a container's PID 1 and the pid file need. It also
loads a new brimd, not only new apps. Keeping apps out of the master instead
would cost all of the above and a fresh interpreter at every start.

A reload (SIGHUP) goes in three steps, and the old workers serve throughout:

1. **Check** (:func:`check_new`): a fresh interpreter, a child of the
   master, reads the conf, imports the apps, runs their ``parse_conf`` and
   ``stats_conf`` and binds any address the master does not hold yet, as
   the master would. It sends the sockets it bound back over a unix socket
   pair (SCM_RIGHTS), or prints the error and exits 1. On an error the
   master logs it, reports it in its status file (``brimd reload`` prints
   it and exits 1), and nothing changes.
2. **Exec** (:func:`execute`): the master passes its listening sockets, its
   status file, its hand-over socket and the list of its workers in
   :data:`ENV_STATE` and its descriptors, and ``execv``\\ s
   ``python -m brim.server.reexec``, same pid.
3. **Resume** (:func:`resume`): the new image builds its Server from the
   conf (now with the code on disk), keeps the sockets it was given, adopts
   the old workers (:meth:`brim.supervisor.Supervisor.adopt`) and starts
   new ones. Once those are up and stayed up ``start_check`` seconds, the
   old ones are asked to drain: no connection is refused or cut.

Should the new image still fail to load (the code changed again between the
check and the exec), it holds: the old workers serve on (not restarted if
they die), the error goes to the log and the status file, and the next
reload tries again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from brim.conf import ConfError
from brim.supervisor import ActivatedSocket, PidFile, Supervisor, SupervisorError
from brim.supervisor.handover import recv_sockets, send_sockets

__all__ = ["ENV_STATE", "Carried", "ReloadRefused", "check_new", "execute", "resume"]

#: The environment variable that carries :class:`Carried` across ``execv``.
ENV_STATE = "BRIMD_REEXEC"
#: The check's end of the socket pair, in its environment.
_ENV_REPLY = "BRIMD_REEXEC_REPLY"
#: Never more than this for the check (importing a large app takes seconds).
CHECK_TIMEOUT = 60.0


class ReloadRefused(Exception):
    """The new conf or code cannot be loaded; the message says why."""


@dataclasses.dataclass
class Carried:
    """What a master keeps across ``execv``: descriptors by number, the rest as JSON."""

    conf: list[str] | None
    sys_path: list[str]
    pid_file: str | None
    stderr: bool
    syslog: bool
    output: bool
    foreground: bool
    daemonized: bool
    generation: int
    start_time: float
    #: Socket key to descriptor (the listening sockets, kept or new).
    sockets: dict[str, int]
    #: [name, descriptor] of the sockets systemd passed (socket activation).
    activated: list[list[Any]]
    #: [pid, group, worker id] of every worker, to adopt.
    workers: list[list[Any]]
    status_fd: int | None
    handover_fd: int | None
    notify: dict[str, str]
    #: The master's log options and grace, for a new image that cannot read the conf.
    log: dict[str, Any]
    grace: float
    #: user and group the master runs as: a reload cannot change them.
    identity: list[str | None]
    #: A conf built in memory rather than read from files (``brimd serve``
    #: builds one from its command line), section to options; ``conf`` is then
    #: unused. Carried as it is: the code it names is what the reload loads anew.
    conf_store: dict[str, dict[str, str]] | None = None
    #: The stats store's memfd: the new image starts its store's counters where
    #: this one's are (StatsStore.carry_from), so none goes backwards.
    stats_fd: int | None = None
    #: The ``--set`` values brimd was started with: they win over the files
    #: read again. (``BRIMD_...`` variables cross the exec in the environment.)
    overrides: list[str] = dataclasses.field(default_factory=list)

    def fds(self) -> list[int]:
        out = [*self.sockets.values(), *(fd for _name, fd in self.activated)]
        return out + [fd for fd in (self.status_fd, self.handover_fd, self.stats_fd)
                      if fd is not None]

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, text: str) -> Carried:
        return cls(**json.loads(text))


def _interpreter(mode: str) -> list[str]:
    """The command line of a fresh brimd image. "brimd" in it keeps ``ps`` and the
    pid file's name check telling what runs before the title is set."""
    return [sys.executable, "-m", "brim.server.reexec", mode, "brimd"]


# -- 1. check, in a fresh interpreter ----------------------------------------------------


def check_new(carried: Carried,
              keepalive: Callable[[], object] | None = None) -> dict[str, socket.socket]:
    """Load the conf and apps now on disk in a fresh child process, bind what is new.

    Returns the sockets the check bound (addresses the master does not hold
    yet), by key; raises :class:`ReloadRefused` with the error otherwise.
    Blocks the master for as long as the check takes (at most
    :data:`CHECK_TIMEOUT`); its workers serve on meanwhile, and
    ``keepalive`` is called every second (systemd's watchdog ping: an app
    that takes long to import must not get brimd killed as hung).
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    env = dict(os.environ)
    env[ENV_STATE] = carried.dumps()
    env[_ENV_REPLY] = str(theirs.fileno())
    try:
        proc = subprocess.Popen(_interpreter("check"), env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=[theirs.fileno(), *carried.fds()])
    except OSError as err:
        ours.close()
        theirs.close()
        hint = ""
        if isinstance(err, PermissionError) and os.geteuid() != 0:
            # A master that dropped privileges (user = ...) re-executes as that
            # user: it must be able to run this Python and read brimd's code.
            hint = (f" (the master runs as uid {os.geteuid()}, which must be able to run "
                    "this Python and read the apps' code for a reload; use restart)")
        raise ReloadRefused(f"brimd: cannot start the check of the new conf: {err}"
                            f"{hint}") from None
    theirs.close()
    deadline = time.monotonic() + CHECK_TIMEOUT
    while True:
        if keepalive is not None:
            keepalive()
        try:
            output, _ = proc.communicate(timeout=min(1.0, deadline - time.monotonic()))
            break
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue
            proc.kill()
            proc.communicate()
            ours.close()
            raise ReloadRefused(f"brimd: loading the new conf took more than "
                                f"{CHECK_TIMEOUT:g}s") from None
    text = output.decode("utf-8", "replace").strip()
    try:
        if proc.returncode != 0:
            raise ReloadRefused(text or f"brimd: the check of the new conf exited with "
                                f"code {proc.returncode}")
        ours.settimeout(5.0)
        try:
            return recv_sockets(ours)
        except (OSError, SupervisorError) as err:
            raise ReloadRefused(f"brimd: the check of the new conf sent no sockets: "
                                f"{err}") from None
    finally:
        ours.close()


def _check_main() -> int:
    """In the check's process: build the Server as the new image will, report."""
    carried = Carried.loads(os.environ.pop(ENV_STATE))
    reply = socket.socket(fileno=int(os.environ.pop(_ENV_REPLY)))
    sys.path[:] = carried.sys_path
    inherited, activated = _sockets(carried)
    try:
        server = _build(carried, inherited, activated)
    except Exception as err:
        print(_describe(err), flush=True)
        return 1
    held = {sock.fileno() for sock in inherited.values()}
    new = {key: sock for key, sock in server.sockets.items() if sock.fileno() not in held}
    send_sockets(reply, new)
    return 0


def _describe(err: BaseException) -> str:
    """The one text a user sees for a failed load: a ConfError as it is, else its type."""
    if isinstance(err, ConfError):
        return str(err)
    if isinstance(err, SupervisorError):
        return f"brimd: {err}"
    return "brimd: " + "".join(traceback.format_exception_only(type(err), err)).strip()


def _sockets(carried: Carried) -> tuple[dict[str, socket.socket], list[ActivatedSocket]]:
    """The carried listening sockets by key, and those systemd passed, as objects."""
    # One object per descriptor: a socket systemd passed is also among the
    # listening sockets, and two objects would each close it.
    by_fd = {fd: socket.socket(fileno=fd)
             for fd in dict.fromkeys([*(fd for _, fd in carried.activated),
                                      *carried.sockets.values()])}
    inherited = {key: by_fd[fd] for key, fd in carried.sockets.items()}
    activated = [ActivatedSocket(name, by_fd[fd]) for name, fd in carried.activated]
    return inherited, activated


def _build(carried: Carried, inherited: dict[str, socket.socket],
           activated: list[ActivatedSocket]) -> Any:
    """The Server the conf on disk describes, bound to the carried sockets (plus new
    ones): what a reload runs. Raises whatever loading raises."""
    from .core import Server

    if carried.conf_store is not None:
        server = Server.in_memory(carried.conf_store, output=carried.output)
    else:
        server = Server.from_files(carried.conf, output=carried.output,
                                   overrides=carried.overrides)
    server.start_time = carried.start_time
    for sock in server.bind(dict(inherited), activated=activated).values():
        sock.close()
    return server


# -- 2. exec -----------------------------------------------------------------------------


def execute(carried: Carried, sup: Supervisor) -> None:
    """``execv`` this process into a fresh brimd image that resumes as the master.

    Signals to the master that came meanwhile are kept for the new image
    (:meth:`~brim.supervisor.Supervisor.keep_signals_for_exec`). Returns only
    if the exec failed (OSError), with everything as it was.
    """
    fds = carried.fds()
    for fd in fds:
        os.set_inheritable(fd, True)
    env = dict(os.environ)
    env.update(carried.notify)
    env[ENV_STATE] = carried.dumps()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    argv = _interpreter("resume")
    undo = sup.keep_signals_for_exec()
    try:
        os.execve(argv[0], argv, env)
    except OSError:
        undo()
        for fd in fds:
            os.set_inheritable(fd, False)
        raise


# -- 3. resume, in the new image ------------------------------------------------------------


def resume() -> int:
    """In the new image: become the master again, with the code now on disk."""
    from brim.supervisor.daemon import mark_daemonized

    from .master import Master

    carried = Carried.loads(os.environ.pop(ENV_STATE))
    sys.path[:] = carried.sys_path
    if carried.daemonized:
        mark_daemonized()
    for fd in carried.fds():
        os.set_inheritable(fd, False)
    inherited, activated = _sockets(carried)
    try:
        server = _build(carried, inherited, activated)
        server.allocate_stats()
    except Exception as err:
        return _hold(carried, inherited, _describe(err))
    master = Master.resumed(server, carried)
    return master.run()


def _hold(carried: Carried, sockets: dict[str, socket.socket], error: str) -> int:
    """The new image cannot load its conf: keep the old workers serving, say why.

    The master runs on with no group of its own: the adopted workers serve
    (not restarted if they die), signals work as ever (TERM stops them, QUIT
    lets them finish, HUP tries to reload again) and the status file
    reports the error, which ``brimd reload`` prints.
    """
    from brim.supervisor.systemd import Notifier

    from .logtarget import LogTarget
    from .master import handover_path
    from .statusfile import StatusFile, status_path

    logger = LogTarget(**carried.log).setup(stderr=carried.stderr, syslog=carried.syslog)
    error = f"brimd: reload refused, still running the previous workers: {error}"
    logger.error("%s", error)
    notifier = Notifier.from_environment(logger)
    path = carried.pid_file
    status = StatusFile(status_path(path)) if path else None
    if status is not None and carried.status_fd is not None:
        status.adopt(carried.status_fd)

    def write_status(sup: Supervisor) -> None:
        if status is not None:
            status.write({"pid": os.getpid(), "generation": carried.generation,
                          "state": "failed", "error": error,
                          "notify": notifier.environment(), "subservers": [],
                          "foreground": carried.foreground})

    def reload(sup: Supervisor) -> None:
        carried.generation += 1
        carried.workers = [list(child) for child in sup.children]
        carried.notify = notifier.environment()
        try:
            for key, sock in check_new(carried, notifier.watchdog).items():
                carried.sockets[key] = sock.fileno()
            execute(carried, sup)
        except (ReloadRefused, OSError) as err:
            logger.error("brimd: reload refused: %s", err)
        write_status(sup)

    sup = Supervisor(
        name="brimd", logger=logger, grace=carried.grace,
        sockets=sockets,
        handover_path=handover_path(path, os.getpid()) if path else None,
        reap_orphans=carried.foreground, notify=notifier, on_reload=reload,
        on_status=write_status)
    if carried.handover_fd is not None:
        sup.adopt_handover(socket.socket(fileno=carried.handover_fd))
    for pid, group, worker_id in carried.workers:
        sup.adopt(pid, group, worker_id, held=True)
    write_status(sup)
    try:
        return sup.run()
    finally:
        if path and PidFile(path).remove() and status is not None:
            status.remove()
        notifier.close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        return _check_main()
    if argv[:1] == ["resume"]:
        return resume()
    print("brim.server.reexec: run by brimd itself on reload", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - run by execv and the check
    # As the module itself, not as __main__: the master imports it too.
    from brim.server import reexec

    sys.exit(reexec.main(sys.argv[1:]))
