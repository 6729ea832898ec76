"""The project's own checks: ruff and mypy are clean and the docs build without a warning."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

#: CPU-bound: one worker runs these after each other (see the root conftest.py).
pytestmark = pytest.mark.xdist_group("cpu-heavy")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(pathlib.Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed in the test environment")
    return path


@pytest.mark.timeout(120)
def test_ruff_is_clean():
    run = subprocess.run(
        [_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
        timeout=110,
    )
    assert run.returncode == 0, run.stdout + run.stderr


#: Every package of the monorepo, and the sample apps that ship with them.
MYPY_PACKAGES = ("brim.conf", "brim.log", "brim.stats", "brim.supervisor", "brim.wsgi", "brim.wsgi_echo",
                 "brim.server", "brim.tcp_echo", "brim.udp_echo", "brim.daemon_sample")


@pytest.mark.timeout(400)
@pytest.mark.slow
def test_mypy_is_clean_for_every_package():
    """All six packages type-check under the strictness pyproject.toml states ([tool.mypy])."""
    args = [arg for name in MYPY_PACKAGES for arg in ("-p", name)]
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=390,
    )
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_docs_build_with_no_warning(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True, text=True, timeout=290,
    )
    assert run.returncode == 0, run.stdout + run.stderr
