"""The green engine's yield (``sleep(0)``), on a real eventlet hub in this process.

brim schedules the yield itself (``brim.wsgi.green.sleep``) rather than
through eventlet's general timer, since a worker yields once per keep-alive
request. These tests hold it to what eventlet's yield promised: ready green
threads take turns, a thread woken some other way is never resumed later by
a stale yield, and the hub itself may call it.
"""

from __future__ import annotations

import time

import pytest

from brim.wsgi import green

pytestmark = pytest.mark.timeout(30)


def test_yielding_green_threads_take_turns() -> None:
    turns: list[str] = []

    def take(name: str) -> None:
        for _ in range(3):
            turns.append(name)
            green.sleep(0)

    threads = [green.spawn(take, name) for name in ("a", "b", "c")]
    for thread in threads:
        thread.wait()
    assert turns == ["a", "b", "c"] * 3


def test_a_thread_killed_while_it_yields_is_not_resumed_later_by_that_yield() -> None:
    """The yield's timer is cancelled when the thread is woken otherwise.

    Were it left, it would fire at the next hub pass and resume the thread
    wherever it then waits: here, an event that was never sent would seem
    to be, with None.
    """
    event = green.Event()
    got: list[object] = []
    started = []

    def victim() -> None:
        started.append(True)
        try:
            green.sleep(0)
        except green.GreenletExit:
            got.append(event.wait())

    thread = green.spawn(victim)
    green.sleep(0)  # the victim runs up to its yield
    assert started == [True]
    green.kill(thread)  # it catches the kill and waits on the event
    for _ in range(5):
        green.sleep(0)  # hub passes, where a stale yield would fire
    assert got == []
    event.send("sent")
    thread.wait()
    assert got == ["sent"]


def test_a_yield_from_the_hub_itself_returns_at_once() -> None:
    """A timer's callback runs in the hub, where there is nothing to yield to."""
    ran: list[str] = []

    def in_hub() -> None:
        green.sleep(0)
        ran.append("hub")

    from eventlet import hubs

    hubs.get_hub().schedule_call_global(0, in_hub)
    green.sleep(0)
    assert ran == ["hub"]


def test_a_sleep_of_some_seconds_still_waits_them() -> None:
    started = time.monotonic()
    green.sleep(0.05)
    assert time.monotonic() - started >= 0.05


def test_a_green_thread_with_a_switch_out_hook_still_has_it_called_when_it_yields() -> None:
    """Threads brim does not spawn may carry the hook eventlet's hub calls as they
    switch out (its backdoor's console does); a yield goes through the hub for them."""
    import greenlet
    from eventlet import hubs

    calls: list[str] = []

    class Hooked(greenlet.greenlet):
        def switch_out(self) -> None:
            calls.append("out")

    def run() -> None:
        green.sleep(0)
        calls.append("resumed")

    hub = hubs.get_hub()
    hooked = Hooked(run, parent=hub.greenlet)
    hub.schedule_call_global(0, hooked.switch)
    for _ in range(3):
        green.sleep(0)
    assert calls == ["out", "resumed"]
    assert hooked.dead
