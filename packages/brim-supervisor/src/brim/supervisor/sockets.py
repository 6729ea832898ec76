"""Listening sockets: TCP (IPv4, IPv6, all addresses), UDP, and a TLS context.

Sockets are bound in the master before workers are forked, so every worker
inherits the same listening socket and the kernel spreads connections among
them. Binding retries on "address in use" for *retry* seconds because a
previous instance may still be letting go of the port.

Host spelling: ``"*"`` or ``""`` means every address. It binds ``::`` with
IPV6_V6ONLY off, one dual-stack socket that accepts IPv4 and IPv6 clients; on
a host without IPv6 it falls back to ``0.0.0.0``. ``"0.0.0.0"`` and ``"::"``
mean exactly what they say. An IPv6 literal may be written with or without
brackets (``"[::1]"`` or ``"::1"``); a name is resolved and its first address
used.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

from brim.supervisor._linux import who_listens
from brim.supervisor.errors import SupervisorError

_RETRY_STEP = 0.25


def format_address(host: str, port: int) -> str:
    """``host:port`` with IPv6 hosts in brackets, as error messages show them."""
    host = host or "*"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _candidates(host: str, port: int, socktype: int) -> list[tuple[int, tuple[Any, ...], bool]]:
    """(family, sockaddr, dual_stack) choices for *host*, best first."""
    if host in ("*", ""):
        choices: list[tuple[int, tuple[Any, ...], bool]] = []
        if socket.has_ipv6:
            choices.append((socket.AF_INET6, ("::", port, 0, 0), True))
        choices.append((socket.AF_INET, ("0.0.0.0", port), False))
        return choices
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socktype, 0, socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SupervisorError(
            f"cannot bind {format_address(host, port)}: unknown host ({err.strerror})"
        ) from None
    return [(infos[0][0], infos[0][4], False)]


#: Called once when a port is found in use and binding will be retried, with
#: a message naming the address, the holder when visible, and the retry time.
OnBusy = Callable[[str], object]


def _bind(host: str, port: int, socktype: int, backlog: int | None, retry: float,
          on_busy: OnBusy | None = None) -> socket.socket:
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise SupervisorError(f"cannot bind {format_address(host, port)}: invalid port")
    choices = _candidates(host, port, socktype)
    deadline = time.monotonic() + max(0.0, retry)
    while True:
        last: OSError | None = None
        for family, addr, dual in choices:
            try:
                sock = socket.socket(family, socktype)
            except OSError as err:
                if err.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
                    last = err
                    continue  # no IPv6 here: try the next choice
                raise
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
                sock.bind(addr)
                if backlog is not None:
                    sock.listen(backlog)
                return sock
            except OSError as err:
                sock.close()
                last = err
                if dual and err.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue  # IPv6 present but unusable: fall back to 0.0.0.0
                break
        assert last is not None
        if last.errno == errno.EADDRINUSE and time.monotonic() < deadline:
            if on_busy is not None:
                on_busy(_busy_message(host, port, socktype, retry))
                on_busy = None
            time.sleep(min(_RETRY_STEP, max(0.0, deadline - time.monotonic())))
            continue
        reason = (last.strerror or str(last)).lower()
        if last.errno == errno.EADDRINUSE:
            reason += _holder(port, socktype)
            if retry > 0:
                reason += f" (still, after retrying for {retry:g}s)"
        raise SupervisorError(f"cannot bind {format_address(host, port)}: {reason}")


def _holder(port: int, socktype: int) -> str:
    """`` (held by pid N, what)`` when the port's holder is visible, else ''."""
    holder = who_listens(port, udp=socktype == socket.SOCK_DGRAM)
    return f" (held by pid {holder[0]}, {holder[1]})" if holder else ""


def _busy_message(host: str, port: int, socktype: int, retry: float) -> str:
    held = _holder(port, socktype)
    return f"{format_address(host, port)} is in use{held}; retrying for {retry:g}s"


def listen_tcp(
    host: str, port: int, backlog: int = 4096, retry: float = 30.0,
    on_busy: OnBusy | None = None,
) -> socket.socket:
    """A listening TCP socket on *host*:*port* (port 0: the OS picks one).

    SO_REUSEADDR is set; "address in use" is retried for *retry* seconds,
    calling *on_busy* once with a message naming the holder; any other
    failure raises :class:`SupervisorError` at once.
    """
    return _bind(host, port, socket.SOCK_STREAM, backlog, retry, on_busy)


def listen_udp(host: str, port: int, retry: float = 30.0,
               on_busy: OnBusy | None = None) -> socket.socket:
    """A bound UDP socket on *host*:*port*; same host rules and retries as TCP."""
    return _bind(host, port, socket.SOCK_DGRAM, None, retry, on_busy)


#: Client certificate modes of :func:`server_ssl_context`.
CLIENT_CERT_MODES = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                     "required": ssl.CERT_REQUIRED}
#: Lowest protocol versions :func:`server_ssl_context` accepts, by name.
TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def server_ssl_context(certfile: str, keyfile: str | None = None, *,
                       cafile: str | None = None, client_cert: str = "none",
                       min_version: str = "TLSv1.2", ciphers: str | None = None,
                       alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A server-side TLS context loaded from *certfile* and *keyfile*.

    The key may live in the certificate file (then leave *keyfile* None).
    *client_cert* (``none``, ``optional`` or ``required``) asks clients for a
    certificate, verified against the CAs in *cafile*; ``required`` refuses
    a handshake without one. *min_version* is the lowest protocol accepted
    (a name in :data:`TLS_VERSIONS`), *ciphers* an OpenSSL cipher list for
    TLS 1.2 (TLS 1.3's suites are OpenSSL's), *alpn* the protocols offered.
    The context is built afresh from the files at each call, so a caller
    that calls again (on reload) serves renewed certificates.
    The caller wraps each accepted connection itself
    (``ctx.wrap_socket(conn, server_side=True)``). Missing, unreadable or
    mismatched files, and values OpenSSL refuses, raise
    :class:`SupervisorError` naming the file or value.
    """
    for label, path in (("certificate", certfile), ("key", keyfile), ("CA file", cafile)):
        if path is None:
            continue
        if not os.path.isfile(path):
            raise SupervisorError(f"cannot load TLS {label} {path}: no such file")
        if not os.access(path, os.R_OK):
            raise SupervisorError(f"cannot load TLS {label} {path}: permission denied")
    if client_cert not in CLIENT_CERT_MODES:
        raise SupervisorError(f"client_cert {client_cert!r} is not one of "
                              f"{', '.join(CLIENT_CERT_MODES)}")
    if client_cert != "none" and cafile is None:
        raise SupervisorError(f"client_cert = {client_cert} needs a CA file to verify "
                              "client certificates against")
    if min_version not in TLS_VERSIONS:
        raise SupervisorError(f"TLS version {min_version!r} is not one of "
                              f"{', '.join(TLS_VERSIONS)}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = TLS_VERSIONS[min_version]
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as err:
        what = f"{certfile} / {keyfile}" if keyfile else certfile
        reason = err.reason or str(err)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            reason = "the key does not match the certificate"
        raise SupervisorError(f"cannot load TLS certificate and key {what}: {reason}") from None
    except OSError as err:
        raise SupervisorError(
            f"cannot load TLS certificate {certfile}: {err.strerror or err}"
        ) from None
    if cafile is not None:
        try:
            ctx.load_verify_locations(cafile)
        except (ssl.SSLError, OSError) as err:
            raise SupervisorError(f"cannot load TLS CA file {cafile}: "
                                  f"{getattr(err, 'reason', None) or err}") from None
    ctx.verify_mode = CLIENT_CERT_MODES[client_cert]
    if ciphers:
        try:
            ctx.set_ciphers(ciphers)
        except ssl.SSLError:
            raise SupervisorError(f"no cipher OpenSSL knows in {ciphers!r}") from None
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx
