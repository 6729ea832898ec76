"""The options of a WSGI subconfig, declared once, and reading them.

brimd merges this table with its own to validate confs, write
``brimd.conf-sample`` and the conf reference, so an option added here is
documented everywhere at once.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from brim.conf import Conf, Option, load_object, read_options

from .proxy import TrustedProxies

#: Peers trusted by default: this host only (a proxy on the same machine,
#: over loopback or over a Unix socket, which only local processes reach).
LOCAL_PROXIES = ("127.0.0.1", "::1", "unix")


@dataclass
class HTTPSettings:
    """Everything a worker needs to know, already parsed and checked.

    The defaults here are the options' defaults in WSGI_OPTIONS below; the
    limits and timeouts are described there and in docs/wsgi.rst.
    """

    client_timeout: float = 60.0
    idle_timeout: float = 75.0
    min_body_rate: int = 1024
    concurrent_per_worker: int = 1024
    worker_model: str = "green"
    threads: int = 8
    monkey_patch: bool = False
    wsgi_input_iter_chunk_size: int = 4096
    wsgi_output_iter_chunk_size: int = 65536
    max_request_line: int = 8190
    max_header_size: int = 65536
    max_header_field_size: int = 8190
    max_headers: int = 100
    log_headers: bool = False
    count_status_codes: tuple[int, ...] = (404, 408, 499, 501)
    ssl_context: ssl.SSLContext | None = None
    #: Request bodies over this many bytes get 413; 0 for no limit.
    max_body_size: int = 0
    #: Peers whose forwarding headers and PROXY preambles are believed.
    trusted_proxies: TrustedProxies = field(default_factory=lambda: TrustedProxies(LOCAL_PROXIES))
    #: Read a PROXY protocol preamble (v1 or v2) before the first request.
    proxy_protocol: bool = False
    json_dumps: Callable[..., Any] = json.dumps
    json_loads: Callable[..., Any] = json.loads

#: Options of ``[wsgi]`` subconfigs; all but ``apps`` fall back to ``[brim]``.
WSGI_OPTIONS: tuple[Option, ...] = (
    Option("apps", "list", (), "The WSGI apps to chain, in order; each names a section "
           "with a 'call' option. Unclaimed requests get 404."),
    Option("client_timeout", "float", 60.0, "Seconds a client may stay silent mid-request "
           "(head, body or while a response is written), and the most a whole request head may "
           "take from its first byte; else 408 and the connection closes.", inherit=True,
           minimum=0.001),
    Option("idle_timeout", "float", 75.0, "Seconds a connection may wait for its first byte, "
           "or sit idle between keep-alive requests, before it is closed quietly. Keep it "
           "longer than the idle timeout of any load balancer or proxy in front (60 s on AWS "
           "ALB and in nginx), so the proxy, not brimd, closes idle connections.",
           inherit=True, minimum=0.001),
    Option("min_body_rate", "int", 1024, "Bytes per second a request body must average once "
           "client_timeout seconds of waiting on it have passed; slower is 408. 0 turns the "
           "check off.", inherit=True, minimum=0),
    Option("concurrent_per_worker", "int", 1024, "Connections each worker serves at once "
           "(idle keep-alive ones included).", inherit=True, minimum=1),
    Option("worker_model", "str", "green", "How each worker runs requests: green (eventlet "
           "green threads, one per connection) or threads (a pool of OS threads, nothing "
           "patched; for apps that block).", inherit=True, choices=("green", "threads")),
    Option("threads", "int", 8, "OS threads per worker with worker_model = threads: the "
           "requests each worker runs at once.", inherit=True, minimum=1, maximum=1024),
    Option("monkey_patch", "bool", False, "With worker_model = green, patch the standard "
           "library's blocking calls (socket, ssl, select, time.sleep, name lookups, threading) "
           "with eventlet in each worker before its app is built. C drivers still block.",
           inherit=True),
    Option("wsgi_input_iter_chunk_size", "int", 4096, "Longest item when an app iterates "
           "over wsgi.input (line by line; a longer line comes in pieces this long).",
           inherit=True, minimum=1),
    Option("wsgi_output_iter_chunk_size", "int", 65536, "Bytes of a list or tuple body joined "
           "into one send (a streamed body's blocks are each sent as yielded).", inherit=True,
           minimum=1),
    Option("log_headers", "bool", False, "Add every request header to the request log line "
           "(Authorization, Proxy-Authorization, Cookie values as [redacted]).", inherit=True),
    Option("count_status_codes", "list",
           tuple(str(code) for code in HTTPSettings.count_status_codes), "Status codes that "
           "get a stat of their own (status_<code>_count).", inherit=True),
    Option("json_dumps", "str", "json.dumps", "Dotted name of the JSON encoder apps get as "
           "env['brim.json_dumps'] (e.g. orjson.dumps).", inherit=True),
    Option("json_loads", "str", "json.loads", "Dotted name of the JSON decoder apps get as "
           "env['brim.json_loads'].", inherit=True),
    Option("max_request_line", "int", 8190, "Longest request line accepted (else 414).",
           inherit=True, minimum=64),
    Option("max_header_size", "int", 65536, "Most header bytes accepted (else 431).",
           inherit=True, minimum=256),
    Option("max_header_field_size", "int", 8190, "Longest single header field line "
           "accepted, name and value (else 431).", inherit=True, minimum=64),
    Option("max_headers", "int", 100, "Most header fields accepted (else 431).",
           inherit=True, minimum=1),
    Option("max_body_size", "int", 0, "Most request body bytes accepted: a larger "
           "Content-Length gets 413 before any app runs, and a chunked body that grows past "
           "it gets 413 as it is read. 0: no limit.", inherit=True, minimum=0),
    Option("trusted_proxies", "list", LOCAL_PROXIES, "Peers (addresses or networks such as "
           "10.0.0.0/8; unix for every peer of a Unix socket listener; * for every peer; "
           "empty for none) whose X-Forwarded-For, "
           "X-Forwarded-Proto, X-Forwarded-Host, Forwarded and PROXY preambles say who the "
           "client is. From other peers these headers reach apps as they came, and set "
           "nothing.", inherit=True, converter=TrustedProxies),
    Option("proxy_protocol", "bool", False, "Read a PROXY protocol preamble (v1 or v2, as "
           "HAProxy's send-proxy sends) at the start of each connection from a trusted "
           "proxy; a connection without one is served as usual.", inherit=True),
)


def status_codes(conf: Conf, section: str) -> tuple[int, ...]:
    """``count_status_codes`` as ints, each a real HTTP status code."""
    found = conf.found_in(section, "count_status_codes", inherit=True) or section
    codes = []
    default = tuple(str(code) for code in HTTPSettings.count_status_codes)
    for word in conf.get_list(section, "count_status_codes", default, inherit=True):
        if not word.isdigit() or not 100 <= int(word) <= 999:
            raise conf.error(found, "count_status_codes", f"{word!r} is not an HTTP status code")
        codes.append(int(word))
    return tuple(dict.fromkeys(codes))


def json_function(conf: Conf, section: str, option: str) -> Any:
    """Import the function named by ``json_dumps`` or ``json_loads``."""
    dotted = conf.get(section, option, f"json.{option[5:]}", inherit=True) or f"json.{option[5:]}"
    try:
        function = load_object(dotted)
    except ImportError as err:
        found = conf.found_in(section, option, inherit=True) or section
        raise conf.error(found, option, str(err)) from None
    if not callable(function):
        raise conf.error(section, option, f"{dotted!r} is not callable")
    return function


def http_settings(conf: Conf, section: str) -> HTTPSettings:
    """An HTTPSettings for one ``[wsgi]`` subconfig (TLS is added by the caller)."""
    values = read_options(conf, section, WSGI_OPTIONS)
    return HTTPSettings(
        client_timeout=values["client_timeout"],
        idle_timeout=values["idle_timeout"],
        min_body_rate=values["min_body_rate"],
        concurrent_per_worker=values["concurrent_per_worker"],
        worker_model=values["worker_model"],
        threads=values["threads"],
        monkey_patch=values["monkey_patch"],
        wsgi_input_iter_chunk_size=values["wsgi_input_iter_chunk_size"],
        wsgi_output_iter_chunk_size=values["wsgi_output_iter_chunk_size"],
        max_request_line=values["max_request_line"],
        max_header_size=values["max_header_size"],
        max_header_field_size=values["max_header_field_size"],
        max_headers=values["max_headers"],
        log_headers=values["log_headers"],
        max_body_size=values["max_body_size"],
        trusted_proxies=values["trusted_proxies"],
        proxy_protocol=values["proxy_protocol"],
        count_status_codes=status_codes(conf, section),
        json_dumps=json_function(conf, section, "json_dumps"),
        json_loads=json_function(conf, section, "json_loads"),
    )
