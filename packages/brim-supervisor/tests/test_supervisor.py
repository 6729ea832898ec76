"""The master loop, tested with real processes and real signals."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from supervisor_testlib import Run, alive, children_of, proc_state, wait_for

from brim.supervisor import PidFile, fetch_sockets


def test_killed_worker_is_replaced_under_the_same_id_within_a_second(run_prog):
    run = run_prog(groups={"w": 3})
    workers = run.wait_workers(3)
    victim = workers[("w", 1)]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    new = wait_for(
        lambda: (p := run.current_workers().get(("w", 1))) and p != victim and p,
        1.0,
        "worker w 1 replaced",
    )
    assert time.monotonic() - killed_at < 1.0
    assert new in children_of(run.master_pid)
    # The other ids kept their processes.
    now = run.wait_workers(3)
    assert now[("w", 0)] == workers[("w", 0)]
    assert now[("w", 2)] == workers[("w", 2)]
    wait_for(lambda: f"pid {victim}) exited unexpectedly with signal SIGKILL" in run.log(),
             2.0, "the death logged")


def test_worker_that_keeps_crashing_is_restarted_with_growing_capped_delays(run_prog):
    run = run_prog(groups={"c": 1}, modes={"c": "crash"},
                   restart_delay=0.1, restart_delay_max=0.4, stable_after=5.0)
    starts = wait_for(lambda: len(s := run.events("start")) >= 7 and s, 8.0, "7 starts")
    times = [ev["t"] for ev in starts[:7]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Expected delays: 0, 0.1, 0.2, 0.4, 0.4 (capped), 0.4.
    assert gaps[0] < 0.09, gaps
    assert 0.08 < gaps[1] < gaps[2] < gaps[3], gaps
    assert gaps[2] > 1.5 * gaps[1] and gaps[3] > 1.5 * gaps[2], gaps
    assert all(0.35 < g < 0.7 for g in gaps[3:6]), gaps
    assert all(ev["id"] == 0 for ev in starts)
    assert "exited unexpectedly with exit code 3; restarting in 0.40s" in run.log()


def test_term_stops_every_worker_and_leaves_no_child(run_prog):
    run = run_prog(groups={"a": 3, "b": 1})
    pids = list(run.wait_workers(4).values())
    assert sorted(children_of(run.master_pid)) == sorted(pids)
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=5) == 0
    assert children_of(run.master_pid) == []
    assert not [p for p in pids if proc_state(p) is not None], "old workers still exist"
    assert run.events("master_exit")


def test_term_kills_a_worker_that_ignores_it_after_the_grace_period(run_prog):
    run = run_prog(groups={"s": 2}, modes={"s": "ignore_term"}, grace=0.5)
    pids = list(run.wait_workers(2).values())
    time.sleep(0.2)  # let the workers install their SIG_IGN
    started = time.monotonic()
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=5) == 0
    assert 0.4 < time.monotonic() - started < 3.0
    assert not [p for p in pids if proc_state(p) is not None]
    assert "did not stop within the grace period" in run.log()


@pytest.mark.slow
def test_hung_worker_is_killed_and_replaced(run_prog):
    run = run_prog(groups={"h": 1, "ok": 1}, modes={"h": "hang", "ok": "sleep"}, timeout=0.4)
    wait_for(lambda: len(run.events("start", group="h")) >= 3, 6.0, "hung worker restarted")
    assert "worker h 0" in run.log() and "hung: no heartbeat" in run.log()
    # The worker that heartbeats was never replaced.
    assert len(run.events("start", group="ok")) == 1
    assert not [ln for ln in run.log().splitlines() if "worker ok 0" in ln and "hung" in ln]


def test_hup_replaces_every_worker_gracefully(run_prog):
    run = run_prog(groups={"d": 3}, modes={"d": "drain"}, drain_delay=0.3)
    old = run.wait_workers(3)
    run.proc.send_signal(signal.SIGHUP)
    new = wait_for(
        lambda: (w := run.current_workers()) and not set(w.values()) & set(old.values())
        and len(w) == 3 and w,
        5.0,
        "three new workers",
    )
    assert set(new) == set(old)  # same ids
    drained = wait_for(lambda: len(e := run.events("drained")) == 3 and e, 5.0, "old drained")
    assert {ev["pid"] for ev in drained} == set(old.values())
    wait_for(lambda: not any(alive(p) for p in old.values()), 3.0, "old workers gone")
    assert sorted(children_of(run.master_pid)) == sorted(new.values())
    assert run.proc.poll() is None


def test_quit_returns_at_once_while_workers_finish(run_prog):
    run = run_prog(groups={"d": 2}, modes={"d": "drain"}, drain_delay=1.0, listen=True)
    pids = list(run.wait_workers(2).values())
    sent = time.monotonic()
    run.proc.send_signal(signal.SIGQUIT)
    assert run.proc.wait(timeout=5) == 0
    assert time.monotonic() - sent < 0.8, "master waited for the workers"
    assert not run.events("drained")  # still finishing their work
    drained = wait_for(lambda: len(e := run.events("drained")) == 2 and e, 5.0, "drained")
    assert {ev["pid"] for ev in drained} == set(pids)
    wait_for(lambda: not any(alive(p) for p in pids), 3.0, "workers exited")


def test_workers_exit_when_the_master_is_killed(run_prog):
    run = run_prog(groups={"w": 2})
    pids = list(run.wait_workers(2).values())
    run.proc.kill()
    run.proc.wait(timeout=5)
    wait_for(lambda: not any(alive(p) for p in pids), 3.0, "orphaned workers exit")


def test_worker_starts_with_default_signal_dispositions(run_prog):
    run = run_prog(groups={"r": 1}, modes={"r": "report"})
    report = wait_for(lambda: run.events("report"), 5.0, "report")[0]
    assert report["signals"] == {
        "SIGTERM": "default", "SIGHUP": "default", "SIGQUIT": "default",
        "SIGINT": "ignore", "SIGCHLD": "default",
    }
    assert report["blocked"] == []
    assert report["wakeup_fd"] == -1
    assert run.events("start")[0]["ppid"] == run.master_pid


def test_output_and_uncaught_exceptions_go_to_the_logger(run_prog):
    run = run_prog(groups={"p": 1}, modes={"p": "print"}, capture_output=True,
                   restart_delay=5.0)
    log = wait_for(lambda: "RuntimeError: boom" in (t := run.log()) and t, 5.0, "traceback")
    assert "INFO stdout: hello from worker 0" in log
    assert "worker p 0 (pid" in log and "crashed" in log


def test_worker_ids_are_per_group_and_titles_are_set(run_prog):
    run = run_prog(groups={"wsgi": 2, "daemon:sample": 1}, name="brimt")
    workers = run.wait_workers(3)
    assert set(workers) == {("wsgi", 0), ("wsgi", 1), ("daemon:sample", 0)}
    pytest.importorskip("setproctitle")
    cmd = Path(f"/proc/{workers[('wsgi', 1)]}/cmdline").read_bytes()
    assert cmd.rstrip(b"\0") == b"brimt: wsgi worker 1"
    cmd = Path(f"/proc/{run.master_pid}/cmdline").read_bytes()
    assert cmd.rstrip(b"\0") == b"brimt: master"


def test_listening_socket_is_handed_over_and_survives_the_old_master(run_prog, tmp_path):
    path = str(tmp_path / "handover.sock")
    run = run_prog(groups={"d": 2}, modes={"d": "drain"}, listen=True, handover_path=path)
    run.wait_workers(2)
    port = wait_for(lambda: run.events("listening"), 5.0, "listening")[0]["port"]
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    got = fetch_sockets(path, timeout=5.0)
    try:
        assert list(got) == ["tcp"]
        assert got["tcp"].getsockname() == ("127.0.0.1", port)
        # A client that connects now waits in the shared backlog ...
        early = socket.create_connection(("127.0.0.1", port), timeout=5)
        run.proc.send_signal(signal.SIGQUIT)
        assert run.proc.wait(timeout=5) == 0
        wait_for(lambda: len(run.events("drained")) == 2, 5.0, "old workers drained")
        assert not os.path.exists(path)
        # ... and is accepted by the new holder after the old one is gone.
        got["tcp"].settimeout(5)
        conn, _ = got["tcp"].accept()
        early.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
        early.close()
        late = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn, _ = got["tcp"].accept()
        conn.close()
        late.close()
    finally:
        for sock in got.values():
            sock.close()


def test_hooks_and_changing_groups_while_running(run_prog):
    run = run_prog(groups={"d": 2}, modes={"d": "drain", "extra": "sleep"}, hooks=True)
    old = run.wait_workers(2)
    # The workers can be up before the master, back from forking them, ran on_started.
    started = wait_for(lambda: run.events("started"), 5.0, "on_started called")
    assert [ev["workers"] for ev in started] == [2]
    assert len(run.events("after_fork", group="d")) == 2
    run.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: run.events("reloaded"), 5.0, "on_reload called")
    extra = wait_for(
        lambda: (w := run.current_workers()) and set(w) == {("extra", 0), ("extra", 1)} and w,
        5.0, "only the extra group left",
    )
    exits = wait_for(lambda: len(e := run.events("child_exit")) == 2 and e, 5.0, "exit hooks")
    assert {ev["child"] for ev in exits} == set(old.values())
    assert all(ev["status"] == 0 for ev in exits), (exits, run.log())  # drained, exited 0
    assert sorted(children_of(run.master_pid)) == sorted(extra.values())
    # The removed group is not restarted.
    time.sleep(0.3)
    assert len(run.events("start", group="d")) == 2


def test_second_term_skips_the_grace_period(run_prog):
    run = run_prog(groups={"s": 1}, modes={"s": "ignore_term"}, grace=30.0)
    pid = run.wait_workers(1)[("s", 0)]
    time.sleep(0.2)
    run.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert run.proc.poll() is None and alive(pid)  # waiting out the grace
    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(timeout=3) == 0
    assert proc_state(pid) is None


def test_restart_by_hand_over_refuses_no_connection(run_prog, tmp_path):
    path = str(tmp_path / "handover.sock")
    old = run_prog(groups={"s": 2}, modes={"s": "serve"}, listen=True, handover_path=path)
    old.wait_workers(2)
    port = wait_for(lambda: old.events("listening"), 5.0, "listening")[0]["port"]

    answers: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        deadline = time.monotonic() + 20  # bounded in time and count
        while not stop.is_set() and time.monotonic() < deadline and len(answers) < 20000:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    answers.append(int(c.makefile().readline()))
            except (OSError, ValueError) as err:
                errors.append(repr(err))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        wait_for(lambda: old.master_pid in answers, 5.0, "answers from the old master")
        (tmp_path / "new").mkdir()
        conf = {"groups": {"s": 2}, "modes": {"s": "serve"}, "inherit": path,
                "handover_path": path}
        new = Run(tmp_path / "new", conf)
        try:
            new.wait_workers(2)
            wait_for(lambda: new.master_pid in answers, 5.0, "answers from the new master")
            old.proc.send_signal(signal.SIGQUIT)
            assert old.proc.wait(timeout=5) == 0
            wait_for(lambda: len(old.events("drained")) == 2, 5.0, "old workers drained")
            wait_for(lambda: not children_of(old.master_pid), 3.0, "old workers gone")
            count = len(answers)
            wait_for(lambda: len(answers) > count + 50, 5.0, "answers after the old left")
            assert answers[-1] == new.master_pid
            assert os.path.exists(path)  # the old master left the new one's socket
            again = fetch_sockets(path, timeout=5)["tcp"]
            assert again.getsockname()[1] == port
            again.close()
        finally:
            stop.set()
            thread.join(10)
            new.kill_all()
    finally:
        stop.set()
    assert errors == []
    assert set(answers) == {old.master_pid, new.master_pid}


def test_daemonized_master_captures_worker_output_by_default(run_prog, tmp_path):
    pidfile = tmp_path / "d.pid"
    run = run_prog(groups={"p": 1, "w": 2}, modes={"p": "print", "w": "sleep"},
                   daemonize=True, pidfile=str(pidfile), restart_delay=5.0)
    assert run.proc.wait(timeout=10) == 0  # the launching process returns at once
    master = wait_for(lambda: run.events("master"), 5.0, "daemon master")[0]["pid"]
    assert master != run.proc.pid
    wait_for(lambda: PidFile(pidfile).read() == master, 5.0, "pid file")
    log = wait_for(lambda: "RuntimeError: boom" in (t := run.log()) and t, 5.0, "traceback")
    assert "INFO stdout: hello from worker 0" in log
    workers = [ev["pid"] for ev in run.events("start")]
    os.kill(master, signal.SIGTERM)
    wait_for(lambda: not alive(master), 5.0, "daemon master exit")
    wait_for(lambda: not any(alive(p) for p in workers), 3.0, "workers gone")
    assert not pidfile.exists()
