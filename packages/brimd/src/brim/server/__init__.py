"""brim.server: the brimd launcher.

:class:`Server` is one brimd (and what apps find in ``env['brim']``);
:func:`main` is the ``brimd`` command.
"""

from .cli import main
from .core import DEFAULT_CONF_FILES, Server

__all__ = ["DEFAULT_CONF_FILES", "Server", "main"]
