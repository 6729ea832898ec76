"""The brimd command: init.d-style control of one brimd.

Commands map onto signals to the master named by the pid file:

========== =============================================================
start      validate the conf, bind, daemonize, run (default command)
stop       TERM: workers finish what they hold within ``grace``, then exit
shutdown   QUIT: the master lets go of the ports and exits at once; its
           workers finish their connections and exit on their own
restart    start a new brimd that takes the listening sockets over from
           the running one, which then shuts down gracefully
reload     HUP: re-read the conf and gracefully replace every worker
status     report whether brimd runs (LSB exit codes: 0 yes, 1 stale pid
           file, 3 no)
no-daemon  one process in the foreground, no workers; for debugging
foreground all workers and daemons, not daemonized, logging to stderr;
           for systemd and containers (TERM drains and exits)
========== =============================================================
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata

from brim.conf import Conf, ConfError
from brim.supervisor import (
    PidFile,
    SupervisorError,
    daemonize,
    drop_privileges,
    fetch_sockets,
    parse_umask,
    status,
    user_ids,
)

from . import options
from .core import DEFAULT_CONF_FILES, Server, pid_file_path
from .dialect import MAIN_SECTION, read_conf

COMMANDS = ("start", "stop", "restart", "shutdown", "status", "reload", "force-reload",
            "no-daemon", "foreground")

#: How long the command waits for a daemonized brimd to say it started.
START_TIMEOUT = 60.0


def _version() -> str:
    try:
        return metadata.version("brimd")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a tree
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brimd",
        description="Launch and control WSGI, TCP and UDP apps and daemons described by "
                    "a conf file.",
        epilog=__doc__.split("\n\n", 1)[1].split("\"\"\"")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="start", choices=COMMANDS,
                        metavar="command", help="one of: " + ", ".join(COMMANDS) +
                        " (default: start)")
    parser.add_argument("-c", "--conf", action="append", metavar="PATH",
                        help="conf file to read; repeat to read several in order (default: "
                             + ", ".join(DEFAULT_CONF_FILES) + ", those that exist)")
    parser.add_argument("-p", "--pid-file", metavar="PATH",
                        help="pid file; '-' for none (default: pid_file in the conf, else "
                             "/var/run/brimd.pid as root or ~/.brimd.pid)")
    parser.add_argument("-o", "--output", action="store_true",
                        help="keep stdout and stderr open and log to stderr too")
    parser.add_argument("-v", "--version", action="version", version=f"brimd {_version()}")
    parser.add_argument("-x", "--traceback", action="store_true",
                        help="show the full stack trace of a start-up error")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brimd`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    # Errors name the files as the user typed them, but the daemon changes to
    # / and reload re-reads the files from there, so it keeps absolute paths.
    args.reload_conf = [os.path.abspath(os.path.expanduser(p)) for p in args.conf or ()] or None
    handler = _HANDLERS[args.command]
    try:
        return handler(args)
    except (ConfError, SupervisorError) as err:
        if args.traceback:
            traceback.print_exc()
        print(str(err) if isinstance(err, ConfError) else f"brimd: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if args.traceback:
            traceback.print_exc()
        else:
            print(f"brimd: {type(err).__name__}: {err} (run with -x for the stack trace)",
                  file=sys.stderr)
        return 1


# -- finding the running brimd ----------------------------------------------


def _lenient_conf(args: argparse.Namespace) -> Conf | None:
    """The conf files as plain text, unvalidated, or None if even that fails.

    stop, shutdown and status must work on a brimd whose conf has since been
    broken, so they read only what they need (pid_file, grace) from this.
    """
    try:
        if args.conf:
            return read_conf(args.conf)
        return read_conf(DEFAULT_CONF_FILES, missing_ok=True)
    except ConfError:
        return None


def _pid_path(args: argparse.Namespace, conf: Conf | None) -> str | None:
    configured = conf.get_path(MAIN_SECTION, "pid_file") if conf is not None else None
    return pid_file_path(args.pid_file, configured)


def _running_pid(path: str | None) -> int | None:
    if path is None:
        return None
    pidfile = PidFile(path, name="brimd")
    return pidfile.read() if pidfile.is_running() else None


def handover_path(pid_path: str, pid: int) -> str:
    """Where the master with ``pid`` offers its sockets to a successor."""
    return f"{pid_path}.{pid}.sock"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        if _is_zombie(pid):
            return True
        time.sleep(0.05)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _grace(conf: Conf | None) -> float:
    declared = options.option(MAIN_SECTION, "grace")
    try:
        return declared.read(conf, MAIN_SECTION) if conf is not None else declared.default
    except ConfError:
        return declared.default


# -- the commands -------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    path = _pid_path(args, _lenient_conf(args))
    if path is None:
        print("brimd: no pid file (-p -), cannot tell", file=sys.stderr)
        return 4
    code = status(path, name="brimd")
    pid = PidFile(path).read()
    if code == 0:
        print(f"brimd is running (pid {pid})")
    elif code == 1:
        print(f"brimd is not running (stale pid file {path})")
    else:
        print("brimd is not running")
    return code


def cmd_stop(args: argparse.Namespace) -> int:
    conf = _lenient_conf(args)
    return _signal_and_wait(_pid_path(args, conf), signal.SIGTERM, _grace(conf) + 15.0, "stop")


def cmd_shutdown(args: argparse.Namespace) -> int:
    return _signal_and_wait(_pid_path(args, _lenient_conf(args)), signal.SIGQUIT, 15.0,
                            "shut down")


def _signal_and_wait(path: str | None, signum: int, timeout: float, what: str) -> int:
    pid = _running_pid(path)
    if pid is None:
        print("brimd is not running", file=sys.stderr)
        return 0
    os.kill(pid, signum)
    if not _wait_gone(pid, timeout):
        print(f"brimd: pid {pid} did not {what} within {timeout:g}s", file=sys.stderr)
        return 1
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    server = Server.from_files(args.conf)  # refuse to signal with a conf that won't load
    pid = _running_pid(server.pid_file(args.pid_file))
    if pid is None:
        print("brimd is not running", file=sys.stderr)
        return 7
    os.kill(pid, signal.SIGHUP)
    return 0


def _load(args: argparse.Namespace, output: bool) -> tuple[Server, str | None, int | None]:
    """The validated Server, its pid file path, and the pid of a brimd already running."""
    server = Server.from_files(args.conf, output=output)
    path = server.pid_file(args.pid_file)
    return server, path, _running_pid(path)


def _ready(server: Server, inherited: dict | None = None) -> None:
    """Bind (or adopt) the listening sockets and allocate stats: all before any fork."""
    for sock in server.bind(inherited).values():
        sock.close()
    server.allocate_stats()


def cmd_start(args: argparse.Namespace) -> int:
    server, path, pid = _load(args, args.output)
    if pid is not None:
        print(f"brimd is already running (pid {pid})", file=sys.stderr)
        return 0
    _ready(server)
    return _daemon_start(server, path, args, old_pid=None)


def cmd_foreground(args: argparse.Namespace) -> int:
    server, path, pid = _load(args, True)
    if pid is not None:
        print(f"brimd is already running (pid {pid})", file=sys.stderr)
        return 1
    _ready(server)
    return run_master(server, path, args, stderr=True, syslog=False)


def cmd_restart(args: argparse.Namespace) -> int:
    server, path, old_pid = _load(args, args.output)
    inherited = {}
    if old_pid is not None and path is not None:
        try:
            inherited = fetch_sockets(handover_path(path, old_pid))
        except SupervisorError as err:
            print(f"brimd: {err}; binding anew once the running brimd lets go",
                  file=sys.stderr)
        if not inherited:
            # No hand-over: the old brimd must release the ports before we bind.
            os.kill(old_pid, signal.SIGQUIT)
            _wait_gone(old_pid, 15.0)
            old_pid = None
    _ready(server, inherited)
    return _daemon_start(server, path, args, old_pid=old_pid)


def cmd_no_daemon(args: argparse.Namespace) -> int:
    from .single import run_single

    server = Server.from_files(args.conf, output=True)
    for sub in server.subservers:
        sub.workers = 1
    _ready(server)
    return run_single(server)


def _daemon_start(server: Server, path: str | None, args: argparse.Namespace,
                  old_pid: int | None) -> int:
    """Daemonize, and report back whether the daemon came up."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        server.close_sockets()
        message = _read_report(read_end, START_TIMEOUT)
        os.close(read_end)
        os.waitpid(pid, 0)
        if message == "ok":
            return 0
        print(message or "brimd: the daemon exited before it started", file=sys.stderr)
        return 1
    os.close(read_end)
    try:
        daemonize(keep_std=args.output)
        return run_master(server, path, args, stderr=args.output, syslog=True,
                          ready_fd=write_end, old_pid=old_pid)
    except BaseException as err:
        if isinstance(err, SystemExit):
            raise
        text = str(err) if isinstance(err, ConfError) else f"brimd: {err}"
        try:
            os.write(write_end, text.encode())
        except OSError:
            pass
        os._exit(1)


def _read_report(fd: int, timeout: float) -> str:
    chunks = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return "brimd: the daemon did not report in time"
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        data = os.read(fd, 4096)
        if not data:
            return b"".join(chunks).decode(errors="replace")
        chunks.append(data)


def run_master(server: Server, path: str | None, args: argparse.Namespace, *, stderr: bool,
               syslog: bool, ready_fd: int | None = None, old_pid: int | None = None) -> int:
    """Become the master: pid file, privileges, logging, supervisor loop."""
    pidfile = PidFile(path, name="brimd") if path else None
    if pidfile is not None:
        pidfile.write()
    logger = server.setup_logging(stderr=stderr, syslog=syslog)
    state = {"server": server}

    def on_reload(sup) -> None:
        from .reload import reload_server

        state["server"] = reload_server(state["server"], sup, args)

    def on_started(sup) -> None:
        # Restart: the new workers are up on the handed-over sockets, so the
        # old brimd may now let go; its workers finish what they hold.
        if old_pid is not None:
            try:
                os.kill(old_pid, signal.SIGQUIT)
            except ProcessLookupError:
                pass

    sup = server.supervise(
        handover_path=handover_path(path, os.getpid()) if path else None,
        on_reload=on_reload, on_started=on_started,
    )
    if path:
        sup.prepare_handover()  # while still allowed to create files beside the pid file
    if server.user or server.group:
        uid, gid = user_ids(server.user, server.group)
        for target in {server.log, *(sub.log for sub in server.subservers)}:
            target.hand_file_to(uid, gid)
        drop_privileges(server.user, server.group, server.umask)
    else:
        os.umask(parse_umask(server.umask))
    if ready_fd is not None:
        os.write(ready_fd, b"ok")
        os.close(ready_fd)
    logger.info("brimd %s started: %s", _version(),
                ", ".join(f"{s.group} x{s.workers}" for s in server.subservers))
    try:
        return sup.run()
    except Exception:
        # Once daemonized, stderr is gone: the log is the only place left.
        logger.exception("brimd master failed")
        return 1
    finally:
        if pidfile is not None:
            try:
                pidfile.remove()
            except SupervisorError as err:
                logger.warning("%s", err)
        logger.info("brimd stopped")


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "start": cmd_start,
    "stop": cmd_stop,
    "restart": cmd_restart,
    "shutdown": cmd_shutdown,
    "status": cmd_status,
    "reload": cmd_reload,
    "force-reload": cmd_reload,
    "no-daemon": cmd_no_daemon,
    "foreground": cmd_foreground,
}
