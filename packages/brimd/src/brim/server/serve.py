"""``brimd serve APP``: one WSGI app, no conf file, in the foreground.

The one-line way to run an app that already exists, as ``gunicorn
module:app`` does::

    brimd serve myproject.wsgi:application --workers 4 --bind 127.0.0.1:8000

Why a conf built in memory rather than a second way to run: the command
line becomes the conf a file would hold (``[brim]``, one ``[wsgi]`` with
``apps = app``, and ``[app]`` whose ``call`` is APP), so the same code
checks it, the same master runs it, and ``--print-conf`` shows the file to
write when moving on. Each flag is one line of :data:`FLAGS` naming the
option it sets; its help is that option's own doc.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from brim.conf import Conf, ConfError, Option
from brim.supervisor import PidFile

from . import options
from .core import Server
from .dialect import BRIMD_DIALECT, MAIN_SECTION, apply_overrides

__all__ = ["APP_SECTION", "DEFAULT_BIND", "FLAGS", "Flag", "cmd_serve", "parse_args",
           "serve_conf"]

#: The section naming the app, and the WSGI section listing it.
APP_SECTION = "app"
WSGI_SECTION = "wsgi"
#: Where ``brimd serve`` listens without ``--bind`` (gunicorn's default too).
DEFAULT_BIND = "127.0.0.1:8000"


@dataclass(frozen=True)
class Flag:
    """A flag of ``brimd serve`` that sets one conf option of one section."""

    names: tuple[str, ...]
    section: str
    option: str

    @property
    def declared(self) -> Option:
        return options.option(self.section, self.option)

    @property
    def dest(self) -> str:
        return self.option

    @property
    def metavar(self) -> str:
        kind = self.declared.kind
        return {"int": "N", "float": "SECONDS", "path": "PATH"}.get(kind, self.option.upper())

    def help(self) -> str:
        doc = self.declared.doc.replace("%", "%%")  # argparse formats help with %
        return f"{doc} (conf: [{self.section}] {self.option})"


#: The flags that set conf options, each named as gunicorn names its own
#: where the meaning is the same. Adding one is adding a line.
FLAGS: tuple[Flag, ...] = (
    Flag(("-w", "--workers"), WSGI_SECTION, "workers"),
    Flag(("--worker-model",), WSGI_SECTION, "worker_model"),
    Flag(("--threads",), WSGI_SECTION, "threads"),
    Flag(("--timeout",), MAIN_SECTION, "worker_timeout"),
    Flag(("--graceful-timeout",), MAIN_SECTION, "grace"),
    Flag(("--keep-alive",), WSGI_SECTION, "idle_timeout"),
    Flag(("--max-requests",), WSGI_SECTION, "max_requests"),
    Flag(("--max-requests-jitter",), WSGI_SECTION, "max_requests_jitter"),
    Flag(("--log-level",), MAIN_SECTION, "log_level"),
    Flag(("--certfile",), WSGI_SECTION, "certfile"),
    Flag(("--keyfile",), WSGI_SECTION, "keyfile"),
    Flag(("--user",), MAIN_SECTION, "user"),
    Flag(("--group",), MAIN_SECTION, "group"),
)

_DESCRIPTION = """\
Serve one WSGI app in the foreground, with no conf file, as `gunicorn
module:app` does. APP is what a conf's call option takes:
package.module:app for a WSGI callable (a Flask app, Django's
get_wsgi_application() object), package.module:factory() for a factory
(literal arguments only), or package.module.Class for a brim app.
The current directory (or --chdir) comes first on the module path.
Ctrl-C or SIGTERM stops it; SIGHUP reloads."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brimd serve", description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", metavar="APP", help="the app, as package.module:app")
    parser.add_argument("-b", "--bind", default=DEFAULT_BIND, metavar="ADDRESS",
                        help="HOST:PORT, [IPv6]:PORT, HOST (port 8000) or *:PORT for every "
                             f"address (default: {DEFAULT_BIND}; conf: [wsgi] ip and port)")
    parser.add_argument("--chdir", metavar="DIR",
                        help="change to DIR before importing the app")
    parser.add_argument("-p", "--pid", metavar="PATH",
                        help="write the master's pid to PATH (default: no pid file)")
    parser.add_argument("--print-conf", action="store_true",
                        help="print the conf these arguments make, and exit")
    parser.add_argument("-x", "--traceback", action="store_true",
                        help="show the full stack trace of a start-up error")
    parser.add_argument("--set", action="append", metavar="SECTION.OPTION=VALUE",
                        help="set any conf option, over the flags below and the BRIMD_... "
                             "environment variables (as brimd --set); repeat for more")
    conf_options = parser.add_argument_group(
        "conf options", "each sets the option of a conf file named after it")
    for flag in FLAGS:
        conf_options.add_argument(*flag.names, dest=flag.dest, metavar=flag.metavar,
                                  help=flag.help())
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of ``brimd serve`` (argv after the word ``serve``)."""
    return _parser().parse_args(list(argv))


def parse_bind(text: str) -> tuple[str, int]:
    """``--bind`` as (ip, port); ValueError says what is wrong."""
    text = text.strip()
    if text.startswith("unix:") or text.startswith("/"):
        raise ValueError(f"{text!r}: brimd serves TCP addresses, not unix sockets")
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r} is not [IPv6]:PORT")
        port_text = rest[1:] if rest else "8000"
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, as [::1]:8000")
    else:
        host, colon, port_text = text.partition(":")
        port_text = port_text if colon else "8000"
    if not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{text!r}: the port must be a number from 0 to 65535")
    return host or "*", int(port_text)


def serve_conf(args: argparse.Namespace) -> Conf:
    """The conf ``args`` describe, checked as any conf is when a Server is built."""
    try:
        ip, port = parse_bind(args.bind)
    except ValueError as err:
        raise ConfError(f"--bind: {err}") from None
    store: dict[str, dict[str, str]] = {
        MAIN_SECTION: {},
        WSGI_SECTION: {"apps": APP_SECTION, "ip": ip, "port": str(port)},
        APP_SECTION: {"call": args.app},
    }
    for flag in FLAGS:
        value = getattr(args, flag.dest)
        if value is not None:
            store[flag.section][flag.option] = value
    # The environment and --set win over what the flags made, as over a file.
    return apply_overrides(Conf(store, dialect=BRIMD_DIALECT), args.set or ())


def conf_text(conf: Conf) -> str:
    """``conf`` written as a conf file, for ``--print-conf``."""
    lines = []
    for section in conf.sections():
        values = conf.options(section)
        if values or section != MAIN_SECTION:
            lines += [f"[{section}]", *(f"{k} = {v}" for k, v in values.items()), ""]
    return "\n".join(lines)


def _by_flag(err: ConfError) -> ConfError:
    """Name the flag, not the in-memory section, in errors about a flag's value."""
    problems = []
    for problem in err.problems:
        for flag in FLAGS:
            prefix = f"[{flag.section}] {flag.option}: "
            if problem.startswith(prefix):
                problem = f"{flag.names[-1]}: {problem[len(prefix):]}"
                break
        problems.append(problem)
    return ConfError(*problems)


def cmd_serve(args: argparse.Namespace) -> int:
    """Build the conf, check it, bind, and run the master in the foreground."""
    from .cli import _prepare
    from .master import Master

    pid_path = os.path.abspath(args.pid) if args.pid else None  # as typed, before --chdir
    if args.chdir:
        try:
            os.chdir(args.chdir)
        except OSError as err:
            raise ConfError(f"--chdir: {args.chdir}: {err.strerror or err}") from None
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)  # the app's module is found from here, as gunicorn does

    conf = serve_conf(args)
    if args.print_conf:
        print(conf_text(conf), end="")
        return 0
    try:
        # Not Server.in_memory(conf.store): this conf knows which --set and
        # BRIMD_... variable set what, for its errors; a reload carries the store.
        server = Server(conf, output=True, built_in_memory=True)
    except ConfError as err:
        raise _by_flag(err) from None
    pidfile = PidFile(pid_path, name="brimd") if pid_path else None
    running = pidfile.running_pid() if pidfile is not None else None
    if running is not None:
        print(f"brimd is already running (pid {running})", file=sys.stderr)
        return 1
    _prepare(server)
    sub = server.listeners[0]
    scheme = "https" if getattr(sub, "certfile", None) else "http"
    workers = f"{sub.workers} worker{'s' if sub.workers != 1 else ''}"
    print(f"brimd serve: {args.app.strip()} at {scheme}://{sub.where}/ with {workers}",
          file=sys.stderr, flush=True)
    master = Master(server, pidfile, stderr=True, syslog=False, reload_conf=None,
                    foreground=True)
    return master.run()
