"""The brimd command: argparse and the commands, init.d style.

Each command either becomes the master (start, restart, foreground,
no-daemon; see :class:`brim.server.master.Master`) or signals the running
master named by the pid file (stop, shutdown, reload, status). The list of
commands, in plain words, are COMMAND_DOCS below: ``brimd -h`` lists them all and
``brimd <command> -h`` shows one.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import signal
import sys
import textwrap
import time
import traceback
from collections.abc import Callable
from typing import Any

from brim.conf import Conf, ConfError
from brim.supervisor import Notifier, PidFile, SupervisorError, fetch_sockets, status

from . import options
from .check import cmd_check
from .core import DEFAULT_CONF_FILES, Server, pid_file_path
from .dialect import MAIN_SECTION, apply_overrides, read_conf
from .effective import cmd_show_conf
from .master import START_TIMEOUT, Master, handover_path, version
from .statusfile import StatusFile, status_path

#: What each command does, in plain words (plain text: a terminal shows it as
#: is). ``brimd -h`` lists them all; ``brimd <command> -h`` shows one.
COMMAND_DOCS: dict[str, str] = {
    "start": "check the conf, bind the ports, start in the background, and return once "
             "every worker stayed up for start_check seconds (prints one line per "
             "subserver; exit 1 with the error if a worker cannot stay up). The default "
             "command.",
    "stop": "end brimd: workers get grace seconds to finish, then are killed (SIGTERM to "
            "the master). Prints a line once it is gone; a stale pid file is removed. "
            "Needs a pid file: a foreground brimd run with -p - stops with Ctrl-C or "
            "SIGTERM to its pid.",
    "shutdown": "the master lets go of the ports and exits at once; workers finish their "
                "connections and exit on their own (SIGQUIT). Prints a line once the "
                "master is gone.",
    "restart": "start a new brimd that takes the ports over from the running one; the "
               "old one shuts down once the new workers stayed up (nothing is refused in "
               "between). A foreground brimd is reloaded instead, so its process stays",
    "reload": "load the conf and the code now on disk and replace every worker "
              "gracefully, same master pid (SIGHUP); waits and reports like start",
    "force-reload": "the same as reload",
    "status": "whether brimd runs, and its workers up per subserver (exit 0 running, 1 "
              "stale pid file, 3 not running, 4 unknown)",
    "foreground": "run in the foreground with all workers, logging to stderr: for "
                  "systemd (Type=notify-reload) and containers (as PID 1 it reaps "
                  "orphans); SIGTERM drains and exits. A port in use fails at once "
                  "(unless listen_retry is set in the conf)",
    "no-daemon": "one process, no workers, for debugging",
    "top": "a live view of the running brimd's workers (req/s, in flight, p50/p99, RSS, "
           "CPU%, restarts), redrawn every second; keys sort by a column, q quits",
    "check": "read the conf, import and configure every app, and report every problem "
             "found (each on its own line); starts nothing and binds nothing. Exit 0: "
             "the conf would start; 1: it would not",
    "show-conf": "print the effective conf: every option's value and where it came from "
                 "(a file and line, an environment variable, --set, or the default)",
}
COMMANDS = tuple(COMMAND_DOCS)

#: Said under every command's help: options can come from outside the files.
_OVERRIDES_HELP = """\
options from elsewhere: --set section.option=value (repeatable) and the
environment variables BRIMD_<SECTION>__<OPTION> (BRIMD_WSGI__WORKERS=4;
BRIMD_WSGI__API__PORT=8081 for [wsgi#api]) win over the conf files, and
--set wins over the environment.
"""

_SIGNALS_HELP = """\
signals to the master: TERM stop, QUIT shutdown, HUP reload, USR1 reopen
log files, TTIN/TTOU one WSGI worker more/fewer, USR2 every worker logs
its stacks (sent to one worker: that one).
"""


#: ``brimd serve APP``: parsed on its own (see brim.server.serve), listed with the rest.
_SERVE_DOC = ("serve one WSGI app (package.module:app) in the foreground with no conf file, "
              "as gunicorn does; see brimd serve -h")


def _command_list() -> str:
    """Every command with its doc, wrapped under its name."""
    lines = ["commands:"]
    for name, doc in [*COMMAND_DOCS.items(), ("serve APP", _SERVE_DOC)]:
        lines.extend(textwrap.wrap(doc, 78, initial_indent=f"  {name:<12}  ",
                                   subsequent_indent=" " * 16))
    return "\n".join(lines) + "\n"


#: The commands as ``brimd -h`` lists them.
COMMAND_HELP = _command_list() + "\n" + _OVERRIDES_HELP + "\n" + _SIGNALS_HELP


class _CommandHelp(argparse.Action):
    """-h/--help: the help of the command given before it, else the global help."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show this help (after a command: that command's) and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        command = getattr(namespace, "command", None)
        if command in COMMAND_DOCS:
            parser = _parser(command)
        parser.print_help()
        parser.exit()


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The brimd argument parser; with ``command``, the one its -h describes."""
    if command is None:
        parser = argparse.ArgumentParser(
            prog="brimd", add_help=False,
            description="Launch and control WSGI, TCP and UDP apps and daemons described "
                        "by a conf file.",
            epilog=COMMAND_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("command", nargs="?", default=None, metavar="command",
                            help="one of: " + ", ".join(COMMANDS) + " (default: start)")
    else:
        doc = textwrap.fill(f"brimd {command}: {COMMAND_DOCS[command]}", 78)
        parser = argparse.ArgumentParser(
            prog=f"brimd {command}", add_help=False, usage="%(prog)s [options]",
            description=doc, epilog=_OVERRIDES_HELP + "\n" + _SIGNALS_HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    parser.add_argument("-h", "--help", action=_CommandHelp)
    parser.add_argument("-c", "--conf", action="append", metavar="PATH",
                        help="conf file to read; repeat to read several in order (default: "
                             + ", ".join(DEFAULT_CONF_FILES) + ", those that exist)")
    parser.add_argument("-p", "--pid-file", metavar="PATH",
                        help="pid file; '-' for none (default: pid_file in the conf, else "
                             "/var/run/brimd.pid as root or ~/.brimd.pid)")
    parser.add_argument("-o", "--output", action="store_true",
                        help="keep stdout and stderr open and log to stderr too")
    parser.add_argument("--set", action="append", metavar="SECTION.OPTION=VALUE",
                        help="set an option over the conf files (and the BRIMD_... "
                             "environment variables); repeat for more")
    parser.add_argument("-v", "--version", action="version", version=f"brimd {version()}")
    parser.add_argument("-x", "--traceback", action="store_true",
                        help="show the full stack trace of a start-up error")
    return parser


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; a mistake is named as the user typed it.

    argparse alone would take the value of a misspelt option for the
    command (``--config x.conf foreground``: "invalid choice: 'x.conf'"),
    so unknown options are found and named first, with the closest real one.
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [word for word in extra if word.startswith("-") and word != "-"]
    if unknown:
        known = [o for action in parser._actions for o in action.option_strings]
        word = unknown[0].partition("=")[0]
        close = difflib.get_close_matches(word, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        parser.error(f"unrecognized option {word}{hint}")
    if args.command == "serve":
        parser.error("serve comes first and takes its own options: brimd serve APP "
                     "[options] (see brimd serve -h)")
    if args.command is not None and args.command not in COMMAND_DOCS:
        close = difflib.get_close_matches(args.command, COMMANDS, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        parser.error(f"unknown command {args.command!r} ({hint}commands: "
                     + ", ".join(COMMANDS) + ", serve)")
    if extra:
        parser.error("unrecognized arguments: " + " ".join(extra))
    args.command = args.command or "start"
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``brimd`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    handler: Callable[[argparse.Namespace], int]
    if argv[:1] == ["serve"]:  # its own arguments: see brim.server.serve
        from .serve import cmd_serve, parse_args

        args, handler = parse_args(argv[1:]), cmd_serve
    else:
        args = _parse(argv)
        # Errors name the files as the user typed them, but the daemon changes to
        # / and reload re-reads the files from there, so it keeps absolute paths.
        args.reload_conf = [os.path.abspath(os.path.expanduser(p))
                            for p in args.conf or ()] or None
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
        return _read_conf(args)
    except ConfError:
        return None


def _read_conf(args: argparse.Namespace) -> Conf:
    """The conf files as plain text (the -c files, or those of the defaults that exist),
    with the environment's and --set's overrides."""
    conf = read_conf(args.conf) if args.conf else read_conf(DEFAULT_CONF_FILES, missing_ok=True)
    return apply_overrides(conf, args.set or ())


def _pidfile(args: argparse.Namespace, conf: Conf | None) -> PidFile | None:
    configured = conf.get_path(MAIN_SECTION, "pid_file") if conf is not None else None
    path = pid_file_path(args.pid_file, configured)
    return PidFile(path, name="brimd") if path else None


def _grace(conf: Conf | None) -> float:
    declared = options.option(MAIN_SECTION, "grace")
    try:
        return declared.read(conf, MAIN_SECTION) if conf is not None else declared.default
    except ConfError:
        return declared.default


def _say_busy(message: str) -> None:
    """Told once per busy port while binding retries: who holds it."""
    print(f"brimd: {message}", file=sys.stderr, flush=True)


# -- the commands -------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    pidfile = _pidfile(args, _lenient_conf(args))
    if pidfile is None:
        print("brimd: no pid file (-p -), cannot tell", file=sys.stderr)
        return 4
    code = status(pidfile.path, name="brimd")
    if code == 0:
        print(f"brimd is running (pid {pidfile.read()})")
        state = StatusFile(status_path(pidfile.path)).read() or {}
        for sub in state.get("subservers", ()):
            print(f"  {sub['line']}, {sub['up']} up")
        if state.get("state") == "failed" and state.get("error"):
            print(f"  last reload: {state['error']}")
    elif code == 1:
        print(f"brimd is not running (stale pid file {pidfile.path})")
    else:
        print("brimd is not running")
    return code


def cmd_top(args: argparse.Namespace) -> int:
    """The live view (brim.server.top) of the brimd the pid file names."""
    from brim.stats import StatsError

    from . import top

    pidfile = _pidfile(args, _lenient_conf(args))
    if pidfile is None or status(pidfile.path, name="brimd") != 0:
        print("brimd is not running", file=sys.stderr)
        return 3
    if not sys.stdout.isatty():
        print("brimd top: needs a terminal", file=sys.stderr)
        return 1
    source = top.Source(StatusFile(status_path(pidfile.path)).read, pidfile.read() or 0)
    try:
        source.current()
        return top.run(source)
    except (StatsError, OSError) as err:
        print(f"brimd top: {err}", file=sys.stderr)
        return 1


def cmd_stop(args: argparse.Namespace) -> int:
    conf = _lenient_conf(args)
    return _signal_and_wait(_pidfile(args, conf), signal.SIGTERM, _grace(conf) + 15.0,
                            "stop", "brimd stopped (pid {pid})")


def cmd_shutdown(args: argparse.Namespace) -> int:
    return _signal_and_wait(_pidfile(args, _lenient_conf(args)), signal.SIGQUIT, 15.0,
                            "shut down",
                            "brimd shut down (pid {pid}); its workers finish their connections")


def _signal_and_wait(pidfile: PidFile | None, signum: int, timeout: float, what: str,
                     done: str) -> int:
    """Signal the brimd the pid file names, wait for it to go, and say what happened.

    Without a pid file (``-p -``) there is no telling which brimd to signal:
    a port's owner may be another program, or a brimd of another conf, so
    nothing is guessed and the exit status says the command did nothing.
    """
    if pidfile is None:
        print(f"brimd: no pid file (-p -), so no way to tell which brimd to {what}; "
              "a foreground brimd stops with Ctrl-C or SIGTERM to its pid", file=sys.stderr)
        return 1
    pid = pidfile.signal_and_wait(signum, timeout)
    if pid is not None:
        print(done.format(pid=pid))
    elif pidfile.remove_stale():
        print(f"brimd is not running (removed the stale pid file {pidfile.path})")
    else:
        print(f"brimd is not running (no pid file {pidfile.path})")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """HUP, then wait for the master's verdict in its status file.

    The conf is not checked here: the master checks it, with the code now on
    disk, so that a refused reload is in its log as well as on the terminal.
    """
    conf = _lenient_conf(args)
    if conf is None and not args.pid_file:
        _read_conf(args)  # which brimd cannot be told: say what is wrong with the conf
    pidfile = _pidfile(args, conf)
    pid = pidfile.running_pid() if pidfile is not None else None
    if pid is None or pidfile is None:
        print("brimd is not running", file=sys.stderr)
        return 7
    return _reload(pidfile, pid)


def _reload(pidfile: PidFile, pid: int) -> int:
    state_file = StatusFile(status_path(pidfile.path))
    before = (state_file.read() or {}).get("generation", 0)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        state = state_file.read() or {}
        if state.get("generation", 0) > before and state.get("state") in ("running", "failed"):
            if state["state"] == "failed":
                print(state.get("error") or "brimd: reload failed (see the log)",
                      file=sys.stderr)
                return 1
            print("\n".join(sub["line"] for sub in state.get("subservers", ())))
            return 0
        if not pidfile.is_running():
            print("brimd: the master exited during the reload", file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"brimd: reload sent; no verdict within {START_TIMEOUT:g}s (see the log)",
          file=sys.stderr)
    return 1


def _load(args: argparse.Namespace, output: bool) -> tuple[Server, PidFile | None]:
    """The validated Server and its pid file."""
    server = Server.from_files(args.conf, output=output, overrides=args.set or ())
    path = server.pid_file(args.pid_file)
    return server, (PidFile(path, name="brimd") if path else None)


def _prepare(server: Server, inherited: dict | None = None) -> None:
    """Bind (or adopt) the listening sockets and allocate stats: all before any fork."""
    for sock in server.bind(inherited, on_busy=_say_busy).values():
        sock.close()
    server.allocate_stats()


def _master(server: Server, pidfile: PidFile | None, args: argparse.Namespace, *,
            foreground: bool = False, predecessor: int | None = None) -> Master:
    return Master(server, pidfile, stderr=foreground or args.output, syslog=not foreground,
                  reload_conf=args.reload_conf, foreground=foreground,
                  predecessor=predecessor)


def cmd_start(args: argparse.Namespace) -> int:
    server, pidfile = _load(args, args.output)
    pid = pidfile.running_pid() if pidfile is not None else None
    if pid is not None:
        print(f"brimd is already running (pid {pid})", file=sys.stderr)
        return 0
    _prepare(server)
    return _master(server, pidfile, args).start_daemon(keep_std=args.output)


def _fail_fast_on_busy_ports(server: Server) -> None:
    """No listen_retry in the conf: a busy port fails at once.

    The 30 s default covers a daemon started while the previous one lets go
    of its ports; in the foreground a busy port is most often a brimd left
    running in another terminal, and waiting on it only delays the error.
    """
    for sub in server.listeners:
        if server.conf.found_in(sub.section, "listen_retry", inherit=True) is None:
            sub.listen = dataclasses.replace(sub.listen, listen_retry=0.0)


def cmd_foreground(args: argparse.Namespace) -> int:
    server, pidfile = _load(args, True)
    pid = pidfile.running_pid() if pidfile is not None else None
    if pid is not None:
        print(f"brimd is already running (pid {pid})", file=sys.stderr)
        return 1
    _fail_fast_on_busy_ports(server)
    _prepare(server)
    return _master(server, pidfile, args, foreground=True).run()


def cmd_restart(args: argparse.Namespace) -> int:
    """A new brimd takes the ports over; for a foreground brimd, a reload instead.

    Why: a foreground brimd is the process systemd or a container watches
    (as PID 1 its exit ends the container); a successor taking over would
    end it. A reload loads the new conf and code just the same, in place.
    """
    pidfile = _pidfile(args, _lenient_conf(args))
    old_pid = pidfile.running_pid() if pidfile is not None else None
    if old_pid is not None and pidfile is not None:
        state = StatusFile(status_path(pidfile.path)).read() or {}
        if state.get("foreground") and state.get("pid") == old_pid:
            print(f"brimd: the running brimd (pid {old_pid}) is in the foreground; "
                  "restarting it in place (reload)", file=sys.stderr)
            return _reload(pidfile, old_pid)
    server, pidfile = _load(args, args.output)
    old_pid = pidfile.running_pid() if pidfile is not None else None
    inherited = {}
    if old_pid is not None and pidfile is not None:
        # Under systemd the running master was told where to notify; its
        # successor takes that over (the old one names it with MAINPID=).
        state = StatusFile(status_path(pidfile.path)).read() or {}
        Notifier.adopt_environment(state.get("notify"))
        try:
            inherited = fetch_sockets(handover_path(pidfile.path, old_pid))
        except SupervisorError as err:
            print(f"brimd: {err}; binding anew once the running brimd lets go",
                  file=sys.stderr)
        if not inherited:
            # No hand-over: the old brimd must release the ports before we bind.
            pidfile.signal_and_wait(signal.SIGQUIT, 15.0)
            old_pid = None
    _prepare(server, inherited)
    return _master(server, pidfile, args, predecessor=old_pid).start_daemon(
        keep_std=args.output)


def cmd_no_daemon(args: argparse.Namespace) -> int:
    from .single import run_single

    server = Server.from_files(args.conf, output=True, overrides=args.set or ())
    for sub in server.subservers:
        sub.workers = 1
    _prepare(server)
    return run_single(server)


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
    "top": cmd_top,
    "check": cmd_check,
    "show-conf": cmd_show_conf,
}
