"""brimd behind a proxy, end to end: the options in a conf, curl as the proxy, the log in syslog.

127.0.0.1 (where curl connects from) is a trusted proxy by default; a second
listener trusts only 10.0.0.0/8, so there the same headers count for nothing.
"""

from __future__ import annotations

import json

from brimd_harness import curl, free_port, wait_for

APP = """
import json

def app(env, start_response):
    if env["PATH_INFO"] == "/upload":
        body = env["wsgi.input"].read()
        out = b"got %d" % len(body)
    else:
        keys = ("REMOTE_ADDR", "REMOTE_PORT", "wsgi.url_scheme", "HTTP_HOST")
        out = json.dumps({k: env.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Length", str(len(out)))])
    return [out]
"""


def test_trusted_and_untrusted_listeners(brimd, syslog):
    brimd.write("proxyapp.py", APP)
    trusting, untrusting = free_port(), free_port()
    brimd.use(brimd.local(start_check=0, max_body_size=4096),
              f"[wsgi#trusting]\napps = app\nport = {trusting}\nproxy_protocol = yes\n",
              f"[wsgi#untrusting]\napps = app\nport = {untrusting}\nproxy_protocol = yes\n"
              "trusted_proxies = 10.0.0.0/8\n",
              "[app]\ncall = proxyapp:app\n")
    brimd.start()
    workers = wait_for(lambda: brimd.workers("wsgi#trusting"), what="a worker")
    headers = ["-H", "X-Forwarded-For: 198.51.100.7", "-H", "X-Forwarded-Proto: https"]

    def env(port: int, *args: str) -> dict:
        done = curl("-s", "--fail", *args, f"http://127.0.0.1:{port}/env")
        assert done.returncode == 0, done
        return json.loads(done.stdout)

    seen = env(trusting, *headers)
    assert seen["REMOTE_ADDR"] == "198.51.100.7" and seen["wsgi.url_scheme"] == "https"
    syslog.wait_line("198.51.100.7 GET /env 200")
    seen = env(trusting, "-H", "Forwarded: for=192.0.2.60;proto=https;host=shop.example")
    assert (seen["REMOTE_ADDR"], seen["HTTP_HOST"]) == ("192.0.2.60", "shop.example")
    # curl as a PROXY protocol sender: the client is curl's own address and port.
    seen = env(trusting, "--haproxy-protocol")
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["REMOTE_PORT"].isdigit()
    seen = env(untrusting, *headers)
    assert seen["REMOTE_ADDR"] == "127.0.0.1" and seen["wsgi.url_scheme"] == "http"
    refused = curl("-s", "-o", "/dev/null", "-w", "%{http_code}", "--haproxy-protocol",
                   f"http://127.0.0.1:{untrusting}/env")
    assert refused.stdout == b"400"
    syslog.wait_line("400", "not%20in%20trusted_proxies")
    # max_body_size from [brim]: a declared length over it, and a chunked body growing past it.
    big = ["--data-binary", "x" * 5000]
    over = curl("-s", "-w", " %{http_code}", *big, f"http://127.0.0.1:{trusting}/upload")
    assert over.stdout.endswith(b" 413")
    over = curl("-s", "-w", " %{http_code}", "-H", "Transfer-Encoding: chunked", *big,
                f"http://127.0.0.1:{trusting}/upload")
    assert over.stdout.endswith(b" 413")
    fits = curl("-s", "--data-binary", "x" * 4096, f"http://127.0.0.1:{trusting}/upload")
    assert fits.stdout == b"got 4096"
    assert brimd.workers("wsgi#trusting") == workers
