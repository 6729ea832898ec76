"""A program with a stack-dump handler, for test_dump.py; configured by one JSON argument.

It logs to the file "log" (a plain logging.FileHandler, message only),
installs the handler labelled "test worker 7", registers a source "things",
starts a thread named "helper", writes its pid to "ready" and then, by
"mode", until the file "stop" exists (30 s at most):

  sleep       sleeps in blocked_in_a_sleep (time.sleep, 0.2 s at a time)
  spin        spins the CPU in spinning_on_the_cpu
  in_logging  logs one record whose formatting sends the dump signal to the
              process itself (the handler's lock is held), then sleeps
  bad_source  like sleep, with a second source that raises

Then it logs "finished" and exits 0.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

from brim.supervisor.dump import DUMP_SIGNAL, add_dump_source, install_dump_handler

conf = json.loads(sys.argv[1])
STOP = conf["stop"]
DEADLINE = time.monotonic() + 30


def stopped() -> bool:
    return os.path.exists(STOP) or time.monotonic() > DEADLINE


class SignallingFormatter(logging.Formatter):
    """Sends the dump signal to this process while a record is being formatted."""

    sent = False

    def format(self, record: logging.LogRecord) -> str:
        if not SignallingFormatter.sent:
            SignallingFormatter.sent = True
            os.kill(os.getpid(), DUMP_SIGNAL)
        return super().format(record)


def helper_waits_on_an_event(event: threading.Event) -> None:
    event.wait(60)


def blocked_in_a_sleep() -> None:
    while not stopped():
        time.sleep(0.2)


def spinning_on_the_cpu() -> None:
    n = 0
    while True:
        n += 1
        if n % 100000 == 0 and stopped():
            return


def main() -> None:
    handler = logging.FileHandler(conf["log"])
    if conf["mode"] == "in_logging":
        handler.setFormatter(SignallingFormatter())
    log = logging.getLogger("dumping")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    install_dump_handler(log, "test worker 7")
    add_dump_source("things", lambda: ["first thing", "second thing"])
    if conf["mode"] == "bad_source":
        def bad() -> list[str]:
            raise ValueError("no luck")
        add_dump_source("broken", bad)
    event = threading.Event()
    threading.Thread(target=helper_waits_on_an_event, args=(event,), name="helper",
                     daemon=True).start()
    with open(conf["ready"] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(conf["ready"] + ".tmp", conf["ready"])
    if conf["mode"] == "spin":
        spinning_on_the_cpu()
    else:
        if conf["mode"] == "in_logging":
            log.info("record that carries the signal")
        blocked_in_a_sleep()
    event.set()
    log.info("finished")


if __name__ == "__main__":
    main()
