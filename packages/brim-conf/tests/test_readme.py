"""The program in the package README runs as written."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_program_runs(tmp_path):
    text = README.read_text()
    program = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    sample = re.findall(r"```ini\n(.*?)```", text, re.S)[0]
    (tmp_path / "prog.py").write_text(program)
    (tmp_path / "my.conf").write_text(sample)
    run = subprocess.run(
        [sys.executable, "prog.py", "my.conf"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "cache#a {'host': '127.0.0.1', 'port': 6380, 'timeout': 0.5" in run.stdout
    assert "cache#b {'host': '10.0.0.2'" in run.stdout
    (tmp_path / "bad.conf").write_text("[cache#b]\nport = x\n")
    run = subprocess.run(
        [sys.executable, "prog.py", "my.conf", "bad.conf"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == "cachewarm: [cache#b] port: 'x' is not an integer (bad.conf line 2)"
