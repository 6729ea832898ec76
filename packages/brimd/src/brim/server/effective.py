"""``brimd show-conf``: the conf brimd would run, each value with where it came from.

Why: with values from several files, the environment (``BRIMD_...``) and
``--set``, and subconfigs falling back to ``[brim]``, "which workers value
wins, and why" has no answer in any one file. This prints the effective
value of every option brimd reads, after all of those, each followed by its
source: ``file line N``, ``environment variable BRIMD_...``, ``--set ...``,
``via [brim]`` for an inherited one, or ``default``. App sections list what
they set (their defaults are the app's own, unknown to brimd). The conf is
read, not checked (``brimd check`` does that), so a conf that fails can be
looked at too.
"""

from __future__ import annotations

import argparse

from brim.conf import Conf, Option

from . import options
from .core import load_conf
from .dialect import MAIN_SECTION

__all__ = ["cmd_show_conf", "effective_lines"]

_KINDS = ("wsgi", "tcp", "udp", "daemons")


def _kind(section: str) -> str | None:
    """Which brimd section kind ``section`` is, or None for an app's section."""
    if section == MAIN_SECTION:
        return MAIN_SECTION
    base = section.partition("#")[0]
    return base if base in _KINDS else None


def _default(declared: Option) -> str:
    return declared.sample().partition("=")[2].strip()


def _line(name: str, value: str, source: str) -> str:
    value = value.replace("\n", "\n    ")  # a long list, as a conf file continues it
    return f"{f'{name} = {value}'.rstrip():<40}  # {source}"


def _declared_lines(conf: Conf, kind: str, section: str) -> list[str]:
    lines = []
    for declared in options.SECTION_OPTIONS[kind]:
        found = conf.found_in(section, declared.name, inherit=declared.inherit)
        if found is None:
            lines.append(_line(declared.name, _default(declared), "default"))
            continue
        value = conf.get(found, declared.name) or ""
        source = conf.where(found, declared.name) or "set"
        if found != section:
            source = f"via [{found}], {source}"
        lines.append(_line(declared.name, value, source))
    return lines


def effective_lines(conf: Conf) -> list[str]:
    """The effective conf, one option a line with its source, section by section."""
    sections = [MAIN_SECTION, *(s for s in conf.sections() if s != MAIN_SECTION)]
    if not conf.has_section("daemons"):
        sections = [s for s in sections if s != "daemons"]
    out: list[str] = []
    for section in sections:
        kind = _kind(section)
        lines = _declared_lines(conf, kind, section) if kind else []
        declared = {o.name for o in options.SECTION_OPTIONS[kind]} if kind else set()
        for name, value in conf.options(section).items():
            if name not in declared:
                lines.append(_line(name, value, conf.where(section, name) or "set"))
        out += [f"[{section}]", *lines, ""]
    return out


def cmd_show_conf(args: argparse.Namespace) -> int:
    """Print the effective conf (see the module's doc); exit 1 if it cannot be read."""
    conf = load_conf(args.conf, args.set or ())
    print("\n".join(effective_lines(conf)).rstrip())
    return 0
