"""brimd's commands as a user runs them: start, status, stop, restart,
shutdown, reload, no-daemon and foreground, and bad confs refused."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from brimd_harness import (
    alive,
    curl,
    echo_stats_conf,
    free_port,
    get_json,
    process_tree,
    wait_for,
)

ECHO = echo_stats_conf(workers=2)



@pytest.mark.slow
def test_start_status_stop_leaves_nothing(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    assert brimd.run("status").returncode == 3
    master = brimd.start()
    wait_for(lambda: len(brimd.workers("wsgi")) == 2, what="two workers")
    tree = process_tree(master)
    status = brimd.run("status")
    assert status.returncode == 0 and f"running (pid {master})" in status.stdout
    again = brimd.run("start")
    assert again.returncode == 0 and "already running" in again.stderr
    assert brimd.run("stop").returncode == 0
    assert not any(alive(pid) for pid in tree)
    assert brimd.run("status").returncode == 3
    assert not brimd.pid_file.exists()


@pytest.mark.slow
def test_stale_pid_file_does_not_block_start(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    brimd.pid_file.write_text("999999\n")
    assert brimd.run("status").returncode == 1
    brimd.start()
    assert curl("-s", f"http://127.0.0.1:{port}/echo", "-d", "ok").stdout == b"ok"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ("[wsgi]\nport = eighty\napps = a\n", "[wsgi] port: 'eighty' is not an integer (conf0.conf line 2)\n[wsgi] apps: 'a' has no [a] section (conf0.conf line 3)"),
        ("[wsgi]\nprot = 80\n", "[wsgi] prot: unknown option (did you mean 'port'?) (conf0.conf line 2)\n[wsgi] apps: no apps listed; set apps = name1 name2 ... (conf0.conf line 1)"),
        ("[wsgi]\napps = nope\n", "[wsgi] apps: 'nope' has no [nope] section (conf0.conf line 2)"),
        ("[brim]\nworkers = 0\n[wsgi]\napps = e\n[e]\ncall = brim.wsgi_echo.WSGIEcho\n", "[brim] workers: 0 is too small (at least 1) (conf0.conf line 2)"),
        ("[brim]\n", "nothing to run"),
        ("[daemons]\ndaemons = d\n[d]\ncall = no.such.Daemon\n", "[d] call: cannot import 'no.such'"),
    ],
)
def test_bad_conf_is_one_line_a_problem_and_nothing_starts(brimd, conf, message):
    """Every problem of the conf, each on one line, and nothing else."""
    brimd.use(conf)
    brimd.confs = [Path("conf0.conf")]  # relative, as a user in that directory types it
    done = brimd.run("start")
    assert done.returncode == 1
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == len(message.splitlines())
    assert not brimd.pid_file.exists()


def test_port_in_use_is_a_clear_error(brimd):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        brimd.use(ECHO, brimd.local(port=port, listen_retry=0.5))
        done = brimd.run("start")
    assert done.returncode == 1
    assert f"127.0.0.1:{port}" in done.stderr and "in use" in done.stderr


def _loop_requests(port: int, stop: threading.Event, results: dict, keepalive: bool) -> None:
    """POST /echo in a loop, on one keep-alive connection or a new one each time.

    Every outcome is counted: "ok", or the error's repr. A server closing a
    keep-alive connection must say so with ``Connection: close`` on a
    response; a connection that just drops is a failure like any other.
    """
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/echo", body=b"ping")
            response = conn.getresponse()
            body = response.read()
            key = "ok" if response.status == 200 and body == b"ping" else f"bad {response.status}"
            results[key] = results.get(key, 0) + 1
            if response.will_close or not keepalive:
                conn.close()
                conn = None
        except Exception as err:
            results[repr(err)] = results.get(repr(err), 0) + 1
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


@pytest.mark.slow
@pytest.mark.xdist_group("load")  # drives a load flat out: one at a time
def test_restart_under_load_refuses_nothing(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    first = brimd.start()
    stop = threading.Event()
    results: dict[str, dict] = {"new": {}, "keepalive": {}}
    threads = [threading.Thread(target=_loop_requests, args=(port, stop, results[kind],
                                                              kind == "keepalive"))
               for kind in results]
    for thread in threads:
        thread.start()
    try:
        masters = [first]
        for _ in range(3):
            time.sleep(0.5)
            done = brimd.run("restart")
            assert done.returncode == 0, done.stderr
            masters.append(brimd.master_pid())
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert len(set(masters)) == 4
    wait_for(lambda: not any(alive(p) for p in masters[:-1]), what="old masters gone")
    for kind, counts in results.items():
        assert counts.get("ok", 0) > 50, (kind, counts)
        assert set(counts) == {"ok"}, (kind, counts)


@pytest.mark.slow
def test_shutdown_lets_in_flight_requests_finish(brimd):
    port = free_port()
    brimd.write("slowapp.py", """
import time

class Slow(object):
    def __init__(self, name, conf, next_app):
        self.next_app = next_app
    def __call__(self, env, start_response):
        if env['PATH_INFO'] != '/slow':
            return self.next_app(env, start_response)
        time.sleep(0)
        from brim.wsgi import green
        green.sleep(3)
        start_response('200 OK', [('Content-Length', '4')])
        return [b'done']
""")
    brimd.use("[wsgi]\napps = slow\n[slow]\ncall = slowapp.Slow\n", brimd.local(port=port))
    master = brimd.start()
    result = {}

    def slow_request():
        result["curl"] = curl("-s", f"http://127.0.0.1:{port}/slow")

    thread = threading.Thread(target=slow_request)
    thread.start()
    time.sleep(0.5)
    assert brimd.run("shutdown").returncode == 0
    # The master did not wait for the request: it is gone while the request
    # (2.5 s still to go) is in flight. (A bound on the command's own run time
    # would mostly measure Python starting up on a busy machine.)
    assert thread.is_alive() and "curl" not in result
    assert not alive(master)
    thread.join(10)
    assert result["curl"].stdout == b"done"


@pytest.mark.slow
def test_reload_rereads_the_conf(brimd, syslog):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    # Relative -c paths, as typed in the conf directory: the daemon runs in /.
    brimd.confs = [Path(conf.name) for conf in brimd.confs]
    brimd.start()
    base = f"http://127.0.0.1:{port}"
    assert curl("-s", f"{base}/echo2", "-d", "x").stdout.startswith(b"404")
    old_workers = set(brimd.workers("wsgi").values())
    # reload re-reads the files brimd was started with; edit one of them.
    brimd.write(brimd.confs[0].name, echo_stats_conf(apps="echo echo2 stats", workers=2)
                + "\n[echo2]\ncall = brim.wsgi_echo.WSGIEcho\npath = /echo2\n")
    assert brimd.run("reload").returncode == 0
    wait_for(lambda: curl("-s", f"{base}/echo2", "-d", "x").stdout == b"x", what="the new app")
    wait_for(lambda: not any(alive(p) for p in old_workers), what="old workers drained")
    # A conf broken later is refused by reload, and the running brimd goes on.
    (brimd.root / brimd.confs[0]).write_text("[wsgi]\napps = missing\n")
    refused = brimd.run("reload")
    assert refused.returncode == 1 and "[wsgi] apps: 'missing'" in refused.stderr
    assert curl("-s", f"{base}/echo2", "-d", "y").stdout == b"y"


@pytest.mark.slow
def test_killed_worker_is_replaced_with_a_new_start_time(brimd, syslog):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    brimd.start()
    base = f"http://127.0.0.1:{port}"
    workers = wait_for(lambda: (w := brimd.workers("wsgi")) and len(w) == 2 and w,
                       what="two workers")
    before = get_json(f"{base}/stats")
    time.sleep(1.1)  # start_time has one-second resolution
    title, victim = sorted(workers.items())[0]
    worker_id = int(title.split(" worker ")[1].split()[0])
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: (p := brimd.workers("wsgi").get(title)) and p != victim and p,
                        timeout=1.0, step=0.02, what="the replacement worker")
    assert alive(replaced)
    after = get_json(f"{base}/stats")
    key = f"worker_{worker_id}"
    assert after[key]["start_time"] > before[key]["start_time"]
    assert after["start_time"] == before["start_time"]
    assert after["request_count"] >= before["request_count"]
    syslog.wait_line(f"pid {victim}", "SIGKILL")


@pytest.mark.slow
def test_tcp_udp_and_daemon_subservers(brimd, syslog):
    tcp, udp, web = free_port(), free_port(socket.SOCK_DGRAM), free_port()
    brimd.use(f"""
        [wsgi]
        port = {web}
        apps = stats
        [stats]
        call = brim.stats.Stats

        [tcp#echo]
        call = brim.tcp_echo.TCPEcho
        port = {tcp}
        workers = 2

        [udp#echo]
        call = brim.udp_echo.UDPEcho
        port = {udp}

        [daemons]
        daemons = sample
        [sample]
        call = brim.daemon_sample.DaemonSample
        interval = 0.2
    """, brimd.local())
    brimd.start()
    with socket.create_connection(("127.0.0.1", tcp), timeout=5) as conn:
        conn.sendall(b"hello tcp")
        assert conn.recv(100) == b"hello tcp"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
        dgram.settimeout(5)
        dgram.sendto(b"hello udp", ("127.0.0.1", udp))
        assert dgram.recvfrom(100)[0] == b"hello udp"
    daemon = wait_for(lambda: brimd.workers("daemon"), what="the daemon")
    (title, pid), = daemon.items()
    assert title.endswith("daemon sample")
    data = wait_for(lambda: (d := get_json(f"http://127.0.0.1:{web}/stats"))
                    ["daemon_sample"]["sample.iterations"] >= 2 and d, what="daemon stats")
    # The socket subservers' stats are reported by the WSGI Stats app too.
    assert data["tcp#echo"]["connection_count"] == 1
    assert data["tcp#echo"]["tcp#echo.bytes"] == len(b"hello tcp")
    assert data["udp#echo"]["datagram_count"] == 1
    assert data["udp#echo"]["udp#echo.datagrams"] == 1
    assert "worker_1" in data["tcp#echo"]
    first_start = data["daemon_sample"]["start_time"]
    time.sleep(1.1)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: (d := brimd.workers("daemon")) and pid not in d.values(),
             what="the daemon restarted")
    wait_for(lambda: get_json(f"http://127.0.0.1:{web}/stats")["daemon_sample"]["start_time"]
             > first_start, what="a new daemon start_time")
    syslog.wait_line("sample: sample daemon pid")


def test_no_daemon_runs_in_one_process(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    proc = brimd.popen("no-daemon")
    wait_for(lambda: curl("-s", f"http://127.0.0.1:{port}/echo", "-d", "x").stdout == b"x",
             what="no-daemon serving")
    assert process_tree(proc.pid) == [proc.pid]
    data = get_json(f"http://127.0.0.1:{port}/stats")
    assert "worker_1" not in data
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    assert "no-daemon" in proc.stderr.read()


@pytest.mark.slow
def test_foreground_term_drains_and_exits(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    proc = brimd.popen("foreground")
    wait_for(lambda: curl("-s", f"http://127.0.0.1:{port}/echo", "-d", "x").stdout == b"x",
             what="foreground serving")
    # The master and two workers (one worker can serve before the other is forked).
    tree = wait_for(lambda: len(t := process_tree(proc.pid)) == 3 and t, what="two workers")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert not any(alive(pid) for pid in tree)


def _uid(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    raise AssertionError("no Uid line")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.slow
def test_privileges_dropped_after_binding_and_restart_still_hands_over(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port, user="nobody", umask="0027"))
    master = brimd.start()
    wait_for(lambda: len(brimd.workers("wsgi")) == 2, what="two workers")
    assert _uid(master) == 65534
    assert all(_uid(pid) == 65534 for pid in brimd.workers("wsgi").values())
    url = f"http://127.0.0.1:{port}/echo"
    assert curl("-s", url, "-d", "x").stdout == b"x"
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    assert "binding anew" not in done.stderr  # the sockets were handed over
    wait_for(lambda: not alive(master), what="the old master gone")
    assert curl("-s", url, "-d", "y").stdout == b"y"
    assert brimd.run("stop").returncode == 0


@pytest.mark.slow
def test_restart_without_a_hand_over_binds_once_the_old_brimd_lets_go(brimd):
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port))
    old = brimd.start()
    (brimd.root / f"brimd.pid.{old}.sock").unlink()  # as if the old brimd offered none
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    assert "binding anew" in done.stderr
    assert brimd.master_pid() != old and not alive(old)
    assert curl("-s", f"http://127.0.0.1:{port}/echo", "-d", "z").stdout == b"z"
