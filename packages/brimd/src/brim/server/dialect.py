"""brimd's words for brim-conf: what makes a conf file a brimd conf.

brim-conf knows no program's vocabulary; brimd states its own here, once,
and reads every conf with it: ``[brim]`` (also spelled ``[brimd]``) holds
the defaults subconfigs fall back to, ``[wsgi]``, ``[tcp]`` and ``[udp]`` may
repeat (``wsgi``, ``wsgi#2``, ...), ``additional_confs`` in ``[brim]`` reads
more files, and ``wsgi = a b`` in ``[brim]`` is a ``[wsgi]`` section with
``apps = a b``.
"""

from __future__ import annotations

from collections.abc import Sequence

from brim.conf import Conf, Dialect

#: The section of the master process and of the defaults every subconfig falls back to.
MAIN_SECTION = "brim"

BRIMD_DIALECT = Dialect(
    defaults=MAIN_SECTION,
    aliases=("brimd",),
    repeatable=("wsgi", "tcp", "udp"),
    include="additional_confs",
    shorthands={"wsgi": ("wsgi", "apps")},
)


def read_conf(paths: Sequence[str], *, missing_ok: bool = False) -> Conf:
    """The conf files ``paths``, in order, read as brimd reads them."""
    return Conf.read(paths, missing_ok=missing_ok, dialect=BRIMD_DIALECT)


__all__ = ["BRIMD_DIALECT", "MAIN_SECTION", "read_conf"]
