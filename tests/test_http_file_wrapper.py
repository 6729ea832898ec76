"""env['wsgi.file_wrapper'] end to end, over plain TCP and over TLS.

edge_apps.Files hands out a ~5 MB file of random bytes through the wrapper:
a real file (os.sendfile on plain TCP), with and without a Content-Length,
after a seek, for HEAD; an io.BytesIO (whose fileno() raises) and a reader
with no fileno at all. Every body must equal the file's bytes, and the file
object must be closed once the response has ended (the app keeps each
file-like by request id and says on /closed whether it was closed). A real
file that counts its read() calls shows sendfile was used on plain TCP (no
read) and block reads under TLS. The request log's bytes-out must be the
body bytes sent, and a file shorter than its Content-Length must end the
connection with the broken rule logged.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from brimd_harness import Brimd, SyslogListener, curl, free_port, wait_for

HERE = Path(__file__).resolve().parent
SIZE = 5 * 1024 * 1024 + 12345  # not a multiple of any block size

pytestmark = pytest.mark.timeout(60)


def _self_signed(root: Path) -> tuple[str, str]:
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


class _Server:
    def __init__(self, brimd: Brimd, port: int, data: bytes, tls: bool) -> None:
        self.brimd = brimd
        self.port = port
        self.data = data
        self.tls = tls
        #: txns of requests made to break a rule on purpose (their complaint is expected).
        self.broken_on_purpose: set[str] = set()

    def connect(self) -> http.client.HTTPConnection:
        if self.tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                               context=context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def get(self, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        conn = self.connect()
        try:
            conn.request(method, target)
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def closed(self, request_id: str) -> str:
        """'yes' once the file-like handed out for request_id was closed (waits up to 3 s)."""
        def check() -> str | None:
            state = self.get(f"/closed?id={request_id}")[2].decode()
            return state if state == "yes" else None

        try:
            return wait_for(check, timeout=3, what=f"the file of {request_id} closed")
        except pytest.fail.Exception:
            return self.get(f"/closed?id={request_id}")[2].decode()


def _start(tmp: Path, tls: bool) -> tuple[Brimd, SyslogListener, _Server]:
    syslog = SyslogListener()
    brimd = Brimd(tmp, syslog)
    shutil.copy(HERE / "edge_apps.py", tmp / "edge_apps.py")
    data = os.urandom(SIZE)
    (tmp / "big.bin").write_bytes(data)
    port = free_port()
    extra = {}
    if tls:
        extra["certfile"], extra["keyfile"] = _self_signed(tmp)
    brimd.use(f"[wsgi]\napps = files\nworkers = 1\n\n[files]\ncall = edge_apps.Files\n"
              f"file = {tmp / 'big.bin'}\n", brimd.local(port=port, **extra))
    server = _Server(brimd, port, data, tls)
    try:
        brimd.start()
        wait_for(lambda: server.get("/sha")[0] == 200, what="the files app answering")
    except BaseException:
        brimd.kill_all()
        syslog.close()
        raise
    return brimd, syslog, server


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> Iterator[_Server]:
    brimd, syslog, server = _start(tmp_path_factory.mktemp("files"), tls=False)
    try:
        yield server
    finally:
        brimd.kill_all()
        syslog.close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[_Server]:
    brimd, syslog, server = _start(tmp_path_factory.mktemp("files_tls"), tls=True)
    try:
        yield server
    finally:
        brimd.kill_all()
        syslog.close()


def _fetch(server: _Server, path: str, query: str = "", method: str = "GET"):
    """(status, headers, body, request id) of one request for a new id."""
    request_id = uuid.uuid4().hex
    status, headers, body = server.get(f"{path}?id={request_id}{query}", method)
    return status, headers, body, request_id


def _same(body: bytes, expected: bytes) -> None:
    """Compare without printing megabytes on failure."""
    if body != expected:
        pairs = enumerate(zip(body, expected, strict=False))
        first = next((i for i, (a, b) in pairs if a != b), min(len(body), len(expected)))
        pytest.fail(f"body differs: got {len(body)} bytes, expected {len(expected)}; "
                    f"first difference at byte {first}")


def _bytes_out(server: _Server, path: str, request_id: str) -> int:
    """The bytes-out field of the request's log line (client method path status in out)."""
    line = server.brimd.syslog.wait_line(f" GET {path}?id={request_id}", timeout=5)
    fields = line.split("brim: ", 1)[1].split()
    return int(fields[5])


# --- plain TCP: sendfile for real files ------------------------------------------------

@pytest.mark.slow
def test_file_with_content_length(plain):
    status, headers, body, request_id = _fetch(plain, "/file", "&cl=1")
    assert status == 200 and headers["content-length"] == str(SIZE), (status, headers)
    _same(body, plain.data)
    assert plain.closed(request_id) == "yes"
    assert _bytes_out(plain, "/file", request_id) == SIZE


def test_file_without_content_length(plain):
    status, headers, body, request_id = _fetch(plain, "/file")
    assert status == 200, (status, headers)
    _same(body, plain.data)
    assert plain.closed(request_id) == "yes"
    assert _bytes_out(plain, "/file", request_id) == SIZE


def test_range_by_seek_then_content_length(plain):
    start, length = 1_000_003, 777_777
    status, headers, body, request_id = _fetch(
        plain, "/file", f"&start={start}&len={length}&cl=1")
    assert status == 200 and headers["content-length"] == str(length), (status, headers)
    _same(body, plain.data[start:start + length])
    assert plain.closed(request_id) == "yes"
    assert _bytes_out(plain, "/file", request_id) == length


@pytest.mark.parametrize("query", ["&cl=1", ""], ids=["content-length", "no-length"])
def test_real_file_goes_out_by_sendfile(plain, query):
    """A real file on plain TCP is never read through Python: its read() is not called."""
    status, headers, body, request_id = _fetch(plain, "/counted", query)
    assert status == 200, (status, headers)
    _same(body, plain.data)
    assert plain.closed(request_id) == "yes"
    assert plain.get(f"/reads?id={request_id}")[2] == b"0"


def test_seek_without_content_length_sends_the_rest(plain):
    start = 4_321_000
    status, headers, body, request_id = _fetch(plain, "/file", f"&start={start}")
    assert status == 200, (status, headers)
    _same(body, plain.data[start:])
    assert plain.closed(request_id) == "yes"


def _raw_until_close(server: _Server, target: str) -> tuple[bytes, bytes, bool]:
    """GET target keep-alive on a raw socket; (head, body, closed within 5 s)."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    if server.tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock)
    data = b""
    closed = False
    try:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target.encode())
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body, closed


@pytest.mark.parametrize("where", ["plain", "tls"])
def test_file_shorter_than_its_content_length(request, where):
    """The app promises more than the file holds: what there is goes out, then the
    connection closes (the client must not wait for bytes that will never come), and
    the broken promise is logged under the request's txn."""
    server = request.getfixturevalue(where)
    request_id = uuid.uuid4().hex
    start, promised = SIZE - 100_000, 150_000
    head, body, closed = _raw_until_close(
        server, f"/file?id={request_id}&start={start}&len={promised}&cl=1")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"\r\ncontent-length: %d" % promised in head.lower(), head
    _same(body, server.data[start:])
    assert closed, "the connection stayed open after a body shorter than its Content-Length"
    assert server.closed(request_id) == "yes"
    line = server.brimd.syslog.wait_line(f" GET /file?id={request_id}", timeout=5)
    txn = line.split("brim: ", 1)[1].split()[7]
    server.broken_on_purpose.add(txn)
    complaint = server.brimd.syslog.wait_line(txn, "Content-Length", timeout=5)
    assert "GET /file" not in complaint  # a line of its own, not the request-log line


def test_head_sends_no_body_and_closes_the_file(plain):
    request_id = uuid.uuid4().hex
    conn = plain.connect()
    try:
        conn.request("HEAD", f"/file?id={request_id}&cl=1")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        assert response.getheader("Content-Length") == str(SIZE)
        sock = conn.sock
        # Nothing of the file followed the head: the next response on the
        # same connection parses cleanly.
        conn.request("GET", "/sha")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == hashlib.sha256(plain.data).hexdigest().encode()
        assert conn.sock is sock
    finally:
        conn.close()
    assert plain.closed(request_id) == "yes"


@pytest.mark.parametrize("query", ["&cl=1", ""], ids=["content-length", "no-length"])
def test_bytesio_is_read_in_blocks(plain, query):
    status, headers, body, request_id = _fetch(plain, "/bytesio", query)
    assert status == 200, (status, headers)
    _same(body, plain.data)
    assert plain.closed(request_id) == "yes"


@pytest.mark.parametrize("query", ["&cl=1", ""], ids=["content-length", "no-length"])
def test_reader_without_fileno(plain, query):
    status, headers, body, request_id = _fetch(plain, "/reader", query)
    assert status == 200, (status, headers)
    _same(body, plain.data)
    assert plain.closed(request_id) == "yes"


def test_explicit_blksize(plain):
    status, headers, body, request_id = _fetch(plain, "/blksize", "&cl=1")
    assert status == 200, (status, headers)
    _same(body, plain.data)
    assert plain.closed(request_id) == "yes"


def test_keep_alive_across_file_responses(plain):
    """Framing holds: several wrapped files in a row on one connection."""
    conn = plain.connect()
    try:
        sock = None
        for path, query, expected in [
            ("/file", "&cl=1", plain.data),
            ("/file", "&start=10&len=100&cl=1", plain.data[10:110]),
            ("/bytesio", "&cl=1", plain.data),
            ("/reader", "&cl=1", plain.data),
            ("/file", "&cl=1", plain.data),
        ]:
            conn.request("GET", f"{path}?id={uuid.uuid4().hex}{query}")
            response = conn.getresponse()
            assert response.status == 200
            _same(response.read(), expected)
            sock = sock or conn.sock
            assert conn.sock is sock, f"{path}{query} needed a new connection"
    finally:
        conn.close()


@pytest.mark.parametrize("where", ["plain", "tls"])
def test_no_complaint_logged(request, where):
    """Nothing logged an error, apart from the requests that broke a rule on purpose."""
    server = request.getfixturevalue(where)
    request_id = _fetch(server, "/file", "&cl=1")[3]
    server.brimd.syslog.wait_line(f" GET /file?id={request_id}", timeout=5)
    bad = [line for line in server.brimd.syslog.lines
           if ("Traceback" in line or "broke a rule" in line or "failed" in line)
           and not any(txn in line for txn in server.broken_on_purpose)]
    assert not bad, bad[:3]


# --- TLS: the same bytes, read in blocks -----------------------------------------------

@pytest.mark.parametrize(("path", "query", "cut"), [
    ("/file", "&cl=1", slice(None)),
    ("/file", "", slice(None)),
    ("/bytesio", "&cl=1", slice(None)),
    ("/reader", "", slice(None)),
], ids=["file-cl", "file-no-length", "bytesio", "reader"])
@pytest.mark.slow
def test_tls(tls, path, query, cut):
    status, headers, body, request_id = _fetch(tls, path, query)
    assert status == 200, (status, headers)
    _same(body, tls.data[cut])
    assert tls.closed(request_id) == "yes"
    assert _bytes_out(tls, path, request_id) == len(tls.data[cut])


def test_tls_range_by_seek_then_content_length(tls):
    """The same app as test_range_by_seek_then_content_length, under TLS.

    On plain TCP the file goes out by sendfile for its Content-Length, quietly,
    and the connection is kept. Under TLS it is read in blocks instead; the spec
    gives the file wrapper's length as the app's Content-Length, so the same
    range must be just as clean: no rule broken, connection kept.
    """
    start, length = 2_000_000, 1_234_567
    conn = tls.connect()
    try:
        request_id = uuid.uuid4().hex
        conn.request("GET", f"/file?id={request_id}&start={start}&len={length}&cl=1")
        response = conn.getresponse()
        assert response.status == 200
        _same(response.read(), tls.data[start:start + length])
        sock = conn.sock
        try:
            conn.request("GET", "/sha")
            response = conn.getresponse()
            kept = (response.status, len(response.read()), conn.sock) == (200, 64, sock)
        except (http.client.HTTPException, OSError):
            kept = False  # the server closed the connection after the range
    finally:
        conn.close()
    assert tls.closed(request_id) == "yes"
    line = tls.brimd.syslog.wait_line(f" GET /file?id={request_id}", timeout=5)
    txn = line.split("brim: ", 1)[1].split()[7]
    tls.broken_on_purpose.add(txn)  # reported here, not again by test_no_complaint_logged
    complaints = [x for x in tls.brimd.syslog.lines if txn in x and x != line]
    assert (complaints, kept) == ([], True), (
        f"logged {complaints!r}; connection kept: {kept}; request log: {line!r}")


def test_tls_reads_the_file_in_blocks(tls):
    """Under TLS the kernel cannot send the file: it is read, in blksize pieces."""
    status, headers, body, request_id = _fetch(tls, "/counted", "&cl=1")
    assert status == 200, (status, headers)
    _same(body, tls.data)
    assert tls.closed(request_id) == "yes"
    reads = int(tls.get(f"/reads?id={request_id}")[2])
    assert SIZE // 65536 <= reads <= SIZE // 65536 + 2, reads  # 64 KiB pieces, then EOF


@pytest.mark.slow
def test_tls_with_curl(tls, tmp_path):
    request_id = uuid.uuid4().hex
    out = tmp_path / "got.bin"
    done = curl("-k", "-s", "-S", "-o", str(out), "-w", "%{http_code}",
                f"https://127.0.0.1:{tls.port}/file?id={request_id}&cl=1")
    assert done.returncode == 0 and done.stdout == b"200", done
    _same(out.read_bytes(), tls.data)
    assert tls.closed(request_id) == "yes"
