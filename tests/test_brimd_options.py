"""Server options end to end: TLS from certfile/keyfile, json_dumps by dotted
name (orjson, which returns bytes), log_headers, and bad values refused."""

from __future__ import annotations

import json
import subprocess

import pytest
from brimd_harness import curl, echo_stats_conf, free_port

ECHO = echo_stats_conf()



def _self_signed(root) -> tuple[str, str]:
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


@pytest.mark.slow
def test_tls_orjson_and_log_headers(brimd, syslog):
    cert, key = _self_signed(brimd.root)
    port = free_port()
    brimd.use(ECHO, brimd.local(port=port, certfile=cert, keyfile=key,
                                json_dumps="orjson.dumps", log_headers="yes"))
    brimd.start()
    base = f"https://127.0.0.1:{port}"
    echo = curl("-s", "--cacert", cert, f"{base}/echo", "-H", "X-Probe: tls-check",
                "--data-binary", "over tls")
    assert echo.returncode == 0 and echo.stdout == b"over tls"
    stats = json.loads(curl("-s", "--cacert", cert, f"{base}/stats").stdout)
    assert stats["echo.requests"] == 1 and stats["worker_0"]["request_count"] >= 1
    line = syslog.wait_line("POST /echo 200", "tls-check")
    assert "X-Probe" in line or "x-probe" in line.lower()
    plain = curl("-s", f"http://127.0.0.1:{port}/echo", "-d", "x")
    assert plain.stdout != b"x"  # a TLS port does not speak plain HTTP


@pytest.mark.slow
def test_bad_tls_files_and_json_function_are_refused(brimd):
    brimd.use(ECHO, brimd.local(port=free_port(), certfile=str(brimd.root / "missing.pem")))
    done = brimd.run("start")
    assert done.returncode == 1 and "[wsgi] certfile:" in done.stderr
    assert "missing.pem" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    brimd.use(ECHO, brimd.local(port=free_port(), json_dumps="nojson.dumps"))
    done = brimd.run("start")
    assert done.returncode == 1
    assert "json_dumps: cannot import 'nojson'" in done.stderr
