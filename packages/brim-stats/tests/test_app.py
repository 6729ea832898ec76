"""The Stats WSGI app: through wsgiref's validator, and over a real socket from a forked server."""

from __future__ import annotations

import http.client
import io
import json
import wsgiref.simple_server
import wsgiref.validate

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from brim.stats import Group, Stats, StatsError, StatsStore, prometheus_text

# What a web server might declare for itself (brim-wsgi's own list is brim.wsgi.stats).
SERVER = [("start_count", "sum", "Times a worker started"),
          ("request_count", "sum", "Requests answered"),
          *((f"status_{n}xx_count", "sum") for n in range(2, 6)),
          *((f"status_{c}_count", "sum") for c in (404, 408, 499, 501))]


class _Conf:
    """The one method Stats needs from brim.conf.Conf."""

    def __init__(self, values: dict[tuple[str, str], str]):
        self.values = values

    def get(self, section: str, option: str):
        return self.values.get((section, option))


def _next_app(env, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


@pytest.fixture
def store():
    s = StatsStore([
        Group("wsgi", 3, [*SERVER, ("helloworld.requests", "sum"),
                          ("helloworld.last_called", "max"), ("helloworld.fastest", "min"),
                          ("helloworld.mine", "worker")], labels={"subserver": "wsgi"}),
        Group("daemon:sample", 1, [("sample.loops", "sum", "Loops the sampler ran")],
              kind="daemon", labels={"daemon": "sample"}, key="daemon_sample",
              reported_by_all=True),
    ], start_time=1326585797)
    for i in range(3):
        b = s.bucket("wsgi", i)
        b.mark_started(1326585797 + i)
        for _ in range(i + 2):
            b.incr("request_count")
            b.incr("status_2xx_count")
        b.incr("helloworld.requests")
        b.set("helloworld.last_called", 1326602976 + i)
        b.set("helloworld.fastest", 30 - i)
        b.set("helloworld.mine", i)
    s.bucket("daemon:sample", 0).incr("sample.loops")
    yield s
    s.close()


def _call(app, store, method="GET", path="/stats", query="", worker=1, **extra):
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
           "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(),
           "wsgi.errors": io.StringIO(), "wsgi.multithread": False,
           "wsgi.multiprocess": True, "wsgi.run_once": False, "SCRIPT_NAME": ""}
    if store is not None:
        env["brim.stats"] = store.bucket("wsgi", worker)
    env.update(extra)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    result = wsgiref.validate.validator(app)(env, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return seen["status"], seen["headers"], body


def _app(path=None):
    conf = _Conf({} if path is None else {("stats", "path"): path})
    return Stats("stats", Stats.parse_conf("stats", conf), _next_app)


def test_json_report(store):
    status, headers, body = _call(_app(), store)
    assert status == "200 OK"
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    report = json.loads(body)
    assert report["start_time"] == 1326585797
    assert report["request_count"] == 2 + 3 + 4
    assert report["helloworld.requests"] == 3
    assert report["helloworld.last_called"] == 1326602978
    assert report["helloworld.fastest"] == 28
    assert "helloworld.mine" not in report
    assert report["worker_2"]["request_count"] == 4
    assert report["worker_2"]["helloworld.mine"] == 2
    assert report["worker_1"]["start_time"] == 1326585798
    assert report["daemon_sample"] == {"start_time": 0, "sample.loops": 1}
    assert report == {**store.snapshot("wsgi"), "daemon_sample": store.snapshot("daemon:sample")}
    assert report == store.report("wsgi")


def test_head_has_headers_no_body(store):
    status, headers, body = _call(_app(), store, method="HEAD")
    assert status == "200 OK"
    assert body == b""
    assert int(headers["Content-Length"]) > 100


def test_other_methods_get_405_with_allow(store):
    status, headers, _ = _call(_app(), store, method="POST")
    assert status == "405 Method Not Allowed"
    assert headers["Allow"] == "GET, HEAD"


def test_other_paths_go_to_next_app(store):
    status, _, body = _call(_app(), store, path="/elsewhere")
    assert (status, body) == ("404 Not Found", b"not found\n")
    status, _, _ = _call(_app("/s3cret"), store, path="/stats")
    assert status == "404 Not Found"
    assert _call(_app("/s3cret"), store, path="/s3cret")[0] == "200 OK"


def test_json_dumps_from_env_may_return_bytes(store):
    status, _, body = _call(_app(), store, **{"brim.json_dumps": orjson.dumps})
    assert status == "200 OK"
    assert json.loads(body)["request_count"] == 9
    calls = []

    def dumps(obj):
        calls.append(obj)
        return json.dumps(obj, sort_keys=True)

    _, _, body = _call(_app(), store, **{"brim.json_dumps": dumps})
    assert len(calls) == 1
    assert list(json.loads(body)) == sorted(json.loads(body))


def test_no_store_is_503():
    status, _, body = _call(_app(), None)
    assert status == "503 Service Unavailable"
    assert b"brim.stats" in body


def test_bad_format_is_400(store):
    assert _call(_app(), store, query="format=xml")[0] == "400 Bad Request"


def _families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_prometheus_parses_and_matches_json(store):
    report = json.loads(_call(_app(), store)[2])
    status, headers, body = _call(_app(), store, query="format=prometheus")
    assert status == "200 OK"
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    families = _families(body.decode())
    # counters: the parser strips _total from the family name and keeps it on the samples
    requests = families["brim_request_count"]
    assert requests.type == "counter"
    assert {s.name for s in requests.samples} == {"brim_request_count_total"}
    # one series per worker and one for the departed, no rolled-up one: sum() is the true total
    assert [s.labels for s in requests.samples] == [
        {"subserver": "wsgi", "worker": str(i)} for i in [0, 1, 2, "departed"]]
    assert sum(s.value for s in requests.samples) == report["request_count"] == 9
    # every per-worker and daemon number of the JSON appears as a sample, and nothing else does
    expected = {("brim_store_start_time", None): report["start_time"]}
    for stat, typ in store.declared("wsgi"):
        name = "brim_" + stat.replace(".", "_")
        if typ == "sum" and stat.endswith("_count"):
            name += "_total"
        for i in range(3):
            expected[(name, str(i))] = report[f"worker_{i}"][stat]
        if name.endswith("_total"):  # counters: what departed workers counted, too
            expected[(name, "departed")] = report["departed"][stat]
    expected[("brim_sample_loops", "daemon:sample")] = 1
    expected[("brim_start_time", "daemon:sample")] = 0
    got = {}
    for family in families.values():
        for s in family.samples:
            key = s.labels.get("worker") or (
                f'daemon:{s.labels["daemon"]}' if "daemon" in s.labels else None)
            assert (s.name, key) not in got
            got[(s.name, key)] = s.value
    assert got == expected
    assert families["brim_helloworld_last_called"].type == "gauge"
    assert families["brim_helloworld_requests"].type == "gauge"  # sum, but not *_count
    assert families["brim_sample_loops"].samples[0].labels == {"daemon": "sample"}


def test_prometheus_help_comes_from_the_declaration(store):
    text = prometheus_text(store, "wsgi")
    assert "# HELP brim_request_count_total Requests answered\n" in text
    assert "# HELP brim_sample_loops Loops the sampler ran\n" in text
    assert ("# HELP brim_helloworld_requests helloworld.requests "
            "(sum stat; declared without a description)\n") in text
    assert "# HELP brim_start_time When this process last started" in text
    assert "# HELP brim_store_start_time When the stats store was made" in text
    families = _families(text)
    assert families["brim_request_count"].documentation == "Requests answered"
    assert families["brim_store_start_time"].samples[0].value == 1326585797


def test_prometheus_help_is_escaped():
    s = StatsStore([Group("g", 1, [("odd", "max", "line one\nline two \\ done")])])
    text = prometheus_text(s)
    assert "# HELP brim_odd line one\\nline two \\\\ done\n" in text
    assert _families(text)["brim_odd"].documentation == "line one\nline two \\ done"
    s.close()


@pytest.mark.parametrize("accept", [
    "text/plain; version=0.0.4",
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
])
def test_accept_header_selects_prometheus(store, accept):
    _, headers, body = _call(_app(), store, HTTP_ACCEPT=accept)
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "brim_request_count" in _families(body.decode())
    _, headers, _ = _call(_app(), store, HTTP_ACCEPT=accept, QUERY_STRING="format=json")
    assert headers["Content-Type"] == "application/json"
    _, headers, _ = _call(_app(), store, HTTP_ACCEPT="text/plain, application/json")
    assert headers["Content-Type"] == "application/json"


def test_prometheus_text_for_a_whole_store(store):
    families = _families(prometheus_text(store))
    assert families["brim_sample_loops"].samples[0].labels == {"daemon": "sample"}
    assert len(families["brim_start_time"].samples) == 3 + 1  # three workers, one daemon
    assert prometheus_text(store) == prometheus_text(store, "wsgi")  # the daemon is in both


def test_prometheus_names_and_labels_are_sanitised():
    s = StatsStore({'tcp#a"b\\c': (1, [("9 lives/é", "max"), ("a.b", "sum"), ("a_b", "sum"),
                                        ("x_count", "sum"), ("x_count_total", "max")])})
    s.bucket('tcp#a"b\\c', 0).set("9 lives/é", 3)
    text = prometheus_text(s)
    families = _families(text)
    assert families["brim_9_lives__"].samples[0].labels == {"group": 'tcp#a"b\\c', "worker": "0"}
    assert families["brim_9_lives__"].samples[0].value == 3
    assert "brim_a_b" in families  # a.b and a_b are both gauges: they share the family
    assert families["brim_x_count"].type == "counter"
    assert "stat 'x_count_total' left out" in text
    s.close()


def test_parse_conf():
    assert Stats.parse_conf("stats", _Conf({})) == ("/stats", False)
    assert Stats.parse_conf("s", _Conf({("s", "path"): "/hidden"})).path == "/hidden"
    assert Stats.parse_conf("s", _Conf({("s", "all_subservers"): "Yes"})).all_subservers
    with pytest.raises(StatsError, match=r"^\[s\] all_subservers: 'maybe' is not yes or no$"):
        Stats.parse_conf("s", _Conf({("s", "all_subservers"): "maybe"}))
    with pytest.raises(StatsError, match=r'^\[s\] path: must start with "/", got \'x\'$'):
        Stats.parse_conf("s", _Conf({("s", "path"): "x"}))
    assert Stats.stats_conf("s", _Conf({})) == []
    assert Stats("s", _Conf({}), _next_app).path == "/stats"  # raw conf accepted too


class _CountingServer:
    """A tiny app chain as a server would run it: count the request, then Stats, then 404."""

    def __init__(self, bucket):
        self.bucket = bucket
        self.app = _app()

    def __call__(self, env, start_response):
        env["brim.stats"] = self.bucket
        self.bucket.incr("request_count")
        return self.app(env, start_response)


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


def _serve(server):
    server.serve_forever(poll_interval=0.05)


def test_real_http_from_forked_workers(forker):
    store = StatsStore({"wsgi": (2, SERVER)})
    ports, pids = [], []
    for i in range(2):
        server = wsgiref.simple_server.make_server(
            "127.0.0.1", 0, _CountingServer(store.bucket("wsgi", i)), handler_class=_QuietHandler)
        ports.append(server.server_port)
        pids.append(forker.start(_serve, server))
        server.server_close()  # the child has its own copy of the listening socket

    def get(port, path, **headers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type"), resp.read()
        finally:
            conn.close()

    for _ in range(3):
        assert get(ports[0], "/nothing")[0] == 404
    assert get(ports[1], "/nothing")[0] == 404
    status, ctype, body = get(ports[1], "/stats")
    assert (status, ctype) == (200, "application/json")
    report = json.loads(body)
    assert report["request_count"] == 5  # both workers' requests, read by worker 1
    assert report["worker_0"]["request_count"] == 3
    assert report["worker_1"]["request_count"] == 2
    _, ctype, body = get(ports[0], "/stats?format=prometheus")
    families = _families(body.decode())
    assert sum(s.value for s in families["brim_request_count"].samples) == 6
    for pid in pids:
        forker.close_one(pid)
    store.close()


def test_all_subservers_reports_sibling_groups_too():
    store = StatsStore([Group("wsgi", 1, SERVER), Group("wsgi#2", 2, SERVER),
                        Group("tcp#t", 1, [("connection_count", "sum")], reported_by_all=True)])
    store.bucket("wsgi#2", 1).incr("request_count")
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/stats", "brim.stats": store.bucket("wsgi", 0)}
    seen = {}

    def start_response(status, headers):
        seen["status"] = status

    default = json.loads(b"".join(Stats("s", _Conf({}), _next_app)(dict(env), start_response)))
    assert "tcp#t" in default and "wsgi#2" not in default
    everything = Stats("s", _Conf({("s", "all_subservers"): "yes"}), _next_app)
    data = json.loads(b"".join(everything(dict(env), start_response)))
    assert data["wsgi#2"]["request_count"] == 1 and data["wsgi#2"]["worker_1"]["request_count"] == 1
    assert "tcp#t" in data and data["request_count"] == 0
    text = b"".join(everything(dict(env, QUERY_STRING="format=prometheus"), start_response))
    groups = {s.labels["group"] for f in _families(text.decode()).values() for s in f.samples
              if "group" in s.labels}
    assert groups == {"wsgi", "wsgi#2", "tcp#t"}
