"""The README's example program runs and keeps four workers alive."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from supervisor_testlib import alive, children_of, wait_for

README = Path(__file__).parent.parent / "README.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    program = blocks[0]
    assert "Supervisor(" in program and len(program.splitlines()) <= 25
    return program


def test_readme_program_keeps_four_workers_alive(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_example())
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        workers = wait_for(lambda: len(c := children_of(proc.pid)) == 4 and c, 10, "4 workers")
        seen.update(workers)
        os.kill(workers[0], signal.SIGKILL)
        wait_for(
            lambda: len(c := children_of(proc.pid)) == 4 and workers[0] not in c and c,
            2, "the killed worker replaced",
        )
        seen.update(children_of(proc.pid))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert children_of(proc.pid) == []
        assert not [p for p in seen if alive(p)]
    finally:
        for pid in [*seen, proc.pid]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=5)
