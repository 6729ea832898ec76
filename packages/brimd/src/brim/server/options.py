"""Every brimd option, declared once.

Validation (unknown options, bad values), the fallback of subconfigs to
``[brim]``, ``brimd.conf-sample`` and the conf reference in the docs are all
derived from the tables here (and brim-wsgi's ``WSGI_OPTIONS``), so they
cannot drift apart. ``python -m brim.server.options`` prints the sample.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from brim.conf import MAIN_SECTION, Conf, Option, check_unknown
from brim.wsgi.settings import WSGI_OPTIONS

_LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
_FACILITIES = tuple(
    ["AUTH", "CRON", "DAEMON", "KERN", "LPR", "MAIL", "NEWS", "SYSLOG", "USER", "UUCP"]
    + [f"LOCAL{n}" for n in range(8)]
)

#: Options only [brim] may set: they concern the one master process.
PROCESS_OPTIONS: tuple[Option, ...] = (
    Option("user", "str", None, "User to run as after binding the listening sockets "
           "(needs root to start). Default: the user who starts brimd."),
    Option("group", "str", None, "Group to run as. Default: the user's primary group."),
    Option("umask", "str", "0022", "The umask of every brimd process, in octal."),
    Option("pid_file", "path", None, "Where the master's pid is kept. Default: "
           "/var/run/brimd.pid as root, ~/.brimd.pid otherwise; the -p option overrides it."),
    Option("grace", "float", 30.0, "Seconds workers get to finish their requests on stop, "
           "reload and restart before they are killed.", minimum=0),
    Option("worker_timeout", "float", 0.0, "Seconds a worker may go without a heartbeat "
           "(its event loop blocked, say by a CPU-bound app) before it is killed and "
           "replaced. 0 turns the check off.", minimum=0),
    Option("wsgi", "list", (), "Shorthand for a [wsgi] section with apps = these names."),
    Option("additional_confs", "list", (), "More conf files to read after this one, "
           "relative to it; globs allowed."),
)

#: Logging and JSON options: set in [brim], overridable per subconfig.
COMMON_OPTIONS: tuple[Option, ...] = (
    Option("log_name", "str", "brim", "Name logged with each line (the syslog tag).",
           inherit=True),
    Option("log_level", "str", "INFO", "Least important level logged.", inherit=True,
           choices=_LEVELS),
    Option("log_facility", "str", "LOCAL0", "Syslog facility.", inherit=True,
           choices=_FACILITIES),
    Option("log_address", "str", None, "Syslog socket: a unix socket path or host:port for "
           "UDP. Default: /dev/log.", inherit=True),
    Option("eventlet_hub", "str", None, "Eventlet hub to use in workers (epolls, poll or "
           "selects). Default: eventlet's choice.", inherit=True,
           choices=("epolls", "poll", "selects")),
)

#: Where a subserver listens and how many workers it has.
LISTEN_OPTIONS: tuple[Option, ...] = (
    Option("ip", "str", "*", "Address to listen on; * for every address.", inherit=True),
    Option("port", "int", 80, "Port to listen on.", inherit=True, minimum=0, maximum=65535),
    Option("workers", "int", 1, "Worker processes, each with its own stats bucket.",
           inherit=True, minimum=1, maximum=1024),
    Option("backlog", "int", 4096, "Connections the kernel queues before accepting.",
           inherit=True, minimum=1),
    Option("listen_retry", "float", 30.0, "Seconds to keep retrying a port that is in use.",
           inherit=True, minimum=0),
)

TLS_OPTIONS: tuple[Option, ...] = (
    Option("certfile", "path", None, "PEM certificate (chain) file; set it to serve TLS.",
           inherit=True),
    Option("keyfile", "path", None, "PEM private key file, if not in certfile.", inherit=True),
)

_WSGI_SHARED = {"client_timeout", "concurrent_per_worker", "json_dumps", "json_loads"}
_SHARED_WSGI_OPTIONS = tuple(o for o in WSGI_OPTIONS if o.name in _WSGI_SHARED)

TCP_OPTIONS: tuple[Option, ...] = (
    Option("call", "str", None, "The app class (package.module.Class) called per connection."),
)

UDP_OPTIONS: tuple[Option, ...] = (
    Option("call", "str", None, "The app class (package.module.Class) called per datagram."),
    Option("max_datagram_size", "int", 65536, "Largest datagram read; longer ones are cut.",
           inherit=True, minimum=1, maximum=65536),
)

DAEMONS_OPTIONS: tuple[Option, ...] = (
    Option("daemons", "list", (), "Daemons to run, one process each; each names a section "
           "with a 'call' option."),
)

#: Which options each kind of section accepts.
SECTION_OPTIONS: dict[str, tuple[Option, ...]] = {
    MAIN_SECTION: PROCESS_OPTIONS + COMMON_OPTIONS + LISTEN_OPTIONS + TLS_OPTIONS
    + tuple(o for o in WSGI_OPTIONS if o.name != "apps")
    + tuple(o for o in UDP_OPTIONS if o.inherit),
    "wsgi": COMMON_OPTIONS + LISTEN_OPTIONS + TLS_OPTIONS + WSGI_OPTIONS,
    "tcp": COMMON_OPTIONS + LISTEN_OPTIONS + TLS_OPTIONS + _SHARED_WSGI_OPTIONS + TCP_OPTIONS,
    "udp": COMMON_OPTIONS + LISTEN_OPTIONS + _SHARED_WSGI_OPTIONS + UDP_OPTIONS,
    "daemons": COMMON_OPTIONS + DAEMONS_OPTIONS,
}


def option(kind: str, name: str) -> Option:
    """The declaration of option ``name`` in sections of ``kind``."""
    for declared in SECTION_OPTIONS[kind]:
        if declared.name == name:
            return declared
    raise KeyError(f"no option {name!r} in [{kind}]")


def value(conf: Conf, kind: str, section: str, name: str):
    """Read one declared option of ``section`` (a section of ``kind``)."""
    return option(kind, name).read(conf, section)


def check_sections(conf: Conf, kinds: Iterable[str] = ("wsgi", "daemons")) -> None:
    """Reject unknown options in [brim] and the sections brimd owns outright.

    ``[tcp#...]`` and ``[udp#...]`` sections also hold their app's own
    options, so only [brim], [wsgi...] and [daemons] are checked strictly.
    """
    check_unknown(conf, MAIN_SECTION, [o.name for o in SECTION_OPTIONS[MAIN_SECTION]])
    for kind in kinds:
        names = [o.name for o in SECTION_OPTIONS[kind]]
        for section in conf.subconfigs(kind):
            check_unknown(conf, section, names)


def default_pid_file() -> str:
    """Where the pid file goes when neither -p nor pid_file says."""
    if os.geteuid() == 0:
        return "/var/run/brimd.pid"
    return os.path.expanduser("~/.brimd.pid")


def sample_conf() -> str:
    """The text of brimd.conf-sample, generated from the tables above."""
    out = [
        "# brimd.conf-sample: every brimd option, with its default.",
        "# Generated from brim.server.options; regenerate with",
        "#   python -m brim.server.options > brimd.conf-sample",
        "# Options in [brim] are defaults that subconfigs ([wsgi], [tcp#name],",
        "# [udp#name], [daemons]) fall back to unless they set their own.",
        "",
    ]
    sections = [
        ("brim", "[brim]", "The master process, and defaults for every subconfig."),
        ("wsgi", "[wsgi]", "A WSGI subserver. Repeat [wsgi], or name it [wsgi#admin], "
                           "for more listeners."),
        ("tcp", "[tcp#echo]", "A TCP subserver: call = a class called per connection."),
        ("udp", "[udp#echo]", "A UDP subserver: call = a class called per datagram."),
        ("daemons", "[daemons]", "Background daemons, one process each."),
    ]
    for kind, header, about in sections:
        out.append(f"# {about}")
        out.append(f"# {header}")
        for declared in SECTION_OPTIONS[kind]:
            if kind != MAIN_SECTION and declared.inherit:
                continue
            out.extend(_wrap_doc(declared.doc))
            out.append(declared.sample())
        if kind != MAIN_SECTION:
            out.append("# (and any option of [brim] marked 'per subconfig')")
        out.append("")
    out.append("# An app section names its class and holds the app's own options:")
    out.append("# [echo]\n# call = brim.wsgi_echo.WSGIEcho\n# path = /echo\n# max_echo = 65536")
    return "\n".join(out) + "\n"


def _wrap_doc(doc: str, width: int = 76) -> list[str]:
    lines, line = [], "#"
    for word in doc.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    lines.append(line)
    return lines


__all__ = [
    "SECTION_OPTIONS",
    "check_sections",
    "default_pid_file",
    "option",
    "sample_conf",
    "value",
]

if __name__ == "__main__":
    print(sample_conf(), end="")
