"""Objects a conf names by dotted path: ``call = package.module.Class``.

Why in brim-conf: naming the class or function to use is how a conf plugs
code in (apps, JSON encoders, handlers), and the import errors must read as
conf errors, naming what failed, so every program reading such options
wants the same function.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["load_object"]


def load_object(dotted: str) -> Any:
    """Import ``package.module.Name`` and return ``Name``.

    Raises ImportError with a message saying which part failed (the module
    cannot be imported, importing it raised, or it lacks the name), so
    callers can turn it into a one-line conf error.
    """
    module_name, _, attr = dotted.strip().rpartition(".")
    if not module_name or not attr:
        raise ImportError(f"{dotted!r} is not a dotted name like package.module.Name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(f"cannot import {module_name!r}: {err}") from None
    except Exception as err:
        raise ImportError(
            f"importing {module_name!r} failed: {type(err).__name__}: {err}"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None
