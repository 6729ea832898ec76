"""How the whole suite is spread over processes (pytest-xdist); nothing here is a fixture.

``hatch test`` runs the suite with ``-n auto --dist loadgroup`` (see
pyproject.toml). Most tests spend their time waiting on real processes,
sockets and timers, not on the CPU, so more workers than cores pay: ``auto``
is twice the CPUs this process may run on. ``PYTEST_XDIST_AUTO_NUM_WORKERS``
overrides it; ``-n 0`` runs everything in one process (for ``--pdb`` or
``-s``).

Tests marked ``slow`` are queued first, so the longest ones do not start
last and leave the other workers idle at the end of the run. Tests marked
with the same ``xdist_group`` run one after the other on one worker: the
CPU-heavy checks (ruff, mypy, the docs build, fresh virtualenvs) in
``cpu-heavy``, the scenarios that drive a load flat out (clients in loops,
wrk) in ``faults`` (tests/reliability/test_process_faults.py) and ``load``
(the others), two chains of about the same length. So at most one test of
each group eats a core at a time, and the timing-sensitive end-to-end tests
beside them keep the CPU they need.
"""

from __future__ import annotations

import os

import pytest


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return 2 * len(os.sched_getaffinity(0))


@pytest.hookimpl(trylast=True)  # after pytest's own reordering by fixture
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A stable sort: the order within the slow and the quick tests is kept.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
