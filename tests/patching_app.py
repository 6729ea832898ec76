"""An app module that patches the standard library when imported, as many
eventlet-era apps start (for test_worker_models). brimd's master imports it
too, and must stay unpatched; its green workers must come out patched."""

import eventlet

eventlet.monkey_patch()

from blocking_apps import Sleeper  # noqa: E402  (after patching, as such apps do)

__all__ = ["Sleeper"]
