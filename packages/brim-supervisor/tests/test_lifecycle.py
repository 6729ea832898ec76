"""The master's start check, recycling, scaling, hung-worker dumps and orphan reaping.

Real processes and real signals: progs/supervised.py runs a Supervisor and
its workers record what happens to them as events.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest
from supervisor_testlib import alive, proc_state, wait_for

pytestmark = pytest.mark.timeout(60)


def test_ready_is_called_once_every_worker_stayed_up_for_start_check(run_prog):
    run = run_prog(groups={"a": 2, "b": 1}, start_check=0.5, ready_delay=0.3)
    began = time.time()
    ready = wait_for(lambda: run.events("ready"), 5.0, "the ready event")
    starts = run.events("start")
    # Up means "called ctx.ready()" (after ready_delay), then start_check more.
    assert ready[0]["t"] - max(ev["t"] for ev in starts) >= 0.3 + 0.5 - 0.05
    assert ready[0]["t"] - began < 4.0
    assert ready[0]["status"] == "a 2/2, b 1/1"
    assert not run.events("start_failed")


def test_a_worker_failing_at_start_reports_its_traceback(run_prog):
    run = run_prog(groups={"ok": 1, "bad": 1}, modes={"ok": "sleep", "bad": "fail_init"},
                   start_check=1.0)
    failed = wait_for(lambda: run.events("start_failed"), 5.0, "start_failed")
    assert failed[0]["group"] == "bad" and failed[0]["id"] == 0
    assert "ValueError: cannot start: bad setting" in failed[0]["error"]
    assert "Traceback (most recent call last)" in failed[0]["error"]
    assert not run.events("ready")


def test_a_worker_asking_for_it_is_replaced_before_it_drains(run_prog):
    run = run_prog(groups={"w": 2}, modes={"w": "recycle"}, recycle_after=0.3)
    first = run.wait_workers(2)
    recycles = wait_for(lambda: len(r := run.events("recycle")) >= 4 and r, 10.0,
                        "four recycles")
    assert {ev["reason"] for ev in recycles} == {"asked by the test"}
    old = first[("w", 0)]
    # The old worker drained only after its replacement under the same id was up.
    drained = wait_for(lambda: run.events("drained", pid=old), 5.0, "old worker drained")
    replacement = next(ev for ev in run.events("start", group="w", id=0) if ev["pid"] != old)
    assert replacement["t"] < drained[0]["t"]
    assert "recycled (asked by the test): pid" in run.log()
    run.wait_workers(2)


def test_recycles_of_one_group_run_one_at_a_time(run_prog):
    run = run_prog(groups={"w": 4}, modes={"w": "recycle"}, recycle_after=0.1,
                   drain_delay=0.4)
    run.wait_workers(4)
    wait_for(lambda: len(run.events("recycle")) >= 4, 15.0, "four recycles")
    # While a recycled worker is still draining, no other recycle starts.
    drains = {ev["pid"]: ev["t"] for ev in run.events("drained")}
    recycles = run.events("recycle")
    for earlier, later in itertools.pairwise(recycles):
        if earlier["child"] in drains:
            assert later["t"] >= drains[earlier["child"]] - 0.05, (earlier, later)


@pytest.mark.slow
def test_max_rss_recycles_a_leaking_worker(run_prog):
    run = run_prog(groups={"w": 1}, modes={"w": "leak"},
                   recycling={"w": {"max_rss": 150 * 2**20}})
    first = run.wait_workers(1)[("w", 0)]
    recycled = wait_for(lambda: run.events("recycle"), 20.0, "an RSS recycle")
    assert recycled[0]["child"] == first
    assert recycled[0]["reason"].startswith("max_worker_rss: RSS ")
    wait_for(lambda: not alive(first), 5.0, "the leaking worker gone")


@pytest.mark.slow
def test_max_lifetime_recycles(run_prog):
    run = run_prog(groups={"w": 1}, recycling={"w": {"max_lifetime": 0.5}})
    run.wait_workers(1)
    recycled = wait_for(lambda: len(r := run.events("recycle")) >= 2 and r, 10.0,
                        "two lifetime recycles")
    assert recycled[0]["reason"] == "max_worker_lifetime 0.5s reached"


def test_ttin_and_ttou_change_the_worker_count_within_limits(run_prog):
    run = run_prog(groups={"w": 2, "fixed": 1}, max_workers={"w": 3})
    run.wait_workers(3)
    run.proc.send_signal(signal.SIGTTIN)
    workers = run.wait_workers(4)
    assert ("w", 2) in workers
    run.proc.send_signal(signal.SIGTTIN)  # already at max_workers
    time.sleep(0.5)
    assert len(run.current_workers()) == 4
    for _ in range(3):
        run.proc.send_signal(signal.SIGTTOU)
        time.sleep(0.3)
    workers = run.wait_workers(2)  # w never goes below one, fixed is untouched
    assert set(workers) == {("w", 0), ("fixed", 0)}
    assert "unchanged (limits 1..3)" in run.log()


def test_a_hung_worker_gets_the_dump_signal_before_the_kill(run_prog):
    run = run_prog(groups={"h": 1}, modes={"h": "dump"}, timeout=0.5, dump_wait=0.5)
    first = run.wait_workers(1)[("h", 0)]
    dump = wait_for(lambda: run.events("dump", pid=first), 10.0, "the dump")
    assert dump[0]["function"] in ("stuck_in_a_loop", "sleep")
    wait_for(lambda: not alive(first), 5.0, "the hung worker killed")
    log = run.log()
    assert log.index("asked it for a stack dump (SIGUSR2)") < log.index("killing it\n")
    assert [p for k, p in run.wait_workers(1).items()] != [first]


def test_orphans_are_reaped_when_asked(run_prog):
    run = run_prog(groups={"o": 1}, modes={"o": "orphan"}, reap_orphans=True)
    orphan = wait_for(lambda: run.events("orphan"), 5.0, "the grandchild")[0]["child"]
    worker = run.wait_workers(1)[("o", 0)]
    # The worker never waits for its child; when it exits the master, as a
    # subreaper, adopts and reaps it: no zombie is left.
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: proc_state(orphan) is None, 5.0, "the orphan reaped")
    wait_for(lambda: "reaped orphaned process" in run.log(), 5.0, "the reap logged")


def test_a_reload_keeps_the_old_workers_until_the_new_ones_are_up(run_prog):
    run = run_prog(groups={"w": 2}, modes={"w": "drain"},
                   reload_modes=["fail_init", "sleep"], start_check=0.3)
    old = run.wait_workers(2)
    wait_for(lambda: run.events("ready"), 5.0, "the first start check")
    run.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: run.events("start_failed"), 5.0, "the reload's check failing")
    time.sleep(1.0)  # the new workers keep failing, with back-off
    assert all(alive(pid) for pid in old.values())  # the old ones serve on
    assert not run.events("drained")
    # A reload that works retires them once its workers are up.
    run.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: len(run.events("ready")) >= 2, 10.0, "the second start check")
    wait_for(lambda: not any(alive(pid) for pid in old.values()), 5.0, "old workers drained")
    assert {ev["pid"] for ev in run.events("drained")} >= set(old.values())
