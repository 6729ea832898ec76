"""Process titles, so ``ps`` shows what each process of a daemon is for.

setproctitle is an optional dependency (the ``proctitle`` extra): when it is
not installed, titles are silently not set and nothing else changes.
"""

from __future__ import annotations

from types import ModuleType

_setproctitle: ModuleType | None
try:
    import setproctitle as _setproctitle
except ImportError:  # the optional extra is not installed
    _setproctitle = None


def can_set_process_title() -> bool:
    """True when setproctitle is installed and titles will really change."""
    return _setproctitle is not None


def set_process_title(title: str) -> bool:
    """Set this process's title (as ``ps`` shows it); return whether it was set."""
    if _setproctitle is None:
        return False
    _setproctitle.setproctitle(title)
    return True


def get_process_title() -> str | None:
    """This process's current title, or None when setproctitle is missing."""
    if _setproctitle is None:
        return None
    return _setproctitle.getproctitle()
