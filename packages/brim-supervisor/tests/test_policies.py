"""The master's policies, one at a time, on real child processes.

Each policy (start check, replaced workers, hang check, recycling, scaling,
reaping) works on a :class:`~brim.supervisor.pool.Pool`; here the pool's
workers are real processes of this test (``sleep``), so every signal and
kill a policy decides on really happens, and what it did is read back from
the process's exit status. Whole supervisors are tested in
test_supervisor.py and test_lifecycle.py.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from brim.supervisor import Recycling
from brim.supervisor.hangs import HangCheck
from brim.supervisor.heartbeat import HeartbeatSlot
from brim.supervisor.pool import Child, Group, Pool, Slot
from brim.supervisor.reaping import Reaper
from brim.supervisor.recycling import Recycler
from brim.supervisor.scaling import Scaling
from brim.supervisor.startcheck import Failed, ReplacedWorkers, StartCheck

LOG = logging.getLogger("test.policies")


class Workers:
    """A pool whose workers are ``sleep`` processes this test started (and kills)."""

    def __init__(self, start_check: float = 0.2, grace: float = 5.0) -> None:
        self.pool = Pool("test", LOG, grace, start_check)
        self.procs: dict[int, subprocess.Popen] = {}

    def group(self, name: str, workers: int, *, timeout: float | None = None,
              recycling: Recycling | None = None, max_workers: int | None = None) -> Group:
        group = Group(name, workers, lambda ctx: 0, "{group} worker {id}", timeout,
                      recycling or Recycling(), False, max_workers)
        self.pool.groups[name] = group
        for worker_id in range(workers):
            slot = Slot(group, worker_id)
            self.pool.slots[(name, worker_id)] = slot
            self.spawn(slot)
        return group

    def spawn(self, slot: Slot) -> None:
        # Under nohup (or any runner that ignores SIGHUP) the child would
        # inherit the ignore and outlive the SIGHUP that retires it: it is
        # started with the default disposition.
        ignored = signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        if ignored:
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
        try:
            proc = subprocess.Popen(["sleep", "60"])
        finally:
            if ignored:
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.procs[proc.pid] = proc
        slot.pid = proc.pid
        self.pool.children[proc.pid] = Child(proc.pid, slot.group.name, slot.worker_id,
                                             HeartbeatSlot(), time.monotonic())

    def child(self, group: str, worker_id: int) -> Child:
        slot = self.pool.slots[(group, worker_id)]
        child = self.pool.worker_of(slot)
        assert child is not None
        return child

    def end_of(self, child: Child) -> int:
        """How the process ended: minus the signal that ended it (waits for it)."""
        return self.procs[child.pid].wait(10)

    def still_running(self, child: Child) -> bool:
        return self.procs[child.pid].poll() is None

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def workers() -> Iterator[Workers]:
    made = Workers()
    yield made
    made.close()


def test_start_check_passes_once_every_worker_stayed_up(workers):
    workers.group("web", 2)
    check = StartCheck(workers.pool)
    assert check.tick(time.monotonic()) is False  # none runs
    check.begin()
    now = time.monotonic()
    assert workers.pool.up_counts() == {"web": (2, 2)}  # both seen up (no announcement)
    assert check.tick(now) is False  # up, but not for start_check seconds yet
    assert check.tick(now + 0.3) is True
    assert not check.running
    assert check.tick(now + 0.6) is False  # one verdict per check


def test_start_check_fails_with_the_first_exit_and_its_error(workers):
    workers.group("web", 2)
    check = StartCheck(workers.pool)
    check.begin()
    first, second = workers.child("web", 0), workers.child("web", 1)
    first.last_error = "Traceback ...\nRuntimeError: no database"
    check.note_exit(first, "exit code 1")
    check.note_exit(second, "exit code 2")
    assert check.tick(time.monotonic() + 1) == Failed("web", 0, first.last_error)
    assert not check.running
    # Without a reported error, how it exited.
    check.begin()
    check.note_exit(second, "signal SIGKILL")
    assert check.tick(time.monotonic()) == Failed("web", 1,
                                                  "worker web 1 exited with signal SIGKILL")


def test_replaced_workers_drain_only_once_their_replacements_stayed_up(workers):
    workers.group("web", 1)
    old = workers.child("web", 0)
    old.standby = True
    # The reload's new worker under the same slot.
    workers.spawn(workers.pool.slots[("web", 0)])
    replaced = ReplacedWorkers(workers.pool)
    replaced.tick(time.monotonic())
    assert not old.retired and workers.still_running(old)
    replaced.tick(time.monotonic() + 0.3)
    assert old.retired and old.kill_at is not None
    assert workers.end_of(old) == -signal.SIGHUP  # the drain request
    assert workers.still_running(workers.child("web", 0))


def test_replaced_workers_of_a_removed_group_drain_at_once_unless_held(workers):
    workers.group("gone", 1)
    workers.group("kept", 1)
    gone, kept = workers.child("gone", 0), workers.child("kept", 0)
    for child in (gone, kept):
        child.standby = True
    kept.held = True
    workers.pool.groups.clear()
    workers.pool.slots.clear()
    ReplacedWorkers(workers.pool).tick(time.monotonic())
    assert gone.retired and workers.end_of(gone) == -signal.SIGHUP
    assert not kept.retired and workers.still_running(kept)


def test_hang_check_asks_for_a_dump_then_kills(workers):
    workers.group("web", 1, timeout=0.5)
    hung = workers.child("web", 0)
    hangs = HangCheck(workers.pool, signal.SIGUSR2, dump_wait=1.0)
    now = time.monotonic()
    hangs.tick(now)  # it beat just now
    assert hung.dump_at is None and not hung.killed
    hangs.tick(now + 1.0)
    assert hung.dump_at == now + 1.0 and not hung.killed
    assert workers.end_of(hung) == -signal.SIGUSR2  # sleep has no handler: it ends
    hangs.tick(now + 1.5)
    assert not hung.killed  # dump_wait not over
    hangs.tick(now + 2.1)
    assert hung.killed
    assert hangs.next_wake(now) == pytest.approx(now + 0.5 / 4)


def test_hang_check_kills_a_draining_worker_after_grace(workers):
    workers.group("web", 1)
    draining = workers.child("web", 0)
    workers.pool.retire(draining)
    hangs = HangCheck(workers.pool, None, 1.0)
    assert draining.kill_at is not None
    assert workers.end_of(draining) == -signal.SIGHUP
    hangs.tick(draining.kill_at - 0.1)
    assert not draining.killed
    hangs.tick(draining.kill_at)
    assert draining.killed


def test_hang_check_leaves_adopted_workers_alone(workers):
    workers.group("web", 1, timeout=0.5)
    adopted = workers.child("web", 0)
    adopted.adopted = True
    HangCheck(workers.pool, signal.SIGUSR2, 1.0).tick(time.monotonic() + 10)
    assert adopted.dump_at is None and workers.still_running(adopted)


def test_recycler_starts_the_replacement_first_and_retires_the_old_one_once_it_is_up(workers):
    workers.group("web", 2, recycling=Recycling(max_lifetime=5.0))
    recycled: list[tuple[str, int, int, str]] = []
    recycler = Recycler(workers.pool, workers.spawn,
                        lambda *args: recycled.append(args), restart_delay=0.5)
    first, second = workers.child("web", 0), workers.child("web", 1)
    second.started = time.monotonic() - 2  # younger: not due yet
    first.started = time.monotonic() - 6
    assert not recycler.busy
    recycler.tick(time.monotonic())
    assert first.recycle == "max_worker_lifetime 5s reached" and second.recycle is None
    replacement = workers.child("web", 0)
    assert replacement is not first and first.replacement == replacement.pid
    assert recycled == [("web", 0, first.pid, "max_worker_lifetime 5s reached")]
    assert recycler.busy and workers.still_running(first)
    recycler.tick(time.monotonic())  # the replacement is up (no ready announcement)
    assert first.retired and workers.end_of(first) == -signal.SIGHUP


def test_recycler_takes_a_workers_own_request_and_keeps_to_its_concurrency(workers):
    workers.group("web", 2)  # concurrency 1
    recycler = Recycler(workers.pool, workers.spawn, lambda *args: None, restart_delay=0.5)
    first, second = workers.child("web", 0), workers.child("web", 1)
    recycler.want(first, "max_requests: served 100")
    recycler.want(second, "max_requests: served 100")
    recycler.want(first, "asked twice")  # the first reason stays
    first.up_at = second.up_at = None
    recycler.tick(time.monotonic())
    started = [c for c in (first, second) if c.replacement is not None]
    assert len(started) == 1 and started[0].recycle == "max_requests: served 100"


def test_scaling_adds_up_to_max_workers_and_drains_the_highest_id(workers):
    group = workers.group("web", 2, max_workers=3)
    woken: list[bool] = []
    scaling = Scaling(workers.pool, lambda: woken.append(True))
    assert scaling.add_worker("web") and group.workers == 3 and woken
    assert ("web", 2) in workers.pool.slots
    assert not scaling.add_worker("web")  # at max_workers
    workers.spawn(workers.pool.slots[("web", 2)])
    third = workers.child("web", 2)
    assert scaling.remove_worker("web") and group.workers == 2
    assert ("web", 2) not in workers.pool.slots
    assert third.retired and workers.end_of(third) == -signal.SIGHUP
    assert scaling.remove_worker("web") and not scaling.remove_worker("web")  # one is left


def _reaper(workers: Workers, check: StartCheck, exits: list) -> Reaper:
    return Reaper(workers.pool, check, restart_delay=0.5, restart_delay_max=4.0,
                  stable_after=1.0, reap_orphans=False,
                  on_child_exit=lambda *args: exits.append(args), status_changed=lambda: None)


def _wait_reaped(reaper: Reaper, workers: Workers, pid: int) -> None:
    deadline = time.monotonic() + 10
    while pid in workers.pool.children:
        assert time.monotonic() < deadline, "not reaped"
        reaper.reap(stopping=False)
        time.sleep(0.02)


def test_reaper_restarts_a_dead_worker_with_growing_back_off(workers):
    workers.group("web", 1)
    exits: list = []
    check = StartCheck(workers.pool)
    check.begin()
    reaper = _reaper(workers, check, exits)
    slot = workers.pool.slots[("web", 0)]
    delays = []
    for _ in range(4):
        child = workers.child("web", 0)
        workers.procs.pop(child.pid).kill()  # the reaper waits for it, not Popen
        _wait_reaped(reaper, workers, child.pid)
        assert slot.pid is None
        delays.append(round(slot.next_start - time.monotonic(), 1))
        workers.spawn(slot)
    # At once, then restart_delay doubled per early death.
    assert delays == [0.0, 0.5, 1.0, 2.0]
    assert exits[0][:3] == ("web", 0, exits[0][2]) and os.WTERMSIG(exits[0][3]) == 9
    assert check.tick(time.monotonic()) == Failed("web", 0, "worker web 0 exited with signal "
                                                            "SIGKILL")


def test_reaper_gives_the_slot_back_when_a_replacement_dies_before_it_is_up(workers):
    workers.group("web", 1)
    reaper = _reaper(workers, StartCheck(workers.pool), [])
    old = workers.child("web", 0)
    slot = workers.pool.slots[("web", 0)]
    workers.spawn(slot)  # the recycle's replacement
    new = workers.child("web", 0)
    old.replacement = new.pid
    workers.procs.pop(new.pid).kill()
    _wait_reaped(reaper, workers, new.pid)
    assert slot.pid == old.pid and old.replacement is None
    assert old.recycle_after > time.monotonic()
    assert workers.still_running(old)


def test_reaper_hands_the_hook_a_killed_workers_notes_and_that_it_was_killed(workers):
    workers.group("web", 1)
    child = workers.child("web", 0)
    child.heartbeat.close()
    child.heartbeat = HeartbeatSlot(notes_size=64)  # as the spawner makes it for notes_size
    assert child.heartbeat.notes is not None
    child.heartbeat.notes[:5] = b"noted"  # what the worker wrote before it died
    seen: list = []
    check = StartCheck(workers.pool)
    reaper = Reaper(workers.pool, check, restart_delay=0.5, restart_delay_max=4.0,
                    stable_after=1.0, reap_orphans=False, status_changed=lambda: None,
                    on_child_exit=lambda *args: seen.append(
                        (reaper.exit_cause, reaper.exit_killed, reaper.exit_notes)))
    workers.pool.kill(child, "%s: killing %s %d (pid %d)")
    workers.procs.pop(child.pid).wait(10)
    _wait_reaped(reaper, workers, child.pid)
    assert seen == [("crash", True, b"noted" + bytes(59))]
    assert reaper.exit_notes == b"" and child.heartbeat.notes is None  # copied, then unmapped
