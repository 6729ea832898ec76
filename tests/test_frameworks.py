"""Real Flask and Django apps served by real brimd: by ``module:app`` and by factory, from a
conf (``brimd start``) and from the one-line ``brimd serve``, alone and behind brim
middleware; and a wrongly shaped ``call`` refused in one line before anything starts.

The apps live in tests/frameworks/ (see its README): a Flask app with its factory and a
minimal Django project, whose factory is Django's own ``get_wsgi_application()``.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from brimd_harness import BRIMD, Brimd, alive, free_port, get_json, process_tree, wait_for

FRAMEWORKS = Path(__file__).resolve().parent / "frameworks"

#: The worker models every test here runs under, as [wsgi] options (the serve
#: tests pass each as ``--name value``: brim.server.serve.FLAGS has both).
WORKER_MODELS = [pytest.param({}, id="green"),
                 pytest.param({"worker_model": "threads", "threads": "4"}, id="threads")]


@pytest.fixture(params=WORKER_MODELS)
def model(request: pytest.FixtureRequest) -> dict[str, str]:
    return request.param


def _serve_flags(model: dict[str, str]) -> list[str]:
    return [arg for name, value in model.items() for arg in (f"--{name.replace('_', '-')}",
                                                               value)]


def _wsgi_section(name: str, port: int, app: str, model: dict[str, str],
                  workers: int = 2) -> str:
    lines = [f"[{name}]", f"apps = {app}", f"port = {port}", f"workers = {workers}",
             *(f"{key} = {value}" for key, value in model.items())]
    return "\n".join(lines) + "\n\n"


def _with_frameworks(brimd: Brimd) -> None:
    """brimd imports the apps from tests/frameworks; Django's factory reads its settings
    module from the environment."""
    brimd.env["PYTHONPATH"] = os.pathsep.join([str(FRAMEWORKS), brimd.env["PYTHONPATH"]])
    brimd.env["DJANGO_SETTINGS_MODULE"] = "djangoproj.settings"


class Client:
    """Requests to one served app, over real connections (http.client)."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def check_app(client: Client, greeting: str, workers: list[int]) -> None:
    """What every framework app here must do behind brimd, and that a failing view leaves
    the same workers serving."""
    status, body = client.request("GET", "/")
    assert status == 200 and body.startswith(greeting.encode() + b" pid="), body
    assert int(body.split(b"pid=")[1]) in workers
    payload = os.urandom(100_000)
    assert client.request("POST", "/echo", payload,
                          {"Content-Type": "application/octet-stream"}) == (200, payload)
    status, body = client.request("GET", "/info?x=1&y=two")
    assert status == 200
    assert json.loads(body)["path"] == "/info"
    assert json.loads(body)["query"] == {"x": "1", "y": "two"}
    assert client.request("GET", "/no/such/page")[0] == 404
    assert client.request("GET", "/fail")[0] == 500
    status, body = client.request("GET", "/")
    assert status == 200 and int(body.split(b"pid=")[1]) in workers


def _worker_pids(brimd: Brimd, group: str) -> list[int]:
    return sorted(brimd.workers(group).values())


# -- from a conf ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("framework", "by_name", "by_factory", "greetings"),
    [
        pytest.param("flask", "flask_app:app", "flask_app:create_app('made by a factory')",
                     ("hello from flask", "made by a factory"), id="flask"),
        pytest.param("django", "djangoproj.wsgi:application",
                     "django.core.wsgi:get_wsgi_application()",
                     ("hello from django", "hello from django"), id="django"),
    ],
)
@pytest.mark.slow
def test_framework_from_a_conf_by_name_and_by_factory(brimd, model, framework, by_name,
                                                       by_factory, greetings):
    _with_frameworks(brimd)
    ports = [free_port(), free_port()]
    brimd.use(brimd.local(start_check=0.2)
              + _wsgi_section("wsgi#byname", ports[0], "byname", model)
              + _wsgi_section("wsgi#factory", ports[1], "factory", model)
              + f"[byname]\ncall = {by_name}\n\n[factory]\ncall = {by_factory}\n")
    brimd.start()
    for section, port, greeting in zip(("wsgi#byname", "wsgi#factory"), ports, greetings,
                                        strict=True):
        workers = _worker_pids(brimd, section)
        assert len(workers) == 2
        check_app(Client(f"http://127.0.0.1:{port}"), greeting, workers)
        assert _worker_pids(brimd, section) == workers
    brimd.syslog.wait_line("GET /fail 500")
    assert brimd.run("stop").returncode == 0
    assert not brimd.pid_file.exists()


@pytest.mark.slow
def test_flask_last_in_a_chain_behind_brim_middleware(brimd, model):
    _with_frameworks(brimd)
    port = free_port()
    brimd.use(brimd.local(start_check=0.2)
              + _wsgi_section("wsgi", port, "echo stats flask", model, workers=1)
              + "[echo]\ncall = brim.wsgi_echo.WSGIEcho\npath = /brim/echo\n\n[stats]\ncall = brim.stats.Stats\n\n"
              + "[flask]\ncall = flask_app:create_app('flask behind brim')\n")
    brimd.start()
    client = Client(f"http://127.0.0.1:{port}")
    workers = _worker_pids(brimd, "wsgi")
    assert client.request("POST", "/brim/echo", b"to brim") == (200, b"to brim")
    check_app(client, "flask behind brim", workers)
    # brimd counted what the Flask app answered: 2xx, the 404 and the 500. A
    # request is counted once its response is out; with OS threads the next
    # request (this read) can be served before the last ones' counts land,
    # so read until all have (not counting the reads' own 2xx: each lands
    # after the read that made it, or later).
    reads: list[dict] = []

    def counted() -> bool:
        reads.append(get_json(f"http://127.0.0.1:{port}/stats"))
        last = reads[-1]
        return (last["status_2xx_count"] - (len(reads) - 1) >= 5
                and last["status_404_count"] >= 1 and last["status_5xx_count"] >= 1)

    wait_for(counted, timeout=5, what="the Flask app's answers counted")
    stats = reads[-1]
    assert stats["status_404_count"] == 1 and stats["status_5xx_count"] == 1
    assert _worker_pids(brimd, "wsgi") == workers


@pytest.mark.slow
def test_wrongly_shaped_call_is_one_conf_error_line_and_nothing_starts(brimd):
    """The issue's crash loop: a Flask app named as a brim class (``call = flask_app.app``)
    passed the check and then killed every worker until brimd gave up."""
    _with_frameworks(brimd)
    port = free_port()
    _, conf = brimd.use(brimd.local(), f"[wsgi]\nport = {port}\napps = flask\n\n"
                        "[flask]\ncall = flask_app.app\n")
    done = brimd.run("start")
    assert done.returncode == 1
    assert done.stderr == (
        "[flask] call: 'flask_app.app' takes (environ, start_response); expected a brim app "
        "class taking (name, conf, next_app); it looks like a plain WSGI app: name it with "
        f"a colon, call = flask_app:app ({conf} line 6)\n")
    assert not brimd.pid_file.exists()
    with pytest.raises(OSError):
        Client(f"http://127.0.0.1:{port}").request("GET", "/")


# -- brimd serve ---------------------------------------------------------------------


class Served:
    """One ``brimd serve`` in the foreground, on a port the OS picked; its stderr in a file."""

    def __init__(self, brimd: Brimd, argv: list[str], *, cwd: Path | None = None) -> None:
        self.log = brimd.root / f"serve-{len(brimd.foreground)}.log"
        with open(self.log, "wb") as err:
            # A session of its own: Ctrl-C is sent to the whole group, as a terminal does.
            self.proc = subprocess.Popen([*argv, "-b", "127.0.0.1:0"], env=brimd.env,
                                         cwd=cwd or brimd.root, stdout=subprocess.DEVNULL,
                                         stderr=err, start_new_session=True)
        brimd.foreground.append(self.proc)
        line = wait_for(self._serving, timeout=30, what="brimd serve's address line")
        match = re.search(r" at (https?://\S+)/ with (\d+) worker", line)
        assert match, line
        self.url, self.workers = match.group(1), int(match.group(2))

    def _serving(self) -> str | None:
        text = self.log.read_text()
        if self.proc.poll() is not None:
            pytest.fail(f"brimd serve exited with {self.proc.returncode}:\n{text}")
        return next((x for x in text.splitlines() if x.startswith("brimd serve: ")), None)

    def worker_pids(self) -> list[int]:
        return sorted(pid for pid in process_tree(self.proc.pid)[1:] if alive(pid))

    def stop(self, signum: int) -> int:
        tree = process_tree(self.proc.pid)
        os.killpg(self.proc.pid, signum)
        code = self.proc.wait(15)
        assert not any(alive(pid) for pid in tree)
        return code


@pytest.mark.parametrize(
    ("app", "greeting"),
    [
        pytest.param("flask_app:app", "hello from flask", id="flask-name"),
        pytest.param("flask_app:create_app('served by a factory')", "served by a factory",
                     id="flask-factory"),
        pytest.param("djangoproj.wsgi:application", "hello from django", id="django-name"),
        pytest.param("django.core.wsgi:get_wsgi_application()", "hello from django",
                     id="django-factory"),
    ],
)
@pytest.mark.slow
def test_serve_one_line_by_name_and_by_factory(brimd, model, app, greeting):
    """``brimd serve APP --chdir DIR --workers 2``: no conf file; TERM stops it, exit 0."""
    brimd.env["DJANGO_SETTINGS_MODULE"] = "djangoproj.settings"
    served = Served(brimd, [*BRIMD, "serve", app, "--chdir", str(FRAMEWORKS), "--workers",
                            "2", *_serve_flags(model)])
    assert served.workers == 2
    workers = wait_for(lambda: len(served.worker_pids()) == 2 and served.worker_pids(),
                       what="two workers")
    check_app(Client(served.url), greeting, workers)
    assert served.worker_pids() == workers
    assert served.stop(signal.SIGTERM) == 0
    log = served.log.read_text()
    assert "GET /fail 500" in log and "SIGTERM received" in log


@pytest.mark.slow
def test_serve_from_the_current_directory_reloads_on_hup_and_stops_on_ctrl_c(brimd, model):
    """The ``brimd`` script (not ``python -m``, which puts the cwd on the path itself),
    run from the app's directory, as ``gunicorn flask_app:app`` is. HUP replaces the
    worker from the same command line (there is no conf file to read again)."""
    script = Path(sys.executable).with_name("brimd")
    served = Served(brimd, [str(script), "serve", "flask_app:app", "-p", str(brimd.pid_file),
                            *_serve_flags(model)], cwd=FRAMEWORKS)
    assert served.workers == 1
    workers = wait_for(served.worker_pids, what="a worker")
    check_app(Client(served.url), "hello from flask", workers)
    assert brimd.master_pid() == served.proc.pid
    os.kill(brimd.master_pid(), signal.SIGHUP)
    wait_for(lambda: "brimd reloaded: wsgi x1" in served.log.read_text(), what="the reload")
    fresh = wait_for(lambda: (pids := served.worker_pids()) and not set(pids) & set(workers)
                     and pids, what="the old worker replaced")
    check_app(Client(served.url), "hello from flask", fresh)
    assert served.stop(signal.SIGINT) == 0
    assert "SIGINT received" in served.log.read_text()
    assert not brimd.pid_file.exists()


@pytest.mark.parametrize(
    ("app", "stderr"),
    [
        ("flask_app.app", "[app] call: 'flask_app.app' takes (environ, start_response); "
         "expected a brim app class taking (name, conf, next_app); it looks like a plain WSGI "
         "app: name it with a colon, call = flask_app:app"),
        ("flask_app:create_app", "[app] call: 'flask_app:create_app' takes (greeting); "
         "expected a WSGI app taking (environ, start_response); if it is a factory, call "
         "it: flask_app:create_app()"),
        # Never evaluated: the arguments are read as literals or refused.
        ("flask_app:create_app(__import__('os').system('touch pwned'))",
         "[app] call: \"flask_app:create_app(__import__('os').system('touch pwned'))\": a "
         "factory's arguments must be literals (strings, numbers, tuples, lists, dicts, "
         "True, False, None)"),
    ],
)
@pytest.mark.slow
def test_serve_refuses_a_wrongly_shaped_app_in_one_line(brimd, app, stderr):
    done = subprocess.run([*BRIMD, "serve", app, "--chdir", str(FRAMEWORKS), "-b",
                           "127.0.0.1:0"], capture_output=True, text=True, timeout=60,
                          env=brimd.env, cwd=brimd.root)
    assert (done.returncode, done.stderr) == (1, stderr + "\n")
    assert not (FRAMEWORKS / "pwned").exists() and not (brimd.root / "pwned").exists()


def test_serve_loads_new_code_on_hup_with_the_same_master(brimd, tmp_path):
    """HUP to ``brimd serve`` re-executes the master with the conf its command line
    built (there is no file to read again), and the workers serve the code now on
    disk; the master's pid stays."""
    module = tmp_path / "hot_app.py"
    source = ("def app(environ, start_response):\n"
              "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
              "    return [b{!r}]\n")
    module.write_text(source.format("old code"))
    served = Served(brimd, [*BRIMD, "serve", "hot_app:app", "--chdir", str(tmp_path),
                            "--workers", "2"])
    client = Client(served.url)
    assert client.request("GET", "/") == (200, b"old code")
    # A different size too, so a stale .pyc of the same second cannot be taken.
    module.write_text(source.format("new code, loaded by the reload"))
    os.kill(served.proc.pid, signal.SIGHUP)
    wait_for(lambda: client.request("GET", "/") == (200, b"new code, loaded by the reload"),
             timeout=30, what="the new code served")
    assert served.proc.poll() is None
    assert served.stop(signal.SIGTERM) == 0
