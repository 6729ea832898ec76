"""The README's example runs as written, in a process of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["3000 30 1", "1000"]
    assert lines[2] == '{"start_time":'
    assert lines[3].startswith("{'start_time': ") and lines[3].endswith(", 'sweeps': 5}")
    shown = re.search(r"The last lines print:\n\n```\n(.*?)```", README.read_text(), re.S)
    assert lines[4:] == shown.group(1).splitlines()
