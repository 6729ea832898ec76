"""The standalone packages install alone, pulling in nothing else.

brim-conf, brim-stats and brim-supervisor promise to be usable by programs
that never run brimd, so each is installed into a brand-new virtualenv and
the environment is checked to hold nothing but the package and pip itself.
"""

from __future__ import annotations

import os
import pathlib
import re
import socket
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
    make_venv, command = block.splitlines()
    assert make_venv == "python3 -m venv .venv && . .venv/bin/activate"  # made below
    install, _, run = command.partition(" && ")
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


# -- wheels and sdists ------------------------------------------------------------------

PACKAGES = ("brim-conf", "brim-log", "brim-stats", "brim-supervisor", "brim-wsgi", "brimd")


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """A wheel and an sdist of every package, built as README.md's "Build wheels" says
    (``python -m build``; without isolation: the test environment has hatchling)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Build wheels.*?```\n(.*?)\n```", readme, re.S).group(1)
    assert 'for p in packages/*/; do python -m build --outdir dist "$p"; done' in block
    assert "twine check dist/*" in block
    out = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        done = subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
             str(ROOT / "packages" / package)],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.slow  # building the twelve dists takes 15-20 s
def test_every_package_has_a_wheel_and_an_sdist_that_twine_passes(dists):
    names = sorted(p.name for p in dists.iterdir())
    for package in PACKAGES:
        stem = package.replace("-", "_")
        assert f"{stem}-0.1.0-py3-none-any.whl" in names, names
        assert f"{stem}-0.1.0.tar.gz" in names, names
    assert len(names) == 2 * len(PACKAGES)
    check = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dists.iterdir()))],
        capture_output=True, text=True, timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count("PASSED") == 2 * len(PACKAGES), check.stdout


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_six_wheels_run_the_quick_start_away_from_the_source_tree(dists, tmp_path):
    """A fresh venv gets the wheels (and eventlet from the index); nothing of the clone
    is importable there, and the quick start runs: start, curl /echo, stop."""
    import shutil

    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    wheels = sorted(str(p) for p in dists.glob("*.whl"))
    install = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "-q", *wheels],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=380,
    )
    assert install.returncode == 0, install.stderr
    where = subprocess.run(
        [str(bin_dir / "python"), "-c",
         "import brim.server, brim.conf, brim.log, brim.wsgi, brim.stats, brim.supervisor;"
         "print(*[m.__file__ for m in (brim.server, brim.conf, brim.log, brim.wsgi,"
         " brim.stats, brim.supervisor)], sep='\\n')"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert path.startswith(str(tmp_path / "venv")), path  # not the clone's code
    site = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    for pth in site.glob("*.pth"):
        assert str(ROOT) not in pth.read_text(), f"{pth.name} points into the clone"
    # The quick start's conf, copied next to the venv, and a port of our own.
    shutil.copy(ROOT / "packages" / "brimd" / "examples" / "quickstart.conf", tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "port.conf").write_text(f"[brim]\nport = {port}\nworkers = 1\n")
    brimd = [str(bin_dir / "brimd"), "-c", "quickstart.conf", "-c", "port.conf",
             "-p", str(tmp_path / "brimd.pid")]
    start = subprocess.run([*brimd, "start"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=60)
    try:
        assert start.returncode == 0, start.stderr
        assert start.stdout.splitlines() == [f"wsgi 127.0.0.1:{port} 1 worker"]
        curl = subprocess.run(
            [shutil.which("curl") or "curl", "-s", f"http://127.0.0.1:{port}/echo",
             "--data-binary", "Just a test."], capture_output=True, timeout=20,
        )
        assert curl.stdout == b"Just a test."
    finally:
        stop = subprocess.run([*brimd, "stop"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.startswith("brimd stopped (pid ")
    assert not (tmp_path / "brimd.pid").exists()
