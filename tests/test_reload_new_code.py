"""Reload loads the code now on disk, under load, and the master keeps its pid.

A client loop runs requests on fresh connections while an app module is
rewritten and ``brimd reload`` runs: every request succeeds, every request
sent after ``reload`` returned gets the new code's answer, and the master is
the same process throughout (daemonized with ``start``, and ``foreground``,
where ``restart`` also keeps the process). A reload into a syntax error, an
import error or a ``parse_conf`` error keeps the old code serving, exits 1
with the error on stderr, and the log says why.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time

import pytest
from brimd_harness import alive, free_port, wait_for

#: Each answer names its version; the bodies differ in length, so a rewrite
#: within the same second cannot leave Python a stale .pyc that looks current.
APP = """
BODY = {body!r}


class Version:
    def __init__(self, name, conf, next_app):
        pass

    @classmethod
    def parse_conf(cls, name, conf):
        if conf.get(name, "refuse", ""):
            raise ValueError("[" + name + "] refuse: " + conf.get(name, "refuse"))
        return None

    def __call__(self, env, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [BODY.encode()]
"""

#: Requests the client loop sends at least, across the reload.
REQUESTS = 2000


def _conf(**extra: str) -> str:
    lines = "".join(f"{k} = {v}\n" for k, v in extra.items())
    return f"[wsgi]\napps = version\nworkers = 2\n\n[version]\ncall = reload_app.Version\n{lines}"


def _get(port: int) -> bytes:
    """One request on a fresh connection; the body, or an exception."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 "):
        raise AssertionError(f"not a 200: {data[:200]!r}")
    return body


class ClientLoop:
    """Requests back to back in a thread: (monotonic time sent, body or the error)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[tuple[float, bytes | BaseException]] = []
        self.stop_after: float | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.stop_after is None or len(self.results) < self.stop_after:
            sent = time.monotonic()
            try:
                outcome: bytes | BaseException = _get(self.port)
            except Exception as err:
                outcome = err
            self.results.append((sent, outcome))

    def finish(self, at_least: int) -> list[tuple[float, bytes | BaseException]]:
        self.stop_after = at_least
        self.thread.join(120)
        assert not self.thread.is_alive(), "the client loop did not finish"
        return self.results


def _reload_under_load(brimd, port: int, command: str) -> float:
    """Rewrite the app, run ``command`` (reload or restart) under load; check the answers.

    Returns when the command returned (monotonic).
    """
    wait_for(lambda: _get(port) == b"old code", what="the old code served")
    load = ClientLoop(port)
    wait_for(lambda: len(load.results) >= 200, 30, what="the client loop under way")
    brimd.write("reload_app.py", APP.format(body="the new code"))
    done = brimd.run(command)
    returned = time.monotonic()
    assert done.returncode == 0, done.stderr
    results = load.finish(max(REQUESTS, len(load.results) + 200))
    failed = [(t, r) for t, r in results if isinstance(r, BaseException)]
    assert not failed, f"{len(failed)} of {len(results)} requests failed: {failed[:3]}"
    bodies = [r for _, r in results]
    assert set(bodies) == {b"old code", b"the new code"}, set(bodies)
    late = [r for t, r in results if t > returned]
    assert late and all(r == b"the new code" for r in late), \
        f"{sum(r != b'the new code' for r in late)} requests sent after {command} " \
        "returned got the old code"
    return returned


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_reload_under_load_serves_the_new_code_with_the_same_master(brimd):
    port = free_port()
    brimd.write("reload_app.py", APP.format(body="old code"))
    brimd.use(_conf(), brimd.local(port=port, start_check=0.3))
    master = brimd.start()
    old_workers = set(brimd.workers("wsgi").values())
    _reload_under_load(brimd, port, "reload")
    assert brimd.master_pid() == master and alive(master)
    # The old workers drained and left; the new ones are the master's children.
    wait_for(lambda: not old_workers & set(brimd.workers("wsgi").values())
             and len(brimd.workers("wsgi")) == 2, 15, what="the old workers gone")
    brimd.syslog.wait_line("brimd reloaded: wsgi x2", f"in place, pid {master}")
    status = brimd.run("status")
    assert status.returncode == 0 and f"running (pid {master})" in status.stdout
    assert f"wsgi 127.0.0.1:{port} 2 workers, 2 up" in status.stdout


def _foreground(brimd) -> tuple[subprocess.Popen, list[str]]:
    """brimd foreground, its stderr read as it comes (a full pipe would block it)."""
    proc = brimd.popen("foreground")
    lines: list[str] = []
    assert proc.stderr is not None
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    wait_for(lambda: brimd.pid_file.exists() and brimd.run("status").returncode == 0, 30,
             what="brimd foreground up")
    return proc, lines


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("command", ["reload", "restart"])
def test_foreground_reload_and_restart_keep_the_process(brimd, command):
    port = free_port()
    brimd.write("reload_app.py", APP.format(body="old code"))
    brimd.use(_conf(), brimd.local(port=port, start_check=0.3))
    proc, lines = _foreground(brimd)
    assert brimd.master_pid() == proc.pid
    _reload_under_load(brimd, port, command)
    # The foreground process (a container's PID 1) is still the master.
    assert proc.poll() is None, "".join(lines)
    assert brimd.master_pid() == proc.pid
    assert _get(port) == b"the new code"
    proc.terminate()
    assert proc.wait(30) == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_reload_into_broken_code_or_conf_keeps_the_old_code_serving(brimd):
    port = free_port()
    brimd.write("reload_app.py", APP.format(body="old code"))
    conf, _ = brimd.use(_conf(), brimd.local(port=port, start_check=0.3))
    master = brimd.start()
    workers = set(brimd.workers("wsgi").values())
    good_app = APP.format(body="old code")

    def refused(*needles: str) -> None:
        done = brimd.run("reload")
        assert done.returncode == 1, done.stdout
        assert done.stderr.startswith("brimd: reload refused, still running the previous "
                                      "conf: "), done.stderr
        for needle in needles:
            assert needle in done.stderr, done.stderr
        brimd.syslog.wait_line("reload refused", *needles)
        assert _get(port) == b"old code"
        assert brimd.master_pid() == master
        assert set(brimd.workers("wsgi").values()) == workers, "a refused reload replaced workers"

    # A syntax error in the app module.
    brimd.write("reload_app.py", good_app + "\ndef broken(:\n")
    refused("[version] call: ", "SyntaxError", "reload_app.py, line ")
    # An import error inside it.
    brimd.write("reload_app.py", "import no_such_module_here\n" + good_app)
    refused("[version] call: ", "reload_app", "No module named 'no_such_module_here'")
    # parse_conf refusing the new conf.
    brimd.write("reload_app.py", good_app)
    conf.write_text(_conf(refuse="this value"))
    refused("[version] refuse: this value")
    status = brimd.run("status")
    assert "last reload: brimd: reload refused" in status.stdout

    # Fixed: the next reload loads it.
    conf.write_text(_conf())
    brimd.write("reload_app.py", APP.format(body="the new code"))
    done = brimd.run("reload")
    assert done.returncode == 0, done.stderr
    assert _get(port) == b"the new code"
    assert brimd.master_pid() == master
    # The re-executed master still hands its sockets over to a restart.
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    assert "binding anew" not in done.stderr
    assert brimd.master_pid() != master
    wait_for(lambda: not alive(master), 15, what="the old master gone")
    assert _get(port) == b"the new code"


#: Loads fine the first time after it is armed (the reload's check) and fails
#: the second (the re-executed master): as if the code changed in between.
FLAKY = """
import pathlib

_armed = pathlib.Path({armed!r})
if _armed.exists():
    loads = int(_armed.read_text() or 0) + 1
    _armed.write_text(str(loads))
    if loads == 2:
        raise RuntimeError("broke after the check")
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_new_image_that_cannot_load_holds_the_old_workers(brimd):
    port = free_port()
    armed = brimd.root / "armed"
    brimd.write("reload_app.py", APP.format(body="old code") + FLAKY.format(armed=str(armed)))
    brimd.use(_conf(), brimd.local(port=port, start_check=0.3))
    master = brimd.start()
    workers = set(brimd.workers("wsgi").values())
    armed.write_text("0")
    done = brimd.run("reload")
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("brimd: reload refused, still running the previous "
                                  "workers: "), done.stderr
    assert "RuntimeError: broke after the check" in done.stderr, done.stderr
    brimd.syslog.wait_line("reload refused", "broke after the check")
    # The same master holds the old workers, which serve the old code.
    assert brimd.master_pid() == master and alive(master)
    assert set(brimd.workers("wsgi").values()) == workers
    assert _get(port) == b"old code"
    assert "last reload: brimd: reload refused" in brimd.run("status").stdout
    # A reload that works replaces them.
    armed.unlink()
    brimd.write("reload_app.py", APP.format(body="the new code"))
    done = brimd.run("reload")
    assert done.returncode == 0, done.stderr
    assert _get(port) == b"the new code"
    assert brimd.master_pid() == master
    wait_for(lambda: not workers & set(brimd.workers("wsgi").values()), 15,
             what="the held workers drained")


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_term_during_a_reload_still_stops_the_master(brimd):
    port = free_port()
    brimd.write("reload_app.py", APP.format(body="old code"))
    brimd.use(_conf(), brimd.local(port=port, start_check=0.3))
    proc, lines = _foreground(brimd)
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: any("brimd: reload requested" in line for line in lines),
             what="the reload under way")
    # The master is checking the new conf in a fresh interpreter: the TERM is
    # noted then, and must reach the image the master re-executes into.
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, "".join(lines)
    wait_for(lambda: "brimd stopped" in "".join(lines), what="the whole log read")
    log = "".join(lines)
    assert log.index("brimd reloaded: ") < log.index("SIGTERM received, stopping"), log
    assert not brimd.pid_file.exists()
