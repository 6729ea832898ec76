"""One client connection: its socket, its read buffer and the heads read from it.

A connection reads request heads and hands each to an
:class:`~brim.wsgi.exchange.Exchange`, which runs the app and answers; the
connection never builds a response itself. While it waits on its client it
is listed in the server state, idle or part-way through a head, so a full
worker can shed the connection that has waited longest. It waits, sends and
yields through the worker's engine (green threads or OS threads), never
through eventlet or threading directly.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from .errors import BadRequest, ClientGone, HTTPError, RequestTimeout
from .exchange import Exchange
from .proxy import Preamble, parse_preamble
from .request import HeadScan, Request, parse_head
from .state import ServerState, Shed
from .tls import tls_environ

__all__ = ["Connection"]

RECV_SIZE = 65536
# A lingering close reads and drops at most this much (and for at most
# min(client_timeout, 2 s)) before it closes anyway.
MAX_LINGER = 8 << 20

# Empty lines (CRLF) tolerated before a request line (RFC 9112 2.2 says to
# ignore at least one; some clients send one after a body).
_MAX_LEADING_CRLF = 8


def _recorded(client: str) -> bytes:
    return client.encode("ascii", "replace")


class Connection:
    """Owns the socket and the bytes read from it but not yet used."""

    def __init__(self, state: ServerState, sock: socket.socket, addr: Any) -> None:
        self.state = state
        self.settings = state.settings
        self.engine = state.engine
        self.sock = sock
        #: Bytes received and not yet consumed by a head or a body.
        self.buf = bytearray()
        if isinstance(addr, tuple):
            self.client = str(addr[0])
            port = str(addr[1])
        else:
            self.client = str(addr or "")
            port = ""
        #: The client as the in-flight table records it (encoded once, not per request).
        self.client_recorded = _recorded(self.client)
        env = state.base_env.copy()
        env["REMOTE_ADDR"] = self.client
        env["REMOTE_PORT"] = port
        #: The environ items common to every request on this connection.
        self.base_env = env
        #: Requests answered so far.
        self.served = 0
        #: The body of every request that has none (the worker's one NoBody).
        self.no_body = state.no_body
        #: The connection was half-closed and drained (see linger()).
        self.lingered = False
        #: Whether the peer is a trusted proxy, whose forwarding headers count.
        self.trusted = self.settings.trusted_proxies.trusts_peer(
            self.client, sock.family == socket.AF_UNIX)

    # ----- the connection's life ---------------------------------------------

    def run(self) -> None:
        """Serve requests until the client or a rule ends the connection.

        An engine that parks idle keep-alive connections (OS threads) ends
        this call with its Parked exception, the connection still open, and
        calls run() again when the client sends its next request.
        """
        parked = False
        if self.served == 0:  # not again when a parked connection resumes
            with self.state.lock:
                self.state.metrics.connection_opened()
        try:
            if self.served == 0:  # a parked connection resuming has done both
                if self.settings.proxy_protocol:
                    try:
                        if not self._read_preamble():
                            return
                    except HTTPError as err:
                        Exchange(self, None, err).serve()
                        return
                if self.settings.ssl_context is not None and not self._tls_handshake():
                    return
            while True:
                try:
                    req = self.next_request()
                except HTTPError as err:
                    Exchange(self, None, err).serve()
                    return
                if req is None:
                    return
                exchange = Exchange(self, req)
                if not exchange.serve():
                    if not self.lingered and self._input_unread(exchange):
                        self.linger()
                    return
                self.served += 1
                # Let other connections run before reading the next request:
                # with a fast client the next request is often already here,
                # and without this one busy connection can starve the rest.
                self.engine.sleep(0)
        except self.engine.Parked:
            parked = True
            raise
        finally:
            if not parked:
                self.close()
                with self.state.lock:
                    self.state.metrics.connection_closed()

    def _tls_handshake(self) -> bool:
        """Wrap the socket in TLS; the handshake counts as waiting for a first byte."""
        context = self.settings.ssl_context
        assert context is not None
        me = self.engine.current()
        self.state.waiting_idle[me] = time.monotonic()
        try:
            tls = context.wrap_socket(self.sock, server_side=True,
                                      do_handshake_on_connect=False)
            self.sock = tls
            self.engine.tls_handshake(tls, self.settings.idle_timeout)
        except (OSError, ValueError, Shed):
            return False
        finally:
            self.state.waiting_idle.pop(me, None)
        self.base_env = {**self.base_env, **tls_environ(tls)}
        return True

    def _read_preamble(self) -> bool:
        """Read a PROXY preamble off the front of the connection, if it starts with one.

        Before TLS: a preamble comes in the clear, ahead of the handshake.
        So no byte past the preamble is read under TLS, and the first byte
        is only peeked at (a TLS record never starts like a preamble). From
        a trusted proxy the preamble's client replaces the peer's address;
        from any other peer it is a 400, as is a malformed one. False: end
        quietly (the client left, stayed silent, or was shed).
        """
        state = self.state
        settings = self.settings
        me = self.engine.current()
        state.waiting_idle[me] = time.monotonic()
        try:
            self.engine.wait_read(self.sock.fileno(), settings.idle_timeout)
        except (TimeoutError, Shed):
            return False
        finally:
            state.waiting_idle.pop(me, None)
        first = self._peek()
        if first is None or first == b"":
            return first is None  # a spurious wake-up, or the client closed
        if not isinstance(parse_preamble(first), int):
            return True  # not a preamble: nothing was read
        buf = self.buf
        found: Preamble | int = parse_preamble(buf)
        deadline = time.monotonic() + settings.client_timeout
        while isinstance(found, int):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RequestTimeout("PROXY preamble not complete within client_timeout")
            state.waiting_head[me] = time.monotonic()
            try:
                data = self.engine.recv(self.sock, found if self.tls else RECV_SIZE, left)
            except TimeoutError:
                raise RequestTimeout("PROXY preamble not complete within client_timeout") from None
            except (OSError, Shed):
                return False
            finally:
                state.waiting_head.pop(me, None)
            if not data:
                return False
            buf += data
            found = parse_preamble(buf)
        if not found.length:
            return not self.tls  # plain HTTP starting with P or CR; under TLS, noise
        if not self.trusted:
            raise BadRequest("PROXY preamble from a peer not in trusted_proxies")
        del buf[:found.length]
        if found.client is not None:
            self.client, port = found.client
            self.client_recorded = _recorded(self.client)
            env = self.base_env.copy()
            env["REMOTE_ADDR"] = self.client
            env["REMOTE_PORT"] = str(port)
            self.base_env = env
            self.trusted = self.settings.trusted_proxies.trusts(self.client)
        return True

    def next_request(self) -> Request | None:
        """Wait for the next complete head and parse it.

        None means end quietly: the client closed, or stayed idle past
        idle_timeout (or a drain), or was shed while idle: nothing was asked,
        so nothing is answered. A head that breaks a rule, or that does not
        arrive in time once begun, raises its HTTPError.
        """
        buf = self.buf
        state = self.state
        settings = self.settings
        scan: HeadScan | None = None
        head_deadline = 0.0
        skipped = 0
        while True:
            if buf:
                while buf[:2] == b"\r\n":
                    del buf[:2]
                    skipped += 1
                    if skipped > _MAX_LEADING_CRLF:
                        raise BadRequest("too many empty lines before a request line")
            if buf:
                end = buf.find(b"\r\n\r\n", max(0, scan.scanned - 3) if scan else 0)
                if end >= 0:
                    head = bytes(buf[:end])
                    del buf[:end + 4]
                    return parse_head(head, settings, state.heads)
                if scan is None:
                    scan = HeadScan(settings)
                    head_deadline = time.monotonic() + settings.client_timeout
                scan.check(buf)
                waiting = state.waiting_head
                timeout = min(settings.client_timeout, head_deadline - time.monotonic())
                if timeout <= 0:
                    raise RequestTimeout("request head not complete within client_timeout")
            else:
                waiting = state.waiting_idle
                timeout = settings.idle_timeout
                if state.draining:
                    timeout = min(timeout, max(0.0, state.drain_deadline - time.monotonic()))
            me = self.engine.current()
            waiting[me] = time.monotonic()
            try:
                # An idle keep-alive connection may be parked off its thread
                # (OS threads); it stays listed as waiting meanwhile.
                data = self.engine.recv_waiting(self.sock, RECV_SIZE, timeout,
                                                park=not buf and self.served > 0)
            except self.engine.Parked:
                me = None
                raise
            except TimeoutError:
                if not buf:
                    return None
                raise RequestTimeout("request head not complete within client_timeout") from None
            except Shed:
                if not buf:
                    return None
                err = RequestTimeout("worker full: shed while its head was arriving")
                err.linger = False
                raise err from None
            except OSError:
                return None
            finally:
                if me is not None:
                    waiting.pop(me, None)
            if not data:
                return None
            if not buf and data[:2] != b"\r\n":
                # The usual case: a whole head (and perhaps more) in one read
                # into an empty buffer. Parse it from the bytes read, without
                # the trip through the buffer; the loop above would do the same.
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    if end + 4 < len(data):
                        buf += memoryview(data)[end + 4:]
                    return parse_head(data[:end], settings, state.heads)
            buf += data

    # ----- I/O for exchanges -------------------------------------------------

    def fill(self, timeout: float) -> None:
        """Read more bytes into the buffer (for a body).

        TimeoutError after timeout seconds of silence; ClientGone when the
        client closed or reset the connection.
        """
        try:
            data = self.engine.recv(self.sock, RECV_SIZE, timeout)
        except TimeoutError:
            raise
        except OSError as err:
            raise ClientGone(f"client went away mid-body: {err}") from None
        if not data:
            raise ClientGone("client closed the connection mid-body")
        self.buf += data

    def send(self, data: bytes | memoryview) -> None:
        """Send all of data; RequestTimeout or ClientGone when the client does not take it."""
        try:
            self.engine.sendall(self.sock, data, self.settings.client_timeout)
        except OSError as err:
            raise _send_failed(err) from None

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send count bytes of a file with os.sendfile; the bytes sent."""
        try:
            return self.engine.sendfile(self.sock, fd, offset, count, self.settings.client_timeout)
        except OSError as err:
            raise _send_failed(err) from None

    @property
    def tls(self) -> bool:
        return self.settings.ssl_context is not None

    def send_final(self, data: bytes, linger: bool) -> None:
        """Send an answer the connection ends with, then (if linger) linger()."""
        try:
            self.engine.sendall(self.sock, data, min(self.settings.client_timeout, 5.0))
        except OSError:
            return
        if linger:
            self.linger()

    def linger(self) -> None:
        """Half-close, then read and drop what the client still sends, before the close.

        Closing a socket with unread input makes the kernel reset the
        connection, and a reset can destroy the answer before the client
        reads it. So: shut our side (the client sees the end of the
        answer), read for a moment (bounded in time and bytes), then close.
        """
        self.lingered = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + min(self.settings.client_timeout, 2.0)
            budget = MAX_LINGER
            while budget > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                data = self.engine.recv(self.sock, RECV_SIZE, left)
                if not data:
                    break
                budget -= len(data)
        except (OSError, ValueError):
            pass

    def _input_unread(self, exchange: Exchange) -> bool:
        """Whether closing now would leave client bytes unread (and so reset the connection).

        A body the app left unread, a pipelined request, or bytes waiting in
        the kernel. Not for a client that failed us: it is gone or stalled.
        """
        if isinstance(exchange.body.error or exchange.error, (ClientGone, RequestTimeout)):
            return False
        if not exchange.body.done or self.buf:
            return True
        return self._peek() not in (b"", None)

    def _peek(self) -> bytes | None:
        """One waiting byte, left in place; b'' when the client closed, None when none waits.

        Reads the socket itself (under TLS too: any byte waiting is input),
        never blocking.
        """
        try:
            return socket.socket.recv(self.sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def peer_closed(self) -> bool:
        """Whether the client has closed or reset its side (nothing left unread); never waits."""
        if not self.tls:
            return self._peek() == b""
        # Under TLS the socket holds records, not input: a close_notify
        # alert would look like data to a peek. So read through TLS, and
        # keep what comes in the buffer for the next head or the body (a
        # buffer already full enough says the client is there).
        if len(self.buf) >= RECV_SIZE:
            return False
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (OSError, ValueError):
            return True
        if not data:
            return True
        self.buf += data
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _send_failed(err: OSError) -> HTTPError:
    """What a send the client did not take means: 408 if it stalled, else 499."""
    if isinstance(err, TimeoutError):
        return RequestTimeout("client did not read the response for client_timeout")
    return ClientGone(f"client went away: {err}")
