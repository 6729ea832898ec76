"""brim-wsgi tests: make http_harness (the shared forked-server helper) importable,
and run a module's tests on each worker model when it asks (``worker_model``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_harness as H
import pytest


@pytest.fixture(scope="module", params=H.MODELS)
def worker_model(request: pytest.FixtureRequest):
    """Run every test of the module on each worker model (green, then threads).

    Module-scoped, so a module's shared server is started once per model:
    its fixture must ask for ``worker_model`` too, to be started again.
    """
    H.use_model(request.param)
    yield request.param
    H.use_model("green")
