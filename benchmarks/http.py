#!/usr/bin/env python3
"""brim's HTTP worker against gunicorn 23.0 with its eventlet worker, driven by wrk.

    python3 benchmarks/http.py [--rounds 3] [--duration 10] [--connections 64]

Both servers run a hello-world WSGI app with 2 worker processes, keep-alive,
and their request log on (written to a file, as in production). Runs
alternate brim, gunicorn, brim, ... so drift in the machine's load hits both
alike; the medians and their ratios are printed at the end.

The script makes its own virtualenv under ~/.cache/brim-bench (or
$XDG_CACHE_HOME) with gunicorn==23.0.0, eventlet and this repository's
packages, so both servers run on the same interpreter and libraries. It needs
wrk (Debian/Ubuntu: ``sudo apt-get install -y wrk``).

brim's side is the real ``brimd foreground`` (a master and 2 forked
workers, as in production, logging every request to stderr, which goes to a
file); gunicorn's is ``gunicorn -k eventlet -w 2 --access-logfile -``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ['brim-conf', 'brim-stats', 'brim-supervisor', 'brim-wsgi', 'brimd']
WORKERS = 2

HELLO_APP = '''\
BODY = b'Hello World!\\n'
HEADERS = [('Content-Type', 'text/plain'), ('Content-Length', str(len(BODY)))]


def app(env, start_response):
    """The app as gunicorn runs it."""
    start_response('200 OK', HEADERS)
    return [BODY]


class Hello:
    """The same app in brimd's chained form: (name, conf, next_app)."""

    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, env, start_response):
        start_response('200 OK', HEADERS)
        return [BODY]
'''

BRIMD_CONF = '''\
[brim]
ip = 127.0.0.1
port = {port}
workers = {workers}
wsgi = hello

[hello]
call = hello.Hello
'''


# --- environment ------------------------------------------------------------

def _cache_dir() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
    return Path(base) / 'brim-bench'


def ensure_venv() -> Path:
    """The benchmark's own venv; (re)installs the repo packages every time, cheaply."""
    venv = _cache_dir() / 'venv'
    python = venv / 'bin' / 'python'
    if not python.exists():
        print(f'creating {venv}', flush=True)
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
        subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--upgrade', 'pip'],
                       check=True)
        subprocess.run([str(python), '-m', 'pip', 'install', '-q', 'gunicorn==23.0.0',
                        'eventlet'], check=True)
    # One -e per package: pip applies -e only to the path right after it.
    editable = [arg for p in PACKAGES for arg in ('-e', str(REPO / 'packages' / p))]
    subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', *editable],
                   check=True)
    return python


def ensure_wrk() -> str:
    wrk = shutil.which('wrk')
    if wrk:
        return wrk
    sys.exit('wrk is not installed; on Debian/Ubuntu: sudo apt-get install -y wrk')


# --- servers ----------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f'server exited early with {proc.returncode}')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1) as s:
                s.sendall(b'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
                if s.recv(100).startswith(b'HTTP/1.1 200'):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError('server did not come up')


def start_brim(python: Path, port: int, app_dir: Path, log: Path) -> subprocess.Popen:
    """brimd foreground with WORKERS workers on port; its request log goes to log (stderr)."""
    conf = app_dir / f'brimd-{port}.conf'
    conf.write_text(BRIMD_CONF.format(port=port, workers=WORKERS))
    env = dict(os.environ, PYTHONPATH=str(app_dir))
    return subprocess.Popen(
        [str(python), '-m', 'brim.server', '-c', str(conf), '-p', '-', 'foreground'],
        stdout=subprocess.DEVNULL, stderr=open(log, 'ab'), start_new_session=True, env=env)


def start_gunicorn(python: Path, port: int, app_dir: Path, log: Path) -> subprocess.Popen:
    gunicorn = python.parent / 'gunicorn'
    return subprocess.Popen(
        [str(gunicorn), '-w', str(WORKERS), '-k', 'eventlet', '-b', f'127.0.0.1:{port}',
         '--access-logfile', '-', '--chdir', str(app_dir), 'hello:app'],
        stdout=open(log, 'ab'), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


# --- measuring --------------------------------------------------------------

def _ms(text: str) -> float:
    value, unit = re.fullmatch(r'([\d.]+)(us|ms|s)', text).groups()
    return float(value) * {'us': 0.001, 'ms': 1.0, 's': 1000.0}[unit]


def run_wrk(wrk: str, port: int, duration: int, connections: int) -> tuple[float, float, str]:
    """(requests/s, p99 latency in ms, wrk's output)."""
    url = f'http://127.0.0.1:{port}/'
    subprocess.run([wrk, '-t2', f'-c{connections}', '-d2s', url], capture_output=True,
                   check=True)  # warm-up
    out = subprocess.run([wrk, '-t2', f'-c{connections}', f'-d{duration}s', '--latency', url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1))
    p99 = _ms(re.search(r'^\s+99%\s+(\S+)', out, re.M).group(1))
    if 'Non-2xx' in out or 'Socket errors' in out:
        print(out)
    return rps, p99, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--duration', type=int, default=10, help='seconds per wrk run')
    ap.add_argument('--connections', type=int, default=64)
    args = ap.parse_args()
    wrk = ensure_wrk()
    python = ensure_venv()
    results: dict[str, list[tuple[float, float]]] = {'brim': [], 'gunicorn': []}
    starters = {'brim': start_brim, 'gunicorn': start_gunicorn}
    with tempfile.TemporaryDirectory(prefix='brim-bench-') as tmp:
        app_dir = Path(tmp)
        (app_dir / 'hello.py').write_text(HELLO_APP)
        for n in range(args.rounds):
            for name, start in starters.items():
                port = _free_port()
                log = app_dir / f'{name}.log'
                proc = start(python, port, app_dir, log)
                try:
                    _wait_port(port, proc)
                    rps, p99, _ = run_wrk(wrk, port, args.duration, args.connections)
                finally:
                    _stop(proc)
                with open(log, 'rb') as f:
                    lines = sum(1 for _ in f)
                log.unlink()
                results[name].append((rps, p99))
                print(f'round {n + 1} {name:9s} {rps:10.0f} req/s  p99 {p99:7.2f} ms  '
                      f'({lines} request log lines)', flush=True)
    med = {name: (statistics.median(r for r, _ in rs), statistics.median(p for _, p in rs))
           for name, rs in results.items()}
    print()
    for name, (rps, p99) in med.items():
        print(f'median {name:9s} {rps:10.0f} req/s  p99 {p99:7.2f} ms')
    b, g = med['brim'], med['gunicorn']
    print(f'brim/gunicorn: req/s x{b[0] / g[0]:.2f}, p99 x{b[1] / g[1]:.2f} '
          f'(target: req/s >= 1.5, p99 <= 1.0)')


if __name__ == '__main__':
    main()
