"""What a TLS connection tells the app: the protocol, and the verified client certificate.

After the handshake, each connection's environ gets ``SSL_PROTOCOL`` and
``SSL_CIPHER``, and ``SSL_CLIENT_VERIFY``: ``SUCCESS`` when the client
presented a certificate that was verified against ``cafile`` (with
``client_cert`` optional or required), else ``NONE``. A verified
certificate also gives ``SSL_CLIENT_S_DN`` and ``SSL_CLIENT_I_DN`` (its
subject and issuer as RFC 4514 strings, the most specific part first:
``CN=alice,O=Example,C=DE``), ``SSL_CLIENT_SERIAL`` (hex) and
``SSL_CLIENT_V_END`` (its notAfter). The names are mod_ssl's, which WSGI
apps and middleware already know.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

__all__ = ["dn_string", "tls_environ"]

# Short names of the attributes Python's ssl module spells out in full.
_SHORT = {
    "commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
    "countryName": "C", "stateOrProvinceName": "ST", "localityName": "L",
    "domainComponent": "DC", "userId": "UID", "streetAddress": "STREET",
}


def dn_string(rdns: Iterable[Iterable[tuple[str, str]]]) -> str:
    """A distinguished name as getpeercert() gives it, written as RFC 4514 says.

    getpeercert() lists the RDNs in certificate order (country first);
    RFC 4514 writes them the other way round, ``+`` joining the parts of a
    multi-valued RDN, with its special characters escaped.
    """
    parts = []
    for rdn in reversed(list(rdns)):
        parts.append("+".join(f"{_SHORT.get(name, name)}={_escape(value)}"
                              for name, value in rdn))
    return ",".join(parts)


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and i in (0, len(value) - 1)):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def tls_environ(sock: ssl.SSLSocket) -> dict[str, str]:
    """The SSL_* environ items of a TLS connection whose handshake is done."""
    env = {"SSL_PROTOCOL": sock.version() or "", "SSL_CLIENT_VERIFY": "NONE"}
    cipher = sock.cipher()
    if cipher:
        env["SSL_CIPHER"] = cipher[0]
    try:
        cert: Any = sock.getpeercert()
    except (ValueError, OSError):
        cert = None
    if cert:  # only a certificate that was verified is returned as a dict
        env["SSL_CLIENT_VERIFY"] = "SUCCESS"
        env["SSL_CLIENT_S_DN"] = dn_string(cert.get("subject", ()))
        env["SSL_CLIENT_I_DN"] = dn_string(cert.get("issuer", ()))
        if "serialNumber" in cert:
            env["SSL_CLIENT_SERIAL"] = cert["serialNumber"]
        if "notAfter" in cert:
            env["SSL_CLIENT_V_END"] = cert["notAfter"]
    return env
