"""``brimd top`` in a real terminal: tmux runs it on an 80x24 screen, capture-pane reads it."""

from __future__ import annotations

import http.client
import shlex
import shutil
import subprocess
import threading

import pytest
from brimd_harness import echo_stats_conf, free_port, wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run)")


class Tmux:
    """A tmux server of the test's own (its own socket), killed at the end."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.args = ["tmux", "-L", name]
        self.env = env

    def __call__(self, *args: str) -> str:
        return subprocess.run([*self.args, *args], capture_output=True, text=True,
                              env=self.env, timeout=10, check=True).stdout

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "top").splitlines()

    def kill(self) -> None:
        subprocess.run([*self.args, "kill-server"], capture_output=True, timeout=10)


@pytest.fixture
def tmux(brimd, tmp_path):
    t = Tmux(f"brim-top-{tmp_path.name}", {**brimd.env, "TERM": "xterm"})
    yield t
    t.kill()


def _load(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/echo")
            conn.getresponse().read()
        except OSError:
            pass
        finally:
            conn.close()


def _rows(screen: list[str], pids: set[int]) -> dict[int, list[str]]:
    """The worker rows on the screen, by pid."""
    out = {}
    for line in screen:
        cells = line.split()
        if len(cells) > 3 and cells[0] == "wsgi" and cells[1].isdigit():
            out[int(cells[1])] = cells
    return out


@pytest.mark.slow
def test_top_shows_a_row_per_worker_with_a_moving_rate_and_quits_on_q(brimd, tmux):
    port = free_port()
    brimd.use(echo_stats_conf(workers=2), brimd.local(port=port, start_check=0.3))
    brimd.start()
    pids = set(wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 2 and w,
                        what="two workers").values())
    done = brimd.root / "top.exit"
    command = " ".join(shlex.quote(a) for a in brimd.args("top"))
    tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "-c", str(brimd.root),
         f"{command}; echo $? > {shlex.quote(str(done))}; sleep 60")

    rows = wait_for(lambda: (r := _rows(tmux.screen(), pids)) and set(r) == pids and r,
                    what="one row per worker")
    assert all(float(cells[3]) == 0 for cells in rows.values())  # REQ/S: no load yet
    screen = tmux.screen()
    assert all(len(line) <= 80 for line in screen)
    assert any(line.split()[-1:] == ["RST"] for line in screen)  # the last column fits
    assert any(line.startswith("total") for line in tmux.screen())

    stop = threading.Event()
    load = threading.Thread(target=_load, args=(port, stop), daemon=True)
    load.start()
    try:
        wait_for(lambda: sum(float(c[3]) for c in _rows(tmux.screen(), pids).values()) > 0,
                 what="req/s moving under load")
    finally:
        stop.set()
        load.join(10)
    wait_for(lambda: all(float(c[3]) == 0 for c in _rows(tmux.screen(), pids).values()),
             what="req/s back to 0 after the load")

    tmux("send-keys", "-t", "top", "r")  # sort by req/s: the header marks it
    wait_for(lambda: any("REQ/S*" in line for line in tmux.screen()), what="sorted by req/s")
    tmux("send-keys", "-t", "top", "q")
    wait_for(done.exists, what="top to exit")
    assert wait_for(lambda: done.read_text().strip(), what="its status") == "0"
