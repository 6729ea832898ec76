"""The apps a conf names, loaded in the master before any fork.

brimd runs four kinds of app (WSGI chains, TCP, UDP and daemons), and each
is named the same way: a section whose ``call`` option is a dotted class
name, with an optional ``parse_conf(name, conf)`` to check and digest the
section and ``stats_conf(name, parsed)`` to declare stats. Loading happens
once, in the master: a bad conf stops brimd before anything starts, and
whatever ``parse_conf`` loads is shared copy-on-write with every worker.
Workers then only call constructors (see :func:`brim.wsgi.chain.build_chain`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from brim.conf import Conf, ConfError, check_unknown, load_object
from brim.stats import StatsError, check_stats

__all__ = ["AppSpec", "app_stats", "load_apps", "load_class", "parse_app_conf"]


@dataclass
class AppSpec:
    """One app of a chain, as loaded in the master."""

    name: str
    cls: type
    conf: Any
    """What ``parse_conf`` returned, or the whole Conf for apps without one."""
    stats: list[tuple[str, str]] = field(default_factory=list)


def load_class(conf: Conf, name: str, *, referrer: tuple[str, str]) -> type:
    """The class named by ``call`` in section ``[name]``, or a ConfError."""
    if not conf.has_section(name):
        raise conf.error(referrer[0], referrer[1], f"{name!r} has no [{name}] section")
    call = conf.get(name, "call")
    if not call:
        raise conf.error(name, "call", "missing; set it to a class, like package.module.Class")
    try:
        cls = load_object(call)
    except ImportError as err:
        raise conf.error(name, "call", str(err)) from None
    if not callable(cls):
        raise conf.error(name, "call", f"{call!r} is not a class or callable")
    return cls


def parse_app_conf(cls: type, name: str, conf: Conf, accepted: Iterable[str] = ()) -> Any:
    """Run ``cls.parse_conf(name, conf)`` if it has one, turning failures into ConfError.

    An app that rejects its conf raises any exception whose text is meant for
    the user (the HelloWorld of the WSGI guide raises ``Exception('[helloworld]
    you must configure a path to serve.')``); that text becomes the error as it is.

    An app that lists the options of its section in ``conf_options`` (names,
    or :class:`brim.conf.Option` declarations) gets every other option in
    ``[name]`` refused, with a did-you-mean, as brimd's own sections do;
    ``call`` and ``accepted`` (a TCP or UDP section's own options) are
    always allowed. Apps without the list are not checked.
    """
    declared = getattr(cls, "conf_options", None)
    if declared is not None:
        known = {"call", *accepted, *(getattr(o, "name", o) for o in declared)}
        check_unknown(conf, name, known)
    parse = getattr(cls, "parse_conf", None)
    if parse is None:
        return conf
    try:
        return parse(name, conf)
    except ConfError:
        raise
    except Exception as err:
        message = str(err) or f"[{name}] parse_conf failed with {type(err).__name__}"
        raise ConfError(message) from err


def app_stats(cls: type, name: str, parsed: Any) -> list[tuple[str, str]]:
    """The ``(stat_name, stat_type)`` pairs ``cls.stats_conf`` declares, checked."""
    declare = getattr(cls, "stats_conf", None)
    if declare is None:
        return []
    try:
        pairs = list(declare(name, parsed) or ())
    except Exception as err:
        raise ConfError(f"[{name}] stats_conf failed: {type(err).__name__}: {err}") from err
    try:
        checked = check_stats(pairs, f"[{name}] stats_conf")
    except StatsError as err:
        raise ConfError(str(err)) from None
    return [pair for pair in checked if pair in pairs]


def load_apps(conf: Conf, section: str) -> list[AppSpec]:
    """Load the apps listed by ``apps`` in ``section`` (master side, before fork)."""
    names = conf.get_list(section, "apps")
    if not names:
        raise conf.error(section, "apps", "no apps listed; set apps = name1 name2 ...")
    specs = []
    for name in names:
        cls = load_class(conf, name, referrer=(section, "apps"))
        parsed = parse_app_conf(cls, name, conf)
        specs.append(AppSpec(name, cls, parsed, app_stats(cls, name, parsed)))
    return specs
