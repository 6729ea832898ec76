"""Fixtures for the brim-supervisor tests (helpers live in supervisor_testlib)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from supervisor_testlib import Run


@pytest.fixture
def run_prog(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    runs: list[Run] = []

    def start(**conf: Any) -> Run:
        run = Run(tmp_path, conf)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill_all()
