"""The standalone packages install alone, pulling in nothing else.

brim-conf, brim-stats and brim-supervisor promise to be usable by programs
that never run brimd, so each is installed into a brand-new virtualenv and
the environment is checked to hold nothing but the package and pip itself.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys
import venv

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

STANDALONE = {
    "brim-conf": "from brim.conf import Conf, ConfError",
    "brim-stats": "from brim.stats import StatsStore, Stats",
    "brim-supervisor": "from brim.supervisor import Supervisor",
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("package", sorted(STANDALONE))
def test_installs_nothing_else(tmp_path, package):
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(ROOT / "packages" / package)],
        capture_output=True, text=True, timeout=280,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout.split()
    names = {line.split("==")[0].lower() for line in listed}
    assert names - {"pip", "setuptools"} == {package}
    check = subprocess.run(
        [python, "-c", STANDALONE[package]], capture_output=True, text=True, timeout=60,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert sys.version_info >= (3, 10)
