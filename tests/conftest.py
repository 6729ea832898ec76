"""Fixtures for the end-to-end tests (the harness itself is in brimd_harness.py), and the
summary of the figures tests record."""

from __future__ import annotations

import json
import os
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


# --- figures recorded by tests (tests/reliability/conftest.py's ``figures``) ---

_FIGURES: dict[str, dict[str, object]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each test's figures; reports from xdist workers come through here too."""
    if report.when != "teardown":
        return
    name = report.nodeid.rpartition("::")[2]
    if name.rfind("@") > name.rfind("]"):  # xdist's @group suffix
        name = name[:name.rfind("@")]
    for key, value in report.user_properties:
        if key == "figures":
            _FIGURES[name] = value


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
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
