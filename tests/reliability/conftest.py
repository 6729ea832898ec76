"""The reliability suite: fault and abuse scenarios against real brimd processes.

Every scenario records its figures (requests sent and failed, restarts,
RSS, ...) with the ``figures`` fixture; they are printed at the end of the
run, so the CI log carries them, and written as JSON to the file named by
``BRIM_RELIABILITY_FIGURES`` when that is set (docs/reliability.rst quotes
such a run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

_FIGURES: dict[str, dict[str, object]] = {}


@pytest.fixture
def figures(request) -> Iterator[dict[str, object]]:
    """A dict the scenario fills with its figures, kept under the test's name."""
    recorded: dict[str, object] = {}
    yield recorded
    if recorded:
        _FIGURES[request.node.name] = recorded


def pytest_terminal_summary(terminalreporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, values in _FIGURES.items():
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        terminalreporter.write_line(f"{name}: {shown}")
    path = os.environ.get("BRIM_RELIABILITY_FIGURES")
    if path:
        with open(path, "w") as handle:
            json.dump(_FIGURES, handle, indent=2, sort_keys=True)
