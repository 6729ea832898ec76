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

#: pip builds and installs use the CPU: one worker runs these after each other, beside
#: the other CPU-heavy checks (see the root conftest.py).
pytestmark = [pytest.mark.xdist_group("cpu-heavy"), pytest.mark.slow]

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


@pytest.mark.timeout(400)
def test_readme_quick_start_in_a_fresh_venv(tmp_path):
    """The root README's quick start, run as written (only the port is moved)."""
    import re
    import shutil
    import signal
    import socket
    import time

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```\n(.*?)\n```", readme, re.S).group(1)
    install, _, run = block.partition(" && ")
    assert install.startswith("pip install ") and run.startswith("brimd ")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    done = subprocess.run(
        [str(bin_dir / "python"), "-m", *install.split()], cwd=ROOT, capture_output=True,
        text=True, timeout=380,
    )
    assert done.returncode == 0, done.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    override = tmp_path / "port.conf"
    override.write_text(f"[brim]\nport = {port}\n")
    words = run.split()
    words[0] = str(bin_dir / "brimd")
    words[-1:-1] = ["-c", str(override)]
    proc = subprocess.Popen(words, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        body = b""
        while time.monotonic() < deadline and body != b"Just a test.":
            curl = subprocess.run(
                [shutil.which("curl") or "curl", "-s", f"http://127.0.0.1:{port}/echo",
                 "--data-binary", "Just a test."], capture_output=True, timeout=10,
            )
            body = curl.stdout
            time.sleep(0.2)
        assert body == b"Just a test."
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, proc.stderr.read()
