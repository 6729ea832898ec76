"""brimd's words for brim-conf: what makes a conf file a brimd conf.

brim-conf knows no program's vocabulary; brimd states its own here, once,
and reads every conf with it: ``[brim]`` (also spelled ``[brimd]``) holds
the defaults subconfigs fall back to, ``[wsgi]``, ``[tcp]`` and ``[udp]`` may
repeat (``wsgi``, ``wsgi#2``, ...), ``additional_confs`` in ``[brim]`` reads
more files, and ``wsgi = a b`` in ``[brim]`` is a ``[wsgi]`` section with
``apps = a b``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from brim.conf import (
    Conf,
    ConfProblems,
    Dialect,
    Override,
    environment_overrides,
    parse_override,
)

#: The section of the master process and of the defaults every subconfig falls back to.
MAIN_SECTION = "brim"

BRIMD_DIALECT = Dialect(
    defaults=MAIN_SECTION,
    aliases=("brimd",),
    repeatable=("wsgi", "tcp", "udp"),
    include="additional_confs",
    shorthands={"wsgi": ("wsgi", "apps")},
)


#: The prefix of the environment variables that set options: ``BRIMD_WSGI__WORKERS=4``
#: is ``[wsgi] workers = 4`` (brim-conf's naming rule: see brim.conf.env_name).
ENV_PREFIX = "BRIMD_"

#: Sections an override may add to a conf that lacks them: [brim] and the subconfig
#: kinds. Any other must be in a file, so a misspelt one is an error, not ignored.
NEW_SECTIONS = (MAIN_SECTION, "brimd", "wsgi", "tcp", "udp", "daemons")


def apply_overrides(conf: Conf, settings: Sequence[str] = (),
                    environ: Mapping[str, str] | None = None) -> Conf:
    """``conf`` with the ``BRIMD_...`` environment variables and then the ``--set``
    values (``section.option=value``) applied over it: command line, then
    environment, then the files, then each option's default."""
    env = os.environ if environ is None else environ
    found: list[Override] = []
    problems = ConfProblems()  # every bad variable and --set at once
    with problems.check():
        found += environment_overrides(env, ENV_PREFIX, [*conf.sections(), *NEW_SECTIONS])
    for text in settings:
        with problems.check():
            found.append(parse_override(text, f"--set {text}"))
    problems.raise_any()
    conf.apply(found, sections=NEW_SECTIONS)
    return conf


def read_conf(paths: Sequence[str], *, missing_ok: bool = False) -> Conf:
    """The conf files ``paths``, in order, read as brimd reads them."""
    return Conf.read(paths, missing_ok=missing_ok, dialect=BRIMD_DIALECT)


__all__ = ["BRIMD_DIALECT", "ENV_PREFIX", "MAIN_SECTION", "NEW_SECTIONS", "apply_overrides",
           "read_conf"]
