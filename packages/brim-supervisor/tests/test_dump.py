"""Stack dumps on DUMP_SIGNAL (brim.supervisor.dump).

The signal tests run progs/dumping.py as a real process and send it the
signal (or have it send the signal to itself inside logging); the rest call
the formatting functions in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervisor_testlib import PROGS, alive, wait_for

from brim.supervisor import dump
from brim.supervisor.dump import (
    DUMP_SIGNAL,
    STACK_LIMIT,
    add_dump_source,
    dump_lines,
    format_stack,
    install_dump_handler,
    remove_dump_source,
    write_dump,
)


class Prog:
    """One run of progs/dumping.py."""

    def __init__(self, tmp: Path, mode: str) -> None:
        self.log = tmp / "dump.log"
        self.stop = tmp / "stop"
        ready = tmp / "ready"
        conf = {"log": str(self.log), "stop": str(self.stop), "ready": str(ready), "mode": mode}
        self.proc = subprocess.Popen([sys.executable, str(PROGS / "dumping.py"),
                                      json.dumps(conf)], stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        self.pid = int(wait_for(lambda: ready.exists() and ready.read_text(), 10,
                                "the program to be ready"))
        assert self.pid == self.proc.pid

    def lines(self) -> list[str]:
        try:
            return self.log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def wait_dump(self) -> list[str]:
        """The dump's lines with their prefix taken off; checks the prefix on each."""
        prefix = f"dump test worker 7 (pid {self.pid}): "
        wait_for(lambda: f"{prefix}end of stack dump" in self.lines(), 10, "the dump's end")
        lines = self.lines()
        start = next(n for n, line in enumerate(lines) if "stack dump, " in line)
        end = lines.index(f"{prefix}end of stack dump")
        body = lines[start:end + 1]
        assert all(line.startswith(prefix) for line in body), body
        body = [line[len(prefix):] for line in body]
        assert body[0].startswith(f"stack dump, {len(body) - 2} lines follow (on SIGUSR2"), body
        return body

    def finish(self) -> str:
        """Let the program end by itself; its stderr (empty when nothing went wrong)."""
        self.stop.touch()
        _, err = self.proc.communicate(timeout=15)
        assert self.proc.returncode == 0, err
        assert self.lines()[-1] == "finished"
        return err

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.communicate(timeout=5)


@pytest.fixture
def prog(tmp_path: Path) -> Iterator:
    runs: list[Prog] = []

    def start(mode: str) -> Prog:
        run = Prog(tmp_path, mode)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def _section(body: list[str], header: str) -> list[str]:
    """The lines under a header line, up to the next line that is not indented."""
    at = body.index(header)
    out = []
    for line in body[at + 1:]:
        if not line.startswith(" "):
            break
        out.append(line)
    return out


@pytest.mark.timeout(40)
@pytest.mark.parametrize(("mode", "function", "code"), [
    ("sleep", "blocked_in_a_sleep", "time.sleep(0.2)"),
    ("spin", "spinning_on_the_cpu", None),
])
def test_dump_shows_the_blocking_code_threads_and_sources(prog, mode, function, code):
    run = prog(mode)
    os.kill(run.pid, DUMP_SIGNAL)
    body = run.wait_dump()
    # What runs now is the interrupted code, innermost frame last.
    running = _section(body, "running now, in thread MainThread:")
    # The loop checks stopped() now and then: the signal may land in there.
    names = [line.rsplit(" in ", 1)[1] for line in running
             if line.lstrip().startswith("File ")]
    assert function in names, running
    assert set(names[len(names) - names[::-1].index(function):]) <= {"stopped"}, running
    if code is not None and names[-1] == function:
        assert running[-1].strip() == code
    assert any(line.endswith("in main") for line in running)
    # Every other OS thread, by name.
    helper = next(line for line in body if line.startswith("thread helper ("))
    assert any("in helper_waits_on_an_event" in line for line in _section(body, helper))
    assert not [line for line in body if line.startswith("thread MainThread")]
    # Then each source, under its title.
    assert _section(body, "things:") == ["  first thing", "  second thing"]
    assert body.index("things:") > body.index(helper)
    # The process lives on, and a second signal gives a second dump.
    assert alive(run.pid)
    os.kill(run.pid, DUMP_SIGNAL)
    prefix = f"dump test worker 7 (pid {run.pid}): end of stack dump"
    wait_for(lambda: run.lines().count(prefix) == 2, 10, "a second dump")
    assert run.finish() == ""


@pytest.mark.timeout(40)
def test_a_failing_source_is_reported_and_the_rest_still_logged(prog):
    run = prog("bad_source")
    os.kill(run.pid, DUMP_SIGNAL)
    body = run.wait_dump()
    assert "broken: the source failed: ValueError: no luck" in body
    assert _section(body, "things:") == ["  first thing", "  second thing"]
    assert run.finish() == ""


@pytest.mark.timeout(40)
def test_a_signal_inside_logging_is_written_after_the_interrupted_record(prog):
    """The signal lands in a handler's format(), the handler's lock held: the lines
    are gathered there, and a helper thread logs them once the record is out."""
    run = prog("in_logging")
    body = run.wait_dump()
    assert "written by a helper thread" in body[0]
    running = _section(body, "running now, in thread MainThread:")
    assert any(line.endswith("in format") for line in running), running
    assert any("/logging/__init__.py" in line for line in running)
    lines = run.lines()
    # The interrupted record is whole and comes first; nothing is logged twice.
    assert lines.count("record that carries the signal") == 1
    assert lines.index("record that carries the signal") < lines.index(
        f"dump test worker 7 (pid {run.pid}): {body[0]}")
    assert run.finish() == ""


# --- in-process: the lines themselves ----------------------------------------------------

def _innermost_here() -> list[str]:
    return dump_lines()


def test_dump_lines_default_to_the_callers_frame():
    lines = _innermost_here()
    assert lines[0].startswith("running now, in thread ")
    running = _section(lines, lines[0])
    assert running[-2].endswith("in _innermost_here")
    assert running[-1].strip() == "return dump_lines()"


def test_a_deep_stack_keeps_its_innermost_frames():
    def recurse(n: int) -> list[str]:
        return format_stack(sys._getframe(), limit=5) if n == 0 else recurse(n - 1)

    lines = recurse(20)
    assert lines[0].startswith("  ... ") and lines[0].endswith(" outer frames not shown")
    # Five frames of two lines (traceback folds the repeats of one line).
    assert 1 + 3 * 2 <= len(lines) <= 1 + 5 * 2
    assert lines[1].endswith("in recurse")
    assert lines[-1].strip().startswith("[Previous line repeated 2 more times]")
    assert "outer frames" not in format_stack(sys._getframe(), limit=STACK_LIMIT)[0]


def test_sources_are_added_replaced_and_removed():
    try:
        add_dump_source("test source", lambda: ["one"])
        add_dump_source("test source", lambda: iter(["two", "three"]))
        add_dump_source("empty source", list)
        lines = dump_lines()
        assert lines[lines.index("test source:") + 1:][:2] == ["  two", "  three"]
        assert "empty source: 0" in lines
    finally:
        remove_dump_source("test source")
        remove_dump_source("empty source")
    assert not [x for x in dump_lines() if x.startswith(("test source", "empty source"))]
    remove_dump_source("never added")


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []
        self.flushes = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def flush(self) -> None:
        self.flushes += 1


def test_write_dump_prefixes_every_line_and_flushes_every_handler():
    parent, child = logging.getLogger("dumptest"), logging.getLogger("dumptest.child")
    upper, lower = _Records(), _Records()
    parent.addHandler(upper)
    child.addHandler(lower)
    try:
        write_dump(logging.LoggerAdapter(child, {}), ["a", "  b"], label="w 1", reason="why")
    finally:
        parent.removeHandler(upper)
        child.removeHandler(lower)
    who = f"dump w 1 (pid {os.getpid()}): "
    assert lower.messages == [f"{who}stack dump, 2 lines follow (why)", f"{who}a",
                              f"{who}  b", f"{who}end of stack dump"]
    assert upper.messages == lower.messages
    assert upper.flushes >= 1 and lower.flushes >= 1


def test_write_dump_never_raises():
    class Broken:
        def log(self, *args: object) -> None:
            raise RuntimeError("the log is broken")

    write_dump(Broken(), ["a"])  # type: ignore[arg-type]


def test_install_returns_an_uninstall_that_restores_the_previous_handler():
    def mine(signum: int, frame: object) -> None:
        pass

    before = signal.signal(DUMP_SIGNAL, mine)
    try:
        uninstall = install_dump_handler(logging.getLogger("dumptest"), "x")
        assert signal.getsignal(DUMP_SIGNAL) not in (mine, before)
        uninstall()
        assert signal.getsignal(DUMP_SIGNAL) is mine
    finally:
        signal.signal(DUMP_SIGNAL, before)
    assert dump.DUMP_SIGNAL == signal.SIGUSR2
