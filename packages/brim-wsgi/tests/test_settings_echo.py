"""Subconfig settings from a conf, and the WSGIEcho sample app in isolation."""

from __future__ import annotations

import io
import json

import pytest

from brim.conf import Conf, ConfError, Dialect
from brim.wsgi import http_settings
from brim.wsgi.settings import status_codes
from brim.wsgi_echo import WSGIEcho

# Only a defaults section for [wsgi] to inherit from is needed, built here so
# brim-wsgi's tests do not need brimd. It is named [brim] because brim.wsgi's
# settings name that section in the errors they raise for inherited values.
DEFAULTS = Dialect(defaults="brim")


def test_settings_inherit_from_brim_and_import_json_functions():
    c = Conf.from_string(
        "[brim]\nclient_timeout = 5\nlog_headers = yes\n[wsgi]\ncount_status_codes = 404 418\n"
        "json_dumps = json.dumps\n", "test.conf", dialect=DEFAULTS,
    )
    s = http_settings(c, "wsgi")
    assert s.client_timeout == 5.0
    assert s.log_headers is True
    assert s.count_status_codes == (404, 418)
    assert s.json_dumps is json.dumps
    assert s.concurrent_per_worker == 1024


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[wsgi]\ncount_status_codes = 404 abc\n", "[wsgi] count_status_codes: 'abc' is not an HTTP status code"),
        ("[brim]\njson_dumps = nosuchjson.dumps\n[wsgi]\n", "[brim] json_dumps: cannot import 'nosuchjson'"),
        ("[wsgi]\nclient_timeout = 0\n", "[wsgi] client_timeout: 0.0 is too small"),
    ],
)
def test_bad_settings(text, message):
    with pytest.raises(ConfError) as info:
        http_settings(Conf.from_string(text, "test.conf", dialect=DEFAULTS), "wsgi")
    assert str(info.value).startswith(message)


def test_default_status_codes():
    assert status_codes(Conf(), "wsgi") == (404, 408, 499, 501)


class _Bucket:
    """Just enough of a stats bucket to count one app's requests."""

    def __init__(self):
        self.counts = {}

    def incr(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1


def _call(app, path, body=b"", content_type=None):
    seen = {}
    env = {"PATH_INFO": path, "wsgi.input": io.BytesIO(body), "brim.stats": _Bucket()}
    if content_type:
        env["CONTENT_TYPE"] = content_type
    out = app(env, lambda status, headers: seen.update(status=status, headers=dict(headers)))
    return seen, b"".join(out), env["brim.stats"].counts


def test_echo_parse_conf_and_calls():
    conf = WSGIEcho.parse_conf("echo", Conf({"echo": {"max_echo": "5"}}))
    assert conf == {"path": "/echo", "max_echo": 5}
    assert WSGIEcho.stats_conf("echo", conf) == [("echo.requests", "sum")]
    passed = []
    app = WSGIEcho("echo", conf, lambda env, sr: passed.append(env["PATH_INFO"]) or [b"next"])
    seen, body, counts = _call(app, "/echo", b"hello", "text/plain")
    assert (seen["status"], body, counts) == ("200 OK", b"hello", {"echo.requests": 1})
    assert seen["headers"]["Content-Type"] == "text/plain"
    seen, body, _ = _call(app, "/echo", b"hello!")
    assert seen["status"] == "413 Payload Too Large"
    _, body, counts = _call(app, "/other")
    assert body == b"next" and passed == ["/other"] and counts == {}


def test_echo_rejects_a_relative_path():
    with pytest.raises(ConfError, match=r"\[echo\] path: 'echo' must start with '/'"):
        WSGIEcho.parse_conf("echo", Conf({"echo": {"path": "echo"}}))
