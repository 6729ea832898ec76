"""Every brimd option, declared once.

Validation (unknown options, bad values), the fallback of subconfigs to
``[brim]``, ``brimd.conf-sample`` and the conf reference in the docs are all
derived from the tables here (and brim-wsgi's ``WSGI_OPTIONS``), so they
cannot drift apart. ``python -m brim.server.options`` prints the sample.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from brim.conf import Conf, ConfProblems, Option, check_unknown
from brim.supervisor import SupervisorError, parse_umask
from brim.wsgi.settings import WSGI_OPTIONS

from .dialect import MAIN_SECTION

_LEVELS = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
_FACILITIES = tuple(
    ["AUTH", "CRON", "DAEMON", "KERN", "LPR", "MAIL", "NEWS", "SYSLOG", "USER", "UUCP"]
    + [f"LOCAL{n}" for n in range(8)]
)

def _check_umask(value: str) -> None:
    try:
        parse_umask(value)
    except SupervisorError as err:
        raise ValueError(str(err)) from None


#: Options only [brim] may set: they concern the one master process.
PROCESS_OPTIONS: tuple[Option, ...] = (
    Option("user", "str", None, "User to run as after binding the listening sockets "
           "(needs root to start). Default: the user who starts brimd."),
    Option("group", "str", None, "Group to run as. Default: the user's primary group."),
    Option("umask", "str", "0022", "The umask of every brimd process, in octal.",
           validator=_check_umask),
    Option("pid_file", "path", None, "Where the master's pid is kept. Default: "
           "/var/run/brimd.pid as root, ~/.brimd.pid otherwise; the -p option overrides it."),
    Option("grace", "float", 30.0, "Seconds workers get to finish their requests on stop, "
           "reload and restart before they are killed.", minimum=0),
    Option("worker_timeout", "float", 0.0, "Seconds a worker may go without a heartbeat "
           "(its event loop blocked, say by a CPU-bound app) before it is killed and "
           "replaced. 0 turns the check off.", minimum=0),
    Option("start_check", "float", 1.0, "Seconds every worker must stay up before start, "
           "restart and reload report success (and systemd is told READY=1); a worker "
           "that exits sooner fails the start, with its error printed.", minimum=0),
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
    Option("log_sink", "str", None, "Where log lines go: syslog, file (see log_file), stdout "
           "or stderr. Default: syslog when daemonized (start), stderr in foreground and "
           "no-daemon.", inherit=True, choices=("syslog", "file", "stdout", "stderr")),
    Option("log_file", "path", None, "The file log_sink = file appends to; brimd reopens it "
           "on SIGUSR1 (logrotate's postrotate).", inherit=True),
    Option("log_format", "str", "text", "Log lines as text or as JSON objects, one a line.",
           inherit=True, choices=("text", "json")),
    Option("eventlet_hub", "str", None, "Eventlet hub to use in workers (epolls, poll or "
           "selects). Default: eventlet's choice.", inherit=True,
           choices=("epolls", "poll", "selects")),
)


def _check_socket_name(name: str) -> None:
    """systemd joins fd names with ':' in LISTEN_FDNAMES, so no name can hold one."""
    if ":" in name or not name.isprintable() or len(name) > 255:
        raise ValueError(f"{name!r} cannot be a systemd socket name (at most 255 printable "
                         "characters, no ':')")


#: Where a subserver listens and how many workers it has. socket_name is
#: per subconfig only: one passed socket cannot serve two subconfigs.
LISTEN_OPTIONS: tuple[Option, ...] = (
    Option("ip", "str", "*", "Address to listen on; * for every address.", inherit=True),
    Option("port", "int", 80, "Port to listen on.", inherit=True, minimum=0, maximum=65535),
    Option("socket_name", "str", None, "Under systemd socket activation: serve the passed "
           "socket with this name (FileDescriptorName= in the .socket unit), whatever ip and "
           "port say. Unset: take the passed socket with this subconfig's ip and port. Not "
           "socket-activated: unused, brimd binds ip and port itself.",
           validator=_check_socket_name),
    Option("workers", "int", 1, "Worker processes, each with its own stats bucket.",
           inherit=True, minimum=1, maximum=1024),
    Option("backlog", "int", 4096, "Connections the kernel queues before accepting.",
           inherit=True, minimum=1),
    Option("listen_retry", "float", 30.0, "Seconds to keep retrying a port that is in use. "
           "Unset, foreground does not retry: a busy port fails at once.",
           inherit=True, minimum=0),
)

#: When workers are replaced on purpose (see brim.supervisor.Recycling). A
#: replacement starts first; the old worker drains once it is up.
RECYCLE_OPTIONS: tuple[Option, ...] = (
    Option("max_requests", "int", 0, "Requests a WSGI worker serves before it is recycled "
           "(replaced by a fresh process, for apps that leak). 0: never.", inherit=True,
           minimum=0),
    Option("max_requests_jitter", "int", 0, "Up to this many requests more, drawn at random "
           "per worker, so workers started together are not recycled together.",
           inherit=True, minimum=0),
    Option("max_worker_lifetime", "float", 0.0, "Seconds a worker or daemon process runs "
           "before it is recycled. 0: no limit.", inherit=True, minimum=0),
    Option("max_worker_rss", "int", 0, "Resident memory, in MiB, past which a worker or "
           "daemon process is recycled (checked every second). 0: no limit.", inherit=True,
           minimum=0),
    Option("recycle_concurrency", "int", 1, "Workers of one subconfig being recycled at "
           "the same time, at most.", inherit=True, minimum=1),
    Option("max_workers", "int", 0, "Most workers SIGTTIN may raise a WSGI subconfig to "
           "(SIGTTOU lowers it, down to 1). 0: twice 'workers'.", inherit=True, minimum=0,
           maximum=1024),
)
_PROCESS_RECYCLE = tuple(o for o in RECYCLE_OPTIONS if o.name in (
    "max_worker_lifetime", "max_worker_rss", "recycle_concurrency"))

TLS_OPTIONS: tuple[Option, ...] = (
    Option("certfile", "path", None, "PEM certificate (chain) file; set it to serve TLS.",
           inherit=True),
    Option("keyfile", "path", None, "PEM private key file, if not in certfile.", inherit=True),
    Option("tls_min_version", "str", "TLSv1.2", "Lowest TLS version accepted.", inherit=True,
           choices=("TLSv1.2", "TLSv1.3")),
    Option("ciphers", "str", None, "OpenSSL cipher list for TLS 1.2 connections (TLS 1.3 "
           "suites are OpenSSL's own). Default: OpenSSL's.", inherit=True),
    Option("cafile", "path", None, "PEM file of the CAs client certificates are verified "
           "against (see client_cert).", inherit=True),
    Option("client_cert", "str", "none", "Ask TLS clients for a certificate: none; optional "
           "(verified when given); required (a handshake without a valid one is refused). "
           "Apps see a verified certificate as SSL_CLIENT_S_DN and friends in the environ.",
           inherit=True, choices=("none", "optional", "required")),
)

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

#: Which options each kind of section accepts. Only options a kind really
#: uses are listed, so none is accepted and then silently ignored.
_UDP_LISTEN = tuple(o for o in LISTEN_OPTIONS if o.name != "backlog")
_CONCURRENT = tuple(o for o in WSGI_OPTIONS if o.name == "concurrent_per_worker")
_JSON = tuple(o for o in WSGI_OPTIONS if o.name in ("json_dumps", "json_loads"))
_LOGGING = tuple(o for o in COMMON_OPTIONS if o.name != "eventlet_hub")

SECTION_OPTIONS: dict[str, tuple[Option, ...]] = {
    MAIN_SECTION: PROCESS_OPTIONS + COMMON_OPTIONS
    + tuple(o for o in LISTEN_OPTIONS if o.name != "socket_name") + TLS_OPTIONS
    + tuple(o for o in WSGI_OPTIONS if o.name != "apps")
    + tuple(o for o in UDP_OPTIONS if o.inherit) + RECYCLE_OPTIONS,
    "wsgi": COMMON_OPTIONS + LISTEN_OPTIONS + TLS_OPTIONS + WSGI_OPTIONS + RECYCLE_OPTIONS,
    "tcp": COMMON_OPTIONS + LISTEN_OPTIONS + _CONCURRENT + _JSON + TCP_OPTIONS
    + _PROCESS_RECYCLE,
    "udp": COMMON_OPTIONS + _UDP_LISTEN + _CONCURRENT + _JSON + UDP_OPTIONS + _PROCESS_RECYCLE,
    "daemons": _LOGGING + _JSON + DAEMONS_OPTIONS + _PROCESS_RECYCLE,
}


def declares(kind: str, name: str) -> bool:
    """Whether sections of ``kind`` accept option ``name``."""
    return any(declared.name == name for declared in SECTION_OPTIONS[kind])


def option(kind: str, name: str) -> Option:
    """The declaration of option ``name`` in sections of ``kind``."""
    for declared in SECTION_OPTIONS[kind]:
        if declared.name == name:
            return declared
    raise KeyError(f"no option {name!r} in [{kind}]")


def value(conf: Conf, kind: str, section: str, name: str) -> Any:
    """Read one declared option of ``section`` (a section of ``kind``)."""
    return option(kind, name).read(conf, section)


def check_sections(conf: Conf, kinds: Iterable[str] = ("wsgi", "daemons")) -> None:
    """Reject unknown options in [brim] and the sections brimd owns outright.

    ``[tcp#...]`` and ``[udp#...]`` sections also hold their app's own
    options, so they are checked with the app (see
    :func:`brim.server.apps.parse_app_conf`). An option that is real but set
    in the wrong kind of section (``apps`` in [brim]) is told where it
    belongs.
    """
    problems = ConfProblems()
    with problems.check():
        check_unknown(conf, MAIN_SECTION, [o.name for o in SECTION_OPTIONS[MAIN_SECTION]],
                      misplaced(MAIN_SECTION))
    for kind in kinds:
        names = [o.name for o in SECTION_OPTIONS[kind]]
        for section in conf.subconfigs(kind):
            with problems.check():
                check_unknown(conf, section, names, misplaced(kind))
    problems.raise_any()


def misplaced(kind: str) -> dict[str, str]:
    """Option name to where it belongs, for options sections of ``kind`` do not take."""
    here = {o.name for o in SECTION_OPTIONS[kind]}
    hints: dict[str, list[str]] = {}
    for other, declared in SECTION_OPTIONS.items():
        for name in (o.name for o in declared if o.name not in here):
            hints.setdefault(name, []).append(_HEADERS[other])
    hints.setdefault("call", [])
    hints["call"].append("an app's own section")
    out = {name: "it belongs in " + " or ".join(where) for name, where in hints.items()}
    if "wsgi" in here:
        out["apps"] += "; or write 'wsgi = <apps>' here, short for a [wsgi] section"
    return out


def default_pid_file() -> str:
    """Where the pid file goes when neither -p nor pid_file says."""
    if os.geteuid() == 0:
        return "/var/run/brimd.pid"
    return os.path.expanduser("~/.brimd.pid")


# -- the sample conf and the reference, generated from the tables above -------

#: How each kind of section is written in a conf file.
_HEADERS = {
    MAIN_SECTION: "[brim]",
    "wsgi": "[wsgi]",
    "tcp": "[tcp#name]",
    "udp": "[udp#name]",
    "daemons": "[daemons]",
}

#: What each kind of section is for (one sentence each, shared by sample and docs).
_ABOUT = {
    MAIN_SECTION: "The master process, and the defaults every subconfig falls back to. "
                  "[brimd] is another spelling of [brim].",
    "wsgi": "A WSGI subserver: one listening address served by pre-forked workers, "
            "each running the chain of apps listed in 'apps'. Repeat [wsgi], or name "
            "sections [wsgi#admin], [wsgi#api], ..., for more listeners.",
    "tcp": "A TCP subserver, named [tcp#name]: its workers accept connections and "
           "call the 'call' class once per connection. The section also holds the "
           "app's own options.",
    "udp": "A UDP subserver, named [udp#name]: its workers read datagrams and call "
           "the 'call' class once per datagram. The section also holds the app's "
           "own options.",
    "daemons": "Background daemons: each name listed in 'daemons' is a section whose "
               "'call' class runs in a process of its own, restarted if it ends.",
}

_SUBCONFIG_KINDS = ("wsgi", "tcp", "udp", "daemons")

#: Sections of bundled apps, shown at the end of the sample. The test of the
#: sample builds a real Server from these lines, so they cannot rot.
_SAMPLE_APPS = """\
[brim]
port = 8080
workers = 2

[wsgi]
apps = echo stats

[echo]
call = brim.wsgi_echo.WSGIEcho
# The path answered; other paths go on down the chain.
path = /echo
# Larger request bodies get 413.
max_echo = 65536

[stats]
call = brim.stats.Stats
# JSON here; add ?format=prometheus for the Prometheus text format.
path = /stats

[tcp#echo]
port = 8081
call = brim.tcp_echo.TCPEcho
# Bytes read at a time, and seconds of client silence before hanging up.
chunk_read = 65536
idle_timeout = 60.0

[udp#echo]
port = 8082
call = brim.udp_echo.UDPEcho

[daemons]
daemons = sample

[sample]
call = brim.daemon_sample.DaemonSample
# Seconds between the daemon's log lines.
interval = 60
"""


def _kinds_accepting(name: str) -> list[str]:
    """Every kind of section whose table declares option ``name``."""
    return [kind for kind, declared in SECTION_OPTIONS.items()
            if any(o.name == name for o in declared)]


def _shown_default(declared: Option) -> str:
    """The default as it would be written in a conf file ('' for none)."""
    return declared.sample().partition("=")[2].strip()


def sample_conf() -> str:
    """The text of brimd.conf-sample, generated from the tables above.

    Every line is a comment, so the sample configures nothing as it is; each
    option appears once, as ``# name = default`` under its doc. Options that
    subconfigs inherit are shown in [brim] with the sections that use them;
    each subconfig then names the ones it may override.
    """
    out = [
        "# brimd.conf-sample: every option brimd reads, with its default.",
        "#",
        "# Generated from the option tables in brim.server.options; regenerate with",
        "#   python -m brim.server.options > brimd.conf-sample",
        "#",
        "# Every line here is a comment: as it is, this file configures nothing.",
        "# Copy the sections you need into your conf (/etc/brimd.conf, or a file",
        "# named with brimd -c) and uncomment the options you change.",
        "# '# name = value' shows the default; '# name =' means the option has no",
        "# default and is unset unless you set it (its note says what then).",
        "#",
        "# Options of [brim] marked 'Per subconfig' are defaults: a [wsgi],",
        "# [tcp#name], [udp#name] or [daemons] section that sets its own value uses",
        "# that instead. The others concern the master process and are [brim] only.",
        "",
    ]
    master = SECTION_OPTIONS[MAIN_SECTION]
    out.extend(_banner(MAIN_SECTION))
    out.append("# -- The master process ([brim] only)")
    out.append("#")
    for declared in master:
        if not declared.inherit:
            out.extend(_sample_option(declared, ""))
    out.append("# -- Defaults for subconfigs")
    out.append("#")
    for declared in master:
        if declared.inherit:
            users = [_HEADERS[k] for k in _kinds_accepting(declared.name) if k != MAIN_SECTION]
            out.extend(_sample_option(declared, "Per subconfig: " + ", ".join(users) + "."))
    for kind in _SUBCONFIG_KINDS:
        out.extend(_banner(kind))
        for declared in SECTION_OPTIONS[kind]:
            if not declared.inherit:
                out.extend(_sample_option(declared, ""))
        inherited = [o.name for o in SECTION_OPTIONS[kind] if o.inherit]
        if inherited:
            out.extend(_wrap_doc("Also accepted here, falling back to [brim] when not set: "
                                 + ", ".join(inherited) + "."))
        out.append("")
    out.extend(_banner(None))
    out.extend(_wrap_doc(
        "An app section names its class with 'call' (package.module.Class) and "
        "holds the app's own options. A plain WSGI app (a Flask or Django app) is "
        "named 'call = package.module:app', or 'package.module:factory()' for a "
        "factory, and must be the last app of its chain. A complete conf using "
        "every bundled app (WSGI echo and stats on port 8080, a TCP echo on 8081, "
        "a UDP echo on 8082 and the sample daemon), with each app's options at "
        "their defaults:"))
    out.append("#")
    out.extend(f"#   {line}".rstrip() for line in _SAMPLE_APPS.splitlines())
    return "\n".join(out) + "\n"


def _banner(kind: str | None) -> list[str]:
    title = _HEADERS[kind] if kind else "App sections"
    lines = ["# " + "=" * 74, f"# {title}", "# " + "=" * 74]
    if kind:
        lines.extend(_wrap_doc(_ABOUT[kind]))
        lines.extend(["#", f"# {_HEADERS[kind].replace('#name', '#echo')}", "#"])
    return lines


def _sample_option(declared: Option, note: str) -> list[str]:
    doc = declared.doc
    if note:
        doc = f"{doc} {note}"
    return [*_wrap_doc(doc), declared.sample(), "#"]


def _wrap_doc(doc: str, width: int = 78) -> list[str]:
    """``doc`` as ``#`` comment lines no wider than ``width``."""
    lines, line = [], "#"
    for word in doc.split():
        if len(line) > 1 and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    lines.append(line)
    return lines


def reference_rst() -> str:
    """The conf reference page body (reStructuredText), generated from the tables.

    The docs build (``docs/conf.py``) writes this to ``docs/_generated/`` and
    the reference page includes it, so the docs list exactly the options the
    code accepts.
    """
    groups = [
        ("The master process", "Only ``[brim]`` may set these.", PROCESS_OPTIONS),
        ("Logging and the event loop", "Set in ``[brim]``; any subconfig may override them.",
         COMMON_OPTIONS),
        ("Listening", "Where a WSGI, TCP or UDP subserver listens and how many workers "
         "it runs. Set in ``[brim]`` as defaults, or per subconfig.", LISTEN_OPTIONS),
        ("TLS", "Set both in a ``[wsgi]`` section (or in ``[brim]`` for every WSGI "
         "subserver) to serve HTTPS.", TLS_OPTIONS),
        ("WSGI", "The HTTP server of ``[wsgi]`` subconfigs. All but ``apps`` may be set "
         "in ``[brim]`` as defaults.", WSGI_OPTIONS),
        ("Recycling", "When workers are replaced by fresh processes on purpose. A "
         "replacement starts first and the old worker drains once it is up, so no "
         "connection is refused. Set in ``[brim]`` as defaults, or per subconfig.",
         RECYCLE_OPTIONS),
        ("TCP", "``[tcp#name]`` sections.", TCP_OPTIONS),
        ("UDP", "``[udp#name]`` sections.", UDP_OPTIONS),
        ("Daemons", "The ``[daemons]`` section.", DAEMONS_OPTIONS),
    ]
    out = [
        ".. This file is generated by brim.server.options.reference_rst(); do not edit.",
        "",
        "Sections",
        "--------",
        "",
    ]
    for kind in (MAIN_SECTION, *_SUBCONFIG_KINDS):
        out.append(f"``{_HEADERS[kind]}``")
        out.append(f"   {_rst_text(_ABOUT[kind])}")
        out.append("")
    for title, intro, declared_options in groups:
        out.extend([title, "-" * len(title), "", intro, ""])
        for declared in declared_options:
            out.extend(_rst_option(declared))
    return "\n".join(out).rstrip() + "\n"


def _rst_option(declared: Option) -> list[str]:
    shown = _shown_default(declared)
    signature = f"{declared.name} = {shown}" if shown else declared.name
    kind = declared.kind
    limits = []
    if declared.minimum is not None:
        limits.append(f"at least {declared.minimum:g}")
    if declared.maximum is not None:
        limits.append(f"at most {declared.maximum:g}")
    if declared.choices:
        limits.append("one of " + ", ".join(declared.choices))
    if limits:
        kind += " (" + "; ".join(limits) + ")"
    sections = ", ".join(f"``{_HEADERS[k]}``" for k in _kinds_accepting(declared.name))
    lines = [f".. describe:: {signature}", "", f"   {_rst_text(declared.doc)}", "",
             f"   :Type: {_rst_text(kind)}",
             f"   :Default: ``{shown}``" if shown else "   :Default: unset",
             f"   :Sections: {sections}"]
    if declared.inherit:
        lines.append("   :Falls back to: ``[brim]``")
    lines.append("")
    return lines


def _rst_text(text: str) -> str:
    """Plain text made safe for reStructuredText (no accidental markup)."""
    return re.sub(r"([\\*`|_])", r"\\\1", text)


__all__ = [
    "SECTION_OPTIONS",
    "check_sections",
    "declares",
    "default_pid_file",
    "misplaced",
    "option",
    "reference_rst",
    "sample_conf",
    "value",
]

if __name__ == "__main__":
    print(sample_conf(), end="")
