"""brim.server: the brimd launcher.

:class:`Server` is one brimd (and what apps find in ``env['brim']``);
:func:`main` is the ``brimd`` command. Both load on first use, so running a
submodule (``python -m brim.server.options``) does not import it twice.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULT_CONF_FILES", "Server", "main"]


def __getattr__(name: str) -> Any:
    if name == "main":
        from .cli import main

        return main
    if name in ("Server", "DEFAULT_CONF_FILES"):
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'brim.server' has no attribute {name!r}")
