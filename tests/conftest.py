"""Fixtures for the end-to-end tests; the harness itself is in brimd_harness.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from brimd_harness import Brimd, SyslogListener


@pytest.fixture
def syslog() -> Iterator[SyslogListener]:
    listener = SyslogListener()
    yield listener
    listener.close()


@pytest.fixture
def brimd(tmp_path, syslog) -> Iterator[Brimd]:
    server = Brimd(tmp_path, syslog)
    yield server
    server.kill_all()
