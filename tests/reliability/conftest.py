"""The reliability suite: fault and abuse scenarios against real brimd processes.

Every scenario records its figures (requests sent and failed, restarts,
RSS, ...) with the ``figures`` fixture; they are printed at the end of the
run, so the CI log carries them, and written as JSON to the file named by
``BRIM_RELIABILITY_FIGURES`` when that is set (docs/reliability.rst quotes
such a run). The printing is in tests/conftest.py: that conftest is loaded
by the process that prints the summary also when xdist workers run the
tests, and this one is not.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def figures(request) -> Iterator[dict[str, object]]:
    """A dict the scenario fills with its figures, kept under the test's name.

    They travel on the test's report (user property ``figures``), so they
    reach the summary also from an xdist worker.
    """
    recorded: dict[str, object] = {}
    yield recorded
    if recorded:
        request.node.user_properties.append(("figures", recorded))
