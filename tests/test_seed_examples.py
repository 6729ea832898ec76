"""The seed document's examples, with their confs as written and real curl.

Each test writes the seed's conf verbatim and adds a second conf file that
only moves brimd onto free loopback ports and points its log at the test's
own syslog listener, as a user would with a second ``-c``.
"""

from __future__ import annotations

import json

import pytest
from brimd_harness import curl, free_port, get_json, wait_for

WSGI_USAGE = """
    [wsgi]
    apps = echo stats

    [echo]
    call = brim.wsgi_echo.WSGIEcho

    [stats]
    call = brim.stats.Stats
"""

SERVER_STAT_KEYS = [
    "request_count", "start_time", "status_2xx_count", "status_3xx_count",
    "status_404_count", "status_408_count", "status_499_count", "status_4xx_count",
    "status_501_count", "status_5xx_count",
]


@pytest.mark.slow
def test_wsgi_usage_example(brimd):
    port = free_port()
    brimd.use(WSGI_USAGE, brimd.local(port=port))
    brimd.start()
    base = f"http://127.0.0.1:{port}"

    echo = curl("-i", f"{base}/echo", "--data-binary", "Just a test.")
    assert echo.returncode == 0
    assert echo.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert echo.stdout.endswith(b"\r\n\r\nJust a test.")

    missing = curl("-i", f"{base}/invalid")
    assert missing.stdout.startswith(b"HTTP/1.1 404 Not Found\r\n")

    stats = curl("-s", f"{base}/stats")
    data = json.loads(stats.stdout)
    for key in SERVER_STAT_KEYS:
        assert isinstance(data[key], int), key
        assert isinstance(data["worker_0"][key], int), key
    assert data["request_count"] == 2  # the echo and the 404; /stats counts once answered
    assert data["status_2xx_count"] == 1 and data["status_404_count"] == 1
    assert data["status_4xx_count"] == 1
    assert data["echo.requests"] == 1
    assert "worker_1" not in data

    stop = brimd.run("stop")
    assert stop.returncode == 0, stop.stderr
    assert curl("-s", f"{base}/stats").returncode != 0


MULTI = """
    [wsgi]
    apps = echo stats

    [wsgi]
    port = 81
    apps = echo2 stats

    [echo]
    call = brim.wsgi_echo.WSGIEcho

    [stats]
    call = brim.stats.Stats

    [echo2]
    call = brim.wsgi_echo.WSGIEcho
    path = /echo2
"""


@pytest.mark.slow
def test_multi_config_example(brimd):
    main, second = free_port(), free_port()
    # The seed's second [wsgi] says port = 81; a third conf moves it, as a
    # user without root would, by naming the repeated section wsgi#2.
    brimd.use(MULTI, brimd.local(port=main), f"[wsgi#2]\nport = {second}\n")
    brimd.start()
    one, two = f"http://127.0.0.1:{main}", f"http://127.0.0.1:{second}"

    assert curl("-s", f"{one}/echo", "--data-binary", "Just a test.").stdout == b"Just a test."
    assert curl("-s", f"{two}/echo2", "--data-binary", "Just a test.").stdout == b"Just a test."
    # Each app answers only on its own port.
    assert curl("-si", f"{one}/echo2", "--data-binary", "x").stdout.startswith(b"HTTP/1.1 404")
    assert curl("-si", f"{two}/echo", "--data-binary", "x").stdout.startswith(b"HTTP/1.1 404")

    for _ in range(3):
        curl("-s", f"{one}/echo", "--data-binary", "more")
    first, other = get_json(f"{one}/stats"), get_json(f"{two}/stats")
    assert first["request_count"] == 5 and first["echo.requests"] == 4
    assert other["request_count"] == 2 and other["echo2.requests"] == 1
    assert "echo.requests" not in other and "echo2.requests" not in first


HELLO_V1 = """
class HelloWorld(object):

    def __init__(self, name, conf, next_app):
        self.next_app = next_app

    def __call__(self, env, start_response):
        if env['PATH_INFO'] != '/helloworld':
            return self.next_app(env, start_response)
        body = 'Hello World!\\n'
        start_response('200 OK', [('Content-Length', str(len(body)))])
        return body
"""

HELLO_V3 = """
from time import time


class HelloWorld(object):

    def __init__(self, name, conf, next_app):
        self.name = name
        self.path = conf
        self.next_app = next_app

    def __call__(self, env, start_response):
        if env['PATH_INFO'] != self.path:
            return self.next_app(env, start_response)
        # Here's where we update the stats.
        env['brim.stats'].incr('%s.requests' % self.name)
        env['brim.stats'].set('%s.last_called' % self.name, time())
        body = 'Hello World!\\n'
        start_response('200 OK', [('Content-Length', str(len(body)))])
        return body

    @classmethod
    def parse_conf(cls, name, conf):
        path = conf.get(name, 'path')
        if not path:
            raise Exception('[%s] you must configure a path to serve.' % name)
        return path

    @classmethod
    def stats_conf(cls, name, conf):
        # This is the new class method to configure additional stats, it
        # returns a list of (stat_name, stat_type) tuples.
        return [('%s.requests' % name, 'sum'),
                ('%s.last_called' % name, 'max')]
"""


@pytest.mark.slow
def test_helloworld_development_example(brimd):
    port = free_port()
    brimd.write("mypackage/__init__.py", "")
    brimd.write("mypackage/mymodule.py", HELLO_V1)
    local = brimd.local(port=port)
    brimd.use("""
        [brimd]
        wsgi = helloworld

        [helloworld]
        call = mypackage.mymodule.HelloWorld
    """, local)
    brimd.start()
    hello = curl("-i", f"http://127.0.0.1:{port}/helloworld")
    head, _, body = hello.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 13" in head and b"\r\nDate: " in head
    assert body == b"Hello World!\n"

    # The parse_conf version refuses to start without a path, with its message.
    brimd.write("mypackage/mymodule.py", HELLO_V3)
    refused = brimd.run("restart")
    assert refused.returncode != 0
    assert refused.stderr.strip() == "[helloworld] you must configure a path to serve."
    assert curl("-s", f"http://127.0.0.1:{port}/helloworld").stdout == b"Hello World!\n"

    # With the path set and the stats app added, it serves and counts.
    brimd.use("""
        [brimd]
        wsgi = helloworld stats

        [helloworld]
        call = mypackage.mymodule.HelloWorld
        path = /here

        [stats]
        call = brim.stats.Stats
    """, local)
    done = brimd.run("restart")
    assert done.returncode == 0, done.stderr
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: curl("-s", f"{base}/here").stdout == b"Hello World!\n", what="new app")
    for expected in (2, 3):
        curl("-s", f"{base}/here")
        data = get_json(f"{base}/stats")
        assert data["helloworld.requests"] == expected
        assert data["worker_0"]["helloworld.requests"] == expected
        assert abs(data["helloworld.last_called"] - data["start_time"]) < 120


@pytest.mark.slow
def test_server_stats_example_with_four_workers(brimd):
    port = free_port()
    brimd.use("""
        [brim]
        wsgi = stats
        workers = 4

        [stats]
        call = brim.stats.Stats
        # path = <path>
        #   The request path to match and serve; any other paths will be passed on
        #   to the next WSGI app in the chain. This can serve as a basic
        #   restriction to accessing the stats by setting it to a hard to guess
        #   value. Default: /stats
    """, brimd.local(port=port))
    brimd.start()
    wait_for(lambda: len(brimd.workers("wsgi")) == 4, what="four workers")
    base = f"http://127.0.0.1:{port}"
    for _ in range(20):
        curl("-s", f"{base}/nothing-here")
    data = get_json(f"{base}/stats")
    workers = [data[f"worker_{n}"] for n in range(4)]
    assert "worker_4" not in data
    assert data["status_404_count"] == 20
    assert data["request_count"] == sum(w["request_count"] for w in workers) == 20
    for key in SERVER_STAT_KEYS:
        assert key in data


def test_daemon_example(brimd, syslog):
    brimd.use("""
        [daemons]
        daemons = sample

        [sample]
        call = brim.daemon_sample.DaemonSample
    """, brimd.local())
    brimd.start()
    wait_for(lambda: brimd.workers("daemon"), what="the sample daemon process")
    line = syslog.wait_line("sample: sample daemon pid", "iteration 1")
    assert "brim" in line
