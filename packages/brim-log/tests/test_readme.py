"""The README's example runs as written, in a process of its own, and prints what it says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_example_logs_two_json_records_under_one_txn(tmp_path):
    program = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = (json.loads(line) for line in done.stderr.splitlines())
    assert (first["level"], first["message"]) == ("INFO", "handling it")
    assert second["level"] == "ERROR"
    assert second["message"] == "Traceback (most recent call last):\n  ..."
    assert first["txn"] == second["txn"] and len(first["txn"]) == 32
