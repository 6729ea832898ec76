"""brim-wsgi tests: make http_harness (the shared forked-server helper) importable,
and run a module's tests on each worker model when it asks (``worker_model``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import http_harness as H
import pytest

# The quick tier (-m "not slow") runs these modules on the default model only;
# the full run covers every model.
_PARAMS = [H.MODELS[0], *(pytest.param(m, marks=pytest.mark.slow) for m in H.MODELS[1:])]


@pytest.fixture(scope="module", params=_PARAMS)
def worker_model(request: pytest.FixtureRequest):
    """Run every test of the module on each worker model (green, then threads).

    The runs on threads are marked ``slow``: the quick tier checks each rule
    once, on green, and the full suite on both.

    Module-scoped, so a module's shared server is started once per model:
    its fixture must ask for ``worker_model`` too, to be started again.
    """
    H.use_model(request.param)
    yield request.param
    H.use_model("green")
