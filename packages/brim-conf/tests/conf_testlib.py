"""A dialect with brimd's words, for the tests of brim-conf's dialect machinery.

brim-conf installs and is tested without brimd, so brimd's dialect
(``brim.server.dialect.BRIMD_DIALECT``, checked by brimd's own tests) is
spelled out again here: the seed documents' confs are the richest real
examples of every dialect feature at once.
"""

from __future__ import annotations

from brim.conf import Dialect

BRIMD = Dialect(
    defaults="brim",
    aliases=("brimd",),
    repeatable=("wsgi", "tcp", "udp"),
    include="additional_confs",
    shorthands={"wsgi": ("wsgi", "apps")},
)
