"""This node's site information, as the Handle.Net server describes its site (HS_SITE;
``GET /api/site``, handle-facts §1.4 and the JSON its 9.3.1 server answers). Pure.

One site, one server (each idres process of a node answers the same). The interfaces
are those a Handle client can use: HTTP or HTTPS on the HTTP port (the REST API, for
queries and administration). The server's key is the node's Ed25519 key as a JWK
(RFC 8037), in the ``{"format": "key", "value": JWK}`` form of Handle JSON.
"""

from __future__ import annotations

from typing import Any

PROTOCOL_VERSION = "2.11"  # the Handle.Net 9.x server's (Common.MAJOR/MINOR_VERSION)


def site_info(address: str, port: int, tls: bool, public_key: str, description: str,
              serial: int = 1, handle_port: int = 0) -> dict[str, Any]:
    """The ``site`` object: ``public_key`` is the node's key, unpadded base64url; with a
    ``handle_port``, the native protocol's TCP and UDP interfaces come first (a Handle
    client takes the first interface that fits), then HTTP."""
    native = [{"query": True, "admin": proto == "TCP", "protocol": proto, "port": handle_port}
              for proto in ("TCP", "UDP")] if handle_port else []
    return {
        "version": 1,
        "protocolVersion": PROTOCOL_VERSION,
        "serialNumber": serial,
        "primarySite": True,
        "multiPrimary": False,
        "attributes": [{"name": "desc", "value": description}],
        "servers": [{
            "serverId": 1,
            "address": address,
            "publicKey": {"format": "key",
                          "value": {"kty": "OKP", "crv": "Ed25519", "x": public_key}},
            "interfaces": [*native, {"query": True, "admin": True,
                                     "protocol": "HTTPS" if tls else "HTTP", "port": port}],
        }],
    }


def native_site(site: dict[str, Any], rsa_jwk: dict[str, str]) -> dict[str, Any]:
    """The site as its HS_SITE value carries it: the same, but for the server's key, which
    the Handle.Net software reads only as RSA or DSA (handle-facts §1.4): the node's RSA
    key, which certifies native answers, instead of its Ed25519 key (which stays in
    ``GET /api/site``: it signs referrals, docs/trust.md)."""
    servers = [{**s, "publicKey": {"format": "key", "value": rsa_jwk}} for s in site["servers"]]
    return {**site, "servers": servers}
