"""What a trusted proxy says about the client: forwarding headers and PROXY preambles.

Behind a proxy, the peer of every connection is the proxy; the client's
address, the scheme it used and the Host it asked for arrive in headers
(``X-Forwarded-For``, ``X-Forwarded-Proto``, ``X-Forwarded-Host``, RFC
7239 ``Forwarded``) or in a PROXY protocol preamble (v1 text, v2 binary)
sent before the first byte of HTTP. Anyone can send those bytes, so they
count only from a peer in :class:`TrustedProxies`.

Everything here is pure: bytes and header values in, a result or a
:class:`~brim.wsgi.errors.BadRequest` out, no I/O, so every rule is tested
without a socket. :mod:`.connection` reads the preamble and
:mod:`.exchange` applies the headers.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import BadRequest
from .request import check_authority

__all__ = [
    "PROXY_V1", "PROXY_V2", "Forwarded", "Preamble", "TrustedProxies", "forwarded",
    "parse_preamble",
]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """The peers whose forwarding headers and PROXY preambles are believed.

    Built from words: ``*`` (every peer), ``unix`` (every peer of a Unix
    socket listener), an address (``10.0.0.5``, ``::1``) or a network
    (``10.0.0.0/8``). An empty list trusts no one.

    ``unix`` is a word of its own because a Unix socket's peer has no
    address to list: who may connect is decided by the socket file's mode
    and owner, so such a peer is as local as 127.0.0.1 is.
    """

    def __init__(self, words: Iterable[str] = ()) -> None:
        self.everyone = False
        #: Peers on a Unix socket listener are trusted.
        self.unix = False
        networks: list[_Network] = []
        for word in re.split(r"[,\s]+", " ".join(words)):
            if not word:
                continue
            if word == "*":
                self.everyone = True
                continue
            if word.lower() == "unix":
                self.unix = True
                continue
            try:
                networks.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                raise ValueError(f"{word!r} is not an address, a network, unix or *") from None
        self.networks = tuple(networks)
        #: Peers already looked up (a proxy's few addresses, over and over).
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return self.everyone or self.unix or bool(self.networks)

    def _key(self) -> tuple[bool, bool, frozenset[_Network]]:
        return self.everyone, self.unix, frozenset(self.networks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrustedProxies):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        if self.everyone:
            words = ["*"]
        else:
            words = [str(n) for n in self.networks] + (["unix"] if self.unix else [])
        return f"TrustedProxies({words!r})"

    def trusts_peer(self, address: str, unix: bool) -> bool:
        """Whether a connection's peer is trusted: ``unix`` when it came in on a
        Unix socket listener (its address, if any, is a path and lists nothing)."""
        if unix:
            return self.everyone or self.unix
        return self.trusts(address)

    def trusts(self, address: str) -> bool:
        """Whether a peer at this IP address (text, as a socket gives it) is trusted."""
        if self.everyone:
            return True
        seen = self._seen.get(address)
        if seen is not None:
            return seen
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            found = False  # not an IP address (a Unix socket's peer, a name): not listed
        else:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            found = any(ip in net for net in self.networks)
        if len(self._seen) < 1024:
            self._seen[address] = found
        return found


# ----- forwarding headers ----------------------------------------------------

@dataclass(frozen=True)
class Forwarded:
    """What the forwarding headers of one request say (None: they do not say)."""

    client: str | None = None
    port: str | None = None
    scheme: str | None = None
    host: str | None = None


_SCHEMES = ("http", "https")
# [IPv6] or IPv4, each with an optional :port (X-Forwarded-For entries and
# RFC 7239 node names; a port is digits here, an obfuscated one starts with _).
_NODE = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}|_[A-Za-z0-9._-]+))?"
                   r"|([0-9.]+)(?::([0-9]{1,5}|_[A-Za-z0-9._-]+))?")
_OBFUSCATED = re.compile(r"_[A-Za-z0-9._-]+")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PAIR = re.compile(r"[ \t]*(" + _TOKEN + r")=(" + _TOKEN + r'|"(?:[^"\\]|\\.)*")[ \t]*')


def forwarded(env: Mapping[str, str], trusted: TrustedProxies) -> Forwarded | None:
    """What a trusted peer's forwarding headers say about the client, or None if none came.

    ``Forwarded`` (RFC 7239) wins when present; otherwise the X-Forwarded-*
    fields. Hops are walked from the right (the one nearest to us): every
    hop listed in ``trusted`` is another proxy, and the first one that is
    not is the client. A value that cannot be read is a BadRequest.
    """
    # Spelled out: "none came" is nearly every request from a trusted peer,
    # and four lookups cost less than a loop over them.
    if ("HTTP_FORWARDED" not in env and "HTTP_X_FORWARDED_FOR" not in env
            and "HTTP_X_FORWARDED_PROTO" not in env and "HTTP_X_FORWARDED_HOST" not in env):
        return None
    if "HTTP_FORWARDED" in env:
        return _from_forwarded(env["HTTP_FORWARDED"], trusted)
    hops = _split(env.get("HTTP_X_FORWARDED_FOR"))
    at = -1
    client = port = None
    if hops:
        nodes = [_node(hop, "X-Forwarded-For") for hop in hops]
        at = _client_hop([n[0] for n in nodes], trusted)
        client, port = nodes[at]
        at = at - len(hops)  # as counted from the right, to line up with the other lists
    scheme = _pick(_split(env.get("HTTP_X_FORWARDED_PROTO")), at)
    if scheme is not None:
        scheme = _scheme(scheme, "X-Forwarded-Proto")
    host = _pick(_split(env.get("HTTP_X_FORWARDED_HOST")), at)
    if host is not None:
        check_authority(host, "X-Forwarded-Host")
    return Forwarded(client, port, scheme, host)


def _split(value: str | None) -> list[str]:
    """The entries of a comma-separated field; a blank entry is a BadRequest."""
    if value is None:
        return []
    entries = [entry.strip(" \t") for entry in value.split(",")]
    if not all(entries):
        raise BadRequest("empty entry in a forwarding header")
    return entries


def _pick(entries: list[str], at: int) -> str | None:
    """The entry for the client's hop (``at`` from the right) when the lists line up,
    else the rightmost: the one the nearest proxy added."""
    if not entries:
        return None
    if at != -1 and len(entries) >= -at:
        return entries[at]
    return entries[-1]


def _client_hop(addresses: list[str | None], trusted: TrustedProxies) -> int:
    """The index of the client: the rightmost hop that is not a trusted proxy.

    A hop with no address (``unknown``, an obfuscated name) cannot be
    checked, so it is not trusted. If every hop is trusted, the leftmost
    is the client.
    """
    for i in range(len(addresses) - 1, -1, -1):
        address = addresses[i]
        if address is None or not trusted.trusts(address):
            return i
    return 0


def _node(text: str, field: str) -> tuple[str | None, str | None]:
    """(address, port) of one hop: an IP address, bracketed for IPv6, with an optional port.

    RFC 7239's ``unknown`` and obfuscated names (``_hidden``) give no address,
    and an obfuscated port gives no port.
    """
    if text == "unknown" or _OBFUSCATED.fullmatch(text):
        return None, None
    match = _NODE.fullmatch(text)
    if match is not None:
        v6, v6port, v4, v4port = match.groups()
        address, port, version = (v6, v6port, 6) if v6 is not None else (v4, v4port, 4)
    elif text.count(":") >= 2:
        address, port, version = text, None, 6  # a bare IPv6 address, as X-Forwarded-For has
    else:
        raise BadRequest(f"{field}: {text[:64]!r} is not an IP address")
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        raise BadRequest(f"{field}: {text[:64]!r} is not an IP address") from None
    if ip.version != version:
        raise BadRequest(f"{field}: {text[:64]!r} is not an IP address")
    if port is not None:
        if port.startswith("_"):
            port = None
        elif int(port) > 65535:
            raise BadRequest(f"{field}: {text[:64]!r} has a port out of range")
    return str(ip), port


def _scheme(value: str, field: str) -> str:
    scheme = value.lower()
    if scheme not in _SCHEMES:
        raise BadRequest(f"{field}: {value[:32]!r} is not http or https")
    return scheme


def _from_forwarded(value: str, trusted: TrustedProxies) -> Forwarded:
    """RFC 7239: forwarded-element *( "," forwarded-element ), each ;-separated pairs."""
    elements: list[dict[str, str]] = []
    for element in _split_quoted(value, ","):
        pairs: dict[str, str] = {}
        for pair in _split_quoted(element, ";"):
            match = _PAIR.fullmatch(pair)
            if match is None:
                raise BadRequest(f"Forwarded: {pair.strip()[:64]!r} is not a name=value pair")
            name, text = match.group(1).lower(), match.group(2)
            if text.startswith('"'):
                text = re.sub(r"\\(.)", r"\1", text[1:-1])
            if name in pairs:
                raise BadRequest(f"Forwarded: {name}= twice in one element")
            pairs[name] = text
        elements.append(pairs)
    nodes = [_node(e["for"], "Forwarded for=") if "for" in e else (None, None)
             for e in elements]
    at = _client_hop([n[0] for n in nodes], trusted)
    client, port = nodes[at]
    chosen = elements[at]
    if "for" in chosen and client is None:
        client = chosen["for"]  # unknown or obfuscated: what the proxy chose to say
    scheme = chosen.get("proto")
    if scheme is not None:
        scheme = _scheme(scheme, "Forwarded proto=")
    host = chosen.get("host")
    if host is not None:
        check_authority(host, "Forwarded host=")
    return Forwarded(client, port, scheme, host)


def _split_quoted(value: str, sep: str) -> list[str]:
    """value split at sep outside quoted strings; an empty part is a BadRequest."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quoted:
        raise BadRequest("Forwarded: unterminated quoted string")
    parts.append("".join(current))
    if not all(part.strip(" \t") for part in parts):
        raise BadRequest("Forwarded: empty element or pair")
    return parts


# ----- PROXY protocol preambles ----------------------------------------------

PROXY_V1 = b"PROXY "
PROXY_V2 = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107  # the longest v1 line, CRLF included
_V1 = re.compile(rb"PROXY (?:UNKNOWN(?: [^\r\n]*)?|(TCP4|TCP6) ([0-9A-Fa-f.:]+) "
                 rb"([0-9A-Fa-f.:]+) ([0-9]{1,5}) ([0-9]{1,5}))")
_V2_HEAD = 16
# Bytes of the address block by family (high nibble of byte 13): INET, INET6, UNIX.
_V2_ADDRESSES = {1: 12, 2: 36, 3: 216}


@dataclass(frozen=True)
class Preamble:
    """A PROXY preamble read off the front of a connection.

    ``length`` is how many bytes it took (0: the bytes are not a preamble).
    ``client`` is the original client's (address, port), or None when the
    preamble does not say (v1 UNKNOWN, v2 LOCAL or an unspecified or Unix
    family): then the connection's own peer stands.
    """

    length: int
    version: int = 0
    client: tuple[str, int] | None = None


NOT_A_PREAMBLE = Preamble(0)


def parse_preamble(buf: bytes | bytearray) -> Preamble | int:
    """The PROXY preamble at the start of buf, or how many more bytes it needs at least.

    Returns :data:`NOT_A_PREAMBLE` when buf does not start like one (plain
    HTTP, or TLS), and an int (> 0) when it may be one but is not complete:
    reading no more than that many bytes never reads past the preamble.
    A preamble that breaks the protocol is a BadRequest.
    """
    n = len(buf)
    if buf[:1] == b"P":
        if PROXY_V1[:n] == buf[:6]:
            return len(PROXY_V1) - n if n < len(PROXY_V1) else _v1(buf)
        return NOT_A_PREAMBLE
    if buf[:1] == b"\r":
        if PROXY_V2[:n] == buf[:12]:
            return _V2_HEAD - n if n < _V2_HEAD else _v2(buf)
        return NOT_A_PREAMBLE
    return NOT_A_PREAMBLE if n else 1


def _v1(buf: bytes | bytearray) -> Preamble | int:
    end = buf.find(b"\r\n", 0, _V1_MAX)
    if end < 0:
        if len(buf) >= _V1_MAX or b"\n" in buf or b"\r" in buf[:-1]:
            raise BadRequest("PROXY v1 preamble without CRLF in its first 107 bytes")
        return 1
    line = bytes(buf[:end])
    match = _V1.fullmatch(line)
    if match is None:
        raise BadRequest("malformed PROXY v1 preamble")
    family, source, _dest, sport, dport = match.groups()
    if family is None:
        return Preamble(end + 2, 1)
    version = 4 if family == b"TCP4" else 6
    addresses = []
    for text in (source, _dest):
        try:
            ip = ipaddress.ip_address(text.decode("ascii"))
        except ValueError:
            raise BadRequest("PROXY v1 preamble: address is not an IP address") from None
        if ip.version != version:
            raise BadRequest(f"PROXY v1 preamble: address is not IPv{version}")
        addresses.append(ip)
    for port in (sport, dport):
        if (port[:1] == b"0" and port != b"0") or int(port) > 65535:
            raise BadRequest("PROXY v1 preamble: port out of range")
    return Preamble(end + 2, 1, (str(addresses[0]), int(sport)))


def _v2(buf: bytes | bytearray) -> Preamble | int:
    ver_cmd, fam, length = struct.unpack_from("!BBH", buf, 12)
    if ver_cmd >> 4 != 2:
        raise BadRequest("PROXY v2 preamble: version is not 2")
    command = ver_cmd & 0x0F
    if command > 1:
        raise BadRequest("PROXY v2 preamble: command is neither LOCAL nor PROXY")
    family, transport = fam >> 4, fam & 0x0F
    if family > 3 or transport > 2:
        raise BadRequest("PROXY v2 preamble: unknown address family or protocol")
    total = _V2_HEAD + length
    if len(buf) < total:
        return total - len(buf)
    if command == 0 or family == 0 or family == 3:
        return Preamble(total, 2)  # LOCAL (the proxy's own check), UNSPEC or a Unix socket
    needs = _V2_ADDRESSES[family]
    if length < needs:
        raise BadRequest("PROXY v2 preamble: address block shorter than its family")
    block = bytes(buf[_V2_HEAD:_V2_HEAD + needs])
    if family == 1:
        address = str(ipaddress.IPv4Address(block[:4]))
        (port,) = struct.unpack_from("!H", block, 8)
    else:
        address = str(ipaddress.IPv6Address(block[:16]))
        (port,) = struct.unpack_from("!H", block, 32)
    return Preamble(total, 2, (address, port))
