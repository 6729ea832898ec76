"""Log rotation with the real logrotate and the configuration docs/logging.rst gives:
no request line is lost or doubled across rotations, and each rotation's new
file gets the lines written after it (issue 21, item 4: reopen).

A daemonized brimd with two workers logs to a file while a client sends
numbered requests without pause; logrotate (create, then SIGUSR1 to the
master named by the pid file, as the docs' postrotate does) rotates the file
three times under it. After a clean stop, every number is in exactly one of
the files, the compressed ones included.
"""

from __future__ import annotations

import gzip
import http.client
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from brimd_harness import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
REQUEST = re.compile(r" brim NOTICE 127\.0\.0\.1 GET /n/(\d+) 200 ")

pytestmark = pytest.mark.slow


def _docs_config(log_dir: Path, pid_file: Path) -> str:
    """The /etc/logrotate.d/brimd of docs/logging.rst, for this test's directory and pid file."""
    text = (ROOT / "docs" / "logging.rst").read_text()
    block = re.search(r"signal the program\. A file ``/etc/logrotate\.d/brimd``.*?"
                      r"\.\. code-block:: text\n\n(.*?)\n\n\S", text, re.S).group(1)
    config = "\n".join(line[3:] for line in block.splitlines())
    assert "/var/log/brimd/*.log {" in config and "/var/run/brimd.pid" in config
    return (config.replace("/var/log/brimd/*.log", f"{log_dir}/*.log")
            .replace("/var/run/brimd.pid", str(pid_file)) + "\n")


def _get(port: int, target: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _numbers(path: Path) -> list[int]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [int(m.group(1)) for m in REQUEST.finditer(data.decode())]


@pytest.mark.timeout(120)
def test_logrotate_with_the_documented_config_loses_no_line(brimd, tmp_path):
    shutil.copy(HERE / "errors_app.py", brimd.root / "errors_app.py")
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o755)
    log = log_dir / "brimd.log"
    port = free_port()
    brimd.use("[wsgi]\napps = app\nworkers = 2\n\n[app]\ncall = errors_app:app\n",
              brimd.local(port=port, log_sink="file", log_file=log))
    brimd.start()
    wait_for(lambda: _get(port, "/") == 200, what="brimd serving")
    conf = tmp_path / "logrotate.conf"
    conf.write_text(_docs_config(log_dir, brimd.pid_file))
    conf.chmod(0o644)  # logrotate refuses a config others may write

    sent: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def client() -> None:
        try:
            n = 0
            while not stop.is_set():
                assert _get(port, f"/n/{n}") == 200
                sent.append(n)
                n += 1
        except BaseException as err:  # seen by the test below
            errors.append(err)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        for rotation in range(1, 4):
            wait_for(lambda wanted=50 * rotation: len(sent) > wanted, what="requests sent")
            done = subprocess.run([LOGROTATE, "-f", "-s", str(tmp_path / "state"), str(conf)],
                                  capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stdout + done.stderr
            before = len(sent)
            # The new file gets the requests made after the signal: every
            # process reopened the path.
            wait_for(lambda before=before: any(n >= before for n in _numbers(log)), timeout=10,
                     what=f"requests in the new file after rotation {rotation}")
            time.sleep(0.5)
    finally:
        stop.set()
        thread.join(10)
    assert not errors, errors
    assert brimd.run("stop").returncode == 0  # the workers flush what they hold
    files = sorted(log_dir.iterdir())
    names = {p.name for p in files}
    assert {"brimd.log", "brimd.log.1", "brimd.log.2.gz", "brimd.log.3.gz"} <= names, names
    logged: list[int] = []
    for path in files:
        logged += _numbers(path)
    assert sorted(logged) == sent, (len(logged), len(sent))  # each once, none lost
