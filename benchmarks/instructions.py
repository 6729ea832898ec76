#!/usr/bin/env python3
"""Instructions per request of one green brimd worker, counted by callgrind.

    python3 benchmarks/instructions.py [--requests 2000] [--log file|off]
                                       [--connections 1] [--tree DIR ...]
                                       [--python PATH]

Why: req/s on a small shared machine moves 5-15% from run to run (the load
generator shares the cores, and the scheduler's choices move latency and
throughput together), so a change of a few percent in what a request costs
cannot be seen in ``http.py``'s figures. The count of instructions a worker
executes per request is repeatable to about a thousand (under 1%: a garbage
collector pass falls in one run or the other), and it can compare two
checkouts: this one and, with ``--tree``, any other (an older commit in a
``git worktree``).

How: for each tree, brimd runs in the foreground under ``valgrind
--tool=callgrind`` with one worker and the hello-world app of ``http.py``
(its chained form), the request log to a file (or off), and one client
sends keep-alive GETs on one connection, one at a time (or on
``--connections``, each its next once its answer is in: a loaded worker,
see :func:`drive`). Two runs, one of 200
requests and one of 200 + ``--requests``, and the worker's difference
divided by ``--requests`` is the figure: start-up, imports and shutdown
cancel out. Takes about a minute per tree.

The interpreter (``--python``) needs eventlet and setproctitle; the default
is the virtualenv ``http.py`` makes (``~/.cache/brim-bench/venv``) when it
exists, else this Python. The trees' packages are put on ``PYTHONPATH`` from
their ``packages/*/src``, so no install is needed and any checkout can be
measured with the same interpreter. Needs valgrind: ``sudo apt-get install
-y valgrind``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WARM = 200  # requests in the shorter run: what both runs share

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: instructions.py\r\n\r\n"


def _load_http() -> Any:
    """benchmarks/http.py as a module: its app, its venv and its process helpers.

    Loaded from its path under a name of its own, since ``http`` is the
    standard library's.
    """
    spec = importlib.util.spec_from_file_location("brim_bench_http",
                                                  Path(__file__).with_name("http.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_http()


def default_python() -> str:
    venv = bench._cache_dir() / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def drive(port: int, count: int, connections: int = 1) -> None:
    """count keep-alive GETs over ``connections`` connections, each sent after its last answer.

    With one connection the worker waits on its client between requests;
    with many (as under ``wrk -c64``), a connection's next request is
    already there when the worker turns back to it, since under callgrind
    the worker is by far the slowest party: that is the loaded worker, who
    yields between requests instead of waiting.
    """
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60)
             for _ in range(connections)]
    got = dict.fromkeys(socks, b"")
    sent = 0
    try:
        with selectors.DefaultSelector() as sel:
            for s in socks[:count]:
                s.sendall(REQUEST)
                sent += 1
                sel.register(s, selectors.EVENT_READ)
            answered = 0
            while answered < count:
                ready = sel.select(timeout=60)
                if not ready:
                    raise SystemExit("brimd answered nothing for 60 s")
                for key, _ in ready:
                    s = key.fileobj
                    assert isinstance(s, socket.socket)
                    data = s.recv(65536)
                    if not data:
                        raise SystemExit("brimd closed the connection")
                    got[s] += data
                    # One answer per request sent; each ends with the body.
                    while b"Hello World!\n" in got[s]:
                        got[s] = got[s].split(b"Hello World!\n", 1)[1]
                        answered += 1
                        if sent < count:
                            s.sendall(REQUEST)
                            sent += 1
    finally:
        for s in socks:
            s.close()


def worker_instructions(out: Path, master: int) -> int:
    """The total of the callgrind file of the master's child (the worker)."""
    counts = {}
    for path in out.glob("cg.*"):
        pid = int(path.suffix[1:])
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                counts[pid] = int(line.split()[1])
                break
    workers = [pid for pid in counts if pid != master]
    if not workers:
        raise SystemExit(f"no worker profile in {out}")
    # The worker is the master's one forked child that served; helpers the
    # master may fork and exec (none today) would be smaller.
    return max(counts[pid] for pid in workers)


def run(tree: Path, python: str, requests: int, log: str, tmp: Path, connections: int) -> int:
    """The worker's instructions for WARM + requests requests."""
    out = Path(tempfile.mkdtemp(dir=tmp, prefix="cg-"))
    port = bench._free_port()
    logging = (f"log_sink = file\nlog_file = {out / 'requests.log'}\n" if log == "file"
               else "log_level = WARNING\n")
    conf = out / "brimd.conf"
    conf.write_text(f"[brim]\nip = 127.0.0.1\nport = {port}\nworkers = 1\nwsgi = hello\n"
                    f"start_check = 60\n{logging}\n[hello]\ncall = hello.Hello\n")
    paths = [str(tmp)] + [str(src) for src in sorted(tree.glob("packages/*/src"))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    errors = out / "brimd.err"
    with errors.open("wb") as stderr:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/cg.%p", python,
             "-m", "brim.server", "-c", str(conf), "-p", "-", "foreground"],
            cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True)
    try:
        try:  # valgrind makes start-up take seconds
            bench._wait_port(port, proc, errors, timeout=180)
        except bench.Skip as err:
            raise SystemExit(f"brimd did not serve: {err}") from None
        drive(port, requests, connections)
    finally:
        # Time for callgrind to write its files as the processes exit.
        bench._stop(proc, timeout=120)
    return worker_instructions(out, proc.pid)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--log", choices=("file", "off"), default="file")
    parser.add_argument("--connections", type=int, default=1,
                        help="keep-alive connections the requests are spread over (1: one "
                             "at a time, the worker waits on its client; 32: a loaded "
                             "worker, as one of two under wrk -c64)")
    parser.add_argument("--tree", action="append", type=Path, default=[],
                        help="another checkout to measure (repeatable); this one is first")
    parser.add_argument("--python", default=default_python())
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is missing: sudo apt-get install -y valgrind")
    trees = [bench.REPO, *(tree.resolve() for tree in args.tree)]
    print(f"python {args.python}; 1 green worker, log {args.log}; "
          f"({WARM} + {args.requests}) - {WARM} requests on {args.connections} keep-alive "
          f"connection(s)")
    first = None
    with tempfile.TemporaryDirectory(prefix="brim-instr-") as name:
        tmp = Path(name)
        (tmp / "hello.py").write_text(bench.HELLO_APP)
        for tree in trees:
            short = run(tree, args.python, WARM, args.log, tmp, args.connections)
            long = run(tree, args.python, WARM + args.requests, args.log, tmp,
                       args.connections)
            per = (long - short) / args.requests
            first = first or per
            print(f"{per:10,.0f} instructions/request  x {per / first:.3f}  {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
