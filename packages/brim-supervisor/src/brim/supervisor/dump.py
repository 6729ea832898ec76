"""Stack dumps on a signal: what a worker is doing when asked, or when it hangs.

A master that kills a worker for missing its heartbeats learns nothing about
why it hung. So a worker installs :func:`install_dump_handler`; on
:data:`DUMP_SIGNAL` it logs what it is doing, and a master sends that signal
(and waits a moment, its ``dump_wait``) before it kills a hung worker. An
operator can send it too (``kill -USR2 <pid>``): the worker logs and serves
on.

The handler is a plain :func:`signal.signal` handler on purpose. When a
worker's event loop is blocked (a busy loop, a blocking call), nothing that
waits for the loop ever runs; but CPython runs a signal handler in the main
thread between two bytecodes of whatever is running there, and hands it the
frame it interrupted: exactly the code that blocks.

A dump is, in order:

1. the interrupted stack, labelled ``running now``;
2. the stack of every other OS thread (:func:`sys._current_frames`);
3. the lines of each *dump source* a runtime registered with
   :func:`add_dump_source` (an event-loop runtime adds its green threads,
   an HTTP server its requests in flight).

It is logged one line per record, each line prefixed with the process's label
and pid, so that syslog (one datagram per record) and grep both keep every
line with the process it came from. Then every handler of the logger is
flushed: a master may SIGKILL the worker a moment later.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from brim.supervisor.output import flush_std_streams

__all__ = [
    "DUMP_SIGNAL",
    "DumpSource",
    "add_dump_source",
    "dump_lines",
    "flush_handlers",
    "format_stack",
    "install_dump_handler",
    "remove_dump_source",
    "write_dump",
]

#: The signal that asks a worker for a stack dump: SIGUSR2. The others are
#: taken: TERM, INT and QUIT stop, HUP drains (the supervisor's drain
#: request), USR1 reopens log files, CHLD and ALRM belong to the runtime.
#: Java's thread dump is on SIGQUIT, but here QUIT already means "shut
#: down". SIGUSR2's default action ends a process; the Supervisor starts its
#: workers with it ignored, so one that has not installed the handler yet
#: simply logs nothing.
DUMP_SIGNAL: int = signal.SIGUSR2

#: A dump source: called during a dump (in the signal handler, on the main
#: thread; it must not block or switch green threads), returns text lines.
DumpSource = Callable[[], Iterable[str]]

#: Frames shown per stack, innermost kept: a deep recursion stays readable.
STACK_LIMIT = 60

_sources: dict[str, DumpSource] = {}
_busy = False


def add_dump_source(title: str, source: DumpSource) -> None:
    """Have every dump of this process include ``source()``'s lines under ``title``.

    A source registered again under the same title replaces the first one.
    """
    _sources[title] = source


def remove_dump_source(title: str) -> None:
    """Stop including the source registered under ``title`` (no error if none is)."""
    _sources.pop(title, None)


def format_stack(frame: FrameType | None, limit: int = STACK_LIMIT) -> list[str]:
    """The stack ending at ``frame``, outermost first, two indented lines per frame."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    lines = []
    if len(frames) > limit:
        lines.append(f"  ... {len(frames) - limit} outer frames not shown")
        frames = frames[:limit]
    summary = traceback.StackSummary.extract(((f, f.f_lineno) for f in reversed(frames)),
                                             capture_locals=False)
    for entry in traceback.format_list(summary):
        lines.extend(entry.rstrip("\n").split("\n"))
    return lines


def dump_lines(frame: FrameType | None = None) -> list[str]:
    """What this process is doing, as text lines: the stacks, then every source's lines.

    ``frame`` is what ``running now`` shows: the frame a signal interrupted;
    by default the caller's. The calling thread's own stack is not repeated
    among the threads.
    """
    if frame is None:
        frame = sys._getframe(1)
    me = threading.get_ident()
    names = _thread_names()
    lines = [f"running now, in thread {names.get(me, me)}:", *format_stack(frame)]
    for ident, top in sys._current_frames().items():
        if ident == me:
            continue
        lines.append(f"thread {names.get(ident, '?')} ({ident}):")
        lines.extend(format_stack(top))
    for title, source in list(_sources.items()):
        try:
            found = [str(line) for line in source()]
        except Exception as err:
            lines.append(f"{title}: the source failed: {type(err).__name__}: {err}")
            continue
        lines.append(f"{title}: {len(found)}" if not found else f"{title}:")
        lines.extend(f"  {line}" for line in found)
    return lines


def write_dump(logger: logging.Logger | logging.LoggerAdapter, lines: Iterable[str], *,
               label: str = "", reason: str = "", level: int = logging.WARNING) -> None:
    """Log a dump's lines, one record each, then flush every handler of ``logger``.

    Each line starts with ``dump <label> (pid N):``, so it keeps the process's
    identity in any sink; ``reason`` goes on the first line. Failures to log
    are swallowed: a dump must never break the process it describes.
    """
    lines = list(lines)
    who = f"dump {label} (pid {os.getpid()}):" if label else f"dump (pid {os.getpid()}):"
    head = f"stack dump, {len(lines)} lines follow" + (f" ({reason})" if reason else "")
    for line in [head, *lines, "end of stack dump"]:
        try:
            logger.log(level, "%s %s", who, line)
        except Exception:
            pass
    flush_handlers(logger)


def flush_handlers(logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Flush every handler a record of ``logger`` reaches, and stdout and stderr."""
    for handler in _handlers(logger):
        try:
            handler.flush()
        except Exception:
            pass
    flush_std_streams()


def install_dump_handler(logger: logging.Logger | logging.LoggerAdapter, label: str = "", *,
                         signum: int = DUMP_SIGNAL,
                         level: int = logging.WARNING) -> Callable[[], None]:
    """Log a stack dump to ``logger`` whenever this process gets ``signum``.

    Call it from the main thread (a limit of :func:`signal.signal`).
    ``label`` names the process on every line (say ``"wsgi worker 0"``).
    Returns a function that puts the previous handler back.

    The handler never raises. A signal that comes during a dump is ignored.
    One that interrupts logging itself (a handler half-way through a
    record; logging's locks are re-entrant, but a handler's own state may
    not be) only gathers the lines there, and leaves the writing to a short
    thread that logs once the interrupted record is done.
    """
    def _on_signal(signo: int, frame: FrameType | None) -> None:
        global _busy
        if _busy:
            return
        _busy = True
        try:
            lines = dump_lines(frame)
            reason = f"on {_signal_name(signo)}"
            if _inside_logging(frame, logger):
                _thread.start_new_thread(_write_later, (logger, lines, label, reason, level))
            else:
                write_dump(logger, lines, label=label, reason=reason, level=level)
        except Exception:
            pass
        finally:
            _busy = False

    previous = signal.signal(signum, _on_signal)

    def _uninstall() -> None:
        signal.signal(signum, previous)

    return _uninstall


def _write_later(logger: Any, lines: list[str], label: str, reason: str, level: int) -> None:
    try:
        write_dump(logger, lines, label=label, reason=f"{reason}, written by a helper thread",
                   level=level)
    except Exception:
        pass


def _handlers(logger: logging.Logger | logging.LoggerAdapter) -> list[logging.Handler]:
    """The handlers a record logged on ``logger`` goes through, as logging walks them."""
    current: Any = logger
    while isinstance(current, logging.LoggerAdapter):
        current = current.logger
    found: list[logging.Handler] = []
    while current is not None:
        found.extend(getattr(current, "handlers", ()))
        if not getattr(current, "propagate", False):
            break
        current = getattr(current, "parent", None)
    return found


def _inside_logging(frame: FrameType | None, logger: Any) -> bool:
    """Whether the interrupted code is logging: in the logging package, in the
    module of one of ``logger``'s handlers, or of an object a handler holds
    (a stream, a sink)."""
    files = set()
    for handler in _handlers(logger):
        for obj in (handler, *vars(handler).values()):
            module = sys.modules.get(type(obj).__module__)
            path = getattr(module, "__file__", None)
            if path and type(obj).__module__ not in ("builtins", __name__):
                files.add(path)
    package = os.path.dirname(logging.__file__) + os.sep
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(package) or name in files:
            return True
        frame = frame.f_back
    return False


def _thread_names() -> dict[int, str]:
    """Thread ident to name, read without threading's locks (a signal handler may
    have interrupted a thread that holds them)."""
    names = {}
    for ident, thread in list(getattr(threading, "_active", {}).items()):
        names[ident] = getattr(thread, "name", str(ident))
    return names


def _signal_name(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"
